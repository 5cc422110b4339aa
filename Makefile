# The two commands of the README: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-unit test-lab lint lint-playbooks wheel-check lab-down bench bench-setup

$(STAMP): pyproject.toml lab/apt-packages.txt
	bash lab/bootstrap.sh apt-packages.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,configs,report,play,play-libvirt,play-lint]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/citydc demo

lint: setup
	$(VENV)/bin/ruff check .

# ansible-lint's production profile over playbooks/, offline (playbooks/.ansible-lint). `make test` runs it
# through tests/unit/play/test_ansible_lint.py.
lint-playbooks: setup
	cd playbooks && PATH="$(abspath $(VENV))/bin:$$PATH" $(abspath $(PY)) -m ansiblelint --offline

# Every tier: unit tests (one worker per core: pytest-xdist; they share no service), then the lab tests
# against the real services (one process: they share the lab); the lab tier runs even when the unit tier
# failed, so one CI run shows both. pytest exit code 5 means nothing was collected: in this project that is a
# broken suite, so it fails loudly.
test: lint
	$(PY) -m pytest -q -m "not lab" -n auto --durations=15; unit=$$?; \
	  $(PY) -m pytest -q -m lab --durations=15; lab=$$?; \
	  for rc in $$unit $$lab; do \
	    if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken" >&2; exit 1; fi; done; \
	  if [ $$unit -ne 0 ]; then echo "the unit tier failed (pytest exit $$unit): see above" >&2; exit $$unit; fi; \
	  exit $$lab
	$(MAKE) --no-print-directory wheel-check

test-unit: setup
	$(PY) -m pytest -q -m "not lab" -n auto

test-lab: setup
	$(PY) -m pytest -q -m lab

# Test as installed: build the wheel, install it in a clean venv, import every module, and run
# `citydc demo` from it in an empty directory with a lab of its own (what `pip install citydc` gives).
wheel-check: setup
	$(PY) .ci/check_wheel.py --demo

lab-down:
	-$(VENV)/bin/citydc lab down

# The benchmarks, side by side with their peer tools (installed here: lab/bench-apt-packages.txt).
# Each prints its RATIO lines last; they take several minutes each on a 2-core machine.
bench-setup: setup
	bash lab/bootstrap.sh apt-packages.txt bench-apt-packages.txt

bench: bench-setup
	$(PY) bench/snmp.py
	$(PY) bench/netflow.py
	$(PY) bench/backup.py
	$(PY) bench/seclog.py

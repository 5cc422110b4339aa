"""A config of any shape gets an error list (exit 2), never a traceback.

The property test takes the reference sample and the lab's config, changes one node (a value or a
mapping key) to another shape, and loads the result: the loader must either return a Config or
raise ConfigInvalid whose every error names a path. It runs the validation on parsed data (the YAML
step cannot crash on these values, and skipping it keeps 2,000 examples fast); the CLI tests below
take the whole way, YAML included.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.cli.main import cli
from citydc.config import Config, ConfigInvalid
from citydc.config.loader import load_data, secret_refs
from citydc.config.sample import REFERENCE_FILES, reference_text
from citydc.lab.config import lab_config_text

Path_ = tuple[Any, ...]


def _node_paths(node: Any, here: Path_ = ()) -> list[tuple[str, Path_]]:
    """Return ("value", path) for every node and ("key", path) for every mapping key."""
    out: list[tuple[str, Path_]] = [("value", here)] if here else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(("key", (*here, k)))
            out += _node_paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _node_paths(v, (*here, i))
    return out


def _mutate(doc: Any, kind: str, path: Path_, new: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if kind == "value":
        parent[last] = new
    else:  # rename the key, keeping the order of the mapping
        items = [((new if k == last else k), v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
    return doc


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, tuple[Path, Any]]:
    """The reference sample and the lab config, parsed, each beside the files it names (so both load)."""
    ref_dir = tmp_path_factory.mktemp("reference")
    for name in REFERENCE_FILES:
        (ref_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (ref_dir / name).write_text("x\n")
    lab_dir = tmp_path_factory.mktemp("lab")
    (lab_dir / "sftp").mkdir()
    (lab_dir / "sftp" / "ssh_config").write_text("Host *\n")
    out = {"reference": (ref_dir, yaml.safe_load(reference_text())),
           "lab": (lab_dir, yaml.safe_load(lab_config_text(lab_dir)))}
    for base_dir, doc in out.values():
        assert isinstance(load_data(doc, base_dir=base_dir), Config)  # unmutated: valid
    return out


SCALARS = st.one_of(st.integers(-5, 5), st.text(max_size=8), st.booleans(), st.none(), st.floats(allow_nan=True))
SHAPES = st.one_of(
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-3, 3)), SCALARS, max_size=3),  # mapping
    st.lists(SCALARS, max_size=3),  # list
    st.lists(st.dictionaries(st.text(max_size=4), SCALARS, max_size=2), min_size=1, max_size=2),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e308, -0.5]),
    st.integers(min_value=2**63, max_value=2**300) | st.integers(min_value=-(2**300), max_value=-(2**63)),
    st.integers(-1, 70000),
    st.builds(lambda n, c: c * n, st.integers(300, 20000), st.sampled_from(["a", "/", ":", "\x00", "é", "[", "*("])),
    st.just(""),
    st.text(max_size=40),
    st.booleans(),
)
KEYS = st.one_of(st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=False), st.just(""),
                 st.text(max_size=10))


@st.composite
def mutations(draw, bases: dict[str, tuple[Path, Any]]):
    name = draw(st.sampled_from(sorted(bases)))
    base_dir, doc = bases[name]
    kind, path = draw(st.sampled_from(_node_paths(doc)))
    new = draw(SHAPES if kind == "value" else KEYS)
    return name, base_dir, kind, path, _mutate(doc, kind, path, new)


def test_one_node_of_another_shape_gives_config_invalid_or_a_valid_config(bases):
    outcomes = {"invalid": 0, "valid": 0}

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations(bases))
    def check(case):
        _name, base_dir, _kind, _path, doc = case
        try:
            config = load_data(doc, "citydc.yaml", base_dir=base_dir)
        except ConfigInvalid as exc:
            outcomes["invalid"] += 1
            assert exc.errors, "ConfigInvalid without an error"
            for error in exc.errors:
                assert isinstance(error.path, str) and error.message
                error.format("citydc.yaml")
            return
        outcomes["valid"] += 1
        # What `config check` does with a valid config must not crash either.
        for _where, ref in secret_refs(config):
            ref.file_problem()
        config.model_dump(mode="json")

    check()
    # Both outcomes occur, so the test is neither rejecting everything nor mutating nothing.
    assert outcomes["invalid"] > 100 and outcomes["valid"] > 10, outcomes
    assert sum(outcomes.values()) >= 2000


# -- the whole way, through the CLI --------------------------------------------------------------------

GOOD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
  - {id: fengshan, name: 鳳山 Fengshan}
snmp_auth:
  v2: {version: 2c, community: env:CITYDC_TEST_COMMUNITY}
devices:
  - {name: sw1, address: 10.0.0.1, site: siwei, role: access, snmp_auth: v2}
netflow:
  listeners: [{port: 2055, site: siwei}]
  exporters: [{address: 10.0.0.1, snmp_device: sw1}]
backup:
  jobs:
    - name: j1
      site: siwei
      sources: [/srv]
      local_repo: {url: /srv/restic, password: env:RPW, site: siwei}
"""

# Each was a crash (TypeError, AttributeError) of the cross-reference pass before it was made shape-proof.
CONFUSED = {
    "site id as a mapping": (GOOD.replace("{id: siwei,", "{id: {a: 1},"), "sites[0].id"),
    "site id as a list": (GOOD.replace("{id: siwei,", "{id: [1, 2],"), "sites[0].id"),
    "device name as a mapping": (GOOD.replace("{name: sw1,", "{name: {x: y},"), "devices[0].name"),
    "listeners as a float": (GOOD.replace("listeners: [{port: 2055, site: siwei}]", "listeners: 1.5"),
                             "netflow.listeners"),
    "exporters as a number": (GOOD.replace("exporters: [{address: 10.0.0.1, snmp_device: sw1}]",
                                           "exporters: 99999999999999999999999999"), "netflow.exporters"),
    "job name as a list": (GOOD.replace("- name: j1", "- name: [j1]"), "backup.jobs[0].name"),
    "jobs as a string": (GOOD[:GOOD.index("backup:")] + "backup: {jobs: nope}\n", "backup.jobs"),
    "profile name as a number": (GOOD.replace("  v2: {version", "  3: {version"), "snmp_auth.3"),
    "netflow as a list": (GOOD[:GOOD.index("netflow:")] + "netflow: [1, 2]\n", "netflow"),
    "snmp modules as a list": (GOOD + "snmp: {modules: [a, b]}\n", "snmp.modules"),
}


@pytest.mark.parametrize("case", sorted(CONFUSED))
def test_cli_check_of_a_type_confused_config_exits_2_with_paths(tmp_path, case):
    text, path = CONFUSED[case]
    file = tmp_path / "citydc.yaml"
    file.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "check", str(file)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{file}" in result.output and f": {path}" in result.output, result.output


def test_cli_check_in_a_real_process_prints_no_traceback(tmp_path):
    file = tmp_path / "citydc.yaml"
    file.write_text(CONFUSED["site id as a mapping"][0], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "citydc.cli.main", "config", "check", str(file)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "sites[0].id: Input should be a valid string" in proc.stderr, proc.stderr

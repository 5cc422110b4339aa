"""Fixes of the exploratory test of `citydc play` (load-balancer tier, /tmp/findings-lb.md) in citydc play itself:
no at-fork hook registered while the runner forks ansible-playbook (9), a secret that masking would make visible is
refused (10), --diff shows the diffs (11), a failed validation says why (12), a secret given with -e is refused
(17b), and `play list` cuts nothing when piped (17c)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from citydc.cli.main import cli as citydc_cli
from citydc.cli.play_cmd import parse_extra_vars
from citydc.play.runner import (
    MAX_DIFF_CHARS,
    MIN_SECRET_CHARS,
    PlaybookRun,
    PlayRequest,
    Tracker,
    diff_text,
    secret_problem,
)
from tests.unit.play.test_play_early import write_config

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
CITYDC = str(Path(sys.executable).with_name("citydc"))

PROBE = """---
# Renders a file with a diff, one with diff: false, and (with -e bad=true) one its validator refuses.
- name: Diff probe
  hosts: all
  gather_facts: false
  tasks:
    - name: Render the conf
      ansible.builtin.template:
        src: templates/conf.j2
        dest: "{{ out }}/conf"
        mode: "0600"
    - name: Render the quiet conf
      ansible.builtin.template:
        src: templates/conf.j2
        dest: "{{ out }}/quiet"
        mode: "0600"
      diff: false
    - name: Render the validated conf
      ansible.builtin.template:
        src: templates/conf.j2
        dest: "{{ out }}/validated"
        mode: "0600"
        validate: >-
          sh -c 'echo "[NOTICE] (7) : haproxy version is 2.6" >&2;
          echo "[ALERT] (7) : config : parsing [%s:2] : balance only supports roundrobin" >&2; exit 1'
      when: bad | default(false) | bool
"""


@pytest.fixture()
def books(tmp_path: Path) -> Path:
    directory = tmp_path / "books"
    (directory / "inventory").mkdir(parents=True)
    (directory / "templates").mkdir()
    (directory / "probe.yml").write_text(PROBE)
    (directory / "templates" / "conf.j2").write_text("line one\nvalue {{ v }}\nline three\n")
    (directory / "inventory" / "hosts").write_text(
        f"lb-qwertz-1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[siwei]\nlb-qwertz-1\n")
    return directory


def cli(config: Path, books: Path, tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the probe (artifacts in play-artifacts next to the spool) through the CLI."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    full = {**os.environ, **(env or {})}
    full.pop("CITYDC_CONFIG", None)
    return subprocess.run([CITYDC, "-c", str(config), "play", "run", "probe.yml", "--playbooks", str(books),
                           "-i", str(books / "inventory" / "hosts"), "-e", f"out={out}", "-e", "v=42", *args],
                          env=full, capture_output=True, text=True, timeout=300, check=False)


def spooled(spool: Path) -> list[dict]:
    return [json.loads(line) for seg in sorted(spool.glob("seg-*.jsonl")) for line in seg.read_text().splitlines()]


# --- finding 9: no at-fork hook registered while the runner forks ansible-playbook ------------------------------

RECORDER = r"""
import json, os, sys

late = []
started = []
original = os.register_at_fork


def register(**hooks):
    # a hook pair that holds a lock from "before" to "after_in_parent": registered while a fork runs in another
    # thread, only its "after" half runs and releases a lock someone else holds
    if started and ("before" in hooks or "after_in_parent" in hooks):
        late.append(sys._getframe(1).f_globals.get("__name__", "?"))
    return original(**hooks)


os.register_at_fork = register
import citydc.play.runner as runner  # noqa: E402

start = runner.start_playbook


def start_then_mark(*args, **kwargs):
    run = start(*args, **kwargs)
    started.append(True)  # from here on the runner's thread may be forking ansible-playbook at any moment
    return run


runner.start_playbook = start_then_mark
import citydc.cli.play_cmd as play_cmd  # noqa: E402


def exit_now(code):
    sys.stderr.write("LATE=" + json.dumps(late) + " STARTED=" + json.dumps(bool(started)) + "\n")
    sys.stderr.flush()
    os._exit(code)


play_cmd.exit_now = exit_now
from citydc.cli.main import cli  # noqa: E402

cli(sys.argv[1:])
"""


def test_no_at_fork_hook_is_registered_after_the_runner_may_fork(books, tmp_path):
    """The one-off "RuntimeError: release unlocked lock": concurrent.futures.thread (ThreadPoolExecutor, used for
    git_revision) was first imported by the main thread right after the runner's thread started forking."""
    assert {"concurrent.futures.thread", "logging"} <= set(sys.modules)  # (what this process has: no proof)
    config = write_config(tmp_path)
    env = {**os.environ}
    env.pop("CITYDC_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", RECORDER, "-c", str(config), "play", "run", "probe.yml",
                           "--playbooks", str(books), "-i", str(books / "inventory" / "hosts"),
                           "-e", f"out={tmp_path}", "-e", "v=1", "--artifacts", str(tmp_path / "art")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("LATE="))
    assert line == "LATE=[] STARTED=true", line


# --- finding 10: a secret that masking would make visible is refused --------------------------------------------

def test_a_short_secret_or_one_in_a_name_is_refused_without_quoting_it(books):
    where = {"playbooks_dir": books, "inventory": books / "inventory" / "hosts"}
    assert MIN_SECRET_CHARS == 6
    short = secret_problem("siwei", **where)
    assert short and "shorter than 6" in short and "siwei" not in short
    in_host = secret_problem("qwertz", **where)  # part of the host name lb-qwertz-1
    assert in_host and str(books / "inventory" / "hosts") in in_host and "qwertz" not in in_host
    in_task = secret_problem("validated", **where)  # a word of a task name
    assert in_task and str(books / "probe.yml") in in_task
    in_template = secret_problem("line three", **where)  # a template's text shows in its diff
    assert in_template and "conf.j2" in in_template
    in_config = secret_problem("fengshan", names=("siwei", "lb-fengshan-1"))
    assert in_config and "site id or device name" in in_config and "fengshan" not in in_config
    assert secret_problem("Qz7-kW-q9", **where, names=("siwei", "lb-fengshan-1")) is None
    # the repository's own playbooks and lab inventory take the lab's VRRP password
    assert secret_problem("lab-vrrp", playbooks_dir=PLAYBOOKS, inventory=PLAYBOOKS / "inventories" / "lab") is None
    assert secret_problem("fengshan", playbooks_dir=PLAYBOOKS, inventory=PLAYBOOKS / "inventories" / "lab")


def test_cli_refuses_a_secret_in_a_host_name_before_anything_runs(books, tmp_path, monkeypatch):
    """Was: lb-***-1 in the output, the events and the artifacts, which tells the password is (part of) qwertz."""
    config = write_config(tmp_path)
    monkeypatch.setenv("PW", "qwertz")
    monkeypatch.delenv("CITYDC_CONFIG", raising=False)
    monkeypatch.setattr("citydc.cli.play_cmd.exit_now", sys.exit)  # (os._exit would end pytest if it ran)
    result = CliRunner().invoke(citydc_cli, [
        "-c", str(config), "play", "run", "probe.yml", "--playbooks", str(books),
        "-i", str(books / "inventory" / "hosts"), "-e", f"out={tmp_path}", "-e", "v=1",
        "--secret-var", "keepalived_auth_pass=env:PW", "--artifacts", str(tmp_path / "art")])
    assert result.exit_code == 2, result.output
    assert "keepalived_auth_pass: its value occurs in" in result.output and "qwertz" not in result.output
    assert not (tmp_path / "conf").exists() and not (tmp_path / "spool").exists()


def test_cli_refuses_a_secret_in_a_device_name_of_the_config_and_cancels_the_run(books, tmp_path):
    """The production inventory's hosts are citydc.yaml's devices: checked once the config is loaded (the run was
    started early): exit 2, nothing ran, nothing recorded."""
    config = write_config(tmp_path, devices=[{"name": "lb-asdfgh-1", "address": "192.0.2.10", "site": "siwei",
                                              "role": "lb"}])
    proc = cli(config, books, tmp_path, "--secret-var", "admin_password=env:PW", env={"PW": "asdfgh"})
    assert proc.returncode == 2, proc.stderr
    assert "--secret-var admin_password: its value is part of a site id or device name" in " ".join(
        proc.stderr.split())
    assert "asdfgh" not in proc.stdout + proc.stderr
    time.sleep(0.5)
    assert not (tmp_path / "out" / "conf").exists()
    assert not (tmp_path / "play-artifacts").exists()
    assert not (tmp_path / "spool").exists() or not spooled(tmp_path / "spool")


# --- findings 11 and 12: --diff shows the diffs; a failed validation says why -----------------------------------

def test_diff_text_is_a_unified_diff_or_indented_json_and_bounded():
    text = diff_text({"before": "a\nb\n", "after": "a\nc\n", "before_header": "/etc/haproxy/haproxy.cfg",
                      "after_header": "/tmp/x/source.cfg"})
    assert text.splitlines() == ["--- before: /etc/haproxy/haproxy.cfg", "+++ after: /tmp/x/source.cfg",
                                 "@@ -1,2 +1,2 @@", " a", "-b", "+c"]
    weights = diff_text([{"before": {"weight": 100}, "after": {"weight": 0}}])
    assert "-    \"weight\": 100" in weights and "+    \"weight\": 0" in weights
    assert diff_text({"prepared": "ok\x1b[31m red\x07"}) == "ok red\\x07"  # no terminal control from a module
    assert diff_text({"dst_binary": 1}) == "(binary file: no diff)"
    long = diff_text({"before": "", "after": "".join(f"line {i}\n" for i in range(5000))})
    assert len(long) < MAX_DIFF_CHARS + 200 and long.endswith("job_events)") and "more characters" in long


def test_tracker_keeps_a_changed_tasks_diff_masked_and_only_a_diff_run_shows_it(tmp_path):
    t = Tracker(secrets=["s3cret-pw"])
    t.handle({"event": "runner_on_ok", "uuid": "u1", "event_data": {
        "host": "lb-siwei-1", "task": "Render", "resolved_action": "ansible.builtin.template", "play": "P",
        "res": {"changed": True, "diff": [{"before": "pass old\n", "after": "pass s3cret-pw\n"}]}}})
    t.handle({"event": "runner_on_ok", "uuid": "u2", "event_data": {"host": "lb-siwei-1", "task": "Quiet",
                                                                    "res": {"changed": True}}})
    assert t.changed[0]["diff"].splitlines()[-2:] == ["-pass old", "+pass ***"]
    assert "diff" not in t.changed[1]

    def result(diff: bool):
        req = PlayRequest(playbooks_dir=tmp_path, playbook="x.yml", inventory=tmp_path, artifacts_dir=tmp_path,
                          run_id="20261201T000000Z-0000aaaa", diff=diff)
        run = PlaybookRun(req, t)
        run._runner = type("R", (), {"status": "successful", "rc": 0})()
        return run._result()

    assert result(True).to_json()["changed_tasks"][0]["diff"].endswith("+pass ***")
    assert all("diff" not in c for c in result(False).changed_tasks)


def test_a_failed_validation_says_the_validators_reason_masked_and_bounded():
    t = Tracker(secrets=["s3cret-pw"])
    stderr = ("[NOTICE]   (1) : haproxy version is 2.6.12\n"
              "[ALERT]    (1) : config : parsing [/tmp/.source:28] : balance only supports 'roundrobin'\n"
              "[ALERT]    (1) : config : auth s3cret-pw refused\n" + "[ALERT] (1) : x\n" * 10 + "y" * 2000)
    t.handle({"event": "runner_on_failed", "event_data": {"host": "lb-siwei-1", "task": "Render haproxy.cfg", "res": {
        "msg": "failed to validate", "exit_status": 1, "stdout": "", "stderr": stderr}}})
    message = t.failures[0]["message"]
    assert message.startswith("failed to validate: [ALERT] (1) : config : parsing [/tmp/.source:28] : balance only "
                              "supports 'roundrobin' | [ALERT] (1) : config : auth *** refused | [ALERT] (1) : x")
    assert "NOTICE" not in message and "yyy" not in message and len(message) <= 800
    keepalived = {"msg": "failed to validate", "stderr": "", "stdout": "a\nUnknown keyword 'virtual_ipaddress'\n"}
    t.handle({"event": "runner_on_failed", "event_data": {"host": "lb-siwei-2", "task": "Render keepalived.conf",
                                                          "res": keepalived}})
    assert t.failures[1]["message"] == "failed to validate: a | Unknown keyword 'virtual_ipaddress'"


def test_cli_diff_prints_the_diffs_and_the_validators_reason(books, tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "conf").write_text("old\n")
    proc = cli(config, books, tmp_path, "--diff", "-e", "bad=true")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("diff lb-qwertz-1: Render the conf")
    assert lines[start + 1].startswith("--- before: ") and lines[start + 2].startswith("+++ after: ")
    assert lines[start + 3:start + 8] == ["@@ -1 +1,3 @@", "-old", "+line one", "+value 42", "+line three"]
    assert "Render the quiet conf" not in proc.stdout  # diff: false shows nothing
    failure = " ".join(proc.stderr.split())
    assert ("failed lb-qwertz-1: Render the validated conf: failed to validate: [ALERT] (7) : config : parsing "
            in failure) and "balance only supports roundrobin" in failure

    as_json = cli(config, books, tmp_path, "--diff", "--json", "-e", "v=43")
    assert as_json.returncode == 0, as_json.stderr
    changed = {c["task"]: c for c in json.loads(as_json.stdout)["changed_tasks"]}
    assert changed["Render the conf"]["diff"].endswith("-value 42\n+value 43\n line three".rstrip())
    assert "diff" not in changed["Render the quiet conf"]
    plain = cli(config, books, tmp_path, "-e", "v=44")
    assert plain.returncode == 0 and "diff " not in plain.stdout and "@@" not in plain.stdout


# --- finding 17: a secret given with -e; play list piped --------------------------------------------------------

@pytest.mark.parametrize("name", ["keepalived_auth_pass", "admin_password", "ansible_become_pass",
                                  "ansible_ssh_private_key_passphrase", "api_token", "client_secret",
                                  "ansible_ssh_private_key", "ADMIN_PASSWORD"])
def test_a_secret_looking_name_given_with_e_is_refused_pointing_at_secret_var(name):
    with pytest.raises(click.BadParameter) as exc:
        parse_extra_vars((f"{name}=hunter2-value",))
    assert f"--secret-var {name}=env:VAR" in str(exc.value) and "hunter2" not in str(exc.value)
    plain = ("lb_weight=50", "failover_from=siwei", "bypass=1", "passes=2", "token_ttl=3",
             "ansible_ssh_private_key_file=/k")
    assert parse_extra_vars(plain) == dict(p.split("=") for p in plain)


def test_play_list_piped_cuts_no_summary():
    result = CliRunner().invoke(citydc_cli, ["play", "list", "--playbooks", str(PLAYBOOKS)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("vm-deploy.yml "))
    assert line.endswith("define and start what is missing or differs.")

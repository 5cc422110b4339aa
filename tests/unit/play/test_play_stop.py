"""How ``citydc play run`` ends when it does not end well, with the real ansible-playbook on a local connection
(no lab service): Ctrl-C exits 130 saying "interrupted" and --timeout exits 1 saying so, and in both the task in
flight is stopped with ansible-playbook before citydc exits (Ansible's workers live in sessions of their own, so
killing ansible-playbook's process group alone would leave them running); a playbook that does not parse and a
limit matching no host are reported with Ansible's own message, not as "hosts unreachable" or an unknown code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.play.runner import Tracker
from citydc.play.stop import stop_tree

CITYDC = str(Path(sys.executable).with_name("citydc"))
SLOW = """---
- name: Slow
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep, then write the marker
      ansible.builtin.shell: "sleep 60 && touch {{ marker }}"
"""


def processes_with(text: str) -> list[int]:
    """Return the live processes (not zombies) whose command line contains text."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (proc / "cmdline").read_bytes() and " Z " not in (proc / "stat").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture()
def books(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A module stopped mid-task leaves its unpacked payload (ansible_*_payload_*) in its TMPDIR, as Ansible does
    # whoever stops it: the test's own directory, not the machine's /tmp.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    directory = tmp_path / "books"
    (directory / "inventory").mkdir(parents=True)
    (directory / "slow.yml").write_text(SLOW)
    (directory / "broken.yml").write_text("- hosts: all\n  tasks: [\nnot: [valid\n")
    (directory / "inventory" / "hosts").write_text(
        f"[siwei]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(tmp_path / "spool"), "sink": {"kind": "sqlite", "path": "log.db"}}}))
    return directory


def argv(books: Path, playbook: str, *args: str) -> list[str]:
    tmp = books.parent
    return [CITYDC, "-c", str(tmp / "citydc.yaml"), "play", "run", playbook, "--playbooks", str(books),
            "-i", str(books / "inventory" / "hosts"), "-e", f"marker={tmp / 'marker'}", *args]


def run_end(tmp_path: Path) -> dict:
    events = [json.loads(line) for seg in sorted((tmp_path / "spool").glob("seg-*.jsonl"))
              for line in seg.read_text().splitlines()]
    ends = [e for e in events if e["event"]["action"] == "playbook-run" and e["citydc"]["playbook"]["phase"] == "end"]
    assert len(ends) == 1
    return ends[0]


def wait_for_task(marker: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not processes_with(f"touch {marker}"):
        assert proc.poll() is None and time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_task_in_flight_and_exits_130(books: Path, tmp_path: Path, sig: int) -> None:
    proc = subprocess.Popen(argv(books, "slow.yml"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_task(tmp_path / "marker", proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    # Right as citydc exits: ansible-playbook, its worker and the task are gone (all name tmp_path in argv).
    assert processes_with(str(tmp_path)) == [], stderr
    assert proc.returncode == 130, stdout + stderr
    assert stderr.strip().endswith("interrupted")
    # ansible-runner's 254 is not shown as an exit code (the artifact path's time may hold those digits)
    assert "ansible-playbook and any task in flight were stopped" in stderr and "exit code" not in stderr
    end = run_end(tmp_path)
    assert end["citydc"]["playbook"]["status"] == "canceled"
    assert end["citydc"]["playbook"]["meaning"].startswith("interrupted")
    assert not (tmp_path / "marker").exists()


def test_a_timeout_stops_the_task_in_flight_and_exits_1(books: Path, tmp_path: Path) -> None:
    proc = subprocess.run(argv(books, "slow.yml", "--timeout", "4", "--json"), capture_output=True, text=True,
                          timeout=180, check=False)
    assert processes_with(str(tmp_path)) == [], proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "timeout"
    assert out["meaning"] == "timed out after 4 s; ansible-playbook and any task in flight were stopped"
    assert not (tmp_path / "marker").exists()


def test_a_playbook_that_does_not_parse_says_so_with_ansibles_message(books: Path, tmp_path: Path) -> None:
    proc = subprocess.run(argv(books, "broken.yml"), capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())  # (Rich wraps long lines)
    assert "could not be parsed: YAML parsing failed" in err and "unreachable" not in err
    assert f"Origin: {books / 'broken.yml'}" in err


def test_a_limit_matching_no_host_says_so_with_ansibles_message(books: Path, tmp_path: Path) -> None:
    proc = subprocess.run(argv(books, "slow.yml", "--limit", "nosuchhost", "--json"), capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["rc"] == 1 and "unknown exit code" not in out["meaning"]
    assert out["meaning"].endswith("leaves us with no hosts to target.")
    assert any("Could not match supplied host pattern, ignoring: nosuchhost" in m for m in out["messages"])


def test_an_unknown_site_is_a_usage_error_naming_the_sites(books: Path, tmp_path: Path) -> None:
    proc = subprocess.run(argv(books, "slow.yml", "--site", "nosuch"), capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 2
    assert "--site: no site 'nosuch'" in proc.stderr and "(sites: siwei, fengshan)" in proc.stderr
    assert processes_with(str(tmp_path)) == []
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").glob("seg-*.jsonl"))


def test_tracker_keeps_ansibles_error_block_as_plain_text() -> None:
    t = Tracker()
    for line in ["\x1b[1;35m[WARNING]: Could not match supplied host pattern, ignoring: x\x1b[0m",
                 "\x1b[0;31m[ERROR]: YAML parsing failed: bad \x1b]0;title\x07\x1b[0m",
                 "\x1b[0;31mOrigin: a.yml:2:1\x1b[0m", "", "just output"]:
        t.handle({"event": "verbose", "stdout": line})
    t.handle({"event": "playbook_on_play_start", "event_data": {"play": "p"}})
    t.handle({"event": "verbose", "stdout": "after the play started"})
    assert t.errors == ["YAML parsing failed: bad \\x1b]0;title\\x07"]
    assert t.messages == ["[WARNING]: Could not match supplied host pattern, ignoring: x",
                          "[ERROR]: YAML parsing failed: bad \\x1b]0;title\\x07", "Origin: a.yml:2:1", "just output"]


def test_stop_tree_stops_a_child_in_a_session_of_its_own(tmp_path: Path) -> None:
    """As an Ansible worker: the child calls setsid(); killing the parent's process group would miss it."""
    mark = str(tmp_path / "tree")
    code = ("import os, subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(120)', {mark!r}])\n"
            "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, mark], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(mark)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stop_tree(parent.pid) == []
        parent.wait(timeout=10)
        assert processes_with(mark) == []
    finally:
        for pid in processes_with(mark):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=10)

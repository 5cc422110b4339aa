"""`citydc log ship` through the real command: damaged spool state and corrupted lines.

Findings 7 and 12 of the 2026-12-07 exploratory test: a damaged ``ack.json`` or ``chain-head.json``
ends the command with one line naming the file and the recovery (exit 1, as a failed delivery), and
moving the file aside as that line says leaves every chain intact for ``citydc log verify``;
corrupted spool lines are each reported once, every good line is still delivered, and the exit code
is 1 (damaged audit data is a finding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.seclog import emit, make_event

CITYDC = str(Path(sys.executable).with_name("citydc"))

CONFIG = """\
sites:
  - {id: siwei, name: "Siwei"}
security_log:
  spool_dir: var/spool
  sink: {kind: sqlite, path: var/seclog.db}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def citydc(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, env=env, timeout=120)


def bind(i: int) -> dict:
    return make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                      type=["start"], outcome="failure", message=f"bind {i} of alice", site="siwei",
                      id_key=f"bind:{i}", user="alice", source_ip="10.10.0.5")


def spool_dir(cfg: Path) -> Path:
    return cfg.parent / "var" / "spool"


def search_count(cfg: Path) -> int:
    found = citydc(cfg, "log", "search", "--json", "--action", "ldap-bind", "--limit", "1000")
    assert found.returncode == 0, found.stderr
    return len(json.loads(found.stdout))


@pytest.mark.parametrize("name,content,problem", [
    ("ack.json", b"garbage{\n", "not JSON"),
    ("ack.json", b"", "empty"),
    ("chain-head.json", b"garbage\n", "not JSON"),
    ("chain-head.json", b"", "empty"),
])
def test_a_damaged_state_file_is_one_line_naming_it_and_moving_it_aside_recovers(cfg, name, content, problem):
    emit([bind(i) for i in range(3)], spool_dir=spool_dir(cfg))
    assert citydc(cfg, "log", "ship").returncode == 0
    emit([bind(i) for i in range(3, 5)], spool_dir=spool_dir(cfg))
    damaged = spool_dir(cfg) / name
    damaged.write_bytes(content)
    proc = citydc(cfg, "log", "ship")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {damaged}: damaged spool state file: {problem}")
    assert "move it aside" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # The recovery the message names.
    damaged.rename(damaged.with_name(name + ".damaged"))
    emit([bind(5)], spool_dir=spool_dir(cfg))
    proc = citydc(cfg, "log", "ship")
    assert proc.returncode == 0, proc.stderr
    assert search_count(cfg) == 6
    checked = citydc(cfg, "log", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "every chain intact" in checked.stdout


def test_corrupted_lines_are_reported_once_each_the_rest_delivered_and_the_exit_is_1(cfg):
    emit([bind(i) for i in range(10)], spool_dir=spool_dir(cfg))
    segment = next(spool_dir(cfg).glob("seg-*.jsonl"))
    lines = segment.read_bytes().split(b"\n")
    for at in (3, 7):
        lines.insert(at, b"garbage{")
    segment.write_bytes(b"\n".join(lines))
    proc = citydc(cfg, "log", "ship")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for number in (4, 8):
        assert proc.stderr.count(f"{segment}:{number}: skipped corrupted spool line") == 1, proc.stderr
    assert "skipped 2 corrupted spool line(s)" in proc.stderr
    assert "delivered 11 event(s)" in proc.stderr  # the ten and the spool-created event
    assert search_count(cfg) == 10
    # Reported once: the next round starts after them.
    again = citydc(cfg, "log", "ship")
    assert again.returncode == 0 and "corrupted" not in again.stderr, again.stderr

"""Who may read the spool, and how (docs/operations.md §5, docs/security-log.md "The spool"): created 0700 with
files 0600, or 0750 with files 0640 while ``files.group`` is in effect (lock files owner-only: a reader takes no
lock); ``citydc log verify`` run by an auditor of that group reads ack.json and chain-head.json without creating
or locking anything; a spool it cannot read is one line naming the path and ``security_log.spool_dir``, exit 2.

The writers run as in the documented setup: root with the auditors' group as its own (``Group=`` of the units),
the events through the public ``emit()`` and delivered by the real ``citydc log ship``. The auditor is the
``auditor`` fixture (conftest.py): the real command line as ``nobody:nogroup``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from citydc import files
from citydc.seclog import emit, make_event
from citydc.seclog.spool import Spool

CITYDC = str(Path(sys.executable).with_name("citydc"))

CONFIG = """\
sites: [{id: siwei, name: Siwei}]
files: {group: nogroup}
security_log: {spool_dir: spool, sink: {kind: sqlite, path: db/seclog.db}}
"""

# What a command that records events does under files.group: its group is the auditors' (apply_group).
EMIT_PROGRAM = """
import sys
from citydc import files
from citydc.seclog import emit, make_event
assert files.apply_group("nogroup") is None
emit([make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                 type=["start"], outcome="success", message=f"bind {i}", site="siwei", id_key=f"spool-access:{i}")
      for i in range(int(sys.argv[2]))], spool_dir=sys.argv[1])
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(directory: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in directory.iterdir()}


def event(i: int) -> dict:
    return make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"bind {i}", site="siwei", id_key=f"modes:{i}")


@pytest.fixture
def umask_restored() -> Iterator[None]:
    old = files.set_umask(files.PRIVATE_UMASK)
    yield
    files.set_umask(old)


def fill(spool_dir: Path) -> Spool:
    """Given a spool directory, emit two events, ship them nowhere but acknowledge them (ack.json); return it."""
    assert emit([event(0), event(1)], spool_dir=spool_dir) == 2
    spool = Spool(spool_dir)
    batch = spool.read(None, 10)
    spool.acknowledge(batch.end, batch.events)
    return spool


def test_with_files_group_the_spool_is_0750_its_files_0640_and_its_locks_0600(tmp_path, umask_restored) -> None:
    files.set_umask(files.GROUP_UMASK)  # what apply_group does when files.group is the process's group
    spool = fill(tmp_path / "spool")
    with spool.shipping():
        pass
    assert mode(tmp_path / "spool") == 0o750
    assert modes(tmp_path / "spool") == {
        "seg-0000000001.jsonl": 0o640, "chain-head.json": 0o640, "ack.json": 0o640,
        "ids.db": 0o640, "ids.db-wal": 0o640, "ids.db-shm": 0o640,  # the WAL files take the database's mode
        "writer.lock": 0o600, "shipper.lock": 0o600}


def test_without_files_group_a_library_callers_umask_022_still_gets_0700_and_0600(tmp_path, umask_restored) -> None:
    files.set_umask(0o022)  # no files.group: emit() called from a program of its own
    fill(tmp_path / "spool")
    assert mode(tmp_path / "spool") == 0o700
    assert set(modes(tmp_path / "spool").values()) == {0o600}, modes(tmp_path / "spool")  # ids.db was 0644


def test_an_existing_spool_keeps_its_modes_and_a_new_segment_follows_files_group(tmp_path, umask_restored) -> None:
    fill(tmp_path / "spool")  # private: 0700, 0600
    files.set_umask(files.GROUP_UMASK)
    spool = Spool(tmp_path / "spool", max_segment_bytes=1)  # the next batch starts a new segment
    spool.append([event(2)])
    assert mode(tmp_path / "spool") == 0o700
    got = modes(tmp_path / "spool")
    assert (got["seg-0000000001.jsonl"], got["ids.db"], got["seg-0000000002.jsonl"]) == (0o600, 0o600, 0o640)
    assert got["chain-head.json"] == 0o640  # replaced at every write: the writer's modes


# -- as the auditor -----------------------------------------------------------------------------------


def as_group(*argv: str, gid: int) -> subprocess.CompletedProcess:
    """Given a command and a group, run it as root with that group as its own (a unit's ``Group=``)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, group=gid, extra_groups=[],
                          check=False, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def site(auditor) -> Iterator[Path]:
    """A folder the auditor may enter, with the config, a spool holding 5 events and a store holding them, all
    written by root running with the auditors' group, as in the documented setup."""
    top = Path(tempfile.mkdtemp(prefix="citydc-spool-auditor-", dir="/tmp"))
    top.chmod(0o755)
    (top / "citydc.yaml").write_text(CONFIG)
    os.chown(top / "citydc.yaml", 0, auditor.gid)
    (top / "citydc.yaml").chmod(0o640)
    emitted = as_group(sys.executable, "-c", EMIT_PROGRAM, str(top / "spool"), "5", gid=auditor.gid)
    assert emitted.returncode == 0, emitted.stderr
    shipped = as_group(CITYDC, "-c", str(top / "citydc.yaml"), "log", "ship", gid=auditor.gid)
    assert shipped.returncode == 0, shipped.stderr
    yield top
    shutil.rmtree(top)


def verify(auditor, top: Path, *args: str) -> subprocess.CompletedProcess:
    return auditor.cli("-c", str(top / "citydc.yaml"), "log", "verify", *args)


def test_an_auditor_verifies_against_the_spool_while_writer_and_shipper_hold_their_locks(auditor, site) -> None:
    spool = site / "spool"
    assert mode(spool) == 0o750 and mode(spool / "ack.json") == 0o640 and mode(spool / "chain-head.json") == 0o640
    before = {p.name: p.stat().st_mtime_ns for p in spool.iterdir()}
    locks = [os.open(spool / name, os.O_RDWR) for name in ("writer.lock", "shipper.lock")]
    try:
        for fd in locks:  # an emit and a shipper at work: verify must not wait for them (it takes no lock)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = verify(auditor, site, "--json")
        text = verify(auditor, site)
    finally:
        for fd in locks:
            os.close(fd)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    # 5 events and the spool's spool-created event, checked against the spool's heads
    assert (answer["ok"], answer["events"], answer["spool_checked"]) == (True, 6, True)
    assert text.returncode == 0 and "OK: 6 event(s), every chain intact" in text.stdout, text.stderr
    assert {p.name: p.stat().st_mtime_ns for p in spool.iterdir()} == before  # nothing created or written


def test_an_auditor_finds_a_lost_tail_through_the_spools_ack(auditor, site) -> None:
    conn = sqlite3.connect(site / "db" / "seclog.db")
    try:
        assert conn.execute("DELETE FROM events WHERE seq = 6").rowcount == 1  # the newest event, gone
        conn.commit()
    finally:
        conn.close()
    proc = verify(auditor, site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "removed:" in proc.stderr and "seq 6 was delivered" in proc.stderr, proc.stderr


def test_a_spool_the_auditor_cannot_read_is_one_line_naming_it_and_the_field(auditor, site) -> None:
    spool = site / "spool"
    spool.chmod(0o700)  # as a spool created before files.group, or by a writer without the group
    proc = verify(auditor, site)
    assert proc.stderr.strip() == (f"error: cannot read the security log spool: {spool}/ack.json: Permission denied "
                                   "(security_log.spool_dir)"), proc.stderr
    assert proc.returncode == 2 and proc.stdout == ""
    spool.chmod(0o750)
    (spool / "chain-head.json").chmod(0o600)
    proc = verify(auditor, site, "--json")
    assert proc.stderr.strip() == (f"error: cannot read the security log spool: {spool}/chain-head.json: Permission "
                                   "denied (security_log.spool_dir)"), proc.stderr
    # Before the walk: no half answer, but with --json the answer is JSON all the same (nothing was verified).
    assert proc.returncode == 2 and json.loads(proc.stdout) == {
        "ok": False, "error": f"cannot read the security log spool: {spool}/chain-head.json: Permission denied "
                              "(security_log.spool_dir)", "events": 0, "spool_checked": None, "findings": [],
        "notices": []}


def test_a_spool_folder_the_auditor_may_not_enter_is_named(auditor, site) -> None:
    (site / "var").mkdir(mode=0o700)
    shutil.move(site / "spool", site / "var" / "spool")
    config = site / "citydc.yaml"
    config.write_text(CONFIG.replace("spool_dir: spool", "spool_dir: var/spool"))
    proc = verify(auditor, site)
    assert proc.stderr.strip() == (f"error: cannot read the security log spool: {site}/var/spool: Permission denied "
                                   "(security_log.spool_dir)"), proc.stderr
    assert proc.returncode == 2


def test_the_documented_chgrp_and_chmod_open_an_existing_spool_to_the_auditor(auditor, site) -> None:
    spool = site / "spool"
    for path in (spool, *spool.iterdir()):  # as created before files.group: root's group, owner-only
        os.chown(path, 0, 0)
        path.chmod(0o700 if path.is_dir() else 0o600)
    assert verify(auditor, site).returncode == 2
    # docs/operations.md §5, once: chgrp -R auditors SPOOL && chmod -R g+rX,g-w SPOOL
    for argv in (["chgrp", "-R", str(auditor.gid), str(spool)], ["chmod", "-R", "g+rX,g-w", str(spool)]):
        subprocess.run(argv, check=True, timeout=30)
    proc = verify(auditor, site)
    assert proc.returncode == 0 and "OK: 6 event(s), every chain intact" in proc.stdout, proc.stderr
    # and it stays open: the writers, running with the group, replace the state files 0640
    assert as_group(sys.executable, "-c", EMIT_PROGRAM, str(spool), "7", gid=auditor.gid).returncode == 0
    assert as_group(CITYDC, "-c", str(site / "citydc.yaml"), "log", "ship", gid=auditor.gid).returncode == 0
    proc = verify(auditor, site)
    assert proc.returncode == 0 and "OK: 8 event(s), every chain intact" in proc.stdout, proc.stderr

"""Who may open the SQLite security log, and how (docs/operations.md §5): created 0600, or 0640 in a 0750
directory when ``files.group`` is in effect; opened read-only until something is stored, so an auditor of that
group can search, count and verify; a path that cannot be used is one error naming it and its config field.

The auditor is played for real by the ``nobody`` user (the ``auditor`` fixture, conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citydc import files
from citydc.seclog.chain import GENESIS, link
from citydc.seclog.event import make_event
from citydc.seclog.store import Query
from citydc.seclog.store_sqlite import SqliteStore, StoreUnusable


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def chained(n: int, start: int = 0) -> list[dict]:
    out, prev = [], GENESIS
    for i in range(n):
        doc = make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                         type=["start"], outcome="failure" if i % 2 else "success", message=f"bind {i} of alice",
                         site="siwei", id_key=f"access:{i}", user=f"user{i % 3}", source_ip="10.10.0.5",
                         timestamp=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=i))
        if i >= start:
            out.append(link(doc, "w:spool", i + 1, prev))
        prev = link(doc, "w:spool", i + 1, prev)["event"]["hash"]
    return out


@pytest.fixture
def group_umask() -> Iterator[None]:
    old = files.set_umask(files.GROUP_UMASK)  # what apply_group does when files.group is the process's group
    yield
    files.set_umask(old)


def test_created_0600_by_default_and_0640_in_0750_with_files_group(tmp_path, group_umask) -> None:
    grouped = SqliteStore(tmp_path / "grouped" / "seclog.db")
    grouped.put(chained(3))  # the -wal and -shm files exist while it is open
    assert {p.name: mode(p) for p in (tmp_path / "grouped").iterdir()} == {
        "seclog.db": 0o640, "seclog.db-wal": 0o640, "seclog.db-shm": 0o640}
    assert mode(tmp_path / "grouped") == 0o750
    grouped.close()
    files.set_umask(0o022)  # no files.group, a library caller's umask: still private
    private = SqliteStore(tmp_path / "private" / "seclog.db")
    assert mode(tmp_path / "private" / "seclog.db") == 0o600 and mode(tmp_path / "private") == 0o700
    private.close()


def test_an_existing_database_is_opened_read_only_until_the_first_write(tmp_path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    store = SqliteStore(tmp_path / "s.db")
    assert not store.writable and store.count() == 0
    assert store.put(chained(4)) == 4 and store.writable
    assert len(list(store.search(Query()))) == 4
    store.close()


def test_a_path_that_cannot_be_used_names_itself_and_the_config_field(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnusable, match=rf"^cannot create {tmp_path / 'file'}: .* \(security_log\.sink\.path\)$"):
        SqliteStore(tmp_path / "file" / "seclog.db")
    (tmp_path / "garbage.db").write_text("not a database at all, but long enough to be looked at" * 20)
    with pytest.raises(StoreUnusable, match=r"garbage\.db: file is not a database \(security_log\.sink\.path\)$"):
        SqliteStore(tmp_path / "garbage.db")


# -- as another user (the auditor fixture) ---------------------------------------------------------

STORE_PROGRAM = """
from citydc.seclog.store import DeliveryError, Query
from citydc.seclog.store_sqlite import SqliteStore
try:
    store = SqliteStore(sys.argv[1])
    print(json.dumps({"writable": store.writable, "count": store.count(), "search": len(list(store.search(Query()))),
                      "stats": store.stats(Query(), ["event.outcome"]), "chain": len(list(store.chain()))}))
    if len(sys.argv) > 2:  # wait for the parent to write, then read again
        print("ready", flush=True)
        sys.stdin.readline()
        store.count()
except DeliveryError as exc:
    print(json.dumps({"error": str(exc)}))
"""


@pytest.fixture
def shared(auditor) -> Iterator[Path]:
    """A folder the auditor (group nogroup) may enter, holding a 0750 db/ folder, as files.group makes it."""
    top = Path(tempfile.mkdtemp(prefix="citydc-auditor-", dir="/tmp"))
    top.chmod(0o755)
    old = files.set_umask(files.GROUP_UMASK)
    try:
        store = SqliteStore(top / "db" / "seclog.db")
        store.put(chained(10))
        store.close()
    finally:
        files.set_umask(old)
    for path in (top / "db", top / "db" / "seclog.db"):
        os.chown(path, 0, auditor.gid)
    (top / "citydc.yaml").write_text("sites: [{id: siwei, name: Siwei}]\nfiles: {group: nogroup}\n"
                                     "security_log: {spool_dir: spool, sink: {kind: sqlite, path: db/seclog.db}}\n")
    os.chown(top / "citydc.yaml", 0, auditor.gid)
    (top / "citydc.yaml").chmod(0o640)
    yield top
    shutil.rmtree(top)


def test_an_auditor_reads_a_closed_database_without_writing_anything(auditor, shared) -> None:
    proc = auditor.run(STORE_PROGRAM, str(shared / "db" / "seclog.db"))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {"writable": False, "count": 10, "search": 10, "stats": [[["failure"], 5], [["success"], 5]],
                   "chain": 10}
    assert sorted(p.name for p in (shared / "db").iterdir()) == ["seclog.db"]  # no -wal, no -shm left behind


def test_an_auditor_reads_what_a_running_writer_holds_in_its_wal(auditor, shared) -> None:
    writer = SqliteStore(shared / "db" / "seclog.db")
    try:
        writer.put(chained(15, start=10))  # still in the WAL: the writer is open, nothing checkpointed
        assert (shared / "db" / "seclog.db-wal").stat().st_size > 0
        proc = auditor.run(STORE_PROGRAM, str(shared / "db" / "seclog.db"))
    finally:
        writer.close()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["count"] == 15


def test_a_write_during_a_read_of_the_closed_database_is_reported(auditor, shared) -> None:
    db = shared / "db" / "seclog.db"
    child = auditor.popen(STORE_PROGRAM, str(db), "wait")
    try:
        assert json.loads(child.stdout.readline())["count"] == 10
        assert child.stdout.readline().strip() == "ready"
        writer = SqliteStore(db)
        writer.put(chained(12, start=10))
        writer.close()  # the last connection checkpoints the WAL into the file the child reads
        out, err = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "was written while it was read" in json.loads(out)["error"], err


def test_search_stats_and_saved_work_for_an_auditor_through_the_cli(auditor, shared) -> None:
    config = str(shared / "citydc.yaml")
    search = auditor.cli("-c", config, "log", "search", "--json")
    assert search.returncode == 0, search.stderr
    assert len(json.loads(search.stdout)) == 10
    stats = auditor.cli("-c", config, "log", "stats", "--by", "user.name", "--json")
    assert stats.returncode == 0, stats.stderr
    saved = auditor.cli("-c", config, "log", "saved", "failed-logins")
    assert saved.returncode in (0, 1) and "Traceback" not in saved.stderr, saved.stderr


def test_a_database_or_folder_the_user_cannot_use_is_one_line_naming_path_and_field(auditor, shared) -> None:
    config = shared / "citydc.yaml"
    (shared / "db" / "seclog.db").chmod(0o600)
    proc = auditor.cli("-c", str(config), "log", "search")
    assert proc.stderr.strip() == (f"error: cannot open the security log store: cannot read {shared}/db/seclog.db: "
                                   "Permission denied (security_log.sink.path)")
    assert proc.returncode == 2  # a setup error, not a failed job
    config.write_text(config.read_text().replace("db/seclog.db", "db/new/seclog.db"))
    proc = auditor.cli("-c", str(config), "log", "stats", "--by", "user.name")
    # A question never creates a store: a path with none is named as such (not "cannot create").
    assert proc.stderr.strip() == (f"error: cannot open the security log store: no security-log store at "
                                   f"{shared}/db/new/seclog.db (nothing was shipped there yet, or the path is wrong) "
                                   "(security_log.sink.path)")
    assert proc.returncode == 2 and not (shared / "db" / "new").exists()

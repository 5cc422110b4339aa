"""The id index stays open per process, is reopened when its spool is replaced, and never crosses a fork."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from citydc.seclog import spool_ids
from citydc.seclog.chain import verify
from citydc.seclog.event import make_event
from citydc.seclog.spool import Spool


def ev(i: int) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {i}", site="siwei", id_key=str(i),
                      timestamp=datetime(2026, 3, 1, tzinfo=UTC))


def read_all(spool: Spool) -> list[dict]:
    return spool.read(None, 10_000).events


def test_one_connection_per_spool_is_reused_by_every_append(tmp_path):
    Spool(tmp_path, writer="w:s").append([ev(1)])
    first = spool_ids.connection(tmp_path)
    Spool(tmp_path, writer="w:s").append([ev(2)])
    assert spool_ids.connection(tmp_path) is first
    assert Spool(tmp_path, writer="w:s").append([ev(1), ev(2)]) == []  # still deduplicates


def test_a_replaced_spool_directory_gets_a_fresh_index(tmp_path):
    spool_dir = tmp_path / "spool"
    Spool(spool_dir, writer="w:s").append([ev(1)])
    shutil.rmtree(spool_dir)
    written = Spool(spool_dir, writer="w:s").append([ev(1)])  # a new spool: the old ids do not apply
    assert [e["citydc"]["chain"]["seq"] for e in written] == [2]  # after the new spool's spool-created event
    assert (spool_dir / "ids.db").exists()


def test_the_least_recently_used_index_is_closed_beyond_the_bound(tmp_path):
    for i in range(spool_ids.MAX_OPEN + 2):
        Spool(tmp_path / f"s{i}", writer="w:s").append([ev(i)])
    assert len(spool_ids._open) <= spool_ids.MAX_OPEN
    assert Spool(tmp_path / "s0", writer="w:s").append([ev(0)]) == []  # reopened, still deduplicates


def _child(path: str, start: int) -> None:
    Spool(path, writer="w:s").append([ev(i) for i in range(start, start + 5)] + [ev(0)])


def test_forked_children_open_their_own_and_the_chain_stays_gap_free(tmp_path):
    spool = Spool(tmp_path, writer="w:s")
    spool.append([ev(0)])  # the parent holds an open index when it forks
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child, args=(str(tmp_path), 100 * (k + 1))) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert spool.append([ev(100), ev(1)]) != []  # ev(100) came from a child: dropped; ev(1) is new
    events = read_all(spool)
    # The spool-created event, the parent's first, 15 from the children, ev(1).
    assert len(events) == 1 + 1 + 15 + 1 and len({e["event"]["id"] for e in events}) == 18
    assert [e["citydc"]["chain"]["seq"] for e in events] == list(range(1, 19))
    assert verify(events) == []


def test_an_ids_db_of_the_older_layout_is_migrated_and_still_deduplicates(tmp_path):
    spool = Spool(tmp_path, writer="w:s")
    spool.append([ev(1)])
    kept = ev(2)["event"]["id"]
    spool_ids._open.pop(tmp_path / "ids.db")[0].close()
    # Rewrite ids.db as the code before the table seen wrote it: hex text ids with their day in the table ids.
    (tmp_path / "ids.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"ids.db{suffix}").unlink(missing_ok=True)
    old = sqlite3.connect(tmp_path / "ids.db")
    old.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, day INTEGER NOT NULL)")
    old.execute("CREATE INDEX ids_day ON ids(day)")
    today = int(time.time() // 86400)
    old.executemany("INSERT INTO ids VALUES (?, ?)", [(ev(1)["event"]["id"], today), (kept, today)])
    old.commit()
    old.close()
    assert Spool(tmp_path, writer="w:s").append([ev(1), ev(2)]) == []  # both remembered across the migration
    conn = spool_ids.connection(tmp_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "ids" not in tables and "seen" in tables
    assert conn.execute("SELECT day FROM seen WHERE id = ?", (bytes.fromhex(kept),)).fetchone() == (today,)
    assert [e["event"]["id"] for e in Spool(tmp_path, writer="w:s").append([ev(3)])] == [ev(3)["event"]["id"]]
    assert spool_ids.migrate(conn) == 0  # once only


def test_ids_are_forgotten_after_the_retention_once_a_day(tmp_path):
    now = [1_800_000_000.0]
    spool = Spool(tmp_path, writer="w:s", clock=lambda: now[0])
    spool.append([ev(1)])
    now[0] += 9 * 86400
    assert [e["event"]["id"] for e in spool.append([ev(1)])] == [ev(1)["event"]["id"]]  # forgotten: chained again
    conn = spool_ids.connection(tmp_path)
    assert conn.execute("SELECT COUNT(*) FROM seen").fetchone() == (1,)


def test_a_key_is_the_ids_bytes_and_other_shapes_never_collide_with_one():
    ident = "fcc17fe4773f8156ce1c41d74a612552"
    assert spool_ids.key(ident) == bytes.fromhex(ident)
    assert spool_ids.key(ident.upper()) != spool_ids.key(ident)
    assert spool_ids.key("xyz") == b"xyz"


def test_claim_takes_each_new_id_once_and_renews_an_expired_one(tmp_path):
    conn = spool_ids.connection(tmp_path)
    a, b, c = (ev(i)["event"]["id"] for i in (1, 2, 3))
    conn.execute("BEGIN")
    assert spool_ids.claim(conn, [a, b, a], day=100, retention_days=8) == {a, b}
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    assert spool_ids.claim(conn, [a, c], day=105, retention_days=8) == {c}  # a: seen on day 100, still remembered
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    # Day 109: day 100 is before the cutoff (101), so a counts as forgotten (even before the daily purge).
    assert spool_ids.claim(conn, [a, b, c], day=109, retention_days=8) == {a, b}
    conn.execute("COMMIT")
    assert dict(conn.execute("SELECT id, day FROM seen").fetchall()) == {
        spool_ids.key(a): 109, spool_ids.key(b): 109, spool_ids.key(c): 105}


def test_a_failed_write_leaves_the_batch_unclaimed(tmp_path, monkeypatch):
    spool = Spool(tmp_path, writer="w:s")
    spool.append([ev(1)])

    def broken(data):
        raise OSError("disk full")

    monkeypatch.setattr(spool, "_write", broken)
    with pytest.raises(OSError):
        spool.append([ev(2), ev(3)])
    monkeypatch.undo()
    written = Spool(tmp_path, writer="w:s").append([ev(2), ev(3), ev(1)])  # not claimed by the failed append
    assert [e["message"] for e in written] == ["login 2", "login 3"]
    events = read_all(spool)
    assert [e["citydc"]["chain"]["seq"] for e in events] == [1, 2, 3, 4] and verify(events) == []

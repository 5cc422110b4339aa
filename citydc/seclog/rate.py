"""End-to-end rate of the embedded path: emit N events into a spool, ship them into SQLite.

``bench/seclog.py`` calls ``sqlite_end_to_end``; it states the fsync policy it measured with.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citydc.seclog.emit import emit
from citydc.seclog.event import make_event
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store_sqlite import SqliteStore

__all__ = ["FSYNC_POLICY", "sample_events", "sqlite_end_to_end"]

FSYNC_POLICY = ("spool: one fsync per emitted batch before emit returns (plus the chain-head file; ids.db WAL "
                "synchronous=NORMAL); SQLite: WAL with synchronous=FULL, one transaction (one WAL fsync) per "
                "shipped batch, then the ack file (tmp + fsync + rename)")


def sample_events(n: int, tag: str = "bench") -> list[dict]:
    """Given a count, return n realistic, valid events (SSO logins over two sites)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    users = ("alice", "bob", "carol", "dave")
    return [make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                       type=["start"], outcome="failure" if i % 7 == 0 else "success",
                       message=f"login of {users[i % 4]} from 10.10.{i % 200}.{i % 250 + 1}",
                       site="siwei" if i % 2 else "fengshan", id_key=f"{tag}#{i}", user=users[i % 4],
                       source_ip=f"10.10.{i % 200}.{i % 250 + 1}", host="sso-1",
                       timestamp=t0 + timedelta(milliseconds=i), details={"attempt": i})
            for i in range(n)]


def _ship_until(spool_dir: Path, db: Path, n: int, ship_batch: int, deadline: float) -> None:
    """Child process: follow the spool into SQLite until n events are delivered (or the deadline passes)."""
    store = SqliteStore(db)
    shipper = Shipper(Spool(spool_dir), store, batch_size=ship_batch)
    delivered = 0
    try:
        while delivered < n and time.monotonic() < deadline:
            result = shipper.ship()
            delivered += result.delivered
            if not result.delivered:
                time.sleep(0.002)
    finally:
        store.close()


def sqlite_end_to_end(n: int, workdir: str | Path, emit_batch: int = 1000, ship_batch: int = 5000,
                      concurrent: bool = True, timeout: float = 120.0) -> dict:
    """Given a count and an empty work directory, emit n events in batches and ship them into SQLite; return figures.

    Event construction happens before the clock starts: the rate covers emit (validate, chain,
    spool, fsync) and ship (read, check, insert, acknowledge). ``concurrent`` runs the shipper as
    its own process while the events are emitted, as in production (emitters and ``citydc log
    ship`` are separate processes); otherwise emit first, then ship. Raise RuntimeError if the
    store does not end with exactly the n events.
    """
    workdir = Path(workdir)
    events = sample_events(n, tag=f"bench-{time.time_ns()}")
    spool_dir, db = workdir / "spool", workdir / "seclog.db"
    SqliteStore(db).close()  # create the schema outside the measurement
    child = None
    start = time.perf_counter()
    if concurrent:
        child = multiprocessing.get_context("fork").Process(
            target=_ship_until, args=(spool_dir, db, n, ship_batch, time.monotonic() + timeout))
        child.start()
    for i in range(0, n, emit_batch):
        emit(events[i:i + emit_batch], spool_dir=spool_dir)
    emitted = time.perf_counter()
    if child is not None:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
    else:
        _ship_until(spool_dir, db, n, ship_batch, time.monotonic() + timeout)
    end = time.perf_counter()
    store = SqliteStore(db)
    try:
        stored = store.count()
    finally:
        store.close()
    if stored != n:
        raise RuntimeError(f"stored {stored} of {n} events")
    return {"events": n, "seconds": end - start, "events_per_s": n / (end - start),
            "emit_events_per_s": n / (emitted - start), "concurrent": concurrent, "fsync_policy": FSYNC_POLICY}

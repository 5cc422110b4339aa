"""SQLite part of the security-log benchmark: the pipeline as a ratio against a plain insert.

An absolute events/s rate does not carry from one machine (or disk) to another, so the pipeline

    emit() → spool (fsynced) → Shipper → SqliteStore (WAL, synchronous=FULL, one transaction per batch)

is timed against a *plain insert* of the same rows on the same disk, in the same process, run by
run: ``executemany`` of the rows the store writes, into the store's own schema (its ten indexes and
the FTS5 table, filled with the same bulk statement the store uses), ``journal_mode=WAL`` and
``synchronous=FULL``, one transaction per batch of the shipper's size, everything else left at
SQLite's defaults. A third side, for information only, is the same plain insert with the store's
write settings (``store_sqlite.WRITE_PRAGMAS``: page cache, checkpoint interval), to show how much of
the ratio that tuning buys. The rows are built before the clock starts; the pipeline is timed from
the first ``emit()`` to the shipper's return (building the event dicts is not timed). The ratio is a
throughput ratio, pipeline / plain insert, so higher is better (1.0: the pipeline costs nothing
over the insert). The sides run in alternating order (ABC, CBA, ...) after one untimed round, and
the figure is the median of the paired ratios, so a change in the machine's load favours no side.

By default emit and ship run one after the other in one process: on the shared 2-core lab machine
running the shipper as its own process beside the emitter (``--concurrent``, as in production) was
no faster and much noisier (the emitter's fsyncs wait behind the store's writes), and the
sequential figure does not depend on a free second core.

Unless ``--no-fsync-count``, each step (emit, ship, plain insert) runs once more under
``strace -f -c -e trace=fsync,fdatasync`` and the calls per emit() and per batch are printed.

Run alone: ``.venv/bin/python bench/seclog_sqlite.py`` (needs no lab service). ``bench/seclog.py``
runs it after the Elasticsearch part. Helpers here are imported by it and by tests/bench.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citydc import execute
from citydc.seclog.emit import emit
from citydc.seclog.event import make_event
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store_sqlite import SCHEMA, WRITE_PRAGMAS, SqliteStore, _row

__all__ = ["FSYNC_POLICY", "compare", "count_fsyncs", "fresh_spool", "make_events", "pipeline_run",
           "plain_insert_run", "plain_rows"]

T0 = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
PIPELINE_WRITER = "bench:pipeline"

FSYNC_POLICY = ("spool: the segment fsynced once per emit() call before it returns, then the chain head "
                "(atomic write: file fsync, rename, directory fsync; ids.db WAL synchronous=NORMAL); SQLite store: "
                "WAL with synchronous=FULL, one transaction (one WAL fdatasync, plus SQLite's automatic checkpoints) "
                "per shipped batch, and only then the ack file (atomic write)")


def make_events(n: int, tag: str) -> list[dict]:
    """Given a count and a tag (part of each event's identity), return n realistic, valid (unchained) events:
    logins and backups over two sites."""
    users = [f"user{i:03d}" for i in range(200)]
    out = []
    for i in range(n):
        login = i % 5 != 0
        out.append(make_event(
            action="sso-login" if login else "backup-run", dataset="citydc.sso_audit" if login else "citydc.backup",
            kind="event", category=["authentication"] if login else ["process"],
            type=["start"] if login else ["end"], outcome="failure" if i % 9 == 0 else "success",
            message=(f"login by {users[i % 200]} from 10.10.{i % 7}.{i % 250 + 1} at 四維" if login
                     else f"backup job siwei-ldap snapshot {i:08x} finished, 1234 files, 56 MiB"),
            site="siwei" if i % 2 else "fengshan", id_key=f"{tag}#{i}", user=users[i % 200],
            source_ip=f"10.10.{i % 7}.{i % 250 + 1}", host=f"host-{i % 20}",
            timestamp=T0 + timedelta(milliseconds=i), duration_ns=i * 1000,
            details={"attempt": i % 3, "client": "sso-gw"} if login else {"snapshot": f"{i:08x}", "files": 1234}))
    return out


def fresh_spool(root: Path, name: str, events: list[dict], batch: int) -> tuple[Spool, float]:
    """Given a directory, a name, events and a batch size, emit the events into a new spool in batches of
    ``batch``; return the spool and the seconds it took."""
    spool = Spool(root / name, writer=f"bench:{name}")
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        emit(events[i:i + batch], spool_dir=spool.dir, writer=spool.writer)
    return spool, time.perf_counter() - started


def plain_rows(events: list[dict], workdir: Path) -> list[tuple]:
    """Given events and a scratch directory, return the rows the store writes for them: chained as the
    pipeline's spool chains them (same writer), each with its spool line as the document."""
    spool = Spool(workdir / "rows-spool", writer=PIPELINE_WRITER)
    emit(events, spool_dir=spool.dir, writer=spool.writer)
    rows = [_row(doc) for doc in spool.read(None, len(events) + 1).events]
    shutil.rmtree(spool.dir)
    return rows


def _plain_db(db: Path, pragmas: tuple[str, ...] = ()) -> sqlite3.Connection:
    """Given a path (and settings beyond SQLite's defaults), return a connection to a new database with the
    store's schema and durability."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for pragma in pragmas:
        conn.execute(pragma)
    conn.execute("PRAGMA synchronous=FULL")  # the store's setting: a committed batch is on disk
    conn.executescript(SCHEMA)
    return conn


def _insert_plain(conn: sqlite3.Connection, rows: list[tuple], batch: int) -> None:
    """Given a connection and rows, insert them, one transaction per batch: the rows with ``executemany``,
    then their messages into the FTS5 table with the store's statement (an external-content table is
    filled by rowid)."""
    insert = f"INSERT OR IGNORE INTO events VALUES ({','.join('?' * len(rows[0]))})"  # noqa: S608
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        top = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0]
        conn.executemany(insert, rows[i:i + batch])
        conn.execute("INSERT INTO events_fts(rowid, message) SELECT rowid, message FROM events WHERE rowid > ?",
                     (top,))
        conn.execute("COMMIT")


def plain_insert_run(rows: list[tuple], db: Path, batch: int, pragmas: tuple[str, ...] = ()) -> float:
    """Given rows, a new database path and a batch size (and settings beyond SQLite's defaults), insert them
    plainly (``_insert_plain``); return seconds. Raise RuntimeError unless the table ends with exactly these rows."""
    conn = _plain_db(db, pragmas)  # schema created before the clock, as the pipeline's store is
    try:
        started = time.perf_counter()
        _insert_plain(conn, rows, batch)
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    if stored != len(rows):
        raise RuntimeError(f"plain insert stored {stored} of {len(rows)} rows")
    return elapsed


def _ship_until(spool_dir: Path, db: Path, writer: str, n: int, ship_batch: int, deadline: float) -> None:
    """Child process (``concurrent``): follow the spool into SQLite until n events are delivered or the deadline."""
    store = SqliteStore(db)
    shipper = Shipper(Spool(spool_dir, writer=writer), store, batch_size=ship_batch)
    delivered = 0
    try:
        while delivered < n and time.monotonic() < deadline:
            delivered += shipper.ship().delivered
            if delivered < n:
                time.sleep(0.002)
    finally:
        store.close()


def pipeline_run(events: list[dict], workdir: Path, emit_batch: int, ship_batch: int, *,
                 concurrent: bool = False, timeout: float = 300.0) -> dict[str, float]:
    """Given events and an empty work directory, emit them and ship them into a new SQLite store; return
    ``seconds`` (first emit to the last event stored) and ``emit_seconds``.

    ``concurrent``: the shipper runs as its own process while the events are emitted (as emitters
    and ``citydc log ship`` run in production); otherwise emit first, then ship, in this process.
    Raise RuntimeError if the store does not end with exactly these events.
    """
    spool_dir, db, writer = workdir / "spool", workdir / "seclog.db", PIPELINE_WRITER
    SqliteStore(db).close()  # the schema, outside the measurement (as for the plain insert)
    Spool(spool_dir, writer=writer)
    child = None
    started = time.perf_counter()
    if concurrent:
        child = multiprocessing.get_context("fork").Process(
            target=_ship_until, args=(spool_dir, db, writer, len(events), ship_batch, time.monotonic() + timeout))
        child.start()
    for i in range(0, len(events), emit_batch):
        emit(events[i:i + emit_batch], spool_dir=spool_dir, writer=writer)
    emitted = time.perf_counter()
    if child is not None:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
    else:
        store = SqliteStore(db)
        try:
            result = Shipper(Spool(spool_dir, writer=writer), store, batch_size=ship_batch).ship()
        finally:
            store.close()
        if not result.ok:
            raise RuntimeError(f"shipper failed: {result.error}")
    elapsed = time.perf_counter() - started
    store = SqliteStore(db)
    try:
        stored = store.count()
    finally:
        store.close()
    expected = len(events) + 1  # and the spool's own spool-created event, which opens its chain
    if stored != expected:
        raise RuntimeError(f"the pipeline stored {stored} of {expected} events")
    return {"seconds": elapsed, "emit_seconds": emitted - started}


def compare(events: list[dict], rows: list[tuple], work: Path, runs: int, emit_batch: int, ship_batch: int,
            concurrent: bool = False, report: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Given events, their rows and a scratch directory, time the pipeline and the plain insert ``runs``
    times each, in alternating order; return per-run events/s and the paired ratios.

    A third side, for information: the plain insert with the store's write settings (WRITE_PRAGMAS:
    page cache and checkpoint interval), to show how much of the ratio the store's tuning buys.
    """
    n = len(events)
    out: dict[str, list[float]] = {"pipeline": [], "plain": [], "tuned": [], "ratio": [], "tuned_ratio": [],
                                   "emit": []}
    sides = ("plain", "pipeline", "tuned")
    for run in range(runs):
        run_dir = work / f"sqlite-run-{run}"
        run_dir.mkdir()
        for side in sides if run % 2 == 0 else sides[::-1]:
            if side == "plain":
                out["plain"].append(len(rows) / plain_insert_run(rows, run_dir / "plain.db", ship_batch))
            elif side == "tuned":
                out["tuned"].append(len(rows) / plain_insert_run(rows, run_dir / "tuned.db", ship_batch, WRITE_PRAGMAS))
            else:
                figures = pipeline_run(events, run_dir, emit_batch, ship_batch, concurrent=concurrent)
                out["pipeline"].append(n / figures["seconds"])
                out["emit"].append(n / figures["emit_seconds"])
        out["ratio"].append(out["pipeline"][-1] / out["plain"][-1])
        out["tuned_ratio"].append(out["pipeline"][-1] / out["tuned"][-1])
        report(f"sqlite run {run + 1}: pipeline {out['pipeline'][-1]:,.0f} ev/s (emit alone "
               f"{out['emit'][-1]:,.0f} ev/s)   plain insert {out['plain'][-1]:,.0f} rows/s (ratio "
               f"{out['ratio'][-1]:.3f})   plain with the store's settings {out['tuned'][-1]:,.0f} rows/s "
               f"(ratio {out['tuned_ratio'][-1]:.3f})")
        shutil.rmtree(run_dir)
    return out


# -- fsync count: each step once more, under strace ---------------------------------------------------

_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", re.M)


def _step(step: str, work: Path, n: int, emit_batch: int, ship_batch: int) -> None:
    """Run one step of the pipeline (``emit``, ``ship`` or ``plain``) in ``work``; ``fill`` prepares them.

    Called in a child process (``--step``), under strace for all but ``fill``, so that only the
    step's own fsyncs are counted.
    """
    events = make_events(n, "fsync")
    if step == "fill":
        Spool(work / "spool", writer=PIPELINE_WRITER)
        for i in range(0, n, emit_batch):
            emit(events[i:i + emit_batch], spool_dir=work / "spool", writer=PIPELINE_WRITER)
        SqliteStore(work / "seclog.db").close()
        _plain_db(work / "plain.db").close()
    elif step == "emit":
        fresh_spool(work, "emit-spool", events, emit_batch)
    elif step == "ship":
        store = SqliteStore(work / "seclog.db")
        result = Shipper(Spool(work / "spool", writer=PIPELINE_WRITER), store, batch_size=ship_batch).ship()
        store.close()
        if result.delivered != n + 1:  # and the spool's own spool-created event
            raise RuntimeError(f"shipped {result.delivered} of {n + 1}")
    elif step == "plain":
        rows = [_row(doc) for doc in Spool(work / "spool").read(None, n + 1).events]
        conn = sqlite3.connect(work / "plain.db", isolation_level=None)  # made by "fill": WAL is persistent
        conn.execute("PRAGMA synchronous=FULL")
        _insert_plain(conn, rows, ship_batch)
        conn.close()
    else:
        raise ValueError(f"unknown step {step!r}")


def count_fsyncs(n: int, emit_batch: int, ship_batch: int) -> dict[str, dict[str, int]]:
    """Given the run's sizes, return {step: {"fsync": calls, "fdatasync": calls}} for emit, ship and plain.

    Raise execute.ToolFailed if strace is missing (``make bench`` installs it).
    """
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-fsync-"))
    me = [sys.executable, str(Path(__file__).resolve()), "--events", str(n), "--emit-batch", str(emit_batch),
          "--batch", str(ship_batch), "--work", str(work)]
    counts: dict[str, dict[str, int]] = {}
    try:
        res = execute.run("python", [*me, "--step", "fill"], timeout=600)
        if not res.ok:
            raise RuntimeError(f"preparing the fsync count failed: {res.stderr[-800:]}")
        for step in ("emit", "plain", "ship"):
            out = work / f"strace-{step}.txt"
            res = execute.run("strace", ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out),
                                         *me, "--step", step], timeout=600)
            if not res.ok:
                raise RuntimeError(f"strace of the {step} step failed: {res.stderr[-800:]}")
            found = {name: int(calls) for calls, name in _STRACE_ROW.findall(out.read_text())}
            counts[step] = {"fsync": found.get("fsync", 0), "fdatasync": found.get("fdatasync", 0)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def report_fsyncs(counts: dict[str, dict[str, int]], n: int, emit_batch: int, ship_batch: int,
                  report: Callable[[str], None] = print) -> None:
    """Given count_fsyncs' answer, print the calls per emit() call and per shipped batch."""
    emits, batches = -(-n // emit_batch), -(-n // ship_batch)
    for step, per, unit, units in (("emit", emits, "emit() call", "emit() calls"),
                                   ("ship", batches, "shipped batch", "shipped batches"),
                                   ("plain", batches, "plain-insert batch", "plain-insert batches")):
        c = counts[step]
        report(f"# fsyncs, {step}: {c['fsync']} fsync + {c['fdatasync']} fdatasync for {per} {units} = "
               f"{(c['fsync'] + c['fdatasync']) / per:.1f} per {unit}")


def sqlite_part(events_n: int, emit_batch: int, ship_batch: int, runs: int, *, concurrent: bool = False,
                fsyncs: bool = True, report: Callable[[str], None] = print) -> float:
    """Given the sizes, run the comparison (and the fsync count), print it; return the median paired ratio."""
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-seclog-sqlite-"))
    try:
        gc.collect()
        events = make_events(events_n, "sqlite")
        rows = plain_rows(make_events(events_n, "sqlite"), work)  # the same events, sealed the same way
        gc.collect()
        gc.freeze()  # the pre-built events and rows are not part of what is measured, nor their weight on the GC
        report(f"# SQLite {sqlite3.sqlite_version}: {events_n} events ({sum(len(r[-1]) for r in rows) / len(rows):.0f} "
               f"bytes as a spool line), emit() batches of {emit_batch}, shipper and plain-insert batches of "
               f"{ship_batch}, {runs} pairs in alternating order, "
               f"{'shipper as its own process beside the emitter' if concurrent else 'emit then ship'}")
        report(f"# durability: {FSYNC_POLICY}; plain insert: executemany, WAL, synchronous=FULL, same schema and FTS")
        # One untimed pair first: the page cache, SQLite's and Python's caches.
        compare(events, rows, work, 1, emit_batch, ship_batch, concurrent, report=lambda _line: None)
        figures = compare(events, rows, work, runs, emit_batch, ship_batch, concurrent, report)
        gc.unfreeze()
        ratio = statistics.median(figures["ratio"])
        median = {side: statistics.median(values) for side, values in figures.items()}
        report(f"SQLite medians: pipeline {median['pipeline']:,.0f} ev/s (emit alone {median['emit']:,.0f} ev/s); "
               f"plain insert {median['plain']:,.0f} rows/s; paired ratio pipeline/plain {ratio:.3f} "
               f"(per run {min(figures['ratio']):.3f}-{max(figures['ratio']):.3f}; throughput: higher is better)")
        report(f"# for information: plain insert with the store's settings ({', '.join(WRITE_PRAGMAS)}) "
               f"{median['tuned']:,.0f} rows/s; paired ratio pipeline/that {median['tuned_ratio']:.3f}")
        if fsyncs:
            report_fsyncs(count_fsyncs(events_n, emit_batch, ship_batch), events_n, emit_batch, ship_batch, report)
        report(f"RATIO sqlite_pipeline_vs_plain_insert {ratio:.3f}")
        return ratio
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sqlite-events", "--events", dest="sqlite_events", type=int, default=50_000)
    parser.add_argument("--sqlite-runs", type=int, default=40, help="SQLite pairs (pipeline, plain insert)")
    parser.add_argument("--concurrent", action="store_true",
                        help="SQLite: run the shipper as its own process while emitting (production's shape)")
    parser.add_argument("--no-fsync-count", dest="fsync_count", action="store_false",
                        help="skip counting fsyncs under strace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=5000, help="shipper batch (the Shipper's default)")
    parser.add_argument("--emit-batch", type=int, default=5000,
                        help="events per emit() call (one fsync each); the shipper's and the plain insert's batch size")
    parser.add_argument("--step", choices=("fill", "emit", "ship", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _step(args.step, args.work, args.sqlite_events, args.emit_batch, args.batch)
        return
    sqlite_part(args.sqlite_events, args.emit_batch, args.batch, args.sqlite_runs, concurrent=args.concurrent,
                fsyncs=args.fsync_count)


if __name__ == "__main__":
    main()

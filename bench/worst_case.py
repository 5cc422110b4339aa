"""Worst-case inputs that used to make per-item work grow with what was already seen, timed on the current code.

    python bench/worst_case.py

No peer tool: each figure is a bound, with what the same input cost before the fix (measured 2026-12-06 with
the code of the day before, in the same process) in the docs named. All in this process, bounded in count:

- ``spray_20000_ms``: the auth detector fed 20,000 failed logins of distinct accounts from one address within
  its window (docs/ldap-audit.md; before: 10.0 s);
- ``verify_since_20000_ms``: the SQLite store's ``chain(since)`` (``citydc log verify --since``) over 20,000
  events of one writer, the second half after ``since`` (docs/security-log.md; before: 17.9 s);
- ``discontinuity_2000_ms``: one SNMP poll in which 2,000 interfaces with 12 counters each report a new
  ifCounterDiscontinuityTime (docs/snmp.md; before: 409 ms);
- ``validated_evict_us``: one remember() (encoding, digest and eviction) into the security log's full
  validated-event memory of 65,536 digests (citydc/seclog/validated.py; before: 52 us, now about 4).

The NetFlow withdraw-all flood is in bench/netflow_malformed.py. Last lines: ``FIGURE <name> <value>``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citydc.collectors.snmp.counters import TargetCounters
from citydc.config.models import AuthDetection
from citydc.seclog import validated
from citydc.seclog.event import make_event
from citydc.seclog.store_sqlite import SqliteStore
from citydc.sso.detect import Attempt, Detector

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def spray_ms() -> float:
    det = Detector(AuthDetection())
    attempts = [Attempt(T0 + timedelta(milliseconds=10 * i), f"user{i}", "203.0.113.9", False, "keycloak")
                for i in range(20_000)]
    started = time.perf_counter()
    detections = sum(len(det.feed(a)) for a in attempts)
    elapsed = time.perf_counter() - started
    assert detections == 1, detections  # one spraying detection per window
    return elapsed * 1e3


def verify_since_ms() -> float:
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-worst-"))
    try:
        store = SqliteStore(work / "log.db")
        n, base = 20_000, 1_700_000_000_000
        store.conn.executemany("INSERT INTO events (id, ts_ms, writer, seq, message, doc) VALUES (?,?,?,?,?,?)",
                               [(f"id{i}", base + i * 1000, "w1", i, "m", "{}") for i in range(n)])
        store.conn.commit()
        started = time.perf_counter()
        # placeholder documents: chain() hands each back as a changed event, cheaply; the query is what is timed
        rows = sum(1 for _ in store.chain(datetime.fromtimestamp((base + n * 500) / 1000, UTC)))
        elapsed = time.perf_counter() - started
        store.close()
        assert rows == n // 2, rows
        return elapsed * 1e3
    finally:
        shutil.rmtree(work, ignore_errors=True)


def discontinuity_ms() -> float:
    counters = TargetCounters()
    columns = [f"c{k}" for k in range(12)]
    for i in range(2000):
        counters.observe_discontinuity(i, 0)
        for column in columns:
            counters.update(column, i, 10, 64)
    started = time.perf_counter()
    changed = sum(counters.observe_discontinuity(i, 5) for i in range(2000))
    elapsed = time.perf_counter() - started
    assert changed == 2000
    return elapsed * 1e3


def validated_evict_us() -> float:
    docs = [make_event(action="bench", dataset="citydc.bench", kind="event", category=["host"], type=["info"],
                       outcome="success", message=f"event {i}", site="siwei", id_key=str(i))
            for i in range(validated.LIMIT + 20_000)]
    for doc in docs[:validated.LIMIT]:
        validated.remember(doc)
    started = time.perf_counter()
    for doc in docs[validated.LIMIT:]:
        validated.remember(doc)
    elapsed = time.perf_counter() - started
    # each remember() also encodes and hashes its event: that part is the same before and after the fix
    return elapsed / 20_000 * 1e6


def main() -> None:
    figures = {"spray_20000_ms": spray_ms(), "verify_since_20000_ms": verify_since_ms(),
               "discontinuity_2000_ms": discontinuity_ms(), "validated_evict_us": validated_evict_us()}
    for name, value in figures.items():
        print(f"FIGURE {name} {value:.3f}")


if __name__ == "__main__":
    main()

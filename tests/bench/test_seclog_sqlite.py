"""bench/seclog_sqlite.py's helpers: both sides store the same rows; the pipeline stores every event.

No timing is asserted (figures belong to the bench)."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

from citydc.seclog.store_sqlite import SqliteStore

BENCH = Path(__file__).resolve().parents[2] / "bench" / "seclog_sqlite.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_seclog_sqlite", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _table(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        # Every column but the document: each side's spool has its own incarnation id, which is in the
        # document (chain fields and hashes); the lengths of the documents are compared instead. Each
        # side's own spool-created event (its path, its incarnation) is counted, not compared.
        opening = conn.execute("SELECT COUNT(*) FROM events WHERE action = 'spool-created'").fetchone()[0]
        assert opening == 1
        rows = conn.execute("SELECT id, ts_ms, user_name, action, outcome, dataset, site, source_ip, kind, host_name, "
                            "writer, seq, message, length(doc) FROM events WHERE action != 'spool-created' "
                            "ORDER BY id").fetchall()
        fts = conn.execute("SELECT e.id FROM events_fts f JOIN events e ON e.rowid = f.rowid "
                           "WHERE events_fts MATCH '\"siwei\" \"snapshot\"' ORDER BY e.id").fetchall()
    finally:
        conn.close()
    return rows, fts


@pytest.mark.parametrize("concurrent", [False, True])
def test_pipeline_and_plain_insert_store_the_same_rows(bench, tmp_path, concurrent):
    events = bench.make_events(230, "t")
    rows = bench.plain_rows(bench.make_events(230, "t"), tmp_path)
    figures = bench.pipeline_run(events, tmp_path / "p", emit_batch=70, ship_batch=50, concurrent=concurrent,
                                 timeout=60)
    assert figures["seconds"] >= figures["emit_seconds"] > 0
    assert bench.plain_insert_run(rows, tmp_path / "plain.db", batch=50) > 0
    pipeline, plain = _table(tmp_path / "p" / "seclog.db"), _table(tmp_path / "plain.db")
    # every 5th event is a backup at siwei or fengshan
    assert len(pipeline[0]) == 230 and len(pipeline[1]) == 46
    assert pipeline == plain  # the baseline inserts exactly what the pipeline stores, full text included
    assert not (tmp_path / "rows-spool").exists()


def test_pipeline_run_raises_when_the_store_misses_events(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(SqliteStore, "count", lambda self: 229)
    with pytest.raises(RuntimeError, match="stored 229 of 231"):
        bench.pipeline_run(bench.make_events(230, "m"), tmp_path, emit_batch=100, ship_batch=100)


def test_compare_pairs_both_sides_in_alternating_order(bench, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "plain_insert_run", lambda rows, db, batch, pragmas=():
                        calls.append("tuned" if pragmas else "plain") or (1.0 if pragmas else 2.0))
    monkeypatch.setattr(bench, "pipeline_run", lambda events, run_dir, *a, **k: calls.append("pipeline")
                        or {"seconds": 4.0, "emit_seconds": 1.0})
    out = bench.compare([{}] * 10, [()] * 10, tmp_path, 3, 5, 5, report=lambda _line: None)
    assert calls == ["plain", "pipeline", "tuned", "tuned", "pipeline", "plain", "plain", "pipeline", "tuned"]
    assert out["ratio"] == [0.5, 0.5, 0.5]  # throughput ratio: (10 / 4 s) / (10 / 2 s)
    assert out["tuned_ratio"] == [0.25, 0.25, 0.25]


STRACE_C = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 87.85    0.038485         381       101           fdatasync
 12.15    0.005322          47       113         2 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.043807         204       214         2 total
"""


def test_strace_summary_is_read_per_call(bench):
    found = {name: int(calls) for calls, name in bench._STRACE_ROW.findall(STRACE_C)}
    assert found == {"fdatasync": 101, "fsync": 113}

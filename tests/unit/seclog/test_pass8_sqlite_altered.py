"""An auditor's question over a SQLite store whose stored document was altered into text that is no JSON.

`citydc log verify` names such an event; `log search`, `log stats` and the saved questions met it with a
Python traceback (json.loads in search, SQLite's "malformed JSON" from json_each/json_extract in stats and in
the filters on fields that are no column). Each now stops with one line naming the store, and what to do.
"""

from __future__ import annotations

import sqlite3

import pytest

from citydc.seclog.store import DeliveryError, Query
from citydc.seclog.store_sqlite import SqliteStore
from tests.unit.seclog.test_store_sqlite import chained


def stored_with_garbage_at_seq_5(path, events) -> SqliteStore:
    """Given a store's path and chained events, store them, overwrite the document at seq 5 with text that is no
    JSON (as an edit outside citydc would), and return the store opened again for reading."""
    store = SqliteStore(path)
    store.put(events)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE events SET doc = 'garbage' WHERE seq = 5")
    conn.commit()
    conn.close()
    return SqliteStore(path, create=False)


@pytest.fixture
def altered(tmp_path):
    """A store of 10 events, the one at seq 5 with its document overwritten by text that is no JSON."""
    events = chained(10)
    reader = stored_with_garbage_at_seq_5(tmp_path / "log.db", events)
    yield reader, events[4]["event"]["id"]
    reader.close()


def test_search_names_the_event_whose_document_is_no_json(altered):
    store, event_id = altered
    with pytest.raises(DeliveryError) as caught:
        list(store.search(Query()))
    assert event_id in str(caught.value) and "not a JSON object" in str(caught.value)
    assert caught.value.reason == "sqlite_error"


def test_a_filter_on_a_field_that_is_no_column_says_the_store_was_altered(altered):
    store, _ = altered
    # The saved question failed-logins filters event.category (json_each over every document).
    with pytest.raises(DeliveryError, match="a stored document is not JSON"):
        list(store.search(Query(filters={"event.category": "authentication"})))


def test_stats_by_a_field_that_is_no_column_says_the_store_was_altered(altered):
    store, _ = altered
    with pytest.raises(DeliveryError, match=r"a stored document is not JSON .*citydc log verify"):
        store.stats(Query(), ["citydc.sso_audit.attempt"])
    assert sum(n for _, n in store.stats(Query(), ["user.name"])) == 10  # columns alone still answer


def test_verify_reports_the_unreadable_document_as_one_changed_event_of_its_chain(tmp_path):
    # The walk took the row for a chain of its own, of no incarnation, starting at its seq: "removed: seq 1..4
    # missing" there, and "removed: seq 5 missing" in the real chain, for one altered row.
    from citydc.seclog.chain import GENESIS, link, verify_report
    from citydc.seclog.event import make_event

    incarnation = "20260301T000000Z-0a1b2c3d"
    events, prev = [], GENESIS
    for i, doc in enumerate(make_event(action="sso-login", dataset="citydc.sso_audit", kind="event",
                                       category=["authentication"], type=["start"], outcome="success",
                                       message=f"login {i}", site="siwei", id_key=f"u{i}") for i in range(8)):
        events.append(link(doc, "w:spool", i + 1, prev, incarnation))
        prev = events[-1]["event"]["hash"]
    reader = stored_with_garbage_at_seq_5(tmp_path / "log.db", events)
    try:
        report = verify_report(reader.chain())
    finally:
        reader.close()
    assert [(f.problem, f.writer, f.incarnation, f.seq, f.event_id) for f in report.findings] == [
        ("changed", "w:spool", incarnation, 5, events[4]["event"]["id"])]
    assert "cannot be read" in report.findings[0].reason


def test_a_store_another_process_holds_locked_is_a_failed_read_not_a_config_error(tmp_path, monkeypatch):
    # Seen with the real sqlite3 holding `PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE`: `log search` waited
    # 30 s, then said "cannot open the security log store: ... database is locked (security_log.sink.path)",
    # exit 2, as if the config named the wrong file.
    path = tmp_path / "log.db"
    store = SqliteStore(path)
    store.put(chained(3))
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("SELECT COUNT(*) FROM events").fetchone()
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: connect(*a, **{**kw, "timeout": 0.05}))  # not 30 s
    try:
        with pytest.raises(DeliveryError) as caught:
            SqliteStore(path, create=False)
    finally:
        holder.close()
    assert caught.value.reason == "sqlite_busy" and getattr(caught.value, "field", None) is None
    assert "locked" in str(caught.value) and "again" in str(caught.value)

"""SQLite store: idempotent batches, the shared query semantics, stats and the chain walk."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from citydc.seclog.chain import GENESIS, link, verify
from citydc.seclog.event import make_event
from citydc.seclog.store import DeliveryError, Query
from citydc.seclog.store_sqlite import SqliteStore, fts_query

T0 = datetime(2026, 3, 1, tzinfo=UTC)
USERS = ("alice", "bob", "carol")


def chained(n: int, writer: str = "w:spool", tag: str = "") -> list[dict]:
    out, prev = [], GENESIS
    for i in range(n):
        doc = make_event(action="sso-login" if i % 5 else "ldap-bind", dataset="citydc.sso_audit", kind="event",
                         category=["authentication"], type=["start"], outcome="failure" if i % 4 == 0 else "success",
                         message=f"login {'denied' if i % 4 == 0 else 'granted'} for {USERS[i % 3]} via gw{i % 5}",
                         site="siwei" if i % 2 else "fengshan", id_key=f"{tag}{i}", user=USERS[i % 3],
                         source_ip=f"10.10.{i % 4}.{i % 250 + 1}",
                         timestamp=T0 + timedelta(milliseconds=(i // 3) * 7), details={"attempt": i})
        doc = link(doc, writer, i + 1, prev)
        prev = doc["event"]["hash"]
        out.append(doc)
    return out


def ids(events) -> list[str]:
    return [e["event"]["id"] for e in events]


def order(events, newest_first=True) -> list[str]:
    return ids(sorted(events, key=lambda e: (e["@timestamp"], e["event"]["id"]), reverse=newest_first))


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "log.db")
    yield s
    s.close()


def test_wal_mode_and_duplicates_ignored(store):
    events = chained(30)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.put(events[:20]) == 20
    assert store.put(events[:20]) == 0
    assert store.put(events[10:]) == 10
    assert store.count() == 30
    assert sorted(ids(store.search(Query()))) == sorted(ids(events))


def test_search_order_filters_text_and_range(store):
    events = chained(60)
    store.put(events)
    got = list(store.search(Query(newest_first=False)))
    assert ids(got) == order(events, newest_first=False)
    assert got == sorted(events, key=lambda e: (e["@timestamp"], e["event"]["id"]))  # documents as given
    assert ids(store.search(Query(limit=7))) == order(events)[:7]
    alice_fail = [e for e in events if e["user"]["name"] == "alice" and e["event"]["outcome"] == "failure"]
    assert alice_fail
    assert ids(store.search(Query(filters={"user.name": "alice", "event.outcome": "failure"}))) == order(alice_fail)
    denied_carol = [e for e in events if "denied" in e["message"] and "carol" in e["message"]]
    assert denied_carol
    assert ids(store.search(Query(text="Denied CAROL"))) == order(denied_carol)
    assert list(store.search(Query(text="nobody"))) == []
    since, until = T0 + timedelta(milliseconds=21), T0 + timedelta(milliseconds=70)
    window = [e for e in events if "2026-03-01T00:00:00.021Z" <= e["@timestamp"] < "2026-03-01T00:00:00.070Z"]
    assert 0 < len(window) < len(events)
    assert ids(store.search(Query(since=since, until=until))) == order(window)
    # Filters on fields without a column: lists match any element, details by path.
    assert len(list(store.search(Query(filters={"event.category": "authentication"})))) == 60
    assert ids(store.search(Query(filters={"citydc.sso_audit.attempt": 7}))) == [events[7]["event"]["id"]]


def test_stats_counts_largest_first_and_missing_as_empty(store):
    events = chained(40)
    store.put(events)
    stats = store.stats(Query(), ["user.name", "event.outcome"])
    expected: dict[tuple[str, str], int] = {}
    for e in events:
        key = (e["user"]["name"], e["event"]["outcome"])
        expected[key] = expected.get(key, 0) + 1
    assert dict(stats) == expected
    counts = [c for _, c in stats]
    assert counts == sorted(counts, reverse=True)
    assert dict(store.stats(Query(filters={"labels.site": "siwei"}), ["labels.site"])) == {("siwei",): 20}
    assert dict(store.stats(Query(), ["host.name"])) == {("",): 40}
    with pytest.raises(ValueError, match="not an ECS field"):
        store.stats(Query(), ["user.name); DROP TABLE events; --"])


def test_chain_walk_and_since(store):
    a, b = chained(20, "a:spool", "a"), chained(10, "b:spool", "b")
    store.put(b + a)
    walked = list(store.chain())
    assert [(e["citydc"]["chain"]["writer"], e["citydc"]["chain"]["seq"]) for e in walked] == \
        [("a:spool", i) for i in range(1, 21)] + [("b:spool", i) for i in range(1, 11)]
    assert verify(walked) == []
    later = list(store.chain(T0 + timedelta(milliseconds=28)))
    assert later[0]["citydc"]["chain"]["seq"] == 13  # (12 // 3) * 7 = 28 ms
    assert verify(later, partial=True) == []


def test_a_column_edited_behind_the_documents_back_is_found(store, tmp_path):
    store.put(chained(10))
    raw = sqlite3.connect(tmp_path / "log.db")
    raw.execute("UPDATE events SET user_name = 'mallory' WHERE seq = 4")
    raw.commit()
    raw.close()
    [finding] = verify(store.chain())
    assert (finding.problem, finding.seq) == ("changed", 4)
    assert "user.name" in finding.reason


def test_fts_query_quotes_words():
    assert fts_query('a OR b" NEAR(x)') == '"a" "OR" "b" "NEAR" "x"'
    assert fts_query("  ") is None


def test_row_columns_are_the_ecs_fields_they_are_named_after():
    from citydc.seclog.store_sqlite import COLUMNS, _get, _row

    docs = chained(3)
    docs.append(link(make_event(action="backup-run", dataset="citydc.backup", kind="event", category=["process"],
                                type=["end"], outcome="unknown", message="bare", site="siwei", id_key="bare",
                                host="backup-1", timestamp=T0), "w:spool", 4, docs[-1]["event"]["hash"]))
    for doc in docs:
        row = _row(doc)
        assert row[2:2 + len(COLUMNS)] == tuple(_get(doc, field) for field in COLUMNS)
        assert row[-4:-1] == (doc["citydc"]["chain"]["writer"], doc["citydc"]["chain"]["seq"], doc["message"])
    assert _row(docs[-1])[2] is None and _row(docs[-1])[-5] == "backup-1"  # no user; host.name present


# -- the insert path: rows prepared ahead (the shipper's read-ahead thread), a bad event refused by name ----------


def test_prepared_rows_store_what_put_stores(tmp_path):
    events = chained(40)
    direct, prepared = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    try:
        assert direct.put(events) == 40
        rows = prepared.prepare(events)
        assert len(rows) == 40 and rows.store is prepared and not any(isinstance(r, dict) for r in rows)
        assert prepared.put(rows) == 40
        assert prepared.put(prepared.prepare(events[30:])) == 0  # redelivered: ignored by id
        table = "SELECT e.*, f.message FROM events e JOIN events_fts f ON f.rowid = e.rowid ORDER BY e.id"
        assert direct.conn.execute(table).fetchall() == prepared.conn.execute(table).fetchall()
        with pytest.raises(ValueError, match="store that prepared them"):
            direct.put(prepared.prepare(events[:3]))
    finally:
        direct.close()
        prepared.close()


@pytest.mark.parametrize("use_prepare", [False, True])
def test_an_event_the_table_cannot_take_is_refused_by_its_place_in_the_batch(store, use_prepare):
    events = chained(5)
    del events[3]["@timestamp"]
    with pytest.raises(DeliveryError, match="event 3 of the batch") as caught:
        store.put(store.prepare(events) if use_prepare else events)
    assert caught.value.reason == "bad_event"
    assert store.count() == 0  # nothing of the batch is stored


def test_the_shipper_hands_prepared_rows_to_the_store(tmp_path):
    from citydc.seclog.shipper import Shipper
    from citydc.seclog.spool import Spool
    from citydc.seclog.store_sqlite import PreparedRows

    spool = Spool(tmp_path / "spool", writer="w:spool")
    spool.append([make_event(
        action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"], type=["start"],
        outcome="success", message=f"login {i}", site="siwei", id_key=f"p{i}", timestamp=T0) for i in range(25)])
    store = SqliteStore(tmp_path / "log.db")
    seen: list[type] = []
    put = store.put
    store.put = lambda batch: seen.append(type(batch)) or put(batch)
    try:
        result = Shipper(spool, store, batch_size=10).ship()
        # 25 events and the spool's opening spool-created event
        assert result.ok and result.stored == 26 and store.count() == 26
        assert PreparedRows in seen[1:] and all(t is PreparedRows for t in seen[1:])  # all but the first batch
        assert verify(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads) == []
    finally:
        store.close()


def test_chain_since_starts_each_writer_at_its_first_event_then(store):
    """Against the whole walk: for any ``since``, each writer from its first position at or after it on
    (a writer with none is left out), in (writer, seq) order."""
    store.put(chained(20, "a:spool", "a") + chained(10, "b:spool", "b") + chained(31, "c:spool", "c"))
    walked = list(store.chain())

    def position(e: dict) -> tuple[str, int]:
        return e["citydc"]["chain"]["writer"], e["citydc"]["chain"]["seq"]

    for ms in range(0, 80, 3):
        since = T0 + timedelta(milliseconds=ms)
        first: dict[str, int] = {}
        for e in walked:
            w, seq = position(e)
            if datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")) >= since and w not in first:
                first[w] = seq
        expected = [position(e) for e in walked if position(e)[0] in first and position(e)[1] >= first[position(e)[0]]]
        assert [position(e) for e in store.chain(since)] == expected, ms


def test_a_directory_as_the_database_is_one_error_naming_it(tmp_path):
    # SQLite said only "disk I/O error", as a traceback, for security_log.sink.path: . (finding 8)
    from citydc.seclog.store_sqlite import StoreUnusable

    with pytest.raises(StoreUnusable) as caught:
        SqliteStore(tmp_path)
    assert str(caught.value) == f"cannot use {tmp_path}: Is a directory (security_log.sink.path)"

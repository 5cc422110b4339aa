"""What the security log's chain walk, shipper and stores check (the exploratory test of the SQLite store,
findings 1, 2, 5 and 7): a tail rewritten behind a backlog, a spool line no store can keep, a full-text
index out of step with the events, and the writer ids of spools whose directories share a name."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from citydc.seclog import make_event
from citydc.seclog.chain import GENESIS, ChainHead, chain_hash, default_writer, link, verify_report
from citydc.seclog.emit import emit
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store_es import ElasticsearchStore, ElasticsearchStoreError
from citydc.seclog.store_sqlite import SqliteStore

W = "host:spool"


def login(i: int, user: str = "alice") -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="failure", message=f"login failed {i}", site="siwei", id_key=f"l{i}",
                      user=user)


def chained(n: int) -> list[dict]:
    docs, prev = [], GENESIS
    for i in range(1, n + 1):
        doc = link(login(i), W, i, prev)
        docs.append(doc)
        prev = doc["event"]["hash"]
    return docs


def rehashed_from(docs: list[dict], seq: int, message: str) -> list[dict]:
    """Given a chain, return it with event ``seq``'s message changed and every hash from there on recomputed."""
    out, prev = [dict(d) for d in docs[:seq - 1]], docs[seq - 2]["event"]["hash"] if seq > 1 else GENESIS
    for doc in docs[seq - 1:]:
        doc = json.loads(json.dumps(doc))
        if doc["citydc"]["chain"]["seq"] == seq:
            doc["message"] = message
        doc["citydc"]["chain"]["prev"] = prev
        prev = doc["event"]["hash"] = chain_hash(prev, W, doc["citydc"]["chain"]["seq"], doc)
        out.append(doc)
    return out


# -- finding 1: the delivered head's hash ----------------------------------------------------------------


def test_a_tail_rewritten_and_rehashed_while_events_wait_in_the_spool_is_changed_at_the_delivered_head():
    docs = chained(4)  # 4 emitted, 3 delivered: the 4th waits in the spool
    delivered = {W: ChainHead(W, 3, docs[2]["event"]["hash"])}
    emitted = {W: ChainHead(W, 4, docs[3]["event"]["hash"])}
    assert verify_report(docs[:3], delivered=delivered, emitted=lambda: emitted).findings == []
    forged = rehashed_from(docs[:3], 2, "vpn login ok")
    findings = verify_report(forged, delivered=delivered, emitted=lambda: emitted).findings
    assert [(f.problem, f.seq) for f in findings] == [("changed", 3)]
    # Honest about what it cannot know: which event before the head was altered.
    assert "ack.json" in findings[0].reason and "hashed again" in findings[0].reason
    assert "cannot be told" in findings[0].reason


def test_a_partial_walk_that_starts_after_the_delivered_head_does_not_compare_it():
    docs = chained(4)
    delivered = {W: ChainHead(W, 2, "f" * 64)}
    assert verify_report(docs[2:], partial=True, delivered=delivered).findings == []


# -- finding 2: a spool line no store can keep -----------------------------------------------------------


def _damage_line(spool_dir: Path, seq: int, change) -> None:
    """Rewrite the spool line of ``seq`` with ``change`` applied to its parsed event (the hash left as it was)."""
    for segment in sorted(spool_dir.glob("seg-*.jsonl")):
        lines = segment.read_bytes().split(b"\n")
        for i, raw in enumerate(lines):
            if raw and json.loads(raw)["citydc"]["chain"]["seq"] == seq:
                doc = json.loads(raw)
                change(doc)
                lines[i] = json.dumps(doc, ensure_ascii=False).encode()
                segment.write_bytes(b"\n".join(lines))
                return
    raise AssertionError(f"no line of seq {seq}")


def _set_timestamp(doc: dict) -> None:
    doc["@timestamp"] = "2026-33-01T02:00:00.000Z"


def _set_user_list(doc: dict) -> None:
    doc["user"] = {"name": ["a", "b"]}


def _set_huge_seq(doc: dict) -> None:
    doc["citydc"]["chain"]["seq"] = 2**70


# (A seq beyond 64 bits is refused by the spool's cheap check already: orjson reads it as a float.)
@pytest.mark.parametrize(("change", "field"), [(_set_timestamp, "@timestamp"), (_set_user_list, "user.name")])
def test_a_spool_line_no_store_can_keep_is_skipped_and_the_others_delivered(tmp_path, change, field):
    spool_dir = tmp_path / "spool"
    assert emit([login(i) for i in range(1, 6)], spool_dir=spool_dir) == 5  # seq 1 is spool-created: 6 lines
    _damage_line(spool_dir, 3, change)
    store = SqliteStore(tmp_path / "seclog.db")
    spool = Spool(spool_dir)
    try:
        with spool.shipping():
            result = Shipper(spool, store, max_attempts=1).ship()
        assert result.error is None  # not a batch the store refuses again and again
        assert result.delivered == 5 and store.count() == 5
        [bad] = result.corrupt
        assert bad.format().startswith(f"{spool_dir / 'seg-0000000001.jsonl'}:3: skipped corrupted spool line: ")
        assert f"not a valid event ({field}:" in bad.reason
        findings = verify_report(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads).findings
        assert [(f.problem, f.seq) for f in findings] == [("removed", 3)]
    finally:
        store.close()


@pytest.mark.parametrize(("change", "field"), [(_set_timestamp, "@timestamp"), (_set_user_list, "user.name"),
                                               (_set_huge_seq, "citydc.chain.seq")])
def test_both_stores_refuse_such_an_event_naming_the_same_field(tmp_path, change, field):
    doc = chained(1)[0]
    change(doc)
    sqlite_store = SqliteStore(tmp_path / "seclog.db")
    try:
        with pytest.raises(Exception, match=f"cannot be stored: .*{field}") as sqlite_err:
            sqlite_store.put([doc])
    finally:
        sqlite_store.close()
    with pytest.raises(ElasticsearchStoreError, match=f"cannot be stored: {field}") as es_err:
        ElasticsearchStore(object(), endpoint="https://es.example:9200").prepare([doc])
    assert sqlite_err.value.reason == "bad_event" and es_err.value.reason == "invalid_event"


# -- finding 5: the full-text index ----------------------------------------------------------------------


def test_a_full_text_index_out_of_step_with_the_events_is_reported(tmp_path):
    path = tmp_path / "seclog.db"
    store = SqliteStore(path)
    store.put(chained(3))
    assert store.search_index_problem() is None
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO events_fts(events_fts, rowid, message) SELECT 'delete', rowid, message FROM events "
                 "WHERE seq = 2")
    conn.commit()
    conn.close()
    store = SqliteStore(path)  # read-only, as an auditor's verify opens it
    try:
        assert not store.writable
        problem = store.search_index_problem()
    finally:
        store.close()
    assert problem is not None and "1 event(s) missing" in problem and "'rebuild'" in problem


# -- finding 7: writer ids -------------------------------------------------------------------------------


def _writer_of_lines(spool_dir: Path) -> set[str]:
    return {json.loads(x)["citydc"]["chain"]["writer"] for seg in spool_dir.glob("seg-*.jsonl")
            for x in seg.read_text().splitlines()}


def test_two_new_spools_whose_directories_share_a_name_are_two_writers(tmp_path):
    a, b = tmp_path / "siwei" / "spool", tmp_path / "fengshan" / "spool"
    emit(login(1), spool_dir=a)
    emit(login(1), spool_dir=b)
    (wa,), (wb,) = _writer_of_lines(a), _writer_of_lines(b)
    own = f"{socket.gethostname()}:spool~"
    assert wa != wb and wa.startswith(own) and wb.startswith(own)
    emit(login(2), spool_dir=a)  # and each keeps its own
    assert _writer_of_lines(a) == {wa}


def test_a_spool_written_before_the_digest_keeps_its_writer_and_its_chain(tmp_path):
    spool_dir = tmp_path / "spool"
    legacy = f"{socket.gethostname()}:spool"  # what default_writer gave before
    emit(login(1), spool_dir=spool_dir, writer=legacy)
    emit(login(2), spool_dir=spool_dir)  # the upgraded code, no writer given
    assert _writer_of_lines(spool_dir) == {legacy}
    assert Spool(spool_dir).writer == legacy
    seqs = sorted(json.loads(x)["citydc"]["chain"]["seq"] for seg in spool_dir.glob("seg-*.jsonl")
                  for x in seg.read_text().splitlines())
    assert seqs == [1, 2, 3]  # spool-created, then both events: one chain, not a second writer's


def test_a_legacy_writer_is_found_in_the_ack_when_the_chain_head_was_moved_aside(tmp_path):
    legacy = f"{socket.gethostname()}:spool"
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "ack.json").write_text(json.dumps(
        {"segment": "seg-0000000001.jsonl", "offset": 0, "line": 0, "writers": {legacy: {"seq": 4, "hash": "a" * 64}}}))
    assert Spool(tmp_path / "spool").writer == legacy


def test_default_writer_prefers_a_recorded_writer_of_this_host_and_directory(tmp_path):
    host = socket.gethostname()
    fresh = default_writer(tmp_path / "spool")
    assert fresh.startswith(f"{host}:spool~") and len(fresh) == len(f"{host}:spool~") + 8
    assert default_writer(tmp_path / "spool", [f"{host}:spool"]) == f"{host}:spool"
    assert default_writer(tmp_path / "spool", [f"{host}:spool~0123abcd"]) == f"{host}:spool~0123abcd"  # moved
    assert default_writer(tmp_path / "spool", ["otherhost:spool", f"{host}:other"]) == fresh

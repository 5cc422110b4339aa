"""Hash chain: an intact chain verifies; a changed, removed or inserted event is found and named."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

from citydc.seclog.chain import GENESIS, ChainHead, canonical, chain_hash, link, verify, verify_report
from citydc.seclog.event import make_event

W = "host-a:spool"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def chained(n: int, writer: str = W, tag: str = "", incarnation: str | None = None) -> list[dict]:
    out, prev = [], GENESIS
    for i in range(n):
        doc = make_event(action="ldap-bind", dataset="citydc.ldap_audit", kind="event", category=["authentication"],
                         type=["start"], outcome="success", message=f"bind {i}", site="fengshan",
                         id_key=f"{tag}{writer}-{i}", user=f"u{i}", timestamp=T0 + timedelta(seconds=i))
        doc = link(doc, writer, i + 1, prev, incarnation)
        prev = doc["event"]["hash"]
        out.append(doc)
    return out


def test_canonical_ignores_chain_fields_and_key_order():
    doc = chained(1)[0]
    plain = json.loads(json.dumps(doc))
    del plain["event"]["hash"]
    del plain["citydc"]
    assert canonical(doc) == canonical(plain)
    assert canonical(doc) == json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    reordered = dict(reversed(list(doc.items())))
    assert canonical(reordered) == canonical(doc)


def test_hash_binds_previous_hash_writer_and_position():
    doc = chained(1)[0]
    h = chain_hash(GENESIS, W, 1, doc)
    assert doc["event"]["hash"] == h
    assert chain_hash(GENESIS, W, 2, doc) != h
    assert chain_hash(GENESIS, "other:spool", 1, doc) != h
    assert chain_hash("f" * 64, W, 1, doc) != h


def test_link_leaves_the_input_untouched():
    doc = make_event(action="ldap-bind", dataset="citydc.ldap_audit", kind="event", category=[], type=["start"],
                     outcome="success", message="m", site="siwei", id_key="x", details={"dn": "cn=a"})
    before = copy.deepcopy(doc)
    linked = link(doc, W, 1, GENESIS)
    assert doc == before
    assert linked["citydc"] == {"ldap_audit": {"dn": "cn=a"}, "chain": {"writer": W, "seq": 1, "prev": GENESIS}}


def test_intact_chains_of_several_writers_verify():
    events = chained(10) + chained(5, writer="host-b:spool")
    assert verify(events) == []


def test_changed_event_is_found():
    events = chained(10)
    events[4]["message"] = "nothing happened"
    [finding] = verify(events)
    assert (finding.problem, finding.writer, finding.seq) == ("changed", W, 5)
    assert finding.event_id == events[4]["event"]["id"]
    assert "content does not match event.hash" in finding.format()


def test_changed_event_with_recomputed_hash_is_found_by_its_successor():
    events = chained(10)
    events[4]["message"] = "nothing happened"
    events[4]["event"]["hash"] = chain_hash(events[4]["citydc"]["chain"]["prev"], W, 5, events[4])
    [finding] = verify(events)
    assert (finding.problem, finding.seq) == ("changed", 5)
    assert "rewritten" in finding.reason


def test_removed_event_is_found():
    events = chained(10)
    del events[6]
    [finding] = verify(events)
    assert (finding.problem, finding.seq) == ("removed", 7)
    assert "seq 7 missing" in finding.reason
    del events[0]
    assert [(f.problem, f.seq) for f in verify(events)] == [("removed", 1)]


def test_removed_tail_is_found_against_the_delivered_head():
    events = chained(10)
    delivered = {W: ChainHead(W, 10, events[-1]["event"]["hash"])}
    assert verify(events, delivered=delivered) == []
    [finding] = verify(events[:8], delivered=delivered)
    assert (finding.problem, finding.seq) == ("removed", 9)


def test_inserted_events_are_found():
    events = chained(10)
    # A duplicate position.
    dup = copy.deepcopy(events[3])
    dup["message"] = "forged"
    [finding] = verify([*events[:4], dup, *events[4:]])
    assert finding.problem == "inserted" and finding.seq == 4
    # An event without chain fields.
    plain = copy.deepcopy(events[0])
    del plain["citydc"]
    assert [f.problem for f in verify([*events, plain])] == ["inserted"]
    # A perfectly chained forgery appended after the real head: only the head file shows it.
    forged = link(chained(1, tag="forged")[0], W, 11, events[-1]["event"]["hash"])
    heads = {W: ChainHead(W, 10, events[-1]["event"]["hash"])}
    assert verify([*events, forged]) == []
    [finding] = verify([*events, forged], emitted=lambda: heads)
    assert (finding.problem, finding.seq) == ("inserted", 11)


def test_partial_walk_starts_at_the_first_event_seen():
    events = chained(10)
    assert verify(events[5:], partial=True) == []
    assert [f.problem for f in verify(events[5:])] == ["removed"]
    tampered = copy.deepcopy(events[5:])
    tampered[2]["message"] = "x"
    assert [(f.problem, f.seq) for f in verify(tampered, partial=True)] == [("changed", 8)]


def test_only_the_first_break_per_writer_is_reported():
    events = chained(10) + chained(3, writer="host-b:spool")
    events[2]["message"] = "x"
    events[7]["message"] = "y"
    del events[11]
    findings = verify(events)
    assert [(f.writer, f.problem, f.seq) for f in findings] == [(W, "changed", 3), ("host-b:spool", "removed", 2)]


OLD, NEW, FORGED = "20260301T000000Z-00000001", "20260302T000000Z-00000002", "20260303T000000Z-00000003"


def by_seq(*chains: list[dict]) -> list[dict]:
    return sorted((e for c in chains for e in c), key=lambda e: (e["citydc"]["chain"]["seq"], e["event"]["id"]))


def test_incarnations_are_separate_chains_and_a_later_one_is_information():
    old, new = chained(4, tag="o", incarnation=OLD), chained(2, tag="n", incarnation=NEW)
    report = verify_report(by_seq(old, new), emitted=lambda: {W: ChainHead(W, 2, new[-1]["event"]["hash"], NEW)})
    assert report.findings == []
    [notice] = report.notices
    assert (notice.kind, notice.incarnation, notice.seq) == ("new-incarnation", NEW, 1)
    assert "started at 2026-03-02T00:00:00Z" in notice.message
    assert f"(incarnation {OLD}) ended at seq 4 (event.id {old[-1]['event']['id']}" in notice.message
    # One chain's number sequence is not the other's: changing an incarnation's id breaks its hash.
    moved = copy.deepcopy(new[1])
    moved["citydc"]["chain"]["incarnation"] = OLD
    assert [(f.problem, f.seq) for f in verify(by_seq(old[:1], [moved]))] == [("changed", 2)]


def test_a_chain_of_an_incarnation_newer_than_the_spools_own_is_inserted():
    new, forged = chained(2, tag="n", incarnation=NEW), chained(3, tag="f", incarnation=FORGED)
    findings = verify(by_seq(new, forged), emitted=lambda: {W: ChainHead(W, 2, new[-1]["event"]["hash"], NEW)})
    assert [(f.problem, f.incarnation, f.seq) for f in findings] == [("inserted", FORGED, 1)]
    assert "newer than the spool's own" in findings[0].reason

"""`citydc log verify` names an event whose chain fields were edited into other types as changed, in its chain.

Seen on both stores (a real Elasticsearch 9.2.4 document updated with ``citydc.chain.seq: "abc"``, which
``ignore_malformed`` keeps; a SQLite row edited the same way): verify said "inserted: writer <none>: event
has no chain fields" about an event that names its writer and incarnation, one that was altered, not added.
"""

from __future__ import annotations

from citydc.seclog.chain import GENESIS, link, verify_report
from citydc.seclog.event import make_event

INCARNATION = "20260301T000000Z-0a1b2c3d"


def _chain(n: int) -> list[dict]:
    events, prev = [], GENESIS
    for i in range(n):
        doc = make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                         type=["start"], outcome="success", message=f"login {i}", site="siwei", id_key=f"v{i}")
        events.append(link(doc, "w:spool", i + 1, prev, INCARNATION))
        prev = events[-1]["event"]["hash"]
    return events


def test_an_event_whose_seq_is_no_integer_is_a_changed_event_of_its_chain():
    events = _chain(6)
    altered = events.pop(2)
    altered["citydc"]["chain"]["seq"] = "abc"
    report = verify_report([*events, altered])  # both stores sort such a seq after the chain's integers
    assert [(f.problem, f.writer, f.incarnation, f.seq, f.event_id) for f in report.findings] == [
        ("removed", "w:spool", INCARNATION, 3, None),
        ("changed", "w:spool", INCARNATION, None, altered["event"]["id"])]
    assert "not of the expected types" in report.findings[1].reason


def test_an_event_without_chain_fields_is_still_inserted():
    events = _chain(3)
    forged = {"@timestamp": "2026-03-01T00:00:00.000Z", "event": {"id": "f" * 32}, "message": "forged"}
    report = verify_report([*events, forged])
    assert [(f.problem, f.writer, f.event_id) for f in report.findings] == [("inserted", "<none>", "f" * 32)]

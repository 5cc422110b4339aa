"""seal(): one encoding per event. The spool line is the hashed canonical bytes plus the chain fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from citydc.seclog.chain import GENESIS, Sealer, _sorted_json, canonical, chain_hash, link, seal, verify
from citydc.seclog.event import make_event

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def reference(doc: dict) -> bytes:
    """The chain's definition of canonical JSON, spelled with the standard library."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ev(i: int, **extra) -> dict:
    return make_event(action="backup-run", dataset="citydc.backup", kind="event", category=["process"],
                      type=["end"], outcome="success", message=f"run {i} 四維 \"quoted\" \\ back", site="siwei",
                      id_key=f"k{i}", timestamp=T0, **extra)


TRICKY = [
    ev(0),
    ev(1, details={"event": {"action": "x", "id": "y"}, "citydc": {"chain": 1}}),  # look-alikes of the splice points
    ev(2, details={"ratio": 0.00001, "big": 2**70, "neg": -1.5e300}),  # where orjson and json differ
    ev(3, details={"s": "\x00\x1f\u2028\ud7ff\U0001f600", "nested": [[{"a": None, "b": True}]]}),
    ev(4, user="alice", user_target="bob", source_ip="2001:db8::1", host="h", rule={"id": "r1"},
       error="boom", severity=3, duration_ns=7, related={"user": ["alice"], "ip": ["10.0.0.1"]}),
    {**ev(5), "citydc": {}},  # an empty citydc object is left out of the hash, so it verifies once chained
    {**ev(7), "citydc": None},
    {**ev(6), "@timestamp": "2026-03-01T08:00:00,5+08:00"},  # a comma inside the timestamp
]


@pytest.mark.parametrize("doc", TRICKY, ids=range(len(TRICKY)))
def test_line_is_the_linked_event_and_its_hash_verifies(doc):
    linked, line = seal(doc, "w:spool", 3, "a" * 64)
    parsed = json.loads(line)
    assert parsed == linked == link(doc, "w:spool", 3, "a" * 64)
    assert parsed["event"]["hash"] == chain_hash("a" * 64, "w:spool", 3, parsed)
    assert parsed["citydc"]["chain"] == {"writer": "w:spool", "seq": 3, "prev": "a" * 64}
    # The hashed bytes are the line without the two spliced pieces: one encoding, not two.
    stripped = dict(parsed)
    stripped["event"] = {k: v for k, v in parsed["event"].items() if k != "hash"}
    rest = {k: v for k, v in parsed["citydc"].items() if k != "chain"}
    if rest:
        stripped["citydc"] = rest
    else:
        del stripped["citydc"]
    assert canonical(parsed) == reference(stripped)
    assert b"\n" not in line


def test_resealing_a_chained_event_replaces_its_chain_fields():
    first, _ = seal(ev(1), "w:spool", 1, GENESIS)
    again, line = seal(first, "w:spool", 2, first["event"]["hash"])
    assert json.loads(line) == again and again["citydc"]["chain"]["seq"] == 2
    assert verify([first, again]) == []


def test_canonical_fast_path_matches_the_reference_for_every_code_point():
    # orjson must write every string exactly as json.dumps(ensure_ascii=False) does, or hashes would change.
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 4096):
        text = "".join(chars[start:start + 4096])
        doc = {"message": text, "k" + text[:50]: [text[::-1]]}
        assert _sorted_json(doc) == reference(doc)


def test_canonical_with_floats_or_huge_integers_keeps_the_reference_encoding():
    for details in ({"x": 1e-05}, {"x": 1e16}, {"x": [0.1, {"y": 2.5}]}, {"x": 2**64}, {"x": -2**63 - 1}):
        doc = {"@timestamp": "t", "citydc": {"backup": details}}
        assert _sorted_json(doc) == reference(doc)
    assert orjson.dumps({"x": 1e-05}) != json.dumps({"x": 1e-05}, separators=(",", ":")).encode()  # why it matters


def _seal_one_by_one(docs, writer, seq, prev, incarnation):
    out = []
    for doc in docs:
        seq += 1
        linked, line = seal(doc, writer, seq, prev, incarnation)
        prev = linked["event"]["hash"]
        out.append((linked, line))
    return out


@pytest.mark.parametrize("incarnation", [None, "20260301T000000Z-0a1b2c3d"])
@pytest.mark.parametrize("writer", ["w:spool", 'host "四維":spool\\x|y'])
@pytest.mark.parametrize("start", [(0, GENESIS), (41, "b" * 64)])
def test_sealer_gives_what_seal_gives_event_by_event(incarnation, writer, start):
    docs = [*TRICKY, {**ev(8), "citydc": []}]  # the last one not shaped as validated: the general path
    sealer = Sealer(writer, *start, incarnation)
    got = [sealer.seal(doc) for doc in docs]
    want = _seal_one_by_one(docs, writer, *start, incarnation)
    assert [line for _, line in got] == [line for _, line in want]
    assert [linked for linked, _ in got] == [linked for linked, _ in want]
    assert [list(linked) for linked, _ in got] == [list(linked) for linked, _ in want]  # key order too
    assert (sealer.seq, sealer.prev) == (start[0] + len(docs), want[-1][0]["event"]["hash"])
    chained = [json.loads(line) for _, line in got[:-1]]  # the reference parser: orjson reads floats differently
    if start[0] == 0:
        assert verify(chained) == []  # the valid events, sealed in a batch, form an intact chain

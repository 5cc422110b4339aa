"""A damaged spool: state files that are not what they must be, a lost or stale head, a cut segment.

Findings 7 and 11 of the 2026-12-07 exploratory test. A damaged ``chain-head.json`` or ``ack.json``
is a named error (SpoolDamaged) naming the file and how to recover, never a parser's traceback; the
recovery it names (move the file aside) keeps every chain intact for ``verify``; a damaged ``ids.db``
(an index) is set aside and started anew; and a segment cut below the recorded head never gets a new
event glued onto its fragment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.seclog import SpoolDamaged, emit
from citydc.seclog.chain import verify, verify_report
from citydc.seclog.event import make_event
from citydc.seclog.shipper import BackgroundShipper, Shipper
from citydc.seclog.spool import ACK_RECOVERY, Position, Spool

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WRITER = "w:spool"


def ev(i: int, tag: str = "") -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {tag}{i}", site="siwei",
                      id_key=f"{tag}{i}", user=f"u{i % 7}", timestamp=T0)


def ship_all(spool: Spool, store: list[dict], size: int = 5) -> list:
    """Read everything after the ack into ``store`` (as a store would keep it), acknowledging batch by batch
    (fully acknowledged segments are deleted); return the corrupt lines met."""
    corrupt = []
    pos = spool.ack_position()
    for _ in range(1000):  # bounded: these spools never need more rounds
        batch = spool.read(pos, size)
        corrupt += batch.corrupt
        if batch.end is None or batch.end == pos:
            break
        store += batch.events
        spool.acknowledge(batch.end, batch.events)
        pos = batch.end
    return corrupt


def seqs(events: list[dict]) -> list[int]:
    return [e["citydc"]["chain"]["seq"] for e in events]


# -- chain-head.json and ack.json: damaged is a named error ------------------------------------------------

DAMAGED_HEADS = {
    "empty": (b"", "empty"),
    "garbage": (b"garbage{\n", "not JSON"),
    "not an object": (b"[1, 2]", "expected a JSON object, got a JSON list"),
    "seq not a number": (b'{"writers": {"w:spool": {"seq": "7", "hash": "x"}}}', "writers['w:spool']"),
    "segment outside the spool": (b'{"segment": "../../etc/passwd", "offset": 0}', "segment:"),
    "offset negative": (b'{"segment": "seg-0000000001.jsonl", "offset": -5}', "offset:"),
}


@pytest.mark.parametrize("content,problem", DAMAGED_HEADS.values(), ids=DAMAGED_HEADS.keys())
def test_a_damaged_chain_head_refuses_the_event_naming_the_file_and_the_recovery(tmp_path, content, problem):
    emit(ev(0), spool_dir=tmp_path)
    segment = tmp_path / Spool(tmp_path).segments()[0]
    before = segment.read_bytes()
    (tmp_path / "chain-head.json").write_bytes(content)
    with pytest.raises(SpoolDamaged) as caught:
        emit(ev(1), spool_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'chain-head.json'}: damaged spool state file: ")
    assert problem in message and "move it aside" in message and "\n" not in message
    assert segment.read_bytes() == before  # nothing of the batch was written


DAMAGED_ACKS = {
    "empty": (b"  \n", "empty"),
    "garbage": (b"garbage{", "not JSON"),
    "half a position": (b'{"segment": "seg-0000000001.jsonl"}', "found only segment"),
    "line not a number": (b'{"segment": "seg-0000000001.jsonl", "offset": 0, "line": null}', "line:"),
    "writers not an object": (b'{"writers": []}', "writers: expected an object"),
}


@pytest.mark.parametrize("content,problem", DAMAGED_ACKS.values(), ids=DAMAGED_ACKS.keys())
def test_a_damaged_ack_is_a_named_error_for_the_shipper_and_none_for_the_writer(tmp_path, content, problem):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(0)])
    (tmp_path / "ack.json").write_bytes(content)
    for read in (spool.ack_position, spool.delivered_heads, spool.backlog):
        with pytest.raises(SpoolDamaged, match=r"ack\.json: damaged spool state file: .*move it aside") as caught:
            read()
        assert problem in str(caught.value)
    # The writer does not depend on the ack: an event is still recorded.
    assert len(spool.append([ev(1)])) == 1


class KeepingStore:
    def __init__(self):
        self.docs: dict[str, dict] = {}

    def put(self, events):
        new = [e for e in events if e["event"]["id"] not in self.docs]
        self.docs.update((e["event"]["id"], e) for e in new)
        return len(new)


def test_the_background_shipper_stops_with_one_logged_line_on_a_damaged_ack(tmp_path, caplog, monkeypatch):
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(0)])
    (tmp_path / "ack.json").write_bytes(b"garbage{")
    background = BackgroundShipper(Shipper(spool, KeepingStore()), poll=0.05)
    background.thread.start()
    background.thread.join(30)
    assert not background.thread.is_alive() and uncaught == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"the background shipper stopped: {tmp_path / 'ack.json'}: damaged spool state file: not JSON (unexpected "
        "character, expected a JSON value at line 1 column 1); " + ACK_RECOVERY]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12)
HEADISH = st.fixed_dictionaries({}, optional={"writers": st.dictionaries(st.just(WRITER) | st.text(max_size=4), JSON,
                                                                         max_size=2),
                                              "segment": JSON | st.just("seg-0000000001.jsonl"),
                                              "offset": JSON, "line": JSON, "incarnation": JSON})
STATE_BYTES = st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()) | HEADISH.map(
    lambda v: json.dumps(v).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=STATE_BYTES, ack=STATE_BYTES)
def test_whatever_the_state_files_hold_the_outcome_is_the_event_recorded_or_a_named_error(head, ack):
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(tmp, writer=WRITER)
        spool.append([ev(0)])
        Path(tmp, "chain-head.json").write_bytes(head)
        Path(tmp, "ack.json").write_bytes(ack)
        try:
            spool.append([ev(1)])
        except SpoolDamaged as exc:
            assert "chain-head.json: damaged spool state file" in str(exc)
        for read in (spool.ack_position, spool.delivered_heads, spool.emitted_heads, spool.backlog):
            try:
                read()
            except SpoolDamaged as exc:
                assert "damaged spool state file" in str(exc) and "\n" not in str(exc)


# -- the recovery the message names: moved aside, the head is rebuilt and the chain stays intact ----------

def _shipped_spool(tmp_path: Path) -> tuple[Spool, list[dict]]:
    """A spool of several segments, all delivered: the older segments are deleted, as in production."""
    spool = Spool(tmp_path, writer=WRITER, max_segment_bytes=2000)
    store: list[dict] = []
    for b in range(6):
        spool.append([ev(i, f"b{b}-") for i in range(4)])
    assert ship_all(spool, store) == []
    assert len(spool.segments()) == 1 and seqs(store)[0] == 1  # the first segments are gone
    return spool, store


def test_a_chain_head_moved_aside_is_rebuilt_from_the_spool_and_the_chain_continues(tmp_path):
    spool, store = _shipped_spool(tmp_path)
    (tmp_path / "chain-head.json").rename(tmp_path / "chain-head.json.damaged")
    written = spool.append([ev(i, "after-") for i in range(3)])
    assert seqs(written) == [26, 27, 28]  # on from the last event, not a second seq 1
    assert ship_all(spool, store) == []
    assert verify(store) == []
    assert seqs(store) == list(range(1, 29))


def test_a_chain_head_restored_from_an_older_copy_does_not_number_events_twice(tmp_path):
    spool = Spool(tmp_path, writer=WRITER, max_segment_bytes=2000)
    spool.append([ev(i, "old-") for i in range(2)])
    old_head = (tmp_path / "chain-head.json").read_bytes()  # last night's backup
    for b in range(5):
        spool.append([ev(i, f"b{b}-") for i in range(4)])
    store: list[dict] = []
    assert ship_all(spool, store) == []
    (tmp_path / "chain-head.json").write_bytes(old_head)  # restored: its segment was delivered and deleted
    assert seqs(spool.append([ev(0, "after-")])) == [24]
    assert ship_all(spool, store) == [] and verify(store) == []


def test_a_lost_head_is_rebuilt_from_the_delivered_heads_for_a_writer_with_no_line_left(tmp_path):
    # Two writers share a spool; A's lines were all delivered and their segment deleted.
    a = Spool(tmp_path, writer="a:spool", max_segment_bytes=1500)
    b = Spool(tmp_path, writer="b:spool", max_segment_bytes=1500)
    a.append([ev(i, "a-") for i in range(3)])
    b.append([ev(i, "b-") for i in range(3)])
    store: list[dict] = []
    ship_all(b, store)
    assert all(line.find(b'"a:spool"') < 0 for line in (tmp_path / b.segments()[0]).read_bytes().split(b"\n"))
    (tmp_path / "chain-head.json").unlink()
    assert seqs(a.append([ev(9, "a-")])) == [5]  # on from A's delivered seq 4, not a second seq 1
    ship_all(a, store)
    assert verify(store) == []


def test_lines_past_the_head_are_adopted_across_a_damaged_one(tmp_path):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(i) for i in range(3)])  # seq 1..4
    head = (tmp_path / "chain-head.json").read_bytes()
    spool.append([ev(i) for i in range(3, 6)])  # seq 5..7: a writer killed before recording the head ...
    (tmp_path / "chain-head.json").write_bytes(head)
    segment = tmp_path / spool.segments()[0]
    lines = segment.read_bytes().split(b"\n")
    lines[5] = b"garbage"  # ... and seq 6 damaged since
    segment.write_bytes(b"\n".join(lines))
    assert seqs(spool.append([ev(100)])) == [8]  # not a second seq 6 or 7
    store: list[dict] = []
    assert len(ship_all(spool, store)) == 1
    assert [(f.problem, f.seq) for f in verify(store)] == [("removed", 6)]


def test_a_lost_head_with_nothing_to_rebuild_from_starts_a_new_incarnation_that_verify_reports(tmp_path):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(i) for i in range(3)])
    store: list[dict] = []
    ship_all(spool, store)
    old = spool.incarnation()
    for name in ("chain-head.json", "ack.json"):
        (tmp_path / name).unlink()
    segment = tmp_path / spool.segments()[0]
    segment.write_bytes(b"garbage\n")  # no line tells where the chain was
    written = spool.append([ev(9)])
    new = spool.incarnation()
    assert new["id"] != old["id"]
    assert seqs(written) == [2]  # after the new incarnation's spool-created event
    corrupt = ship_all(spool, store)
    assert len(corrupt) == 1  # the garbage line, reported by the reader
    report = verify_report(store)
    assert report.findings == []
    assert [n.kind for n in report.notices] == ["new-incarnation"]


# -- ids.db: an index, set aside and started anew --------------------------------------------------------

def emit_in_a_new_process(spool_dir: Path, events: list[dict]) -> subprocess.CompletedProcess:
    """Emit as the next command would: a process of its own (this one keeps its ids.db connection open)."""
    code = ("import json, sys; from citydc.seclog.spool import Spool; "
            f"written = Spool(sys.argv[1], writer={WRITER!r}).append(json.load(sys.stdin)); "
            "print(json.dumps([e['message'] for e in written]))")
    return subprocess.run([sys.executable, "-c", code, str(spool_dir)], input=json.dumps(events), text=True,
                          capture_output=True, timeout=60)


def test_a_damaged_ids_db_is_set_aside_and_rebuilt_from_the_spool(tmp_path):
    assert emit_in_a_new_process(tmp_path, [ev(i) for i in range(3)]).returncode == 0
    (tmp_path / "ids.db").write_bytes(b"this is not a database\n" * 100)
    done = emit_in_a_new_process(tmp_path, [ev(1), ev(7)])  # ev(1) is still in the spool: known, not chained again
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["login 7"]
    assert "ids.db: file is not a database; set it aside as ids.db.damaged-" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(list(tmp_path.glob("ids.db.damaged-*"))) == 1  # kept for a look, not deleted
    store: list[dict] = []
    assert ship_all(Spool(tmp_path, writer=WRITER), store) == [] and verify(store) == []
    assert [e["message"] for e in store if e["event"]["action"] != "spool-created"] == [
        "login 0", "login 1", "login 2", "login 7"]


# -- a segment cut below the head: the next event goes to a new segment, never onto the fragment -----------

def _cut(segment: Path, nbytes: int) -> None:
    os.truncate(segment, segment.stat().st_size - nbytes)


def test_a_segment_cut_mid_line_below_the_head_gets_no_new_event_glued_to_it(tmp_path):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(i) for i in range(5)])
    segment = tmp_path / spool.segments()[0]
    _cut(segment, 100)  # the last event (seq 6) loses its end
    written = spool.append([ev(100)])
    assert seqs(written) == [7]
    assert len(spool.segments()) == 2  # the cut segment is left as it is
    store: list[dict] = []
    corrupt = ship_all(spool, store)
    assert [c.reason for c in corrupt] == ["incomplete last line"]  # the fragment, reported once
    assert "login 100" in [e["message"] for e in store]  # the new event is delivered
    assert [(f.problem, f.seq) for f in verify(store)] == [("removed", 6)]  # the lost one stays visible


def test_a_segment_cut_below_what_the_shipper_acknowledged_still_delivers_new_events(tmp_path):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(i) for i in range(5)])
    store: list[dict] = []
    ship_all(spool, store)
    segment = tmp_path / spool.segments()[0]
    lines = segment.read_bytes().split(b"\n")
    segment.write_bytes(b"\n".join(lines[:4]) + b"\n")  # restored from an older copy: two lines shorter
    spool.append([ev(i, "new-") for i in range(2)])
    assert ship_all(spool, store) == []
    assert [e["message"] for e in store[-2:]] == ["login new-0", "login new-1"]
    assert verify(store) == []  # nothing was delivered twice or lost: the store had seq 1..6 already


def test_a_segment_ending_in_a_fragment_at_the_recorded_head_gets_no_new_event_glued_to_it(tmp_path):
    spool = Spool(tmp_path, writer=WRITER)
    spool.append([ev(i) for i in range(3)])
    segment = tmp_path / spool.segments()[0]
    _cut(segment, 50)
    # The head recorded at the fragment's end (as an older writer's recovery left it).
    head = json.loads((tmp_path / "chain-head.json").read_bytes())
    head["offset"] = segment.stat().st_size
    (tmp_path / "chain-head.json").write_text(json.dumps(head))
    spool.append([ev(100)])
    events = []
    corrupt = []
    pos: Position | None = None
    for _ in range(10):
        batch = spool.read(pos, 100)
        events += batch.events
        corrupt += batch.corrupt
        if batch.end == pos:
            break
        pos = batch.end
    assert "login 100" in [e["message"] for e in events]
    assert [c.reason for c in corrupt] == ["incomplete last line"]

"""Spool: batches are chained gap-free, corrupted lines are reported and skipped, acks resume."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime

import pytest

from citydc.seclog.chain import GENESIS, INCARNATION, chain_hash, verify
from citydc.seclog.event import make_event
from citydc.seclog.spool import Position, Spool, SpoolBusy

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(i: int, tag: str = "") -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {tag}{i}", site="siwei",
                      id_key=f"{tag}{i}", user=f"u{i % 7}", timestamp=T0)


def own(events: list[dict]) -> list[dict]:
    """Given events read from a spool, return those the test emitted (without the spool-created opening)."""
    return [e for e in events if e["event"]["action"] != "spool-created"]


def read_all(spool: Spool, start: Position | None = None, size: int = 1000):
    events, corrupt, pos = [], [], start
    for _ in range(1000):  # bounded: a spool of these tests never needs more rounds
        batch = spool.read(pos, size)
        events += batch.events
        corrupt += batch.corrupt
        if batch.end == pos:
            break
        pos = batch.end
    return events, corrupt, pos


def test_append_chains_gap_free_and_records_the_head(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    assert len(spool.append([ev(i) for i in range(5)])) == 5
    assert len(spool.append([ev(i) for i in range(5, 8)])) == 3
    events, corrupt, _ = read_all(spool)
    assert corrupt == []
    # A new spool: its chain opens with the spool-created event, then the 8 events.
    assert events[0]["event"]["action"] == "spool-created" and len(own(events)) == 8
    assert [e["citydc"]["chain"]["seq"] for e in events] == list(range(1, 10))
    assert verify(events) == []
    head = spool.emitted_heads()["w:spool"]
    assert (head.seq, head.hash, head.incarnation) == (9, events[-1]["event"]["hash"], spool.incarnation()["id"])


def test_reemitted_ids_are_dropped_so_the_chain_has_no_hole(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(4)])
    written = spool.append([ev(2), ev(4), ev(4), ev(5)])  # a retry overlapping the last batch
    assert [e["event"]["id"] for e in written] == [ev(4)["event"]["id"], ev(5)["event"]["id"]]
    events, _, _ = read_all(spool)
    assert len(own(events)) == 6 and verify(events) == []


def _emit_worker(path: str, worker: int) -> None:
    spool = Spool(path, writer="w:spool")
    for b in range(10):
        spool.append([ev(i, f"p{worker}-b{b}-") for i in range(20)])


def test_several_processes_emit_into_one_gap_free_chain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_emit_worker, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events, corrupt, _ = read_all(Spool(tmp_path, writer="w:spool"))
    assert corrupt == []
    assert len(own(events)) == 600 and len({e["event"]["id"] for e in events}) == 601
    assert [e["citydc"]["chain"]["seq"] for e in events] == list(range(1, 602))
    assert verify(events) == []


def test_corrupted_line_is_reported_and_its_neighbours_kept(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(5)])
    seg = tmp_path / spool.segments()[0]
    lines = seg.read_bytes().split(b"\n")  # line 1 is the spool-created event
    lines[2] = lines[2][:40]  # truncated in the middle
    lines[4] = b'{"not": "an event"}'
    seg.write_bytes(b"\n".join(lines))
    events, corrupt, _ = read_all(spool)
    assert [e["message"] for e in own(events)] == ["login 0", "login 2", "login 4"]
    assert [(c.file, c.line) for c in corrupt] == [(str(seg), 3), (str(seg), 5)]
    assert "not JSON" in corrupt[0].reason
    assert "not a valid event" in corrupt[1].reason
    assert f"{seg}:3: skipped corrupted spool line" in corrupt[0].format()


def test_ack_resumes_and_deletes_fully_acknowledged_segments(tmp_path):
    spool = Spool(tmp_path, writer="w:spool", max_segment_bytes=2000)
    for b in range(6):
        spool.append([ev(i, f"b{b}-") for i in range(4)])
    assert len(spool.segments()) >= 3
    first = spool.read(spool.ack_position(), 7)
    assert len(first.events) == 7
    spool.acknowledge(first.end, first.events)
    # A new Spool object (a restarted shipper) continues right after the acknowledged position.
    again = Spool(tmp_path, writer="w:spool")
    assert again.ack_position() == first.end
    rest, corrupt, end = read_all(again, again.ack_position(), size=5)
    assert corrupt == []
    assert [e["citydc"]["chain"]["seq"] for e in first.events + rest] == list(range(1, 26))  # with the opening
    assert again.delivered_heads()["w:spool"].seq == 7
    assert again.backlog()[0] == 18 and again.backlog()[1] > 0
    again.acknowledge(end, rest)
    assert again.segments() == [end.segment]  # older, fully acknowledged segments are gone
    assert again.backlog() == (0, 0)


def test_a_killed_writers_partial_line_is_dropped_and_complete_lines_adopted(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(3)])
    head_file = (tmp_path / "chain-head.json").read_bytes()
    spool.append([ev(i) for i in range(3, 5)])
    # Simulate a writer killed after its lines but before the head: restore the old head and add a fragment.
    (tmp_path / "chain-head.json").write_bytes(head_file)
    seg = tmp_path / spool.segments()[0]
    with seg.open("ab") as f:
        f.write(b'{"@timestamp": "2026-03-01T00:00:00.000Z", "eve')
    written = spool.append([ev(4), ev(5)])  # ev(4) was spooled by the killed writer: dropped, not duplicated
    assert [e["citydc"]["chain"]["seq"] for e in written] == [7]  # seq 1 is the spool-created event
    events, corrupt, _ = read_all(spool)
    assert corrupt == []
    assert [e["message"] for e in own(events)] == [f"login {i}" for i in range(6)]
    assert verify(events) == []


def test_only_one_shipper_at_a_time(tmp_path):
    spool = Spool(tmp_path)
    with spool.shipping(), pytest.raises(SpoolBusy, match="another shipper"), Spool(tmp_path).shipping():
        pass
    with spool.shipping():
        pass  # released


def test_spool_lines_are_plain_json(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(1)])
    first, second = (json.loads(line) for line in (tmp_path / spool.segments()[0]).read_text().splitlines())
    incarnation = spool.incarnation()["id"]
    assert INCARNATION.match(incarnation)
    # The chain starts at GENESIS, and the second line points at the first one's hash (not at itself).
    assert first["citydc"]["chain"] == {"writer": "w:spool", "incarnation": incarnation, "seq": 1, "prev": GENESIS}
    assert second["citydc"]["chain"] == {"writer": "w:spool", "incarnation": incarnation, "seq": 2,
                                         "prev": first["event"]["hash"]}
    assert second["event"]["hash"] == chain_hash(first["event"]["hash"], "w:spool", 2, second, incarnation)

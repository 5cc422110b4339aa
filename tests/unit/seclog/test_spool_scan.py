"""Reading spool lines without parsing them: an intact line is proven by its chain hash, anything else is
parsed in full and judged exactly as before (``Spool.read(lines=True)`` against ``lines=False``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from citydc.seclog.chain import GENESIS, canonical, seal, verify
from citydc.seclog.event import make_event
from citydc.seclog.metrics import SeclogMetrics
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool, SpooledLine, _parse_line
from citydc.seclog.spool_scan import scan_line
from citydc.seclog.store_es import ElasticsearchStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
OLD_SAMPLE = Path(__file__).parent / "data" / "spool-v0-json-dumps.jsonl"  # as written before chain.seal


def event(i: int, message: str = "", **extra) -> dict:
    login = i % 3 != 0
    return make_event(action="sso-login" if login else "backup-run",
                      dataset="citydc.sso_audit" if login else "citydc.backup", kind="event",
                      category=["authentication"] if login else ["process"], type=["start"],
                      outcome="success", message=message or f"login by u{i} from 10.10.1.{i % 250 + 1} at 四維",
                      site="siwei" if i % 2 else "fengshan", id_key=f"k{i}", timestamp=T0 + timedelta(seconds=i),
                      **extra)


def sealed(doc: dict, seq: int = 1, writer: str = "host-1:spool", prev: str = GENESIS) -> bytes:
    return seal(doc, writer, seq, prev)[1]


def facts(item) -> tuple:
    """The fields the shipper uses, from a SpooledLine or a parsed event."""
    if isinstance(item, SpooledLine):
        return (item.event_id, item.timestamp, item.writer, item.seq, item.hash, item.site, item.message)
    c = item["citydc"]["chain"]
    return (item["event"]["id"], item["@timestamp"], c["writer"], c["seq"], item["event"]["hash"],
            item["labels"]["site"], item["message"])


SAMPLES = [
    sealed(event(1)),
    sealed(event(3, details={"snapshot": "0000abcd", "files": 1234}, duration_ns=5), seq=7, prev="ab" * 32),
    sealed(event(4, message='a "quoted" C:\\path\n\ttab and \x01 and 四維', host="gw-1", user="alice",
                 error="boom", source_ip="10.0.0.1", details={"event": {"hash": "x"}, "labels": {"site": "z"},
                                                                 "message": "decoy", "id": "0" * 32, "f": 0.5})),
]


def test_an_intact_line_gives_the_fields_the_full_parse_gives():
    for line in SAMPLES:
        doc, reason = _parse_line(line)
        assert reason == "" and facts(scan_line(line)) == facts(doc)
        assert scan_line(line).line is line and scan_line(line).event() == json.loads(line)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
_DETAILS = st.dictionaries(st.sampled_from(["event", "labels", "message", "id", "site", "hash", "chain", "x"]),
                           st.one_of(_TEXT, st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                                                                                  allow_infinity=False),
                                     st.dictionaries(st.sampled_from(["hash", "site", "message"]), _TEXT,
                                                     max_size=2)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(message=_TEXT, details=_DETAILS, host=st.none() | _TEXT, writer=_TEXT, seq=st.integers(1, 2**63 - 1))
def test_any_sealed_event_is_read_by_its_hash_with_the_same_fields(message, details, host, writer, seq):
    line = sealed(event(2, message=message, details=details, host=host), seq=seq, writer=writer)
    doc, _ = _parse_line(line)
    scanned = scan_line(line)
    if scanned is None:  # only a writer id JSON must escape takes the full parse
        assert any(c in writer for c in '"\\') or any(ord(c) < 0x20 for c in writer)
    else:
        assert facts(scanned) == facts(doc)


_REPLACEMENTS = (0x22, 0x5C, 0x7D, 0x2C, 0x30, 0x61, 0xFF, 0x00)


def test_every_single_byte_change_deletion_and_truncation_is_caught():
    for line in SAMPLES:
        for at in range(len(line)):
            for value in {line[at] ^ 0x01, line[at] ^ 0x20, *_REPLACEMENTS} - {line[at]}:
                assert scan_line(line[:at] + bytes([value]) + line[at + 1:]) is None, (line, at, value)
            assert scan_line(line[:at] + line[at + 1:]) is None, (line, at)
            assert scan_line(line[:at]) is None, (line, at)


@settings(max_examples=500, deadline=None)
@given(sample=st.sampled_from(SAMPLES), at=st.integers(0, 10**6), cut=st.integers(0, 8),
       insert=st.binary(max_size=8))
def test_any_edit_is_caught_unless_it_changes_nothing(sample, at, cut, insert):
    at %= len(sample) + 1
    edited = sample[:at] + insert + sample[at + cut:]
    scanned = scan_line(edited)
    assert scanned is None or edited == sample


def _forge(line: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes of a sealed line and recompute its hash, as someone editing the spool on purpose would."""
    assert old in line
    doc = json.loads(line)
    c = doc["citydc"]["chain"]
    body = canonical(doc).replace(old, new)
    digest = hashlib.sha256(f"{c['prev']}|{c['writer']}|{c['seq']}|".encode() + body).hexdigest()
    return line.replace(old, new).replace(doc["event"]["hash"].encode(), digest.encode())


def test_a_line_forged_with_a_valid_hash_is_left_to_the_full_parse():
    line = SAMPLES[0]
    # Like the full parse, the scan takes a well-formed forgery; `citydc log verify` finds it (the next
    # event's prev, or the chain head, still holds the original hash).
    assert scan_line(_forge(line, b"login by", b"LOGIN by")).message.startswith("LOGIN by")
    not_utf8 = _forge(line, "四維".encode(), b"\xff\xfe")
    assert scan_line(not_utf8) is None and _parse_line(not_utf8) == (None, "not UTF-8")
    no_labels = _forge(line, b'"labels":{"site":"siwei"},', b'"labelz":{"site":"siwei"},')
    assert scan_line(no_labels) is None and "not a valid event" in _parse_line(no_labels)[1]
    bad_escape = _forge(line, b'"},"message":"', b'"},"message":"\\')
    assert scan_line(bad_escape) is None and _parse_line(bad_escape)[0] is None


def _spool_with(tmp_path: Path, n: int) -> tuple[Spool, Path]:
    spool = Spool(tmp_path / "spool", writer="w:spool")
    spool.append([event(i, details={"n": i} if i % 2 else None) for i in range(n)])
    return spool, spool.dir / spool.segments()[0]


def _read_both(spool: Spool) -> tuple[list, list, list, list]:
    full, lines = spool.read(None, 1000), spool.read(None, 1000, lines=True)
    assert full.end == lines.end
    return full.events, full.corrupt, lines.events, lines.corrupt


def test_lines_mode_reports_damaged_lines_exactly_as_the_full_parse(tmp_path):
    spool, seg = _spool_with(tmp_path, 8)
    lines = seg.read_bytes().split(b"\n")
    lines[1] = lines[1][:40]  # truncated
    lines[2] = lines[2].replace(b'"message":"login', b'"message":"LOGIN')  # edited, still valid JSON
    lines[3] = b'{"not": "an event"}'
    lines[4] = lines[4].replace(b"login", b"log\xffn")  # not UTF-8
    lines[5] = lines[5].replace(b'"ecs":{', b'"ecs"{')  # garbled structure
    seg.write_bytes(b"\n".join(lines))
    full, full_bad, scanned, scanned_bad = _read_both(spool)
    assert [(c.line, c.reason) for c in scanned_bad] == [(c.line, c.reason) for c in full_bad]
    assert [c.line for c in scanned_bad] == [2, 4, 5, 6]
    assert [facts(x) for x in scanned] == [facts(x) for x in full]
    assert [x.seq for x in scanned] == [1, 3, 7, 8, 9]  # seq 1: the new spool's spool-created event
    # The edited line is delivered as before, and `citydc log verify` names it.
    assert scanned[1].message.startswith("LOGIN") and scan_line(lines[2]) is None
    assert [f.problem for f in verify(full)] == ["removed"]  # seq 2 is the first break of the chain


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_segment_reads_the_same_in_both_modes(tmp_path, data):
    work = tmp_path / "fuzz"
    shutil.rmtree(work, ignore_errors=True)
    spool, seg = _spool_with(work, 4)
    raw = seg.read_bytes()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + data.draw(st.binary(max_size=4)) + raw[at + data.draw(st.integers(0, 4)):]
    seg.write_bytes(raw)
    full, full_bad, scanned, scanned_bad = _read_both(spool)
    assert [(c.line, c.reason) for c in scanned_bad] == [(c.line, c.reason) for c in full_bad]
    assert [facts(x) for x in scanned] == [facts(x) for x in full]


def test_the_old_line_format_is_read_by_the_full_parse_in_both_modes(tmp_path):
    spool = Spool(tmp_path / "spool", writer="old-host:spool")
    shutil.copy(OLD_SAMPLE, spool.dir / "seg-0000000001.jsonl")
    old_lines = OLD_SAMPLE.read_bytes().splitlines()
    assert all(scan_line(line) is None for line in old_lines)  # keys in insertion order: not a sealed line
    spool.append([event(10), event(11)])  # the new format after the old one, as after an upgrade
    full, full_bad, scanned, scanned_bad = _read_both(spool)
    assert full_bad == scanned_bad == []
    assert [facts(x) for x in scanned] == [facts(x) for x in full]
    assert [x.seq for x in scanned] == [1, 2, 3, 4, 5] and verify(full) == []
    assert scanned[1].message == 'restic said "repository locked"\n\tby C:\\backup'
    assert [x.line for x in scanned[:3]] == old_lines


class AnsweringClient:
    """Stands in for the Elasticsearch client: keeps each bulk body, answers every item as created."""

    def __init__(self):
        self.bodies: list[bytes] = []

    def bulk(self, operations, refresh, filter_path):
        self.bodies.append(operations)
        return {"errors": False, "items": [{"create": {"status": 201}}] * (operations.count(b"\n") // 2)}

    def close(self):
        pass


def test_the_shipper_sends_intact_lines_unparsed_and_acknowledges_them(tmp_path):
    spool, seg = _spool_with(tmp_path, 29)  # and the spool-created event: 30 lines
    lines = seg.read_bytes().split(b"\n")
    lines[12] = lines[12][:-5]  # reported, skipped; its neighbours go
    seg.write_bytes(b"\n".join(lines))
    client, registry = AnsweringClient(), CollectorRegistry()
    store = ElasticsearchStore(client, endpoint="null:", bulk_events=4)  # type: ignore[arg-type]
    store._template_ready = True
    result = Shipper(spool, store, batch_size=7, metrics=SeclogMetrics(registry, "siwei")).ship()
    assert (result.delivered, result.stored, result.ok) == (29, 29, True)
    assert [(c.line, c.reason.split(" (")[0]) for c in result.corrupt] == [(13, "not JSON")]
    sent = [x for body in client.bodies for x in body.splitlines()]
    actions, docs = [json.loads(x) for x in sent[0::2]], sent[1::2]
    kept = [line for i, line in enumerate(lines[:30]) if i != 12]
    assert [a["create"]["_id"] for a in actions] == [json.loads(line)["event"]["id"] for line in kept]
    assert {a["create"]["_index"] for a in actions[1:]} == {"citydc-seclog-2026.03"}  # [0]: spool-created, now
    for doc, line in zip(docs, kept, strict=True):  # the spool line as written, plus the search words
        assert doc.startswith(line[:-1] + b',"citydc_index":{"words":["')
    assert spool.delivered_heads()["w:spool"].seq == 30 and spool.ack_position().line == 30
    sites = [json.loads(line)["labels"]["site"] for line in kept]
    assert (sites.count("siwei"), sites.count("fengshan")) == (13, 16)
    assert registry.get_sample_value("citydc_seclog_events_delivered_total", {"site": "siwei"}) == 13
    assert registry.get_sample_value("citydc_seclog_events_delivered_total", {"site": "fengshan"}) == 16

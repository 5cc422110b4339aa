"""Malformed input: every case is counted by reason and dropped; memory stays bounded."""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.collectors.netflow import synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decoder import Decoder, ExporterLabels
from citydc.collectors.netflow.records import REASONS
from citydc.collectors.netflow.templates import TemplateCache

GOOD_V9 = synth.v9_datagrams(synth.random_flows(10, seed=1), 9)[0]
GOOD_IPFIX = synth.v9_datagrams(synth.random_flows(10, seed=1), 10)[0]
GOOD_V5 = synth.v5_datagrams(synth.random_flows(10, seed=1))[0]


def errors_after(data: bytes) -> dict:
    dec = Decoder()
    dec.feed(data, "192.0.2.1", "siwei", 0.0)
    dec.flush()
    return {reason: n for (_, _, reason), n in dec.stats.errors.items()}


def test_each_malformed_case_has_its_reason() -> None:
    cases = {
        b"": "truncated_header",
        b"\x00": "truncated_header",
        GOOD_V5[:23]: "truncated_header",
        GOOD_V9[:19]: "truncated_header",
        GOOD_IPFIX[:15]: "truncated_header",
        struct.pack("!H", 7) + b"\0" * 40: "unsupported_version",
        GOOD_V5[:2] + struct.pack("!H", 31) + GOOD_V5[4:]: "length_mismatch",      # count lies
        GOOD_V5[:-1]: "length_mismatch",                                          # truncated record
        GOOD_IPFIX[:2] + struct.pack("!H", len(GOOD_IPFIX) + 4) + GOOD_IPFIX[4:]: "length_mismatch",
        GOOD_V9[:20] + struct.pack("!HH", 0, 2) + GOOD_V9[24:]: "bad_set",         # set length < 4
        GOOD_V9[:20] + struct.pack("!HH", 0, 60000) + GOOD_V9[24:]: "bad_set",     # set past the end
        # template with 0 fields, then one with absurd field count
        GOOD_V9[:20] + struct.pack("!HHHH", 0, 8, 256, 0): "bad_template",
        GOOD_V9[:20] + struct.pack("!HHHH", 0, 8, 256, 5000): "bad_template",
        # template whose fields have length 0 -> record length 0 (would divide by zero)
        GOOD_V9[:20] + struct.pack("!HHHHHH", 0, 12, 256, 1, 1, 0): "bad_template",
        # template id below 256
        GOOD_V9[:20] + struct.pack("!HHHHHH", 0, 12, 12, 1, 1, 4): "bad_template",
        # IPFIX options template with scope count above field count
        struct.pack("!HHIII", 10, 30, 0, 0, 0) + struct.pack("!HHHHHHH", 3, 14, 256, 1, 2, 1, 4): "bad_template",
    }
    for data, reason in cases.items():
        assert errors_after(data) == {reason: 1}, (data.hex(), reason)


def test_records_before_a_bad_set_are_kept() -> None:
    dec = Decoder()
    dec.feed(GOOD_V9 + struct.pack("!HH", 0, 9999), "192.0.2.1", "siwei", 0.0)
    assert sum(len(b) for b in dec.flush()) == 10
    assert dec.stats.errors[("siwei", "192.0.2.1", "bad_set")] == 1


def test_variable_length_field_running_past_the_set() -> None:
    tmpl = struct.pack("!HH", 2, 12) + struct.pack("!HHHH", 400, 1, 96, 65535)
    data = struct.pack("!HH", 400, 8) + b"\x09abc"
    msg = tmpl + data
    assert errors_after(struct.pack("!HHIII", 10, 16 + len(msg), 0, 0, 0) + msg) == {"bad_record": 1}


def test_ever_new_template_ids_stay_bounded() -> None:
    dec = Decoder(templates=TemplateCache(max_templates=100))
    for i in range(5000):
        tid = 256 + i % 60000
        body = struct.pack("!HHHH", tid, 1, 1, 4)
        msg = struct.pack("!HH", 2, 4 + len(body)) + body
        dec.feed(struct.pack("!HHIII", 10, 16 + len(msg), 0, 0, i) + msg, f"198.51.100.{i % 200}", "siwei", float(i))
    assert len(dec.templates) == 100
    assert dec.templates.removed["evicted"] == 4900


def test_exporter_labels_stay_bounded_under_spoofed_sources() -> None:
    dec = Decoder(exporter_labels=ExporterLabels({"192.0.2.1": "core"}, max_unknown=3))
    for i in range(50):
        dec.feed(b"\x00\x07garbage", f"203.0.113.{i}", "siwei", 0.0)
    dec.feed(b"\x00\x07garbage", "192.0.2.1", "siwei", 0.0)
    exporters = {exporter for (_, exporter, _) in dec.stats.errors}
    assert exporters == {"203.0.113.0", "203.0.113.1", "203.0.113.2", "other", "core"}


def test_endless_garbage_keeps_state_bounded() -> None:
    rng = random.Random(7)
    dec = Decoder(templates=TemplateCache(max_templates=64), hold_sets=32)
    for i in range(20000):
        version = rng.choice([5, 9, 10, rng.randrange(65536)])
        dec.feed(struct.pack("!H", version) + rng.randbytes(rng.randrange(0, 300)), "192.0.2.1", "siwei", i / 100)
        if i % 1000 == 0:
            dec.flush()
    dec.flush()
    assert len(dec.templates) <= 64 and dec.held_sets <= 32
    assert dec.pending_bytes == 0
    assert set(r for (_, _, r) in dec.stats.errors) <= set(REASONS) - {"internal_error"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([GOOD_V5, GOOD_V9, GOOD_IPFIX]), st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)),
                                                                  max_size=8),
       st.integers(0, 1500))
def test_fuzz_mutated_datagrams_never_raise_nor_hit_the_crash_guard(base: bytes, flips: list, cut: int) -> None:
    data = bytearray(base)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[: max(cut, 0) or len(data)])
    for compiled in (False, True):  # the numpy path and the compiled one (fastpath.py)
        dec, agg = Decoder(), Aggregator([AgencyPrefixes.build("a", ["10.0.0.0/8", "fd00::/8"])])
        if compiled:
            dec.use_compiled(agg)
        dec.feed(data, "192.0.2.1", "siwei", 0.0)
        dec.feed(data, "192.0.2.1", "siwei", 0.0)
        for batch in dec.flush():
            if not compiled:
                assert len(batch["bytes"]) == len(batch["src4"])
            agg.add(batch)
        assert ("siwei", "192.0.2.1", "internal_error") not in dec.stats.errors
        assert agg.records == sum(dec.stats.records.values())

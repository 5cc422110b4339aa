"""Records and sets the decoder must refuse (and count) instead of adding: counters no link can
carry (findings-2 #2) and the template/set edge cases of RFC 3954 / RFC 7011 (findings-2 #17).

Every case runs on both decode paths (numpy and the compiled one) and ends in the aggregator, so
what is checked is what the exported counters would show."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.collectors.netflow import fastpath
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decode import MAX_FLOW_COUNTER
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.metrics import NetflowMetrics

EXPORTER = "127.0.0.1"
PATHS = ["numpy", pytest.param("compiled", marks=pytest.mark.skipif(not fastpath.available(),
                                                                     reason="extension not built"))]


def pipeline(path: str, sampling: int = 1) -> tuple[Decoder, Aggregator]:
    agg = Aggregator([AgencyPrefixes.build("police", ["10.10.2.0/24"])])
    dec = Decoder(sampling={EXPORTER: sampling})
    if path == "compiled":
        dec.use_compiled(agg)
    return dec, agg


def feed(dec: Decoder, agg: Aggregator, *datagrams: bytes) -> None:
    for i, data in enumerate(datagrams):
        dec.feed(data, EXPORTER, "siwei", float(i))
        for batch in dec.flush():
            agg.add(batch)


def v9(*sets: bytes, seq: int = 1) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), 100000, 1_700_000_000, seq, 1) + b"".join(sets)


def ipfix(*sets: bytes, seq: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, seq, 1) + body


def flowset(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", e, n) for e, n in fields)


def v5(octets: int, packets: int, sampling: int = 0) -> bytes:
    header = struct.pack("!HHIIIIBBH", 5, 1, 100000, 1_700_000_000, 0, 0, 0, 0, sampling)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", socket.inet_aton("10.10.2.5"), socket.inet_aton("8.8.8.8"),
                         b"\0" * 4, 1, 2, packets, octets, 0, 0, 1234, 443, 0, 0, 6, 0, 0, 0, 0, 0, 0)
    return header + record


WIDE = [(8, 4), (1, 8), (2, 8)]  # sourceIPv4Address, octetDeltaCount, packetDeltaCount: 8-byte counters


def wide_record(octets: int, packets: int, source: str = "10.10.2.9") -> bytes:
    return struct.pack("!4sQQ", socket.inet_aton(source), octets, packets)


def police(agg: Aggregator) -> list[int]:
    return list(agg.agency.get(("siwei", "police", "out"), [0, 0]))


@pytest.mark.parametrize("path", PATHS)
def test_huge_octet_record_is_counted_and_does_not_freeze_the_counters(path: str) -> None:
    # findings-2 #2: one record of 2**64 - 1 bytes used to make every later record vanish in the float64.
    dec, agg = pipeline(path)
    feed(dec, agg, v9(flowset(0, template(312, WIDE))),
         v9(flowset(312, wide_record(2**64 - 1, 2**64 - 1) + wide_record(1000, 10)), seq=2))
    feed(dec, agg, v5(1000, 10), v5(1000, 10))
    assert police(agg) == [3000, 30]
    assert dec.stats.errors[("siwei", EXPORTER, "implausible_counter")] == 1
    assert dec.stats.records[("siwei", EXPORTER, "9")] == 1  # the good record of the same set is kept
    text = "\n".join(f"{s.name} {s.labels} {s.value}" for fam in NetflowMetrics(dec, agg).collect()
                     for s in fam.samples if s.name == "citydc_netflow_decode_errors_total")
    assert "'reason': 'implausible_counter'" in text


@pytest.mark.parametrize("path", PATHS)
def test_record_sampling_interval_that_scales_past_the_bound_is_refused(path: str) -> None:
    dec, agg = pipeline(path)
    fields = [(8, 4), (1, 4), (2, 4), (34, 4)]  # samplingInterval in the record
    record = struct.pack("!4sIII", socket.inet_aton("10.10.2.7"), 4_000_000_000, 10, 4_000_000_000)
    feed(dec, agg, v9(flowset(0, template(313, fields))), v9(flowset(313, record), seq=2))
    assert police(agg) == [0, 0]
    assert dec.stats.errors[("siwei", EXPORTER, "implausible_counter")] == 1


@pytest.mark.parametrize("path", PATHS)
def test_configured_rate_that_scales_v5_past_the_bound_is_refused(path: str) -> None:
    # 4-byte v5 counters pass unchecked at any header rate; a configured rate above 65536 is checked.
    dec, agg = pipeline(path, sampling=10**9)
    feed(dec, agg, v5(4_000_000_000, 10), v5(100, 1))
    assert dec.stats.errors[("siwei", EXPORTER, "implausible_counter")] == 1
    assert police(agg) == [100 * 10**9, 10**9]


@pytest.mark.parametrize("path", PATHS)
def test_counters_at_the_bound_are_kept(path: str) -> None:
    dec, agg = pipeline(path)
    feed(dec, agg, v9(flowset(0, template(312, WIDE))),
         v9(flowset(312, wide_record(MAX_FLOW_COUNTER, 1) + wide_record(MAX_FLOW_COUNTER + 1, 1)), seq=2))
    assert police(agg) == [MAX_FLOW_COUNTER, 1]
    assert dec.stats.errors[("siwei", EXPORTER, "implausible_counter")] == 1


@settings(max_examples=60, deadline=None)
@given(octets=st.integers(0, 2**64 - 1), packets=st.integers(0, 2**64 - 1))
def test_any_8_byte_counter_is_either_added_exactly_or_counted(octets: int, packets: int) -> None:
    for path in ("numpy", "compiled") if fastpath.available() else ("numpy",):
        dec, agg = pipeline(path)
        feed(dec, agg, v9(flowset(0, template(312, WIDE))), v9(flowset(312, wide_record(octets, packets)), seq=2))
        refused = dec.stats.errors[("siwei", EXPORTER, "implausible_counter")]
        if octets > MAX_FLOW_COUNTER or packets > MAX_FLOW_COUNTER:
            assert refused == 1 and police(agg) == [0, 0]
        else:
            assert refused == 0
            assert police(agg) == ([octets, packets] if packets else [0, 0])  # no packets: not an agency row


@pytest.mark.parametrize("path", PATHS)
def test_v9_field_of_length_65535_is_a_bad_template_not_a_variable_field(path: str) -> None:
    # findings-2 #17: it turned a 100-byte data set into 100 records. v9 has no variable-length fields.
    dec, agg = pipeline(path)
    feed(dec, agg, v9(flowset(0, template(306, [(1, 65535)]))), v9(flowset(306, b"\0" * 100), seq=2))
    assert dec.stats.errors[("siwei", EXPORTER, "bad_template")] == 1
    assert sum(dec.stats.records.values()) == 0


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fields", [
    [(8, 4), (1, 9), (2, 4)],   # octetDeltaCount of 9 bytes: its bytes were silently dropped
    [(8, 16), (1, 4)],          # sourceIPv4Address of 16 bytes
    [(27, 4), (1, 4)],          # sourceIPv6Address of 4 bytes
    [(8, 4), (1, 4), (4, 0)],   # protocolIdentifier of 0 bytes
])
def test_ipfix_field_with_a_length_its_type_cannot_have_is_a_bad_template(path: str, fields) -> None:
    dec, agg = pipeline(path)
    feed(dec, agg, ipfix(flowset(2, template(273, fields))))
    assert dec.stats.errors[("siwei", EXPORTER, "bad_template")] == 1


@pytest.mark.parametrize("path", PATHS)
def test_reduced_size_counters_stay_valid(path: str) -> None:
    dec, agg = pipeline(path)
    record = socket.inet_aton("10.10.2.11") + b"\0\1\0" + b"\0\0\1"
    feed(dec, agg, ipfix(flowset(2, template(272, [(8, 4), (1, 3), (2, 3)]))), ipfix(flowset(272, record)))
    assert police(agg) == [256, 1]
    assert not dec.stats.errors


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("version,set_id", [(10, 0), (10, 1), (10, 4), (10, 255), (9, 2), (9, 255)])
def test_reserved_set_ids_are_counted_and_the_rest_of_the_datagram_is_read(path: str, version: int,
                                                                           set_id: int) -> None:
    dec, agg = pipeline(path)
    tset = 2 if version == 10 else 0
    message = ipfix if version == 10 else v9
    record = struct.pack("!4sII", socket.inet_aton("10.10.2.5"), 500, 5)
    feed(dec, agg, message(flowset(tset, template(400, [(8, 4), (1, 4), (2, 4)]))),
         message(flowset(set_id, b"\0" * 8), flowset(400, record)))
    assert dec.stats.errors[("siwei", EXPORTER, "reserved_set")] == 1
    assert police(agg) == [500, 5]

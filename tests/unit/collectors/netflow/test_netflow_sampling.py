"""Sampling rates announced in options data, on both decode paths: PSAMP count-based sampling
(samplingPacketInterval + samplingPacketSpace, as softflowd -s N sends it over IPFIX) and a rate
that applies to the flow data of its own datagram whatever the order of the template ids."""

from __future__ import annotations

import struct

import pytest

from citydc.collectors.netflow import fastpath
from citydc.collectors.netflow.aggregate import Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.receive import Received

EXPORTER = "192.0.2.1"
# (element id, length): source, destination, octets, packets, ingress, egress ifIndex, ports, protocol
FIELDS = [(8, 4), (12, 4), (1, 4), (2, 4), (10, 4), (14, 4), (7, 2), (11, 2), (4, 1)]
OCTETS, PACKETS = 1000, 10

# softflowd 1.1.0 -v 10 -s 10: its options template set and options data set, byte for byte (captured
# from softflowd -r on a pcap): meteringProcessId (scope), systemInitTimeMilliseconds,
# samplingPacketInterval 1, samplingPacketSpace 9, selectorAlgorithm 1 (systematic count-based), interfaceName.
SOFTFLOWD_OPTIONS_TEMPLATE = bytes.fromhex("00030022010000060001008f000400a0000801310004013200040130000200520010")
SOFTFLOWD_OPTIONS_DATA = bytes.fromhex("0100002a00002f47000001a252c7f39b0000000100000009000174726166666963312e70636170"
                                       "000000")


def a_set(set_id: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", e, n) for e, n in fields)


def record() -> bytes:
    return struct.pack("!IIIIIIHHB", 0x0A000001, 0x0A000002, OCTETS, PACKETS, 1, 2, 40000, 80, 6)


def ipfix(*sets: bytes) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, 0, 0) + body


def v9(*sets: bytes) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), 5000, 1_700_000_000, 1, 0) + b"".join(sets)


def ingress_totals(datagram: bytes, compiled: bool) -> list[int]:
    """Decode one datagram on the given path; return [bytes, packets] of ingress interface 1."""
    agg = Aggregator([])
    dec = Decoder()
    if compiled:
        dec.use_compiled(agg)
    dec.feed_batch(Received.of([(datagram, EXPORTER)]), "siwei", 0.0)
    for batch in dec.flush():
        agg.add(batch)
    assert not dec.stats.errors
    return list(agg.interfaces[("siwei", EXPORTER, "1", "in")])


PATHS = [False, True] if fastpath.available() else [False]


@pytest.mark.parametrize("compiled", PATHS)
def test_psamp_interval_and_space_announce_one_in_their_sum(compiled: bool) -> None:
    # samplingPacketInterval 1 selected, samplingPacketSpace 9 skipped: 1 packet in 10, as softflowd -s 10 means.
    datagram = ipfix(SOFTFLOWD_OPTIONS_TEMPLATE, SOFTFLOWD_OPTIONS_DATA, a_set(2, template(1024, FIELDS)),
                     a_set(1024, record()))
    assert ingress_totals(datagram, compiled) == [10 * OCTETS, 10 * PACKETS]


@pytest.mark.parametrize("compiled", PATHS)
def test_psamp_rate_is_rounded_ratio(compiled: bool) -> None:
    # 3 selected of every 3 + 27: 1 in 10; 2 selected, 3 skipped: 1 in 2.5, rounded to 2 (round half to even).
    options = a_set(3, struct.pack("!HHH", 256, 3, 1) + struct.pack("!HHHHHH", 143, 4, 305, 4, 306, 4))
    flows = (a_set(2, template(1024, FIELDS)), a_set(1024, record()))
    for selected, skipped, rate in ((3, 27, 10), (2, 3, 2)):
        datagram = ipfix(options, a_set(256, struct.pack("!III", 1, selected, skipped)), *flows)
        assert ingress_totals(datagram, compiled) == [rate * OCTETS, rate * PACKETS]


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("options_id", [300, 2048])
def test_options_rate_applies_to_its_datagram_whatever_the_template_ids(compiled: bool, options_id: int) -> None:
    # Data template 1024; the options template's id sorts after it (2048) or before it (300).
    options = a_set(1, struct.pack("!HHH", options_id, 4, 4) + struct.pack("!HHHH", 2, 4, 34, 4))
    datagram = v9(a_set(0, template(1024, FIELDS)), options, a_set(options_id, struct.pack("!II", 0, 10)),
                  a_set(1024, record()))
    assert ingress_totals(datagram, compiled) == [10 * OCTETS, 10 * PACKETS]

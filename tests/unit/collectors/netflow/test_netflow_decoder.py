"""The decode stage on bytes alone: committed softflowd captures, byte-literal datagrams,
templates (refresh, withdrawal, expiry, variable-length and enterprise fields) and sampling."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from citydc.collectors.netflow import synth
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.pcapfile import udp_payloads
from citydc.collectors.netflow.records import concat
from citydc.collectors.netflow.templates import TemplateCache

# Real softflowd captures with nfdump's reading of them, committed for the unit tier (tests/data/netflow).
CAPTURES = Path(__file__).resolve().parents[3] / "data" / "netflow"


def decode_all(decoder: Decoder, datagrams, exporter: str = "192.0.2.1", now: float = 0.0):
    for data in datagrams:
        decoder.feed(data, exporter, "siwei", now)
    batches = decoder.flush()
    return concat(batches) if batches else None


@pytest.mark.parametrize("name", ["v5", "v9", "ipfix"])
def test_shared_capture_decodes_to_sidecar_totals(name: str) -> None:
    expected = json.loads((CAPTURES / f"softflowd-{name}-shared.json").read_text())
    payloads = udp_payloads(CAPTURES / f"softflowd-{name}-shared.pcap")
    assert len(payloads) == expected["export_datagrams"]
    dec = Decoder()
    batches = []
    for _, _, data in payloads:
        dec.feed(data, "10.99.77.2", "siwei", 0.0)
    batches = dec.flush()
    n = sum(len(b) for b in batches)
    assert n == expected["flows"]
    assert sum(int(b["bytes"].sum()) for b in batches) == expected["bytes"]
    assert sum(int(b["packets"].sum()) for b in batches) == expected["packets"]
    assert sum(int((b["ip_version"] == 4).sum()) for b in batches) == expected["flows_ipv4"]
    assert sum(int((b["ip_version"] == 6).sum()) for b in batches) == expected["flows_ipv6"]
    for proto, totals in expected["by_protocol"].items():
        got = sum(int(b["bytes"][b["proto"] == int(proto)].sum()) for b in batches)
        assert got == totals["bytes"], proto
    assert not dec.stats.errors


def test_capture_flow_detail_matches_nfdump_per_flow() -> None:
    expected = json.loads((CAPTURES / "softflowd-v9-shared.json").read_text())["flows_detail"]
    dec = Decoder()
    for _, _, data in udp_payloads(CAPTURES / "softflowd-v9-shared.pcap"):
        dec.feed(data, "10.99.77.2", "siwei", 0.0)
    from citydc.collectors.netflow.flowlog import records_as_dicts
    got = sorted((r["source.ip"], r["destination.ip"], r["source.port"], r["destination.port"],
                  r["network.iana_number"], r["network.bytes"], r["network.packets"])
                 for b in dec.flush() for r in records_as_dicts(b))
    want = sorted((f["src"], f["dst"], f["sport"], f["dport"], f["proto"], f["bytes"], f["packets"]) for f in expected)
    assert got == want


# A v5 datagram written out by hand: one record 10.1.2.3:1234 -> 10.4.5.6:443 TCP, 7 packets, 4200 bytes,
# ifIndex 3 -> 4, header sampling interval 0 (unsampled).
V5_ONE = bytes.fromhex(
    "0005" "0001" "000003e8" "65000000" "00000000" "00000000" "00" "00" "0000"
    "0a010203" "0a040506" "00000000" "0003" "0004" "00000007" "00001068" "00000000" "00000000"
    "04d2" "01bb" "00" "18" "06" "00" "0000" "0000" "18" "18" "0000")


def test_v5_byte_literal() -> None:
    batch = decode_all(Decoder(), [V5_ONE])
    assert len(batch) == 1
    assert (int(batch["src4"][0]), int(batch["dst4"][0])) == (0x0A010203, 0x0A040506)
    assert (int(batch["sport"][0]), int(batch["dport"][0]), int(batch["proto"][0])) == (1234, 443, 6)
    assert (int(batch["bytes"][0]), int(batch["packets"][0])) == (4200, 7)
    assert (int(batch["in_if"][0]), int(batch["out_if"][0])) == (3, 4)


def test_v5_header_sampling_scales_bytes_and_packets() -> None:
    sampled = V5_ONE[:22] + struct.pack("!H", 1 << 14 | 100) + V5_ONE[24:]
    batch = decode_all(Decoder(), [sampled])
    assert (int(batch["bytes"][0]), int(batch["packets"][0])) == (420000, 700)


def test_v5_config_sampling_applies_when_exporter_does_not_announce() -> None:
    batch = decode_all(Decoder(sampling={"192.0.2.1": 8}), [V5_ONE])
    assert int(batch["bytes"][0]) == 4200 * 8


def test_v9_options_template_announces_sampling() -> None:
    flows = synth.random_flows(100, seed=3)
    plain = decode_all(Decoder(), synth.v9_datagrams(flows, 9))
    sampled_dec = Decoder(sampling={"192.0.2.1": 3})  # the announced rate wins over the config
    sampled = decode_all(sampled_dec, synth.v9_datagrams(flows, 9, prefix=synth.options_v9(300, 64)))
    assert int(plain["bytes"].sum()) == int(flows.bytes.astype(np.uint64).sum())
    assert int(sampled["bytes"].sum()) == 64 * int(plain["bytes"].sum())
    assert int(sampled["packets"].sum()) == 64 * int(plain["packets"].sum())
    assert sampled_dec.announced_sampling == {("siwei", "192.0.2.1", 9, 0): 64}


@pytest.mark.parametrize("version", [9, 10])
def test_records_before_template_are_held_then_replayed(version: int) -> None:
    flows = synth.random_flows(60, seed=4)
    datagrams = synth.v9_datagrams(flows, version, per_datagram=30, template_every=1000)
    first, second = datagrams
    # Strip the template from the first datagram and send it after the second.
    tmpl_len = struct.unpack_from("!H", first, (20 if version == 9 else 16) + 2)[0]
    head = 20 if version == 9 else 16
    data_only = first[:head] + first[head + tmpl_len:]
    if version == 10:
        data_only = data_only[:2] + struct.pack("!H", len(data_only)) + data_only[4:]
    dec = Decoder()
    batch = decode_all(dec, [second, data_only, first])
    # second (30) and data_only (30) were held, first (30) decoded directly.
    assert len(batch) == 90
    assert dec.stats.unknown_template_sets[("siwei", "192.0.2.1", str(version), "replayed")] == 2


def test_held_sets_are_bounded_and_expire() -> None:
    flows = synth.random_flows(30, seed=5)
    (dg,) = synth.v9_datagrams(flows, 9)
    head, tmpl_len = 20, struct.unpack_from("!H", dg, 22)[0]
    data_only = dg[:head] + dg[head + tmpl_len:]
    dec = Decoder(hold_sets=4, hold_seconds=5.0)
    for _ in range(10):
        dec.feed(data_only, "192.0.2.1", "siwei", 0.0)
    assert dec.held_sets == 4
    assert dec.stats.unknown_template_sets[("siwei", "192.0.2.1", "9", "dropped")] == 6
    dec.feed(V5_ONE, "192.0.2.1", "siwei", 6.0)  # any later datagram expires the old ones
    assert dec.held_sets == 0
    assert dec.stats.unknown_template_sets[("siwei", "192.0.2.1", "9", "dropped")] == 10


def ipfix_message(*sets: bytes, domain: int = 7) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, 0, domain) + body


def ipfix_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def test_ipfix_enterprise_and_variable_length_fields_are_skipped_safely() -> None:
    # Template 300: sourceIPv4Address, an enterprise element (PEN 9, 4 bytes), a variable-length
    # string (applicationName 96), octetDeltaCount (8 bytes), packetDeltaCount (4 bytes).
    tmpl = ipfix_set(2, struct.pack("!HH", 300, 5) + struct.pack("!HH", 8, 4)
                     + struct.pack("!HHI", 0x8000 | 1, 4, 9) + struct.pack("!HH", 96, 65535)
                     + struct.pack("!HH", 1, 8) + struct.pack("!HH", 2, 4))
    rec1 = bytes([10, 0, 0, 1]) + b"ENTR" + b"\x03abc" + struct.pack("!QI", 1000, 10)
    rec2 = bytes([10, 0, 0, 2]) + b"ENTR" + b"\xff" + struct.pack("!H", 300) + b"x" * 300 + struct.pack("!QI", 5, 1)
    batch = decode_all(Decoder(), [ipfix_message(tmpl, ipfix_set(300, rec1 + rec2 + b"\0\0"))])
    assert [int(x) for x in batch["src4"]] == [0x0A000001, 0x0A000002]
    assert [int(x) for x in batch["bytes"]] == [1000, 5]
    assert [int(x) for x in batch["packets"]] == [10, 1]


def test_ipfix_reduced_size_counters() -> None:
    # octetDeltaCount in 3 bytes and packetDeltaCount in 1 byte (RFC 7011 reduced-size encoding).
    tmpl = ipfix_set(2, struct.pack("!HHHHHH", 301, 2, 1, 3, 2, 1))
    batch = decode_all(Decoder(), [ipfix_message(tmpl, ipfix_set(301, b"\x01\x00\x02\x05" + b"\x00\x00\x10\x01"))])
    assert [int(x) for x in batch["bytes"]] == [0x010002, 16]
    assert [int(x) for x in batch["packets"]] == [5, 1]


def test_ipfix_ipv6_record() -> None:
    tmpl = ipfix_set(2, struct.pack("!HH", 302, 4) + struct.pack("!HHHHHHHH", 27, 16, 28, 16, 1, 4, 2, 4))
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000010000000000000002")
    batch = decode_all(Decoder(), [ipfix_message(tmpl, ipfix_set(302, src + dst + struct.pack("!II", 99, 3)))])
    assert int(batch["ip_version"][0]) == 6
    assert int(batch["src6_hi"][0]) == 0x20010DB800000000 and int(batch["src6_lo"][0]) == 1
    assert int(batch["dst6_hi"][0]) == 0x20010DB800000001 and int(batch["dst6_lo"][0]) == 2
    assert int(batch["bytes"][0]) == 99


def test_ipfix_template_withdrawal_and_refresh() -> None:
    tmpl = ipfix_set(2, struct.pack("!HHHHHH", 303, 2, 1, 4, 2, 4))
    data = ipfix_set(303, struct.pack("!II", 10, 1))
    dec = Decoder()
    assert len(decode_all(dec, [ipfix_message(tmpl, data)])) == 1
    withdraw = ipfix_set(2, struct.pack("!HH", 303, 0))
    assert decode_all(dec, [ipfix_message(withdraw, data)]) is None  # data after withdrawal: held
    assert dec.templates.removed["withdrawn"] == 1
    assert dec.held_sets == 1
    assert len(decode_all(dec, [ipfix_message(tmpl)])) == 1  # re-announced: the held set replays


def test_ipfix_withdraw_all() -> None:
    dec = Decoder()
    for tid in (310, 311):
        dec.feed(ipfix_message(ipfix_set(2, struct.pack("!HHHHHH", tid, 2, 1, 4, 2, 4))), "192.0.2.1", "siwei", 0)
    assert len(dec.templates) == 2
    dec.feed(ipfix_message(ipfix_set(2, struct.pack("!HH", 2, 0))), "192.0.2.1", "siwei", 0)
    assert len(dec.templates) == 0


def test_template_expiry() -> None:
    dec = Decoder(templates=TemplateCache(timeout_seconds=60))
    tmpl = ipfix_set(2, struct.pack("!HHHHHH", 304, 2, 1, 4, 2, 4))
    data = ipfix_set(304, struct.pack("!II", 10, 1))
    dec.feed(ipfix_message(tmpl), "192.0.2.1", "siwei", 0.0)
    dec.feed(ipfix_message(data), "192.0.2.1", "siwei", 61.0)
    assert dec.flush() == []
    assert dec.templates.removed["expired"] == 1


def test_templates_are_per_exporter_and_domain() -> None:
    dec = Decoder()
    tmpl = ipfix_set(2, struct.pack("!HHHHHH", 305, 2, 1, 4, 2, 4))
    data = ipfix_set(305, struct.pack("!II", 10, 1))
    dec.feed(ipfix_message(tmpl, domain=1), "192.0.2.1", "siwei", 0)
    dec.feed(ipfix_message(data, domain=2), "192.0.2.1", "siwei", 0)  # other domain: unknown
    dec.feed(ipfix_message(data, domain=1), "192.0.2.9", "siwei", 0)  # other exporter: unknown
    assert dec.flush() == []
    assert dec.held_sets == 2


def test_v9_unpadded_flowsets_and_lying_count_are_walked_by_length() -> None:
    flows = synth.random_flows(5, seed=6)
    (dg,) = synth.v9_datagrams(flows, 9)
    lying = dg[:2] + struct.pack("!H", 1) + dg[4:]  # count says 1; there are 5 records and a template
    batch = decode_all(Decoder(), [lying])
    assert len(batch) == 5

"""The batch path: many datagrams decoded together must give what decoding them one by one gives,
a bad datagram must not cost the good ones of its batch, and the batch receiver must hand over
every datagram whole (recvmmsg and the fallback loop alike)."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from citydc.collectors.netflow import synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, AgencyTable, key_sums
from citydc.collectors.netflow.batch import VECTOR_WALK
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.pending import PendingRecords
from citydc.collectors.netflow.receive import BatchReceiver, Received, open_socket
from citydc.collectors.netflow.v5 import TEMPLATE as V5_TEMPLATE

FLOWS = synth.random_flows(600, seed=31)


def mixed_stream() -> list[tuple[bytes, str]]:
    out = [(d, "192.0.2.1") for d in synth.v5_datagrams(FLOWS)]
    out += [(d, "192.0.2.2") for d in synth.v9_datagrams(FLOWS, 9, template_every=7)]
    out += [(d, "192.0.2.3") for d in synth.v9_datagrams(FLOWS, 10, template_every=5, domain=4)]
    return out


def totals(dec: Decoder) -> dict:
    return {(b.exporter, b.version): (len(b), int(b["bytes"].sum()), int(b["packets"].sum()),
                                      int(b["src4"].astype(np.uint64).sum()), int(b["dport"].sum()))
            for b in dec.flush()}


def test_one_batch_decodes_like_one_datagram_at_a_time() -> None:
    stream = mixed_stream()
    single, batched = Decoder(), Decoder()
    for data, exporter in stream:
        single.feed(data, exporter, "siwei", 0.0)
    # interleave the exporters in the batch, as a busy socket would
    order = np.random.default_rng(1).permutation(len(stream))
    by_exporter = {e: [d for d, x in stream if x == e] for e in ("192.0.2.1", "192.0.2.2", "192.0.2.3")}
    interleaved, cursor = [], dict.fromkeys(by_exporter, 0)
    for i in order:
        exporter = stream[i][1]
        interleaved.append((by_exporter[exporter][cursor[exporter]], exporter))
        cursor[exporter] += 1
    batched.feed_batch(Received.of(interleaved), "siwei", 0.0)
    want = totals(single)
    assert want == totals(batched)
    flow_bytes = int(FLOWS.bytes.astype(np.uint64).sum())
    assert {v[1] for v in want.values()} == {flow_bytes}
    assert single.stats.records == batched.stats.records
    assert single.stats.datagrams == batched.stats.datagrams
    assert not batched.stats.errors


def test_bad_datagrams_cost_only_themselves() -> None:
    good5, good9 = synth.v5_datagrams(FLOWS)[:2], synth.v9_datagrams(FLOWS, 9, template_every=100)[:2]
    bad = [
        b"\x00",                                                   # truncated_header
        struct.pack("!H", 7) + b"\0" * 40,                         # unsupported_version
        good5[0][:-1],                                             # length_mismatch
        good9[1][:20] + struct.pack("!HH", 1024, 60000) + good9[1][24:],   # bad_set
        good9[1][:20] + struct.pack("!HHHH", 0, 8, 256, 0),        # bad_template
    ]
    batch = [good9[0], bad[0], good5[0], bad[1], bad[2], good9[1], bad[3], bad[4], good5[1]]
    dec = Decoder()
    dec.feed_batch(Received.of([(d, "192.0.2.1") for d in batch]), "siwei", 0.0)
    got = {b.version: len(b) for b in dec.flush()}
    assert got == {5: 60, 9: 60}
    reasons = {reason: n for (_, _, reason), n in dec.stats.errors.items()}
    assert reasons == {"truncated_header": 1, "unsupported_version": 1, "length_mismatch": 1, "bad_set": 1,
                       "bad_template": 1}


def ipfix(*sets: bytes, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 0, 0, domain) + body


def ipfix_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def test_template_changed_inside_a_batch_keeps_the_old_layout_for_earlier_records() -> None:
    # Template 300 first as (octetDeltaCount 4, packetDeltaCount 4), then redefined with the
    # fields swapped; each layout's records must be read with their own template.
    old = ipfix_set(2, struct.pack("!HHHHHH", 300, 2, 1, 4, 2, 4))
    new = ipfix_set(2, struct.pack("!HHHHHH", 300, 2, 2, 4, 1, 4))
    batch = [ipfix(old), ipfix(ipfix_set(300, struct.pack("!II", 1000, 1))),
             ipfix(new, ipfix_set(300, struct.pack("!II", 2, 2000)))]
    dec = Decoder()
    dec.feed_batch(Received.of([(d, "192.0.2.1") for d in batch]), "siwei", 0.0)
    records = sorted((int(b["bytes"][i]), int(b["packets"][i])) for b in dec.flush() for i in range(len(b)))
    assert records == [(1000, 1), (2000, 2)]


def test_many_sets_in_one_datagram_are_walked_past_the_vector_limit() -> None:
    tmpl = ipfix_set(2, struct.pack("!HHHHHH", 301, 2, 1, 4, 2, 4))
    data = [ipfix_set(301, struct.pack("!II", 10 + i, 1)) for i in range(VECTOR_WALK * 2 + 3)]
    good = ipfix(tmpl, *data)
    broken = ipfix(tmpl, *data, struct.pack("!HH", 301, 2))  # last set header lies (length 2)
    dec = Decoder()
    dec.feed_batch(Received.of([(good, "192.0.2.1"), (broken, "192.0.2.1")]), "siwei", 0.0)
    (out,) = dec.flush()
    assert len(out) == 2 * len(data)
    assert int(out["bytes"].sum()) == 2 * sum(10 + i for i in range(len(data)))
    assert {r: n for (_, _, r), n in dec.stats.errors.items()} == {"bad_set": 1}


def test_data_before_its_template_in_the_same_batch_is_decoded() -> None:
    datagrams = synth.v9_datagrams(synth.random_flows(60, seed=2), 9, template_every=1000)
    first, second = datagrams
    dec = Decoder()
    dec.feed_batch(Received.of([(second, "192.0.2.1"), (first, "192.0.2.1")]), "siwei", 0.0)
    assert sum(len(b) for b in dec.flush()) == 60
    assert dec.held_sets == 0


@pytest.mark.parametrize(("use_recvmmsg", "compiled"), [(True, True), (True, False), (False, False)],
                         ids=["recvmmsg-compiled", "recvmmsg-ctypes", "recvfrom-loop"])
def test_batch_receiver_hands_over_every_datagram_whole(use_recvmmsg: bool, compiled: bool) -> None:
    sock = open_socket("127.0.0.1", 0, 4 << 20)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for i, s in enumerate(senders):
        s.bind((f"127.0.0.{i + 2}", 0))
    # Sizes around the 2 KiB slot, one far beyond it (spills into the overflow area).
    sizes = [1, 23, 1464, 2047, 2048, 2049, 9000, 60000] * 40
    sent = []
    try:
        for i, size in enumerate(sizes):
            payload = bytes([i % 251]) * size
            senders[i % 2].sendto(payload, sock.getsockname())
            sent.append((payload, f"127.0.0.{i % 2 + 2}"))
        receiver = BatchReceiver(sock, slots=64, use_recvmmsg=use_recvmmsg, compiled=compiled)
        assert receiver._compiled == compiled
        got: list[tuple[bytes, str]] = []
        for _ in range(100):
            batch = receiver.receive()
            if batch is None:
                break
            assert len(batch) <= 64
            for i, length in enumerate(batch.lengths.tolist()):
                got.append((batch.buf[i * batch.slot:i * batch.slot + length].tobytes(),
                            batch.exporters[int(batch.exporter_index[i])]))
        assert receiver.receive() is None
    finally:
        sock.close()
        for s in senders:
            s.close()
    assert got == sent


def test_pending_records_release_oversized_arenas() -> None:
    pending = PendingRecords(limit_bytes=48 * 1000)
    records = np.zeros(3000, V5_TEMPLATE.dtype)
    pending.add("k", V5_TEMPLATE, 1, records)
    assert pending.nbytes == 3000 * 48
    (taken,) = pending.take()
    assert len(taken[3]) == 3000 and pending.nbytes == 0
    assert not pending._arenas  # 144 kB of arena > 2 x 48 kB: released
    pending.add("k", V5_TEMPLATE, 1, records[:10])
    pending.take()
    assert pending.take() == [] and not pending._arenas  # an arena unused for a period is released


def test_key_sums_matches_np_unique_on_both_paths() -> None:
    rng = np.random.default_rng(3)
    src, dst = (rng.integers(0, 50, 5000).astype(np.uint32) for _ in range(2))
    for weights in (rng.integers(0, 2**32, 5000, dtype=np.uint64), rng.integers(0, 2**40, 5000, dtype=np.uint64)):
        keys, sums = key_sums([src, dst], weights)
        uniq, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
        want = np.bincount(inverse, np.concatenate([weights, weights]).astype(np.float64))
        assert keys.tolist() == uniq.tolist()
        assert sums.tolist() == want.tolist()


def test_agency_table_matches_prefix_masks_with_overlaps() -> None:
    agencies = [AgencyPrefixes.build("a", ["10.0.0.0/8", "192.0.2.0/24"]), AgencyPrefixes.build("b", ["10.1.0.0/16"]),
                AgencyPrefixes.build("c", ["10.1.2.128/25", "255.255.255.0/24", "0.0.0.0/32"])]
    rng = np.random.default_rng(4)
    addresses = np.concatenate([rng.integers(0, 2**32, 2000, dtype=np.uint64),
                                0x0A010200 + rng.integers(0, 512, 2000, dtype=np.uint64),
                                np.array([0, 1, 2**32 - 1, 0x0A000000 - 1, 0x0A000000, 0x0AFFFFFF, 0x0B000000])]
                               ).astype(np.uint32)
    sources = rng.permutation(addresses)
    weights = rng.random(len(addresses))
    ((to, frm),) = AgencyTable(agencies).sums(addresses, sources, [weights])
    for a, agency in enumerate(agencies):
        for column, got in ((addresses, to), (sources, frm)):
            hit = np.zeros(len(column), bool)
            for net, mask in agency.v4:
                hit |= (column & np.uint32(mask)) == np.uint32(net)
            assert got[a] == pytest.approx(weights[hit].sum(), rel=1e-12), agency.name


def test_agency_table_with_many_prefixes_uses_binary_search_alike() -> None:
    agencies = [AgencyPrefixes.build(f"a{i}", [f"10.{i}.0.0/16", f"172.16.{i}.0/24"]) for i in range(20)]
    table = AgencyTable(agencies)
    assert len(table.bounds) > 16
    addresses = np.array([0x0A050001, 0xAC100301, 0x0B000000, 0x0A140000], np.uint32)
    ((to, _),) = table.sums(addresses, addresses, [np.ones(4)])
    assert to.tolist() == [1.0 if i in (3, 5) else 0.0 for i in range(20)]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "ctypes"])
def test_batch_receiver_names_ipv6_exporters(compiled: bool) -> None:
    sock = open_socket("::1", 0, 1 << 20)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        for i in range(5):
            sender.sendto(bytes([i]) * (100 + i), sock.getsockname()[:2])
        batch = BatchReceiver(sock, slots=8, compiled=compiled).receive()
    finally:
        sock.close()
        sender.close()
    assert batch is not None and batch.exporters == ["::1"]
    assert batch.lengths.tolist() == [100, 101, 102, 103, 104] and batch.exporter_index.tolist() == [0] * 5
    assert batch.buf[3 * batch.slot:3 * batch.slot + 103].tobytes() == bytes([3]) * 103

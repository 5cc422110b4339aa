"""IPFIX sequence numbers in both conventions met in the wild: RFC 7011 (data records sent before
the message, options data included) and softflowd 1.1.0's (flow records sent including the
message's own, options data not counted). Datagrams carry varying record counts, so one
convention read as the other would show gaps and late datagrams where nothing was lost."""

from __future__ import annotations

import random
import struct

import pytest

from citydc.collectors.netflow import fastpath
from citydc.collectors.netflow.aggregate import Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.receive import Received

EXPORTER = "192.0.2.9"
FIELDS = [(8, 4), (12, 4), (1, 4), (2, 4), (4, 1)]  # source, destination, octets, packets, protocol
PATHS = [False, True] if fastpath.available() else [False]


def a_set(set_id: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def templates() -> list[bytes]:
    data = struct.pack("!HH", 1024, len(FIELDS)) + b"".join(struct.pack("!HH", e, n) for e, n in FIELDS)
    options = struct.pack("!HHH", 256, 2, 1) + struct.pack("!HHHH", 143, 4, 305, 4)  # meteringProcessId, interval
    return [a_set(2, data), a_set(3, options), a_set(256, struct.pack("!II", 1, 1))]


def stream(own: bool, n: int = 60, seed: int = 3) -> tuple[list[bytes], list[int]]:
    """Return n IPFIX messages in order and the flow records of each; templates and one options
    record every 16 messages, as softflowd sends them. ``own``: softflowd's sequence numbers."""
    rng = random.Random(seed)
    out, flows, sent = [], [], 0
    for i in range(n):
        k = rng.randint(1, 40)
        record = struct.pack("!IIIIB", 0x0A000001, 0x0A000002, 100, 1, 6)
        sets = (templates() if i % 16 == 0 else []) + [a_set(1024, record * k)]
        options = 1 if i % 16 == 0 else 0
        seq = sent + k if own else sent
        sent += k if own else k + options
        body = b"".join(sets)
        out.append(struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000 + i, seq & 0xFFFFFFFF, 1) + body)
        flows.append(k)
    return out, flows


def sequence_counts(datagrams: list[bytes], compiled: bool, batch: int) -> tuple[dict, dict]:
    dec = Decoder()
    if compiled:
        dec.use_compiled(Aggregator([]))
    for start in range(0, len(datagrams), batch):
        dec.feed_batch(Received.of([(d, EXPORTER) for d in datagrams[start:start + batch]]), "siwei", 0.0)
    assert not dec.stats.errors
    events = {key[3]: n for key, n in dec.sequences.events.items()}
    return events, sum(dec.sequences.lost.values())


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("batch", [1, 5, 512])
@pytest.mark.parametrize("own", [True, False], ids=["softflowd", "rfc7011"])
def test_in_order_stream_counts_nothing_lost(own: bool, batch: int, compiled: bool) -> None:
    datagrams, _ = stream(own)
    assert sequence_counts(datagrams, compiled, batch) == ({}, 0)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("batch", [1, 5, 512])
@pytest.mark.parametrize("own", [True, False], ids=["softflowd", "rfc7011"])
def test_lost_datagrams_count_their_flow_records(own: bool, batch: int, compiled: bool) -> None:
    datagrams, flows = stream(own)
    lost = {7, 8, 20, 33}  # none carries options data, so records lost = flow records lost
    kept = [d for i, d in enumerate(datagrams) if i not in lost]
    assert sequence_counts(kept, compiled, batch) == ({"gap": 3}, sum(flows[i] for i in lost))


@pytest.mark.parametrize("compiled", PATHS)
def test_softflowd_convention_still_sees_late_and_replayed_datagrams(compiled: bool) -> None:
    datagrams, _ = stream(True)
    swapped = [*datagrams[:10], datagrams[11], datagrams[10], *datagrams[12:], datagrams[30]]
    # 11 before 10: a gap of 10's records, then 10 late; the copy of 30 is a replay
    assert sequence_counts(swapped, compiled, 1) == ({"gap": 1, "late": 1, "replay": 1}, stream(True)[1][10])

"""Real exports: softflowd (in the lab's network namespace) accounts traffic this test sends
across the veth; citydc decodes its v5/v9/IPFIX datagrams, and nfcapd fed the same datagrams
accounts exactly the same totals."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from citydc import execute
from citydc.collectors.netflow import receive
from citydc.collectors.netflow.aggregate import Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.lab import ports
from citydc.lab.demo.record import nfcapd_totals
from citydc.lab.softflowd import HOST_ADDRESS, NS_ADDRESS, SERVICES, expire_all_argv

PAYLOAD = 1000
COUNT = 25


def send_traffic(sport: int, dport: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST_ADDRESS, sport))
        for _ in range(COUNT):
            s.sendto(b"x" * PAYLOAD, (NS_ADDRESS, dport))
            time.sleep(0.002)


def our_flow(batches, sport: int, dport: int) -> list[tuple[int, int]]:
    out = []
    for b in batches:
        hit = (b["sport"] == sport) & (b["dport"] == dport) & (b["proto"] == 17) & (b["ip_version"] == 4)
        out += [(int(x), int(y)) for x, y in zip(b["bytes"][hit], b["packets"][hit], strict=True)]
    return out


@pytest.mark.lab
@pytest.mark.parametrize("index", [0, 1, 2], ids=["v5", "v9", "ipfix"])
def test_softflowd_export_decodes_and_matches_nfcapd(lab_up, lab_ctx, tmp_path: Path, index: int) -> None:
    service = SERVICES[index]
    lab_up(service.name)
    sock = receive.open_socket(HOST_ADDRESS, service.port, 1 << 20)
    receiver = receive.BatchReceiver(sock, slots=64)  # the collector's hot path: recvmmsg + batch decoding
    datagrams: list[bytes] = []
    dec = Decoder()
    batches = []
    sport, dport = 40000 + index, 7000 + index
    found: list[tuple[int, int]] = []
    try:
        # softflowd sends its v9/IPFIX templates every 16 datagrams: send rounds of traffic and
        # force exports until our flow is decoded (bounded in rounds and time).
        deadline = time.monotonic() + 60
        for _ in range(40):
            send_traffic(sport, dport)
            res = execute.run("softflowctl", expire_all_argv(service.ctl(lab_ctx)), timeout=10)
            assert res.ok, res.stderr
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                batch = receiver.receive()
                if batch is None:
                    time.sleep(0.05)
                    continue
                datagrams += [batch.buf[i * batch.slot:i * batch.slot + n].tobytes()
                              for i, n in enumerate(batch.lengths.tolist())]
                dec.feed_batch(batch, "siwei", time.monotonic())
            batches += dec.flush()
            found = our_flow(batches, sport, dport)
            if found or time.monotonic() > deadline:
                break
    finally:
        sock.close()
    assert datagrams, f"no export datagram from {service.name} on {HOST_ADDRESS}:{service.port}"
    # Each round is one flow of COUNT datagrams of PAYLOAD bytes (+ 8 UDP + 20 IPv4 header).
    assert found, f"flow {HOST_ADDRESS}:{sport} -> {NS_ADDRESS}:{dport} not decoded"
    assert all(f == (COUNT * (PAYLOAD + 28), COUNT) for f in found), found
    assert not dec.stats.errors

    # The same datagrams through nfcapd and through a fresh citydc decoder, from the first one
    # that carries templates (nfcapd, unlike citydc, does not hold data sets without a template).
    start = 0
    if service.version != 5:
        fresh = Decoder()
        for i, d in enumerate(datagrams):
            fresh.feed(d, "127.0.0.1", "siwei", 0.0)
            if len(fresh.templates):
                start = i
                break
    same = datagrams[start:]
    citydc = Decoder()
    citydc.feed_batch(receive.Received.of([(d, "127.0.0.1") for d in same]), "siwei", 0.0)  # one batch
    mine = citydc.flush()
    totals = {"flows": sum(len(b) for b in mine), "bytes": sum(int(b["bytes"].sum()) for b in mine),
              "packets": sum(int(b["packets"].sum()) for b in mine)}
    # The compiled path (fastpath.py) on the same real datagrams sums to the same totals.
    agg = Aggregator()
    fast = Decoder()
    fast.use_compiled(agg)
    fast.feed_batch(receive.Received.of([(d, "127.0.0.1") for d in same]), "siwei", 0.0)
    for part in fast.flush():
        agg.add(part)
    inbound = [v for k, v in agg.interfaces.items() if k[3] == "in"]
    assert (agg.records, sum(v[0] for v in inbound), sum(v[1] for v in inbound)) == (
        totals["flows"], totals["bytes"], totals["packets"])
    assert fast.stats.records == citydc.stats.records and not fast.stats.errors
    flow_dir = tmp_path / "flows"
    flow_dir.mkdir()
    assert totals["flows"] > 0
    assert nfcapd_totals(same, ports.NFCAPD + index, flow_dir) == totals

"""Aggregation, the Misra-Gries bound, and the Prometheus families (fresh registry per test)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from citydc.collectors.netflow import synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.metrics import ListenerInfo, NetflowMetrics
from citydc.collectors.netflow.talkers import MisraGries


def decoded(flows: synth.Flows, version: int = 9):
    dec = Decoder()
    datagrams = synth.v5_datagrams(flows) if version == 5 else synth.v9_datagrams(flows, version)
    for d in datagrams:
        dec.feed(d, "192.0.2.1", "siwei", 0.0)
    return dec, dec.flush()


def test_interface_agency_protocol_totals_match_the_flows() -> None:
    flows = synth.random_flows(5000, seed=11)
    _, batches = decoded(flows)
    agg = Aggregator([AgencyPrefixes.build("police", ["10.0.0.0/28"])], ifname=lambda e, i: {1: "Gi0/1"}.get(i))
    for b in batches:
        agg.add(b)
    total = int(flows.bytes.astype(np.uint64).sum())
    in_if = {k[2]: v[0] for k, v in agg.interfaces.items() if k[3] == "in"}
    assert in_if == {"Gi0/1": int(flows.bytes[flows.in_if == 1].astype(np.uint64).sum()),
                     "2": int(flows.bytes[flows.in_if == 2].astype(np.uint64).sum())}
    assert sum(v[0] for k, v in agg.interfaces.items() if k[3] == "out") == total
    src_hit = (flows.src & np.uint32(0xFFFFFFF0)) == np.uint32(0x0A000000)
    dst_hit = (flows.dst & np.uint32(0xFFFFFFF0)) == np.uint32(0x0A000000)
    assert agg.agency[("siwei", "police", "out")][0] == int(flows.bytes[src_hit].astype(np.uint64).sum())
    assert agg.agency[("siwei", "police", "in")][0] == int(flows.bytes[dst_hit].astype(np.uint64).sum())
    https = (flows.dport == 443) & (flows.proto == 6)
    assert agg.protocol[("siwei", "tcp", "https")][0] == int(flows.bytes[https].astype(np.uint64).sum())
    assert sum(v[0] for v in agg.protocol.values()) == total
    assert ("siwei", "icmp", "none") in agg.protocol


def test_interface_labels_are_bounded() -> None:
    flows = synth.random_flows(2000, seed=12)
    flows.in_if = np.arange(2000, dtype=np.uint32)
    _, batches = decoded(flows)
    agg = Aggregator(max_interfaces=50)
    for b in batches:
        agg.add(b)
    labels = {k[2] for k in agg.interfaces if k[3] == "in"}
    assert len(labels) == 51 and "other" in labels
    assert sum(v[0] for k, v in agg.interfaces.items() if k[3] == "in") == int(flows.bytes.astype(np.uint64).sum())


def test_misra_gries_bound_holds_against_exact_counts() -> None:
    rng = np.random.default_rng(5)
    keys = np.minimum(rng.zipf(1.2, 200_000), 100_000).astype(np.uint64)
    weights = rng.integers(1, 1000, len(keys)).astype(np.float64)
    mg = MisraGries(k=64)
    for start in range(0, len(keys), 10_000):
        mg.update(keys[start:start + 10_000], weights[start:start + 10_000])
    exact = np.bincount(keys.astype(np.int64), weights=weights)
    n = weights.sum()
    assert len(mg.keys) <= 64
    assert mg.error <= n / 65 + 1e-6
    for key, estimate in zip(mg.keys, mg.counts, strict=True):
        true = exact[int(key)]
        assert true - mg.error - 1e-6 <= estimate <= true + 1e-6
    heavy = np.flatnonzero(exact > n / 65)
    assert set(heavy.tolist()) <= {int(k) for k in mg.keys}


def test_sliding_window_forgets_old_panes() -> None:
    now = [0.0]
    agg = Aggregator(window_seconds=50, clock=lambda: now[0])
    flows = synth.random_flows(100, seed=13)
    _, batches = decoded(flows)
    for b in batches:
        agg.add(b)
    assert agg.top_talkers("siwei")[0]
    now[0] = 100.0
    assert agg.top_talkers("siwei")[0] == []


def test_metrics_families_and_labels() -> None:
    flows = synth.random_flows(300, seed=14)
    dec, batches = decoded(flows, 10)
    dec.feed(b"\x00\x07junk", "192.0.2.1", "siwei", 0.0)
    agg = Aggregator()
    for b in batches:
        agg.add(b)
    registry = CollectorRegistry()
    registry.register(NetflowMetrics(dec, agg, [ListenerInfo("siwei", "127.0.0.1:2055", lambda: 425984, lambda: 3)],
                                     ["siwei"]))
    text = generate_latest(registry).decode()
    assert 'citydc_netflow_records_total{exporter="192.0.2.1",site="siwei",version="ipfix"} 300.0' in text
    assert 'citydc_netflow_decode_errors_total{exporter="192.0.2.1",reason="unsupported_version",site="siwei"} 1.0' \
        in text
    assert 'citydc_netflow_socket_drops_total{listener="127.0.0.1:2055",site="siwei"} 3.0' in text
    assert 'citydc_netflow_top_talker_bytes{rank="1",site="siwei",talker="10.0.0.' in text
    in1 = int(flows.bytes[flows.in_if == 1].astype(np.uint64).sum())
    assert registry.get_sample_value("citydc_netflow_interface_bytes_total", {
        "site": "siwei", "exporter": "192.0.2.1", "interface": "1", "direction": "in"}) == in1


def test_interfaces_seen_before_their_name_is_known_are_renamed_keeping_their_counters() -> None:
    early, late = synth.random_flows(1000, seed=15), synth.random_flows(1000, seed=16)
    names: dict[int, str] = {}
    agg = Aggregator(ifname=lambda exporter, index: names.get(index))
    for b in decoded(early)[1]:
        agg.add(b)
    before = dict(agg.interfaces)
    assert ("siwei", "192.0.2.1", "1", "in") in before  # the device had not answered: ifIndex labels
    assert agg.name_interfaces() == 0
    names.update({1: "Gi0/1", 3: "Gi0/3"})
    assert agg.name_interfaces() == 2
    for index, name, direction in ((1, "Gi0/1", "in"), (3, "Gi0/3", "out")):
        assert ("siwei", "192.0.2.1", str(index), direction) not in agg.interfaces
        assert agg.interfaces[("siwei", "192.0.2.1", name, direction)] == before[("siwei", "192.0.2.1", str(index),
                                                                                  direction)]
    assert agg.interfaces[("siwei", "192.0.2.1", "2", "in")] == before[("siwei", "192.0.2.1", "2", "in")]
    for b in decoded(late)[1]:  # later flows count under the name, on top of what the ifIndex series had
        agg.add(b)
    total_in1 = sum(int(f.bytes[f.in_if == 1].astype(np.uint64).sum()) for f in (early, late))
    assert agg.interfaces[("siwei", "192.0.2.1", "Gi0/1", "in")][0] == total_in1
    assert agg.name_interfaces() == 0  # named ones are never renamed again

"""The flow-vs-SNMP feed with the SNMP poll faked at its boundary (a function Device -> DevicePoll):
links from the config, window arithmetic, counter wraps and resets, direction mapping, the rules
for leaving a ratio out, dead devices, and interface names reaching the aggregator."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from citydc.collectors.netflow import synth
from citydc.collectors.netflow.aggregate import Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.snmp_feed import (
    DevicePoll,
    IfCounters,
    Link,
    Observation,
    SnmpFeed,
    device_poll,
    links,
    window_deltas,
)
from citydc.collectors.snmp.collector import InterfaceRow, ScrapeResult
from citydc.collectors.snmp.counters import TargetCounters
from citydc.config.models import Config, Device, Netflow, NetflowExporter, Site, SnmpV2c

SITE, EXP = "siwei", "192.0.2.1"
DEV = Device(name="core1", address="198.51.100.1", site=SITE, role="core", snmp_auth="ro")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Script:
    """A fake poll: returns the DevicePolls it is given, in order, per device name."""

    def __init__(self, polls: dict[str, list[DevicePoll]]) -> None:
        self.polls = {k: list(v) for k, v in polls.items()}
        self.calls: Counter = Counter()

    def __call__(self, device: Device) -> DevicePoll:
        self.calls[device.name] += 1
        return self.polls[device.name].pop(0)


def up(ifaces: dict[int, tuple[int, int]], names: dict[int, str] | None = None, rebooted: bool = False) -> DevicePoll:
    names = names or {}
    return DevicePoll(True, "", {i: IfCounters(names.get(i, f"if{i}"), a, b) for i, (a, b) in ifaces.items()},
                      rebooted)


def snapshot(values: dict[tuple[str, str], int], labels: dict[int, str] | None = None):
    """Aggregator-like snapshot for exporter EXP: values {(label, direction): bytes}."""
    labels = labels if labels is not None else {1: "if1", 2: "if2"}
    return ({(SITE, EXP, lab, d): v for (lab, d), v in values.items()}, {(SITE, EXP): labels})


def feed_with(polls: list[DevicePoll], flows: list, clock: Clock, **kw) -> SnmpFeed:
    """Run one poll round per entry, clock advancing 60 s between rounds."""
    kw.setdefault("min_snmp_bytes", 1)
    feed = SnmpFeed([Link(EXP, DEV)], Script({"core1": polls}), interval=60, window=kw.pop("window", 300),
                    clock=clock, wall=lambda: 1.7e9, **kw)
    pending = list(flows)
    feed.flows = lambda: pending[0]
    for i in range(len(polls)):
        if i:
            clock.t += 60
            pending.pop(0)
        feed.poll_once()
    return feed


# -- links ------------------------------------------------------------------------------------


def config(exporters: list[NetflowExporter], devices: list[Device]) -> Config:
    return Config(sites=[Site(id=SITE, name="Siwei")], snmp_auth={"ro": SnmpV2c(community="env:X")},
                  devices=devices, netflow=Netflow(exporters=exporters))


def test_links_by_name_and_by_address() -> None:
    by_port = Device(name="edge", address="203.0.113.9:1161", site=SITE, role="router", snmp_auth="ro")
    no_auth = Device(name="dumb", address="203.0.113.7", site=SITE, role="access")
    cfg = config([NetflowExporter(address="10.9.9.9", snmp_device="core1"), NetflowExporter(address="203.0.113.9"),
                  NetflowExporter(address="203.0.113.7"), NetflowExporter(address="203.0.113.8")],
                 [DEV, by_port, no_auth])
    assert links(cfg) == [Link("10.9.9.9", DEV), Link("203.0.113.9", by_port)]
    # Two agents on one host (the lab's loopback): ambiguous, so only an explicit snmp_device links.
    twin = Device(name="edge2", address="203.0.113.9:2161", site=SITE, role="router", snmp_auth="ro")
    cfg = config([NetflowExporter(address="203.0.113.9"), NetflowExporter(address="10.9.9.9", snmp_device="edge2")],
                 [by_port, twin])
    assert links(cfg) == [Link("10.9.9.9", twin)]


def test_links_unknown_or_unpollable_device_names_the_field() -> None:
    cfg = config([NetflowExporter(address="10.0.0.1"), NetflowExporter(address="10.0.0.2", snmp_device="nope")],
                 [DEV])
    with pytest.raises(ValueError, match=r"netflow\.exporters\[1\]\.snmp_device: no device named 'nope'.*core1"):
        links(cfg)
    dumb = Device(name="dumb", address="203.0.113.7", site=SITE, role="access")
    with pytest.raises(ValueError, match=r"exporters\[0\]\.snmp_device: device 'dumb' has no snmp_auth"):
        links(config([NetflowExporter(address="10.0.0.1", snmp_device="dumb")], [dumb]))


# -- the SNMP collector's result --------------------------------------------------------------


def row(index: int, name: str, **counters: int) -> InterfaceRow:
    return InterfaceRow(index, name, "", counters)


def test_device_poll_reads_names_and_octets_from_the_snmp_engine_rows() -> None:
    result = ScrapeResult(True, rows=[
        row(3, "Te1/1", receive_bytes=100, transmit_bytes=7, receive_packets_unicast=9),
        row(4, "Te1/2", receive_bytes=5)],  # no transmit counter: left out
        rebooted=True)
    assert device_poll(result) == DevicePoll(True, "", {3: IfCounters("Te1/1", 100, 7)}, True)
    assert device_poll(ScrapeResult(False, "timeout")) == DevicePoll(False, "timeout")


def test_wrapped_counter_carried_by_the_snmp_collector_gives_the_right_ratio() -> None:
    # Raw ifHCOutOctets wraps past 2**64 between the polls; counters.py carries it, the feed sees
    # a value that kept rising and the delta is the true 2 MB.
    counters = TargetCounters()
    raws = [2**64 - 1_000_000, 1_000_000]
    polls = []
    for raw in raws:
        value = counters.update("ifHCOutOctets", 1, raw, 64)
        polls.append(device_poll(ScrapeResult(True, rows=[row(1, "if1", receive_bytes=0, transmit_bytes=value)])))
    feed = feed_with(polls, [snapshot({("if1", "out"): 0}), snapshot({("if1", "out"): 1_500_000})], Clock())
    assert feed.ratios() == {(SITE, EXP, "if1", "out"): (0.75, 60)}


# -- window arithmetic ------------------------------------------------------------------------


def test_ratio_is_flow_delta_over_snmp_delta_in_the_window() -> None:
    clock = Clock()
    polls = [up({1: (0, 10_000_000)}), up({1: (0, 11_000_000)}), up({1: (0, 13_000_000)})]
    flows = [snapshot({("if1", "out"): 5_000_000}), snapshot({("if1", "out"): 5_900_000}),
             snapshot({("if1", "out"): 7_700_000})]
    feed = feed_with(polls, flows, clock)
    ratio, span = feed.ratios()[(SITE, EXP, "if1", "out")]
    # Bytes counted before the first poll (5 MB flow, 10 MB SNMP) do not count: (2.7 MB) / (3 MB).
    assert ratio == pytest.approx(0.9) and span == 120


def test_snmp_octets_before_the_first_flow_still_count() -> None:
    # Flow records arrive after the traffic (exporter timeouts): the interval in which SNMP counted
    # the traffic but no flow existed yet is part of the window.
    polls = [up({1: (0, 0)}), up({1: (0, 1_000_000)}), up({1: (0, 1_000_000)}), up({1: (0, 2_000_000)})]
    flows = [snapshot({}), snapshot({}), snapshot({("if1", "out"): 1_900_000}), snapshot({("if1", "out"): 1_900_000})]
    assert feed_with(polls, flows, Clock()).ratios()[(SITE, EXP, "if1", "out")] == (pytest.approx(0.95), 180)


def test_window_forgets_old_polls_so_a_change_shows() -> None:
    # Sampling right (ratio 1) for 4 intervals, then the rate goes missing (ratio 0.01): with a
    # 120 s window the ratio only covers the last two intervals.
    clock = Clock()
    snmp, flow = [0], [0]
    for step in (1.0, 1.0, 1.0, 1.0, 0.01, 0.01):
        snmp.append(snmp[-1] + 1_000_000)
        flow.append(flow[-1] + round(1_000_000 * step))
    feed = feed_with([up({1: (0, s)}) for s in snmp], [snapshot({("if1", "out"): f}) for f in flow], clock, window=120)
    assert feed.ratios()[(SITE, EXP, "if1", "out")] == (pytest.approx(0.01), 120)
    whole = [Observation(60.0 * i, {1: (0, s)}, {(SITE, 1, "out"): f}) for i, (s, f) in enumerate(zip(snmp, flow,
                                                                                                         strict=True))]
    assert window_deltas(whole) == {(SITE, 1, "out"): (4_020_000, 6_000_000)}
    # A device that stops answering: its ratio disappears once its polls are older than the window.
    clock.t += 240
    assert feed.ratios() == {}


def test_counter_reset_interval_is_left_out_on_both_sides() -> None:
    # The device's counter went backwards (a reset counters.py could not carry): that interval is
    # skipped for flow and SNMP alike, the others still count.
    polls = [up({1: (0, 5_000_000)}), up({1: (0, 6_000_000)}), up({1: (0, 1_000)}), up({1: (0, 2_001_000)})]
    flows = [snapshot({("if1", "out"): v}) for v in (0, 800_000, 9_999_999, 11_599_999)]
    feed = feed_with(polls, flows, Clock())
    assert feed.ratios()[(SITE, EXP, "if1", "out")][0] == pytest.approx((800_000 + 1_600_000) / 3_000_000)


def test_reboot_drops_history() -> None:
    polls = [up({1: (0, 0)}), up({1: (0, 1_000_000)}), up({1: (0, 50)}, rebooted=True), up({1: (0, 1_000_050)})]
    flows = [snapshot({("if1", "out"): v}) for v in (0, 100_000, 100_000, 2_100_000)]
    feed = feed_with(polls, flows, Clock())
    assert feed.ratios()[(SITE, EXP, "if1", "out")] == (pytest.approx(2.0), 60)


def test_direction_mapping_in_to_in_octets_out_to_out_octets() -> None:
    polls = [up({1: (0, 0)}), up({1: (4_000_000, 1_000_000)})]
    flows = [snapshot({}), snapshot({("if1", "in"): 2_000_000, ("if1", "out"): 3_000_000})]
    assert feed_with(polls, flows, Clock()).ratios() == {
        (SITE, EXP, "if1", "in"): (0.5, 60), (SITE, EXP, "if1", "out"): (3.0, 60)}


def test_no_ratio_without_snmp_delta_without_flow_or_below_minimum() -> None:
    polls = [up({1: (7, 7), 2: (0, 0)}), up({1: (7, 7), 2: (500, 3_000_000)})]
    flows = [snapshot({}), snapshot({("if1", "in"): 10, ("if1", "out"): 10, ("if2", "in"): 400})]
    # if1: SNMP delta 0; if2 out: no flow at all; if2 in: 500 octets, under the minimum.
    assert feed_with(polls, flows, Clock(), min_snmp_bytes=1000).ratios() == {}
    # A flow that stopped while SNMP still counts is the loudest signal: ratio 0, not "no ratio".
    polls = [up({1: (0, 0)}), up({1: (0, 2_000_000)})]
    flows = [snapshot({("if1", "out"): 9}), snapshot({("if1", "out"): 9})]
    assert feed_with(polls, flows, Clock()).ratios() == {(SITE, EXP, "if1", "out"): (0.0, 60)}


def test_other_and_shared_labels_are_not_reconciled() -> None:
    polls = [up({1: (0, 0), 2: (0, 0), 3: (0, 0)}), up({1: (0, 2_000_000), 2: (0, 2_000_000), 3: (0, 2_000_000)})]
    labels = {1: "other", 2: "x", 3: "x"}
    flows = [snapshot({}, labels), snapshot({("other", "out"): 1, ("x", "out"): 1}, labels)]
    assert feed_with(polls, flows, Clock()).ratios() == {}


# -- dead devices, metrics, names ---------------------------------------------------------------


def test_dead_device_is_counted_and_the_other_still_reconciles() -> None:
    clock = Clock()
    dead = Device(name="edge", address="198.51.100.2", site="fengshan", role="router", snmp_auth="ro")

    def poll(device: Device) -> DevicePoll:
        if device.name == "edge":
            if clock.t > 1000:
                raise RuntimeError("bug in a poll")
            return DevicePoll(False, "timeout")
        return up({1: (0, int(clock.t - 1000) * 100_000)})

    feed = SnmpFeed([Link(EXP, DEV), Link("192.0.2.2", dead)], poll, interval=60, clock=clock, wall=lambda: 1.7e9,
                    min_snmp_bytes=1)
    flow = [0]
    feed.flows = lambda: snapshot({("if1", "out"): flow[0]})
    feed.poll_once()
    clock.t += 60
    flow[0] = 3_000_000
    feed.poll_once()
    assert feed.ratios() == {(SITE, EXP, "if1", "out"): (0.5, 60)}
    text = generate_latest(registry_of(feed)).decode()
    assert 'citydc_netflow_snmp_feed_up{device="edge",exporter="192.0.2.2",site="fengshan"} 0.0' in text
    assert 'citydc_netflow_snmp_feed_up{device="core1",exporter="192.0.2.1",site="siwei"} 1.0' in text
    assert ('citydc_netflow_snmp_feed_poll_errors_total{device="edge",exporter="192.0.2.2",reason="timeout",'
            'site="fengshan"} 1.0') in text
    assert 'reason="internal",site="fengshan"} 1.0' in text
    assert ('citydc_netflow_snmp_feed_polls_total{device="edge",exporter="192.0.2.2",outcome="down",'
            'site="fengshan"} 2.0') in text
    assert 'citydc_netflow_snmp_feed_last_success_timestamp_seconds{device="core1"' in text
    assert 'citydc_netflow_snmp_feed_last_success_timestamp_seconds{device="edge"' not in text
    assert ('citydc_netflow_snmp_bytes_ratio{direction="out",exporter="192.0.2.1",interface="if1",site="siwei"} '
            '0.5') in text


def registry_of(feed: SnmpFeed) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(feed)
    return registry


def test_names_reach_the_aggregator_and_ratios_use_its_counters() -> None:
    flows = synth.random_flows(2000, seed=3)  # in_if 1-2, out_if 3-4
    names = {1: "Gi0/1", 2: "Gi0/2", 3: "Te1/1", 4: "Te1/2"}
    polls = [up({i: (0, 0) for i in names}, names), up({i: (10**9, 10**9) for i in names}, names)]
    clock = Clock()
    feed = SnmpFeed([Link(EXP, DEV)], Script({"core1": polls}), interval=60, clock=clock, min_snmp_bytes=1)
    agg = Aggregator(ifname=feed.ifname)
    assert feed.ifname(EXP, 1) is None
    feed.flows = agg.interface_snapshot
    feed.poll_once()  # names known before the first flow is labelled
    dec = Decoder()
    for d in synth.v5_datagrams(flows):
        dec.feed(d, EXP, SITE, 0.0)
    for b in dec.flush():
        agg.add(b)
    clock.t += 60
    feed.poll_once()
    got = feed.ratios()
    for i, name in names.items():
        direction = "in" if i <= 2 else "out"
        column = flows.in_if if direction == "in" else flows.out_if
        expected = int(flows.bytes[column == i].astype(np.uint64).sum()) / 10**9
        assert got.pop((SITE, EXP, name, direction))[0] == pytest.approx(expected)
    assert got == {}  # no flow left Gi0/1 or entered Te1/1: no ratio for those directions


def test_ifname_never_waits_for_a_poll_in_flight() -> None:
    release, entered = threading.Event(), threading.Event()
    rounds = [0]

    def poll(device: Device) -> DevicePoll:
        rounds[0] += 1
        if rounds[0] > 1:
            entered.set()
            release.wait(30)
        return up({1: (0, 0)}, {1: "Gi0/1"})

    feed = SnmpFeed([Link(EXP, DEV)], poll, interval=60)
    feed.flows = lambda: ({}, {})
    feed.poll_once()
    worker = threading.Thread(target=feed.poll_once)
    worker.start()
    assert entered.wait(30)
    answers = []
    reader = threading.Thread(target=lambda: answers.append((feed.ifname(EXP, 1), list(feed.collect()))))
    reader.start()
    reader.join(10)
    finished = not reader.is_alive()
    release.set()
    worker.join(30)
    assert finished and answers[0][0] == "Gi0/1"


def test_bad_settings_and_device_cap() -> None:
    with pytest.raises(ValueError, match="window >= interval"):
        SnmpFeed([], lambda d: DevicePoll(False), interval=60, window=30)
    many = [Link(f"10.0.0.{i}", DEV) for i in range(5)]
    feed = SnmpFeed(many, lambda d: DevicePoll(False, "timeout"), max_devices=3)
    assert len(feed.states) == 3 and feed.skipped == many[3:]


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_reports_a_bad_snmp_device_link_before_binding(tmp_path) -> None:
    import yaml
    from click.testing import CliRunner

    from citydc.cli.main import cli

    cfg = {"sites": [{"id": SITE, "name": "Siwei"}],
           "netflow": {"listeners": [{"address": "127.0.0.1", "port": 1, "site": SITE}],
                       "exporters": [{"address": "10.0.0.1", "snmp_device": "core9"}]}}
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(cli, ["-c", str(path), "collect", "netflow", "--duration", "0.1"])
    assert res.exit_code == 2, res.output
    assert 'netflow.exporters[0].snmp_device: unknown device "core9"' in res.output
    del cfg["netflow"]["exporters"]
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(cli, ["-c", str(path), "collect", "netflow", "--snmp-interval", "60",
                                   "--snmp-window", "30"])
    assert res.exit_code == 2 and "--snmp-window 30 is shorter than --snmp-interval 60" in res.output


def test_a_round_with_an_answering_device_renames_interfaces_seen_before_it() -> None:
    from citydc.collectors.netflow.aggregate import Aggregator

    feed = SnmpFeed([Link(EXP, DEV)], Script({"core1": [DevicePoll(False, "timeout"), up({1: (10, 20)},
                                                                                         {1: "ge-0/0/1"})]}),
                    interval=60, clock=Clock(), wall=lambda: 1.7e9)
    agg = Aggregator(ifname=feed.ifname)
    agg._iface_labels[(SITE, EXP)][1] = agg._iface_label(EXP, 1, agg._iface_labels[(SITE, EXP)])  # seen early
    agg.interfaces[(SITE, EXP, "1", "in")] = [500, 5]
    calls = []
    feed.on_names = lambda: calls.append(agg.name_interfaces())
    feed.flows = agg.interface_snapshot
    feed.poll_once()  # device down: nothing to rename, the hook is not called
    assert calls == [] and (SITE, EXP, "1", "in") in agg.interfaces
    feed.poll_once()
    assert calls == [1]
    assert agg.interfaces[(SITE, EXP, "ge-0/0/1", "in")] == [500, 5] and (SITE, EXP, "1", "in") not in agg.interfaces


def test_snmp_poller_calls_the_poll_engine_directly(monkeypatch) -> None:
    from citydc.collectors.netflow.snmp_feed import SnmpPoller

    monkeypatch.setenv("CITYDC_TEST_FEED_COMMUNITY", "unit-community")
    cfg = Config.model_validate({
        "sites": [{"id": SITE, "name": "Siwei"}],
        "snmp_auth": {"ro": {"version": "2c", "community": "env:CITYDC_TEST_FEED_COMMUNITY"}},
        "devices": [{"name": "dead", "address": "127.0.0.1:1", "site": SITE, "role": "core", "snmp_auth": "ro"}]})
    poller = SnmpPoller(cfg, budget=0.3)
    try:
        assert poller(cfg.devices[0]) == DevicePoll(False, "timeout")  # nothing answers on port 1
        assert poller.engine.registry.get_sample_value("citydc_snmp_exporter_polls_total",
                                                       {"site": SITE, "path": "fast_v2c"}) == 1
    finally:
        poller.close()

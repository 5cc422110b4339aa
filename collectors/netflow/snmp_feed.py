"""Flow-vs-SNMP reconciliation: interface names and a windowed flow/SNMP byte ratio per interface.

For every NetFlow exporter linked to an SNMP device of the inventory (``netflow.exporters[].
snmp_device``, else the device at the exporter's address), a thread polls the device's ifName and
in/out octet counters every ``interval`` seconds with the SNMP collector's poll engine, in-process
(``collectors/snmp/engine.py``: sessions, GETBULK walk, 64-bit fallback, wrap and reboot handling of
``counters.py``), reading its interface rows directly. Each poll is stored with a snapshot of the
aggregator's flow bytes taken right after it; the ratio of an interface and direction is the sum of
flow-byte deltas divided by the sum of SNMP-octet deltas over the polls of the last ``window`` seconds.

Direction mapping: flow ``in`` (records whose ingress ifIndex is the interface) is compared with
ifHCInOctets of that ifIndex, flow ``out`` (egress ifIndex) with ifHCOutOctets. A flow ifIndex is
the SNMP ifIndex of the linked device. No ratio is exported for an interface without any flow in
that direction, when the SNMP delta is below ``min_snmp_bytes`` (0 included), or when fewer than two
polls fall in the window (a dead device's ratio disappears after one window).

The NetFlow hot path never waits on SNMP: ``ifname()`` is a dictionary lookup in a map the poll
thread replaces whole, and the flow snapshot is one copy under the aggregator's lock, like a scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citydc.collectors.snmp.collector import ScrapeResult
from citydc.collectors.snmp.poller import parse_address
from citydc.config.models import Config, Device

__all__ = ["DevicePoll", "IfCounters", "Link", "Observation", "SnmpFeed", "SnmpPoller", "device_poll", "links",
           "window_deltas"]

log = logging.getLogger(__name__)

DIRECTIONS = (("in", 0), ("out", 1))  # flow direction -> index in IfCounters' (in, out) octets
MODULE = "if_mib_bytes"  # the SNMP collector's built-in module with names and HC octets only

# (site, exporter, interface label, direction) -> flow bytes, and (site, exporter) -> {ifIndex: label}
FlowSnapshot = tuple[Mapping[tuple[str, str, str, str], int], Mapping[tuple[str, str], Mapping[int, str]]]


@dataclass(frozen=True)
class Link:
    """A NetFlow exporter (its address, as in the flow labels) and the SNMP device polled for it."""

    exporter: str
    device: Device


@dataclass(frozen=True)
class IfCounters:
    name: str
    in_octets: int   # wrap-carried by collectors/snmp/counters.py; falls back after a reset
    out_octets: int


@dataclass(frozen=True)
class DevicePoll:
    """What one poll of a device gave: up or not (and why), interfaces by ifIndex, a reboot seen."""

    up: bool
    reason: str = ""
    interfaces: Mapping[int, IfCounters] = field(default_factory=dict)
    rebooted: bool = False


PollFn = Callable[[Device], DevicePoll]


@dataclass(frozen=True)
class Observation:
    """One successful poll: when, SNMP octets by ifIndex (in, out), and flow bytes by (site, ifIndex,
    direction) taken right after it; ``labels`` are the interface labels of (site, ifIndex)."""

    at: float
    snmp: Mapping[int, tuple[int, int]]
    flow: Mapping[tuple[str, int, str], int]
    labels: Mapping[tuple[str, int], str] = field(default_factory=dict)


def links(config: Config) -> list[Link]:
    """Given the config, return the exporter -> SNMP device links, in exporter order.

    An exporter with ``snmp_device`` is linked to that device; one without is linked to the device
    whose host equals its address, if exactly one device with an SNMP auth profile has that host
    (several agents on one host, as in the lab, need the explicit field). Raise ValueError naming
    ``netflow.exporters[i].snmp_device`` if the named device does not exist or cannot be polled.
    """
    by_name = {d.name: d for d in config.devices}
    by_host: dict[str, list[Device]] = {}
    for dev in config.devices:
        if dev.snmp_auth:
            by_host.setdefault(parse_address(dev.address)[0], []).append(dev)
    out = []
    for i, exp in enumerate(config.netflow.exporters):
        if exp.snmp_device is None:
            candidates = by_host.get(exp.address, [])
            if len(candidates) == 1:
                out.append(Link(exp.address, candidates[0]))
            elif candidates:
                log.info("netflow.exporters[%d]: %d devices at %s, none linked (set snmp_device)", i,
                         len(candidates), exp.address)
            continue
        dev = by_name.get(exp.snmp_device)
        where = f"netflow.exporters[{i}].snmp_device"
        if dev is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise ValueError(f"{where}: no device named {exp.snmp_device!r} in devices (known: {known})")
        if not dev.snmp_auth:
            raise ValueError(f"{where}: device {dev.name!r} has no snmp_auth, so it cannot be polled")
        out.append(Link(exp.address, dev))
    return out


def device_poll(result: ScrapeResult) -> DevicePoll:
    """Given the SNMP poll engine's ScrapeResult, return the names and in/out octets of each ifIndex.

    An interface missing one of the two octet counters is left out (nothing to compare).
    """
    if not result.up:
        return DevicePoll(False, result.reason or "down")
    interfaces = {row.index: IfCounters(row.name, row.counters["receive_bytes"], row.counters["transmit_bytes"])
                  for row in result.rows if "receive_bytes" in row.counters and "transmit_bytes" in row.counters}
    return DevicePoll(True, "", interfaces, result.rebooted)


def window_deltas(observations: Sequence[Observation]) -> dict[tuple[str, int, str], tuple[int, int]]:
    """Given observations oldest first, return (flow delta, SNMP delta) per (site, ifIndex, direction).

    Only keys with flow bytes in the newest observation are returned; an earlier observation without
    the key had no flow bytes there yet (the aggregator's counters start at 0), so the SNMP octets
    of the intervals before the first flow still count. Deltas are summed over consecutive pairs; a
    pair where the interface is missing from a poll (a partial walk) or the SNMP counter went
    backwards (a reset the wrap logic could not carry) is left out on both sides, so flow and SNMP
    always cover the same intervals.
    """
    if not observations:
        return {}
    out: dict[tuple[str, int, str], list[int]] = {}
    for key in observations[-1].flow:
        _site, index, direction = key
        slot = 0 if direction == "in" else 1
        acc = out[key] = [0, 0]
        for a, b in pairwise(observations):
            before, after = a.snmp.get(index), b.snmp.get(index)
            if before is None or after is None:
                continue
            snmp_delta = after[slot] - before[slot]
            flow_delta = b.flow.get(key, 0) - a.flow.get(key, 0)
            if snmp_delta < 0 or flow_delta < 0:
                continue
            acc[0] += flow_delta
            acc[1] += snmp_delta
    return {k: (v[0], v[1]) for k, v in out.items()}


def flow_by_index(snapshot: FlowSnapshot, exporter: str, indexes: Sequence[int]
                  ) -> tuple[dict[tuple[str, int, str], int], dict[tuple[str, int], str]]:
    """Given the aggregator's snapshot, an exporter and the device's ifIndexes, return the flow bytes
    by (site, ifIndex, direction) and the label of each (site, ifIndex).

    Skipped: ifIndexes without a label yet (no flow), 'other' (several ifIndexes over the interface
    cap) and a label shared by several ifIndexes (its bytes cannot be split).
    """
    interfaces, labels = snapshot
    flow: dict[tuple[str, int, str], int] = {}
    named: dict[tuple[str, int], str] = {}
    for (site, exp), by_index in labels.items():
        if exp != exporter:
            continue
        uses = Counter(by_index.values())
        for index in indexes:
            label = by_index.get(index)
            if label is None or label == "other" or uses[label] > 1:
                continue
            named[(site, index)] = label
            for direction, _ in DIRECTIONS:
                value = interfaces.get((site, exporter, label, direction))
                if value is not None:
                    flow[(site, index, direction)] = value
    return flow, named


@dataclass
class _State:
    link: Link
    history: deque = field(default_factory=deque)  # Observations, oldest first
    names: dict[int, str] = field(default_factory=dict)
    up: bool | None = None
    last_success: float | None = None  # wall clock
    duration: float = 0.0
    polls: Counter = field(default_factory=Counter)   # outcome -> n
    errors: Counter = field(default_factory=Counter)  # reason -> n


class SnmpFeed(Collector):
    """Given exporter-device links and a poll function, poll on a thread and export names and ratios.

    ``start(flows)`` does one poll round at once (so interface names exist before the first flows
    are labelled) and then polls every ``interval`` seconds; ``flows`` returns the aggregator's
    snapshot (``Aggregator.interface_snapshot``). At most ``max_devices`` links are polled, by up to
    ``workers`` threads at a time. The object is a prometheus-client collector (register it).
    """

    def __init__(self, feed_links: Sequence[Link], poll: PollFn, *, interval: float = 60.0, window: float = 300.0,
                 min_snmp_bytes: int = 1_000_000, max_devices: int = 64, workers: int = 8,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        if interval <= 0 or window < interval:
            raise ValueError("interval must be > 0 and window >= interval")
        self.skipped = list(feed_links[max_devices:])
        self.states = [_State(link) for link in feed_links[:max_devices]]
        self.poll = poll
        self.interval, self.window, self.min_snmp_bytes = interval, window, min_snmp_bytes
        self.workers = max(1, min(workers, len(self.states) or 1))
        self.clock, self.wall = clock, wall
        self.flows: Callable[[], FlowSnapshot] | None = None
        self.on_names: Callable[[], object] | None = None
        self.rounds = 0
        self._names: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the hot path and the aggregator use ----------------------------------------------

    def ifname(self, exporter: str, ifindex: int) -> str | None:
        """Given an exporter address and a flow ifIndex, return the device's ifName, None if unknown."""
        return self._names.get(exporter, {}).get(ifindex)

    # -- polling --------------------------------------------------------------------------------

    def _poll_one(self, state: _State) -> tuple[DevicePoll, float]:
        started = self.clock()
        try:
            result = self.poll(state.link.device)
        except Exception as exc:  # a bug or an unexpected error fails this poll, never the collector
            log.warning("SNMP poll of %s for exporter %s failed: %s", state.link.device.name, state.link.exporter,
                        type(exc).__name__)
            result = DevicePoll(False, "internal")
        return result, self.clock() - started

    def poll_once(self) -> None:
        """Poll every linked device once (``workers`` at a time) and record what each answered."""
        if not self.states:
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="netflow-snmp") as pool:
            results = list(pool.map(self._poll_one, self.states))
        snapshot: FlowSnapshot = self.flows() if self.flows is not None else ({}, {})
        now = self.clock()
        with self._lock:
            for state, (result, duration) in zip(self.states, results, strict=True):
                self._record(state, result, duration, snapshot, now)
            self.rounds += 1
        if self.on_names is not None and any(result.up for result, _ in results):
            self.on_names()  # interfaces seen before their device answered get their names now

    def _record(self, state: _State, result: DevicePoll, duration: float, snapshot: FlowSnapshot,
                now: float) -> None:
        state.duration = duration
        state.up = result.up
        state.polls["up" if result.up else "down"] += 1
        if not result.up:
            state.errors[result.reason or "down"] += 1
            self._trim(state, now)
            return
        state.last_success = self.wall()
        if result.rebooted:
            state.history.clear()  # counters restarted: earlier polls cannot be compared with this one
        names = {i: c.name for i, c in result.interfaces.items()}
        state.names = names
        self._names = {**self._names, state.link.exporter: names}  # replaced whole: readers never lock
        flow, labels = flow_by_index(snapshot, state.link.exporter, sorted(result.interfaces))
        snmp = {i: (c.in_octets, c.out_octets) for i, c in result.interfaces.items()}
        state.history.append(Observation(now, snmp, flow, labels))
        self._trim(state, now)

    def _horizon(self, now: float) -> float:
        # A poll up to half an interval older than the window is kept, so jitter in the polling
        # schedule never drops a whole interval from the window.
        return now - self.window - self.interval / 2

    def _trim(self, state: _State, now: float) -> None:
        horizon = self._horizon(now)
        while state.history and state.history[0].at < horizon:
            state.history.popleft()

    # -- results --------------------------------------------------------------------------------

    def ratios(self) -> dict[tuple[str, str, str, str], tuple[float, float]]:
        """Return (flow / SNMP byte ratio, seconds covered) per (site, exporter, interface, direction)."""
        out = {}
        horizon = self._horizon(self.clock())
        with self._lock:
            histories = [(s.link.exporter, [o for o in s.history if o.at >= horizon]) for s in self.states]
        for exporter, history in histories:
            if len(history) < 2:
                continue
            span = history[-1].at - history[0].at
            labels = history[-1].labels
            for (site, index, direction), (flow, snmp) in window_deltas(history).items():
                if snmp <= 0 or snmp < self.min_snmp_bytes:
                    continue
                out[(site, exporter, labels[(site, index)], direction)] = (flow / snmp, span)
        return out

    def collect(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "citydc_netflow_snmp_bytes_ratio",
            "Flow-derived bytes divided by SNMP-counted octets of the same interface and direction over the "
            "last window of SNMP polls (about 1 when right, about N when a 1-in-N sampling rate is applied "
            "twice, about 1/N when it is missing).", labels=["site", "exporter", "interface", "direction"])
        covered = GaugeMetricFamily("citydc_netflow_snmp_bytes_ratio_window_seconds",
                                    "Time between the oldest and newest SNMP poll the ratio covers.",
                                    labels=["site", "exporter", "interface", "direction"])
        for key, (value, span) in sorted(self.ratios().items()):
            ratio.add_metric(list(key), value)
            covered.add_metric(list(key), span)
        yield from (ratio, covered)
        up = GaugeMetricFamily("citydc_netflow_snmp_feed_up",
                               "1 if the last SNMP poll of the exporter's device answered, 0 if not.",
                               labels=["site", "exporter", "device"])
        last = GaugeMetricFamily("citydc_netflow_snmp_feed_last_success_timestamp_seconds",
                                 "Unix time of the last successful SNMP poll of the exporter's device.",
                                 labels=["site", "exporter", "device"])
        duration = GaugeMetricFamily("citydc_netflow_snmp_feed_poll_duration_seconds",
                                     "Time the last SNMP poll of the exporter's device took.",
                                     labels=["site", "exporter", "device"])
        polls = CounterMetricFamily("citydc_netflow_snmp_feed_polls", "SNMP polls of exporters' devices by outcome.",
                                    labels=["site", "exporter", "device", "outcome"])
        errors = CounterMetricFamily("citydc_netflow_snmp_feed_poll_errors",
                                     "Failed SNMP polls of exporters' devices by reason (timeout, auth, ...).",
                                     labels=["site", "exporter", "device", "reason"])
        with self._lock:
            for s in self.states:
                base = [s.link.device.site, s.link.exporter, s.link.device.name]
                if s.up is not None:
                    up.add_metric(base, 1 if s.up else 0)
                    duration.add_metric(base, s.duration)
                if s.last_success is not None:
                    last.add_metric(base, s.last_success)
                for outcome in ("up", "down"):
                    polls.add_metric([*base, outcome], s.polls[outcome])
                for reason, n in sorted(s.errors.items()):
                    errors.add_metric([*base, reason], n)
        yield from (up, last, duration, polls, errors)

    # -- thread ---------------------------------------------------------------------------------

    def start(self, flows: Callable[[], FlowSnapshot], on_names: Callable[[], object] | None = None) -> None:
        """Given the aggregator's snapshot function (and what to call after a round that got
        interface names: ``Aggregator.name_interfaces``), poll once now, then every interval on a thread."""
        self.flows = flows
        self.on_names = on_names
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="netflow-snmp-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # never let the feed thread die silently
                log.exception("netflow SNMP feed round failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a poll round in flight ends within its own SNMP budget)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)


class SnmpPoller:
    """Given the config, poll devices in-process with the SNMP poll engine (collectors/snmp/engine.py):
    the same sessions, walks and counter wrap/reset state as ``citydc collect snmp``, no HTTP hop.

    Polls use the built-in module ``if_mib_bytes`` (names and 64-bit octets). Thread-safe: calls
    from several threads run concurrently on the engine's asyncio loop.
    """

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None, budget: float | None = None) -> None:
        from citydc.collectors.snmp.engine import Engine  # pysnmp is heavy: only when polling

        self.engine = Engine(config, environ)
        self.budget = budget if budget is not None else config.snmp.scrape_timeout_seconds
        self.engine.start()

    def __call__(self, device: Device) -> DevicePoll:
        """Given a device, poll it and return the DevicePoll (down with a reason on failure)."""
        job = self.engine.resolve(device.address, MODULE)
        return device_poll(self.engine.poll(job, self.budget))

    def close(self) -> None:
        self.engine.stop()

"""One poll's result as Prometheus text exposition (format 0.0.4): interface rows become samples here.

``interface_samples`` maps the poll engine's interface rows to metric samples (names, help, labels
site, device, ifName, ifAlias, ifIndex); ``render`` writes the whole ``/snmp`` answer of a device.

After the fast v2c decoder, client_python's ``generate_latest`` was the largest cost of a poll:
for every sample it re-validates and re-escapes each label name and value. A poll's samples
repeat the same few label sets (one per interface), so this writer escapes each label set once
and formats values with client_python's own ``floatToGoString``. Its output is byte-identical to
``generate_latest`` over Counter/GaugeMetricFamily holding the same samples (a unit test checks
it), so the exporter's small fixed families still go through client_python and these are appended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from citydc.collectors.snmp.collector import InterfaceRow, ScrapeResult
from citydc.collectors.snmp.counters import TargetCounters
from citydc.collectors.snmp.modules import FAMILIES

__all__ = ["COUNTER_METRICS", "Sample", "interface_samples", "render", "samples_text"]


@dataclass(frozen=True)
class Sample:
    metric: str
    kind: str  # counter | gauge
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _counter_metrics() -> dict[str, tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Return Family.key -> (metric, help, extra labels) for every interface counter."""
    out: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
        "receive_bytes": ("citydc_snmp_if_receive_bytes", "Octets received (ifHCInOctets, ifInOctets fallback).", ()),
        "transmit_bytes": ("citydc_snmp_if_transmit_bytes", "Octets sent (ifHCOutOctets, ifOutOctets fallback).", ()),
    }
    for direction in ("receive", "transmit"):
        for cast in ("unicast", "multicast", "broadcast"):
            out[f"{direction}_packets_{cast}"] = (f"citydc_snmp_if_{direction}_packets",
                                                  f"Packets {direction}d by cast type.", (("cast", cast),))
        out[f"{direction}_errors"] = (f"citydc_snmp_if_{direction}_errors", f"Packets {direction}d with errors.", ())
        out[f"{direction}_discards"] = (f"citydc_snmp_if_{direction}_discards",
                                        f"Packets {direction}d then discarded.", ())
    return out


COUNTER_METRICS = _counter_metrics()
_ORDER = [f.key for f in FAMILIES]
OPER_HELP = "IF-MIB ifOperStatus (1 up, 2 down, 7 lowerLayerDown)."
ADMIN_HELP = "IF-MIB ifAdminStatus (1 up, 2 down, 3 testing)."
SPEED_HELP = "Interface speed (ifSpeed, or ifHighSpeed x 10^6 when ifSpeed saturates)."


def interface_samples(rows: Iterable[InterfaceRow], site: str, device: str) -> list[Sample]:
    """Given a poll's interface rows and the device's site and name, return its interface samples."""
    base = (("site", site), ("device", device))
    samples: list[Sample] = []
    for row in rows:
        labels = (*base, ("ifName", row.name), ("ifAlias", row.alias), ("ifIndex", str(row.index)))
        for key in _ORDER:
            value = row.counters.get(key)
            if value is not None:
                metric, doc, extra = COUNTER_METRICS[key]
                samples.append(Sample(metric, "counter", doc, (*labels, *extra) if extra else labels, value))
        if row.oper_status is not None:
            samples.append(Sample("citydc_snmp_if_oper_status", "gauge", OPER_HELP, labels, row.oper_status))
        if row.admin_status is not None:
            samples.append(Sample("citydc_snmp_if_admin_status", "gauge", ADMIN_HELP, labels, row.admin_status))
        if row.speed_bps is not None:
            samples.append(Sample("citydc_snmp_if_speed_bits_per_second", "gauge", SPEED_HELP, labels, row.speed_bps))
    return samples


def render(result: ScrapeResult, site: str, device: str, counters: TargetCounters | None) -> bytes:
    """Given a poll's result, the device's site and name and its counter state (None: not polled yet),
    return the ``/snmp`` answer: a comment saying why a failed poll failed, the poll's own families
    (client_python), then the interface samples."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ResultCollector(result, site, device, counters))
    return (failure_comment(result) + generate_latest(registry)
            + samples_text(interface_samples(result.rows, site, device)))


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def failure_comment(result: ScrapeResult) -> bytes:
    """Given a poll's result, return a ``#`` comment line with the failed poll's reason and message ("" when it
    did not fail): the engineer who curls ``/snmp`` sees why (e.g. the OID an agent answered genErr for) without
    the exporter's log; Prometheus' text parser skips comments."""
    if result.up or not result.message:
        return b""
    text = _UNPRINTABLE.sub("?", f"{result.reason}: {result.message}")[:500]
    return f"# citydc_snmp poll failed: {text}\n".encode()


class _ResultCollector:
    def __init__(self, result: ScrapeResult, site: str, device: str, counters: TargetCounters | None):
        self.result, self.site, self.device, self.counters = result, site, device, counters

    def collect(self):
        r = self.result
        base = ["site", "device"]
        vals = [self.site, self.device]

        def gauge(name: str, doc: str, value: float, extra: Mapping[str, str] | None = None) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=[*base, *(extra or {})])
            g.add_metric([*vals, *(extra or {}).values()], value)
            return g

        yield gauge("citydc_snmp_up", "1 if the device answered the poll, 0 if not (see citydc_snmp_scrape_errors).",
                    1 if r.up else 0)
        yield gauge("citydc_snmp_scrape_duration_seconds", "Time this poll took.", r.duration_seconds)
        yield gauge("citydc_snmp_scrape_varbinds", "Varbinds the device returned in this poll.", r.varbinds)
        yield gauge("citydc_snmp_scrape_requests", "SNMP requests sent in this poll.", r.requests)
        errors = GaugeMetricFamily("citydc_snmp_scrape_errors", "Errors in this poll by reason.",
                                   labels=[*base, "reason"])
        for reason, n in sorted(r.errors.items()):
            errors.add_metric([*vals, reason], n)
        yield errors
        if not r.up:
            return
        yield gauge("citydc_snmp_interfaces", "Interfaces exported in this poll.", r.interfaces)
        if r.uptime_seconds is not None:
            yield gauge("citydc_snmp_sys_uptime_seconds", "sysUpTime of the agent.", r.uptime_seconds)
        if self.counters is not None:
            c = self.counters
            wraps = CounterMetricFamily("citydc_snmp_counter_wraps", "Counter wraps carried by the exporter.",
                                        labels=base)
            wraps.add_metric(vals, c.wraps)
            yield wraps
            resets = CounterMetricFamily(
                "citydc_snmp_counter_resets",
                "Counter resets seen: reboot (sysUpTime went back, or is shorter than the time since the last "
                "poll), discontinuity (ifCounterDiscontinuityTime changed), backwards (decrease that cannot be a "
                "wrap).", labels=[*base, "reason"])
            for reason in ("reboot", "discontinuity", "backwards"):
                resets.add_metric([*vals, reason], c.resets[reason])
            yield resets
            glitches = CounterMetricFamily(
                "citydc_snmp_counter_glitches",
                "Counter values below the last one by at most 1 % of it: the last value exported again (not a "
                "reset, which rate() would read as the whole counter of new traffic).", labels=base)
            glitches.add_metric(vals, c.glitches)
            yield glitches
        # The interface samples follow, written by samples_text (see render).

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def samples_text(samples: Iterable[Sample]) -> bytes:
    """Given samples, return their text exposition: one family per metric, in order of first appearance.

    Raise ValueError if a metric or label name is not a valid Prometheus name (they are code constants).
    """
    families: dict[str, list[str]] = {}
    exposed: dict[str, str] = {}
    label_text: dict[tuple[tuple[str, str], ...], str] = {}
    for s in samples:
        lines = families.get(s.metric)
        if lines is None:
            if not _NAME.fullmatch(s.metric):
                raise ValueError(f"invalid metric name {s.metric!r}")
            name = exposed[s.metric] = f"{s.metric}_total" if s.kind == "counter" else s.metric
            doc = s.help.replace("\\", r"\\").replace("\n", r"\n")
            lines = families[s.metric] = [f"# HELP {name} {doc}\n# TYPE {name} {s.kind}\n"]
        labels = label_text.get(s.labels)
        if labels is None:
            for key, _ in s.labels:
                if not _LABEL.fullmatch(key):
                    raise ValueError(f"invalid label name {key!r} on {s.metric}")
            inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(s.labels))
            labels = label_text[s.labels] = f"{{{inner}}}" if inner else ""
        lines.append(f"{exposed[s.metric]}{labels} {floatToGoString(s.value)}\n")
    return "".join(line for lines in families.values() for line in lines).encode()

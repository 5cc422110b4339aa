"""A month of deterministic history for the report Prometheus (``prometheus-report``), as OpenMetrics.

Series shaped as the lab's exporters write them (labels site, device, ifName, ifAlias, ifIndex from
``citydc collect snmp``, role/job/instance from the scrape config; site, agency, direction from
``citydc collect netflow``; site, job, repo, step from the backup textfile), for two access switches
of the lab (``sw-siwei-acc1``, ``sw-fengshan-acc1``: two uplinks and an access port each), the lab's
agencies (police at both sites), top talkers and the lab's two backup jobs.

The month is the calendar month before ``now`` in Asia/Taipei, plus a day either side (traffic
there is four times higher, so a report that reads outside its month shows it). Traffic is constant
within each 5-minute interval [s + 300 k, s + 300 (k+1)) (``interval_rates``): the 5-minute rate
Prometheus computes at s + 300 (k+1) is exactly that interval's rate, on Prometheus 2 (closed range)
and 3 (left-open range) alike, so a test can compute the 95th percentile from ``interval_rates``
without asking the code under test. Byte counters are written every 60 s, packet, error and discard
counters every 150 s, gauges every 300 s. Standard library only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["AGENCIES", "LINKS", "STEP", "ZONE", "Span", "interval_rates", "span_for", "write_day_files"]

ZONE = "Asia/Taipei"
STEP = 300
VERSION = 1  # bump when the generated series change: the lab rebuilds its TSDB


@dataclass(frozen=True)
class Link:
    site: str
    device: str
    if_name: str
    if_index: int
    if_alias: str
    speed_bps: float
    instance: str
    peak_bps: float  # daytime peak of "in"; "out" is a share of it


LINKS = (
    Link("siwei", "sw-siwei-acc1", "Te1/1/1", 10601, 'uplink to "core-1" po1', 10e9, "127.0.0.1:11620", 160e6),
    Link("siwei", "sw-siwei-acc1", "Te1/1/2", 10602, 'uplink to "core-2" po1', 10e9, "127.0.0.1:11620", 60e6),
    Link("siwei", "sw-siwei-acc1", "Gi1/0/1", 10101, "desk 1-01", 1e9, "127.0.0.1:11620", 8e6),
    Link("fengshan", "sw-fengshan-acc1", "Te1/1/1", 10601, 'uplink to "core-1" po1', 10e9, "127.0.0.1:11622", 90e6),
    Link("fengshan", "sw-fengshan-acc1", "Te1/1/2", 10602, 'uplink to "core-2" po1', 10e9, "127.0.0.1:11622", 40e6),
    Link("fengshan", "sw-fengshan-acc1", "Gi1/0/1", 10101, "desk 1-01", 1e9, "127.0.0.1:11622", 5e6),
)
# (site, agency, daytime peak of "in" in bit/s); the collectors of both sites see police.
AGENCIES = (("siwei", "civil-affairs", 30e6), ("siwei", "police", 70e6), ("fengshan", "police", 50e6),
            ("siwei", "information-center", 20e6))
NETFLOW_INSTANCE = {"siwei": "127.0.0.1:12059", "fengshan": "127.0.0.1:12060"}
TALKERS = {"siwei": ("10.10.2.15", "10.10.1.20", "10.99.78.2"), "fengshan": ("10.20.2.31", "10.20.2.40")}
BACKUP_JOBS = (("siwei-ldap", "siwei"), ("fengshan-device-configs", "fengshan"))
OUT_SHARE = 0.45


@dataclass(frozen=True)
class Span:
    """The month [start, end) (epoch seconds, local calendar month) and the generated range around it."""

    month: str
    start: int
    end: int

    @property
    def first(self) -> int:
        return self.start - 86400

    @property
    def last(self) -> int:
        return self.end + 86400

    @property
    def intervals(self) -> int:
        return (self.last - self.first) // STEP


def span_for(now: float) -> Span:
    """Given the current time, return the span of the calendar month before it in Asia/Taipei."""
    local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(ZONE))
    this_month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    prev = (this_month - timedelta(days=1)).replace(day=1)
    return Span(f"{prev:%Y-%m}", int(prev.timestamp()), int(this_month.timestamp()))


def _shape(t: int, rng: random.Random) -> float:
    local = datetime.fromtimestamp(t, UTC).astimezone(ZoneInfo(ZONE))
    hour = local.hour + local.minute / 60
    day = max(0.0, math.sin(math.pi * (hour - 7) / 14)) if 7 <= hour <= 21 else 0.0
    weekend = 0.5 if local.weekday() >= 5 else 1.0
    return (0.15 + 0.85 * day * weekend) * rng.uniform(0.8, 1.2)


def interval_rates(key: str, direction: str, peak_bps: float, span: Span) -> list[int]:
    """Given a series key, a direction, its daytime peak and the span, return the bytes/s of each
    5-minute interval of the span (interval k starts at span.first + 300 k). Deterministic."""
    rng = random.Random(f"{key}/{direction}/{span.month}/{VERSION}")  # noqa: S311 - simulated traffic
    peak = peak_bps * (1.0 if direction == "in" else OUT_SHARE)
    out = []
    for k in range(span.intervals):
        t = span.first + k * STEP
        outside = 4.0 if t < span.start or t >= span.end else 1.0
        out.append(int(peak / 8 * _shape(t, rng) * outside))
    return out


def link_key(link: Link) -> str:
    return f"{link.device}:{link.if_name}"


def _labels(pairs: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in sorted(pairs.items()))
    return "{" + inner + "}"


def _link_labels(link: Link) -> dict[str, str]:
    return {"site": link.site, "device": link.device, "ifName": link.if_name, "ifAlias": link.if_alias,
            "ifIndex": str(link.if_index), "role": "access", "job": "citydc_snmp", "instance": link.instance}


@dataclass
class _Counter:
    family: str
    labels: str
    rates: list[float]  # per interval, units per second
    every: int
    total: float = 0.0


def _counters(span: Span) -> list[_Counter]:
    out = []
    for link in LINKS:
        labels = _link_labels(link)
        for direction, name in (("in", "receive"), ("out", "transmit")):
            rates = interval_rates(link_key(link), direction, link.peak_bps, span)
            out.append(_Counter(f"citydc_snmp_if_{name}_bytes", _labels(labels), [float(r) for r in rates], 60))
            packets = [r / 800 for r in rates]
            out.append(_Counter(f"citydc_snmp_if_{name}_packets", _labels(labels | {"cast": "unicast"}), packets, 150))
            out.append(_Counter(f"citydc_snmp_if_{name}_errors", _labels(labels), [p * 1e-5 for p in packets], 150))
            out.append(_Counter(f"citydc_snmp_if_{name}_discards", _labels(labels), [p * 1e-4 for p in packets], 150))
    for site, agency, peak in AGENCIES:
        for direction in ("in", "out"):
            rates = interval_rates(f"{site}:{agency}", direction, peak, span)
            labels = {"site": site, "agency": agency, "direction": direction, "job": "citydc_netflow",
                      "instance": NETFLOW_INSTANCE[site]}
            out.append(_Counter("citydc_netflow_agency_bytes", _labels(labels), [float(r) for r in rates], 60))
    return out


def _gauges(span: Span, t: int) -> Iterator[tuple[str, str, float]]:
    for link in LINKS:
        labels = _labels(_link_labels(link))
        yield "citydc_snmp_if_speed_bits_per_second", labels, link.speed_bps
        yield "citydc_snmp_if_oper_status", labels, 1.0
        yield "citydc_snmp_if_admin_status", labels, 1.0
    for device, instance, site in {(lk.device, lk.instance, lk.site) for lk in LINKS}:
        yield "citydc_snmp_up", _labels({"site": site, "device": device, "role": "access", "job": "citydc_snmp",
                                         "instance": instance}), 1.0
    for site, talkers in TALKERS.items():
        for rank, talker in enumerate(talkers, start=1):
            labels = {"site": site, "rank": str(rank), "talker": talker, "job": "citydc_netflow",
                      "instance": NETFLOW_INSTANCE[site]}
            yield "citydc_netflow_top_talker_bytes", _labels(labels), 4e9 / rank
    day = 86400
    local_offset = 8 * 3600
    last_run = ((t + local_offset - 2 * 3600) // day) * day - local_offset + 2 * 3600  # 02:00 local
    for job, site in BACKUP_JOBS:
        node = {"job": job, "site": site, "instance": f"backup-{site}:9100"}
        for repo, step, delay in (("local", "backup", 0), ("offsite", "copy", 900), ("local", "check", 1800),
                                  ("local", "drill", 2700)):
            labels = node | {"repo": repo, "step": step}
            yield "citydc_backup_last_attempt_timestamp_seconds", _labels(labels), float(last_run + delay)
            yield "citydc_backup_last_success_timestamp_seconds", _labels(labels), float(last_run + delay)
            yield "citydc_backup_last_duration_seconds", _labels(labels), 120.0 + delay / 10
            for outcome in ("success", "partial", "failure"):
                yield "citydc_backup_last_outcome", _labels(labels | {"outcome": outcome}), \
                    1.0 if outcome == "success" else 0.0
        for repo in ("local", "offsite"):
            labels = _labels(node | {"repo": repo})
            yield "citydc_backup_repository_size_bytes", labels, 5e9 + (t - span.first) * 10.0
            yield "citydc_backup_snapshots", labels, 30.0
            yield "citydc_backup_last_added_bytes", labels, 2e7
        yield "citydc_backup_drill_failed_files", _labels(node | {"repo": "local"}), 0.0
        yield "citydc_backup_drill_verified_files", _labels(node | {"repo": "local"}), 50.0


def write_day_files(span: Span, folder: Path) -> list[Path]:
    """Given the span and a folder, write one OpenMetrics file per day of the span; return their paths.

    One file per day keeps each ``promtool tsdb create-blocks-from openmetrics`` run small: it reads its
    whole input once per two-hour block.
    """
    counters = _counters(span)
    paths = []
    for day_start in range(span.first, span.last, 86400):
        day_end = min(day_start + 86400, span.last)
        by_family: dict[str, list[str]] = {}
        kinds: dict[str, str] = {}
        for c in counters:
            lines = by_family.setdefault(c.family, [])
            kinds[c.family] = "counter"
            for t in range(day_start, day_end, c.every):
                k = (t - span.first) // STEP
                lines.append(f"{c.family}_total{c.labels} {c.total:.3f} {t}\n")
                c.total += c.rates[k] * c.every
        for t in range(day_start, day_end, STEP):
            for family, labels, value in _gauges(span, t):
                kinds[family] = "gauge"
                by_family.setdefault(family, []).append(f"{family}{labels} {value} {t}\n")
        path = folder / f"history-{day_start}.om"
        with path.open("w") as fh:
            for family, lines in by_family.items():
                fh.write(f"# TYPE {family} {kinds[family]}\n")
                fh.writelines(lines)
            fh.write("# EOF\n")
        paths.append(path)
    return paths

"""The monthly bandwidth report: 95th percentile, average and peak of the 5-minute samples, in and out.

A month is a calendar month in the config's ``timezone`` (Asia/Taipei by default): 2026-11 runs from
2026-11-01 00:00 to 2026-12-01 00:00 local time. Its 5-minute samples are the values of the
recording rules (alerts/*.rules.yml) at the month's start + 5 min, + 10 min, ... up to its end: each
is the average rate over the 5 minutes before it, so the samples cover the month and nothing else.

- a link: ``link:citydc_snmp_if_bits:rate5m`` of one device and ifName (in = received);
- an agency: ``agency:citydc_netflow_agency_bits:rate5m`` summed over the sites (in = to its prefixes);
- a site: ``site_uplink:citydc_snmp_if_bits:sum_rate5m`` (its uplinks: ifAlias says "uplink").

A link is its device and ifName: series of it whose other labels changed in the month (ifAlias edited,
ifIndex renumbered) are joined; series sharing many samples (scraped twice) fail the report (``NoData``).

The 95th percentile is the nearest-rank one: sort the N samples, take the ceil(0.95 N)-th. With a
committed rate, the overage of a direction is how far its 95th percentile is above it (else 0);
``billable`` is the higher of the two directions' 95th percentiles, as carriers bill.

A sample that is not a rate (NaN, an infinity, a negative value: a recording rule dividing by zero, a
counter reset mishandled) is never billed: the report fails naming the series and the time
(``BadSample``). A direction without any sample fails too (``NoData``): billing the higher of in and out
from one direction alone would be wrong without a word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from citydc.report.promapi import PrometheusClient, Series

__all__ = ["STEP_SECONDS", "BadSample", "BandwidthReport", "DirectionStats", "Month", "NoData", "Subject",
           "build_report", "nearest_rank", "parse_month", "subject_query"]

STEP_SECONDS = 300
DIRECTIONS = ("in", "out")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# Epoch seconds start in 1970; the month after 9999-12 is past datetime's range, and no bill is for year 3000.
FIRST_YEAR, LAST_YEAR = 1970, 2999


class NoData(RuntimeError):
    """Prometheus has no sample of the subject in the month; the message says what was asked where."""


class BadSample(RuntimeError):
    """Prometheus answered a sample that is not a rate in bit/s; the message names the series and the time."""


@dataclass(frozen=True)
class Month:
    """A calendar month in a zone; ``start`` and ``end`` are epoch seconds (end excluded)."""

    year: int
    month: int
    zone: str

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def _at(self, year: int, month: int) -> float:
        return datetime(year, month, 1, tzinfo=ZoneInfo(self.zone)).timestamp()

    @property
    def start(self) -> float:
        return self._at(self.year, self.month)

    @property
    def end(self) -> float:
        return self._at(self.year + self.month // 12, self.month % 12 + 1)


def parse_month(text: str, zone: str) -> Month:
    """Given ``YYYY-MM`` and a zone name, return the Month. Raise ValueError saying what is expected."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not FIRST_YEAR <= int(m.group(1)) <= LAST_YEAR:
        raise ValueError(f"--month expects a calendar month as YYYY-MM, e.g. 2026-11, from {FIRST_YEAR}-01 to "
                         f"{LAST_YEAR}-12; got {text!r}")
    return Month(int(m.group(1)), int(m.group(2)), zone)


def nearest_rank(values: list[float], percent: float) -> float:
    """Given values and a percentile (0 < p <= 100), return the nearest-rank percentile.

    Raise ValueError if there are no values.
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Subject:
    """What the report measures: a link (device + interface), an agency or a site."""

    kind: Literal["link", "agency", "site"]
    name: str
    device: str | None = None
    interface: str | None = None
    committed_bps: float | None = None
    committed_text: str | None = None

    @property
    def title(self) -> str:
        if self.kind == "link":
            own = f"{self.device}:{self.interface}"
            return f"link {self.name}" + ("" if self.name == own else f" ({self.device} {self.interface})")
        return f"{self.kind} {self.name}" + (" (uplinks)" if self.kind == "site" else "")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def subject_query(subject: Subject) -> str:
    """Given a subject, return the PromQL whose series are its bits/s by direction."""
    if subject.kind == "link":
        return (f"link:citydc_snmp_if_bits:rate5m{{device={_quote(subject.device or '')},"
                f"ifName={_quote(subject.interface or '')}}}")
    if subject.kind == "agency":
        return f"sum by (direction) (agency:citydc_netflow_agency_bits:rate5m{{agency={_quote(subject.name)}}})"
    return f"sum by (direction) (site_uplink:citydc_snmp_if_bits:sum_rate5m{{site={_quote(subject.name)}}})"


def parts_query(subject: Subject) -> tuple[str, str] | None:
    """Given an agency or a site, return the PromQL counting the series its sum adds up by direction (its sites'
    collectors, its uplinks) and what they are; None for a link, which is one interface."""
    # Distinct sites or interfaces, not series: a label change mid-month (ifAlias edited) is one interface.
    if subject.kind == "agency":
        return ("count by (direction) (count by (direction, site) "
                f"(agency:citydc_netflow_agency_bits:rate5m{{agency={_quote(subject.name)}}}))", "sites")
    if subject.kind == "site":
        # The selector of site_uplink:citydc_snmp_if_bits:sum_rate5m in alerts/snmp.rules.yml, which sums
        # the uplinks away: counting them needs the level it reads.
        return ("count by (direction) (count by (direction, device, ifName) "
                f'(link:citydc_snmp_if_bits:rate5m{{site={_quote(subject.name)},ifAlias=~"(?i).*uplink.*"}}))',
                "uplinks")
    return None


def _fewer_parts_warnings(client: PrometheusClient, subject: Subject, first: float, last: float,
                          grid: set[float]) -> list[str]:
    """Given an agency or a site, return a warning per direction with samples summing fewer sites or uplinks than
    the month's most: a site's collector or an uplink's device was not scraped, so the sum is low, yet present."""
    query = parts_query(subject)
    if query is None:
        return []
    expr, parts = query
    warnings = []
    for s in client.query_range(expr, first, last, STEP_SECONDS):
        counts = [v for t, v in s.points if t in grid]
        most = max(counts, default=0)
        fewer = [c for c in counts if c < most]
        if fewer:
            warnings.append(f"{s.labels.get('direction', '?')}: {len(fewer)} of {len(counts)} 5-minute samples "
                            f"sum fewer {parts} (down to {min(fewer):.0f}) than the month's most ({most:.0f}): "
                            f"a collector or device was not scraped then, or {parts} were added or removed in "
                            f"the month; those samples are low (query: {expr})")
    return warnings


@dataclass(frozen=True)
class DirectionStats:
    direction: str
    samples: int
    expected: int
    p95_bps: float | None
    average_bps: float | None
    peak_bps: float | None
    peak_at: float | None
    committed_bps: float | None
    overage_bps: float | None

    def to_json(self) -> dict:
        return {"direction": self.direction, "samples": self.samples, "expected_samples": self.expected,
                "p95_bps": self.p95_bps, "average_bps": self.average_bps, "peak_bps": self.peak_bps,
                "peak_at": _iso(self.peak_at), "committed_bps": self.committed_bps, "overage_bps": self.overage_bps}


@dataclass(frozen=True)
class BandwidthReport:
    subject: Subject
    month: Month
    first_sample: float
    last_sample: float
    query: str
    prometheus_url: str
    rows: list[DirectionStats]
    points: dict[str, list[tuple[float, float]]] = field(repr=False)
    # What may make the figures incomplete (missing samples, Prometheus's own warnings): shown in every format.
    warnings: list[str] = field(default_factory=list)

    @property
    def billable_p95_bps(self) -> float | None:
        values = [r.p95_bps for r in self.rows if r.p95_bps is not None]
        return max(values) if values else None

    @property
    def billable_overage_bps(self) -> float | None:
        if self.subject.committed_bps is None or self.billable_p95_bps is None:
            return None
        return max(0.0, self.billable_p95_bps - self.subject.committed_bps)

    def to_json(self) -> dict:
        s = self.subject
        return {"subject": {"kind": s.kind, "name": s.name, "device": s.device, "interface": s.interface,
                            "committed_rate": s.committed_text, "committed_bps": s.committed_bps},
                "month": self.month.label, "timezone": self.month.zone,
                "start": _iso(self.month.start), "end": _iso(self.month.end),
                "first_sample": _iso(self.first_sample), "last_sample": _iso(self.last_sample),
                "step_seconds": STEP_SECONDS, "percentile": 95, "method": "nearest-rank",
                "prometheus_url": self.prometheus_url, "query": self.query,
                "directions": [r.to_json() for r in self.rows],
                "billable_p95_bps": self.billable_p95_bps, "billable_overage_bps": self.billable_overage_bps,
                "warnings": self.warnings}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# A label change of the interface (ifAlias edited, ifIndex renumbered, exporter moved: instance) ends one
# series and starts another; the old one still has a 5-minute rate for up to 5 minutes, so the two share at
# most this many samples, where each holds its part of the traffic. Two series sharing more are the interface
# scraped twice, whose sum would bill it twice.
MAX_SHARED_SAMPLES = 2


def _by_direction(series: list[Series]) -> dict[str, list[Series]]:
    """Given the answer, return its series by direction (an empty list when a direction has none)."""
    found: dict[str, list[Series]] = {d: [] for d in DIRECTIONS}
    for s in series:
        found.setdefault(s.labels.get("direction", ""), []).append(s)
    return found


def _labels_text(series: Series) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(series.labels.items()))


def _merge(group: list[Series], direction: str, subject: Subject, url: str) -> list[tuple[float, float]]:
    """Given the series of one direction (points already on the month's grid), return one (time, bit/s) list.

    Series that follow each other (a label change mid-month) are joined, summing a shared sample (each is its
    part of the 5 minutes); series sharing more than MAX_SHARED_SAMPLES samples are ambiguous: raise NoData.
    """
    for i, first in enumerate(group):
        times = {t for t, _ in first.points}
        for second in group[i + 1:]:
            shared = sum(1 for t, _ in second.points if t in times)
            if shared > MAX_SHARED_SAMPLES:
                raise NoData(f"{subject.title}: 2 series for direction {direction} in {url} share {shared} "
                             f"5-minute samples ({_labels_text(first)}; {_labels_text(second)}); the interface is "
                             "scraped twice or the name is ambiguous")
    total: dict[float, float] = {}
    for s in group:
        for t, v in s.points:
            total[t] = total.get(t, 0.0) + v
    joined = sorted(total.items())
    if len(group) > 1:  # two huge finite parts could add up to an infinity, which is never billed
        _check_rates(Series({"direction": direction, "joined_series": str(len(group))}, joined), joined, subject, url)
    return joined


def _prom_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else repr(value)


def _check_rates(series: Series, points: list[tuple[float, float]], subject: Subject, url: str) -> None:
    """Raise BadSample if a point is not a rate in bit/s (finite and >= 0): it must never be billed."""
    bad = [(t, v) for t, v in points if not (math.isfinite(v) and v >= 0)]
    if not bad:
        return
    t, v = bad[0]
    labels = ", ".join(f'{k}="{val}"' for k, val in sorted(series.labels.items()))
    more = f" (and {len(bad) - 1} more such samples)" if len(bad) > 1 else ""
    raise BadSample(f"{subject.title}: series {{{labels}}} in {url} has the value {_prom_number(v)} at {_iso(t)}"
                    f"{more}, not a rate in bit/s (a finite number >= 0); nothing is billed from it: fix the "
                    "recording rule or the counter it reads (alerts/*.rules.yml)")


def _mean(values: list[float]) -> float:
    # Dividing first: a sum of huge finite rates could overflow to inf, and an inf must never be billed.
    return sum(v / len(values) for v in values)


def build_report(client: PrometheusClient, subject: Subject, month: Month, now: float) -> BandwidthReport:
    """Given a Prometheus client, the subject, the month and the current time, return the report.

    A month still running is reported up to the last whole 5 minutes before ``now``. Raise NoData if the
    month has not started or Prometheus holds no sample of the subject (or of one direction) in it;
    BadSample if a sample is not a rate (NaN, infinite, negative); PrometheusError if Prometheus gives no
    valid answer.
    """
    first = month.start + STEP_SECONDS
    last = min(month.end, math.floor(now / STEP_SECONDS) * STEP_SECONDS)
    if last < first:
        raise NoData(f"{month.label} ({month.zone}) has no whole 5 minutes before now")
    expected = int((last - first) // STEP_SECONDS) + 1
    expr = subject_query(subject)
    # Only the sample times of the month (a server may not align to them; then nothing counts twice).
    grid = {first + k * STEP_SECONDS for k in range(expected)}
    series = _by_direction([Series(s.labels, [(t, v) for t, v in s.points if t in grid])
                            for s in client.query_range(expr, first, last, STEP_SECONDS)])
    for direction in DIRECTIONS:
        for s in series[direction]:
            _check_rates(s, s.points, subject, client.base_url)
    points = {d: _merge(series[d], d, subject, client.base_url) for d in DIRECTIONS}
    if not any(points.values()):
        raise NoData(f"no samples of {subject.title} in {month.label} ({month.zone}) in {client.base_url} "
                     f"(query: {expr}); check the name and that Prometheus loads alerts/*.rules.yml")
    for direction in DIRECTIONS:
        if not points[direction]:
            other = next(d for d in DIRECTIONS if d != direction)
            raise NoData(f"no samples of {subject.title} direction {direction} in {month.label} ({month.zone}) in "
                         f"{client.base_url}, {len(points[other])} of direction {other} (query: {expr}); the "
                         "billable rate is the higher of both directions: check the exporter or collector")
    rows = []
    for direction in DIRECTIONS:
        values = [v for _, v in points[direction]]
        p95 = nearest_rank(values, 95)
        peak_t, peak = max(points[direction], key=lambda tv: (tv[1], -tv[0]))
        overage = None if subject.committed_bps is None else max(0.0, p95 - subject.committed_bps)
        rows.append(DirectionStats(direction, len(values), expected, p95, _mean(values), peak, peak_t,
                                   subject.committed_bps, overage))
    warnings = _missing_warnings(rows) + _fewer_parts_warnings(client, subject, first, last, grid)
    # Last: the warnings of every answer above.
    warnings += [f"Prometheus {client.base_url} warned: {w}" for w in client.warnings]
    return BandwidthReport(subject, month, first, last, expr, client.base_url, rows, points, warnings)


def _missing_warnings(rows: list[DirectionStats]) -> list[str]:
    return [f"{r.direction}: {r.expected - r.samples} of {r.expected} 5-minute samples missing from Prometheus; "
            "the figures cover the samples present" for r in rows if r.samples < r.expected]

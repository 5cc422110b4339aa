"""citydc.report: an interface whose labels change mid-month (ifAlias edited, ifIndex renumbered, exporter
moved) is one link: its series are joined, the sample they share (the 5-minute rate window straddling the
change) is the sum of their parts, and only series sharing many samples (scraped twice) are refused."""

from __future__ import annotations

import io
import json

import pytest

from citydc.report.bandwidth import MAX_SHARED_SAMPLES, BadSample, NoData, Subject, build_report, parse_month
from citydc.report.promapi import PrometheusClient

MONTH = parse_month("2026-02", "Asia/Taipei")
GRID = [MONTH.start + 300 * (k + 1) for k in range(8064)]
LINK = Subject("link", "uplink", "sw1", "Te1/1/1")


class Answer:
    """An opener answering every query_range with the given series (labels, points)."""

    def __init__(self, series: list[tuple[dict, list[tuple[float, float]]]]) -> None:
        self.body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": labels, "values": [[t, repr(v)] for t, v in points]} for labels, points in series]}}).encode()

    def __call__(self, request, timeout, context=None):
        return io.BytesIO(self.body)


def rate_at(k: int) -> float:
    return 1e6 * (1 + (k * 37) % 200)


def split_at(change: int, shared: int, direction: str) -> list[tuple[dict, list[tuple[float, float]]]]:
    """The month's rates as two series of one direction, the ifAlias edited at sample ``change``; the old
    series keeps ``shared`` samples past it, each series holding half of a shared sample."""
    before = [(t, rate_at(k) / 2 if k >= change else rate_at(k)) for k, t in enumerate(GRID[:change + shared])]
    after = [(t, rate_at(k) / 2 if k < change + shared else rate_at(k)) for k, t in enumerate(GRID) if k >= change]
    labels = {"device": "sw1", "ifName": "Te1/1/1", "direction": direction}
    return [({**labels, "ifAlias": "uplink to core"}, before), ({**labels, "ifAlias": "uplink to core-1"}, after)]


def report_of(series: list[tuple[dict, list[tuple[float, float]]]]):
    return build_report(PrometheusClient("http://prom:9090", opener=Answer(series)), LINK, MONTH,
                        now=MONTH.end + 10)


@pytest.mark.parametrize("shared", range(MAX_SHARED_SAMPLES + 1))
def test_an_ifalias_edited_mid_month_keeps_the_whole_month(shared: int) -> None:
    report = report_of(split_at(4000, shared, "in") + split_at(6000, shared, "out"))
    expected = sorted(rate_at(k) for k in range(len(GRID)))
    for row in report.rows:
        assert (row.samples, row.expected) == (len(GRID), len(GRID))
        assert row.p95_bps == pytest.approx(expected[-(-95 * len(GRID) // 100) - 1])
        assert row.average_bps == pytest.approx(sum(expected) / len(GRID))
        assert row.peak_bps == pytest.approx(expected[-1])


def test_series_sharing_more_samples_than_a_label_change_are_refused() -> None:
    shared = MAX_SHARED_SAMPLES + 1
    with pytest.raises(NoData, match=f"share {shared} 5-minute samples .*ifAlias=uplink to core-1.*scraped twice"):
        report_of(split_at(4000, shared, "in") + split_at(6000, 0, "out"))


def test_a_shared_sample_adding_up_to_infinity_is_never_billed() -> None:
    huge = 1.7e308  # finite; twice it is not
    labels = {"device": "sw1", "ifName": "Te1/1/1"}
    series = [({**labels, "direction": "in", "ifAlias": "a"}, [(GRID[0], 1.0), (GRID[1], huge)]),
              ({**labels, "direction": "in", "ifAlias": "b"}, [(GRID[1], huge), (GRID[2], 1.0)]),
              ({**labels, "direction": "out"}, [(t, 1.0) for t in GRID[:3]])]
    with pytest.raises(BadSample, match=r"joined_series=\"2\".* has the value \+Inf at "):
        report_of(series)

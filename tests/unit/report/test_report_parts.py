"""citydc.report: an agency or site total that is low because one of its parts was not scraped (a site's
NetFlow collector down, an uplink's switch down) still has every sample; the report warns how many samples
sum fewer sites or uplinks than the month's most, and says nothing when all parts were there."""

from __future__ import annotations

import io
import json
import urllib.parse

import pytest

from citydc.report.bandwidth import Subject, build_report, parse_month
from citydc.report.promapi import PrometheusClient

MONTH = parse_month("2026-02", "Asia/Taipei")
GRID = [MONTH.start + 300 * (k + 1) for k in range(8064)]
DOWN = range(1000, 1072)  # six hours of one part missing


class Prometheus:
    """An opener answering the sum query with every sample, the count query with ``parts`` per sample."""

    def __init__(self, parts: list[int]) -> None:
        self.parts, self.queries = parts, []

    def __call__(self, request, timeout, context=None):
        query = urllib.parse.parse_qs(request.data.decode())["query"][0]
        self.queries.append(query)
        values = self.parts if query.startswith("count") else [1e6 * p for p in self.parts]
        result = [{"metric": {"direction": d}, "values": [[t, str(v)] for t, v in zip(GRID, values, strict=True)]}
                  for d in ("in", "out")]
        return io.BytesIO(json.dumps({"status": "success",
                                      "data": {"resultType": "matrix", "result": result}}).encode())


def parts_with_one_down() -> list[int]:
    return [1 if k in DOWN else 2 for k in range(len(GRID))]


@pytest.mark.parametrize(("subject", "parts"), [(Subject("agency", "police"), "sites"),
                                                  (Subject("site", "siwei"), "uplinks")])
def test_a_part_not_scraped_is_warned_of(subject: Subject, parts: str) -> None:
    prom = Prometheus(parts_with_one_down())
    report = build_report(PrometheusClient("http://prom:9090", opener=prom), subject, MONTH, now=MONTH.end)
    assert [r.samples for r in report.rows] == [len(GRID)] * 2
    for direction in ("in", "out"):
        assert any(w.startswith(f"{direction}: {len(DOWN)} of {len(GRID)} 5-minute samples sum fewer {parts} "
                                "(down to 1) than the month's most (2)") for w in report.warnings)
    assert "count by (direction, " in prom.queries[1]


def test_all_parts_present_gives_no_warning() -> None:
    prom = Prometheus([2] * len(GRID))
    report = build_report(PrometheusClient("http://prom:9090", opener=prom), Subject("agency", "police"), MONTH,
                          now=MONTH.end)
    assert report.warnings == []


def test_a_link_is_one_interface_and_asks_no_count() -> None:
    prom = Prometheus([1] * len(GRID))
    report = build_report(PrometheusClient("http://prom:9090", opener=prom), Subject("link", "x", "sw1", "Te1"),
                          MONTH, now=MONTH.end)
    assert report.warnings == [] and len(prom.queries) == 1

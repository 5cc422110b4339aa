"""citydc.report: the month in its zone, nearest-rank percentiles, the statistics of a fake Prometheus
answer, and the API client's named errors (a fake opener at the HTTP boundary)."""

from __future__ import annotations

import io
import json
import urllib.error
from datetime import UTC, datetime

import pytest

from citydc.report.bandwidth import NoData, Subject, build_report, nearest_rank, parse_month
from citydc.report.promapi import (
    PrometheusAnswerInvalid,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnreachable,
)


def test_month_is_local_calendar_month() -> None:
    m = parse_month("2026-11", "Asia/Taipei")
    assert m.start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC).timestamp()  # 2026-11-01 00:00 +08:00
    assert m.end - m.start == 30 * 86400
    assert parse_month("2026-12", "UTC").end == parse_month("2027-01", "UTC").start


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "11/2026", "", "2026-00", "1969-12"])
def test_bad_month_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(text, "Asia/Taipei")


def test_nearest_rank() -> None:
    assert nearest_rank(list(range(1, 101)), 95) == 95
    assert nearest_rank(list(range(1, 21)), 95) == 19
    assert nearest_rank([5.0], 95) == 5.0
    assert nearest_rank([3, 1, 2], 100) == 3


class FakeOpener:
    def __init__(self, body: object, error: Exception | None = None) -> None:
        self.body, self.error, self.requests, self.contexts = body, error, [], []

    def __call__(self, request, timeout, context=None):
        self.requests.append(request)
        self.contexts.append(context)
        if self.error:
            raise self.error
        data = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return io.BytesIO(data)


def matrix(series: list[tuple[dict, list[tuple[float, float]]]]) -> dict:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": [[t, str(v)] for t, v in points]} for labels, points in series]}}


def test_report_of_a_link_with_committed_rate() -> None:
    month = parse_month("2026-11", "UTC")
    grid = [month.start + 300 * (k + 1) for k in range(8640)]
    inbound = [(t, float(k % 100) * 1e6) for k, t in enumerate(grid)]
    outbound = [(t, 1e6) for t in grid[:100]]
    # A sample outside the month's grid is ignored.
    opener = FakeOpener(matrix([({"direction": "in"}, [(month.start, 9e12), *inbound]),
                                ({"direction": "out"}, outbound)]))
    client = PrometheusClient("http://prom:9090", opener=opener)
    subject = Subject("link", "internet", "sw1", "Te1/1/1", committed_bps=90e6, committed_text="90 Mbit/s")
    report = build_report(client, subject, month, now=month.end + 10)
    rin, rout = report.rows
    assert (rin.samples, rin.expected, rout.samples) == (8640, 8640, 100)
    assert rin.p95_bps == 94e6 and rin.peak_bps == 99e6
    assert rin.average_bps == pytest.approx(sum(v for _, v in inbound) / 8640)
    assert rin.peak_at == grid[99]
    assert rin.overage_bps == pytest.approx(4e6) and rout.overage_bps == 0
    assert report.billable_overage_bps == pytest.approx(4e6)
    body = opener.requests[0].data.decode()
    assert "ifName%3D%22Te1%2F1%2F1%22" in body and "step=300.000" in body
    assert report.to_json()["directions"][0]["p95_bps"] == 94e6


def test_a_running_month_stops_at_now_and_no_samples_is_named() -> None:
    month = parse_month("2026-11", "UTC")
    client = PrometheusClient("http://prom:9090", opener=FakeOpener(matrix([])))
    with pytest.raises(NoData, match="no samples of agency police in 2026-11"):
        build_report(client, Subject("agency", "police"), month, now=month.start + 3600)
    with pytest.raises(NoData, match="no whole 5 minutes"):
        build_report(client, Subject("agency", "police"), month, now=month.start + 10)


def test_two_series_for_one_direction_is_an_error() -> None:
    month = parse_month("2026-11", "UTC")
    # The interface scraped twice (two jobs) all month: summing would bill it twice.
    grid = [month.start + 300 * (k + 1) for k in range(8640)]
    client = PrometheusClient("http://prom:9090", opener=FakeOpener(matrix(
        [({"direction": "in", "job": "a"}, [(t, 1) for t in grid]),
         ({"direction": "in", "job": "b"}, [(t, 1) for t in grid])])))
    with pytest.raises(NoData, match=r"2 series for direction in .* share 8640 5-minute samples"):
        build_report(client, Subject("link", "x", "sw1", "Te1"), month, now=month.end)


def test_client_errors_are_named() -> None:
    refused = PrometheusClient("http://prom:9090", opener=FakeOpener(None, urllib.error.URLError("refused")))
    with pytest.raises(PrometheusUnreachable, match="http://prom:9090: no answer"):
        refused.query("up")
    bad = urllib.error.HTTPError("http://prom:9090/api/v1/query", 400, "Bad Request", {},  # type: ignore[arg-type]
                                 io.BytesIO(b'{"status":"error","errorType":"bad_data","error":"parse error"}'))
    with pytest.raises(PrometheusQueryError, match="bad_data: parse error"):
        PrometheusClient("http://prom:9090", opener=FakeOpener(None, bad)).query("up{")
    with pytest.raises(PrometheusAnswerInvalid, match="not JSON"):
        PrometheusClient("http://prom:9090", opener=FakeOpener(b"<html>")).query("up")
    with pytest.raises(PrometheusAnswerInvalid, match="did not return a matrix"):
        PrometheusClient("http://prom:9090", opener=FakeOpener({"status": "success", "data": {}})).query_range(
            "up", 0, 1, 1)
    weird = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 5]}]}}
    with pytest.raises(PrometheusAnswerInvalid, match="not \\[time"):
        PrometheusClient("http://prom:9090", opener=FakeOpener(weird)).query("up")

"""citydc.report.chart: samples missing for a while (a device down for days) show as a break in the line, not
as a straight line across the outage that looks like traffic was measured."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from citydc.report.bandwidth import STEP_SECONDS, BandwidthReport, DirectionStats, Subject, parse_month
from citydc.report.chart import with_gaps, write_png

MONTH = parse_month("2026-02", "Asia/Taipei")
T0 = MONTH.start + STEP_SECONDS
BEFORE = [(T0 + STEP_SECONDS * k, 1e6 * (k + 1)) for k in range(3)]
AFTER = [(T0 + STEP_SECONDS * k, 1e6 * (k + 1)) for k in range(600, 603)]  # two days missing between


def test_a_gap_gets_a_break_and_consecutive_samples_none() -> None:
    shown = with_gaps(BEFORE + AFTER)
    assert [t for t, _ in shown] == [t for t, _ in BEFORE] + [BEFORE[-1][0] + STEP_SECONDS] + [t for t, _ in AFTER]
    assert math.isnan(shown[3][1]) and sum(math.isnan(v) for _, v in shown) == 1
    assert with_gaps(BEFORE) == BEFORE and with_gaps([]) == []


def test_the_chart_draws_the_break(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib import pyplot

    kept = []
    monkeypatch.setattr(pyplot, "close", kept.append)  # keep the figure to look at its lines
    rows = [DirectionStats(d, 6, 8064, 3e6, 2e6, 3e6, BEFORE[-1][0], None, None) for d in ("in", "out")]
    report = BandwidthReport(Subject("link", "x", "sw1", "Te1"), MONTH, T0, AFTER[-1][0], "q", "http://prom",
                             rows, {"in": BEFORE + AFTER, "out": BEFORE + AFTER})
    write_png(report, tmp_path / "x.png")
    try:
        samples = [line for line in kept[0].axes[0].get_lines() if "5-minute samples" in str(line.get_label())]
        assert len(samples) == 2
        assert all(sum(math.isnan(v) for v in line.get_ydata()) == 1 for line in samples)
    finally:
        monkeypatch.undo()
        pyplot.close(kept[0])
    assert (tmp_path / "x.png").stat().st_size > 0

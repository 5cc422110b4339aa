"""The report's chart as a PNG an auditor can attach: the month's 5-minute samples in and out, each
direction's 95th percentile and the committed rate, times in the report's zone.

matplotlib (Agg backend, no display) comes with the ``report`` extra (``pip install 'citydc[report]'``);
it is imported only when a chart is asked for, so the rest of citydc does not need it.
"""

from __future__ import annotations

import itertools
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from citydc.config.units import format_bit_rate
from citydc.report.bandwidth import STEP_SECONDS, BandwidthReport

__all__ = ["ChartUnavailable", "with_gaps", "write_png"]

COLOURS = {"in": "#1f77b4", "out": "#2ca02c"}


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ChartUnavailable("--png needs matplotlib: pip install 'citydc[report]'") from None
    matplotlib.use("Agg", force=True)
    from matplotlib import dates, pyplot

    return pyplot, dates


def write_png(report: BandwidthReport, path: Path, width_px: int = 1600, height_px: int = 700) -> Path:
    """Given a report and a file path, draw the chart and write it (through a temporary file, then rename).

    Return the path. Raise ChartUnavailable without matplotlib, OSError if the file cannot be written.
    """
    plt, mdates = _pyplot()
    zone = ZoneInfo(report.month.zone)
    scale, unit = _scale(max((v for pts in report.points.values() for _, v in pts), default=0.0))
    dpi = 100
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    try:
        for row in report.rows:
            pts = report.points.get(row.direction, [])
            if not pts:
                continue
            shown = with_gaps(pts)
            times = [datetime.fromtimestamp(t, UTC).astimezone(zone) for t, _ in shown]
            colour = COLOURS.get(row.direction, "black")
            ax.plot(times, [v / scale for _, v in shown], linewidth=0.7, color=colour,
                    label=f"{row.direction} (5-minute samples)")
            if row.p95_bps is not None:
                ax.axhline(row.p95_bps / scale, color=colour, linestyle="--", linewidth=1.2,
                           label=f"95th percentile {row.direction}: {format_bit_rate(row.p95_bps)}")
        if report.subject.committed_bps is not None:
            ax.axhline(report.subject.committed_bps / scale, color="#d62728", linewidth=1.5,
                       label=f"committed: {format_bit_rate(report.subject.committed_bps)}")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.set_xlim(datetime.fromtimestamp(report.month.start, UTC).astimezone(zone),
                    datetime.fromtimestamp(report.month.end, UTC).astimezone(zone))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d", tz=zone))
        ax.set_xlabel(f"local time ({report.month.zone})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        ax.set_title(f"Bandwidth of {report.subject.title}, {report.month.label} ({report.month.zone}); "
                     "95th percentile of 5-minute samples, nearest rank")
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def with_gaps(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Given a direction's (time, bit/s) samples in time order, return them with a NaN after each sample whose
    next one is more than a step later: matplotlib breaks the line there, so a device down for days shows
    as a gap, not as a straight line of traffic nobody measured."""
    shown: list[tuple[float, float]] = []
    for (t, v), (t_next, _) in itertools.pairwise(points):
        shown.append((t, v))
        if t_next - t > STEP_SECONDS:
            shown.append((t + STEP_SECONDS, math.nan))
    return shown + points[-1:]


def _scale(peak: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if peak >= scale:
            return scale, unit
    return 1.0, "bit/s"

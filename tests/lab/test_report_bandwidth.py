"""``citydc report bandwidth`` against the lab's report Prometheus (``prometheus-report``), whose TSDB
holds a backfilled month: the recording rules of alerts/ backfilled by promtool from the generated
counters. The expected figures are computed here from the generator's 5-minute interval rates
(lab/report_history.py), not by the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.lab import ports
from citydc.lab.report_history import AGENCIES, LINKS, STEP, Span, interval_rates, link_key, span_for

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
COMMITTED = 100e6


@pytest.fixture(scope="module")
def setup(lab_up, tmp_path_factory) -> tuple[Path, Span]:
    lab_up("prometheus-report")
    cfg = tmp_path_factory.mktemp("report") / "citydc.yaml"
    cfg.write_text(f"""\
sites:
  - {{id: siwei, name: 四維 Siwei}}
  - {{id: fengshan, name: 鳳山 Fengshan}}
devices:
  - {{name: sw-siwei-acc1, address: "127.0.0.1:11620", site: siwei, role: access}}
  - {{name: sw-fengshan-acc1, address: "127.0.0.1:11622", site: fengshan, role: access}}
netflow:
  agencies:
    - {{name: civil-affairs, prefixes: [10.10.1.0/24]}}
    - {{name: police, prefixes: [10.10.2.0/24, 10.20.2.0/24]}}
report:
  prometheus_url: http://{ports.HOST}:{ports.PROMETHEUS_REPORT}
  links:
    - {{name: siwei-isp, device: sw-siwei-acc1, interface: Te1/1/1, committed_rate: 100 Mbit/s}}
  agencies:
    - {{name: police, committed_rate: 100Mbps}}
""")
    return cfg, span_for(time.time())


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(cfg), "report", "bandwidth", *args], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})


def month_samples(span: Span, *series: tuple[str, float], direction: str) -> list[float]:
    """The bits/s of each 5-minute interval inside the month, summed over the given series."""
    per_series = [interval_rates(key, direction, peak, span) for key, peak in series]
    first = (span.start - span.first) // STEP
    count = (span.end - span.start) // STEP
    return [8.0 * sum(rates[k] for rates in per_series) for k in range(first, first + count)]


def expected(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p95_bps": ordered[math.ceil(0.95 * len(ordered)) - 1], "average_bps": sum(values) / len(values),
            "peak_bps": max(values)}


def check(report: dict, samples: dict[str, list[float]]) -> None:
    for row in report["directions"]:
        want = expected(samples[row["direction"]])
        assert row["samples"] == row["expected_samples"] == len(samples[row["direction"]])
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-9), (row["direction"], key)


def test_link_report_matches_the_samples_and_the_overage(setup) -> None:
    cfg, span = setup
    res = run(cfg, "--link", "siwei-isp", "--month", span.month, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    link = LINKS[0]
    samples = {d: month_samples(span, (link_key(link), link.peak_bps), direction=d) for d in ("in", "out")}
    check(report, samples)
    assert report["subject"]["committed_bps"] == COMMITTED
    rows = {r["direction"]: r for r in report["directions"]}
    p95_in = expected(samples["in"])["p95_bps"]
    assert p95_in > COMMITTED  # the generated uplink is over its commitment: the overage is not trivially 0
    assert rows["in"]["overage_bps"] == pytest.approx(p95_in - COMMITTED, rel=1e-9)
    assert rows["out"]["overage_bps"] == max(0.0, expected(samples["out"])["p95_bps"] - COMMITTED)
    assert report["billable_overage_bps"] == pytest.approx(p95_in - COMMITTED, rel=1e-9)
    # The month is the local (Asia/Taipei) one: its samples start 5 minutes after local midnight.
    assert report["timezone"] == "Asia/Taipei"
    assert report["first_sample"].endswith("T16:05:00Z")


def test_agency_and_site_reports_sum_their_series(setup) -> None:
    cfg, span = setup
    res = run(cfg, "--agency", "police", "--month", span.month, "--json")
    assert res.returncode == 0, res.stderr
    police = [(f"{site}:{agency}", peak) for site, agency, peak in AGENCIES if agency == "police"]
    assert len(police) == 2  # both sites' collectors
    check(json.loads(res.stdout), {d: month_samples(span, *police, direction=d) for d in ("in", "out")})

    res = run(cfg, "--site", "siwei", "--month", span.month, "--json")
    assert res.returncode == 0, res.stderr
    uplinks = [(link_key(lk), lk.peak_bps) for lk in LINKS if lk.site == "siwei" and "uplink" in lk.if_alias]
    assert len(uplinks) == 2
    check(json.loads(res.stdout), {d: month_samples(span, *uplinks, direction=d) for d in ("in", "out")})


def test_table_csv_and_png(setup, tmp_path: Path) -> None:
    cfg, span = setup
    png = tmp_path / "siwei-isp.png"
    res = run(cfg, "--link", "siwei-isp", "--month", span.month, "--png", str(png))
    assert res.returncode == 0, res.stderr
    assert "95th pct" in res.stdout and "overage" in res.stdout and "+08:00" in res.stdout
    assert "Mbit/s" in res.stdout and "billable" in res.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

    res = run(cfg, "--link", "sw-siwei-acc1:Gi1/0/1", "--month", span.month, "--csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["direction"] for r in rows] == ["in", "out"]
    link = LINKS[2]
    want = expected(month_samples(span, (link_key(link), link.peak_bps), direction="in"))
    assert float(rows[0]["p95_bps"]) == pytest.approx(want["p95_bps"], rel=1e-9)
    assert rows[0]["committed_bps"] == "" and rows[0]["overage_bps"] == ""  # no commitment configured


def test_bad_month_and_empty_month(setup) -> None:
    cfg, span = setup
    res = run(cfg, "--link", "siwei-isp", "--month", "2026-13")
    assert res.returncode == 2
    assert "--month expects a calendar month as YYYY-MM" in res.stderr and "Traceback" not in res.stderr
    res = run(cfg, "--link", "siwei-isp", "--month", "2001-01")
    assert res.returncode == 1
    assert "no samples of link siwei-isp (sw-siwei-acc1 Te1/1/1) in 2001-01 (Asia/Taipei)" in res.stderr
    assert "Traceback" not in res.stderr
    res = run(cfg, "--link", "nowhere", "--month", span.month)
    assert res.returncode == 2 and 'unknown link "nowhere"' in res.stderr

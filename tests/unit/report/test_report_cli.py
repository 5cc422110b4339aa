"""citydc report bandwidth: usage and config errors exit 2 with a clear message before any query;
an unreachable Prometheus exits 1 naming it (a closed loopback port, nothing started)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from citydc.cli.main import cli

CONFIG = """\
sites:
  - {id: siwei, name: 四維 Siwei}
devices:
  - {name: sw1, address: 10.0.0.1, site: siwei, role: core}
netflow:
  agencies: [{name: police, prefixes: [10.10.2.0/24]}]
report:
  prometheus_url: URL
  links: [{name: internet, device: sw1, interface: Te1/1/1, committed_rate: 100 Mbit/s}]
"""


def run(tmp_path: Path, *args: str, url: str = "http://127.0.0.1:9") -> tuple[int, str]:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG.replace("prometheus_url: URL", f"prometheus_url: {url}" if url else "timeout_seconds: 5"))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "bandwidth", *args])
    return res.exit_code, res.output


def test_bad_month_exits_2(tmp_path: Path) -> None:
    code, output = run(tmp_path, "--link", "internet", "--month", "2026-13")
    assert code == 2 and "--month expects a calendar month as YYYY-MM, e.g. 2026-11" in output


def test_one_subject_and_known_names(tmp_path: Path) -> None:
    code, output = run(tmp_path, "--month", "2026-11")
    assert code == 2 and "exactly one of --link, --agency or --site" in output
    code, output = run(tmp_path, "--link", "internet", "--site", "siwei", "--month", "2026-11")
    assert code == 2 and "exactly one" in output
    code, output = run(tmp_path, "--link", "nowhere", "--month", "2026-11")
    assert code == 2 and 'unknown link "nowhere" (report.links: internet)' in output
    code, output = run(tmp_path, "--agency", "fire", "--month", "2026-11")
    assert code == 2 and 'unknown agency "fire"' in output
    code, output = run(tmp_path, "--site", "kaohsiung", "--month", "2026-11")
    assert code == 2 and 'unknown site "kaohsiung"' in output


def test_no_prometheus_url_exits_2(tmp_path: Path) -> None:
    code, output = run(tmp_path, "--link", "internet", "--month", "2026-11", url="")
    assert code == 2 and "set report.prometheus_url or alerting.prometheus_url" in output


def test_unreachable_prometheus_exits_1(tmp_path: Path) -> None:
    code, output = run(tmp_path, "--link", "internet", "--month", "2026-11")
    assert code == 1 and "http://127.0.0.1:9: no answer" in output and "Traceback" not in output

"""citydc report bandwidth against a real HTTP server on 127.0.0.1 answering as Prometheus: a sample that is not
a rate (NaN, an infinity, a negative value) is never billed, the JSON output is always valid JSON, a direction
without samples fails the report, and a month past datetime's range is a usage error, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.cli.main import cli
from citydc.report.bandwidth import parse_month

MONTH = parse_month("2026-11", "Asia/Taipei")
GRID = [MONTH.start + 300 * (k + 1) for k in range(8640)]
LABELS = {"device": "sw1", "ifName": "Te1/1/1"}

CONFIG = """\
sites:
  - {id: siwei, name: Siwei}
devices:
  - {name: sw1, address: 10.0.0.1, site: siwei, role: core}
report:
  prometheus_url: URL
  links: [{name: internet, device: sw1, interface: Te1/1/1, committed_rate: 100 Mbit/s}]
"""


class FakePrometheus:
    """A Prometheus HTTP API on 127.0.0.1 whose query_range answer a test sets (``values``: direction -> texts)."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}
        self.url = ""

    def answer(self, request: object) -> object:
        result = [{"metric": {**LABELS, "direction": d}, "values": [[t, v] for t, v in zip(GRID, vals, strict=True)]}
                  for d, vals in self.values.items()]
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}


@pytest.fixture(scope="module")
def prom(json_server) -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    with json_server(fake.answer) as fake.url:
        yield fake


def run(tmp_path: Path, url: str, *args: str) -> tuple[int, str, str]:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG.replace("URL", url))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "bandwidth", "--link", "internet", "--month", "2026-11",
                                   *args])
    return res.exit_code, res.stdout, res.stderr


def ok_values(n: int = len(GRID)) -> list[str]:
    return [str(1e6 * (k % 100)) for k in range(n)]


def test_good_samples_give_valid_json(prom: FakePrometheus, tmp_path: Path) -> None:
    prom.values = {"in": ok_values(), "out": ok_values()}
    code, out, err = run(tmp_path, prom.url, "--json")
    assert code == 0, err
    assert json.loads(out)["billable_p95_bps"] == 94e6


@pytest.mark.parametrize("bad", ["+Inf", "-Inf", "NaN", "-5", "1e400"])
def test_a_sample_that_is_not_a_rate_fails_naming_the_series_and_time(prom: FakePrometheus, tmp_path: Path,
                                                                      bad: str) -> None:
    values = ok_values()
    values[11] = bad  # 2026-11-01 01:00 +08:00
    prom.values = {"in": ok_values(), "out": values}
    for fmt in ((), ("--json",), ("--csv",)):
        code, out, err = run(tmp_path, prom.url, *fmt)
        assert code == 1, (fmt, out, err)
        assert "Infinity" not in out and "NaN" not in out and "inf" not in out
        assert 'direction="out"' in err and 'ifName="Te1/1/1"' in err and "2026-10-31T17:00:00Z" in err
        assert "not a rate in bit/s" in err and "Traceback" not in err


def test_a_direction_without_samples_fails_naming_it(prom: FakePrometheus, tmp_path: Path) -> None:
    prom.values = {"in": ok_values()}
    code, out, err = run(tmp_path, prom.url, "--json")
    assert code == 1 and out == ""
    assert "no samples of link internet (sw1 Te1/1/1) direction out in 2026-11" in err
    assert "8640 of direction in" in err


def test_huge_finite_rates_never_average_to_infinity(prom: FakePrometheus, tmp_path: Path) -> None:
    prom.values = {"in": ["1.7e308"] * len(GRID), "out": ok_values()}
    code, out, err = run(tmp_path, prom.url, "--json")
    assert code == 0, err
    row = json.loads(out)["directions"][0]
    assert row["average_bps"] == pytest.approx(1.7e308)


@pytest.mark.parametrize("month", ["9999-12", "3000-01", "1969-12"])
def test_a_month_out_of_range_is_a_usage_error(tmp_path: Path, month: str) -> None:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG.replace("URL", "http://127.0.0.1:9"))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "bandwidth", "--link", "internet", "--month", month])
    assert res.exit_code == 2, res.output
    assert "--month expects a calendar month as YYYY-MM, e.g. 2026-11, from 1970-01 to 2999-12" in res.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_any_month_text_is_a_month_or_a_value_error(text: str) -> None:
    try:
        month = parse_month(text, "Asia/Taipei")
    except ValueError as exc:
        assert "--month" in str(exc)
    else:
        assert month.start < month.end  # the month's end is computable: no OverflowError, no ValueError


def test_link_device_must_be_a_device_of_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG.replace("URL", "http://127.0.0.1:9"))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "bandwidth", "--link", "nodev:Te1", "--month", "2026-11"])
    assert res.exit_code == 2
    assert 'unknown device "nodev" in --link nodev:Te1 (devices: sw1)' in res.stderr


def test_utc_help_mentions_no_option_the_command_lacks() -> None:
    for args in (["report", "bandwidth"], ["backup", "status"], ["audit", "auth"]):
        res = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
        assert res.exit_code == 0 and "--utc" in res.output
        assert "--since" not in res.output, args  # none of these has --since/--until: its help must not say so
    # log saved has them (narrowing a question): its help says so, and that they take the display zone
    res = CliRunner().invoke(cli, ["log", "saved", "--help"], terminal_width=200)
    assert res.exit_code == 0 and "--utc" in res.output and "--since" in res.output

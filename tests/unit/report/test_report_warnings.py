"""citydc report bandwidth, against a real HTTP server on 127.0.0.1 answering as Prometheus: what may make the
figures incomplete (missing 5-minute samples, Prometheus's own warnings of a partial answer) is said on stderr
in every output format, and is in the JSON, so a script billing from --csv or --json hears of it too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli.main import cli
from citydc.report.bandwidth import parse_month

MONTH = parse_month("2026-02", "Asia/Taipei")
GRID = [MONTH.start + 300 * (k + 1) for k in range(8064)]
PRESENT = 5000  # samples of the month the server holds
PARTIAL = "partial response: store 10.0.0.9:10901 unreachable"

CONFIG = """\
sites:
  - {id: siwei, name: Siwei}
devices:
  - {name: sw1, address: 10.0.0.1, site: siwei, role: core}
report:
  prometheus_url: URL
  links: [{name: internet, device: sw1, interface: Te1/1/1}]
"""


def answer() -> bytes:
    result = [{"metric": {"device": "sw1", "ifName": "Te1/1/1", "direction": d},
               "values": [[t, str(1e6 * (k % 50))] for k, t in enumerate(GRID[:PRESENT])]} for d in ("in", "out")]
    return json.dumps({"status": "success", "warnings": [PARTIAL],
                       "data": {"resultType": "matrix", "result": result}}).encode()


@pytest.fixture(scope="module")
def url(json_server) -> Iterator[str]:
    body = answer()
    with json_server(lambda request: body) as u:
        yield u


def run(tmp_path: Path, url: str, *args: str) -> tuple[int, str, str]:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG.replace("URL", url))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "bandwidth", "--link", "internet", "--month",
                                   MONTH.label, *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("fmt", [[], ["--csv"], ["--json"]], ids=["table", "csv", "json"])
def test_missing_samples_and_prometheus_warnings_are_said_in_every_format(tmp_path: Path, url: str,
                                                                           fmt: list[str]) -> None:
    code, _, err = run(tmp_path, url, *fmt)
    assert code == 0, err
    missing = f"{len(GRID) - PRESENT} of {len(GRID)} 5-minute samples missing"
    assert f"in: {missing}" in err and f"out: {missing}" in err
    assert f"Prometheus {url} warned: {PARTIAL}" in err


def test_the_json_holds_the_warnings(tmp_path: Path, url: str) -> None:
    code, out, err = run(tmp_path, url, "--json")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 3 and any(PARTIAL in w for w in warnings)

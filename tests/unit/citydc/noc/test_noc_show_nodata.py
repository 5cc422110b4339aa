"""``citydc noc show`` against a Prometheus and an Alertmanager on 127.0.0.1 that answer, with no citydc series at
all (a check pointed at the wrong Prometheus): every tier is NO DATA, which is not OK, so the exit code is 1 and
each tier is named. A credential in --prometheus-url is refused naming that option, not the config field."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from click.testing import CliRunner

from citydc.cli.main import cli


def empty(request) -> object:
    if "/api/v2/alerts" in request.path:
        return []
    kind = "matrix" if "query_range" in request.path else "vector"
    return {"status": "success", "data": {"resultType": kind, "result": []}}


@pytest.fixture()
def empty_url(json_server) -> Iterator[str]:
    with json_server(empty) as u:
        yield u


def write(tmp_path) -> str:
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
                                    "noc": {"query_timeout_seconds": 5}}))
    return str(path)


def test_every_tier_no_data_exits_1_naming_them(tmp_path, empty_url):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path), "noc", "show", "--prometheus-url", empty_url,
                                   "--alertmanager-url", empty_url], terminal_width=200)
    assert res.exit_code == 1, res.output
    assert "NODATA" in res.stdout and "OK" not in res.stdout.replace("NODATA", "")
    assert "not OK: Siwei Network: NODATA (no metrics for this tier yet)" in res.stderr
    assert "not OK: Fengshan Security log: NODATA" in res.stderr


def test_json_with_no_data_exits_1_too(tmp_path, empty_url):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path), "noc", "show", "--json", "--prometheus-url", empty_url,
                                   "--alertmanager-url", empty_url])
    assert res.exit_code == 1
    view = json.loads(res.stdout)
    assert {cell["status"] for row in view["matrix"].values() for cell in row.values()} == {"nodata"}


@pytest.mark.parametrize("option", ["--prometheus-url", "--alertmanager-url"])
def test_credentials_in_a_url_option_name_the_option(tmp_path, option):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path), "noc", "show", "--prometheus-url", "http://127.0.0.1:1",
                                   option, "http://admin:s3cret@127.0.0.1:1"])
    assert res.exit_code == 2
    assert f"{option}: credentials in the URL are not allowed" in res.output
    assert "alerting." not in res.output and "s3cret" not in res.output

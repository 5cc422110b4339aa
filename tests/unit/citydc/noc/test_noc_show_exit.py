"""``citydc noc show`` can pass: with every tier citydc reads metrics for fresh at both sites and no alert,
it exits 0, though load balancers and virtualization (no metric read for them) are NO DATA on the page.
An alert of theirs still fails it, and a failing tier names its alerts. Against real HTTP servers on
127.0.0.1 answering like Prometheus and Alertmanager."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import pytest
import yaml
from click.testing import CliRunner

from citydc.cli.main import cli

ALERTS: list[dict] = []


def answer(request) -> object:
    url = urllib.parse.urlsplit(request.path)
    query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
    if url.path == "/api/v2/alerts":
        return ALERTS
    if url.path == "/api/v1/query_range":
        return {"status": "success", "data": {"resultType": "matrix", "result": []}}
    at = float(urllib.parse.parse_qs(url.query)["time"][0])
    result = [{"metric": {"site": s}, "value": [at, str(at - 10)]} for s in ("siwei", "fengshan")] \
        if "timestamp(" in query else []
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture()
def url(json_server) -> Iterator[str]:
    ALERTS.clear()
    with json_server(answer) as u:
        yield u


def show(tmp_path, url: str):
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump({"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
                                    "noc": {"query_timeout_seconds": 5}}))
    return CliRunner().invoke(cli, ["-c", str(path), "noc", "show", "--prometheus-url", url,
                                    "--alertmanager-url", url], terminal_width=200)


def test_all_fresh_and_quiet_exits_0(tmp_path, url):
    res = show(tmp_path, url)
    assert res.exit_code == 0, res.output
    assert "not OK" not in res.stderr
    assert "no metric read for: Load balancers, Virtualization" in res.stderr
    assert "NODATA" in res.stdout  # the page still says so


def test_an_alert_of_a_tier_without_metrics_fails_and_is_named(tmp_path, url):
    ALERTS.append({"fingerprint": "0a", "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "labels": {"alertname": "LbBackendDown", "severity": "warning", "site": "fengshan"},
                   "annotations": {"summary": "backend down"}, "status": {"state": "active"}})
    res = show(tmp_path, url)
    assert res.exit_code == 1, res.output
    assert "not OK: Fengshan Load balancers: WARNING (LbBackendDown)" in res.stderr
    assert "Siwei Load balancers" not in res.stderr

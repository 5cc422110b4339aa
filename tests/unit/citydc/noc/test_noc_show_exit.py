"""``citydc noc show`` can pass: with every tier citydc reads metrics for fresh at both sites and no alert,
it exits 0, though load balancers and virtualization (no metric read for them) are NO DATA on the page.
An alert of theirs still fails it, and a failing tier names its alerts. Against real HTTP servers on
127.0.0.1 answering like Prometheus and Alertmanager."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from click.testing import CliRunner

from citydc.cli.main import cli

ALERTS: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
        if url.path == "/api/v2/alerts":
            doc: object = ALERTS
        elif url.path == "/api/v1/query_range":
            doc = {"status": "success", "data": {"resultType": "matrix", "result": []}}
        else:
            at = float(urllib.parse.parse_qs(url.query)["time"][0])
            result = [{"metric": {"site": s}, "value": [at, str(at - 10)]} for s in ("siwei", "fengshan")] \
                if "timestamp(" in query else []
            doc = {"status": "success", "data": {"resultType": "vector", "result": result}}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def url() -> Iterator[str]:
    ALERTS.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


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

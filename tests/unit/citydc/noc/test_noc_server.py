"""The NOC page's HTTP server: local assets with a strict CSP, the data endpoint from the cache."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from citydc import web
from citydc.noc.api import Prometheus
from citydc.noc.poller import Poller, Settings
from citydc.noc.server import CSP, STATIC, make_server


class NoApi:
    def instant(self, expr, at):
        return []

    def range(self, expr, start, end, step):
        return []

    def alerts(self):
        return []


@pytest.fixture
def server():
    poller = Poller(NoApi(), NoApi(), Settings(sites=(("siwei", "四維 Siwei"),)))
    poller.poll_once()
    srv = make_server(poller, "127.0.0.1", 0)
    web.secure(srv, web.Web(None))
    web.serve_in_thread(srv)
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test server
        return resp.status, resp.headers, resp.read()


def test_page_and_assets_are_local_with_a_strict_csp(server):
    for path in STATIC:
        status, headers, body = get(server + path)
        assert status == 200
        assert headers["Content-Security-Policy"] == CSP
        text = body.decode()
        # Nothing fetched from elsewhere: every URL in the assets is the SVG namespace.
        assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}, path
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    _, _, page = get(server + "/")
    assert "<script>" not in page.decode()  # no inline script: the CSP would block it


def test_data_endpoint_serves_the_view(server):
    status, headers, body = get(server + "/api/noc")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert data["sites"] == [{"id": "siwei", "name": "四維 Siwei"}]
    assert data["matrix"]["siwei"]["network"]["status"] == "nodata"


def test_unknown_path_is_404(server):
    with pytest.raises(urllib.error.HTTPError) as exc:
        get(server + "/etc/passwd")
    assert exc.value.code == 404


def test_prometheus_client_refuses_a_wrong_shape():
    prom = Prometheus("http://127.0.0.1:1")
    prom.get_json = lambda path, params=None: {"status": "success", "data": {"resultType": "matrix", "result": []}}
    from citydc.noc.api import ApiError

    with pytest.raises(ApiError, match="expected a vector"):
        prom.instant("up", 0)
    prom.get_json = lambda path, params=None: {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"a": 1}, "value": [0, "1"]}]}}
    with pytest.raises(ApiError, match="label"):
        prom.instant("up", 0)


def test_unreachable_prometheus_is_an_api_error_naming_it():
    from citydc.noc.api import ApiError

    with pytest.raises(ApiError, match=r"127\.0\.0\.1:1 unreachable"):
        Prometheus("http://127.0.0.1:1", timeout=2).instant("up", 0)

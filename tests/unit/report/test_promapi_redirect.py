"""The report's Prometheus client never follows a redirect: urllib would send the basic auth header on to the host
the answer names (the NOC's clients refuse them the same way: citydc.httpaccess.NoRedirect)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from citydc.report.promapi import PrometheusClient, PrometheusQueryError


def test_a_redirect_is_not_followed_and_the_credentials_stay_home():
    seen: list[str | None] = []

    class Catcher(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # urllib follows a 302 of a POST with a GET
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    catcher = ThreadingHTTPServer(("127.0.0.2", 0), Catcher)

    class Redirector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{catcher.server_address[1]}/api/v1/query")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (catcher, redirector)]
    for t in threads:
        t.start()
    try:
        client = PrometheusClient(f"http://127.0.0.1:{redirector.server_address[1]}", timeout=5,
                                  headers={"Authorization": "Basic bm9jOnMzY3JldA=="})
        with pytest.raises(PrometheusQueryError, match="302"):
            client.query("up", 0.0)
    finally:
        for s in (catcher, redirector):
            s.shutdown()
            s.server_close()
    assert seen == []

"""The NOC page's API clients never follow a redirect: urllib would carry the basic auth header of
alerting.*_http to the host the redirect names (any host, any scheme) and read that host's answer as
Prometheus' or Alertmanager's. Shown with two real HTTP servers on 127.0.0.1: one redirects, the other
records what reaches it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from citydc.noc.api import Alertmanager, ApiError, ApiUnreachable, Prometheus


class Catcher(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture()
def redirecting() -> Iterator[tuple[str, list]]:
    Catcher.seen = []
    catcher, t1 = _serve(Catcher)
    target = f"http://127.0.0.1:{catcher.server_address[1]}/login?next=x"

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server, t2 = _serve(Redirect)
    yield f"http://127.0.0.1:{server.server_address[1]}", Catcher.seen
    for srv, thread in ((server, t2), (catcher, t1)):
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_a_redirect_is_refused_and_the_credentials_stay_home(redirecting):
    url, seen = redirecting
    auth = {"Authorization": "Basic bm9jOnMzY3JldA=="}
    with pytest.raises(ApiError, match=r"HTTP 302 redirect to http://127\.0\.0\.1:\d+/login\?next=x, not followed"):
        Alertmanager(url, timeout=5, headers=auth).alerts()
    with pytest.raises(ApiError, match="not followed"):
        Prometheus(url, timeout=5, headers=auth).instant("citydc_snmp_up", 1.0)
    assert seen == []  # neither the request nor the password reached the host the redirect named


def test_no_answer_at_all_is_unreachable():
    with pytest.raises(ApiUnreachable, match=r"127\.0\.0\.1:1 unreachable"):
        Prometheus("http://127.0.0.1:1", timeout=2).instant("up", 1.0)

"""Shared fixtures. Lab services are started once per session and left running for other tests;
`.ci/run` (and `citydc lab down`) stops them. A service that cannot start makes its tests fail."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from citydc.lab import ports, registry
from citydc.lab.base import LabContext


@pytest.fixture(scope="session")
def lab_ctx() -> LabContext:
    return LabContext()


@pytest.fixture(scope="module", autouse=True)
def _environ_restored() -> Iterator[None]:
    """Undo whatever a test module's tests and fixtures (module-scoped ones included) put into os.environ.

    Module scope, so a module-scoped fixture's variables last for its module's tests, then go; autouse
    fixtures are set up first and torn down last, so this restores after every fixture of the module.
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def lab_env() -> dict[str, str]:
    """The lab's credentials in the environment, as the demo sets them (example config uses env: refs).

    For the requesting module only: ``_environ_restored`` removes them afterwards.
    """
    for name, value in ports.LAB_ENV.items():
        os.environ.setdefault(name, value)
    return dict(ports.LAB_ENV)


@pytest.fixture(scope="session")
def lab_up(lab_ctx: LabContext) -> Callable[..., list[registry.ServiceStatus]]:
    """Return a function that starts lab services by name (idempotent) and returns their status.

    Errors propagate: a missing service fails the test instead of skipping it.
    """

    def start(*names: str) -> list[registry.ServiceStatus]:
        return registry.up(lab_ctx, list(names))

    return start


@pytest.fixture(scope="session")
def keycloak(lab_ctx: LabContext) -> dict[str, str]:
    """The lab Keycloak (and the slapd it federates to), started once per session, only for tests that ask.

    Its first start on a fresh machine downloads the distribution (docs/sso-audit.md has the times).
    """
    (status,) = registry.up(lab_ctx, ["keycloak"])
    assert status.running, status
    return status.endpoints


@contextmanager
def _json_server(answer: Callable[[BaseHTTPRequestHandler], Any]) -> Iterator[str]:
    """Given ``answer(request)`` (the request handler, its body read into ``request.body``) returning a JSON
    document, bytes, or (status, either), serve it on 127.0.0.1 (GET and POST) and yield the server's URL."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got = answer(self)
            status, doc = got if isinstance(got, tuple) else (200, got)
            data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def json_server() -> Callable[[Callable[[BaseHTTPRequestHandler], Any]], Any]:
    """A real HTTP server on 127.0.0.1 answering JSON (a stand-in for Prometheus' or Alertmanager's API in unit
    tests): ``with json_server(answer) as url:``, see _json_server."""
    return _json_server

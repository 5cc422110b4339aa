"""The NOC page's HTTP server: the page and its assets (all local), and ``/api/noc`` from the cache.

Every answer carries a strict Content-Security-Policy (only this server's own scripts, styles and
data; no inline script, no frames), so the page works on an isolated wall-screen network and a
hostile label value cannot run script in it (the page's script writes text, never HTML).
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from citydc.noc.poller import Poller

__all__ = ["CSP", "STATIC", "make_server"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/noc.css": ("noc.css", "text/css; charset=utf-8"),
          "/noc.js": ("noc.js", "text/javascript; charset=utf-8")}


def _asset(name: str) -> bytes:
    return resources.files("citydc.noc").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    poller: Poller
    assets: dict[str, tuple[bytes, str]]
    protocol_version = "HTTP/1.1"
    server_version = "citydc-noc"
    sys_version = ""

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/noc":
            self._send(200, self.poller.render(), "application/json; charset=utf-8")
        elif path in self.assets:
            body, ctype = self.assets[path]
            self._send(200, body, ctype, cache="no-cache")
        elif path == "/-/healthy":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: the page is at /, its data at /api/noc\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every screen asks every few seconds: no line per request


def make_server(poller: Poller, host: str, port: int) -> ThreadingHTTPServer:
    """Given the poller and an address, return a bound (not yet serving) server; pass it to web.secure().

    Raise OSError if the address cannot be bound."""
    assets = {path: (_asset(name), ctype) for path, (name, ctype) in STATIC.items()}
    handler = type("NocHandler", (_Handler,), {"poller": poller, "assets": assets})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("NocServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    return server_class((host, port), handler)

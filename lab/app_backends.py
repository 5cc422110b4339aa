"""The application servers behind each site's HAProxy: small, sturdy HTTP backends on loopback.

One process serves every backend (``APP_SERVERS``), each on its own port, with a threaded server
whose listen backlog is 1024 and whose responses are written in one buffered piece (PLATFORM.md:
``python -m http.server`` has a backlog of 5 and unbuffered writes, and fails health checks under load).

- ``GET /health`` answers 200, or 503 while the file ``<service dir>/<server>.down`` exists: that is how
  a test (or the rolling playbook's maintenance step in the lab) makes a server "not come back".
- ``GET /`` (any other path) answers 200 with the server's name, so a client sees who served it.

Run as ``python -m citydc.lab.app_backends DIR NAME=PORT ...``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from citydc.lab import ports, processes
from citydc.lab.base import LabContext, Service

__all__ = ["APP_SERVERS", "AppBackends", "Load", "down_marker", "serve"]

# name -> (site, port); the names are the inventory hostnames of playbooks/inventories/lab.
APP_SERVERS: dict[str, tuple[str, int]] = {
    "app-siwei-1": ("siwei", ports.APP_BACKENDS),
    "app-siwei-2": ("siwei", ports.APP_BACKENDS + 1),
    "app-fengshan-1": ("fengshan", ports.APP_BACKENDS + 2),
    "app-fengshan-2": ("fengshan", ports.APP_BACKENDS + 3),
}


def down_marker(directory: Path, name: str) -> Path:
    """Given the service directory and a server name, return the file whose presence fails its health check."""
    return directory / f"{name}.down"


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_address = True


def _handler(name: str, directory: Path) -> type[BaseHTTPRequestHandler]:
    marker = down_marker(directory, name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # buffered: one write per response (no Nagle/delayed-ACK stall)
        server_version = "citydc-lab-app"

        def do_GET(self) -> None:
            status = 200
            if self.path.startswith("/health") and marker.exists():
                status = 503
            body = f"{name} {'down' if status != 200 else 'ok'}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serve(directory: Path, servers: dict[str, int]) -> None:
    """Given the service directory and {name: port}, serve every backend until killed."""
    threads = []
    for name, port in servers.items():
        httpd = _Server((ports.HOST, port), _handler(name, directory))
        t = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


class Load:
    """A bounded HTTP load on one frontend: ``threads`` keep-alive clients, at most ``max_requests`` in all.

    Counts answers 200 (``ok``), other statuses (``failed``) and socket errors (``errors``), and which
    backend served each request (the body names it). Start it, do the work, ``stop()`` it.
    """

    def __init__(self, host: str, port: int, threads: int = 6, max_requests: int = 200_000) -> None:
        self.host, self.port, self.threads, self.max_requests = host, port, threads, max_requests
        self.ok = self.failed = self.errors = 0
        self.served: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.errors

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)
        return self

    def _run(self) -> None:
        import http.client

        conn = None
        while not self._stop.is_set() and self.total < self.max_requests:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                with self._lock:
                    if resp.status == 200:
                        self.ok += 1
                        name = body.split(" ", 1)[0]
                        self.served[name] = self.served.get(name, 0) + 1
                    else:
                        self.failed += 1
                        self.failures.append(f"HTTP {resp.status}: {body.strip()[:80]}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors += 1
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


class AppBackends(Service):
    name = "app-backends"
    description = "HTTP application servers behind the sites' HAProxy (two per site)"
    ready_timeout = 15.0

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        for marker in d.glob("*.down"):  # a fresh start: every server healthy
            marker.unlink()
        argv = [sys.executable, "-m", "citydc.lab.app_backends", str(d),
                *(f"{n}={port}" for n, (_, port) in APP_SERVERS.items())]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        for _, port in APP_SERVERS.values():
            with urllib.request.urlopen(f"http://{ports.HOST}:{port}/", timeout=2) as resp:
                if resp.status != 200:
                    return False
        return True

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {n: f"http://{ports.HOST}:{port}/ ({site})" for n, (site, port) in APP_SERVERS.items()}


if __name__ == "__main__":  # pragma: no cover - the lab's server process
    serve(Path(sys.argv[1]), {k: int(v) for k, _, v in (a.partition("=") for a in sys.argv[2:])})

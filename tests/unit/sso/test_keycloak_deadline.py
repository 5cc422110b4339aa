"""A Keycloak that trickles its answer ends the request after about timeout_seconds (sso/keycloak.py).

httpx's read timeout bounds each wait only: a server sending one byte every 0.2 s kept a request, and so
``citydc audit sso`` and ``citydc audit auth``, alive for as long as it liked. A real HTTP server on
127.0.0.1 answers the token request normally and trickles the body of one admin API path; the client's
timeout is 1 s. The bounds below (10 s for one request, 60 s for a whole command) are hang checks, not
timing thresholds: without the deadline, the trickle of one answer alone lasts 40 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from citydc.sso.keycloak import Keycloak, KeycloakError

CITYDC = str(Path(sys.executable).with_name("citydc"))
SECRET = "s3cret-client-value"
TOKEN_PATH = "/realms/master/protocol/openid-connect/token"
TRICKLED = b"[" + b" " * 198 + b"]"  # 200 bytes at one per 0.2 s: 40 s for the whole answer
REALM = {"realm": "partners", "bruteForceProtected": True, "passwordPolicy": "length(12)", "eventsEnabled": True,
         "eventsExpiration": 86400, "adminEventsEnabled": True, "adminEventsDetailsEnabled": True,
         "accessTokenLifespan": 300, "ssoSessionIdleTimeout": 1800, "ssoSessionMaxLifespan": 36000}


@contextmanager
def trickling_keycloak(trickle_path: str) -> Iterator[int]:
    """A Keycloak on 127.0.0.1: the token and the realm at once, ``trickle_path`` one byte per 0.2 s, other
    paths an empty list. Yield its port; stopped (its trickles too) when the block ends."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == trickle_path:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(TRICKLED)))
                self.end_headers()
                try:
                    for byte in TRICKLED:  # bounded: 200 bytes, and over when the client has gone or at the stop
                        if stop.wait(0.2):
                            break
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
                return
            body = ({"access_token": "t", "expires_in": 300} if path == TOKEN_PATH
                    else REALM if path == "/admin/realms/partners" else [])
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def failure_of(call) -> BaseException | None:
    """Run ``call`` in a thread for at most 10 s (a hang check); return what it raised (None: nothing)."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the request was still running 10 s after a 1 s timeout"
    return raised[0]


@pytest.mark.parametrize(("trickle_path", "call", "named"), [
    ("/admin/realms/partners/users", lambda kc: list(kc.users("partners")), "GET /admin/realms/partners/users"),
    (TOKEN_PATH, lambda kc: kc.realm("partners"), f"POST {TOKEN_PATH}"),
])
def test_a_trickled_answer_ends_in_a_keycloak_error_naming_the_path(trickle_path, call, named):
    with trickling_keycloak(trickle_path) as port, \
            Keycloak(f"http://127.0.0.1:{port}", "citydc-audit", SECRET, timeout=1) as kc:
        exc = failure_of(lambda: call(kc))
    assert isinstance(exc, KeycloakError), repr(exc)
    message = str(exc)
    assert f"{named}: no complete answer within 1 s" in message, message
    assert SECRET not in message and "?" not in message and "\n" not in message


def write_config(d: Path, port: int) -> Path:
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "security_log": {"spool_dir": str(d / "spool"), "sink": {"kind": "sqlite", "path": str(d / "log.db")}},
        "sso": [{"kind": "keycloak", "name": "city-sso", "base_url": f"http://127.0.0.1:{port}",
                 "realms": ["partners"], "client_id": "citydc-audit", "client_secret": "env:KC", "site": "siwei",
                 "timeout_seconds": 1, "state_dir": str(d / "st")}],
    }))
    return path


def citydc(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # 60 s: a hang check (the trickle of one answer alone lasts 40 s, and a run reads several).
    return subprocess.run([CITYDC, "--config", str(cfg), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "KC": SECRET, "COLUMNS": "250"})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "no complete answer" in line]


@pytest.mark.parametrize(("command", "trickle_path"), [
    (("audit", "sso", "--no-events"), "/admin/realms/partners/clients"),
    (("audit", "auth"), "/admin/realms/partners/events"),
])
def test_audits_say_a_trickling_keycloak_in_one_line(tmp_path, command, trickle_path):
    with trickling_keycloak(trickle_path) as port:
        try:
            proc = citydc(write_config(tmp_path, port), *command)
        except subprocess.TimeoutExpired:
            pytest.fail(f"citydc {' '.join(command)} still ran 60 s after it started, with a 1 s timeout")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    (line,) = error_lines(proc.stderr)
    assert "city-sso" in line and f"GET {trickle_path}: no complete answer within 1 s" in line, proc.stderr
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr + proc.stdout

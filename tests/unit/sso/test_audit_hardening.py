"""`citydc audit` against hostile or broken input (findings-2 items 1, 3, 4, 6, 7, 8, 9, 10, 18): the real CLI in
a subprocess, real files, and small servers on 127.0.0.1 started and stopped by each test."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.cli.output import visible
from citydc.sso import runs

CITYDC = str(Path(sys.executable).with_name("citydc"))
SITES = [{"id": "siwei", "name": "Siwei"}]


def ldap_entry(name: str, port: int, **extra: object) -> dict[str, object]:
    return {"name": name, "url": f"ldap://127.0.0.1:{port}", "bind_dn": "cn=auditor,dc=x", "bind_password": "env:PW",
            "base_dn": "dc=x", "start_tls": False, "allow_plain_bind": True, "site": "siwei", **extra}


def keycloak_entry(port: int, **extra: object) -> dict[str, object]:
    return {"kind": "keycloak", "name": "city-sso", "base_url": f"http://127.0.0.1:{port}", "realms": ["partners"],
            "client_id": "citydc-audit", "client_secret": "env:KC", "site": "siwei", **extra}


def write_config(d: Path, **parts: object) -> Path:
    cfg = {"sites": SITES, "security_log": {"spool_dir": str(d / "spool"),
                                            "sink": {"kind": "sqlite", "path": str(d / "log.db")}}, **parts}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def citydc(cfg: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(cfg)] if cfg else []
    return subprocess.run([CITYDC, *pre, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PW": "pw", "KC": "secret", "COLUMNS": "250"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1: control characters from the log never reach the terminal --------------------------------------------------

EVIL = "uid=\x1b]0;PWNED\x07\x1b[2J\x1b[31mmallory\x1b[0m,ou=people,dc=x"


def stats_log(path: Path, dn: str, failures: int, start: int = 0x6b12fd85) -> None:
    lines = []
    for i in range(failures):
        t = f"{start + i:08x}.00000000 0x7f"
        lines += [f"{t} conn={100 + i} fd=12 ACCEPT from IP=10.10.2.9:5555 (IP=0.0.0.0:389)",
                  f'{t} conn={100 + i} op=0 BIND dn="{dn}" method=128',
                  f"{t} conn={100 + i} op=0 RESULT tag=97 err=49 text="]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_bind_dn_with_escape_sequences_is_shown_escaped_and_stored_as_is(tmp_path):
    log = tmp_path / "stats.log"
    stats_log(log, EVIL, 6)
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(log), state_dir=str(tmp_path / "st"))])
    proc = citydc(cfg, "audit", "auth", "--from-start", "--wide")
    assert proc.returncode == 1, proc.stderr  # the brute force
    assert "\x1b" not in proc.stdout + proc.stderr and "\x07" not in proc.stdout + proc.stderr
    assert "uid=\\x1b]0;PWNED\\x07\\x1b[2J" in proc.stdout
    spooled = "".join(p.read_text() for p in (tmp_path / "spool").rglob("*.jsonl"))
    assert json.dumps(EVIL)[1:-1] in spooled  # the event keeps the original value, JSON-encoded


@given(st.text())
@settings(max_examples=300)
def test_visible_leaves_no_control_character(text):
    shown = visible(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029\u202e" for c in shown)
    if text.isprintable():
        assert shown == text


# -- 3: a server that trickles bytes is cut at the source's deadline -------------------------------------------------

@contextmanager
def tcp_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    """A BER header claiming a 2 GB message, then ten bytes every 0.2 s: each read waits far less than the timeout."""
    try:
        conn.recv(4096)
        conn.sendall(b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01")
        for _ in range(1000):  # bounded: 200 s at most, the test stops it long before
            if stop.wait(0.2):
                break
            conn.sendall(b"\x00" * 10)
    except OSError:
        pass
    finally:
        conn.close()


def test_trickling_ldap_server_ends_at_the_deadline_naming_source_and_deadline(tmp_path):
    with tcp_server(trickle) as port:
        # timeout_seconds 0.05: the deadline is 60 × 0.05 = 3 s
        cfg = write_config(tmp_path, ldap=[ldap_entry("slow-dir", port, timeout_seconds=0.05,
                                                      state_dir=str(tmp_path / "st"))])
        proc = citydc(cfg, "audit", "ldap", "--reader", "ldap3", "--no-events")
    assert proc.returncode == 1
    assert "ldap source slow-dir: no complete answer within 3 s" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# -- 4: damaged or foreign run files --------------------------------------------------------------------------------

GOOD = {"source": "a", "score": 90, "findings": [{"rule": "LDAP-PWD-001", "subject": "uid=x", "severity": "high",
                                                   "message": "m"}]}


def test_damaged_run_files_are_one_line_naming_file_and_field(tmp_path):
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(GOOD))
    cases = {"score-str": ({**GOOD, "score": "abc"}, "score: expected a number"),
             "score-null": ({**GOOD, "score": None}, "score: expected a number"),
             "find-int": ({**GOOD, "findings": [1, 2]}, "findings[0]: expected an object"),
             "no-rule": ({**GOOD, "findings": [{"subject": "s", "severity": "high", "message": "m"}]},
                         "findings[0].rule missing"),
             "find-dict": ({**GOOD, "findings": {"x": 1}}, "findings: expected a list"),
             "subj-list": ({**GOOD, "findings": [{**GOOD["findings"][0], "subject": ["x"]}]},
                           "findings[0].subject: expected a string"),
             "no-message": ({**GOOD, "findings": [{"rule": "R", "subject": "s", "severity": "high"}]},
                            "findings[0].message missing")}
    for name, (data, expected) in cases.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(json.dumps(data))
        proc = citydc(None, "audit", "diff", str(ok), str(bad))
        assert proc.returncode == 2, (name, proc.stderr)
        assert f"{bad}: not an audit run: {expected}" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_runs_of_two_sources_are_refused(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(GOOD))
    b.write_text(json.dumps({**GOOD, "source": "b", "kind": "sso"}))
    proc = citydc(None, "audit", "diff", str(a), str(b))
    assert proc.returncode == 2 and "different sources (ldap source a, sso source b)" in proc.stderr, proc.stderr


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12),
       st.sampled_from(["score", "findings", "source", "extra"]))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_run_json_loads_and_diffs_or_is_refused_with_value_error(tmp_path, junk, key):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**GOOD, key: junk}))
    try:
        run = runs.load_run(path)
    except ValueError as exc:
        assert str(exc).startswith(f"{path}: not an audit run")
        return
    d = runs.diff(GOOD, run)
    assert isinstance(d.score_change, int)


# -- 6, 8, 18: Keycloak answers -----------------------------------------------------------------------------------

REALM = {"realm": "partners", "bruteForceProtected": False, "passwordPolicy": "length(6)", "eventsEnabled": True,
         "eventsExpiration": 86400, "adminEventsEnabled": True, "adminEventsDetailsEnabled": True,
         "accessTokenLifespan": 3600, "ssoSessionIdleTimeout": 1800, "ssoSessionMaxLifespan": 36000}
ANSWERS = {"/admin/realms/partners": REALM, "/admin/realms/partners/clients": [],
           "/admin/realms/partners/components": [], "/admin/realms/partners/roles": [],
           "/admin/realms/partners/users": [{"username": "boss", "enabled": True}]}


@contextmanager
def keycloak(answers: dict[str, object], huge: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """A fake Keycloak: the token, then ``answers`` by path; ``huge`` is a path answering an endless chunked body."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            seen.append(path)
            if path == huge:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"[" + b" " * (1 << 20)
                try:
                    for _ in range(200):  # bounded: 200 MB, the client stops at 64 MB
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    pass
                self.close_connection = True
                return
            body = ({"access_token": "t", "expires_in": 300} if path.endswith("/token")
                    else [] if "first=" in self.path and "first=0" not in self.path else answers.get(path))
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], seen
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def test_endless_keycloak_answer_is_cut_with_the_path_and_no_query(tmp_path):
    with keycloak(ANSWERS, huge="/admin/realms/partners/users") as (port, _):
        cfg = write_config(tmp_path, sso=[keycloak_entry(port, state_dir=str(tmp_path / "st"))])
        proc = citydc(cfg, "audit", "sso", "--no-events")
    assert proc.returncode == 1
    assert "GET /admin/realms/partners/users: answer larger than 67108864 bytes" in proc.stderr, proc.stderr
    assert "briefRepresentation" not in proc.stderr and "first=" not in proc.stderr


def test_directory_down_still_audits_keycloak_and_says_the_leaver_check_did_not_run(tmp_path):
    with keycloak(ANSWERS) as (port, seen):
        cfg = write_config(tmp_path, ldap=[ldap_entry("city-directory", free_port())],
                           sso=[keycloak_entry(port, ldap_source="city-directory", state_dir=str(tmp_path / "st"))])
        proc = citydc(cfg, "audit", "sso", "--no-events", "--json")
    assert "/admin/realms/partners" in seen
    assert proc.returncode == 1  # a check could not run
    (run,) = json.loads(proc.stdout)["runs"]
    assert ("SSO-BF-001", "partners") in {(f["rule"], f["subject"]) for f in run["findings"]}
    assert "sso source city-sso: SSO-JML-001 not checked: directory city-directory unreachable" in proc.stderr
    assert any(n.startswith("SSO-JML-001 not checked") for n in run["notes"])


def test_keycloak_down_in_audit_auth_is_named_once_without_a_count(tmp_path):
    kc = keycloak_entry(free_port(), realms=["city", "partners"], state_dir=str(tmp_path / "st"))
    proc = citydc(write_config(tmp_path, sso=[kc]), "audit", "auth")
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if "cannot get a token" in ln]
    assert len(errors) == 1 and errors[0].startswith("error: sso source city-sso: "), proc.stderr
    assert "0 SSO logins" not in proc.stdout and "city-sso: SSO events not read completely" in proc.stdout


# -- 7: a line without end is skipped and counted, not held -----------------------------------------------------------

def test_overlong_log_line_is_skipped_and_named(tmp_path):
    log = tmp_path / "stats.log"
    stats_log(log, "uid=a,dc=x", 2)
    good = log.read_bytes()
    log.write_bytes(b"\0" * (3 << 20) + b"\n" + good)  # 3 MB of NULs, then two binds
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(log), state_dir=str(tmp_path / "st"))])
    proc = citydc(cfg, "audit", "auth", "--from-start", "--json")
    (rep,) = json.loads(proc.stdout)["sources"]
    assert rep["binds"] == 2 and rep["long_lines"] == [0]
    assert f"{log}: 1 line(s) longer than 65536 bytes skipped, the first at byte offset 0" in proc.stderr


# -- 9, 10: kind: log sources, --log with several directories -------------------------------------------------------

def test_log_kind_sso_source_is_read_with_its_directory(tmp_path):
    # (It was only warned about as unread; now its file is read: tests/unit/sso/test_kc_log.py.)
    log = tmp_path / "stats.log"
    stats_log(log, "uid=a,dc=x", 1)
    kc_log = tmp_path / "kc.json"
    kc_log.write_bytes((Path(__file__).parent / "data" / "keycloak-26.5.6-events.json.log").read_bytes())
    sso_log = {"kind": "log", "name": "kc-log", "log_path": str(kc_log), "site": "siwei", "ldap_source": "dir1"}
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(log), state_dir=str(tmp_path / "st"))],
                       sso=[sso_log])
    proc = citydc(cfg, "audit", "auth", "--source", "kc-log", "--json")
    assert proc.returncode in (0, 1) and "not read" not in proc.stderr, proc.stderr
    (rep,) = json.loads(proc.stdout)["sources"]
    assert rep["source"] == "dir1" and rep["binds"] == 1 and rep["sso"]["kc-log"]["logins"] > 0
    bad = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(log))],
                       sso=[{**sso_log, "ldap_source": "x"}])
    proc = citydc(bad, "audit", "auth")
    assert proc.returncode == 2 and "sso[0].ldap_source" in proc.stderr and 'unknown ldap source "x"' in proc.stderr


def test_log_option_with_several_directories_needs_source(tmp_path):
    log = tmp_path / "one.log"
    stats_log(log, "uid=a,dc=x", 1)
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, state_dir=str(tmp_path / "st")),
                                       ldap_entry("dir2", 1, state_dir=str(tmp_path / "st"))])
    proc = citydc(cfg, "audit", "auth", "--log", str(log))
    assert proc.returncode == 2 and "several ldap sources (dir1, dir2)" in proc.stderr and "--source" in proc.stderr
    proc = citydc(cfg, "audit", "auth", "--log", str(log), "--source", "dir2", "--json")
    assert [r["source"] for r in json.loads(proc.stdout)["sources"]] == ["dir2"]

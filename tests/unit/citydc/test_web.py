"""citydc.web: the exporter-toolkit web config file (TLS, client certificates, basic auth) and the
wrapping of an http.server endpoint, on an in-process server bound to 127.0.0.1:0."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc import web

PASSWORD = "s3cret-scrape"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def _cert(name: str, issuer: tuple | None, *, ca: bool = False, client: bool = False) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        sans = [x509.DNSName(name)] + ([] if client else [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(d: Path, name: str, pair: tuple) -> None:
    cert, key = pair
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = _cert("test ca", None, ca=True), _cert("rogue ca", None, ca=True)
    for name, pair in (("ca", ca), ("rogue-ca", rogue_ca), ("server", _cert("localhost", ca)),
                       ("client", _cert("prometheus", ca, client=True)),
                       ("other", _cert("someone-else", ca, client=True)),
                       ("rogue", _cert("prometheus", rogue_ca, client=True))):
        _write(d, name, pair)
    return d


VALID = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                               "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca.crt",
                               "min_version": "TLS12"},
         "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
         "basic_auth_users": {"prometheus": HASH}}


def config_file(pki: Path, doc: dict | str, name: str = "web.yml") -> Path:
    path = pki / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(b"hello\n")

    def do_POST(self) -> None:
        body = web.read_body(self, limit=64)
        if body is not None:
            self._answer(b"got " + body)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(pki):
    started = []

    def start(doc: dict | None, on_denied=None) -> tuple[int, web.Web]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        server.daemon_threads = True
        w = web.Web(config_file(pki, doc) if doc is not None else None, on_denied=on_denied)
        web.secure(server, w)
        web.serve_in_thread(server)
        started.append(server)
        return server.server_address[1], w

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def client_context(pki: Path, cert: str | None = "client") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return ctx


def request(port: int, ctx: ssl.SSLContext | None, method: str = "GET", auth: str | None = None,
            body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10) if ctx
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        conn.request(method, "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_tls_with_client_certificate_and_basic_auth(pki, served) -> None:
    denied = []
    port, w = served(VALID, on_denied=lambda peer, reason: denied.append((peer, reason)))
    ok = request(port, client_context(pki), auth=f"prometheus:{PASSWORD}")
    assert ok[0] == 200 and ok[2] == b"hello\n" and ok[1]["X-Frame-Options"] == "deny"
    status, headers, _ = request(port, client_context(pki))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    assert request(port, client_context(pki), auth="prometheus:wrong")[0] == 401
    assert request(port, client_context(pki), auth=f"nobody:{PASSWORD}")[0] == 401
    # POST (the webhook's method) is refused alike without credentials, accepted with them
    assert request(port, client_context(pki), "POST", body=b"{}")[0] == 401
    assert request(port, client_context(pki), "POST", auth=f"prometheus:{PASSWORD}", body=b"{}")[2] == b"got {}"
    assert request(port, client_context(pki), "POST", auth=f"prometheus:{PASSWORD}", body=b"x" * 65)[0] == 413
    assert [r for _, r in denied] == ["no_credentials", "bad_credentials", "bad_credentials", "no_credentials"]
    assert all(peer == "127.0.0.1" for peer, _ in denied) and w.denied["bad_credentials"] == 2


def test_a_wrong_client_certificate_or_none_fails_the_handshake(pki, served) -> None:
    denied = []
    port, _ = served(VALID, on_denied=lambda peer, reason: denied.append(reason))
    for cert in ("rogue", None):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            request(port, client_context(pki, cert), auth=f"prometheus:{PASSWORD}")
    with pytest.raises((http.client.HTTPException, ConnectionResetError, OSError)):
        request(port, None, auth=f"prometheus:{PASSWORD}")  # plain HTTP to a TLS port
    deadline = time.monotonic() + 10  # the server thread records a failed handshake after the client sees it
    while len(denied) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert denied == ["tls_handshake"] * 3
    # the server still serves good clients afterwards
    assert request(port, client_context(pki), auth=f"prometheus:{PASSWORD}")[0] == 200


def test_client_allowed_sans(pki, served) -> None:
    doc = {**VALID, "tls_server_config": {**VALID["tls_server_config"], "client_allowed_sans": ["prometheus"]}}
    port, _ = served(doc)
    assert request(port, client_context(pki), auth=f"prometheus:{PASSWORD}")[0] == 200
    with pytest.raises((ssl.SSLError, http.client.HTTPException, ConnectionResetError, OSError)):
        request(port, client_context(pki, "other"), auth=f"prometheus:{PASSWORD}")


def test_no_web_config_is_plain_http_without_auth(served) -> None:
    port, _ = served(None)
    assert request(port, None)[0] == 200


def test_non_loopback_without_tls_warns(caplog) -> None:
    server = ThreadingHTTPServer(("0.0.0.0", 0), Hello)  # noqa: S104 - bound, never served
    try:
        with caplog.at_level(logging.WARNING, logger="citydc.web"):
            web.secure(server, web.Web(None))
    finally:
        server.server_close()
    assert "without TLS" in caplog.text and "without authentication" in caplog.text
    caplog.clear()
    loop = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    try:
        with caplog.at_level(logging.WARNING, logger="citydc.web"):
            web.secure(loop, web.Web(None))
    finally:
        loop.server_close()
    assert caplog.text == ""


def test_a_changed_certificate_is_reloaded_and_a_broken_change_keeps_the_old(pki, served, tmp_path) -> None:
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    path = config_file(tmp_path, VALID)
    w = web.Web(path)
    first = w._current()
    (tmp_path / "web.yml").write_text(yaml.safe_dump({**VALID, "basic_auth_users": {"other": HASH}}))
    assert w.config.basic_auth_users == {"other": HASH}
    (tmp_path / "web.yml").write_text("tls_server_config: [")
    assert w.config.basic_auth_users == {"other": HASH}  # broken: the previous one stays
    assert first is not w._current()


@pytest.mark.parametrize(("doc", "message"), [
    ({"tls_server_config": {"cert_file": "server.crt"}}, "tls_server_config.key_file: missing"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Sometimes"}},
     "tls_server_config.client_auth_type: expected one of"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "TLS14"}},
     "tls_server_config.min_version: expected one of"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "TLS13",
                            "max_version": "TLS12"}}, "min_version: TLS13 is above max_version"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.crt"}},
     "client_ca_file: set without a client_auth_type"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAndVerifyClientCert"}}, "client_ca_file: missing"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAnyClientCert", "client_ca_file": "ca.crt"}},
     "client_auth_type: RequireAnyClientCert is not supported"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "cipher_suites": ["TLS_AES_128_GCM_SHA256"]}}, "tls_server_config.cipher_suites: not "),
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}},
     "tls_server_config.cert_file: cannot read"),
    ({"tls_server_config": {"cert_file": "ca.crt", "key_file": "server.key"}}, "cert_file/key_file: cannot load"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "server.key",
                            "client_auth_type": "VerifyClientCertIfGiven"}}, "client_ca_file: cannot load"),
    ({"tls_server_config": {"cert_file": "server.crt", "keyfile": "server.key"}},
     "tls_server_config.keyfile: unknown field"),
    ({"basic_auth_users": {"prometheus": "plain-password"}}, "basic_auth_users: user 'prometheus': expected a bcrypt"),
    ({"http_server_config": {"headers": {"Server": "x"}}}, "http_server_config.headers: header 'Server' cannot"),
    ({"rate_limit": {"burst": 1}}, "rate_limit: not supported"),
    ("- a list", "(top level): expected a mapping"),
    ("tls_server_config: {cert_file: [", "line 1: not valid YAML"),
    ("basic_auth_users:\n  prometheus: *plain-password\n", "line 2: not valid YAML"),  # the token is not quoted
    ("basic_auth_users: {a: 1}\nbasic_auth_users: {b: 2}\n", "basic_auth_users: duplicate key (first at line 1)"),
    ("a: &a [*a]\n", "recursive alias"),
])
def test_bad_web_config_files_name_the_field(pki, doc, message) -> None:
    path = config_file(pki, doc, "bad.yml")
    with pytest.raises(web.WebConfigError) as info:
        web.Web(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)
    assert "plain-password" not in str(info.value)  # a pasted password is not echoed


def test_loads_node_exporter_style_file_with_relative_paths_and_empty_sections(pki) -> None:
    path = config_file(pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                            "http_server_config:\n  http2: false\nbasic_auth_users:\n", "node.yml")
    cfg = web.load(path)
    assert cfg.tls_server_config.cert_file == str(pki / "server.crt") and cfg.basic_auth_users == {}
    assert web.load(config_file(pki, "", "empty.yml")) == web.WebConfig()
    with pytest.raises(web.WebConfigError, match="cannot read the web config file"):
        web.load(pki / "absent.yml")


KEYS = st.sampled_from(["tls_server_config", "cert_file", "key_file", "client_auth_type", "client_ca_file",
                        "min_version", "basic_auth_users", "prometheus", "headers", "http2", "bogus"])
VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=12), st.booleans(), st.lists(st.text(max_size=4)),
                   st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))


def _mutate(doc: object, path: list, op: int, key: str, value: object) -> object:
    if isinstance(doc, dict) and path:
        k = sorted(doc, key=str)[path[0] % len(doc)] if doc else None
        if k is not None and len(path) > 1:
            return {**doc, k: _mutate(doc[k], path[1:], op, key, value)}
        if k is not None and op == 0:
            return {kk: v for kk, v in doc.items() if kk != k}
        if k is not None and op == 1:
            return {**doc, k: value}
        return {**doc, key: value}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(0, 5), min_size=1, max_size=3), op=st.integers(0, 2), key=KEYS, value=VALUES)
def test_mutated_web_config_loads_or_names_the_problem(pki, path, op, key, value) -> None:
    doc = _mutate(VALID, path, op, key, value)
    target = config_file(pki, yaml.safe_dump(doc), "mutated.yml")
    try:
        web.Web(target)
    except web.WebConfigError as exc:
        first = str(exc).splitlines()[0]
        assert first.startswith(f"{target}: ") and len(first) > len(f"{target}: ") + 5
        assert "Traceback" not in str(exc)


def test_metrics_server_serves_the_registry_behind_auth(pki) -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("citydc_test_things", "things", registry=registry).inc(3)
    server = web.metrics_server(registry, "127.0.0.1", 0)
    web.secure(server, web.Web(config_file(pki, VALID)))
    thread = web.serve_in_thread(server)
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", server.server_address[1], context=client_context(pki))
        conn.request("GET", "/metrics", headers={
            "Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()})
        resp = conn.getresponse()
        assert resp.status == 200 and b"citydc_test_things_total 3.0" in resp.read()
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    thread.join(5)
    assert not thread.is_alive() and isinstance(threading.current_thread(), threading.Thread)


@pytest.mark.parametrize("command", [["collect", "snmp"], ["collect", "netflow", "--no-snmp"]])
def test_commands_refuse_a_bad_web_config_with_the_field_and_exit_2(tmp_path, command) -> None:
    from click.testing import CliRunner

    from citydc.cli.main import cli

    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\nnetflow:\n  listeners: [{port: 1, site: siwei}]\n")
    cfg.chmod(0o600)
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: server.crt\n")
    result = CliRunner().invoke(cli, ["-c", str(cfg), *command, "--web.config.file", str(bad)])
    assert result.exit_code == 2, result.output
    assert f"{bad}: tls_server_config.key_file: missing" in result.output and "Traceback" not in result.output

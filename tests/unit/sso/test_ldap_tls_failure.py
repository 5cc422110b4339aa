"""A server certificate that fails verification (a CA the ca_file does not hold, an expired certificate), over
StartTLS and LDAPS: a one-line error naming the source and what failed, recorded as a failed run (state and
``last_run_failed``) like any other connection failure; never a traceback (findings-ldap item 1).

A small TLS server on 127.0.0.1 with certificates made here (cryptography): ldap3's exceptions derive from both
its own and ssl's classes without ssl's attributes, so only a real handshake shows what the audit meets."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from citydc.config.models import LdapSource
from citydc.sso.directory import Directory, DirectoryError

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD = "tls-test-Bind-Pass-7731"
NOW = dt.datetime.now(dt.UTC)


def _cert(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool,
          not_after: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=30)).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """The lab CA and a server certificate it signed (valid, and expired), and another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca_key, ca=True, not_after=NOW + dt.timedelta(days=365))
    other = _cert("another CA", other_key, None, other_key, ca=True, not_after=NOW + dt.timedelta(days=365))
    out = {"ca": d / "ca.crt", "other_ca": d / "other-ca.crt"}
    out["ca"].write_bytes(_pem(ca))
    out["other_ca"].write_bytes(_pem(other))
    for name, not_after in (("valid", NOW + dt.timedelta(days=300)), ("expired", NOW - dt.timedelta(days=2))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("127.0.0.1", key, ca.subject, ca_key, ca=False, not_after=not_after)
        (d / f"{name}.pem").write_bytes(_pem(cert) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out[name] = d / f"{name}.pem"
    return out


def _bind_in_range() -> socket.socket:
    for port in range(12150, 12200):  # loopback ports no lab service uses (lab/ports.py)
        srv = socket.socket()
        try:
            srv.bind(("127.0.0.1", port))
        except OSError:
            srv.close()
            continue
        srv.listen(8)
        return srv
    raise RuntimeError("no free port in 12150-12199")


# ExtendedResponse (StartTLS) success for message id N: SEQUENCE { INTEGER N, [APPLICATION 24] { resultCode 0,
# matchedDN "", diagnosticMessage "", responseName [10] 1.3.6.1.4.1.1466.20037 } }
_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _starttls_ok(msgid: int) -> bytes:
    op = b"\x0a\x01\x00\x04\x00\x04\x00" + b"\x8a" + bytes([len(_STARTTLS_OID)]) + _STARTTLS_OID
    body = b"\x02\x01" + bytes([msgid]) + b"\x78" + bytes([len(op)]) + op
    return b"\x30" + bytes([len(body)]) + body


@contextmanager
def tls_server(cert: Path, *, starttls: bool) -> Iterator[int]:
    """A server that answers StartTLS (or speaks TLS at once) and offers ``cert``; the client refuses it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert)
    srv = _bind_in_range()
    srv.settimeout(0.2)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if starttls:
                req = conn.recv(4096)
                msgid = req[4] if len(req) > 4 and req[2:4] == b"\x02\x01" else 1
                conn.sendall(_starttls_ok(msgid))
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:  # the client refused the certificate: the handshake fails here too
            pass
        finally:
            conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


def src(port: int, ca_file: Path, *, ldaps: bool, **kw) -> LdapSource:
    return LdapSource(name="wrongca", url=f"{'ldaps' if ldaps else 'ldap'}://127.0.0.1:{port}",
                      start_tls=not ldaps, bind_dn="cn=auditor,dc=x", bind_password="env:PW", base_dn="dc=x",
                      site="siwei", ca_file=ca_file, timeout_seconds=5, **kw)


@pytest.mark.parametrize("ldaps", [False, True], ids=["starttls", "ldaps"])
@pytest.mark.parametrize(("cert", "ca", "what", "hint"), [
    ("valid", "other_ca", "certificate verify failed: ", "check ca_file"),
    ("expired", "ca", "certificate verify failed: certificate has expired", "renew the server certificate"),
], ids=["wrong-ca", "expired"])
def test_a_certificate_failing_verification_is_a_directory_error_saying_what_failed(pki, ldaps, cert, ca, what,
                                                                                     hint):
    with tls_server(pki[cert], starttls=not ldaps) as port, \
            pytest.raises(DirectoryError) as exc, Directory(src(port, pki[ca], ldaps=ldaps), PASSWORD):
        pass
    msg = str(exc.value)
    assert msg.startswith(f"{'ldaps' if ldaps else 'ldap'}://127.0.0.1:{port}: TLS failed: {what}"), msg
    assert hint in msg and "\n" not in msg and PASSWORD not in msg
    assert "_ssl.c" not in msg and "wrap" not in msg  # what failed, not ldap3's wrapping of it


def test_the_right_ca_and_a_valid_certificate_get_past_tls(pki):
    # The control: the same server with the right CA fails later (the fake answers no bind), not in TLS.
    with tls_server(pki["valid"], starttls=False) as port, pytest.raises(DirectoryError) as exc, \
            Directory(src(port, pki["ca"], ldaps=True), PASSWORD):
        pass
    assert "TLS failed" not in str(exc.value)


def test_the_audit_reports_it_on_one_line_and_records_a_failed_run(pki, tmp_path):
    with tls_server(pki["valid"], starttls=True) as port:
        entry = src(port, pki["other_ca"], ldaps=False).model_dump(mode="json", exclude_defaults=True)
        entry.update(bind_password="env:PW", state_dir=str(tmp_path / "state"), textfile_dir=str(tmp_path / "tf"))
        cfg = tmp_path / "citydc.yaml"
        cfg.write_text(yaml.safe_dump({
            "sites": [{"id": "siwei", "name": "Siwei"}], "ldap": [entry],
            "security_log": {"spool_dir": str(tmp_path / "spool"),
                             "sink": {"kind": "sqlite", "path": str(tmp_path / "log.db")}}}))
        proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "ldap", "--no-events"], capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PW": PASSWORD, "COLUMNS": "250"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    line = " ".join(proc.stderr.split())
    assert f"ldap source wrongca: ldap://127.0.0.1:{port}: TLS failed: certificate verify failed" in line, line
    state = json.loads((tmp_path / "state" / "wrongca" / "state.json").read_text())
    assert "TLS failed: certificate verify failed" in state["last_error"] and state["last_attempt"]
    prom = (tmp_path / "tf" / "citydc_ldap_audit.prom").read_text()
    assert 'citydc_ldap_audit_last_run_failed{site="siwei",source="wrongca"} 1.0' in prom, prom

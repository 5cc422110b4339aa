"""HAProxy in front of the lab's Elasticsearch: TLS with a lab CA and HTTP basic auth.

The integ-test Elasticsearch distribution has no security layer (lab/elasticsearch.py), so
this front gives the security log a real TLS + credentials endpoint to prove against:
``https://127.0.0.1:19243`` with a server certificate for 127.0.0.1 and localhost signed by a
lab CA (made with ``openssl`` on first start, kept across restarts), user ``citydc-shipper``
with the lab password ``LAB_ENV["CITYDC_ES_PASSWORD"]``, forwarding to 127.0.0.1:19200.
It starts the ``elasticsearch`` service first, so ``citydc lab up elasticsearch-tls`` works alone.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries
from citydc.lab.elasticsearch import Elasticsearch

__all__ = ["USER", "EsTls", "ca_file", "haproxy_conf", "make_ca", "make_server_cert", "url"]

USER = "citydc-shipper"
NAME = "elasticsearch-tls"
HAPROXY = "/usr/sbin/haproxy"


def url() -> str:
    return f"https://{ports.HOST}:{ports.ELASTICSEARCH_TLS}"


def ca_file(ctx: LabContext) -> Path:
    """Given the lab context, return the CA file that verifies the front's certificate."""
    return ctx.service_dir(NAME) / "ca.crt"


def ca_argv(key: Path, cert: Path, subject: str) -> tuple[str, ...]:
    """Return the openssl argv making a self-signed CA certificate and key (10 years)."""
    return ("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def csr_argv(key: Path, csr: Path) -> tuple[str, ...]:
    """Return the openssl argv making the server key and certificate request."""
    return ("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")


def sign_argv(csr: Path, ca_cert: Path, ca_key: Path, cert: Path, extfile: Path) -> tuple[str, ...]:
    """Return the openssl argv signing the server request with the CA (extensions from ``extfile``)."""
    return ("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "825", "-sha256", "-extfile", str(extfile))


SERVER_EXTENSIONS = "\n".join([
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "",
])


def _openssl(argv: tuple[str, ...]) -> None:
    res = execute.run("openssl", argv, timeout=60)
    if not res.ok:
        raise LabError(f"openssl failed ({res.meaning}): {res.masked_stderr().strip()[-400:]}")


def make_ca(directory: Path, name: str = "ca", subject: str = "/CN=citydc lab CA") -> Path:
    """Given a directory, make ``<name>.crt``/``<name>.key`` there unless present; return the cert path."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if not (cert.exists() and key.exists()):
        _openssl(ca_argv(key, cert, subject))
        key.chmod(0o600)
    return cert


def make_server_cert(directory: Path) -> Path:
    """Given the service directory holding ca.crt/ca.key, make the server cert unless present.

    Return ``server.pem`` (certificate then key, as HAProxy's ``crt`` wants it).
    """
    pem = directory / "server.pem"
    if pem.exists():
        return pem
    key, csr, cert, ext = (directory / n for n in ("server.key", "server.csr", "server.crt", "server.ext"))
    ext.write_text(SERVER_EXTENSIONS)
    _openssl(csr_argv(key, csr))
    _openssl(sign_argv(csr, directory / "ca.crt", directory / "ca.key", cert, ext))
    tmp = pem.with_suffix(".tmp")
    tmp.write_text(cert.read_text() + key.read_text())
    tmp.chmod(0o600)
    tmp.replace(pem)
    return pem


def haproxy_conf(pem: Path, password: str, *, port: int = ports.ELASTICSEARCH_TLS,
                 backend_port: int = ports.ELASTICSEARCH) -> str:
    """Given the server PEM and the lab password, return haproxy.cfg (TLS + basic auth -> Elasticsearch)."""
    return "\n".join([
        "global",
        "    log stderr format short local0 notice",
        "    maxconn 512",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 5s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout http-keep-alive 60s",
        "userlist es_users",
        # Lab-only password; this file is mode 0600 in the lab's service directory.
        f"    user {USER} insecure-password {password}",
        "frontend es_tls",
        f"    bind {ports.HOST}:{port} ssl crt {pem}",
        "    http-request auth realm citydc-lab-elasticsearch unless { http_auth(es_users) }",
        # The password stops here: Elasticsearch behind has no security layer to check it.
        "    http-request del-header Authorization",
        "    default_backend es",
        "backend es",
        f"    server es1 {ports.HOST}:{backend_port}",
        "",
    ])


class EsTls(Service):
    name = NAME
    description = "HAProxy TLS + basic-auth front for the lab Elasticsearch"
    ready_timeout = 20.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({HAPROXY: "haproxy", "openssl": "openssl"}, ctx)
        # The front is useless without its backend; start it (idempotent) so this service works alone.
        Elasticsearch().up(ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        make_ca(d)
        pem = make_server_cert(d)
        conf = d / "haproxy.cfg"
        conf.write_text(haproxy_conf(pem, ports.LAB_ENV["CITYDC_ES_PASSWORD"]))
        conf.chmod(0o600)
        check = execute.run("haproxy", (HAPROXY, "-c", "-q", "-f", str(conf)), timeout=30)
        if not check.ok:
            raise LabError(f"haproxy rejected {conf}: {check.masked_stderr().strip()[-600:]}")
        # -db: foreground, no master process, so the recorded PID is haproxy itself.
        return processes.spawn([HAPROXY, "-db", "-f", str(conf)], log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        context = ssl.create_default_context(cafile=str(ca_file(ctx)))
        token = base64.b64encode(f"{USER}:{ports.LAB_ENV['CITYDC_ES_PASSWORD']}".encode()).decode()
        req = urllib.request.Request(f"{url()}/_cluster/health",  # noqa: S310 - a fixed https URL
                                     headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(req, timeout=3, context=context) as resp:  # noqa: S310
            return json.load(resp).get("status") in ("green", "yellow")

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"https": url(), "ca_file": str(ca_file(ctx)), "user": USER}

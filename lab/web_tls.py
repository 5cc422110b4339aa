"""TLS material and a web config file for the lab's hardened endpoints (issue 17), made with
``openssl`` at run time under the lab directory (``web-tls/``, files 0600, directory 0700):

- ``ca.crt``/``ca.key``: the lab web CA; ``server.crt``/``server.key`` for 127.0.0.1 and localhost;
- ``prometheus.crt``/``prometheus.key``: the client certificate the lab Prometheus scrapes with;
- ``rogue-ca.crt`` and ``rogue.crt``/``rogue.key``: a client certificate from another CA (must be refused);
- ``web.yml``: the exporter-toolkit web config (server cert, RequireAndVerifyClientCert with the lab
  CA, basic auth user ``prometheus`` with the bcrypt hash of ``PASSWORD``), ``password``: the
  plain lab password, for Prometheus' ``password_file``.

``scrape_configs(ctx)`` are the two jobs the lab Prometheus adds for the SNMP exporter and the
NetFlow collector run with that web config (ports SNMP_EXPORTER_TLS and NETFLOW_HARDEN_METRICS).
"""

from __future__ import annotations

import os
from pathlib import Path

import bcrypt

from citydc import execute
from citydc.lab import ports
from citydc.lab.base import LabContext, LabError
from citydc.lab.es_tls import ca_argv, sign_argv

__all__ = ["PASSWORD", "SNMP_TARGET", "USER", "directory", "ensure", "scrape_configs"]

NAME = "web-tls"
USER = "prometheus"
# Lab-only credential: not a secret of any real system.
PASSWORD = "citydc-lab-scrape-pass"  # noqa: S105 - lab-only
SNMP_TARGET = f"{ports.HOST}:{ports.SNMPD}"  # the lab's net-snmp agent

SERVER_EXT = ("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
CLIENT_EXT = ("subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")


def directory(ctx: LabContext) -> Path:
    """Given the lab context, return the folder holding the lab's web TLS material."""
    return ctx.service_dir(NAME)


def _openssl(argv: tuple[str, ...]) -> None:
    res = execute.run("openssl", argv, timeout=60)
    if not res.ok:
        raise LabError(f"openssl failed ({res.meaning}): {res.masked_stderr().strip()[-400:]}")


def _leaf(d: Path, name: str, ca: str, subject: str, ext: str) -> None:
    key, csr, cert, extfile = (d / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    extfile.write_text(ext)
    _openssl(("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", str(key), "-out", str(csr), "-subj", subject))
    _openssl(sign_argv(csr, d / f"{ca}.crt", d / f"{ca}.key", cert, extfile))


def web_yml(password_hash: str) -> str:
    """Given the bcrypt hash of the lab password, return the lab's web config file."""
    return (f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n"
            f"basic_auth_users:\n  {USER}: {password_hash}\n")


def ensure(ctx: LabContext) -> Path:
    """Given the lab context, make the web TLS material unless present; return its directory.

    Raise LabError if openssl fails."""
    d = directory(ctx)
    d.chmod(0o700)
    if (d / "web.yml").exists():
        return d
    for ca in ("ca", "rogue-ca"):
        _openssl(ca_argv(d / f"{ca}.key", d / f"{ca}.crt", f"/CN=citydc lab {ca}"))
    _leaf(d, "server", "ca", "/CN=localhost", SERVER_EXT)
    _leaf(d, "prometheus", "ca", "/CN=prometheus", CLIENT_EXT.format(name="prometheus"))
    _leaf(d, "rogue", "rogue-ca", "/CN=prometheus", CLIENT_EXT.format(name="prometheus"))
    (d / "password").write_text(PASSWORD)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    tmp = d / "web.yml.tmp"
    tmp.write_text(web_yml(hashed))
    for path in d.iterdir():
        path.chmod(0o600)
    os.replace(tmp, d / "web.yml")
    return d


def scrape_configs(ctx: LabContext) -> str:
    """Given the lab context, return the scrape_configs entries (YAML) of the two TLS endpoints."""
    d = ensure(ctx)
    tls = (f"    scheme: https\n    tls_config:\n      ca_file: {d / 'ca.crt'}\n"
           f"      cert_file: {d / 'prometheus.crt'}\n      key_file: {d / 'prometheus.key'}\n"
           f"    basic_auth:\n      username: {USER}\n"
           f"      password_file: {d / 'password'}\n")
    return (f"  - job_name: citydc_snmp_tls\n    scrape_interval: 2s\n    scrape_timeout: 2s\n    metrics_path: /snmp\n"
            f"    params:\n      target: ['{SNMP_TARGET}']\n      module: [if_mib]\n{tls}"
            f"    static_configs:\n      - targets: ['{ports.HOST}:{ports.SNMP_EXPORTER_TLS}']\n"
            f"  - job_name: citydc_netflow_tls\n    scrape_interval: 2s\n    scrape_timeout: 2s\n{tls}"
            f"    static_configs:\n      - targets: ['{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}']\n")

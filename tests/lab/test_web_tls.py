"""The lab's real Prometheus scrapes ``citydc collect snmp`` and ``citydc collect netflow`` over TLS
with a client certificate and basic auth, both run with the same exporter-toolkit web config file
(lab/web_tls.py makes the lab CA and certificates with openssl). Without credentials a request
gets 401; with a client certificate of another CA, or none, the TLS handshake fails."""

from __future__ import annotations

import base64
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc.lab import ports, processes, web_tls
from citydc.lab.base import LabContext
from citydc.lab.prometheus import query

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SNMP_URL = f"https://{ports.HOST}:{ports.SNMP_EXPORTER_TLS}/snmp?target={web_tls.SNMP_TARGET}&module=if_mib"
NETFLOW_URL = f"https://{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}/metrics"


def config(tmp: Path) -> Path:
    doc = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "snmp_auth": {"lab": {"version": "2c", "community": "env:CITYDC_SNMP_COMMUNITY"}},
           "devices": [{"name": "lab-host", "address": web_tls.SNMP_TARGET, "site": "siwei", "role": "server",
                        "snmp_auth": "lab"}],
           "netflow": {"listeners": [{"address": ports.HOST, "port": ports.NETFLOW_HARDEN, "site": "siwei"}]}}
    path = tmp / "citydc.yaml"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def endpoints(lab_up, lab_env, tmp_path_factory):
    lab_up("prometheus", "snmpd")
    tls_dir = web_tls.ensure(LabContext())
    tmp = tmp_path_factory.mktemp("webtls")
    cfg = config(tmp)
    web_yml = str(tls_dir / "web.yml")
    procs = [
        processes.spawn([CITYDC, "-c", str(cfg), "collect", "snmp", "--listen",
                         f"{ports.HOST}:{ports.SNMP_EXPORTER_TLS}", "--web.config.file", web_yml],
                        log_path=tmp / "snmp.log"),
        processes.spawn([CITYDC, "-c", str(cfg), "collect", "netflow", "--no-snmp", "--metrics",
                         f"{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}", "--web.config.file", web_yml],
                        log_path=tmp / "netflow.log"),
    ]
    records = [processes.record(p.pid, "citydc") for p in procs]
    yield tls_dir, tmp
    processes.stop(records)
    for p in procs:
        p.wait(10)


def context(tls_dir: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(tls_dir / f"{cert}.crt", tls_dir / f"{cert}.key")
    return ctx


def get(url: str, ctx: ssl.SSLContext, password: str | None) -> int:
    headers = {}
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{web_tls.USER}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - fixed loopback https URL
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prometheus_scrapes_both_endpoints_over_tls_with_basic_auth(endpoints) -> None:
    _, tmp = endpoints
    deadline = time.monotonic() + 60
    wanted = {'up{job="citydc_snmp_tls"}', 'up{job="citydc_netflow_tls"}',
              'citydc_snmp_up{job="citydc_snmp_tls"}', 'citydc_netflow_decoder_info{job="citydc_netflow_tls"}'}
    values: dict[str, list] = {}
    while True:
        values = {expr: query(expr) for expr in wanted}
        if all(r and float(r[0]["value"][1]) == 1 for r in values.values()):
            break
        logs = "\n".join((tmp / n).read_text()[-2000:] for n in ("snmp.log", "netflow.log"))
        assert time.monotonic() < deadline, f"{values}\n{logs}"
        time.sleep(1)
    # the start-up lines say what is served
    assert f"https://{ports.HOST}:{ports.SNMP_EXPORTER_TLS}/snmp" in (tmp / "snmp.log").read_text()
    assert "basic auth" in (tmp / "netflow.log").read_text()


@pytest.mark.parametrize("url", [SNMP_URL, NETFLOW_URL])
def test_without_credentials_401_and_wrong_certificate_fails_the_handshake(endpoints, url: str) -> None:
    tls_dir, _ = endpoints
    good = context(tls_dir, "prometheus")
    deadline = time.monotonic() + 30
    while True:  # the endpoint is up (the fixture does not wait)
        try:
            status = get(url, good, web_tls.PASSWORD)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert status == 200
    assert get(url, good, None) == 401
    assert get(url, good, "not-the-password") == 401
    for cert in ("rogue", None):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            get(url, context(tls_dir, cert), web_tls.PASSWORD)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        get(url.replace("https://", "http://"), good, web_tls.PASSWORD)  # plain HTTP is not served

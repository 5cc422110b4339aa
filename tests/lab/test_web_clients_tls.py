"""citydc's clients of Prometheus and Alertmanager against real ones that run with a web config (TLS with the lab
web CA, a client certificate required, basic auth: lab/web_secured.py): ``report bandwidth`` through
``report.prometheus_http``, ``noc show`` through ``alerting.prometheus_http`` and ``alerting.alertmanager_http``.
What each setting is for is shown by leaving it out: no client certificate, the wrong password, the system's CAs.
lb-rolling.yml's silences through the same Alertmanager: tests/lab/test_play_lb.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from citydc.lab import ports, web_secured
from citydc.lab.report_history import span_for

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD_ENV = "CITYDC_TEST_WEB_PASSWORD"
PROM_TLS = f"https://{ports.HOST}:{ports.PROMETHEUS_TLS}"
AM_TLS = f"https://{ports.HOST}:{ports.ALERTMANAGER_TLS}"
SITES = [{"id": "siwei", "name": "四維 Siwei"}, {"id": "fengshan", "name": "鳳山 Fengshan"}]
DEVICES = [{"name": "sw-siwei-acc1", "address": "127.0.0.1:11620", "site": "siwei", "role": "access"}]
LINKS = [{"name": "siwei-isp", "device": "sw-siwei-acc1", "interface": "Te1/1/1", "committed_rate": "100 Mbit/s"}]


@pytest.fixture(scope="module")
def secured(lab_up, lab_ctx):
    lab_up("prometheus-report", "prometheus-tls", "alertmanager-tls")
    return lab_ctx


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump({"sites": SITES, "devices": DEVICES, **sections}, allow_unicode=True))
    return path


def citydc(cfg: Path, *args: str, password: str = "") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "160"}
    if password:
        env[PASSWORD_ENV] = password
    return subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, timeout=120, env=env)


def test_report_through_a_secured_prometheus_equals_the_direct_one(secured, tmp_path) -> None:
    month = span_for(time.time()).month
    direct = write_config(tmp_path / "direct.yaml", report={
        "prometheus_url": f"http://{ports.HOST}:{ports.PROMETHEUS_REPORT}", "links": LINKS})
    http = web_secured.http_settings(secured, PASSWORD_ENV)
    through = write_config(tmp_path / "tls.yaml", report={"prometheus_url": PROM_TLS, "prometheus_http": http,
                                                          "links": LINKS})
    want = citydc(direct, "report", "bandwidth", "--link", "siwei-isp", "--month", month, "--json")
    assert want.returncode == 0, want.stderr
    got = citydc(through, "report", "bandwidth", "--link", "siwei-isp", "--month", month, "--json",
                 password=web_secured.web_tls.PASSWORD)
    assert got.returncode == 0, got.stderr
    want_doc, got_doc = json.loads(want.stdout), json.loads(got.stdout)
    assert got_doc.pop("prometheus_url") == PROM_TLS
    want_doc.pop("prometheus_url")
    assert got_doc == want_doc
    assert all(row["samples"] > 8000 for row in got_doc["directions"])  # a month of 5-minute samples came through

    # Each setting matters: the wrong password, no client certificate, the system's CAs instead of the lab's.
    secret = "not-the-lab-password-4711"
    res = citydc(through, "report", "bandwidth", "--link", "siwei-isp", "--month", month, password=secret)
    assert res.returncode == 1 and "401" in res.stderr, res.stderr
    assert secret not in res.stdout + res.stderr
    for cut, words in ((("cert_file", "key_file"), ("may require a client certificate",)),
                       (("ca_file",), ("CERTIFICATE_VERIFY_FAILED", "set ca_file"))):
        partial = {k: v for k, v in http.items() if k not in cut}
        cfg = write_config(tmp_path / "partial.yaml", report={"prometheus_url": PROM_TLS,
                                                              "prometheus_http": partial, "links": LINKS})
        res = citydc(cfg, "report", "bandwidth", "--link", "siwei-isp", "--month", month,
                     password=web_secured.web_tls.PASSWORD)
        assert res.returncode == 1, (cut, res.stdout, res.stderr)
        assert all(w in res.stderr for w in words), (cut, res.stderr)
        assert "Traceback" not in res.stderr
    # The password's variable unset: a config error naming the setting, before any request.
    res = citydc(through, "report", "bandwidth", "--link", "siwei-isp", "--month", month)
    assert res.returncode == 2 and "report.prometheus_http.password" in res.stderr, res.stderr


def am_post(ctx, alerts: list[dict]) -> None:
    context, headers = web_secured.client(ctx)
    req = urllib.request.Request(f"{AM_TLS}/api/v2/alerts", data=json.dumps(alerts).encode(),  # noqa: S310
                                 method="POST", headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310 - loopback
        assert resp.status == 200


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_noc_show_reads_both_secured_endpoints(secured, tmp_path) -> None:
    name = f"TlsProbe{int(time.time())}"
    am_post(secured, [{"labels": {"alertname": name, "severity": "warning", "site": "siwei"},
                       "annotations": {"summary": "posted through TLS"},
                       "startsAt": iso(time.time() - 30), "endsAt": iso(time.time() + 600)}])
    http = web_secured.http_settings(secured, PASSWORD_ENV)
    cfg = write_config(tmp_path / "noc.yaml", alerting={"prometheus_url": PROM_TLS, "prometheus_http": http,
                                                        "alertmanager_url": AM_TLS, "alertmanager_http": http})
    res = citydc(cfg, "noc", "show", "--json", password=web_secured.web_tls.PASSWORD)
    # exit 1: this Prometheus holds only the report's month, so the tiers have no fresh data (NO DATA)
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert name in {a["alertname"] for a in doc["alerts"]}, doc["alerts"]
    errors = {k: v["error"] for k, v in doc["sources"].items()}
    assert set(errors) == {"alerts", "tiers", "links", "backups", "audit"}
    assert all(e is None for e in errors.values()), errors

    # The wrong password: every section says 401, the password is nowhere.
    secret = "not-the-lab-password-0815"
    res = citydc(cfg, "noc", "show", "--json", password=secret)
    assert secret not in res.stdout + res.stderr
    assert res.returncode == 1
    errors = {k: v["error"] for k, v in json.loads(res.stdout)["sources"].items()}
    assert len(errors) == 5 and all(e and "401" in e for e in errors.values()), errors

    # Basic auth towards a non-loopback http:// URL is refused at load (the password would travel in clear).
    bad = write_config(tmp_path / "clear.yaml", alerting={"prometheus_url": "http://prometheus.example:9090",
                                                          "prometheus_http": {"username": "u",
                                                                              "password": f"env:{PASSWORD_ENV}"}})
    res = citydc(bad, "noc", "show", "--json", password=web_secured.web_tls.PASSWORD)
    assert res.returncode == 2 and "alerting.prometheus_http" in res.stderr and "clear" in res.stderr, res.stderr

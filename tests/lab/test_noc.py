"""The NOC wall page against the real lab: Prometheus (the lab's, with alerts/ rules loaded) scraping
``citydc collect snmp`` over the simulated switches of both sites and node_exporter's textfile
metrics, a real Alertmanager (Debian ``prometheus-alertmanager``) the test posts alerts to, and
``citydc noc serve`` as a process. The data endpoint is compared with independent API queries; the
page is rendered in headless Chromium (screenshots kept in ``artifacts/noc/``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc import execute
from citydc.lab import noc_data, ports, processes
from citydc.lab.base import LabContext, wait_until
from citydc.lab.node_exporter import textfile_dir
from citydc.lab.prometheus import file_sd_dir, query
from citydc.lab.snmpsim import SWITCHES, lab_config, lab_snmp_env
from citydc.noc.server import CSP

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "noc"
PROM = f"http://{ports.HOST}:{ports.PROMETHEUS}"
AM = f"http://{ports.HOST}:{ports.ALERTMANAGER_NOC_TEST}"
NOC = f"http://{ports.HOST}:{ports.NOC}"
STALE_AFTER = 12
UTIL = "link:citydc_snmp_if_utilisation:ratio_rate5m"
BITS = "link:citydc_snmp_if_bits:rate5m"
SD_FILE = "citydc-snmp-noc.json"


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback lab URL
        return json.load(resp)


def am_post(alerts: list[dict]) -> None:
    req = urllib.request.Request(f"{AM}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback lab URL
        assert resp.status == 200


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def am_active() -> list[dict]:
    q = urllib.parse.urlencode({"active": "true", "silenced": "false", "inhibited": "false"})
    return [a for a in get_json(f"{AM}/api/v2/alerts?{q}") if a["status"]["state"] == "active"]


def noc() -> dict:
    return get_json(f"{NOC}/api/noc")


def chromium(tmp: Path, *args: str) -> execute.Result:
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start. The virtual time
    # budget lets the page's script fetch /api/noc and draw before the DOM is dumped.
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=8000", *args]
    return execute.run("chromium", argv, timeout=120, env={"HOME": str(tmp)})


def rendered(tmp: Path, shot: str | None = None) -> str:
    """Return the page's DOM after its script ran, and keep a screenshot in artifacts/noc/ when named."""
    if shot:
        fonts = execute.run("fc-list", ["fc-list", ":lang=zh-tw", "family"], timeout=30)
        assert fonts.ok and fonts.stdout.strip(), ("no Traditional Chinese font: the screenshot would show boxes; "
                                                   "install fonts-noto-cjk (lab/apt-packages.txt)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        res = chromium(tmp, f"--screenshot={ARTIFACTS / shot}", "--window-size=1920,1080", NOC + "/")
        assert res.ok and (ARTIFACTS / shot).stat().st_size > 10_000, res.stderr[-2000:]
    dom = chromium(tmp, "--dump-dom", NOC + "/")
    assert dom.ok, dom.stderr[-2000:]
    assert 'data-polls="' in dom.stdout, "the page's script did not draw the data"
    return dom.stdout


def attr(block: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', block)
    assert m, f"no {name} in {block[:200]}"
    return m.group(1)


def cell(dom: str, site: str, tier: str) -> str:
    m = re.search(rf'<td class="st-\w+" data-site="{site}" data-tier="{tier}" data-status="(\w+)"', dom)
    assert m, f"no matrix cell {site}/{tier} in the page"
    return m.group(1)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    """A real Alertmanager of this module's own (port ALERTMANAGER_NOC_TEST, own directory, no cluster)."""
    d = tmp_path_factory.mktemp("alertmanager")
    conf = d / "alertmanager.yml"
    conf.write_text("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n")
    assert Path(ALERTMANAGER).exists(), "prometheus-alertmanager is not installed (lab/apt-packages.txt)"
    proc = processes.spawn([ALERTMANAGER, f"--config.file={conf}", f"--storage.path={d / 'data'}",
                            f"--web.listen-address={ports.HOST}:{ports.ALERTMANAGER_NOC_TEST}",
                            "--cluster.listen-address="], log_path=d / "alertmanager.log")
    rec = processes.record(proc.pid, "prometheus-alertmanager")
    wait_until(lambda: get_json(f"{AM}/api/v2/status") is not None, 30, "Alertmanager answered")
    # The always-firing Watchdog, as alerts/watchdog.rules.yml sends it: the page says the pipeline works.
    am_post([{"labels": {"alertname": "Watchdog", "severity": "none", "site": "all"},
              "startsAt": iso(time.time() - 60), "endsAt": iso(time.time() + 3600)}])
    yield rec
    processes.stop([rec])


@pytest.fixture(scope="module")
def noc_lab(lab_up, lab_env, alertmanager, tmp_path_factory):
    lab_up("prometheus", "node-exporter", "snmpsim-switches")
    ctx = LabContext()
    noc_data.write(textfile_dir(ctx))
    env = {**lab_snmp_env()}
    os.environ.update(env)
    d = tmp_path_factory.mktemp("noc")
    doc = lab_config(listen=f"{ports.HOST}:{ports.SNMP_EXPORTER}")
    names = {s.name for s in SWITCHES}
    doc["devices"] = [x for x in doc["devices"] if x["name"] in names]
    doc["alerting"] = {"prometheus_url": PROM, "alertmanager_url": AM}
    doc["noc"] = {"listen": f"{ports.HOST}:{ports.NOC}", "poll_interval_seconds": 2, "evaluation_delay_seconds": 2,
                  "stale_after_seconds": STALE_AFTER, "refresh_seconds": 1, "links_per_site": 3,
                  "chart_minutes": 5, "chart_step_seconds": 15}
    cfg = d / "citydc.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
    exporter = processes.spawn([CITYDC, "-c", str(cfg), "collect", "snmp"], log_path=d / "exporter.log", env=env)
    sd = file_sd_dir(ctx) / SD_FILE
    res = execute.run("citydc", (CITYDC, "-c", str(cfg), "collect", "snmp-targets", "-o", str(sd)), env=env,
                      timeout=60)
    assert res.ok, res.masked_stderr()
    server = processes.spawn([CITYDC, "-c", str(cfg), "noc", "serve"], log_path=d / "noc.log", env=env)
    records = [processes.record(exporter.pid, "citydc collect snmp"), processes.record(server.pid, "citydc noc")]
    try:
        # Both sites' uplinks have a 5-minute rate (two scrapes and a rule evaluation), and the page has them.
        wait_until(lambda: {r["metric"]["site"] for r in query(f'{UTIL}{{ifAlias=~"(?i).*uplink.*"}}')}
                   == {"siwei", "fengshan"}, 90, "Prometheus recorded link utilisation of both sites")
        wait_until(lambda: {x["site"] for x in noc()["links"]} == {"siwei", "fengshan"}, 30,
                   "the NOC page has links of both sites")
        # A freshly started exporter walks each switch's static columns first and may miss a few 2 s scrapes:
        # the lab is ready when the network of both sites is answering (OK) on the page.
        wait_until(lambda: {noc()["matrix"][s]["network"]["status"] for s in ("siwei", "fengshan")} == {"ok"}, 60,
                   "the network tier of both sites is OK on the NOC page")
        yield {"dir": d, "log": d / "noc.log"}
    finally:
        processes.stop(records)
        sd.unlink(missing_ok=True)


def test_page_is_served_with_local_assets_and_csp(noc_lab):
    with urllib.request.urlopen(NOC + "/", timeout=10) as resp:  # noqa: S310 - loopback lab URL
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == CSP
        page = resp.read().decode()
    assert '<script src="/noc.js"' in page and "網路維運中心" in page


def test_data_endpoint_equals_independent_queries(noc_lab):
    data = noc()
    links = data["links"]
    at = data["sources"]["links"]["fetched_at"]
    assert {x["site"] for x in links} == {"siwei", "fengshan"}
    for link in links:
        sel = (f'site="{link["site"]}",device="{link["device"]}",ifName="{link["ifName"]}",'
               f'direction="{link["direction"]}"')
        (util,) = query(f"{UTIL}{{{sel}}}", at)
        (bits,) = query(f"{BITS}{{{sel}}}", at)
        # The interface's speed series: every label of the utilisation series but direction.
        speed_sel = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in util["metric"].items()
                             if k not in ("__name__", "direction"))
        (speed,) = query(f"citydc_snmp_if_speed_bits_per_second{{{speed_sel}}}", at)
        # Same quantity and unit as Prometheus: the share of the speed (0-1), exactly.
        assert link["utilisation_ratio"] == float(util["value"][1])
        assert link["bits_per_second"] == float(bits["value"][1])
        assert 0 < link["utilisation_ratio"] <= 1
        # ... and that share is bits/s over the speed (not %, not bytes): the unit is right.
        assert link["utilisation_ratio"] * float(speed["value"][1]) == pytest.approx(link["bits_per_second"],
                                                                                     rel=1e-9), (link, util, speed)
        # The chart: the same expression over the window; its last point is the value beside it.
        rng = get_json(f"{PROM}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": f"{UTIL}{{{sel}}}", "start": f"{at - 300:.3f}", "end": f"{at:.3f}", "step": "15"}))
        (series,) = rng["data"]["result"]
        assert link["series"] == [[float(t), float(v)] for t, v in series["values"]]
        assert link["series"][-1] == [at, link["utilisation_ratio"]]
    backups = {(b["site"], b["job"], b["repo"], b["step"]): b["last_success"] for b in data["backups"]}
    at_b = data["sources"]["backups"]["fetched_at"]
    expected = {(r["metric"]["site"], r["metric"]["job"], r["metric"]["repo"], r["metric"]["step"]):
                float(r["value"][1]) for r in query("citydc_backup_last_success_timestamp_seconds", at_b)}
    assert backups == expected and len(backups) == 4
    late = {(b["site"], b["step"]) for b in data["backups"] if b["overdue"]}
    assert late == {("fengshan", "copy")}
    audit = {(a["site"], a["source"]): a["findings"] for a in data["audit"]}
    at_a = data["sources"]["audit"]["fetched_at"]
    for r in query("citydc_ldap_audit_findings", at_a):
        assert audit[(r["metric"]["site"], r["metric"]["source"])][r["metric"]["severity"]] == float(r["value"][1])
    assert {fp["fingerprint"] for fp in data["alerts"]} == {a["fingerprint"] for a in am_active()
                                                            if a["labels"].get("alertname") != "Watchdog"}
    assert data["watchdog"] is True and "Watchdog" not in {a["alertname"] for a in data["alerts"]}
    for site in ("siwei", "fengshan"):
        row = data["matrix"][site]
        assert set(row) == {"network", "lb", "virt", "backup", "identity", "seclog"}
        assert row["network"]["status"] == "ok" and row["backup"]["status"] == "ok", row
        assert row["lb"]["status"] == "nodata"


def test_identity_rules_read_the_audit_metrics_node_exporter_serves(noc_lab):
    """alerts/identity.rules.yml on the lab Prometheus over the audit metrics of lab/noc_data.py (written by the
    real writer, served by node_exporter): Siwei's directory has a critical finding, Fengshan's none."""
    def sites() -> set[str]:
        return {r["metric"]["site"] for r in query('ALERTS{alertname="LdapAuditCriticalFindings"}')}
    wait_until(lambda: sites(), 30, "LdapAuditCriticalFindings pending or firing")
    assert sites() == {"siwei"}
    (alert,) = query('ALERTS{alertname="LdapAuditCriticalFindings"}')
    assert alert["metric"]["source"] == "ldap-siwei" and alert["metric"]["severity"] == "warning"


def test_alert_appears_on_the_page_and_clears(noc_lab, tmp_path):
    now = time.time()
    alert = {"labels": {"alertname": "LinkUtilisationHigh", "severity": "warning", "site": "fengshan",
                        "device": "sw-fengshan-acc1", "ifName": "Te1/1/1", "direction": "in"},
             "annotations": {"summary": "sw-fengshan-acc1 Te1/1/1 (in) at 93% of its speed"},
             "startsAt": iso(now - 60), "endsAt": iso(now + 3600)}
    am_post([alert])
    wait_until(lambda: any(a["alertname"] == "LinkUtilisationHigh" for a in noc()["alerts"]), 30,
               "the alert reached the NOC data")
    (fp,) = [a["fingerprint"] for a in am_active() if a["labels"]["alertname"] == "LinkUtilisationHigh"]
    data = noc()
    assert data["matrix"]["fengshan"]["network"]["status"] == "warning", data["matrix"]["fengshan"]["network"]
    assert data["matrix"]["siwei"]["network"]["status"] == "ok", data["matrix"]["siwei"]["network"]
    dom = rendered(tmp_path, "noc-alert.png")
    assert f'data-fingerprint="{fp}"' in dom
    assert "sw-fengshan-acc1 Te1/1/1 (in) at 93% of its speed" in dom
    assert cell(dom, "fengshan", "network") == "warning" and cell(dom, "siwei", "network") == "ok"
    assert "WARNING 警告" in dom and "四維" in dom and "鳳山" in dom
    # The charts on the page carry Prometheus' numbers: each value shown equals the utilisation query at
    # the evaluation time the page says it drew (the same quantity and unit, exactly), in % with one decimal.
    at = float(re.search(r'id="links" class="links" data-at="([^"]+)"', dom).group(1))
    blocks = re.findall(r'<div class="link" (.*?)</svg></div>', dom, re.S)
    assert {attr(b, "data-site") for b in blocks} == {"siwei", "fengshan"}, "no link chart of both sites on the page"
    for block in blocks:
        sel = (f'site="{attr(block, "data-site")}",device="{attr(block, "data-device")}",'
               f'ifName="{attr(block, "data-ifname")}",direction="{attr(block, "data-direction")}"')
        (util,) = query(f"{UTIL}{{{sel}}}", at)
        expected = float(util["value"][1])
        assert float(attr(block, "data-value")) == expected, sel
        assert re.search(r'<span class="now[^"]*">([^<]+)</span>', block).group(1) == f"{expected * 100:.1f} %"
        # The drawn line ends at that value: its last point is the same number, at the height of that share
        # of the chart (70 units high, 0 at the bottom).
        points = re.search(r'<polyline class="line" points="([^"]+)" data-last="([^"]+)"', block)
        assert points, f"no chart line for {sel}"
        assert float(points.group(2)) == expected
        last_y = float(points.group(1).split()[-1].split(",")[1])
        assert last_y == pytest.approx(70 - min(1.0, expected) * 70, abs=0.051)

    am_post([dict(alert, endsAt=iso(time.time() - 1))])  # resolved
    wait_until(lambda: not any(a["alertname"] == "LinkUtilisationHigh" for a in noc()["alerts"]), 30,
               "the resolved alert left the NOC data")
    dom = rendered(tmp_path, "noc-resolved.png")
    assert f'data-fingerprint="{fp}"' not in dom
    assert cell(dom, "fengshan", "network") == "ok"


def test_stale_data_says_stale(noc_lab, alertmanager, tmp_path):
    processes.stop([alertmanager])  # Alertmanager gone: the alerts section ages past stale_after
    wait_until(lambda: noc()["sources"]["alerts"]["stale"], STALE_AFTER + 20, "the alerts went stale")
    data = noc()
    assert {c["status"] for row in data["matrix"].values() for c in row.values()} == {"stale"}
    assert "unreachable" in data["sources"]["alerts"]["error"]
    dom = rendered(tmp_path, "noc-stale.png")
    assert cell(dom, "siwei", "network") == "stale" and cell(dom, "fengshan", "backup") == "stale"
    assert "STALE 資料過時" in dom
    assert "OK 正常</td>" not in dom

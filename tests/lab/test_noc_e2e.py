"""The NOC's first promise, end to end on real parts (issue 13, first "Must show"): a link driven over
its threshold in the lab fires the alert through Prometheus and Alertmanager to the webhook, into the
security log and onto the NOC page in a browser; when it clears, the resolved notification is recorded
and the page turns back.

The link is real: the lab's ``busy-link`` (lab/busy_link.py) is a veth pair into a network namespace;
the test sends bounded UDP traffic across it (about 60 Mb/s for at most 90 s). net-snmp ``snmpd`` counts
the host end's octets, ``citydc collect snmp`` polls snmpd, the lab Prometheus scrapes it through the
file_sd ``citydc collect snmp-targets`` writes and evaluates ``LinkUtilisationHigh`` at lab scale for
that interface (over 0.2% of the veth's 10 Gb/s over 15 s, for 4 s: lab/prometheus.py derives it from
the production rule), sends it to the lab's Alertmanager (config by ``citydc alerts amconfig``), which
posts to ``citydc alerts webhook``, which records it in the security log (read back with ``citydc log
search --action alert-notification``). ``citydc noc serve`` reads the same Prometheus and Alertmanager;
the page runs in headless Chromium (Debian ``chromium`` driven by Debian ``chromium-driver`` through
selenium, one page left open: it refreshes itself). Screenshots: ``artifacts/noc/noc-e2e-*.png``.

Wall time of the test itself (after the fixture): about a minute; every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService

from citydc.lab import ports, processes
from citydc.lab.alertmanager import alerts_config
from citydc.lab.base import LabContext
from citydc.lab.busy_link import HOST_IF, drive
from citydc.lab.prometheus import LAB_LINK_THRESHOLD, file_sd_dir, query

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "noc"
PROM = f"http://{ports.HOST}:{ports.PROMETHEUS}"
AM = f"http://{ports.HOST}:{ports.ALERTMANAGER}"
NOC = f"http://{ports.HOST}:{ports.NOC}"
DEVICE = "siwei-lab-host"
SITE = "siwei"
SD_FILE = "citydc-snmp-noc-e2e.json"
LAB_UTIL = "link:citydc_snmp_if_utilisation:ratio_rate15s"
SPEED = 10e9  # what snmpd reports for a veth (ifHighSpeed 10000): checked below
RATE = 60e6   # bits/s of payload the test sends: 3x the lab threshold of 0.2% of 10 Gb/s
MAX_SECONDS = 90  # the traffic stops by itself after this, whatever the test does


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback lab URL
        return json.load(resp)


def if_index() -> str:
    """The busy link's host end as snmpd numbers it now: each new namespace makes a new veth, a new ifIndex."""
    return Path(f"/sys/class/net/{HOST_IF}/ifindex").read_text().strip()


def ours(labels: dict) -> bool:
    """Whether an alert's labels are LinkUtilisationHigh of this busy link (not of an earlier veth, nor of
    another interface of the same host, such as its loopback)."""
    return (labels.get("alertname") == "LinkUtilisationHigh" and labels.get("device") == DEVICE
            and labels.get("ifName") == HOST_IF and labels.get("ifIndex") == if_index())


def prom_alerts() -> list[dict]:
    """Prometheus' active alerts of the busy link (pending or firing)."""
    return [a for a in get_json(f"{PROM}/api/v1/alerts")["data"]["alerts"] if ours(a["labels"])]


def am_alerts() -> list[dict]:
    """Alertmanager's active alerts of the busy link."""
    q = urllib.parse.urlencode({"active": "true", "silenced": "false", "inhibited": "false"})
    return [a for a in get_json(f"{AM}/api/v2/alerts?{q}") if ours(a["labels"])]


def notifications(cfg: Path, since: datetime) -> list[dict]:
    """Ship the spool; return the alert-notification events of the busy link's alerts that started after
    ``since``, found by ``citydc log search --action alert-notification``."""
    ship = subprocess.run([CITYDC, "-c", str(cfg), "log", "ship"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert ship.returncode == 0, ship.stderr
    after = (since - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    found = subprocess.run([CITYDC, "-c", str(cfg), "log", "search", "--action", "alert-notification",
                            "--site", SITE, "--since", after, "--oldest-first", "--ndjson"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert found.returncode == 0, found.stderr
    out = []
    for line in found.stdout.splitlines():
        event = json.loads(line)
        detail = event["citydc"]["alerts"]
        if (ours(detail["labels"])
                and datetime.fromisoformat(detail["starts_at"]) >= since - timedelta(seconds=5)):
            out.append(event)
    return out


def selector() -> str:
    return f'device="{DEVICE}",ifName="{HOST_IF}",ifIndex="{if_index()}",direction="out"'


def tx_bytes() -> int:
    return int(Path(f"/sys/class/net/{HOST_IF}/statistics/tx_bytes").read_text())


@pytest.fixture(scope="module")
def e2e_lab(lab_up, lab_env, tmp_path_factory):
    """The lab's busy link, snmpd, webhook, Alertmanager and Prometheus; this module's exporter (polling
    snmpd) and NOC server (reading the lab's Prometheus and Alertmanager)."""
    lab_up("busy-link", "snmpd", "alert-webhook", "alertmanager", "prometheus")
    ctx = LabContext()
    d = tmp_path_factory.mktemp("noc-e2e")
    doc = {
        "sites": [{"id": "siwei", "name": "四維 Siwei"}, {"id": "fengshan", "name": "鳳山 Fengshan"}],
        "snmp_auth": {"lab-v2c": {"version": "2c", "community": "env:CITYDC_SNMP_COMMUNITY"}},
        "devices": [{"name": DEVICE, "address": f"{ports.HOST}:{ports.SNMPD}", "site": SITE, "role": "server",
                     "snmp_auth": "lab-v2c"}],
        "snmp": {"listen": f"{ports.HOST}:{ports.SNMP_EXPORTER}"},
        "alerting": {"prometheus_url": PROM, "alertmanager_url": AM},
        "noc": {"listen": f"{ports.HOST}:{ports.NOC}", "poll_interval_seconds": 2, "evaluation_delay_seconds": 2,
                "stale_after_seconds": 12, "refresh_seconds": 1, "links_per_site": 2, "chart_minutes": 5,
                "chart_step_seconds": 5, "link_selector": f'ifName="{HOST_IF}"'},
    }
    cfg = d / "citydc.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
    env = {"CITYDC_SNMP_COMMUNITY": ports.LAB_ENV["CITYDC_SNMP_COMMUNITY"]}
    exporter = processes.spawn([CITYDC, "-c", str(cfg), "collect", "snmp"], log_path=d / "exporter.log", env=env)
    records = [processes.record(exporter.pid, "citydc collect snmp")]
    sd = file_sd_dir(ctx) / SD_FILE
    try:
        res = subprocess.run([CITYDC, "-c", str(cfg), "collect", "snmp-targets", "-o", str(sd)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        server = processes.spawn([CITYDC, "-c", str(cfg), "noc", "serve"], log_path=d / "noc.log", env=env)
        records.append(processes.record(server.pid, "citydc noc"))
        # The busy link's interface is polled and has a lab-scale utilisation (two scrapes within 15 s).
        speed_of = (f'citydc_snmp_if_speed_bits_per_second{{device="{DEVICE}",ifName="{HOST_IF}",'
                    f'ifIndex="{if_index()}"}}')
        speed = wait_for(lambda: query(speed_of), 90, "Prometheus has the busy link's speed from snmpd")
        assert float(speed[0]["value"][1]) == SPEED
        wait_for(lambda: query(f"{LAB_UTIL}{{{selector()}}}"), 60,
                 "Prometheus has the busy link's lab-scale utilisation")
        yield {"dir": d, "log_config": alerts_config(ctx)}
    finally:
        processes.stop(records)
        sd.unlink(missing_ok=True)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (Debian) driven by Debian's chromedriver through selenium: no browser download."""
    assert Path(CHROMEDRIVER).exists(), "no chromedriver: apt-get install chromium-driver (lab/apt-packages.txt)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1920,1080",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    service = ChromeService(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"),
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def page_state(driver) -> dict:
    """What the open page shows now: its poll count, the alert rows (fingerprint -> text) and the network
    cell of the busy link's site."""
    return driver.execute_script("""
        const rows = {};
        for (const li of document.querySelectorAll('#alerts li[data-fingerprint]'))
            rows[li.getAttribute('data-fingerprint')] = li.textContent;
        const cell = document.querySelector('td[data-site="' + arguments[0] + '"][data-tier="network"]');
        return {polls: Number(document.body.getAttribute('data-polls') || 0), rows: rows,
                network: cell ? cell.getAttribute('data-status') : null};
    """, SITE)


def test_link_over_threshold_fires_to_the_log_and_the_page_and_clears(e2e_lab, browser):
    begun = time.monotonic()
    log_cfg = e2e_lab["log_config"]
    # Quiet first: the link is under the threshold and nothing fires for it.
    wait_for(lambda: not prom_alerts() and not am_alerts(), 60, "no LinkUtilisationHigh of the busy link before")
    (util,) = query(f"{LAB_UTIL}{{{selector()}}}")
    assert float(util["value"][1]) < LAB_LINK_THRESHOLD, util
    browser.get(NOC + "/")
    wait_for(lambda: page_state(browser)["polls"] > 0, 30, "the page drew the NOC data")
    # The site's network cell before: OK on a quiet lab. Alerts other tests left behind (a counter-reset
    # storm of a rebooted simulator fires for an hour) may hold it at WARNING; it must come back to that.
    settle = time.monotonic() + 20
    while (baseline := page_state(browser)["network"]) != "ok" and time.monotonic() < settle:
        time.sleep(0.5)
    assert baseline in ("ok", "warning", "critical"), baseline
    started = datetime.now(UTC)

    stop, sent, tx0 = threading.Event(), [], tx_bytes()
    sender = threading.Thread(target=lambda: sent.append(drive(RATE, MAX_SECONDS, stop)), daemon=True)
    sender.start()
    try:
        # Prometheus: the lab-scale rule fires for the busy link, direction out (host -> namespace).
        firing = wait_for(lambda: [a for a in prom_alerts() if a["state"] == "firing"], 60,
                          "Prometheus fired LinkUtilisationHigh for the busy link")
        assert firing[0]["labels"]["direction"] == "out" and firing[0]["labels"]["site"] == SITE
        assert firing[0]["labels"]["scale"] == "lab" and float(firing[0]["value"]) > LAB_LINK_THRESHOLD
        # Alertmanager has it; its fingerprint is what the webhook records and the page shows.
        (am_alert,) = wait_for(am_alerts, 30, "Alertmanager has the alert")
        fp = am_alert["fingerprint"]
        fired = wait_for(lambda: [e for e in notifications(log_cfg, started)
                                  if e["citydc"]["alerts"]["status"] == "firing"], 30,
                         "the webhook recorded the firing notification in the security log")
        assert [e["citydc"]["alerts"]["fingerprint"] for e in fired] == [fp]
        assert fired[0]["labels"]["site"] == SITE and fired[0]["rule"]["name"] == "LinkUtilisationHigh"
        assert fired[0]["citydc"]["alerts"]["receiver"] == "noc"
        # The open page (it refreshes itself) lists the alert and marks the site's network WARNING (or
        # worse, if something else was critical already).
        shown = wait_for(lambda: (s := page_state(browser))["rows"].get(fp) is not None
                         and s["network"] == ("critical" if baseline == "critical" else "warning") and s, 30,
                         "the page shows the alert")
        assert DEVICE in shown["rows"][fp] and HOST_IF in shown["rows"][fp] and "WARNING" in shown["rows"][fp]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "noc-e2e-firing.png"))
    finally:
        stop.set()
        sender.join(timeout=15)
    stopped = time.monotonic()
    # The traffic really crossed the link: the kernel's counter of the host end moved by at least it.
    assert sent and sent[0] > 0 and tx_bytes() - tx0 >= sent[0]

    # It clears: the resolved notification is recorded (once, after the firing one) and the page turns back.
    resolved = wait_for(lambda: [e for e in notifications(log_cfg, started)
                                 if e["citydc"]["alerts"]["status"] == "resolved"], 90,
                        "the webhook recorded the resolved notification")
    assert [e["citydc"]["alerts"]["fingerprint"] for e in resolved] == [fp]
    back = wait_for(lambda: (s := page_state(browser))["rows"].get(fp) is None and s["network"] == baseline and s,
                    30, f"the page turned back ({SITE}'s network {baseline!r} again)")
    assert back["polls"] > shown["polls"]  # the same page, redrawn from newer polls
    assert browser.save_screenshot(str(ARTIFACTS / "noc-e2e-resolved.png"))
    assert not am_alerts()
    events = notifications(log_cfg, started)
    assert [e["citydc"]["alerts"]["status"] for e in sorted(events, key=lambda e: e["@timestamp"])] == [
        "firing", "resolved"]
    print(f"\nnoc e2e: {SITE} network {baseline} before; fired and shown within {stopped - begun:.0f} s of the start, "
          f"cleared {time.monotonic() - stopped:.0f} s after the traffic stopped")

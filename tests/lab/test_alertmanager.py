"""Alertmanager (Debian) with the config ``citydc alerts amconfig`` generates, and ``citydc alerts webhook``
recording every notification in the security log exactly once (issue 13 item 2; issue 17 item 3).

The whole path runs on real parts: the lab's Prometheus evaluates alerts/ and a lab rule, sends to the
lab's Alertmanager, which posts with basic auth to the webhook, which records in the spool; ``citydc log
ship`` and ``citydc log search --action alert-notification`` read it back. The retry test puts a small
proxy between a private Alertmanager and the real webhook that answers 500 to the first delivery after
the webhook has recorded it, so Alertmanager delivers the same notification again.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from citydc.config.models import Backup, Receiver, WebhookTarget
from citydc.config.sample import render
from citydc.lab import ports
from citydc.lab.alertmanager import AMTOOL, Alertmanager, alerts_config, am_api
from citydc.lab.base import LabContext
from citydc.lab.config import WEBHOOK_USER, lab_config
from citydc.secrets import SecretRef

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
WEBHOOK = f"http://{ports.HOST}:{ports.ALERT_WEBHOOK}/alerts"
PROMETHEUS = f"http://{ports.HOST}:{ports.PROMETHEUS}"
PASSWORD = ports.LAB_ENV["CITYDC_WEBHOOK_PASSWORD"]


@pytest.fixture(scope="module")
def alert_lab(lab_up, lab_env) -> Path:
    """Start the webhook, Alertmanager and Prometheus; return the config they run on."""
    lab_up("alert-webhook", "alertmanager", "prometheus")
    return alerts_config(LabContext())


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def events(cfg: Path, action: str) -> list[dict]:
    """Ship the spool, then return every event of ``action`` (full ECS documents) from the security log."""
    ship = subprocess.run([CITYDC, "-c", str(cfg), "log", "ship"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert ship.returncode == 0, ship.stderr
    found = subprocess.run([CITYDC, "-c", str(cfg), "log", "search", "--action", action, "--ndjson"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert found.returncode == 0, found.stderr
    return [json.loads(line) for line in found.stdout.splitlines() if line.strip()]


def notifications(cfg: Path, **labels: str) -> list[dict]:
    """The alert-notification events whose alert carries all of ``labels``."""
    return [e for e in events(cfg, "alert-notification")
            if all(e["citydc"]["alerts"]["labels"].get(k) == v for k, v in labels.items())]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def post_alerts(alerts: list[dict], base: str = f"http://{ports.HOST}:{ports.ALERTMANAGER}") -> None:
    am_api("/api/v2/alerts", base, alerts)


def alert(name: str, run: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "run": run, "severity": "critical", **labels},
            "annotations": {"summary": f"{name} (lab test)"}, "startsAt": iso(datetime.now(UTC))}


def post_webhook(body: bytes, auth: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    req = urllib.request.Request(WEBHOOK, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_amtool_accepts_the_generated_config_and_no_password_is_in_it(alert_lab):
    am_dir = LabContext().service_dir("alertmanager")
    config = am_dir / "alertmanager.yml"
    result = subprocess.run([AMTOOL, "check-config", str(config)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    text = config.read_text()
    assert PASSWORD not in text
    assert "password_file:" in text and "inhibit_rules:" in text
    password_file = am_dir / "secrets" / "noc-0.password"
    assert password_file.read_text() == PASSWORD
    assert password_file.stat().st_mode & 0o077 == 0


def test_alert_posted_to_alertmanager_is_recorded_once_firing_and_once_resolved(alert_lab):
    run = uuid.uuid4().hex[:12]
    probe = alert("LabProbe", run, site="siwei")
    post_alerts([probe])
    firing = wait_for(lambda: [e for e in notifications(alert_lab, run=run) if e["citydc"]["alerts"]["status"]
                               == "firing"], 30, "the firing notification was not recorded")
    detail = firing[0]["citydc"]["alerts"]
    assert detail["receiver"] == "noc" and len(detail["fingerprint"]) == 16
    assert detail["group_key"] and detail["starts_at"]
    assert firing[0]["labels"]["site"] == "siwei" and firing[0]["rule"]["name"] == "LabProbe"
    # Alertmanager re-sends the still-firing alert on every group change; posting it again re-sends too.
    post_alerts([probe])
    time.sleep(6)
    post_alerts([{**probe, "endsAt": iso(datetime.now(UTC))}])
    wait_for(lambda: [e for e in notifications(alert_lab, run=run) if e["citydc"]["alerts"]["status"]
                      == "resolved"], 30, "the resolved notification was not recorded")
    time.sleep(5)  # more group intervals: nothing more may be recorded
    statuses = sorted(e["citydc"]["alerts"]["status"] for e in notifications(alert_lab, run=run))
    assert statuses == ["firing", "resolved"]


class FlakyProxy:
    """Forwards posts to the real webhook; answers 500 to the first one after the webhook recorded it."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.answers: list[int] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = urllib.request.Request(WEBHOOK, data=body, headers={
                    "Content-Type": "application/json", "Authorization": self.headers.get("Authorization", "")})
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                        status = resp.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                proxy.posts.append(json.loads(body))
                answer = 500 if len(proxy.posts) == 1 and status == 200 else status
                proxy.answers.append(answer)
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((ports.HOST, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ports.HOST, 0))
        return s.getsockname()[1]


def private_alertmanager(tmp_path: Path, name: str, url: str, password: str | None = None) -> Alertmanager:
    """Given a webhook URL, return a started Alertmanager of its own (own name, directory and port) whose
    config ``citydc alerts amconfig --check`` generated, with the lab's webhook user and ``password``
    (default: the lab's, from the environment)."""
    ctx = LabContext()
    cfg = lab_config(ctx.root.absolute())
    ref = cfg.alerting.receivers[0].webhooks[0].password
    env = {**os.environ, **ports.LAB_ENV}
    if password is not None:
        (tmp_path / "wrong.password").write_text(password)
        ref = SecretRef.parse(f"file:{tmp_path / 'wrong.password'}")
    hook = WebhookTarget(url=url, username=WEBHOOK_USER, password=ref)
    cfg = cfg.model_copy(update={"backup": Backup(), "alerting": cfg.alerting.model_copy(update={
        "receivers": [Receiver(name=name, webhooks=[hook])], "default_receiver": name, "routes": []})})
    cfg_path = tmp_path / "citydc.yaml"
    cfg_path.write_text(render(cfg, f"# lab test: receiver {name}\n"))
    cfg_path.chmod(0o600)
    gen = subprocess.run([CITYDC, "-c", str(cfg_path), "alerts", "amconfig", "--output", str(tmp_path / "am.yml"),
                          "--check"], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert gen.returncode == 0, gen.stderr
    am = Alertmanager(name=f"alertmanager-{name}", port=free_port(), config=tmp_path / "am.yml")
    am.up(ctx)
    return am


def test_alertmanager_retrying_a_delivery_records_it_once(alert_lab, tmp_path):
    proxy = FlakyProxy()
    am = private_alertmanager(tmp_path, "noc-retry", f"http://{ports.HOST}:{proxy.port}/alerts")
    try:
        run = uuid.uuid4().hex[:12]
        post_alerts([alert("LabRetry", run, site="siwei")], base=f"http://{ports.HOST}:{am.port}")
        wait_for(lambda: len(proxy.answers) >= 2 and proxy.answers[-1] == 200, 60,
                 "Alertmanager did not deliver again after the 500")
    finally:
        am.down(LabContext())
        proxy.server.shutdown()
    assert proxy.answers[0] == 500
    fingerprints = [[a["fingerprint"] for a in p["alerts"]] for p in proxy.posts]
    assert fingerprints[0] == fingerprints[1]  # the same notification delivered twice
    recorded = notifications(alert_lab, run=run)
    assert [e["citydc"]["alerts"]["receiver"] for e in recorded] == ["noc-retry"]


def test_alertmanager_with_a_wrong_password_is_refused_and_recorded(alert_lab, tmp_path):
    before = len(events(alert_lab, "alert-webhook-denied"))
    am = private_alertmanager(tmp_path, "noc-wrong", WEBHOOK, password="not-the-webhook-password")
    try:
        run = uuid.uuid4().hex[:12]
        post_alerts([alert("LabWrongPassword", run, site="siwei")], base=f"http://{ports.HOST}:{am.port}")

        def refused() -> list[dict]:
            found = events(alert_lab, "alert-webhook-denied")[before:]
            return [e for e in found if e["citydc"]["alerts"]["reason"] == "bad_credentials"]

        denied = wait_for(refused, 30, "the refused Alertmanager posts were not recorded")
    finally:
        am.down(LabContext())
    assert denied[0]["source"]["ip"] == ports.HOST
    assert "not-the-webhook-password" not in json.dumps(denied)
    assert notifications(alert_lab, run=run) == []


def test_inhibition_across_sites(alert_lab):
    run = uuid.uuid4().hex[:12]
    link = alert("UplinkDown", run, site="siwei", device="sw-siwei-core1", role="core",
                 ifName="Te1/0/48", ifAlias="uplink inter-site to fengshan")
    far_device = alert("SnmpTargetDown", run, site="fengshan", device="sw-fengshan-acc1", role="access")
    far_backup = alert("BackupNotSucceeded", run, site="fengshan", job="fengshan-device-configs")
    near_device = alert("InterfaceErrors", run, site="siwei", device="sw-siwei-acc1", role="access")
    near_backup = alert("BackupNotSucceeded", run, site="siwei", job="siwei-ldap")
    every = [link, far_device, far_backup, near_device, near_backup]
    post_alerts(every)
    try:
        def state() -> dict[tuple[str, str], list[str]]:
            got = am_api(f"/api/v2/alerts?filter=run%3D%22{run}%22")
            return {(a["labels"]["alertname"], a["labels"]["site"]): a["status"]["inhibitedBy"] for a in got}

        wait_for(lambda: len(state()) == 5 and state()[("SnmpTargetDown", "fengshan")], 15,
                 "Alertmanager did not inhibit")
        inhibited = state()
        assert inhibited[("SnmpTargetDown", "fengshan")]  # far site, by the inter-site link
        assert inhibited[("BackupNotSucceeded", "fengshan")]  # far site, not a device alert
        # The home site's own devices are still seen from home: the inter-site link explains nothing there.
        assert not inhibited[("InterfaceErrors", "siwei")]
        assert not inhibited[("BackupNotSucceeded", "siwei")]  # home site, not a device alert
        assert not inhibited[("UplinkDown", "siwei")]
        # Receiver side: the inhibited alerts are never notified, the others are.
        wait_for(lambda: {e["rule"]["name"] for e in notifications(alert_lab, run=run)}
                 == {"UplinkDown", "BackupNotSucceeded", "InterfaceErrors"}, 30,
                 "the uninhibited alerts were not recorded")
        time.sleep(5)
        recorded = {(e["rule"]["name"], e["labels"]["site"]) for e in notifications(alert_lab, run=run)}
        assert recorded == {("UplinkDown", "siwei"), ("BackupNotSucceeded", "siwei"), ("InterfaceErrors", "siwei")}
    finally:
        ended = iso(datetime.now(UTC) - timedelta(seconds=1))
        post_alerts([{**a, "endsAt": ended} for a in every])


def test_post_without_credentials_is_refused_and_recorded(alert_lab):
    before = len(events(alert_lab, "alert-webhook-denied"))
    body = json.dumps({"version": "4", "status": "firing", "receiver": "x", "groupKey": "k", "alerts": []}).encode()
    assert post_webhook(body, None) == 401
    wrong = f"{WEBHOOK_USER}:not-the-{uuid.uuid4().hex}"
    assert post_webhook(body, wrong) == 401
    def recorded() -> list[dict]:
        found = events(alert_lab, "alert-webhook-denied")
        return found if len(found) >= before + 2 else []

    denied = wait_for(recorded, 15, "the refused posts were not recorded")
    reasons = {e["citydc"]["alerts"]["reason"] for e in denied}
    assert {"no_credentials", "bad_credentials"} <= reasons
    assert all(e["source"]["ip"] == ports.HOST for e in denied)
    assert wrong.split(":")[1] not in json.dumps(denied)


def lab_rule_active() -> bool:
    got = json.load(urllib.request.urlopen(f"{PROMETHEUS}/api/v1/alerts", timeout=10))  # noqa: S310
    return any(a["labels"]["alertname"] == "LabWebhookBadRequest" for a in got["data"]["alerts"])


def notification_counts() -> tuple[float, float]:
    """Return Prometheus' notifications sent and notification errors so far (its process's counters)."""
    metrics = urllib.request.urlopen(f"{PROMETHEUS}/metrics", timeout=10).read().decode()  # noqa: S310

    def total(name: str) -> float:
        found = [line for line in metrics.splitlines() if line.startswith(name + "{")]
        assert found, name
        return sum(float(line.rsplit(" ", 1)[1]) for line in found)

    return total("prometheus_notifications_sent_total"), total("prometheus_notifications_errors_total")


def test_prometheus_fires_through_alertmanager_to_the_security_log_and_resolves(alert_lab):
    # A malformed post of an earlier run keeps the lab rule firing for 20 s: start from quiet.
    wait_for(lambda: not lab_rule_active(), 60, "the lab rule did not go quiet")
    # Counted from here: on a reused lab, an earlier test that stopped Alertmanager left errors in the counter.
    sent_before, errors_before = notification_counts()
    started = datetime.now(UTC)
    ams = json.load(urllib.request.urlopen(f"{PROMETHEUS}/api/v1/alertmanagers", timeout=10))  # noqa: S310
    assert [a["url"] for a in ams["data"]["activeAlertmanagers"]] == [
        f"http://{ports.HOST}:{ports.ALERTMANAGER}/api/v2/alerts"]
    # The Watchdog always fires: it reaches the security log through the whole path.
    wait_for(lambda: [e for e in notifications(alert_lab, alertname="Watchdog")], 60,
             "Watchdog never reached the security log")
    # One malformed post (with credentials: 400) fires the lab rule LabWebhookBadRequest for 20 s.
    assert post_webhook(b'{"version": "4"}', f"{WEBHOOK_USER}:{PASSWORD}") == 400

    def lab_rule(status: str) -> list[dict]:
        return [e for e in notifications(alert_lab, alertname="LabWebhookBadRequest")
                if e["citydc"]["alerts"]["status"] == status
                and datetime.fromisoformat(e["citydc"]["alerts"]["starts_at"]) >= started - timedelta(seconds=5)]

    firing = wait_for(lambda: lab_rule("firing"), 60, "the lab rule's firing notification was not recorded")
    assert firing[0]["citydc"]["alerts"]["generator_url"].startswith(PROMETHEUS)
    resolved = wait_for(lambda: lab_rule("resolved"), 90, "the lab rule's resolved notification was not recorded")
    assert len(lab_rule("firing")) == 1 and len(resolved) == 1
    assert resolved[0]["citydc"]["alerts"]["fingerprint"] == firing[0]["citydc"]["alerts"]["fingerprint"]
    sent, errors = notification_counts()
    assert sent > sent_before and errors == errors_before


def test_log_search_shows_the_notifications(alert_lab):
    result = subprocess.run([CITYDC, "-c", str(alert_lab), "log", "search", "--action", "alert-notification",
                             "--limit", "5"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("alert-notification") == 5 and "5 event(s)" in result.stderr

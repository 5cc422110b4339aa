"""A Prometheus server (Debian package ``prometheus``) on loopback, scraping the lab's SNMP exporter,
evaluating the repository's ``alerts/*.rules.yml`` (and lab-only rules, below) every 2 s and sending
alerts to the lab's Alertmanager (lab/alertmanager.py).

Its one job, ``citydc_snmp``, is the scrape config ``citydc collect snmp-targets`` prints, reading
the file_sd JSON that command writes into ``file_sd_dir()``. Scrapes every second so tests over
wraps and reboots finish quickly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from citydc.collectors.snmp.targets import scrape_config
from citydc.lab import ports, processes, web_tls
from citydc.lab.base import LabContext, LabError, Service, need_binaries
from citydc.lab.busy_link import HOST_IF as BUSY_LINK_IF
from citydc.lab.haproxy import STATS_PORTS

__all__ = ["LAB_LINK_IFNAME", "Prometheus", "file_sd_dir", "lab_link_rules", "lab_rules_yml", "query"]

PROMETHEUS = "/usr/bin/prometheus"


def file_sd_dir(ctx: LabContext) -> Path:
    path = ctx.service_dir("prometheus") / "file_sd"
    path.mkdir(parents=True, exist_ok=True)
    return path


ALERTS = Path(__file__).resolve().parents[1] / "alerts"  # the repository's rule files (content read by path)

# Lab-only rule: fires while the webhook receiver has refused a malformed post in the last 20 s, so a
# test toggles an alert through the whole path (Prometheus → Alertmanager → webhook → security log)
# by posting one bad payload, and sees it resolve 20 s later.
LAB_RULES = """\
groups:
  - name: citydc-lab
    rules:
      - alert: LabWebhookBadRequest
        expr: increase(citydc_alert_webhook_bad_requests_total[20s]) > 0
        labels:
          severity: critical
          site: siwei
        annotations:
          summary: "The lab's webhook receiver refused a malformed post (lab-only rule)"
          description: "Driven by tests/lab/test_alertmanager.py."
          runbook_url: "docs/alerting.md"
"""

# LinkUtilisationHigh at lab scale, for the lab's busy link only (lab/busy_link.py, interface cdnoc0 of
# the lab's snmpd): the production rule of alerts/snmp.rules.yml with the utilisation over 15 s instead
# of 5 minutes, above 0.2% instead of 80% (a veth reports 10 Gb/s) for 4 s instead of 15 minutes, and
# the label scale="lab". Same name, severity and annotations, so Alertmanager, the webhook and the NOC
# page treat it as they treat the real one. tests/lab/test_noc_e2e.py drives it.
LAB_LINK_IFNAME = BUSY_LINK_IF
LAB_LINK_WINDOW = "15s"
LAB_LINK_THRESHOLD = 0.002
LAB_LINK_FOR = "4s"
PRODUCTION_UTILISATION = "link:citydc_snmp_if_utilisation:ratio_rate5m"
LAB_BITS = "link:citydc_snmp_if_bits:rate15s"
LAB_UTILISATION = "link:citydc_snmp_if_utilisation:ratio_rate15s"


def lab_link_rules(snmp_rules: Path | None = None) -> dict:
    """Given alerts/snmp.rules.yml (default: the repository's), return the rule group of the lab-scale
    LinkUtilisationHigh (see above): its two recording rules and the alert derived from the production one.

    Raise LabError if the production rule is not there or no longer has the shape this derivation reads.
    """
    path = snmp_rules or ALERTS / "snmp.rules.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "LinkUtilisationHigh"]
    if len(found) != 1:
        raise LabError(f"{path}: expected one LinkUtilisationHigh alert, found {len(found)}")
    prod = found[0]
    expr = " ".join(str(prod["expr"]).split())
    if not expr.startswith(f"{PRODUCTION_UTILISATION} > "):
        raise LabError(f"{path}: LinkUtilisationHigh is no longer '{PRODUCTION_UTILISATION} > threshold' "
                       f"({expr!r}): update lab_link_rules() in lab/prometheus.py")
    sel = f'{{ifName="{LAB_LINK_IFNAME}"}}'
    bits = [{"record": LAB_BITS, "expr": f"8 * rate(citydc_snmp_if_{counter}_bytes_total{sel}[{LAB_LINK_WINDOW}])",
             "labels": {"direction": direction}}
            for counter, direction in (("receive", "in"), ("transmit", "out"))]
    util = {"record": LAB_UTILISATION,
            "expr": f"{LAB_BITS} / ignoring(direction) group_left() (citydc_snmp_if_speed_bits_per_second{sel} > 0)"}
    alert = {"alert": "LinkUtilisationHigh", "expr": f"{LAB_UTILISATION} > {LAB_LINK_THRESHOLD}",
             "for": LAB_LINK_FOR, "labels": {**prod.get("labels", {}), "scale": "lab"},
             "annotations": {**prod["annotations"], "description": (
                 f"Lab scale of LinkUtilisationHigh: {{{{ $labels.device }}}} {{{{ $labels.ifName }}}} has carried "
                 f"more than {LAB_LINK_THRESHOLD:.1%} of its speed over {LAB_LINK_WINDOW} in direction "
                 f"{{{{ $labels.direction }}}} for {LAB_LINK_FOR} (lab/prometheus.py).")}}
    return {"name": "citydc-lab-link", "rules": [*bits, util, alert]}


def lab_rules_yml() -> str:
    """Return the lab-only rule file: LabWebhookBadRequest and the lab-scale LinkUtilisationHigh."""
    doc = yaml.safe_load(LAB_RULES)
    doc["groups"].append(lab_link_rules())
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=200)

def prometheus_yml(file_sd: Path, exporter: str, rule_files: list[str] | None = None,
                   alertmanager: str | None = None, webhook_job: str = "") -> str:
    """Given the file_sd folder and the exporter's host:port (the rule files, Alertmanager's host:port and
    an extra scrape job), return prometheus.yml."""
    text = "global:\n  scrape_interval: 1s\n  evaluation_interval: 2s\n"
    if rule_files:
        text += "rule_files:\n" + "".join(f"  - {json.dumps(f)}\n" for f in rule_files)
    if alertmanager:
        text += f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{json.dumps(alertmanager)}]\n"
    return (text + "scrape_configs:\n"
            # 2 s, not 1 s: the lab's five simulated switches (one pure-Python snmpsim, about 0.25 s of its CPU per
            # poll) cannot all answer every second, and a scrape cut at the exporter's deadline (timeout - 0.5 s)
            # left the NOC test's link charts empty on a loaded machine.
            + scrape_config(f"{file_sd}/*.json", exporter, scrape_interval="2s", scrape_timeout="2s") + webhook_job
            # node_exporter's textfile metrics (backup, audit and security-log metrics of lab/noc_data.py)
            + haproxy_scrape_job()
            + f"  - job_name: node\n    scrape_interval: 5s\n    honor_labels: true\n    static_configs:\n"
              f"      - targets: ['{ports.HOST}:{ports.NODE_EXPORTER}']\n")


def haproxy_scrape_job() -> str:
    """Return the scrape job of the sites' HAProxy exporters (lab/haproxy.py), each with its ``site`` label
    (alerts/lb.rules.yml: LbBackendDown keeps it)."""
    return ("  - job_name: haproxy\n    scrape_interval: 5s\n    static_configs:\n"
            + "".join(f"      - targets: ['{ports.HOST}:{port}']\n        labels: {{site: {site}}}\n"
                      for site, port in STATS_PORTS.items()))


def webhook_scrape_job(password_file: Path) -> str:
    """Given the file holding lab/web_tls.py's scrape password, return the scrape job of the webhook's /metrics."""
    return (f"  - job_name: citydc_alert_webhook\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
            f"    basic_auth:\n      username: {web_tls.USER}\n      password_file: {json.dumps(str(password_file))}\n"
            f"    static_configs:\n      - targets: ['{ports.HOST}:{ports.ALERT_WEBHOOK}']\n")


def query(expr: str, at: float | None = None, base: str = f"http://{ports.HOST}:{ports.PROMETHEUS}") -> list[dict]:
    """Given a PromQL expression (and an evaluation time), return the instant vector's result list.

    Raise RuntimeError if Prometheus reports an error.
    """
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - fixed loopback http URL
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query failed: {body.get('error')}")
    return body["data"]["result"]


class Prometheus(Service):
    name = "prometheus"
    description = "Prometheus server scraping the SNMP exporter through file_sd"
    ready_timeout = 60.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({PROMETHEUS: "prometheus"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        conf = d / "prometheus.yml"
        if not ALERTS.is_dir():
            raise LabError(f"prometheus: the rule files are read from {ALERTS}, which is missing: run the lab "
                           "from a checkout of the repository")
        (d / "lab.rules.yml").write_text(lab_rules_yml())
        pw = d / "webhook-scrape.password"
        pw.write_text(web_tls.PASSWORD)
        pw.chmod(0o600)
        # Scrape the SNMP exporter, load alerts/ and the lab rule, send alerts to the lab's Alertmanager
        # (lab/alertmanager.py), scrape the webhook receiver's /metrics (the lab rule reads it).
        conf.write_text(prometheus_yml(file_sd_dir(ctx), f"{ports.HOST}:{ports.SNMP_EXPORTER}",
                                       rule_files=[f"{ALERTS}/*.rules.yml", str(d / "lab.rules.yml")],
                                       alertmanager=f"{ports.HOST}:{ports.ALERTMANAGER}",
                                       webhook_job=webhook_scrape_job(pw))
                        + web_tls.scrape_configs(ctx))  # TLS + basic auth jobs (tests/lab/test_web_tls.py)
        # A fresh TSDB on every start: a stopped Prometheus writes no staleness markers, so the series the
        # previous process recorded (a lab-scale utilisation, say) would look current for 5 minutes and keep
        # alerts firing that nothing drives any more.
        shutil.rmtree(d / "data", ignore_errors=True)
        argv = [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={ports.HOST}:{ports.PROMETHEUS}", "--storage.tsdb.retention.time=1d",
                # Alerts fired before Alertmanager is discovered are dropped (prometheus_notifications_dropped_total)
                # and sent again only after the resend delay (1 min by default): resend every 2 s in the lab.
                "--rules.alert.resend-delay=2s",
                f"--web.external-url=http://{ports.HOST}:{ports.PROMETHEUS}/"]  # alerts' generatorURL
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        with urllib.request.urlopen(f"http://{ports.HOST}:{ports.PROMETHEUS}/-/ready", timeout=2) as resp:
            return resp.status == 200

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"http": f"http://{ports.HOST}:{ports.PROMETHEUS}"}

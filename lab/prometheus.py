"""A Prometheus server (Debian package ``prometheus``) on loopback, scraping the lab's SNMP exporter.

Its one job, ``citydc_snmp``, is the scrape config ``citydc collect snmp-targets`` prints, reading
the file_sd JSON that command writes into ``file_sd_dir()``. Scrapes every second so tests over
wraps and reboots finish quickly.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from citydc.collectors.snmp.targets import scrape_config
from citydc.lab import ports, processes, web_tls
from citydc.lab.base import LabContext, Service, need_binaries

__all__ = ["Prometheus", "file_sd_dir", "query"]

PROMETHEUS = "/usr/bin/prometheus"


def file_sd_dir(ctx: LabContext) -> Path:
    path = ctx.service_dir("prometheus") / "file_sd"
    path.mkdir(parents=True, exist_ok=True)
    return path


# The repository's rules (recording rules the NOC page and the reports read, and the alerts); absent
# from an installed wheel, where the lab runs without them.
ALERTS_DIR = Path(__file__).resolve().parent.parent / "alerts"


def prometheus_yml(file_sd: Path, exporter: str) -> str:
    """Given the file_sd folder and the exporter's host:port, return prometheus.yml (rules of alerts/ loaded,
    node_exporter's textfile metrics scraped)."""
    rules = f"rule_files:\n  - {ALERTS_DIR}/*.rules.yml\n" if ALERTS_DIR.is_dir() else ""
    return ("global:\n  scrape_interval: 1s\n  evaluation_interval: 5s\n" + rules + "scrape_configs:\n"
            + scrape_config(f"{file_sd}/*.json", exporter, scrape_interval="1s", scrape_timeout="1s")
            + f"  - job_name: node\n    scrape_interval: 5s\n    honor_labels: true\n    static_configs:\n"
              f"      - targets: ['{ports.HOST}:{ports.NODE_EXPORTER}']\n")


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
        conf.write_text(prometheus_yml(file_sd_dir(ctx), f"{ports.HOST}:{ports.SNMP_EXPORTER}")
                        + web_tls.scrape_configs(ctx))  # TLS + basic auth jobs (tests/lab/test_web_tls.py)
        argv = [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={ports.HOST}:{ports.PROMETHEUS}", "--storage.tsdb.retention.time=1d"]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        with urllib.request.urlopen(f"http://{ports.HOST}:{ports.PROMETHEUS}/-/ready", timeout=2) as resp:
            return resp.status == 200

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"http": f"http://{ports.HOST}:{ports.PROMETHEUS}"}

"""A Prometheus and an Alertmanager that run with the lab's web config (lab/web_tls.py: a server certificate of
the lab web CA, a client certificate required, basic auth), as a production pair behind ``--web.config.file``:
what citydc's own clients reach through ``alerting.prometheus_http``, ``alerting.alertmanager_http`` and
``report.prometheus_http`` (the NOC page, the bandwidth report, lb-rolling.yml's silences).

- ``prometheus-tls`` on ``ports.PROMETHEUS_TLS``: no scrape of its own; it reads the report Prometheus's
  backfilled month (``prometheus-report``) through ``remote_read``, so a report through it can be compared
  with one read directly;
- ``alertmanager-tls`` on ``ports.ALERTMANAGER_TLS``: one receiver that notifies nobody; it holds the alerts
  and silences its tests post.

``client(ctx)`` is the SSL context and header a test uses to talk to them as citydc does.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.request
from pathlib import Path

from citydc.lab import ports, processes, web_tls
from citydc.lab.alertmanager import ALERTMANAGER, AMTOOL
from citydc.lab.base import LabContext, Service, need_binaries
from citydc.lab.prometheus import PROMETHEUS

__all__ = ["AlertmanagerTls", "PrometheusTls", "client", "http_settings"]

AM_CONFIG = """\
route:
  receiver: nobody
receivers:
  - name: nobody
"""


def client(ctx: LabContext) -> tuple[ssl.SSLContext, dict[str, str]]:
    """Given the lab context, return the SSL context (lab web CA, the client certificate) and the basic auth
    header that the secured endpoints accept."""
    d = web_tls.ensure(ctx)
    context = ssl.create_default_context(cafile=str(d / "ca.crt"))
    context.load_cert_chain(str(d / "prometheus.crt"), str(d / "prometheus.key"))
    token = base64.b64encode(f"{web_tls.USER}:{web_tls.PASSWORD}".encode()).decode()
    return context, {"Authorization": f"Basic {token}"}


def http_settings(ctx: LabContext, password_env: str) -> dict[str, str]:
    """Given the lab context and the variable the password is referenced by, return the ``*_http`` settings of a
    citydc.yaml that reach the secured endpoints."""
    d = web_tls.ensure(ctx)
    return {"ca_file": str(d / "ca.crt"), "cert_file": str(d / "prometheus.crt"),
            "key_file": str(d / "prometheus.key"), "username": web_tls.USER, "password": f"env:{password_env}"}


def _ready(ctx: LabContext, port: int) -> bool:
    context, headers = client(ctx)
    req = urllib.request.Request(f"https://{ports.HOST}:{port}/-/ready", headers=headers)
    with urllib.request.urlopen(req, timeout=2, context=context) as resp:  # noqa: S310 - loopback
        return resp.status == 200


class PrometheusTls(Service):
    name = "prometheus-tls"
    description = ("Prometheus behind the lab web config (TLS, client certificate, basic auth), reading the report "
                   "Prometheus's month through remote_read")

    def install(self, ctx: LabContext) -> None:
        need_binaries({PROMETHEUS: "prometheus"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        web = web_tls.ensure(ctx)
        conf = d / "prometheus.yml"
        conf.write_text("remote_read:\n"
                        f"  - url: http://{ports.HOST}:{ports.PROMETHEUS_REPORT}/api/v1/read\n"
                        "    read_recent: true\n")
        argv = [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={ports.HOST}:{ports.PROMETHEUS_TLS}", f"--web.config.file={web / 'web.yml'}",
                "--storage.tsdb.retention.time=1d", f"--web.external-url=https://{ports.HOST}:{ports.PROMETHEUS_TLS}/"]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        return _ready(ctx, ports.PROMETHEUS_TLS)

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"https": f"https://{ports.HOST}:{ports.PROMETHEUS_TLS}", "web_config": str(_web_yml(ctx))}


class AlertmanagerTls(Service):
    name = "alertmanager-tls"
    description = "Alertmanager behind the lab web config (TLS, client certificate, basic auth)"

    def install(self, ctx: LabContext) -> None:
        need_binaries({ALERTMANAGER: "prometheus-alertmanager", AMTOOL: "prometheus-alertmanager"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        web = web_tls.ensure(ctx)
        conf = d / "alertmanager.yml"
        conf.write_text(AM_CONFIG)
        argv = [ALERTMANAGER, f"--config.file={conf}", f"--storage.path={d / 'data'}",
                f"--web.listen-address={ports.HOST}:{ports.ALERTMANAGER_TLS}", "--cluster.listen-address=",
                f"--web.config.file={web / 'web.yml'}",
                f"--web.external-url=https://{ports.HOST}:{ports.ALERTMANAGER_TLS}/"]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        return _ready(ctx, ports.ALERTMANAGER_TLS)

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"https": f"https://{ports.HOST}:{ports.ALERTMANAGER_TLS}", "web_config": str(_web_yml(ctx))}


def _web_yml(ctx: LabContext) -> Path:
    return web_tls.directory(ctx) / "web.yml"

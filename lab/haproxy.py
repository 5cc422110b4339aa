"""HAProxy (Debian 2.6) per site on loopback: the load-balancer tier the playbooks manage.

Each site's HAProxy runs in master-worker mode (``-W -db``) with, in its service directory:
``haproxy.cfg`` (the lab writes a bootstrap config; ``playbooks/roles/lb`` then owns it),
``admin.sock`` (runtime API at admin level), ``master.sock`` (master CLI: ``reload``) and
``server-state`` (the ``server-state-file`` that carries MAINT/DRAIN/weight across a reload).
The frontend listens on ports.HAPROXY_<SITE>; the backend ``be_app`` holds that site's two
application servers (lab/app_backends.py); the lb role's config adds the other site's two with weight 0
(site failover). HAProxy's own Prometheus exporter answers ``/metrics`` on ports.HAPROXY_<SITE>_STATS
(the lab Prometheus scrapes it, job ``haproxy``, label ``site``).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from citydc.lab import ports, processes
from citydc.lab.app_backends import APP_SERVERS
from citydc.lab.base import LabContext, Service, need_binaries

__all__ = ["SERVICES", "STATS_PORTS", "HaproxySite", "bootstrap_config", "runtime_command"]

FRONTEND_PORTS = {"siwei": ports.HAPROXY_SIWEI, "fengshan": ports.HAPROXY_FENGSHAN}
STATS_PORTS = {"siwei": ports.HAPROXY_SIWEI_STATS, "fengshan": ports.HAPROXY_FENGSHAN_STATS}


def runtime_command(sock: Path, command: str, timeout: float = 5.0) -> str:
    """Given a runtime-API (or master CLI) socket and one command, return HAProxy's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # the master CLI answers once its input ends
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def bootstrap_config(site: str, d: Path) -> str:
    """Given a site and its service directory, return the lab's first haproxy.cfg (the lb role replaces it)."""
    servers = [f"    server {name} {ports.HOST}:{port} check inter 1s fall 2 rise 2 maxconn 64"
               for name, (s, port) in APP_SERVERS.items() if s == site]
    return "\n".join([
        "# lab bootstrap config (lab/haproxy.py); `citydc play run lb-deploy.yml` renders the real one",
        "global",
        f"    stats socket {d / 'admin.sock'} mode 600 level admin expose-fd listeners",
        f"    server-state-file {d / 'server-state'}",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    option redispatch",
        "    retries 3",
        "    load-server-state-from-file global",
        "frontend fe_app",
        f"    bind {ports.HOST}:{FRONTEND_PORTS[site]}",
        "    default_backend be_app",
        "frontend fe_stats",
        f"    bind {ports.HOST}:{STATS_PORTS[site]}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    http-request return status 404",
        "backend be_app",
        "    balance roundrobin",
        "    option httpchk GET /health",
        *servers,
        "",
    ])


class HaproxySite(Service):
    ready_timeout = 20.0

    def __init__(self, site: str) -> None:
        self.site = site
        self.name = f"haproxy-{site}"
        self.description = f"HAProxy of {site} on {ports.HOST}:{FRONTEND_PORTS[site]} (runtime API socket)"

    def install(self, ctx: LabContext) -> None:
        need_binaries({"haproxy": "haproxy"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        d.chmod(0o700)
        (d / "haproxy.cfg").write_text(bootstrap_config(self.site, d))
        (d / "server-state").unlink(missing_ok=True)  # a stale file would re-apply old states
        for sock in ("admin.sock", "master.sock"):
            (d / sock).unlink(missing_ok=True)
        argv = ["haproxy", "-W", "-db", "-f", str(d / "haproxy.cfg"), "-S", f"{d / 'master.sock'},mode,600"]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        d = ctx.service_dir(self.name)
        if "Name: HAProxy" not in runtime_command(d / "admin.sock", "show info"):
            return False
        with socket.create_connection((ports.HOST, FRONTEND_PORTS[self.site]), timeout=2):
            return True

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        d = ctx.service_dir(self.name)
        return {"frontend": f"http://{ports.HOST}:{FRONTEND_PORTS[self.site]}/",
                "metrics": f"http://{ports.HOST}:{STATS_PORTS[self.site]}/metrics",
                "admin_socket": str(d / "admin.sock"),
                "master_socket": str(d / "master.sock"), "config": str(d / "haproxy.cfg")}


SERVICES = (HaproxySite("siwei"), HaproxySite("fengshan"))

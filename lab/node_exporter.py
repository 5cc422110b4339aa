"""node_exporter (Debian ``prometheus-node-exporter``) on loopback, with only its textfile collector.

It exposes the ``*.prom`` files citydc's batch jobs write (backup, LDAP audit, security-log
metrics), as node_exporter does on a real host; ``lab/noc_data.py`` writes lab files for both
sites into ``textfile_dir()`` so the NOC page has something to show. The lab Prometheus scrapes it.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from citydc.lab import ports, processes
from citydc.lab.base import LabContext, Service, need_binaries

__all__ = ["NODE_EXPORTER", "NodeExporter", "textfile_dir"]

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def textfile_dir(ctx: LabContext) -> Path:
    path = ctx.service_dir("node-exporter") / "textfile"
    if not path.is_dir():
        path.mkdir(parents=True)
        path.chmod(0o755)
    return path


class NodeExporter(Service):
    name = "node-exporter"
    description = "node_exporter's textfile collector (backup, audit, security-log metrics)"
    ready_timeout = 30.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({NODE_EXPORTER: "prometheus-node-exporter"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        argv = [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
                f"--collector.textfile.directory={textfile_dir(ctx)}",
                f"--web.listen-address={ports.HOST}:{ports.NODE_EXPORTER}"]
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        with urllib.request.urlopen(f"http://{ports.HOST}:{ports.NODE_EXPORTER}/metrics", timeout=2) as resp:
            return resp.status == 200

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"metrics": f"http://{ports.HOST}:{ports.NODE_EXPORTER}/metrics"}

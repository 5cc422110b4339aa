"""``citydc lab status`` only looks: it creates no directory under $CITYDC_LAB_DIR (a status command leaves no
trace), and a read-only context still sees a running service's records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from citydc.lab import processes
from citydc.lab.base import LabContext, Service

CITYDC = str(Path(sys.executable).with_name("citydc"))


class Sleeper(Service):
    name = "sleeper"

    def start(self, ctx: LabContext) -> subprocess.Popen:
        return processes.spawn([sys.executable, "-c", "import time; time.sleep(120)"],
                               log_path=ctx.service_dir(self.name) / "sleeper.log")

    def ready(self, ctx: LabContext) -> bool:
        return self.running(ctx)


def test_lab_status_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    env = {**os.environ, "CITYDC_LAB_DIR": str(root), "CITYDC_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([CITYDC, "lab", "status", "--json"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    statuses = json.loads(proc.stdout)
    assert len(statuses) > 10 and not any(s["running"] for s in statuses)
    assert not root.exists() and not (tmp_path / "cache").exists()


def test_a_read_only_context_names_directories_without_making_them_and_sees_a_running_service(tmp_path: Path) -> None:
    ctx = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")
    looking = replace(ctx, read_only=True)
    assert looking.service_dir("snmpd") == tmp_path / "lab" / "snmpd" and not (tmp_path / "lab").exists()
    svc = Sleeper()
    try:
        svc.up(ctx)
        assert svc.running(looking) and svc.owner(looking) == svc.fingerprint()
    finally:
        svc.down(ctx)

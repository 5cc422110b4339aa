"""Cross-site drift end to end: ``citydc play drift`` (lb-drift.yml in check mode, citydc.ops.haproxy_settings)
against the lab's two HAProxies, a difference planted in one site's live config, and the security log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.lab.haproxy import runtime_command

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SERVERS = {"siwei": ("app-siwei-1", "app-siwei-2"), "fengshan": ("app-fengshan-1", "app-fengshan-2")}


@pytest.fixture(scope="module")
def lab(lab_up, lab_ctx, tmp_path_factory) -> dict:
    lab_up("app-backends", "haproxy-siwei", "haproxy-fengshan")
    base = tmp_path_factory.mktemp("play-drift")
    config = base / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(base / "spool"), "sink": {"kind": "sqlite", "path": str(base / "log.db")}},
    }))
    info = {"config": config, "env": {**os.environ, "CITYDC_LAB_DIR": str(lab_ctx.root), "CITYDC_INVENTORY": "lab",
                                      "COLUMNS": "200"},
            "sock": {s: lab_ctx.root / f"haproxy-{s}" / "admin.sock" for s in SERVERS}}
    deploy(info)  # both sites on the inventory's config
    for site, servers in SERVERS.items():  # runtime weights as the config has them (earlier tests may move them)
        for server in servers:
            runtime_command(info["sock"][site], f"set server be_app/{server} weight 1")
            runtime_command(info["sock"][site], f"set server be_app/{server} state ready")
    return info


def citydc(lab: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(lab["config"]), *args], env=lab["env"], capture_output=True, text=True,
                          timeout=300, check=False)


def deploy(lab: dict, *args: str) -> None:
    proc = citydc(lab, "play", "run", "lb-deploy.yml", "--json", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def drift(lab: dict) -> tuple[int, dict]:
    proc = citydc(lab, "play", "drift", "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_identical_sites_report_no_drift(lab):
    rc, report = drift(lab)
    assert rc == 0, report
    assert report["in_sync"] is True and report["drift"] == []
    assert report["hosts"] == {"lb-fengshan-1": "fengshan", "lb-siwei-1": "siwei"}
    assert report["settings_compared"] >= 10  # config and runtime settings were read, not an empty comparison
    assert report["run"]["rc"] == 0


def test_a_timeout_changed_on_one_site_is_reported_exactly(lab):
    deploy(lab, "--site", "fengshan", "-e", "lb_timeout_client=31s")
    try:
        rc, report = drift(lab)
        table = citydc(lab, "play", "drift")
    finally:
        deploy(lab, "--site", "fengshan")  # back to the inventory's config
    assert rc == 1, report
    assert report["in_sync"] is False
    assert report["drift"] == [{"setting": "defaults.timeout client",
                                "values": {"lb-fengshan-1": "31s", "lb-siwei-1": "30s"},
                                "sites": {"fengshan": ["31s"], "siwei": ["30s"]}, "cross_site": True}]
    assert table.returncode == 1
    assert "defaults.timeout client" in table.stdout and "31s" in table.stdout and "30s" in table.stdout

    assert citydc(lab, "log", "ship").returncode == 0
    found = json.loads(citydc(lab, "log", "search", "--action", "playbook-drift", "--json").stdout)
    ev = [e for e in found if e["citydc"]["playbook"]["run_id"] == report["run_id"]]
    assert len(ev) == 1 and ev[0]["event"]["outcome"] == "failure"
    assert ev[0]["citydc"]["playbook"]["drift"][0]["setting"] == "defaults.timeout client"
    runs = json.loads(citydc(lab, "log", "search", "--action", "playbook-run", "--json").stdout)
    end = [e for e in runs if e["citydc"]["playbook"]["run_id"] == report["run_id"]
           and e["citydc"]["playbook"]["phase"] == "end"]
    assert end and end[0]["citydc"]["playbook"]["check_mode"] is True
    assert end[0]["citydc"]["playbook"]["totals"]["changed"] == 0  # the drift run changes nothing

    rc, report = drift(lab)  # restored: no drift again
    assert rc == 0 and report["drift"] == [], report


def test_drift_usage_error_exits_2(lab):
    assert citydc(lab, "play", "drift", "--inventory", "no-such-inventory").returncode == 2

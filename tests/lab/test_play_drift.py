"""Cross-site drift end to end: ``citydc play drift`` (lb-drift.yml in check mode, citydc.ops.haproxy_settings and
citydc.ops.keepalived_settings) against the lab's two HAProxies and its keepalived nodes, a difference planted in
one site's live config, and the security log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.lab import ports
from citydc.lab.haproxy import runtime_command
from citydc.lab.keepalived import SERVICES as KEEPALIVED_NODES

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


def drift(lab: dict, *args: str) -> tuple[int, dict]:
    proc = citydc(lab, "play", "drift", "--json", *args)
    return proc.returncode, json.loads(proc.stdout)


VRRP_PASSWORD = ports.LAB_ENV["CITYDC_VRRP_PASSWORD"]


def keepalived(lab: dict, *args: str) -> None:
    """Run lb-keepalived.yml (the VRRP password by reference, as an operator would)."""
    proc = subprocess.run([CITYDC, "-c", str(lab["config"]), "play", "run", "lb-keepalived.yml", "--json",
                           "--secret-var", "keepalived_auth_pass=env:CITYDC_VRRP_PASSWORD", *args],
                          env={**lab["env"], "CITYDC_VRRP_PASSWORD": VRRP_PASSWORD}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


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


def test_keepalived_settings_of_the_live_vrrp_nodes_are_compared(lab, lab_up):
    """The lab's keepalived nodes (network namespaces, keepalived running the role's config): the drift run reads
    each load balancer's keepalived.conf; an advertisement interval changed on Fengshan's pair is reported as the
    one drifting setting, and the VRRP password never leaves the nodes."""
    lab_up(*(node.name for node in KEEPALIVED_NODES))
    keepalived(lab)  # the role's config on the four nodes (an earlier module may have left it already)
    rc, report = drift(lab)
    assert rc == 0 and report["drift"] == [], report
    rc, haproxy_only = drift(lab, "-e", "lb_drift_keepalived=false")
    assert rc == 0, haproxy_only
    # keepalived's settings were read and agreed (the global_defs, the instance's state, interface, timers...)
    assert report["settings_compared"] >= haproxy_only["settings_compared"] + 5, (report, haproxy_only)

    keepalived(lab, "--site", "fengshan", "-e", "keepalived_advert_int=2")
    try:
        proc = citydc(lab, "play", "drift", "--json")
        rc, changed = proc.returncode, json.loads(proc.stdout)
    finally:
        keepalived(lab, "--site", "fengshan")  # back to the inventory's config
    assert rc == 1, changed
    assert changed["drift"] == [{"setting": "keepalived.vrrp_instance lb_<site>.advert_int",
                                 "values": {"lb-fengshan-1": "2", "lb-siwei-1": "1"},
                                 "sites": {"fengshan": ["2"], "siwei": ["1"]}, "cross_site": True}]
    assert VRRP_PASSWORD not in proc.stdout + proc.stderr
    conf = lab["env"]["CITYDC_LAB_DIR"] + "/keepalived-fengshan-1/keepalived.conf"
    assert "advert_int 1" in Path(conf).read_text()  # restored on the node itself

    rc, report = drift(lab)
    assert rc == 0 and report["drift"] == [], report

"""The virtualization playbook end to end: ``citydc play run vm-deploy.yml`` against the lab's libvirtd test
driver (test+unix://, so domains live between Ansible tasks), through community.libvirt and citydc.ops.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import libvirt  # the play-libvirt extra; missing, the module fails to import (never skips)
import pytest
import yaml

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
INVENTORY = Path(__file__).resolve().parents[2] / "playbooks" / "inventories" / "lab"


def declared() -> dict[str, dict]:
    out = {}
    for hv in ("hv-siwei-1", "hv-fengshan-1"):
        for vm in yaml.safe_load((INVENTORY / "host_vars" / f"{hv}.yml").read_text())["hypervisor_vms"]:
            out[vm["name"]] = {**vm, "hypervisor": hv}
    return out


@pytest.fixture(scope="module")
def lab(lab_up, lab_ctx, tmp_path_factory) -> dict:
    (status,) = lab_up("libvirt")
    base = tmp_path_factory.mktemp("play-vm")
    config = base / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(base / "spool"), "sink": {"kind": "sqlite", "path": str(base / "log.db")}},
    }))
    env = {**os.environ, "CITYDC_LAB_DIR": str(lab_ctx.root), "CITYDC_INVENTORY": "lab"}
    conn = libvirt.open(status.endpoints["uri"])
    yield {"config": config, "env": env, "conn": conn}
    conn.close()


def play(lab: dict, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([CITYDC, "-c", str(lab["config"]), "play", "run", "vm-deploy.yml", *args, "--json"],
                          env=lab["env"], capture_output=True, text=True, timeout=300, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, {"stdout": proc.stdout, "stderr": proc.stderr}


def spec(conn, name: str) -> dict:
    dom = conn.lookupByName(name)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    mem = int(re.search(r"<memory unit='KiB'>(\d+)</memory>", xml).group(1))
    return {"vcpu": int(re.search(r"<vcpu[^>]*>(\d+)</vcpu>", xml).group(1)), "memory_mib": mem // 1024,
            "network": re.search(r"<source network='([^']+)'", xml).group(1), "running": bool(dom.isActive())}


def test_declared_vms_exist_with_their_specs_and_a_second_run_changes_nothing(lab):
    rc, first = play(lab)
    assert rc == 0, first
    for name, vm in declared().items():
        assert spec(lab["conn"], name) == {"vcpu": vm["vcpu"], "memory_mib": vm["memory_mib"],
                                           "network": vm["network"], "running": True}, name
    rc, second = play(lab)
    assert rc == 0 and sum(c["changed"] for c in second["hosts"].values()) == 0, second["hosts"]
    drift = second["stats_data"]["vm_drift"]
    assert all(d["missing"] == [] and d["differing"] == {} for d in drift.values()), drift
    assert "test" in drift["hv-siwei-1"]["undeclared"]  # the test driver's own domain: nobody declared it


def test_vm_removed_or_changed_by_hand_is_reported_and_repaired(lab):
    assert play(lab)[0] == 0
    conn = lab["conn"]
    gone = conn.lookupByName("siwei-db01")
    gone.destroy()
    gone.undefine()
    web = conn.lookupByName("siwei-web01")
    xml = web.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    xml = re.sub(r"<vcpu[^>]*>\d+</vcpu>", "<vcpu placement='static'>3</vcpu>", xml)
    xml = re.sub(r"<memory unit='KiB'>\d+</memory>", "<memory unit='KiB'>1048576</memory>", xml)
    conn.defineXML(xml)

    rc, check = play(lab, "--check", "--diff")  # reported, nothing changed yet
    assert rc == 0, check
    drift = check["stats_data"]["vm_drift"]["hv-siwei-1"]
    assert drift["missing"] == ["siwei-db01"]
    assert drift["differing"] == {"siwei-web01": {"vcpu": {"declared": 2, "actual": 3},
                                                  "memory_mib": {"declared": 2048, "actual": 1024}}}
    assert check["stats_data"]["vm_drift"]["hv-fengshan-1"]["differing"] == {}
    assert "siwei-db01" not in [d.name() for d in conn.listAllDomains(0)]
    assert spec(conn, "siwei-web01")["vcpu"] == 3

    rc, fix = play(lab, "--limit", "hv-siwei-1")
    assert rc == 0, fix
    assert fix["stats_data"]["vm_drift"]["hv-siwei-1"]["missing"] == ["siwei-db01"]
    tasks = {(t["task"], t["module"]) for t in fix["changed_tasks"]}
    assert ("Snapshot every VM about to change", "citydc.ops.libvirt_snapshot") in tasks
    assert conn.lookupByName("siwei-web01").snapshotListNames(0)  # snapshot taken before the change
    assert spec(conn, "siwei-db01") == {"vcpu": 4, "memory_mib": 4096, "network": "default", "running": True}
    assert spec(conn, "siwei-web01")["vcpu"] == 2 and spec(conn, "siwei-web01")["memory_mib"] == 2048
    rc, after = play(lab)
    assert rc == 0 and sum(c["changed"] for c in after["hosts"].values()) == 0, after["hosts"]

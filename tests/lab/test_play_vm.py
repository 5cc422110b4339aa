"""The virtualization playbook end to end: ``citydc play run vm-deploy.yml`` against the lab's libvirtd test
driver (test+unix://, so domains live between Ansible tasks), through community.libvirt and citydc.ops.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


FOREIGN_NODE = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>2</active><nodes>1</nodes><sockets>1</sockets><cores>2</cores>
    <threads>1</threads></cpu>
  <memory>8192000</memory>
  <domain type='test'>
    <name>siwei-db01</name>
    <metadata>
      <citydc:vm xmlns:citydc="https://citydc.example/xmlns/vm" site="siwei" hypervisor="hv-siwei-1" disk_gib="100"/>
    </metadata>
    <memory unit='MiB'>4096</memory>
    <vcpu>4</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><interface type='network'><source network='default'/></interface></devices>
  </domain>
  <network><name>default</name><bridge name='virbr9'/><forward/><ip address='192.168.99.1' netmask='255.255.255.0'/>
  </network>
</node>
"""


def test_a_vm_moved_to_another_hypervisor_is_not_defined_again_on_its_owner(lab, tmp_path):
    """siwei-db01 migrated to hv-fengshan-1 (its definition, metadata included, went with it): hv-siwei-1 misses it,
    and defining it there again would run it twice on one disk. hv-fengshan-1 here is a test-driver node of its own
    (test:///node.xml) holding that domain; hv-siwei-1 stays on the lab's libvirtd."""
    assert play(lab)[0] == 0
    conn = lab["conn"]
    gone = conn.lookupByName("siwei-db01")
    gone.destroy()
    gone.undefine()
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory)
    node = tmp_path / "fengshan-node.xml"
    node.write_text(FOREIGN_NODE)
    with (inventory / "host_vars" / "hv-fengshan-1.yml").open("a") as fh:
        fh.write(f"libvirt_uri: test://{node}\n")
    try:
        rc, moved = play(lab, "--inventory", str(inventory))
        assert rc == 1, moved
        drift = moved["stats_data"]["vm_drift"]
        assert drift["hv-siwei-1"]["missing"] == ["siwei-db01"]
        assert drift["hv-siwei-1"]["moved"] == {"siwei-db01": "hv-fengshan-1"}
        assert drift["hv-fengshan-1"]["foreign"] == {"siwei-db01": "hv-siwei-1"}
        failures = {f["host"]: f["message"] for f in moved["failures"]}
        assert "siwei-db01 on hv-fengshan-1" in failures["hv-siwei-1"]
        assert "not defined again" in failures["hv-siwei-1"]
        # and the other way round: hv-fengshan-1's node lacks fengshan-web01, which the lab's libvirtd (hv-siwei-1's
        # here) holds, owned by hv-fengshan-1
        assert "fengshan-web01 on hv-siwei-1" in failures["hv-fengshan-1"]
        assert "siwei-db01" not in [d.name() for d in conn.listAllDomains(0)]  # not defined again on its owner
        assert moved["hosts"]["hv-siwei-1"]["changed"] == 0
    finally:
        rc, back = play(lab)  # the lab inventory: siwei-db01 missing on hv-siwei-1 and nowhere else, so defined
    assert rc == 0, back
    assert spec(conn, "siwei-db01") == {"vcpu": 4, "memory_mib": 4096, "network": "default", "running": True}

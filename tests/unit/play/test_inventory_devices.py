"""The inventory plugin citydc.ops.devices: citydc.yaml's load balancers and hypervisors as Ansible hosts, read by
the real ``ansible-inventory`` with the project's ansible.cfg (playbooks/ is its working directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from citydc.config.loader import load
from citydc.config.sample import REFERENCE_FILES, reference_text
from citydc.hostport import parse_host_port

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_INVENTORY = str(Path(sys.executable).with_name("ansible-inventory"))
SITES = [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}]


def inventory(source: Path, config: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "CITYDC_CONFIG"} | env
    if config is not None:
        environ["CITYDC_CONFIG"] = str(config)
    return subprocess.run([ANSIBLE_INVENTORY, "-i", str(source), "--list"], cwd=PLAYBOOKS, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def listed(proc: subprocess.CompletedProcess) -> tuple[dict[str, set[str]], dict[str, dict]]:
    """Given ansible-inventory --list's run, return ({group: hosts}, {host: vars})."""
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)

    def plain(value):  # ansible-core marks a plugin's strings as unsafe: {"__ansible_unsafe": "..."}
        return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value

    hostvars = {h: {k: plain(v) for k, v in hv.items()} for h, hv in data["_meta"]["hostvars"].items()}
    groups: dict[str, set[str]] = {}

    def members(group: str) -> set[str]:
        if group not in groups:
            node = data.get(group, {})
            groups[group] = set(node.get("hosts", []))
            for child in node.get("children", []):
                groups[group] |= members(child)
        return groups[group]

    for group in data:
        if group != "_meta":
            members(group)
    return groups, hostvars


def source_dir(tmp_path: Path, text: str = "plugin: citydc.ops.devices\n") -> Path:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "citydc_devices.yml").write_text(text)
    return inv


def test_production_inventory_is_made_from_the_sample_configs_devices(tmp_path):
    config = tmp_path / "citydc.yaml"
    config.write_text(reference_text(), encoding="utf-8")
    for name in REFERENCE_FILES:  # the files the sample names must exist for it to load
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    devices = load(config).config.devices
    groups, hostvars = listed(inventory(PLAYBOOKS / "inventories" / "production", config))

    lbs = {d.name for d in devices if d.role == "lb"}
    hypervisors = {d.name for d in devices if d.role == "hypervisor"}
    assert lbs and hypervisors
    assert groups["lb"] == lbs
    assert groups["hypervisors"] == hypervisors
    assert groups["keepalived"] == lbs  # the static file's keepalived: children: lb
    for device in devices:
        if device.role in ("lb", "hypervisor"):
            assert device.name in groups[device.site]
            assert hostvars[device.name]["ansible_host"] == parse_host_port(device.address, 161).host
        else:
            assert device.name not in hostvars  # switches and firewalls are not Ansible hosts
    # The static app tier and the Ansible-only facts under the devices' names are still there.
    assert {"app-siwei-1", "app-siwei-2", "app-fengshan-1", "app-fengshan-2"} == groups["app"]
    assert hostvars["lb-siwei-1"]["keepalived_priority"] == 150
    assert hostvars["hv-siwei-1"]["hypervisor_vms"]
    assert hostvars["lb-siwei-2"]["ansible_connection"] == "ssh"  # group_vars/all.yml


def test_management_address_ipv6_and_a_config_path_relative_to_the_source(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "citydc.yaml").write_text(yaml.safe_dump({"sites": SITES, "devices": [
        {"name": "lb-a", "address": "10.1.0.1", "management_address": "10.9.0.1:2222", "site": "siwei", "role": "lb"},
        {"name": "lb-b", "address": "10.2.0.1:161", "management_address": "[2001:db8::b]", "site": "fengshan",
         "role": "lb"},
        {"name": "hv-a", "address": "[2001:db8::31]:161", "site": "siwei", "role": "hypervisor"},
        {"name": "core-a", "address": "10.1.0.254", "site": "siwei", "role": "core"},
        {"name": "web-a", "address": "10.1.0.80", "site": "siwei", "role": "server"},
    ]}))
    inv = source_dir(tmp_path, "plugin: citydc.ops.devices\nconfig: ../etc/citydc.yaml\n")
    groups, hostvars = listed(inventory(inv, config=tmp_path / "elsewhere.yaml"))  # the file's option wins
    assert groups["lb"] == {"lb-a", "lb-b"} and groups["hypervisors"] == {"hv-a"}
    assert groups["siwei"] == {"lb-a", "hv-a"} and groups["fengshan"] == {"lb-b"}
    assert hostvars["lb-a"] == {"ansible_host": "10.9.0.1", "ansible_port": 2222}
    assert hostvars["lb-b"] == {"ansible_host": "2001:db8::b"}
    assert hostvars["hv-a"] == {"ansible_host": "2001:db8::31"}
    assert set(hostvars) == {"lb-a", "lb-b", "hv-a"}


def test_an_invalid_config_fails_the_inventory_naming_line_and_field(tmp_path):
    config = tmp_path / "citydc.yaml"
    config.write_text(yaml.safe_dump({"sites": SITES, "devices": [
        {"name": "lb-a", "address": "10.1.0.1", "site": "siwei", "role": "lb"},
        {"name": "hv-a", "address": "10.1.0.2", "site": "siwei", "role": "hypervisr"},
    ]}, sort_keys=False))
    proc = inventory(source_dir(tmp_path), config)
    assert proc.returncode != 0  # not a warning and an inventory without load balancers
    assert f"{config}:" in proc.stderr and "devices[1].role" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_config_fails_the_inventory(tmp_path):
    proc = inventory(source_dir(tmp_path), tmp_path / "absent.yaml")
    assert proc.returncode != 0
    assert f"{tmp_path / 'absent.yaml'}" in proc.stderr and "cannot read" in proc.stderr


def test_secrets_of_the_config_are_not_resolved_or_shown(tmp_path):
    config = tmp_path / "citydc.yaml"
    config.write_text(yaml.safe_dump({
        "sites": SITES,
        "device_logins": {"ops": {"username": "ops", "password": "env:INVENTORY_TEST_SECRET"}},
        "devices": [{"name": "lb-a", "address": "10.1.0.1", "site": "siwei", "role": "lb", "login": "ops",
                     "netmiko_device_type": "linux"}]}))
    secret = "s3cret-never-shown-9f2c"
    proc = inventory(source_dir(tmp_path), config, INVENTORY_TEST_SECRET=secret)
    groups, _ = listed(proc)
    assert groups["lb"] == {"lb-a"}
    assert secret not in proc.stdout + proc.stderr

"""Pass 8 findings of ``citydc play``: a loop task's diffs under --diff, and the declared VMs of vm-deploy.yml
checked before anything changes (libvirt_drift) and written escaped into the domain XML."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import libvirt  # the play-libvirt extra; the test driver runs in this process (test:///node.xml), no daemon
import pytest
import yaml
from click.testing import CliRunner

from citydc.cli.main import cli as citydc_cli
from citydc.play.runner import Tracker


def test_a_loop_tasks_item_diffs_are_kept_masked_and_labelled():
    """vm-deploy's "Define the missing and differing VMs" is a loop: Ansible puts each item's diff in ``results``
    and none at the top of the result, so --diff showed nothing for a redefined VM."""
    t = Tracker(secrets=["s3cret-pw"])
    t.handle({"event": "runner_on_ok", "uuid": "u1", "event_data": {
        "host": "hv-siwei-1", "task": "Define the missing and differing VMs",
        "resolved_action": "community.libvirt.virt", "play": "P",
        "res": {"changed": True, "msg": "All items completed", "results": [
            {"changed": True, "diff": {"before": "<vcpu>3</vcpu>\n", "after": "<vcpu>2</vcpu>\n"},
             "vm": {"name": "siwei-web01"}, "ansible_loop_var": "vm", "_ansible_item_label": "siwei-web01"},
            {"changed": True, "created": "siwei-db01", "vm": {"name": "siwei-db01"}, "ansible_loop_var": "vm"},
            {"changed": False, "diff": {"before": "same\n", "after": "same\n"}, "_ansible_item_label": "quiet"},
            {"changed": True, "diff": {"before": "pw old\n", "after": "pw s3cret-pw\n"},
             "vm": {"name": "四維-db02"}, "ansible_loop_var": "vm"}]}}})
    text = t.changed[0]["diff"]
    lines = text.splitlines()
    assert lines[0] == "item siwei-web01:" and "-<vcpu>3</vcpu>" in lines and "+<vcpu>2</vcpu>" in lines
    assert "item 四維-db02:" in lines and "+pw ***" in lines  # labelled by the VM's name, masked
    assert "quiet" not in text and "siwei-db01" not in text  # unchanged items and items without a diff: nothing


# --- vm-deploy.yml: the declared VMs, the definition of a VM that exists ------------------------------------------

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
ROLE = PLAYBOOKS / "roles" / "hypervisor"
MODULES = PLAYBOOKS / "collections" / "ansible_collections" / "citydc" / "ops" / "plugins" / "modules"
_spec = importlib.util.spec_from_file_location("pass8_libvirt_drift", MODULES / "libvirt_drift.py")
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)
DEFINE = MODULES / "libvirt_define.py"
_spec = importlib.util.spec_from_file_location("pass8_libvirt_define", DEFINE)
define = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(define)
VNC_PASSWORD = "Vnc-s3cret-9"

VM = {"name": "siwei-web01", "vcpu": 2, "memory_mib": 2048, "disk_gib": 20, "network": "default", "site": "siwei"}


@pytest.mark.parametrize(("change", "expected"), [
    ({"vcpu": "2"}, "declared[0] (siwei-web01): vcpu must be a whole number of at least 1, got '2' (str)"),
    ({"memory_mib": True}, "memory_mib must be a whole number of at least 1, got True (bool)"),
    ({"disk_gib": 0}, "disk_gib must be a whole number of at least 1, got 0 (int)"),
    ({"memory_mib": None}, "declared[0] (siwei-web01): memory_mib is required"),
    ({"memory": 2048}, "unknown key 'memory' (known: name, vcpu, memory_mib, disk_gib, network, site, state, "
                       "description)"),
    ({"network": ""}, "network must be a non-empty string, got ''"),
    ({"name": "../etc/web"}, "declared[0]: name '../etc/web': no '/'"),
    ({"name": 7}, "declared[0]: name is required (a non-empty string), got 7"),
    ({"description": ["x"]}, "description must be a string"),
])
def test_a_bad_declared_vm_is_refused_by_the_first_task_naming_it_and_the_field(change, expected):
    vm = {k: v for k, v in {**VM, **change}.items() if v is not None}
    declared, error = drift.normalize_declared([vm])
    assert declared is None and expected in error and error.endswith("nothing was changed"), error


def test_odd_names_and_a_cjk_description_are_accepted_and_a_vm_declared_twice_is_not():
    odd = [{**VM, "name": "R&D-web01", "description": "四維 研發 <web>"}, {**VM, "name": "o'brien"},
           {**VM, "name": "四維-db02"}]
    declared, error = drift.normalize_declared(odd)
    assert error is None and sorted(declared) == sorted(v["name"] for v in odd)
    _, error = drift.normalize_declared([VM, dict(VM)])
    assert error == "declared[1]: siwei-web01 is declared twice; nothing was changed"
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert "citydc.ops.libvirt_drift" in tasks[0]  # checked before any task that changes something


def render_domain(vm: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),  # noqa: S701 (XML, as Ansible)
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template("domain.xml.j2").render(libvirt_domain_type="test", inventory_hostname="hv-siwei-1",
                                                    libvirt_image_dir="/var/lib/libvirt/images", vm=vm,
                                                    hypervisor_vm_drift={"actual": {}})


def test_a_new_vm_with_an_odd_name_and_a_cjk_description_is_defined_as_declared(tmp_path):
    """The template wrote values as they are: R&D-web01 or o'brien made "given XML is invalid"."""
    conn = libvirt.open(f"test://{node(tmp_path)}")
    try:
        for vm in ({**VM, "name": "R&D-web01", "description": "四維 研發 <web> & 'db'"}, {**VM, "name": "o'brien"}):
            text = render_domain(vm)
            assert ET.fromstring(text).findtext("name")  # noqa: S314 (the role's own template) == vm["name"]
            dom = conn.defineXML(text)
            spec, owner = drift.spec_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), False)
            declared, _ = drift.normalize_declared([{**vm, "state": "shutoff"}])
            assert owner == "hv-siwei-1" and drift.differences(declared, {vm["name"]: spec}) == {}, spec
            assert spec["description"] == vm.get("description", "")
    finally:
        conn.close()


NODE = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>2</active><nodes>1</nodes><sockets>1</sockets><cores>2</cores>
    <threads>1</threads></cpu>
  <memory>8192000</memory>
  <domain type='test'>
    <name>siwei-web01</name>
    <uuid>11111111-2222-3333-4444-555555555555</uuid>
    <description>old words</description>
    <metadata>
      <citydc:vm xmlns:citydc="https://citydc.example/xmlns/vm" site="siwei" hypervisor="hv-siwei-1" disk_gib="20"/>
    </metadata>
    <memory unit='MiB'>1024</memory>
    <vcpu current='1'>3</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><source file='/var/lib/libvirt/images/siwei-web01.qcow2'/>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><source file='/srv/data/siwei-web01-data.qcow2'/>
        <target dev='vdb' bus='virtio'/></disk>
      <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>
      <graphics type='vnc' port='-1' passwd='Vnc-s3cret-9'/>
    </devices>
  </domain>
  <network><name>default</name><bridge name='virbr9'/><forward/><ip address='192.168.99.1' netmask='255.255.255.0'/>
  </network>
  <network><name>dmz</name><bridge name='virbr8'/><forward/><ip address='192.168.98.1' netmask='255.255.255.0'/>
  </network>
</node>
"""


def node(tmp_path: Path) -> Path:
    path = tmp_path / "node.xml"
    path.write_text(NODE)
    return path


def run_module(path: Path, args: dict, tmp_path: Path, *, check: bool = False, diff: bool = True) -> tuple[dict, str]:
    """Run a citydc.ops module as Ansible does (an args file); return its JSON result and its whole output."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check,
                                                             "_ansible_diff": diff}}))
    proc = subprocess.run([sys.executable, str(path), str(args_file)], capture_output=True, text=True, timeout=60,
                          check=False)
    return json.loads(proc.stdout), proc.stdout + proc.stderr


DECLARED_WEB = {**VM, "network": "dmz", "disk_gib": 40, "description": "四維 web"}


def test_a_vm_redefined_for_its_vcpus_keeps_its_data_disk_console_password_mac_and_uuid(tmp_path):
    """Redefined from the template, siwei-web01 lost its second disk (vdb, attached by hand) and its console on a
    vCPU change; redefined from its definition as libvirt shows it (without VIR_DOMAIN_XML_SECURE), its console
    would have lost its password. citydc.ops.libvirt_define sets the declared fields on the secure definition."""
    conn = libvirt.open(f"test://{node(tmp_path)}")
    try:
        dom = conn.lookupByName("siwei-web01")
        declared, error = drift.normalize_declared([DECLARED_WEB])
        spec, _ = drift.spec_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), True)
        differing = drift.differences(declared, {"siwei-web01": spec})
        assert error is None and drift.to_redefine(differing) == ["siwei-web01"]
        secure = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        conn.defineXML(define.redefined_xml(secure, declared["siwei-web01"], "hv-siwei-1"))
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        spec, owner = drift.spec_from_xml(xml, True)
        assert owner == "hv-siwei-1" and drift.differences(declared, {"siwei-web01": spec}) == {}, spec
        root = ET.fromstring(xml)  # noqa: S314 (libvirt's test driver)
        assert [d.get("dev") for d in root.findall("devices/disk/target")] == ["vda", "vdb"]
        assert root.find("devices/graphics").get("passwd") == VNC_PASSWORD
        assert root.findtext("uuid") == "11111111-2222-3333-4444-555555555555" and spec["mac"] == "52:54:00:aa:bb:cc"
    finally:
        conn.close()


def test_the_define_module_redefines_in_place_and_never_returns_the_console_password(tmp_path, monkeypatch, capsys):
    uri = f"test://{node(tmp_path)}"
    args = {"uri": uri, "hypervisor": "hv-siwei-1", "vm": DECLARED_WEB, "xml": "<domain/>"}
    for check in (True, False):
        result, output = run_module(DEFINE, args, tmp_path, check=check)
        assert result["changed"] is True and result["created"] is False, result
        after = result["diff"]["after"]
        assert "vdb" in after and "<vcpu" in after and "dmz" in after and "四維 web" in after, after
        assert VNC_PASSWORD not in output  # read and written inside the module only
    new = {**VM, "name": "siwei-new01"}
    result, _ = run_module(DEFINE, {**args, "vm": new, "xml": render_domain(new)}, tmp_path)
    assert result["changed"] is True and result["created"] is True and "siwei-new01" in result["diff"]["after"]

    # in this process, on test:///default (one state per process): the console keeps its password
    from ansible.module_utils import basic

    conn = libvirt.open("test:///default")
    domain = NODE[NODE.index("  <domain"):NODE.index("</domain>") + len("</domain>")]
    dom = conn.defineXML(domain.replace("siwei-web01", "pass8-web01").replace("11111111-", "22222222-"))
    try:
        module_args = {**args, "uri": "test:///default", "vm": {**DECLARED_WEB, "name": "pass8-web01"}}
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": module_args}).encode())
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
        with pytest.raises(SystemExit):
            define.main()
        assert json.loads(capsys.readouterr().out)["changed"] is True
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        assert "<vcpu placement='static'>2</vcpu>" in xml and "dmz" in xml
        assert f"passwd='{VNC_PASSWORD}'" in xml and "pass8-web01-data.qcow2" in xml
    finally:
        dom.undefine()
        conn.close()

    # the role's define task: this module, the template for a VM that does not exist yet
    task = next(t for t in yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
                if t["name"] == "Define the missing and differing VMs")
    assert task["citydc.ops.libvirt_define"] == {
        "uri": "{{ libvirt_uri }}", "hypervisor": "{{ inventory_hostname }}", "vm": "{{ vm }}",
        "xml": "{{ lookup('ansible.builtin.template', 'domain.xml.j2') }}"}


@pytest.mark.parametrize("limit", ["", " ", ",", " , :"])
def test_a_limit_that_names_no_host_is_refused_before_anything_runs(limit, tmp_path, monkeypatch):
    """ansible-playbook takes --limit "" (or " ", ",") as no limit and runs on every host: --limit "$HOSTS" with
    $HOSTS unset ran vm-deploy.yml on every hypervisor."""
    import citydc.play.runner as runner

    started = []
    monkeypatch.setattr(runner, "start_playbook", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(citydc_cli, ["-c", str(tmp_path / "none.yaml"), "play", "run", "vm-deploy.yml",
                                             "--playbooks", str(PLAYBOOKS), "-i", "lab", "--check", "--limit", limit])
    assert result.exit_code == 2, result.output
    assert "--limit" in result.output and "names no host" in result.output and started == []


def vm_play(tmp_path: Path, declared: list[dict], *args: str) -> tuple[int, str]:
    """Run vm-deploy.yml with ansible-playbook against libvirt's test driver on NODE (test:///node.xml: each module
    reads the node afresh, so nothing it defines stays for the next task: enough for what runs before a change)."""
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {
        "siwei": {"hosts": {"hv-siwei-1": None}}, "hypervisors": {"hosts": {"hv-siwei-1": None}}}}}))
    (inv / "host_vars" / "hv-siwei-1.yml").write_text(json.dumps({
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "libvirt_uri": f"test://{node(tmp_path)}", "libvirt_domain_type": "test",
        "libvirt_image_dir": str(tmp_path / "images"), "hypervisor_vms": declared}))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "at"),
           "ANSIBLE_HOME": str(tmp_path / "ah")}
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inv), "vm-deploy.yml",
                           *args], cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_new_disk_size_is_not_recorded_as_if_the_disk_had_been_resized(tmp_path):
    """disk_gib 20 -> 40 redefined the VM with disk_gib="40" in its metadata and reported success (and the VM in
    sync at the next run) while its disk kept 20 GiB: the play resizes no volume."""
    grown = {**VM, "vcpu": 3, "memory_mib": 1024, "disk_gib": 40, "description": "old words"}
    rc, out = vm_play(tmp_path, [grown], "--check")
    flat = " ".join(out.split())
    assert rc != 0 and ("disk_gib differs on hv-siwei-1 (siwei-web01 20 -> 40; recorded -> declared): vm-deploy.yml "
                        "does not resize volumes") in flat, out[-3000:]
    assert "-e hypervisor_disks_resized=true" in flat and "Define the missing and differing VMs" not in out
    rc, out = vm_play(tmp_path, [grown], "--check", "-e", "hypervisor_disks_resized=true")  # resized by hand
    assert rc == 0 and "Define the missing and differing VMs" in out, out[-3000:]

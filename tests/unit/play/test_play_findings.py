"""Fixes of the exploratory test of `citydc play` (virtualization tier): artifact rotation that removes only
citydc's run directories and never fails a run, secrets in every encoded form and out of the fact cache, a run
matching no host, a stopped run's exit code, and the hypervisor role / libvirt_drift behaviour (MAC kept on a
redefine, what a VM boots with, one state vocabulary, one snapshot name per run)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import jinja2
import pytest
import yaml

from citydc import execute
from citydc.play import events
from citydc.play.runner import (
    NO_HOST_MATCHED,
    PlaybookRun,
    PlayRequest,
    Tracker,
    list_playbooks,
    mask_event,
    rotate_runs,
    run_playbook,
    runner_kwargs,
)

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
ROLE = PLAYBOOKS / "roles" / "hypervisor"
_spec = importlib.util.spec_from_file_location(
    "libvirt_drift", PLAYBOOKS / "collections" / "ansible_collections" / "citydc" / "ops" / "plugins" / "modules"
    / "libvirt_drift.py")
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)

SECRET = 'Qz7"k\\Wq9é'  # a quote and a backslash: Ansible prints it JSON-escaped


def run_dir(parent: Path, name: str, age: float) -> Path:
    path = parent / name
    (path / "job_events").mkdir(parents=True)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


# --- finding 1 and 6: rotation ------------------------------------------------------------------------------

def test_rotation_removes_only_old_run_directories_and_ignores_everything_else(tmp_path):
    art = tmp_path / "shared"
    art.mkdir()
    (art / "important-a").mkdir()
    (art / "important-a" / "keep.txt").write_text("data")
    (art / "important-b").mkdir()
    (art / "README.txt").write_text("note")
    (art / "20200101T000000Z-deadbeef").mkdir()  # a run's name but not a run's contents (no job_events)
    elsewhere = run_dir(tmp_path, "20200101T000000Z-0badf00d", 1000)
    (art / "20200101T000000Z-0badf00d").symlink_to(elsewhere)  # a link: never followed, never removed
    for entry in ("important-a", "important-b", "README.txt", "20200101T000000Z-deadbeef"):
        os.utime(art / entry, (0, 0), follow_symlinks=False)  # the oldest of the directory
    old = run_dir(art, "20261201T000000Z-0000aaaa", 300)
    mid = run_dir(art, "20261201T000100Z-0000bbbb", 200)
    new = run_dir(art, "20261201T000200Z-0000cccc", 100)
    assert rotate_runs(art, 2, current=new.name) == []
    assert sorted(p.name for p in art.iterdir()) == sorted([
        "important-a", "important-b", "README.txt", "20200101T000000Z-deadbeef", "20200101T000000Z-0badf00d",
        mid.name, new.name])
    assert (art / "important-a" / "keep.txt").read_text() == "data" and elsewhere.is_dir()
    assert not old.exists()
    assert rotate_runs(art, 1, current=mid.name) == [] and mid.exists() and new.exists()  # (this run: kept)


def test_the_runner_never_rotates_the_directory_itself():
    req = PlayRequest(playbooks_dir=Path("/pb"), playbook="vm-deploy.yml", inventory=Path("/pb/inventories/lab"),
                      artifacts_dir=Path("/home/ops"), keep_runs=1)
    assert runner_kwargs(req, Path("/p/pdd"), None)["rotate_artifacts"] == 0


def test_a_rotation_that_cannot_remove_is_a_warning_not_an_error(tmp_path, monkeypatch):
    art = tmp_path / "art"
    run_dir(art, "20261201T000000Z-0000aaaa", 300)
    run_dir(art, "20261201T000100Z-0000bbbb", 200)

    def refuse(path, *a, **kw):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("citydc.play.runner.shutil.rmtree", refuse)
    warnings = rotate_runs(art, 1)
    assert len(warnings) == 1 and "20261201T000000Z-0000aaaa" in warnings[0] and "Permission denied" in warnings[0]
    assert rotate_runs(tmp_path / "nosuch", 1)[0].startswith("artifacts not rotated: cannot list")


# --- a real run (localhost): rotation with strays, secrets in job_events and the fact cache, no host matched ----

LEAK = """---
# Prints, caches and fails with the secret (no no_log), as a careless playbook would.
- name: Leak test
  hosts: all
  gather_facts: false
  tasks:
    - name: Debug var
      ansible.builtin.debug:
        var: admin_password
    - name: Cache it
      ansible.builtin.set_fact:
        cached_pw: "{{ admin_password }}"
        cacheable: true
    - name: Fail with it
      ansible.builtin.fail:
        msg: "bad pw {{ admin_password }} {{ admin_password | to_json }} {{ [admin_password] }}"
"""
EMPTY_GROUP = """---
# A play on a group nobody is in.
- name: Nobody
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Never runs
      ansible.builtin.debug:
        msg: hello
"""


@pytest.fixture()
def books(tmp_path: Path) -> Path:
    directory = tmp_path / "books"
    (directory / "inventory").mkdir(parents=True)
    (directory / "leak.yml").write_text(LEAK)
    (directory / "empty.yml").write_text(EMPTY_GROUP)
    (directory / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n[hypervisors]\n")
    return directory


def test_a_real_run_keeps_strays_and_secrets_out_of_the_artifacts(books, tmp_path):
    art = tmp_path / "art"
    (art / "important-a").mkdir(parents=True)
    (art / "important-a" / "keep.txt").write_text("data")
    (art / "README.txt").write_text("note")  # a stray file: was NotADirectoryError after the run
    for entry in ("important-a", "README.txt"):
        os.utime(art / entry, (0, 0))
    earlier = run_dir(art, "20261201T000000Z-0000aaaa", 300)
    req = PlayRequest(playbooks_dir=books, playbook="leak.yml", inventory=books / "inventory" / "hosts",
                      artifacts_dir=art, keep_runs=1, secret_vars={"admin_password": SECRET})
    tracker = Tracker(secrets=[SECRET])
    result = run_playbook(req, tracker)
    assert result.rc == 2 and result.failures and result.failures[0]["message"].startswith("bad pw ***")
    assert result.warnings == []
    assert sorted(p.name for p in art.iterdir()) == sorted(["important-a", "README.txt", req.run_id])
    assert (art / "important-a" / "keep.txt").read_text() == "data" and not earlier.exists()
    events_dir = result.artifact_dir / "job_events"
    assert any("***" in f.read_text() for f in events_dir.iterdir())  # the playbook did print it
    needles = ("Qz7", "Wq9")
    leaked = [str(f) for f in art.rglob("*") if f.is_file() and any(n in f.read_text(errors="replace")
                                                                      for n in needles)]
    assert leaked == []
    assert not (result.artifact_dir / "fact_cache").exists()


def test_a_run_whose_plays_match_no_host_fails(books, tmp_path):
    req = PlayRequest(playbooks_dir=books, playbook="empty.yml", inventory=books / "inventory" / "hosts",
                      artifacts_dir=tmp_path / "art")
    result = run_playbook(req, Tracker())
    assert result.rc == 0  # ansible-playbook's own status
    assert not result.ok and result.outcome is execute.Outcome.FAILURE and result.meaning == NO_HOST_MATCHED


# --- finding 5a: masking -------------------------------------------------------------------------------------

def test_mask_event_masks_the_json_escaped_and_repr_forms():
    escaped = json.dumps(SECRET, ensure_ascii=False)[1:-1]  # Qz7\"k\\Wq9é
    ev = {"stdout": f'ok: [h] => {{"admin_password": "{escaped}"}}',
          "event_data": {"res": {"msg": f"bad pw {SECRET}", "ascii": json.dumps(SECRET),
                                 "repr": repr([SECRET]), "twice": json.dumps(json.dumps(SECRET)),
                                 SECRET: 1}}}
    text = json.dumps(mask_event(ev, [SECRET]), ensure_ascii=False)
    assert "Qz7" not in text and "Wq9" not in text, text
    t = Tracker(secrets=[SECRET])
    ev2 = {"event": "runner_on_ok", "stdout": f'"{escaped}"', "event_data": {"host": "h", "res": {}}}
    t.handle(ev2)
    assert ev2["stdout"] == '"***"'
    t.add_secrets(["p&ss'w"])
    ev3 = {"event": "verbose", "stdout": "x p&amp;ss&#x27;w y p%26ss%27w"}
    t.handle(ev3)
    assert ev3["stdout"] == "x *** y ***"


# --- finding 9 and 13: the result and the end event --------------------------------------------------------

def result_of(tmp_path, status, rc, final, timeout=None):
    req = PlayRequest(playbooks_dir=tmp_path, playbook="x.yml", inventory=tmp_path, artifacts_dir=tmp_path,
                      run_id="20261201T000000Z-0000aaaa", timeout=timeout)
    tracker = Tracker()
    tracker.final = final
    run = PlaybookRun(req, tracker)
    run._runner = types.SimpleNamespace(status=status, rc=rc)
    return run._result()


FACTS = events.RunFacts(run_id="r1", user="ops", playbook="vm-deploy.yml", inventory="production", site="all",
                        limit=None, check=True, diff=False, revision="abc", host="mgmt1")


def test_no_host_matched_is_a_failure_in_the_result_and_the_end_event(tmp_path):
    result = result_of(tmp_path, "successful", 0, {})
    assert not result.ok and result.meaning == NO_HOST_MATCHED
    end = events.run_end(FACTS, status=result.status, rc=result.rc, meaning=result.meaning, duration_seconds=1.0,
                         hosts=result.hosts, changed_tasks=0, ok=result.ok)
    assert end["event"]["outcome"] == "failure"
    assert result_of(tmp_path, "successful", 0, {"h": dict.fromkeys(("ok", "changed", "failed", "unreachable",
                                                                    "skipped"), 0)}).ok


def test_a_timed_out_run_records_no_exit_code(tmp_path):
    result = result_of(tmp_path, "timeout", 254, {}, timeout=1)
    assert result.rc is None and result.meaning.startswith("timed out after 1 s")
    end = events.run_end(FACTS, status=result.status, rc=result.rc, meaning=result.meaning, duration_seconds=1.0,
                         hosts={}, changed_tasks=0, ok=result.ok)
    assert end["citydc"]["playbook"]["exit_code"] is None and end["event"]["outcome"] == "failure"
    assert result.to_json()["rc"] is None


# --- findings 2, 3, 7, 11: libvirt_drift and the hypervisor role -------------------------------------------

def xml(vcpu="<vcpu>2</vcpu>", memory="<memory unit='KiB'>2097152</memory>", current="", mac="52:54:00:28:47:8b"):
    return (f"<domain type='test'><name>w</name><metadata><citydc:vm xmlns:citydc='{drift.NS}' site='siwei' "
            f"hypervisor='hv-siwei-1' disk_gib='20'/></metadata>{memory}{current}{vcpu}<devices>"
            f"<interface type='network'><mac address='{mac}'/><source network='default'/></interface>"
            "</devices></domain>")


DECLARED = {"name": "w", "vcpu": 2, "memory_mib": 2048, "disk_gib": 20, "network": "default", "site": "siwei"}


def test_vcpu_and_memory_set_with_config_are_what_the_vm_boots_with():
    spec, owner = drift.spec_from_xml(xml(vcpu="<vcpu current='1'>2</vcpu>",
                                          current="<currentMemory unit='KiB'>1048576</currentMemory>"), True)
    assert owner == "hv-siwei-1" and spec["vcpu"] == 1 and spec["memory_mib"] == 1024
    declared, error = drift.normalize_declared([DECLARED])
    assert error is None
    assert drift.differences(declared, {"w": spec}) == {"w": {"vcpu": {"declared": 2, "actual": 1},
                                                              "memory_mib": {"declared": 2048, "actual": 1024}}}
    in_sync, _ = drift.spec_from_xml(xml(current="<currentMemory unit='KiB'>2097152</currentMemory>"), True)
    assert drift.differences(declared, {"w": in_sync}) == {}
    grown, _ = drift.spec_from_xml(xml(vcpu="<vcpu current='2'>8</vcpu>"), True)  # boots with 2, may grow to 8
    assert drift.differences(declared, {"w": grown}) == {"w": {"vcpu_max": {"declared": 2, "actual": 8}}}


def test_state_has_one_vocabulary_and_a_bad_state_is_refused_before_anything():
    stopped, _ = drift.spec_from_xml(xml(), False)
    for word in ("shutdown", "shutoff"):
        declared, error = drift.normalize_declared([{**DECLARED, "state": word}])
        assert error is None and drift.differences(declared, {"w": stopped}) == {}, word
    declared, _ = drift.normalize_declared([DECLARED])  # running by default
    differing = drift.differences(declared, {"w": stopped})
    assert differing == {"w": {"state": {"declared": "running", "actual": "shutoff"}}}
    assert drift.to_redefine(differing) == []  # a start, not a snapshot and a new definition
    assert drift.to_redefine({"w": {"vcpu": {}, "state": {}}}) == ["w"]
    _, error = drift.normalize_declared([{**DECLARED, "state": "paused"}])
    assert "state 'paused'" in error and "nothing was changed" in error
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    first = tasks[0]
    assert "citydc.ops.libvirt_drift" in first  # the check runs before any task that changes something
    start = next(t for t in tasks if t["name"] == "Start the declared VMs")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 (a task argument, not HTML)
    env.filters["default"] = lambda v, d=None: d if isinstance(v, jinja2.Undefined) else v
    assert [env.from_string(start["community.libvirt.virt"]["state"]).render(vm={"state": s})
            for s in ("running", "shutoff", "shutdown")] == ["running", "shutdown", "shutdown"]
    snapshot = next(t for t in tasks if t["name"] == "Snapshot every VM about to change")
    define = next(t for t in tasks if t["name"] == "Define the missing and differing VMs")
    assert snapshot["loop"] == "{{ hypervisor_vm_drift.redefine }}" and "differing" not in define["loop"]


def render_domain(**values) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),  # noqa: S701 (XML, as Ansible)
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template("domain.xml.j2").render(libvirt_domain_type="kvm", inventory_hostname="hv-siwei-1",
                                                    libvirt_image_dir="/var/lib/libvirt/images", **values)


def test_a_redefined_vm_keeps_its_mac_address():
    spec, _ = drift.spec_from_xml(xml(), False)
    assert spec["mac"] == "52:54:00:28:47:8b"
    vm = {**DECLARED, "vcpu": 4}
    text = render_domain(vm=vm, hypervisor_vm_drift={"actual": {"w": spec}})
    assert "<mac address='52:54:00:28:47:8b'/>" in text
    assert "<mac" not in render_domain(vm=vm, hypervisor_vm_drift={"actual": {}})  # a new VM: libvirt picks one


def test_one_snapshot_name_per_run():
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    names = [t["name"] for t in tasks]
    named = tasks[names.index("Name this run's snapshots")]
    assert named["run_once"] is True
    assert named["ansible.builtin.set_fact"] == {"hypervisor_run_snapshot": "{{ hypervisor_snapshot_name }}"}
    snapshot = tasks[names.index("Snapshot every VM about to change")]
    assert names.index("Name this run's snapshots") < names.index("Snapshot every VM about to change")
    assert snapshot["citydc.ops.libvirt_snapshot"]["snapshot"] == "{{ hypervisor_run_snapshot }}"


# --- finding 14 ----------------------------------------------------------------------------------------------

def test_play_list_summaries_are_whole_sentences():
    books = dict(list_playbooks(PLAYBOOKS))
    assert books["vm-deploy.yml"].endswith("define and start what is missing or differs.")
    assert books["lb-drift.yml"].endswith("reports each setting that differs.")


# --- finding 6: a run that does not end normally keeps what it did in the record ------------------------------

CHANGE = """---
# One change on localhost.
- name: Change
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the marker
      ansible.builtin.copy:
        dest: "{{ marker }}"
        content: x
        mode: "0600"
"""


def test_a_run_that_ends_in_an_error_still_records_its_changes_and_duration(books, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from citydc.cli.main import cli

    (books / "change.yml").write_text(CHANGE)
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({"sites": [{"id": "siwei", "name": "Siwei"}], "security_log": {
        "spool_dir": str(tmp_path / "spool"), "sink": {"kind": "sqlite", "path": str(tmp_path / "log.db")}}}))
    original = PlaybookRun.wait

    def wait_then_fail(self):
        original(self)
        raise RuntimeError("after the run")

    monkeypatch.setattr(PlaybookRun, "wait", wait_then_fail)
    monkeypatch.delenv("CITYDC_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["-c", str(config), "play", "run", "change.yml", "--playbooks", str(books),
                                      "-i", str(books / "inventory" / "hosts"), "-e", f"marker={tmp_path / 'm'}",
                                      "--artifacts", str(tmp_path / "art"), "--json"])
    assert result.exit_code == 1 and (tmp_path / "m").exists()
    spooled = [json.loads(line) for seg in sorted((tmp_path / "spool").glob("seg-*.jsonl"))
               for line in seg.read_text().splitlines()]
    changed = [e for e in spooled if e["event"]["action"] == "playbook-task-changed"]
    assert [e["citydc"]["playbook"]["task"] for e in changed] == ["Write the marker"]
    end = next(e for e in spooled
               if e["event"]["action"] == "playbook-run" and e["citydc"]["playbook"]["phase"] == "end")
    assert end["citydc"]["playbook"]["status"] == "error" and end["citydc"]["playbook"]["duration_seconds"] > 0


# --- finding 10: a failed loop says why -----------------------------------------------------------------------

def test_a_failed_loop_task_says_which_item_failed_and_why():
    t = Tracker()
    t.handle({"event": "runner_on_failed", "event_data": {"host": "hv", "task": "Start the declared VMs", "res": {
        "msg": "One or more items failed", "results": [
            {"failed": False, "vm": {"name": "a"}, "ansible_loop_var": "vm", "_ansible_item_label": "a"},
            {"failed": True, "vm": {"name": "b"}, "ansible_loop_var": "vm", "_ansible_item_label": "b",
             "msg": "value of state must be one of: destroyed, paused, running, shutdown, got: shutoff"}]}}})
    assert t.failures[0]["message"] == ("One or more items failed (first: b: value of state must be one of: destroyed, "
                                        "paused, running, shutdown, got: shutoff)")


# --- finding 8 (part): the VM drift report in the human output ------------------------------------------------

def test_the_vm_drift_is_shown_without_json():
    from citydc.cli.play_cmd import vm_drift_lines

    stats = {"vm_drift": {"hv-siwei-1": {"missing": ["siwei-db01"], "undeclared": ["test"], "differing": {
        "siwei-web01": {"vcpu": {"declared": 2, "actual": 1}}}}, "hv-fengshan-1": {
        "missing": [], "undeclared": [], "differing": {}}}}
    assert vm_drift_lines(stats) == [
        "vm drift hv-fengshan-1: in sync",
        "vm drift hv-siwei-1: missing siwei-db01; siwei-web01 differs: vcpu 2 -> 1 (declared -> actual); "
        "undeclared (not removed) test"]
    assert vm_drift_lines({}) == []


def test_the_vm_drift_shows_a_vm_moved_to_another_hypervisor_and_the_domains_it_owns():
    from citydc.cli.play_cmd import vm_drift_lines

    stats = {"vm_drift": {
        "hv-siwei-1": {"missing": ["siwei-db01"], "undeclared": [], "differing": {}, "foreign": {},
                       "moved": {"siwei-db01": "hv-fengshan-1"}},
        "hv-fengshan-1": {"missing": [], "undeclared": [], "differing": {}, "foreign": {"siwei-db01": "hv-siwei-1"},
                          "moved": {}}}}
    assert vm_drift_lines(stats) == [
        "vm drift hv-fengshan-1: owned by another hypervisor: siwei-db01 (hv-siwei-1)",
        "vm drift hv-siwei-1: missing siwei-db01; runs on another hypervisor, not defined again: "
        "siwei-db01 on hv-fengshan-1"]

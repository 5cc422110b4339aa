"""Device config backup end to end: the real ``citydc backup configs`` command over real SSH (netmiko) to the
lab's fakenos cisco_ios/arista_eos devices (enable step, planted secrets) and OpenSSH ``linux`` hosts, a real
git repository, the real spool; then the repository backed up by a restic job and restored by a drill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from citydc.lab import ports
from citydc.lab.netdevices import DEVICES, LINUX, planted_secrets, rekey, render_config, write_config
from citydc.lab.registry import SERVICES

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
WRONG_PASSWORD = "wrong-device-pw-Zk4-never-shown"
RESTIC_PW = "restic-configs-pw-never-shown"
NETDEVICES = SERVICES["netdevices"]


@pytest.fixture(scope="module")
def lab(lab_up, lab_ctx):
    statuses = lab_up("netdevices", "linux-dev1", "linux-dev2")
    assert all(s.running for s in statuses), [(s.name, s.running, s.pids) for s in statuses]
    return {s.name: s.endpoints for s in statuses}


def planted_all() -> list[str]:
    values = [v for dev in DEVICES for v in planted_secrets(dev.name).values()]
    return [*values, "linux-planted-psk-9f3", ports.LAB_ENV["CITYDC_DEVICE_PASSWORD"],
            ports.LAB_ENV["CITYDC_DEVICE_ENABLE"], WRONG_PASSWORD]


class Fleet:
    """One config file with its own repository, known_hosts, state, spool and textfile directory."""

    def __init__(self, base: Path, lab: dict, lab_ctx, extra_devices: list[dict] | None = None):
        self.dir = base
        self.lab_ctx = lab_ctx
        self.config = base / "citydc.yaml"
        base.mkdir(parents=True, exist_ok=True)
        devices = [{"name": d.name, "address": ports.HOST, "site": d.site, "role": "core",
                    "netmiko_device_type": d.platform, "login": "lab",
                    "management_address": f"{ports.HOST}:{d.port}"} for d in DEVICES]
        for k, d in enumerate(LINUX, 1):
            ep = lab[f"linux-dev{k}"]
            devices.append({"name": d.name, "address": ports.HOST, "site": d.site, "role": "server",
                            "netmiko_device_type": "linux", "login": f"linux{k}",
                            "management_address": ep["ssh"],
                            "config_commands": {"running": f"cat {ep['config_file']}"}})
        devices += extra_devices or []
        logins = {"lab": {"username": "netops", "password": "env:CITYDC_DEVICE_PASSWORD",
                          "enable_secret": "env:CITYDC_DEVICE_ENABLE", "timeout_seconds": 6},
                  "wrong": {"username": "netops", "password": "env:CITYDC_TEST_WRONG_PW",
                            "enable_secret": "env:CITYDC_DEVICE_ENABLE", "timeout_seconds": 6},
                  "wrong-enable": {"username": "netops", "password": "env:CITYDC_DEVICE_PASSWORD",
                                   "enable_secret": "env:CITYDC_TEST_WRONG_PW", "timeout_seconds": 3}}
        for k in (1, 2):
            ep = lab[f"linux-dev{k}"]
            logins[f"linux{k}"] = {"username": ep["user"], "key_file": ep["key_file"], "timeout_seconds": 6}
        self.config.write_text(yaml.safe_dump({
            "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
            "device_logins": logins, "devices": devices,
            "backup": {"textfile_dir": "textfile", "configs": {"max_workers": 8}},
        }, sort_keys=False))

    def env(self) -> dict[str, str]:
        return {**os.environ, **ports.LAB_ENV, "CITYDC_TEST_WRONG_PW": WRONG_PASSWORD}

    def cli(self, *args: str) -> tuple[int, str, str]:
        proc = subprocess.run([CITYDC, "-vv", "-c", str(self.config), "backup", "configs", *args], env=self.env(),
                              capture_output=True, text=True, timeout=300, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def run(self, *args: str) -> tuple[int, dict, str]:
        rc, stdout, stderr = self.cli(*args, "--json")
        self.logs.append(stdout + stderr)
        return rc, json.loads(stdout) if stdout.strip() else {}, stderr

    logs: list[str]

    @property
    def repo(self) -> Path:
        return self.dir / "var" / "device-configs"

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True,
                              check=True).stdout

    def commits(self) -> int:
        return int(self.git("rev-list", "--count", "HEAD").strip())

    def events(self) -> list[dict]:
        out = []
        for p in sorted((self.dir / "var" / "spool").rglob("*")):
            if p.is_file():
                for line in p.read_text(errors="replace").splitlines():
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and "event" in doc:
                        out.append(doc)
        return out

    def everything_written(self) -> str:
        """Every byte the runs left on disk (repository with its history, spool, state, metrics) and printed."""
        chunks = [p.read_bytes().decode("utf-8", "replace") for p in self.dir.rglob("*") if p.is_file()]
        chunks.append(subprocess.run(["git", "-C", str(self.repo), "log", "-p", "--all"], capture_output=True,
                                     text=True, check=True).stdout)
        return "\n".join(chunks + self.logs)

    def metrics(self) -> dict[tuple, float]:
        text = (self.dir / "textfile" / "citydc_device_config.prom").read_text()
        return {(s.name, *sorted(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}


def reset_devices(lab_ctx) -> None:
    for dev in DEVICES:
        write_config(lab_ctx, NETDEVICES, dev.name, running=render_config(dev), startup=render_config(dev))
    for k, _ in enumerate(LINUX, 1):
        svc = SERVICES[f"linux-dev{k}"]
        svc.config_file(lab_ctx).write_text("table inet filter {\n  chain input { policy drop; }\n}\n"
                                            "wireguard_psk = linux-planted-psk-9f3\n")


@pytest.fixture
def fleet(tmp_path, lab, lab_ctx):
    reset_devices(lab_ctx)

    def make(extra_devices: list[dict] | None = None) -> Fleet:
        f = Fleet(tmp_path / "fleet", lab, lab_ctx, extra_devices)
        f.logs = []
        return f

    yield make
    reset_devices(lab_ctx)


def by_device(out: dict) -> dict[str, dict]:
    return {d["device"]: d for d in out["devices"]}


def test_all_stored_change_detected_masked_everywhere_and_a_quiet_second_run(fleet, lab_ctx):
    f = fleet()
    rc, out, err = f.run()
    assert rc == 0, err
    res = by_device(out)
    names = [d.name for d in (*DEVICES, *LINUX)]
    assert sorted(res) == sorted(names)
    assert {r["status"] for r in res.values()} == {"new"}
    for dev in (*DEVICES, *LINUX):
        stored = (f.repo / dev.site / f"{dev.name}.cfg").read_text()
        assert f"hostname {dev.name}" in stored or dev.platform == "linux"
        assert "Last configuration change" not in stored and "ntp clock-period" not in stored
        assert "Startup-config last modified" not in stored and "! Uptime" not in stored
    assert "<masked:" in (f.repo / "siwei" / "lab-ios-1.cfg").read_text()
    assert f.commits() == len(names)  # one commit per device
    assert res["lab-ios-1"]["unsaved"] is False and res["lab-linux-1"]["unsaved"] is None
    # every host key pinned at first contact
    known = (f.dir / "var" / "device-configs-known_hosts").read_text().splitlines()
    assert len(known) == len(names)

    # a change on one device: a new SNMP host and an interface shut down, saved to startup too
    dev = DEVICES[1]
    changed = render_config(dev).replace(" description access\n shutdown\n", " description access\n no shutdown\n")
    changed = changed.replace("ntp server 10.10.0.6\n", "ntp server 10.10.0.6\nsnmp-server host 10.9.9.9 version 2c "
                                                        "PLANTED-new-community-77\nlogging host 10.9.9.10\n")
    write_config(lab_ctx, NETDEVICES, dev.name, running=changed, startup=changed)
    before = f.commits()
    rc, out, err = f.run()
    assert rc == 0, err
    res = by_device(out)
    assert res[dev.name]["status"] == "changed"
    assert {r["status"] for n, r in res.items() if n != dev.name} == {"unchanged"}
    assert (res[dev.name]["added"], res[dev.name]["removed"]) == (3, 1)
    assert set(res[dev.name]["sections"]) == {"interface GigabitEthernet0/2", "snmp-server", "logging"}
    assert f.commits() == before + 1
    msg = f.git("log", "-1", "--format=%B")
    assert dev.name in msg and dev.site in msg and "T" in msg.split(" at ", 1)[1].split()[0]
    changes = [e for e in f.events() if e["event"]["action"] == "device-config-changed"]
    assert len(changes) == 1
    ev = changes[0]
    assert ev["labels"]["site"] == dev.site and ev["citydc"]["device_config"]["device"] == dev.name
    assert ev["citydc"]["device_config"]["lines_added"] == 3 and ev["citydc"]["device_config"]["lines_removed"] == 1
    # the masked diff command shows the change, with the new community masked
    rc, diff, _ = f.cli("diff", dev.name)
    assert rc == 0
    assert "-  shutdown" not in diff and "- shutdown" in diff and "+ no shutdown" in diff
    assert "+snmp-server host 10.9.9.9 version 2c <masked:" in diff
    f.logs.append(diff)

    # second run with no change: no commit, no change event
    n_events, n_commits = len(changes), f.commits()
    rc, out, err = f.run()
    assert rc == 0, err
    assert {r["status"] for r in out["devices"]} == {"unchanged"}
    assert f.commits() == n_commits
    assert len([e for e in f.events() if e["event"]["action"] == "device-config-changed"]) == n_events

    # unsaved: running changed, startup not
    unsaved = render_config(DEVICES[3]).replace("ip routing\n", "ip routing\nip route 0.0.0.0/0 10.20.1.254\n")
    write_config(lab_ctx, NETDEVICES, DEVICES[3].name, running=unsaved)
    rc, out, err = f.run()
    r = by_device(out)[DEVICES[3].name]
    assert r["status"] == "changed" and r["unsaved"] is True
    assert [e["citydc"]["device_config"]["device"] for e in f.events()
            if e["event"]["action"] == "device-config-unsaved"] == [DEVICES[3].name]

    # metrics for the alerts
    m = f.metrics()
    assert m[("citydc_device_config_up", ("device", "lab-ios-1"), ("site", "siwei"))] == 1
    assert m[("citydc_device_config_unsaved", ("device", DEVICES[3].name), ("site", DEVICES[3].site))] == 1
    assert m[("citydc_device_config_devices_failed", ("site", "siwei"))] == 0

    # the planted secrets (and the login's) are nowhere: repository with history, spool, state, output
    written = f.everything_written() + "\n" + new_secret_scan_text(f)
    leaked = [s for s in [*planted_all(), "PLANTED-new-community-77"] if s in written]
    assert leaked == []


def new_secret_scan_text(f: Fleet) -> str:
    _, stdout, stderr = f.cli()  # the human table too
    return stdout + stderr


def test_unreachable_wrong_password_and_changed_host_key_fail_while_the_rest_succeed(fleet, lab_ctx):
    extra = [
        {"name": "lab-dead", "address": ports.HOST, "site": "siwei", "role": "access",
         "netmiko_device_type": "cisco_ios", "login": "lab",
         "management_address": f"{ports.HOST}:{ports.NETDEVICES_DEAD}"},
        {"name": "lab-wrongpw", "address": ports.HOST, "site": "fengshan", "role": "access",
         "netmiko_device_type": "cisco_ios", "login": "wrong",
         "management_address": f"{ports.HOST}:{DEVICES[2].port}"},
        {"name": "lab-wrongenable", "address": ports.HOST, "site": "fengshan", "role": "access",
         "netmiko_device_type": "arista_eos", "login": "wrong-enable",
         "management_address": f"{ports.HOST}:{DEVICES[4].port}"},
    ]
    f = fleet(extra)
    rc, out, _ = f.run()
    assert rc == 1
    res = by_device(out)
    assert res["lab-dead"]["status"] == "failure" and res["lab-dead"]["reason"] == "unreachable"
    assert res["lab-wrongpw"]["status"] == "failure" and res["lab-wrongpw"]["reason"] == "auth"
    assert res["lab-wrongenable"]["status"] == "failure" and res["lab-wrongenable"]["reason"] == "enable"
    failing = ("lab-dead", "lab-wrongpw", "lab-wrongenable")
    assert all(r["status"] == "new" for n, r in res.items() if n not in failing)
    # a replaced (or spoofed) device: its key no longer matches the pinned one
    victim = DEVICES[0]
    pinned = (f.dir / "var" / "device-configs-known_hosts").read_text()
    rekey(lab_ctx, NETDEVICES, victim.name)
    write_config(lab_ctx, NETDEVICES, victim.name,
                 running=render_config(victim, "banner motd ^owned^"))  # would be a change if it were read
    before = f.commits()
    rc, out, _ = f.run()
    assert rc == 1
    res = by_device(out)
    assert res[victim.name]["status"] == "failure" and res[victim.name]["reason"] == "host-key-changed"
    assert all(r["status"] == "unchanged" for n, r in res.items() if n not in (victim.name, *failing))
    assert f.commits() == before  # nothing from the impostor was stored
    assert (f.dir / "var" / "device-configs-known_hosts").read_text() == pinned  # and its key never accepted
    actions = [(e["event"]["action"], e["citydc"]["device_config"]["device"]) for e in f.events()
               if e["event"]["outcome"] == "failure"]
    assert ("device-host-key-changed", victim.name) in actions
    assert ("device-config-backup", victim.name) in actions
    assert ("device-config-backup", "lab-dead") in actions and ("device-config-backup", "lab-wrongpw") in actions
    m = f.metrics()
    assert m[("citydc_device_config_up", ("device", victim.name), ("site", victim.site))] == 0
    assert m[("citydc_device_config_devices_failed", ("site", "siwei"))] == 2  # lab-dead and the victim
    # the human table names each failure with its reason and fits 80 columns
    proc = subprocess.run([CITYDC, "-c", str(f.config), "backup", "configs"], env={**f.env(), "COLUMNS": "80"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    for name, reason in ((victim.name, "host-key-changed"), ("lab-dead", "unreachable"), ("lab-wrongpw", "auth")):
        assert any(name in line and reason in line for line in proc.stderr.splitlines()), proc.stderr
    f.logs.append(proc.stdout + proc.stderr)
    assert [s for s in planted_all() if s in f.everything_written()] == []


def test_golden_config_drift_is_reported_once(fleet, lab_ctx, tmp_path):
    golden = tmp_path / "golden"
    golden.mkdir()
    dev = DEVICES[4]
    approved = render_config(dev).replace("ip routing\n", "ip routing\nip routing vrf mgmt\n")
    (golden / f"{dev.name}.cfg").write_text(approved)
    f = fleet()
    cfg = yaml.safe_load(f.config.read_text())
    cfg["backup"]["configs"]["golden_dir"] = str(golden)
    f.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    for _ in range(2):
        rc, out, err = f.run("--device", dev.name)
        assert rc == 0, err
        assert by_device(out)[dev.name]["drift"] is True
    drifts = [e for e in f.events() if e["event"]["action"] == "config-drift"]
    assert len(drifts) == 1 and drifts[0]["citydc"]["device_config"]["lines_removed"] == 1


def test_configs_repository_is_a_restic_job_source_restored_by_a_drill(fleet, lab_up, tmp_path):
    f = fleet()
    rc, out, err = f.run("--site", "fengshan")
    assert rc == 0, err
    assert {r["site"] for r in out["devices"]} == {"fengshan"}
    cfg = yaml.safe_load(f.config.read_text())
    cfg["backup"]["jobs"] = [{
        "name": "device-configs", "site": "fengshan", "sources": [str(f.repo)],
        "local_repo": {"url": str(tmp_path / "restic-local"), "password": "env:CITYDC_TEST_RESTIC_PW",
                       "site": "fengshan"},
    }]
    f.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**f.env(), "CITYDC_TEST_RESTIC_PW": RESTIC_PW}

    def backup(*args: str) -> dict:
        proc = subprocess.run([CITYDC, "-c", str(f.config), "backup", *args, "device-configs", "--json"], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    backup("init")
    out = backup("run")
    assert out["status"] == "success"
    out = backup("drill")
    drill = next(s for s in out["steps"] if s["step"] == "drill")
    files = sum(1 for p in f.repo.rglob("*") if p.is_file())
    assert drill["details"]["verified_files"] == files and drill["details"].get("failed_files", 0) == 0
    shutil.rmtree(tmp_path / "restic-local", ignore_errors=True)


def test_unmasked_repository_is_kept_private_and_its_diff_still_masked(fleet, lab_ctx):
    f = fleet()
    cfg = yaml.safe_load(f.config.read_text())
    cfg["backup"]["configs"]["store_secrets"] = "unmasked"
    f.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dev = DEVICES[2]
    f.repo.mkdir(parents=True)
    f.repo.chmod(0o755)
    rc, _, err = f.run("--device", dev.name)
    assert rc == 0, err
    assert f.repo.stat().st_mode & 0o777 == 0o700
    stored = f.repo / dev.site / f"{dev.name}.cfg"
    assert stored.stat().st_mode & 0o777 == 0o600
    community = planted_secrets(dev.name)["community"]
    assert community in stored.read_text()  # stored as fetched, by choice
    write_config(lab_ctx, NETDEVICES, dev.name, running=render_config(dev).replace(community, community + "-v2"))
    rc, out, err = f.run("--device", dev.name)
    assert rc == 0 and by_device(out)[dev.name]["status"] == "changed", err
    rc, diff, _ = f.cli("diff", dev.name)
    assert rc == 0 and "snmp-server community <masked:" in diff
    assert community not in diff
    event = next(e for e in f.events() if e["event"]["action"] == "device-config-changed")
    assert community not in json.dumps(event) and event["citydc"]["device_config"]["sections"] == ["snmp-server"]

"""A play over real SSH: ``citydc play drift`` (lb-drift.yml and the citydc.ops collection) with both load
balancers reached over SSH to the lab's OpenSSH server (``linux-dev1``: sshd on loopback, this machine), the
server's host key pinned in a known_hosts file made from the lab's host key, host key checking on, and the
client key encrypted with a passphrase given by reference (``--secret-var ...=env:VAR``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.lab import ports

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
PASSPHRASE = "kp-Vx27-ssh-key-passphrase-never-shown"
PORT = ports.LINUX_DEVICES + 1  # linux-dev1


@pytest.fixture(scope="module")
def lab(lab_up, lab_ctx, tmp_path_factory) -> dict:
    lab_up("app-backends", "haproxy-siwei", "haproxy-fengshan", "linux-dev1")
    base = tmp_path_factory.mktemp("play-ssh")
    dev = lab_ctx.service_dir("linux-dev1")
    key = base / "client_ed25519"  # the lab's client key, encrypted with a passphrase
    shutil.copy(dev / "client_ed25519", key)
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSPHRASE, "-f", str(key)], check=True,
                   capture_output=True, timeout=30)
    assert subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(key)], capture_output=True,
                          timeout=30).returncode != 0  # unusable without the passphrase
    algo, blob = (dev / "host_ed25519.pub").read_text().split()[:2]
    known = base / "known_hosts"  # the server's own host key, pinned
    known.write_text(f"[{ports.HOST}]:{PORT} {algo} {blob}\n")
    wrong = base / "wrong_known_hosts"  # a key the server does not have
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "other")], check=True, timeout=30)
    algo2, blob2 = (base / "other.pub").read_text().split()[:2]
    wrong.write_text(f"[{ports.HOST}]:{PORT} {algo2} {blob2}\n")

    config = base / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(base / "spool"), "sink": {"kind": "sqlite", "path": str(base / "log.db")}},
    }))
    env = {**os.environ, "CITYDC_LAB_DIR": str(lab_ctx.root), "SSH_KEY_PW": PASSPHRASE}
    env.pop("ANSIBLE_HOST_KEY_CHECKING", None)
    env.pop("SSH_AUTH_SOCK", None)  # no agent of the shell: the key must come from the passphrase given
    info = {"base": base, "config": config, "env": env, "key": key, "known": known, "wrong": wrong,
            "sshd_log": dev / "linux-dev1.log"}
    deploy = subprocess.run([CITYDC, "-c", str(config), "play", "run", "lb-deploy.yml", "-i", "lab", "--json"],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
    return info


def ssh_inventory(lab: dict, known_hosts: Path) -> Path:
    """The lab inventory with both load balancers reached over SSH (the connection of the production one)."""
    inv = lab["base"] / f"inventory-{known_hosts.name}"
    shutil.rmtree(inv, ignore_errors=True)
    shutil.copytree(PLAYBOOKS / "inventories" / "lab", inv)
    for host in ("lb-siwei-1", "lb-fengshan-1"):
        (inv / "host_vars" / f"{host}.yml").write_text(f"""---
ansible_connection: ssh
ansible_host: {ports.HOST}
ansible_port: {PORT}
ansible_user: root
# The encrypted key; its passphrase comes as --secret-var ansible_ssh_private_key_passphrase.
ansible_ssh_private_key: "{{{{ lookup('ansible.builtin.file', '{lab['key']}') }}}}"
# No connection sharing: every connection checks the host key (a master left by an earlier run would not).
ansible_ssh_args: -C -o ControlMaster=no
ansible_ssh_common_args: -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes
""")
    return inv


def drift(lab: dict, inv: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(lab["config"]), "play", "drift", "-i", str(inv), "--json",
                           "--secret-var", "ansible_ssh_private_key_passphrase=env:SSH_KEY_PW",
                           "--artifacts", str(lab["base"] / "art")],
                          env=lab["env"], capture_output=True, text=True, timeout=300, check=False)


def accepted(lab: dict) -> int:
    text = lab["sshd_log"].read_text(errors="replace") if lab["sshd_log"].exists() else ""
    return text.count("Accepted publickey for root")


def test_a_play_runs_over_ssh_with_the_pinned_host_key_and_a_passphrase_by_reference(lab):
    before = accepted(lab)
    proc = drift(lab, ssh_inventory(lab, lab["known"]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["run"]["rc"] == 0 and report["in_sync"] is True
    assert set(report["hosts"]) == {"lb-siwei-1", "lb-fengshan-1"} and report["settings_compared"] >= 10
    assert accepted(lab) > before  # the hosts were reached over SSH, by the key
    assert PASSPHRASE not in proc.stdout + proc.stderr
    subprocess.run([CITYDC, "-c", str(lab["config"]), "log", "ship"], env=lab["env"], capture_output=True,
                   timeout=120, check=True)
    leaked = [str(p) for p in lab["base"].rglob("*")
              if p.is_file() and p != lab["key"] and PASSPHRASE.encode() in p.read_bytes()]
    assert leaked == []
    runs = list((lab["base"] / "art").iterdir())
    command = json.loads((runs[0] / "command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"


def test_a_wrong_host_key_makes_the_run_fail(lab):
    proc = drift(lab, ssh_inventory(lab, lab["wrong"]))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    failures = report["run"]["failures"]
    assert {f["host"] for f in failures} == {"lb-siwei-1", "lb-fengshan-1"}
    assert all("host key verification failed" in f["message"].lower() or "REMOTE HOST IDENTIFICATION"
               in f["message"] for f in failures), failures

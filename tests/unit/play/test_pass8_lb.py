"""Pass 8 findings of the load-balancer playbooks, run through ``ansible-playbook`` against the fake HAProxy of
test_lb_role_fixes.py (its fixtures, loaded from that file)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from citydc.play.runner import RUN_LOCK, take_run_lock

_spec = importlib.util.spec_from_file_location("pass8_lb_role_fixes", Path(__file__).with_name("test_lb_role_fixes.py"))
_fixes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixes)
sockdir = _fixes.sockdir  # (pytest fixtures: the fake HAProxies of Siwei and Fengshan and their inventory)
site = _fixes.site


def test_rolling_refuses_to_empty_a_pool_and_says_why(site):
    """With app-siwei-2 down, taking app-siwei-1 out would leave Siwei's frontend nothing to serve: the run stops
    before any drain. The refusal said only "Action failed: Unknown error." (a failed_when on the read)."""
    play, lbs = site["play"], site["lb"]
    for ha in lbs.values():
        ha.down.add("app-siwei-2")
    rc, out = play("lb-rolling.yml", "--limit", "app-siwei-1")
    assert rc != 0, out[-3000:]
    flat = " ".join(out.split())
    assert ("app-siwei-1 was not taken out of the pool: no other server of be_app serves (ready, UP, weight > 0) on "
            "lb-siwei-1, which would serve nothing; serving now: lb-siwei-1: app-siwei-1; lb-fengshan-1: "
            "app-fengshan-1, app-fengshan-2. Nothing was changed") in flat, out[-3000:]
    assert "Unknown error" not in out
    assert all(s["admin"] == 0 for ha in lbs.values() for s in ha.servers.values())  # nothing drained


# --- two runs that change hosts never overlap on one control node --------------------------------------------------

CITYDC = str(Path(sys.executable).with_name("citydc"))
STAMP = """---
- name: Stamp
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a stamp
      ansible.builtin.copy:
        content: "ran\\n"
        dest: "{{ out }}/stamp"
        mode: "0600"
"""


def stamp_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    books = tmp_path / "books"
    if not books.exists():
        (books / "inventory").mkdir(parents=True)
        (books / "stamp.yml").write_text(STAMP)
        (books / "inventory" / "hosts").write_text(
            f"lb-qwertz-1 ansible_connection=local ansible_python_interpreter={sys.executable}\n[siwei]\nlb-qwertz-1\n")
        (tmp_path / "citydc.yaml").write_text(json.dumps({
            "sites": [{"id": "siwei", "name": "Siwei"}],
            "security_log": {"spool_dir": str(tmp_path / "spool"), "sink": {"kind": "sqlite", "path": "log.db"}}}))
    env = {k: v for k, v in os.environ.items() if k != "CITYDC_CONFIG"}
    return subprocess.run([CITYDC, "-c", str(tmp_path / "citydc.yaml"), "play", "run", "stamp.yml", "--playbooks",
                           str(books), "-i", str(books / "inventory" / "hosts"), "-e", f"out={tmp_path}", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_run_that_changes_hosts_waits_for_none_and_is_refused_while_another_runs(tmp_path):
    """Two lb-rolling.yml runs at once (two operators on one control node) re-enabled a server the other had in
    maintenance, and one could drain the last serving server between the other's pool check and its drain."""
    held = take_run_lock(tmp_path / RUN_LOCK, "lb-rolling.yml by alice, run 20261208T020000Z-0000abcd (pid 1)")
    try:
        refused = stamp_run(tmp_path)
        assert refused.returncode == 1, refused.stderr
        assert ("another run that may change hosts is in progress on this machine: lb-rolling.yml by alice, run "
                "20261208T020000Z-0000abcd (pid 1)") in " ".join(refused.stderr.split())
        assert not (tmp_path / "stamp").exists()  # it ran nothing
        assert "stamp.yml" not in "".join(p.read_text() for p in tmp_path.glob("spool/seg-*.jsonl"))  # not recorded
        dry = stamp_run(tmp_path, "--check")  # changes nothing: never waits
        assert dry.returncode == 0 and not (tmp_path / "stamp").exists(), dry.stderr
    finally:
        os.close(held)
    done = stamp_run(tmp_path)
    assert done.returncode == 0 and (tmp_path / "stamp").read_text() == "ran\n", done.stderr
    again = take_run_lock(tmp_path / RUN_LOCK, "next")  # the finished run let it go
    os.close(again)


# --- play drift: passwords of the HAProxy config, and a backend the running HAProxy lacks ---------------------------

HAND_EDITED = """global
    stats socket {d}/admin.sock mode 600 level admin
    maxconn 4096
defaults
    mode http
    timeout client 30s
frontend fe_app
    bind 127.0.0.1:1
    default_backend be_app
backend be_app
    balance roundrobin
    server app-siwei-1 127.0.0.1:1 check weight 100
userlist admins
    user ops insecure-password St4tsPassSW groups admin
    user audit password $6$salt$Wq9Hashed0nly
listen stats
    bind 127.0.0.1:2
    stats enable
    stats auth admin:St4tsPassSW
listen stats2
    bind 127.0.0.1:3
    stats auth St4tsPassNoUser
"""


class HandEditedHaproxy(_fixes.FakeHaproxy):
    """The running HAProxy knows be_app and stats; stats2 was added to the file and not reloaded."""

    def _admin(self, cmd: str) -> str:
        if cmd == "show servers state stats2":
            return "Can't find backend.\n"
        return super()._admin(cmd)


def test_drift_settings_never_hold_a_stats_or_userlist_password_and_a_backend_not_running_is_a_setting(sockdir):
    """Hand-added `stats auth admin:PASS` and userlist users showed their passwords (and crypt hashes) in `citydc play
    drift`'s table, its playbook-drift event and the run's artifacts; a backend added to the file but not reloaded
    failed the whole drift run ("backend stats2: Can't find backend.") so it compared nothing."""
    ha = HandEditedHaproxy(sockdir, {"app-siwei-1": 100})
    try:
        ha.config.write_text(HAND_EDITED.format(d=sockdir))
        result = _fixes.run_module("haproxy_settings", {"config_path": str(ha.config), "socket": str(ha.admin)})
    finally:
        ha.close()
    assert not result.get("failed"), result
    settings = result["settings"]
    assert settings["listen stats.stats auth"] == "admin:(set)"
    assert settings["listen stats2.stats auth"] == "(set)"
    assert settings["userlist admins.user"] == "ops insecure-password (set) groups admin; audit password (set)"
    assert "St4ts" not in json.dumps(result) and "Wq9" not in json.dumps(result)
    assert settings["runtime.backend stats2.running"] == "no"
    assert settings["runtime.backend be_app.running"] == "yes" and "runtime.backend be_app.weights" in settings

"""The lb, lb_drift and keepalived roles and the citydc.ops HAProxy modules, run for real (the modules as Ansible
runs them, the roles through ``ansible-playbook``) against a fake HAProxy: an in-process runtime API and master
CLI on unix sockets that answers as HAProxy 2.6 does (``show proc`` with ``[failed: N]``, ``show servers state``
with runtime and configured weights, a reload that re-reads the configured weights as the server-state-file
does). No HAProxy or keepalived binary is needed: ``haproxy -c`` and ``keepalived --config-test`` are stubs that
refuse a config holding ``INVALID``. The real HAProxy runs in tests/lab/test_play_lb.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from citydc.play import drift

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
COLLECTIONS = PLAYBOOKS / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "citydc" / "ops" / "plugins" / "modules"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord")
SERVERS = {"app-siwei-1": "siwei", "app-siwei-2": "siwei", "app-fengshan-1": "fengshan", "app-fengshan-2": "fengshan"}


class FakeHaproxy:
    """A master-worker HAProxy's admin socket and master CLI. ``reload_mode``: ok (a new worker; configured
    weights from the config file, runtime weights kept where the configured one did not change), fail (the
    master counts a failed reload and logs an ALERT; the old worker stays) or stuck (no new worker)."""

    def __init__(self, d: Path, servers: dict[str, int]) -> None:
        self.dir = d
        self.admin, self.master = d / "admin.sock", d / "master.sock"
        self.config, self.log = d / "haproxy.cfg", d / "haproxy.log"
        self.log.write_text("")
        self.servers = {n: {"uw": w, "iw": w, "admin": 0} for n, w in servers.items()}
        self.pid, self.master_pid, self.reloads, self.failed = 2001, 2000, 0, 0
        self.reload_mode = "ok"
        self.down: set[str] = set()  # servers whose health check fails (operational state stopped)
        self._servers_up = []
        for path, handle in ((self.admin, self._admin), (self.master, self._master)):
            srv = socketserver.ThreadingUnixStreamServer(str(path), self._handler(handle))
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self._servers_up.append(srv)

    @staticmethod
    def _handler(handle):
        class H(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                cmd = self.rfile.read().decode().strip()
                self.wfile.write(handle(cmd).encode())
        return H

    def state_text(self) -> str:
        rows = [f"3 be_app {i} {n} 127.0.0.1 {0 if n in self.down else 2} {s['admin']} {s['uw']} {s['iw']} 5 15 3 4 6 "
                "0 0 0 - 80 -"
                for i, (n, s) in enumerate(self.servers.items(), 1)]
        return "1\n" + HEADER + "\n" + "\n".join(rows) + "\n\n"

    def _admin(self, cmd: str) -> str:
        if cmd.startswith("show servers state"):
            return self.state_text()
        if cmd == "show stat":
            return "# pxname,svname,scur,status,check_status\n" + "".join(
                f"be_app,{n},0,{'MAINT' if s['admin'] & 1 else 'DOWN' if n in self.down else 'UP'},L7OK\n"
                for n, s in self.servers.items())
        if cmd == "show info":
            return f"Name: HAProxy\nVersion: 2.6.12\nPid: {self.pid}\n"
        m = re.fullmatch(r"set server be_app/(\S+) (state|weight) (\S+)", cmd)
        if m and m.group(1) in self.servers:
            s = self.servers[m.group(1)]
            if m.group(2) == "weight":
                s["uw"] = int(m.group(3))
            else:
                s["admin"] = {"ready": 0, "drain": 8, "maint": 1}[m.group(3)]
            return ""
        return "Unknown command\n"

    def _master(self, cmd: str) -> str:
        if cmd == "show proc":
            return (f"#<PID>          <type>          <reloads>       <uptime>        <version>\n"
                    f"{self.master_pid}    master    {self.reloads} [failed: {self.failed}]    0d00h01m00s    2.6.12\n"
                    f"# workers\n{self.pid}    worker    0    0d00h00m10s    2.6.12\n# programs\n\n")
        if cmd == "reload":
            self.reloads += 1
            if self.reload_mode == "fail":
                self.failed += 1
                with self.log.open("a") as f:
                    f.write(f"[ALERT]    ({self.master_pid}) : Binding [haproxy.cfg:18] for frontend fe_app: "
                            "cannot bind socket (Address already in use) for [127.0.0.1:1]\n"
                            "[WARNING]  (1) : Loading failure!\n")
            elif self.reload_mode == "ok":
                self.failed = 0
                self.pid += 1
                for name, weight in re.findall(r"^\s*server (\S+) .* weight (\d+)", self.config.read_text(), re.M):
                    s = self.servers.setdefault(name, {"uw": int(weight), "iw": int(weight), "admin": 0})
                    if s["iw"] != int(weight):  # HAProxy keeps the runtime weight only while the configured one holds
                        s["uw"] = s["iw"] = int(weight)
            return ""
        return "Unknown command\n"

    def close(self) -> None:
        for srv in self._servers_up:
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def sockdir():
    d = Path(tempfile.mkdtemp(prefix="lbfix", dir="/tmp"))  # unix socket paths must stay short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_module(name: str, args: dict, check: bool = False) -> dict:
    """Run one citydc.ops module as Ansible does (args file) and return its JSON result."""
    if check:
        args = {**args, "_ansible_check_mode": True}
    path = Path(tempfile.mkdtemp(prefix="lbargs")) / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(COLLECTIONS), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(MODULES / f"{name}.py"), str(path)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    shutil.rmtree(path.parent, ignore_errors=True)
    return json.loads(proc.stdout)


# --- haproxy_reload (finding 1) ----------------------------------------------------------------------------


def test_reload_that_haproxy_refused_fails_with_its_reason(sockdir):
    ha = FakeHaproxy(sockdir, {"a": 100})
    try:
        ha.config.write_text("server a 127.0.0.1:1 weight 100\n")
        args = {"admin_socket": str(ha.admin), "master_socket": str(ha.master),
                "state_file": str(sockdir / "state"), "log_file": str(ha.log), "timeout": 10}
        ok = run_module("haproxy_reload", args)
        assert ok.get("changed") and not ok.get("failed") and ok["worker"] == 2002, ok
        ha.reload_mode = "fail"
        res = run_module("haproxy_reload", args)
        assert res.get("failed"), res
        assert "refused the reload" in res["msg"] and "Address already in use" in res["msg"], res["msg"]
        assert len(res["msg"]) < 1200
    finally:
        ha.close()


def test_reload_that_started_no_new_worker_fails(sockdir):
    ha = FakeHaproxy(sockdir, {"a": 100})
    try:
        ha.reload_mode = "stuck"
        res = run_module("haproxy_reload", {"admin_socket": str(ha.admin), "master_socket": str(ha.master),
                                            "state_file": str(sockdir / "state"), "timeout": 3})
        assert res.get("failed") and "new worker" in res["msg"], res
    finally:
        ha.close()


# --- haproxy_server writes the server-state-file (finding 2) --------------------------------------------------


def test_each_runtime_change_is_written_to_the_server_state_file(sockdir):
    ha = FakeHaproxy(sockdir, {"app-siwei-1": 100, "app-fengshan-1": 0})
    state = sockdir / "server-state"
    try:
        base = {"socket": str(ha.admin), "backend": "be_app", "state_file": str(state)}
        res = run_module("haproxy_server", {**base, "server": "app-siwei-1", "state": "maint"})
        assert res["changed"], res
        assert state.read_text() == ha.state_text() and " app-siwei-1 127.0.0.1 2 1 100 " in state.read_text()
        assert state.stat().st_mode & 0o077 == 0
        run_module("haproxy_server", {**base, "server": "app-siwei-1", "state": "ready"})
        run_module("haproxy_server", {**base, "server": "app-fengshan-1", "weight": 100})
        assert state.read_text() == ha.state_text()  # what a restart applies is what runs now
        assert " app-siwei-1 127.0.0.1 2 0 100 " in state.read_text()
        assert " app-fengshan-1 127.0.0.1 2 0 100 0 " in state.read_text()
        before = state.read_text()
        ha.servers["app-siwei-1"]["uw"] = 7  # changed by hand; a check-mode run writes nothing
        run_module("haproxy_server", {**base, "server": "app-siwei-1", "state": "drain"}, check=True)
        assert state.read_text() == before
    finally:
        ha.close()


# --- the roles through ansible-playbook -----------------------------------------------------------------------

STUB = """#!/bin/sh
# stands in for haproxy -c -f FILE and keepalived --config-test --use-file FILE: refuses a file holding INVALID
for last; do :; done
if grep -q INVALID "$last"; then echo "[ALERT] stub: INVALID found" >&2; exit 1; fi
exit 0
"""


@pytest.fixture
def site(sockdir):
    """Two fake HAProxies (Siwei's and Fengshan's load balancer), an inventory for them, and a runner."""
    stub = sockdir / "validate"
    stub.write_text(STUB)
    stub.chmod(0o755)
    lbs = {}
    for s in ("siwei", "fengshan"):
        d = sockdir / s
        d.mkdir()
        lbs[s] = FakeHaproxy(d, {n: 100 if owner == s else 0 for n, owner in SERVERS.items()})
    inv = sockdir / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "group_vars").mkdir()
    hosts = {"all": {"children": {
        "siwei": {"hosts": {"lb-siwei-1": None, "lb-siwei-2": None, "app-siwei-1": None, "app-siwei-2": None}},
        "fengshan": {"hosts": {"lb-fengshan-1": None, "app-fengshan-1": None, "app-fengshan-2": None}},
        "lb": {"hosts": {"lb-siwei-1": None, "lb-fengshan-1": None}},
        "app": {"hosts": dict.fromkeys(SERVERS)},
        "keepalived": {"hosts": {"lb-siwei-1": None, "lb-siwei-2": None}}}}}
    (inv / "hosts.yml").write_text(json.dumps(hosts))
    (inv / "group_vars" / "all.yml").write_text(json.dumps({
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "haproxy_bin": str(stub),
        "app_address": "127.0.0.1", "app_port": 1, "keepalived_vip": "10.99.82.100/24", "keepalived_router_id": 82,
        "keepalived_validate": f"{stub} %s"}))
    for s, ha in lbs.items():
        (inv / "host_vars" / f"lb-{s}-1.yml").write_text(json.dumps({
            "site": s, "haproxy_config_path": str(ha.config), "haproxy_admin_socket": str(ha.admin),
            "haproxy_master_socket": str(ha.master), "haproxy_state_file": str(ha.dir / "server-state"),
            "haproxy_log_file": str(ha.log), "haproxy_frontend_bind": "127.0.0.1:1",
            "keepalived_config_path": str(ha.dir / "keepalived.conf"),
            "keepalived_pid_file": str(ha.dir / "keepalived.pid"), "keepalived_address": "10.99.82.1"}))
    (inv / "host_vars" / "lb-siwei-2.yml").write_text(json.dumps({"keepalived_address": "10.99.82.2"}))
    for n, s in SERVERS.items():
        (inv / "host_vars" / f"{n}.yml").write_text(json.dumps({"site": s}))

    def play(book: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_LOCAL_TEMP": str(sockdir / "at"), "ANSIBLE_HOME": str(sockdir / "ah"), **(env or {})}
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), book, *args], cwd=PLAYBOOKS, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    yield {"lb": lbs, "inv": inv, "play": play, "dir": sockdir}
    for ha in lbs.values():
        ha.close()


def recap(out: str, host: str) -> dict[str, int]:
    m = re.search(rf"^{re.escape(host)}\s+:(.*)$", out, re.M)
    assert m, out[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def test_deploy_numbers_and_site_groups_are_checked_before_anything_changes(site):
    """Findings 4 and 16: numbers that are not integers in range (values given with -e are strings), and an app
    host in no site group, are refused by name, with nothing written."""
    play, cfg = site["play"], site["lb"]["siwei"].config
    for extra, expected in ((["-e", "lb_weight=abc"], 'lb_weight="abc": expected an integer from 1 to 256'),
                            (["-e", "lb_weight=0"], 'lb_weight="0": expected an integer from 1 to 256'),
                            (["-e", "lb_server_maxconn=-5"], 'lb_server_maxconn="-5": expected an integer >= 0'),
                            (["-e", "lb_remote_weight=257"],
                             'lb_remote_weight="257": expected an integer from 0 to 256')):
        rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", *extra)
        assert rc != 0 and expected in out, out[-3000:]
        assert not cfg.exists()
    hosts = json.loads((site["inv"] / "hosts.yml").read_text())
    hosts["all"]["children"]["app"]["hosts"]["app-extra-1"] = None
    (site["inv"] / "hosts.yml").write_text(json.dumps(hosts))
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "--check")
    assert rc != 0 and "app hosts in no site group" in out and "app-extra-1" in out, out[-3000:]
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei")
    assert rc != 0 and "app hosts in no site group" in out and "app-extra-1" in out, out[-3000:]


def test_check_mode_validates_the_rendered_config(site):
    """Finding 6: --check runs haproxy -c on the rendered config, so it refuses what the real run refuses."""
    play = site["play"]
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "--check", "-e", "lb_balance=INVALID")
    assert rc != 0 and "failed to validate" in out, out[-3000:]
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "--check")
    assert rc == 0 and recap(out, "lb-siwei-1")["changed"] >= 1, out[-3000:]
    assert not site["lb"]["siwei"].config.exists()  # check mode wrote nothing
    assert not list(Path(tempfile.gettempdir()).glob("ansible.*.haproxy.cfg"))  # nor left its temporary file


def test_failed_reload_fails_the_run_and_is_retried_by_the_next(site):
    """Findings 1 and 5: a reload HAProxy refused fails the run; the next run, with nothing else to change,
    reloads again (the marker), and once a reload succeeds the marker is gone and a third run changes nothing."""
    play, ha = site["play"], site["lb"]["siwei"]
    ha.reload_mode = "fail"
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1")
    assert rc != 0 and "refused the reload" in out and "Address already in use" in out, out[-3000:]
    marker = Path(f"{ha.config}.reload-pending")
    assert marker.exists() and ha.failed == 1
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1")
    assert rc != 0 and ha.failed == 2, out[-3000:]  # tried again, refused again
    ha.reload_mode = "ok"
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1")
    assert rc == 0 and ha.pid == 2002 and not marker.exists(), out[-3000:]
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1")
    assert rc == 0 and recap(out, "lb-siwei-1")["changed"] == 0 and ha.reloads == 3, out[-3000:]


def test_a_deploy_that_changes_weights_during_a_failover_is_refused(site):
    """Finding 3: runtime weights moved by lb-failover.yml survive a deploy that keeps the configured weights;
    one that changes them is refused (check mode too) unless -e lb_deploy_during_failover=true."""
    play, ha = site["play"], site["lb"]["siwei"]
    assert play("lb-deploy.yml")[0] == 0
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei")
    assert rc == 0, out[-3000:]
    moved = {n: s["uw"] for n, s in ha.servers.items()}
    assert moved == {"app-siwei-1": 0, "app-siwei-2": 0, "app-fengshan-1": 100, "app-fengshan-2": 100}
    for mode in (["--check"], []):
        rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "-e", "lb_weight=50", *mode)
        assert rc != 0 and "lb_deploy_during_failover=true" in out and "app-siwei-1 100 -> 50" in out, out[-3000:]
    assert {n: s["uw"] for n, s in ha.servers.items()} == moved
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "-e", "lb_timeout_client=31s")
    assert rc == 0 and {n: s["uw"] for n, s in ha.servers.items()} == moved, out[-3000:]
    rc, out = play("lb-deploy.yml", "--limit", "lb-siwei-1", "-e", "lb_weight=50",
                   "-e", "lb_deploy_during_failover=true")
    assert rc == 0 and ha.servers["app-siwei-1"]["uw"] == 50, out[-3000:]


def test_failover_covers_every_load_balancer_and_writes_the_state_file(site):
    """Finding 13: a failover limited to some load balancers is refused (nothing shifted) unless
    -e failover_partial=true; finding 2: each weight it changes is in the server-state-file at once."""
    play, lbs = site["play"], site["lb"]
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei", "--limit", "lb-fengshan-1")
    assert rc != 0 and "leaves out load balancers lb-siwei-1" in out, out[-3000:]
    assert lbs["siwei"].servers["app-fengshan-1"]["uw"] == 0
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei", "--limit", "lb-siwei-1",
                   "-e", "failover_partial=true")
    assert rc == 0 and lbs["siwei"].servers["app-fengshan-1"]["uw"] == 100, out[-3000:]
    assert (lbs["siwei"].dir / "server-state").read_text() == lbs["siwei"].state_text()


def test_a_degraded_failover_shifts_to_the_servers_that_are_up_only_when_asked(site):
    """Finding 17: with one server of the target site down, the failover is refused, saying which and how to
    shift anyway; -e failover_degraded=true shifts (the down server gets its weight too); none up is refused."""
    play, lbs = site["play"], site["lb"]
    for ha in lbs.values():
        ha.down.add("app-fengshan-2")
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei")
    assert rc != 0 and "not UP and ready: app-fengshan-2" in out and "failover_degraded=true" in out, out[-3000:]
    assert lbs["siwei"].servers["app-fengshan-1"]["uw"] == 0  # nothing shifted
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei", "-e", "failover_degraded=true")
    assert rc == 0 and "degraded failover on lb-siwei-1" in out, out[-3000:]
    siwei = lbs["siwei"].servers
    assert (siwei["app-fengshan-1"]["uw"], siwei["app-fengshan-2"]["uw"], siwei["app-siwei-1"]["uw"]) == (100, 100, 0)
    # Fengshan's own pool still lacks app-fengshan-2: the failback is degraded there too
    rc, out = play("lb-failover.yml", "-e", "failback=true")
    assert rc != 0 and "not UP and ready: app-fengshan-2" in out, out[-3000:]
    assert play("lb-failover.yml", "-e", "failback=true", "-e", "failover_degraded=true")[0] == 0
    assert siwei["app-siwei-1"]["uw"] == 100 and siwei["app-fengshan-1"]["uw"] == 0
    for ha in lbs.values():
        ha.down.add("app-fengshan-1")
    rc, out = play("lb-failover.yml", "-e", "failover_from=siwei", "-e", "failover_degraded=true")
    assert rc != 0 and "not UP and ready: app-fengshan-1, app-fengshan-2 (none of the servers" in out, out[-3000:]
    assert "failover_degraded=true" not in out.split("not UP and ready")[-1].split("\n")[0]  # no hint: none is up
    assert lbs["siwei"].servers["app-siwei-1"]["uw"] == 100


def test_drift_runtime_false_is_honoured(site):
    """Finding 14: -e lb_drift_runtime=false (a string) leaves the admin socket alone."""
    play, ha = site["play"], site["lb"]["siwei"]
    assert play("lb-deploy.yml")[0] == 0
    ha.admin.rename(ha.dir / "admin.moved")
    rc, out = play("lb-drift.yml", "--check", "-e", "lb_drift_runtime=false")
    assert rc == 0, out[-3000:]
    rc, out = play("lb-drift.yml", "--check")
    assert rc != 0 and "admin.sock" in out


def test_drift_compares_the_keepalived_settings_of_the_load_balancers_that_are_vrrp_nodes(site):
    """docs/playbooks.md: lb-drift.yml reads keepalived.conf on each load balancer of group keepalived (as
    lb-keepalived.yml wrote it) beside HAProxy's settings; a setting one site changed is drift, the password is
    compared only as set."""
    play, inv = site["play"], site["inv"]
    assert play("lb-deploy.yml")[0] == 0
    hosts = json.loads((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["keepalived"]["hosts"]["lb-fengshan-1"] = None
    (inv / "host_vars" / "lb-fengshan-2.yml").write_text(json.dumps({"keepalived_address": "10.99.83.2"}))
    hosts["all"]["children"]["fengshan"]["hosts"]["lb-fengshan-2"] = None
    hosts["all"]["children"]["keepalived"]["hosts"]["lb-fengshan-2"] = None
    (inv / "hosts.yml").write_text(json.dumps(hosts))
    vars_file = site["dir"] / "secret.json"
    vars_file.write_text(json.dumps({"keepalived_auth_pass": "vrrp#pw1"}))
    assert play("lb-keepalived.yml", "--limit", "lb-siwei-1", "-e", f"@{vars_file}")[0] == 0
    assert play("lb-keepalived.yml", "--limit", "lb-fengshan-1", "-e", f"@{vars_file}",
                "-e", "keepalived_advert_int=3")[0] == 0

    rc, out = play("lb-drift.yml", "--check", env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
                                                   "ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert rc == 0, out[-3000:]
    stats = json.loads(out[out.index("{"):])["global_custom_stats"]
    found = {d.setting: d.values for d in drift.compare(drift.hosts_from_stats(stats))}
    assert found["keepalived.vrrp_instance lb_<site>.advert_int"] == {"lb-siwei-1": "3", "lb-fengshan-1": "1"} or \
        found["keepalived.vrrp_instance lb_<site>.advert_int"] == {"lb-siwei-1": "1", "lb-fengshan-1": "3"}
    assert [k for k in found if k.startswith("keepalived.")] == ["keepalived.vrrp_instance lb_<site>.advert_int"]
    settings = stats["lb_settings"]["lb-siwei-1"]["settings"]
    assert settings["keepalived.vrrp_instance lb_<site>.authentication.auth_pass"] == "set"
    assert "vrrp#pw1" not in out
    assert settings["backend be_app.balance"] == "roundrobin"  # HAProxy's settings come along as before


def keepalived_play(site, password: str, *args: str) -> tuple[int, str]:
    vars_file = site["dir"] / "secret.json"
    vars_file.write_text(json.dumps({"keepalived_auth_pass": password}))
    return site["play"]("lb-keepalived.yml", "--limit", "lb-siwei-1", "-e", f"@{vars_file}", *args)


def test_vrrp_password_is_written_quoted_and_bad_ones_are_refused_with_the_reason(site):
    """Finding 7: # ! { } reach keepalived as given (quoted); a password keepalived would cut or misread (over 8
    bytes, non-ASCII, a space or a quote) is refused, the message saying why but not showing it."""
    conf = site["lb"]["siwei"].dir / "keepalived.conf"
    rc, out = keepalived_play(site, "a#b!{c}")
    assert rc == 0, out[-3000:]
    assert '        auth_pass "a#b!{c}"\n' in conf.read_text()
    for bad, why in (("pässwö", "not all ASCII"), ("abcdefghi", "has 9 characters"), ('a"b', "a double quote"),
                     ("ab cd", "with a space")):
        rc, out = keepalived_play(site, bad)
        assert rc != 0 and "1-8 bytes of printable ASCII" in out and why in out, (bad, out[-3000:])
        assert bad not in out
        assert '"a#b!{c}"' in conf.read_text()


def test_keepalived_not_running_is_skipped_and_a_lost_reload_is_retried(site):
    """Findings 15 and 5: with no keepalived running (no pid file), --check and the real run succeed and say so;
    a reload left pending (marker) is done by the next run, which sends exactly one SIGHUP."""
    d = site["lb"]["siwei"].dir
    rc, out = keepalived_play(site, "pw1", "--check")
    assert rc == 0 and "keepalived is not running" in out, out[-3000:]
    rc, out = keepalived_play(site, "pw1")
    assert rc == 0 and "keepalived is not running" in out, out[-3000:]
    assert not Path(f"{d / 'keepalived.conf'}.reload-pending").exists()
    hups = d / "hups"
    proc = subprocess.Popen(["bash", "-c", f'trap "echo hup >> {hups}" HUP; for i in $(seq 300); do sleep 0.2; done'])
    try:
        (d / "keepalived.pid").write_text(f"{proc.pid}\n")
        Path(f"{d / 'keepalived.conf'}.reload-pending").write_text("")  # an earlier run's reload that failed
        rc, out = keepalived_play(site, "pw1")
        assert rc == 0 and recap(out, "lb-siwei-1")["changed"] >= 1, out[-3000:]
        for _ in range(50):
            if hups.exists():
                break
            threading.Event().wait(0.1)
        assert hups.read_text() == "hup\n"
        rc, out = keepalived_play(site, "pw1")
        assert rc == 0 and recap(out, "lb-siwei-1")["changed"] == 0 and hups.read_text() == "hup\n", out[-3000:]
    finally:
        proc.kill()
        proc.wait(timeout=10)

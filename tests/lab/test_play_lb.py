"""The load-balancer playbooks end to end: the real ``citydc play run`` (ansible-runner, ansible-playbook), the
lab's HAProxy of each site with its runtime API, the four app backends, and the security log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from citydc.lab import ports, web_secured
from citydc.lab.alertmanager import am_api
from citydc.lab.app_backends import Load, down_marker
from citydc.lab.haproxy import runtime_command

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SIWEI = ("app-siwei-1", "app-siwei-2")
FENGSHAN = ("app-fengshan-1", "app-fengshan-2")


@pytest.fixture(scope="module")
def lab(lab_up, lab_ctx, tmp_path_factory) -> dict:
    lab_up("app-backends", "haproxy-siwei", "haproxy-fengshan")
    base = tmp_path_factory.mktemp("play-lb")
    config = base / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(base / "spool"), "sink": {"kind": "sqlite", "path": str(base / "log.db")}},
    }))
    env = {**os.environ, "CITYDC_LAB_DIR": str(lab_ctx.root), "CITYDC_INVENTORY": "lab"}
    info = {"root": lab_ctx.root, "config": config, "env": env, "base": base,
            "sock": {s: lab_ctx.root / f"haproxy-{s}" / "admin.sock" for s in ("siwei", "fengshan")},
            "app_dir": lab_ctx.root / "app-backends"}
    # The first deploy renders the inventory's config over the lab's bootstrap one.
    rc, out = play(info, "lb-deploy.yml")
    assert rc == 0, out
    return info


def citydc(lab: dict, *args: str, timeout: float = 300, config: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(config or lab["config"]), *args], env=lab["env"], capture_output=True,
                          text=True, timeout=timeout, check=False)


def play(lab: dict, *args: str, config: Path | None = None) -> tuple[int, dict]:
    proc = citydc(lab, "play", "run", *args, "--json", config=config)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, {"stdout": proc.stdout, "stderr": proc.stderr}


def pool(lab: dict, site: str) -> dict[str, dict]:
    """Return {server: {admin, up}} from the runtime API (admin: ready/drain/maint)."""
    text = runtime_command(lab["sock"][site], "show servers state be_app")
    header, out = None, {}
    for line in text.splitlines():
        if line.startswith("#"):
            header = line.lstrip("# ").split()
        elif header and line.strip() and not line.strip().isdigit():
            row = dict(zip(header, line.split(), strict=False))
            admin = int(row["srv_admin_state"])
            out[row["srv_name"]] = {"admin": "maint" if admin & 0x67 else "drain" if admin & 0x18 else "ready",
                                    "up": row["srv_op_state"] == "2", "weight": int(row["srv_uweight"])}
    return out


class Watcher:
    """Polls both sites' pools every 50 ms and records each admin state every server went through."""

    def __init__(self, lab: dict, on_state=None) -> None:
        self.lab, self.on_state = lab, on_state
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for site in ("siwei", "fengshan"):
                for name, st in pool(self.lab, site).items():
                    self.seen.setdefault(name, set()).add(st["admin"])
                    if self.on_state:
                        self.on_state(name, st)
            time.sleep(0.05)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def all_serving(lab: dict, site: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s["admin"] == "ready" and s["up"] for s in pool(lab, site).values()):
            return True
        time.sleep(0.2)
    return False


def ready_everywhere(lab: dict, server: str) -> None:
    """Put a server a failed rolling run left in maintenance back into both sites' pools."""
    for site in ("siwei", "fengshan"):
        runtime_command(lab["sock"][site], f"set server be_app/{server} state ready")
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")


def search(lab: dict, action: str) -> list[dict]:
    assert citydc(lab, "log", "ship").returncode == 0
    proc = citydc(lab, "log", "search", "--action", action, "--json", "--limit", "1000")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_rolling_maintenance_under_load_loses_no_request(lab):
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")
    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=4).start()
    try:
        with Watcher(lab) as watch:
            started = load.total
            rc, result = play(lab, "lb-rolling.yml", "--site", "siwei")
            during = load.total - started
    finally:
        load.stop()
    assert rc == 0, result
    assert during >= 5000, f"only {during} requests ran during the rolling maintenance"
    assert (load.failed, load.errors) == (0, 0), load.failures[:5]
    for server in SIWEI:  # each one drained, put in maintenance and re-enabled
        assert {"drain", "maint", "ready"} <= watch.seen[server], (server, watch.seen[server])
        assert (lab["app_dir"] / f"{server}.maintained").exists()
    for server in FENGSHAN:  # the other site was never touched
        assert watch.seen[server] == {"ready"}
    assert all_serving(lab, "siwei", timeout=1)
    assert set(result["hosts"]) == set(SIWEI)
    assert all(c["failed"] == 0 and c["changed"] >= 3 for c in result["hosts"].values())

    runs = [e for e in search(lab, "playbook-run") if e["citydc"]["playbook"]["run_id"] == result["run_id"]]
    phases = {e["citydc"]["playbook"]["phase"]: e for e in runs}
    assert set(phases) == {"start", "end"}
    end = phases["end"]
    assert end["event"]["outcome"] == "success" and end["labels"]["site"] == "siwei"
    assert end["user"]["name"] and end["citydc"]["playbook"]["playbook"] == "lb-rolling.yml"
    assert end["citydc"]["playbook"]["limit"] == "siwei" and end["citydc"]["playbook"]["check_mode"] is False
    assert end["citydc"]["playbook"]["hosts"]["app-siwei-1"]["changed"] >= 3
    assert end["citydc"]["playbook"]["revision"] != ""
    changed = [e for e in search(lab, "playbook-task-changed")
               if e["citydc"]["playbook"]["run_id"] == result["run_id"]]
    drained = {e["citydc"]["playbook"]["target"] for e in changed
               if e["citydc"]["playbook"]["task"].startswith("Drain")}
    assert drained == set(SIWEI)
    assert all(e["citydc"]["playbook"]["module"] for e in changed)
    lab["env"]["COLUMNS"] = "160"
    table = citydc(lab, "log", "search", "--action", "playbook-run")
    del lab["env"]["COLUMNS"]
    assert "lb-rolling.yml" in table.stdout and table.returncode == 0


def test_server_that_does_not_come_back_stops_the_run_and_pool_keeps_serving(lab):
    assert all_serving(lab, "siwei")
    marker = down_marker(lab["app_dir"], "app-siwei-2")

    def break_it(name: str, st: dict) -> None:  # the maintenance "breaks" app-siwei-2 once it is out of the pool
        if name == "app-siwei-2" and st["admin"] != "ready":
            marker.touch()

    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=2).start()
    try:
        with Watcher(lab, on_state=break_it):
            rc, result = play(lab, "lb-rolling.yml", "--site", "siwei", "-e", "rolling_health_retries=3")
        after = pool(lab, "siwei")
        time.sleep(1)
        load.stop()
        assert rc == 1, result
        assert result["hosts"]["app-siwei-2"]["failed"] == 1
        assert any("did not come back" in f["message"] for f in result["failures"]), result["failures"]
        assert after["app-siwei-2"]["admin"] == "maint"  # left out of the pool
        assert pool(lab, "fengshan")["app-siwei-2"]["admin"] == "maint"  # on every load balancer
        assert after["app-siwei-1"] == {"admin": "ready", "up": True, "weight": 100}  # the pool serves
        assert (load.failed, load.errors) == (0, 0), load.failures[:5]
        assert load.served.get("app-siwei-1", 0) > 0
        end = [e for e in search(lab, "playbook-run") if e["citydc"]["playbook"]["run_id"] == result["run_id"]
               and e["citydc"]["playbook"]["phase"] == "end"]
        assert end and end[0]["event"]["outcome"] == "failure" and "app-siwei-2" in end[0]["error"]["message"]
    finally:
        marker.unlink(missing_ok=True)
        ready_everywhere(lab, "app-siwei-2")


def test_broken_config_is_refused_and_haproxy_keeps_serving(lab):
    cfg = lab["root"] / "haproxy-siwei" / "haproxy.cfg"
    before = hashlib.sha256(cfg.read_bytes()).hexdigest()
    rc, result = play(lab, "lb-deploy.yml", "--limit", "lb-siwei-1", "-e", "lb_balance=no-such-algorithm")
    assert rc == 1, result
    assert result["hosts"]["lb-siwei-1"]["failed"] == 1
    assert any("validat" in f["message"].lower() or "haproxy" in f["message"] for f in result["failures"])
    assert hashlib.sha256(cfg.read_bytes()).hexdigest() == before
    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=2, max_requests=500).start()
    time.sleep(2)
    load.stop()
    assert load.ok >= 500 and (load.failed, load.errors) == (0, 0)


def metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ports.HOST}:{port}/metrics", timeout=5) as resp:
            return resp.status == 200 and b"haproxy_" in resp.read()
    except OSError:
        return False


def test_a_reload_haproxy_refuses_fails_the_run_and_the_next_run_retries_it(lab):
    """A config that passes ``haproxy -c`` but cannot be loaded (the stats frontend on a port another process
    holds: only binding shows it) is written, the reload fails: the run fails with HAProxy's own reason, the old
    worker keeps serving, and the reload-pending marker makes the next run reload once the port is free."""
    cfg = lab["root"] / "haproxy-siwei" / "haproxy.cfg"
    marker = cfg.with_name(cfg.name + ".reload-pending")
    holder = socket.socket()  # no SO_REUSEPORT: HAProxy's bind on this port must fail
    holder.bind((ports.HOST, 0))
    holder.listen()
    busy = holder.getsockname()[1]
    moved = ("-e", f"lb_stats_bind={ports.HOST}:{busy}")
    try:
        rc, result = play(lab, "lb-deploy.yml", "--limit", "lb-siwei-1", *moved)
        assert rc == 1, result
        assert result["hosts"]["lb-siwei-1"]["failed"] == 1, result["hosts"]
        reason = " ".join(f["message"] for f in result["failures"])
        assert "refused the reload" in reason and str(busy) in reason, reason  # HAProxy's ALERT names the bind
        assert f"{ports.HOST}:{busy}" in cfg.read_text() and marker.exists()
        # the old worker still serves the old config: traffic and the stats frontend where it was
        load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=2, max_requests=300).start()
        time.sleep(1)
        load.stop()
        assert load.ok >= 300 and (load.failed, load.errors) == (0, 0)
        assert metrics_answer(ports.HAPROXY_SIWEI_STATS)
    finally:
        holder.close()
    try:
        rc, result = play(lab, "lb-deploy.yml", "--limit", "lb-siwei-1", *moved)  # the same config: only the retry
        assert rc == 0, result
        assert not marker.exists()
        assert metrics_answer(busy) and not metrics_answer(ports.HAPROXY_SIWEI_STATS)  # the reload took this time
    finally:
        rc, result = play(lab, "lb-deploy.yml", "--limit", "lb-siwei-1")  # back to the inventory's config
    assert rc == 0 and not marker.exists(), result
    assert metrics_answer(ports.HAPROXY_SIWEI_STATS)


def test_deploy_is_idempotent_and_check_mode_changes_nothing(lab):
    rc, first = play(lab, "lb-deploy.yml")
    assert rc == 0, first
    rc, second = play(lab, "lb-deploy.yml")
    assert rc == 0 and sum(c["changed"] for c in second["hosts"].values()) == 0, second["hosts"]
    cfg = lab["root"] / "haproxy-fengshan" / "haproxy.cfg"
    before = cfg.read_text()
    assert "server app-fengshan-1 127.0.0.1:18092" in before and "server-state-file" in before
    rc, check = play(lab, "lb-deploy.yml", "--site", "fengshan", "--check", "--diff", "-e", "lb_retries=5")
    assert rc == 0 and check["hosts"]["lb-fengshan-1"]["changed"] >= 1, check
    assert set(check["hosts"]) == {"lb-fengshan-1"}
    assert cfg.read_text() == before


def test_an_inventory_made_from_the_configs_devices_deploys_those_load_balancers(lab, tmp_path):
    """citydc.ops.devices (the production inventory's way): the load balancers come from citydc.yaml's devices,
    and ``citydc play run`` hands ansible-playbook the config it runs with ($CITYDC_CONFIG)."""
    lab_inventory = Path(__file__).resolve().parents[2] / "playbooks" / "inventories" / "lab"
    inv = tmp_path / "inventory"
    for part in ("group_vars", "host_vars"):  # the lab's Ansible-only facts, under the devices' names
        shutil.copytree(lab_inventory / part, inv / part)
    app = {"siwei": list(SIWEI), "fengshan": list(FENGSHAN)}
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {
        **{site: {"hosts": dict.fromkeys(hosts)} for site, hosts in app.items()},
        "app": {"hosts": dict.fromkeys([*SIWEI, *FENGSHAN])}}}}))
    (inv / "citydc_devices.yml").write_text("plugin: citydc.ops.devices\n")
    base = json.loads(lab["config"].read_text())

    def with_devices(name: str, *sites: str) -> Path:
        devices = [{"name": f"lb-{site}-1", "address": "127.0.0.1", "site": site, "role": "lb"} for site in sites]
        devices.append({"name": "sw-core", "address": "127.0.0.1:1161", "site": "siwei", "role": "core"})
        path = tmp_path / name
        path.write_text(json.dumps({**base, "devices": devices}))
        return path

    rc, static = play(lab, "lb-deploy.yml", "--check")  # the lab's static inventory
    assert rc == 0 and set(static["hosts"]) == {"lb-siwei-1", "lb-fengshan-1"}, static
    rc, both = play(lab, "lb-deploy.yml", "-i", str(inv), "--check", config=with_devices("both.yaml",
                                                                                           "siwei", "fengshan"))
    assert rc == 0, both
    assert both["hosts"] == static["hosts"]  # the same hosts, tasks and outcome per host
    rc, one = play(lab, "lb-deploy.yml", "-i", str(inv), "--check", config=with_devices("one.yaml", "fengshan"))
    assert rc == 0 and set(one["hosts"]) == {"lb-fengshan-1"}, one


def test_runtime_states_survive_a_hitless_reload(lab):
    """A drained server stays drained across the reload a deploy triggers (server-state-file)."""
    sock = lab["sock"]["fengshan"]
    runtime_command(sock, "set server be_app/app-fengshan-2 state drain")
    load = Load(ports.HOST, ports.HAPROXY_FENGSHAN, threads=2).start()
    try:
        rc, result = play(lab, "lb-deploy.yml", "--site", "fengshan", "-e", "lb_timeout_client=31s")
        assert rc == 0 and result["hosts"]["lb-fengshan-1"]["changed"] >= 2, result
        assert pool(lab, "fengshan")["app-fengshan-2"]["admin"] == "drain"
    finally:
        load.stop()
        runtime_command(sock, "set server be_app/app-fengshan-2 state ready")
        rc, back = play(lab, "lb-deploy.yml", "--site", "fengshan")  # back to the inventory's config
        assert rc == 0, back
    assert load.failed == 0 and load.errors <= 4, load.failures[:5]  # PLATFORM.md §4: keep-alive reads on reload


def test_secret_extra_vars_never_reach_artifacts_events_or_output(lab, tmp_path):
    secret = "pw-Zq81-never-shown-anywhere"
    books = tmp_path / "playbooks"
    shutil.copytree(Path(__file__).resolve().parents[2] / "playbooks", books)
    proof = tmp_path / "proof"
    (books / "secret-probe.yml").write_text(f"""---
# Uses a secret carelessly (no no_log), to prove citydc masks it anyway.
- name: Probe
  hosts: lb-siwei-1
  gather_facts: false
  tasks:
    - name: Print the secret
      ansible.builtin.debug:
        msg: "the secret is {{{{ probe_secret }}}}"
    - name: Prove the playbook got it
      ansible.builtin.copy:
        content: "{{{{ probe_secret | hash('sha256') }}}}"
        dest: {proof}
        mode: "0600"
    - name: Fail with the secret in the message
      ansible.builtin.fail:
        msg: "bad {{{{ probe_secret }}}}"
""")
    env_before = dict(lab["env"])
    lab["env"]["PROBE_PW"] = secret
    try:
        proc = citydc(lab, "play", "run", "secret-probe.yml", "--playbooks", str(books), "--secret-var",
                      "probe_secret=env:PROBE_PW", "--keep-runs", "2", "--artifacts", str(tmp_path / "art"))
        for _ in range(2):  # rotation: at most --keep-runs artifact directories stay
            citydc(lab, "play", "run", "secret-probe.yml", "--playbooks", str(books), "--secret-var",
                   "probe_secret=env:PROBE_PW", "--keep-runs", "2", "--artifacts", str(tmp_path / "art"))
    finally:
        lab["env"] = env_before
    assert proc.returncode == 1, proc.stderr
    assert proof.read_text() == hashlib.sha256(secret.encode()).hexdigest()
    runs = [p for p in (tmp_path / "art").iterdir() if p.is_dir()]
    assert len(runs) == 2
    assert any((r / "job_events").iterdir() for r in runs)
    assert citydc(lab, "log", "ship").returncode == 0
    places = [tmp_path / "art", lab["base"]]
    leaked = [str(p) for root in places for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in proc.stdout + proc.stderr
    assert "***" in "".join(p.read_text() for r in runs for p in (r / "job_events").glob("*.json"))
    events = search(lab, "playbook-run")
    probe = [e for e in events if e["citydc"]["playbook"]["playbook"] == "secret-probe.yml"]
    assert probe and all(e["citydc"]["playbook"]["secret_vars"] == ["probe_secret"] for e in probe)


AM = f"http://{ports.HOST}:{ports.ALERTMANAGER}"
ROLLING = "citydc lb-rolling"  # createdBy of lb-rolling.yml's silences


def rolling_silences(states: tuple[str, ...] = ("active", "pending")) -> list[dict]:
    return [s for s in am_api("/api/v2/silences", base=AM) or []
            if s["createdBy"] == ROLLING and s["status"]["state"] in states]


def matcher_set(silence: dict) -> tuple:
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"]), silence
    return tuple(sorted((m["name"], m["value"]) for m in silence["matchers"]))


def test_rolling_silences_exactly_the_drained_server_in_alertmanager(lab, lab_up):
    """With alerting.alertmanager_url in citydc.yaml, each server has a silence on exactly its labels (site,
    proxy, server) while it is out of the pool, and none is left afterwards, also when the run fails."""
    lab_up("alertmanager")
    config = lab["base"] / "citydc-am.yaml"
    config.write_text(json.dumps({**json.loads(lab["config"].read_text()), "alerting": {"alertmanager_url": AM}}))
    for old in rolling_silences():  # a run killed earlier leaves its silence until it ends by itself
        req = urllib.request.Request(f"{AM}/api/v2/silence/{old['id']}", method="DELETE")  # noqa: S310
        urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback http
    started = time.time()
    seen: dict[str, list[list[tuple]]] = {}

    def record(name: str, st: dict) -> None:
        if st["admin"] != "ready":
            seen.setdefault(name, []).append(sorted(matcher_set(s) for s in rolling_silences()))

    assert all_serving(lab, "siwei")
    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=2).start()
    try:
        with Watcher(lab, on_state=record):
            rc, result = play(lab, "lb-rolling.yml", "--site", "siwei", config=config)
    finally:
        load.stop()
    assert rc == 0, result
    assert (load.failed, load.errors) == (0, 0), load.failures[:5]
    for server in SIWEI:
        assert len(seen.get(server, [])) >= 3, f"{server}: hardly seen out of the pool"
        expected = [(("proxy", "be_app"), ("server", server), ("site", "siwei"))]
        assert all(obs == expected for obs in seen[server]), (server, [o for o in seen[server] if o != expected][:3])
    assert rolling_silences() == []
    expired = {matcher_set(s) for s in rolling_silences(("expired",))
               if s["updatedAt"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))}
    assert {(("proxy", "be_app"), ("server", s), ("site", "siwei")) for s in SIWEI} <= expired

    # A server that does not come back: the run stops (exit 1), and its silence is expired all the same.
    marker = down_marker(lab["app_dir"], "app-siwei-1")

    def break_it(name: str, st: dict) -> None:
        if name == "app-siwei-1" and st["admin"] != "ready":
            marker.touch()
            record(name, st)

    seen.clear()
    try:
        with Watcher(lab, on_state=break_it):
            rc, result = play(lab, "lb-rolling.yml", "--site", "siwei", "-e", "rolling_health_retries=2",
                              config=config)
        assert rc == 1, result
        # It stays in maintenance: silenced (exactly) until the run expires the silence, then never again.
        obs = seen["app-siwei-1"]
        silenced = [(("proxy", "be_app"), ("server", "app-siwei-1"), ("site", "siwei"))]
        cut = obs.index([]) if [] in obs else len(obs)
        assert cut >= 3 and all(o == silenced for o in obs[:cut]) and all(o == [] for o in obs[cut:]), obs
        assert rolling_silences() == []
    finally:
        marker.unlink(missing_ok=True)
        ready_everywhere(lab, "app-siwei-1")


AM_TLS = f"https://{ports.HOST}:{ports.ALERTMANAGER_TLS}"
AM_PASSWORD_ENV = "CITYDC_TEST_AM_PASSWORD"


def tls_silences(lab_ctx, states: tuple[str, ...] = ("active", "pending")) -> list[dict]:
    context, headers = web_secured.client(lab_ctx)
    req = urllib.request.Request(f"{AM_TLS}/api/v2/silences", headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:  # noqa: S310 - loopback
        return [s for s in json.loads(resp.read())
                if s["createdBy"] == ROLLING and s["status"]["state"] in states]


def test_rolling_silences_through_an_alertmanager_with_tls_and_basic_auth(lab, lab_up, lab_ctx):
    """alerting.alertmanager_http (the lab web CA, a client certificate, basic auth with the password by env:
    reference) takes lb-rolling.yml's silences to an Alertmanager behind a web config; the password reaches
    ansible-playbook through the config pipe only: no event, artifact, output or file of the run holds it."""
    lab_up("alertmanager-tls")
    password = web_secured.web_tls.PASSWORD
    config = lab["base"] / "citydc-am-tls.yaml"
    config.write_text(json.dumps({**json.loads(lab["config"].read_text()), "alerting": {
        "alertmanager_url": AM_TLS, "alertmanager_http": web_secured.http_settings(lab_ctx, AM_PASSWORD_ENV)}}))
    assert tls_silences(lab_ctx) == []
    seen: list[list[tuple]] = []

    def record(name: str, st: dict) -> None:
        if name == "app-siwei-1" and st["admin"] != "ready":
            seen.append(sorted(matcher_set(s) for s in tls_silences(lab_ctx)))

    lab["env"] = {**(env_before := lab["env"]), AM_PASSWORD_ENV: password}
    try:
        with Watcher(lab, on_state=record):
            proc = citydc(lab, "play", "run", "lb-rolling.yml", "--site", "siwei", "--limit", "app-siwei-1",
                          "--artifacts", str(lab["base"] / "art-am-tls"), "--json", config=config)
    finally:
        lab["env"] = env_before
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["hosts"]) >= {"app-siwei-1"}, result
    expected = [(("proxy", "be_app"), ("server", "app-siwei-1"), ("site", "siwei"))]
    assert len(seen) >= 3 and all(obs == expected for obs in seen), seen[:5]
    assert tls_silences(lab_ctx) == []
    assert any(matcher_set(s) == expected[0] for s in tls_silences(lab_ctx, ("expired",)))
    # The password: not in the output, the artifacts (events, config-vars.json, command), the spool or the log.
    assert password not in proc.stdout + proc.stderr
    assert citydc(lab, "log", "ship").returncode == 0
    leaked = [str(p) for root in (lab["base"],) for p in root.rglob("*")
              if p.is_file() and password.encode() in p.read_bytes()]
    assert leaked == []
    runs = [p for p in (lab["base"] / "art-am-tls").iterdir() if p.is_dir()]
    (run,) = runs
    kept = json.loads((run / "config-vars.json").read_text())
    assert kept["alertmanager_url"] == AM_TLS and kept["alertmanager_username"] == web_secured.web_tls.USER
    assert "alertmanager_password" not in kept
    events = [e for e in search(lab, "playbook-run") if e["citydc"]["playbook"]["artifact_dir"] == str(run)]
    assert events and all("alertmanager_password" in e["citydc"]["playbook"]["secret_vars"] for e in events)


def served_between(load: Load, seconds: float) -> dict[str, int]:
    """Return who served the requests of the next ``seconds``."""
    before = dict(load.served)
    time.sleep(seconds)
    return {k: v - before.get(k, 0) for k, v in load.served.items() if v - before.get(k, 0) > 0}


def test_site_failover_by_weight_under_load_loses_no_request(lab):
    """lb-failover.yml: Siwei's frontend is served by Fengshan's servers during the failover and by its
    own after the failback, with no failed request; a second failover changes nothing."""
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")
    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=4).start()
    other = Load(ports.HOST, ports.HAPROXY_FENGSHAN, threads=2).start()
    try:
        normal = served_between(load, 1.0)
        rc, out = play(lab, "lb-failover.yml", "-e", "failover_from=siwei")
        assert rc == 0, out
        time.sleep(0.5)  # requests in flight at the shift
        during, during_other = served_between(load, 2.0), served_between(other, 0.1)
        weights = {site: {n: s["weight"] for n, s in pool(lab, site).items()} for site in ("siwei", "fengshan")}
        rc, again = play(lab, "lb-failover.yml", "-e", "failover_from=siwei")
        rc_back, back = play(lab, "lb-failover.yml", "-e", "failback=true")
        time.sleep(0.5)
        after = served_between(load, 2.0)
    finally:
        load.stop()
        other.stop()
        if any(s["weight"] != (100 if n in SIWEI else 0) for n, s in pool(lab, "siwei").items()):
            play(lab, "lb-failover.yml", "-e", "failback=true")
    assert rc == 0 and sum(c["changed"] for c in again["hosts"].values()) == 0, again
    assert rc_back == 0, back
    assert set(normal) == set(SIWEI), normal
    assert set(during) == set(FENGSHAN) and sum(during.values()) >= 200, during
    assert set(during_other) <= set(FENGSHAN), during_other
    assert weights == {"siwei": {"app-siwei-1": 0, "app-siwei-2": 0, "app-fengshan-1": 100, "app-fengshan-2": 100},
                       "fengshan": {"app-siwei-1": 0, "app-siwei-2": 0, "app-fengshan-1": 100,
                                    "app-fengshan-2": 100}}
    assert set(after) == set(SIWEI), after
    assert load.total >= 2000 and (load.failed, load.errors) == (0, 0), (load.total, load.failures[:5])
    assert (other.failed, other.errors) == (0, 0), other.failures[:5]
    print(f"\nFAILOVER siwei->fengshan->siwei: {load.total} requests through Siwei's HAProxy, "
          f"{load.failed + load.errors} failed; during the failover {sum(during.values())} in 2 s served by {during}")


def test_rolling_maintenance_during_a_failover_takes_the_server_out_of_every_pool(lab):
    """During a failover Siwei's frontend is served by Fengshan's servers: a rolling maintenance of Fengshan
    drains each server on both load balancers (never in maintenance on one while the other still sends it
    new requests), with no failed request on either frontend."""
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")
    pairs: list[tuple[str, str, str]] = []  # (server, its state on Fengshan's LB, on Siwei's LB)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            fengshan, siwei = pool(lab, "fengshan"), pool(lab, "siwei")
            pairs.extend((n, fengshan[n]["admin"], siwei[n]["admin"]) for n in FENGSHAN)
            time.sleep(0.05)

    rc, out = play(lab, "lb-failover.yml", "-e", "failover_from=siwei")
    assert rc == 0, out
    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=3).start()
    other = Load(ports.HOST, ports.HAPROXY_FENGSHAN, threads=2).start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rc, result = play(lab, "lb-rolling.yml", "--site", "fengshan")
    finally:
        stop.set()
        watcher.join(timeout=10)
        load.stop()
        other.stop()
        rc_back, back = play(lab, "lb-failover.yml", "-e", "failback=true")
    assert rc == 0, result
    assert rc_back == 0, back
    for server in FENGSHAN:
        on_siwei = {s for n, _, s in pairs if n == server}
        assert {"drain", "maint", "ready"} <= on_siwei, (server, on_siwei)
        assert (lab["app_dir"] / f"{server}.maintained").exists()
    # Siwei's LB (first in group lb) takes the server out before Fengshan's: never in maintenance on
    # Fengshan's while Siwei's, which carries the failed-over traffic, still sends it new requests.
    for server in FENGSHAN:
        seq = [(f, s) for n, f, s in pairs if n == server]
        back = next(i for i, (f, s) in enumerate(seq) if s == "ready" and any(x != "ready" for _, x in seq[:i]))
        assert all(s != "ready" for f, s in seq[:back] if f == "maint"), (server, seq[:back])
    assert set(load.served) <= set(FENGSHAN) and sum(load.served.values()) >= 1000, load.served
    assert (load.failed, load.errors) == (0, 0), load.failures[:5]
    assert (other.failed, other.errors) == (0, 0), other.failures[:5]
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")


def test_failover_to_a_site_whose_servers_are_down_is_refused(lab):
    markers = [down_marker(lab["app_dir"], n) for n in FENGSHAN]
    try:
        for m in markers:
            m.touch()
        deadline = time.monotonic() + 15
        while any(pool(lab, "siwei")[n]["up"] for n in FENGSHAN) and time.monotonic() < deadline:
            time.sleep(0.2)
        rc, out = play(lab, "lb-failover.yml", "-e", "failover_from=siwei")
        assert rc == 1, out
        assert any("not UP and ready" in f["message"] for f in out["failures"]), out["failures"]
        assert {n: s["weight"] for n, s in pool(lab, "siwei").items()} == {
            "app-siwei-1": 100, "app-siwei-2": 100, "app-fengshan-1": 0, "app-fengshan-2": 0}
    finally:
        for m in markers:
            m.unlink(missing_ok=True)
    assert all_serving(lab, "siwei") and all_serving(lab, "fengshan")

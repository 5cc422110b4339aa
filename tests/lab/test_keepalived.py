"""keepalived of each site's load-balancer pair: the lab's namespaces (lab/keepalived.py), the keepalived role
through the real ``citydc play run lb-keepalived.yml``, and the virtual IP moving when the master stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.lab import ports, processes, registry
from citydc.lab.keepalived import SERVICES, vip_holders

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD = ports.LAB_ENV["CITYDC_VRRP_PASSWORD"]


def play(ka: dict, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([CITYDC, "-c", str(ka["config"]), "play", "run", "lb-keepalived.yml", "--secret-var",
                           "keepalived_auth_pass=env:CITYDC_VRRP_PASSWORD", *args, "--json"], env=ka["env"],
                          capture_output=True, text=True, timeout=300, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr
    except ValueError:
        return proc.returncode, {}, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ka(lab_up, lab_ctx, tmp_path_factory) -> dict:
    lab_up(*(s.name for s in SERVICES))
    base = tmp_path_factory.mktemp("keepalived")
    config = base / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(base / "spool"), "sink": {"kind": "sqlite", "path": str(base / "log.db")}},
    }))
    env = {**os.environ, "CITYDC_LAB_DIR": str(lab_ctx.root), "CITYDC_INVENTORY": "lab",
           "CITYDC_VRRP_PASSWORD": PASSWORD}
    info = {"root": lab_ctx.root, "config": config, "env": env}
    rc, _out, text = play(info)
    assert rc == 0, text
    return info


def wait_holders(site: str, want: list[int], timeout: float, exact: bool = True) -> float:
    """Return the seconds until exactly ``want`` (or, not exact, at least ``want``) holds the site's VIP;
    fail after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        held = vip_holders(site)
        if held == want or (not exact and set(want) <= set(held)):
            return time.monotonic() - start
        time.sleep(0.02)
    pytest.fail(f"{site}: VIP held by {vip_holders(site)} after {timeout} s, expected {want}")


def test_role_renders_from_inventory_validates_and_is_idempotent(ka):
    conf = ka["root"] / "keepalived-fengshan-2" / "keepalived.conf"
    text = conf.read_text()
    for line in ("virtual_router_id 83", "priority 100", "unicast_src_ip 10.99.83.2", "10.99.83.1",
                 "10.99.83.100/24 dev eth0", f'auth_pass "{PASSWORD}"'):
        assert line in text, line
    assert conf.stat().st_mode & 0o077 == 0
    rc, out, text = play(ka)
    assert rc == 0 and sum(c["changed"] for c in out["hosts"].values()) == 0, out
    assert PASSWORD not in text
    before = conf.read_text()
    rc, out, _ = play(ka, "--limit", "lb-fengshan-2", "-e", "keepalived_interface=no-such-if0")
    assert rc == 1 and conf.read_text() == before  # --config-test refused it; the old config stays


def test_vip_moves_to_the_backup_when_the_master_stops_and_back_on_restart(ka, lab_ctx):
    for site in ("siwei", "fengshan"):
        wait_holders(site, [1], 10)  # the role's config (the lab's bootstrap one has no VIP)
    master = registry.SERVICES["keepalived-siwei-1"]
    pids = [r.pid for r in master.records(lab_ctx)]
    assert pids and all(processes.alive(r) for r in master.records(lab_ctx))

    start = time.monotonic()
    master.down(lab_ctx)  # SIGTERM to exactly its recorded PIDs: keepalived sends priority 0 on its way out
    stopped = time.monotonic() - start
    moved = wait_holders("siwei", [2], 10)
    assert vip_holders("fengshan") == [1]  # the other site is not touched
    master.up(lab_ctx)
    back = wait_holders("siwei", [1], 15)  # preempt: the higher priority retakes it

    # A crash (SIGKILL: no goodbye advertisement): the backup waits 3 advertisement intervals plus skew. The
    # killed node's eth0 keeps the address (nothing removes it), as a crashed server's would.
    recs = master.records(lab_ctx)
    start = time.monotonic()
    for r in recs:
        os.kill(r.pid, signal.SIGKILL)
    crashed = wait_holders("siwei", [2], 10, exact=False)
    master.down(lab_ctx)
    master.up(lab_ctx)
    wait_holders("siwei", [1], 15)
    print(f"\nVIP siwei: stop (SIGTERM) -> backup holds it {stopped + moved:.2f} s after the stop began "
          f"({moved:.2f} s after the master was gone); restart -> master again in {back:.2f} s; "
          f"crash (SIGKILL) -> backup in {crashed:.2f} s")
    assert moved < 3.0 and crashed < 6.0

"""Benchmark: ``citydc backup configs`` against a plain netmiko thread pool, side by side, on 50 lab devices.

The lab's ``netdevices-bench`` service runs 50 fakenos devices (cisco_ios and arista_eos, enable step).
Per round, both sides fetch the running and startup config of every device with the same pool size:

- citydc: ``citydc backup configs --json`` into a fresh git repository and known_hosts (first run: all 50
  devices stored and committed, host keys pinned), then once more (steady state: nothing changed);
- plain: a Python script with ``ConnectHandler`` + ``enable`` + two ``send_command`` in a
  ``ThreadPoolExecutor`` of the same size (no stripping, no masking, no git, no host-key pinning).

Both sides are separate processes (interpreter start and imports included); the order alternates
between rounds. The report gives medians; the last line is
``RATIO wall_vs_plain_netmiko_pool <citydc first-run wall / plain wall>``.

    python bench/configs.py [--rounds 3] [--workers 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from citydc.lab import ports, registry
from citydc.lab.base import LabContext
from citydc.lab.netdevices import BENCH

CITYDC = str(Path(sys.executable).with_name("citydc"))
ENV = {**os.environ, **ports.LAB_ENV}

PLAIN = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from netmiko import ConnectHandler

spec = json.loads(sys.argv[1])

def one(dev):
    conn = ConnectHandler(device_type=dev["platform"], host="127.0.0.1", port=dev["port"], username=spec["user"],
                          password=spec["password"], secret=spec["secret"])
    conn.enable()
    running = conn.send_command("show running-config")
    startup = conn.send_command("show startup-config")
    conn.disconnect()
    return len(running) + len(startup)

with ThreadPoolExecutor(max_workers=spec["workers"]) as pool:
    sizes = list(pool.map(one, spec["devices"]))
assert all(s > 200 for s in sizes), sizes
print(len(sizes))
"""


def write_config(d: Path, workers: int) -> Path:
    import yaml

    cfg = {
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "device_logins": {"lab": {"username": "netops", "password": "env:CITYDC_DEVICE_PASSWORD",
                                  "enable_secret": "env:CITYDC_DEVICE_ENABLE", "timeout_seconds": 20}},
        "devices": [{"name": dev.name, "address": ports.HOST, "site": dev.site, "role": "access",
                     "netmiko_device_type": dev.platform, "login": "lab",
                     "management_address": f"{ports.HOST}:{dev.port}"} for dev in BENCH],
        "backup": {"textfile_dir": "textfile", "configs": {"max_workers": workers}},
    }
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=900, check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout


def citydc_round(workers: int) -> tuple[float, float]:
    d = Path(tempfile.mkdtemp(prefix="bench-configs-"))
    try:
        config = write_config(d, workers)
        first, out = timed([CITYDC, "-c", str(config), "backup", "configs", "--json"])
        statuses = {r["status"] for r in json.loads(out)["devices"]}
        assert statuses == {"new"}, statuses
        second, out = timed([CITYDC, "-c", str(config), "backup", "configs", "--json"])
        assert {r["status"] for r in json.loads(out)["devices"]} == {"unchanged"}
        commits = subprocess.run(["git", "-C", str(d / "var" / "device-configs"), "rev-list", "--count", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert commits == str(len(BENCH)), commits
        return first, second
    finally:
        shutil.rmtree(d, ignore_errors=True)


def plain_round(workers: int) -> float:
    spec = {"user": "netops", "password": ports.LAB_ENV["CITYDC_DEVICE_PASSWORD"],
            "secret": ports.LAB_ENV["CITYDC_DEVICE_ENABLE"], "workers": workers,
            "devices": [{"platform": d.platform, "port": d.port} for d in BENCH]}
    wall, out = timed([sys.executable, "-c", PLAIN, json.dumps(spec)])
    assert out.strip() == str(len(BENCH)), out
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    (status,) = registry.up(LabContext(), ["netdevices-bench"])
    assert status.running, status
    citydc_first: list[float] = []
    citydc_second: list[float] = []
    plain: list[float] = []
    for k in range(args.rounds):
        order = ("citydc", "plain") if k % 2 == 0 else ("plain", "citydc")
        for side in order:
            if side == "citydc":
                first, second = citydc_round(args.workers)
                citydc_first.append(first)
                citydc_second.append(second)
            else:
                plain.append(plain_round(args.workers))
        print(f"round {k + 1}: citydc first {citydc_first[-1]:.2f} s, citydc steady {citydc_second[-1]:.2f} s, "
              f"plain netmiko pool {plain[-1]:.2f} s", flush=True)
    med = {"citydc_first": statistics.median(citydc_first), "citydc_steady": statistics.median(citydc_second),
           "plain": statistics.median(plain)}
    print(f"{len(BENCH)} devices, pool of {args.workers}, {args.rounds} rounds (medians):")
    print(f"  citydc backup configs, first run (50 commits, keys pinned): {med['citydc_first']:.2f} s")
    print(f"  citydc backup configs, steady state (no change):            {med['citydc_steady']:.2f} s")
    print(f"  plain netmiko ConnectHandler + send_command pool:           {med['plain']:.2f} s")
    print("  RANCID: not run (its clogin was not tried against the lab devices)")
    print(f"RATIO wall_steady_vs_plain_netmiko_pool {med['citydc_steady'] / med['plain']:.3f}")
    print(f"RATIO wall_vs_plain_netmiko_pool {med['citydc_first'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()

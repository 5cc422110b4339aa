"""Playbook benchmark (issue 11), side by side in one run.

(a) Overhead of ``citydc play``: the same deploy playbook (``lb-deploy.yml`` on the lab inventory, both
    sites, an idempotent run: validation and comparison on every host, nothing to reload) run with bare
    ``ansible-playbook`` (its default stdout callback) and with ``citydc play run`` (ansible-runner, its
    event stream, per-host counts, the artifact directory, the start/end events fsynced into the spool).
    A third side is the floor any ansible-runner front end starts from: the same playbook through
    ``ansible_runner.run()`` alone (a pty, its event-writing callback, artifacts; no citydc). The sides
    rotate, each round mirrored (ABC CBA), so drift in the machine's load cancels; the ratio is the median
    wall time of ``citydc play`` over the median of ``ansible-playbook``. Goal: at most 1.05.
(b) Rolling maintenance of Siwei's pool (``lb-rolling.yml --site siwei``) through ``citydc play`` while a
    bounded load (4 keep-alive clients, at most 200,000 requests) runs through Siwei's HAProxy; the number
    of failed requests (non-200 answers and socket errors) is printed.
Both sides run from bytecode (citydc's package is compiled first, as pip compiles an installed one).

Run (lab services are started if needed; stop them with ``citydc lab down`` afterwards):
    flock /tmp/citydc-lab.lock .venv/bin/python bench/play.py [--pairs N]
Last lines: ``RATIO play_wall_vs_ansible_playbook <v>`` then ``FAILED rolling_requests_failed <n>``.
"""

from __future__ import annotations

import argparse
import compileall
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
from citydc.lab.app_backends import Load
from citydc.lab.base import LabContext

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent


# The reference floor: the same playbook through ansible-runner's own ``run()`` (its defaults: a pty, the
# event-writing stdout callback, the artifact directory), without citydc: no early start, no events, no view.
RUNNER_ALONE = r"""
import shutil, sys, tempfile
import ansible_runner
private = tempfile.mkdtemp()
try:
    r = ansible_runner.run(private_data_dir=private, project_dir=sys.argv[1], playbook="lb-deploy.yml",
                           inventory=sys.argv[1] + "/inventories/lab", quiet=True,
                           settings={"suppress_output_file": True, "suppress_ansible_output": True})
finally:
    shutil.rmtree(private)
sys.exit(0 if r.rc == 0 else 1)
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return wall


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-play-"))
    try:
        measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # its config, spool and sqlite log


def measure(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="mirrored rounds (each runs every side twice)")
    args = parser.parse_args()
    ctx = LabContext()
    registry.up(ctx, ["app-backends", "haproxy-siwei", "haproxy-fengshan"])
    config = work / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "security_log": {"spool_dir": str(work / "spool"), "sink": {"kind": "sqlite", "path": str(work / "log.db")}},
    }))
    env = {**os.environ, "CITYDC_LAB_DIR": str(ctx.root), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Both sides run from bytecode, as installed packages do: pip compiled ansible's; citydc's editable
    # checkout is compiled here (with PYTHONDONTWRITEBYTECODE set, each citydc run would compile ~30 modules).
    compileall.compile_dir(str(ROOT / "citydc"), quiet=1)
    sides = {"ansible-playbook": ([str(BIN / "ansible-playbook"), "-i", "inventories/lab", "lb-deploy.yml"], PLAYBOOKS),
             "ansible-runner": ([sys.executable, "-c", RUNNER_ALONE, str(PLAYBOOKS)], PLAYBOOKS),
             "citydc play": ([str(BIN / "citydc"), "-c", str(config), "play", "run", "lb-deploy.yml", "-i", "lab"],
                             None)}
    play = sides["citydc play"][0]
    timed(play, env)  # bring the config in line with the inventory; warm the page cache
    timed(sides["ansible-playbook"][0], env, PLAYBOOKS)
    walls: dict[str, list[float]] = {side: [] for side in sides}
    names = list(sides)
    for i in range(args.pairs):
        order = names[i % 3:] + names[:i % 3]
        for side in order + order[::-1]:  # each side twice, mirrored: drift in the machine's load cancels
            argv, cwd = sides[side]
            walls[side].append(timed(argv, env, cwd))
    for side, values in walls.items():
        print(f"{side:17} median {statistics.median(values):.3f} s  runs {' '.join(f'{v:.2f}' for v in values)}")
    floor = statistics.median(walls["ansible-runner"]) / statistics.median(walls["ansible-playbook"])
    print(f"ansible-runner alone vs ansible-playbook: {floor:.3f} (what any ansible-runner front end starts from); "
          f"citydc play vs ansible-runner alone: "
          f"{statistics.median(walls['citydc play']) / statistics.median(walls['ansible-runner']):.3f}")

    load = Load(ports.HOST, ports.HAPROXY_SIWEI, threads=4, max_requests=200_000).start()
    try:
        rolling = timed([*play[:-3], "lb-rolling.yml", "-i", "lab", "--site", "siwei"], env)
    finally:
        load.stop()
    print(f"rolling maintenance of siwei: {rolling:.1f} s, {load.total} requests, {load.ok} ok, "
          f"{load.failed} non-200, {load.errors} socket errors")
    ratio = statistics.median(walls["citydc play"]) / statistics.median(walls["ansible-playbook"])
    print(f"RATIO play_wall_vs_ansible_playbook {ratio:.3f}")
    print(f"FAILED rolling_requests_failed {load.failed + load.errors}")


if __name__ == "__main__":
    main()

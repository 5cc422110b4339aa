"""Benchmark: ``citydc backup run`` against the same restic commands run bare (backup + copy), side by side.

Each round makes fresh local and off-site (SFTP, the lab's sshd) repositories for both sides, so both do
the same first full backup of the same data set and the same copy; the order alternates between rounds.
Wall time and CPU (user+sys of all child processes: citydc, restic, ssh) are measured per side; the
report gives medians, and the last line is ``RATIO wall_vs_bare_restic <citydc wall / bare wall>``.

    python bench/backup.py [--rounds 3] [--big-mib 960]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from citydc.lab import registry
from citydc.lab.base import LabContext

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD = "bench-only-password"  # noqa: S105 - a throwaway repository made by this script
ENV = {**os.environ, "CITYDC_BENCH_PW": PASSWORD}


def make_data(root: Path, big_mib: int) -> int:
    """Write 400 small files (1-32 KiB, half text) and big random files totalling ``big_mib``; return bytes."""
    rnd = random.Random(11)
    (root / "small").mkdir(parents=True)
    for i in range(400):
        text = (f"{i} log line\n" * rnd.randint(10, 3000)).encode()
        body = text if i % 2 else rnd.randbytes(rnd.randint(1024, 32768))
        (root / "small" / f"f{i:03}").write_bytes(body)
    for i in range(max(1, big_mib // 16)):
        (root / f"big{i}.bin").write_bytes(rnd.randbytes(16 * 1024 * 1024))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def timed(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Run argvs one after the other; return (wall seconds, CPU seconds of the children). Fail loudly.

    Both sides start with nothing dirty in the page cache and end when their data is on disk:
    otherwise whichever side fsyncs first (citydc's event spool and state do) pays for flushing
    the other's writes, and bare restic is timed before its packs reach the disk.
    """
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    for argv in argvs:
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"bench: {argv[:4]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    os.sync()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    # ~1 GB, the size of a real job: citydc's cost is a fixed ~0.3 s per run (Python start-up, config
    # validation, fsynced events and state), 9% of a 3.5 s run of 91 MB but noise on a real one.
    parser.add_argument("--big-mib", type=int, default=960, help="size of the big files in MiB (plus ~6 MB small)")
    args = parser.parse_args()
    (sftp,) = registry.up(LabContext(), ["sftp"])
    ssh_config, remote_root = sftp.endpoints["ssh_config"], Path(sftp.endpoints["sftp"].split(":", 2)[2])
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-backup-"))
    remote = remote_root / work.name
    try:
        data = work / "data"
        size = make_data(data, args.big_mib)
        print(f"data set: {size / 1e6:.1f} MB in {sum(1 for p in data.rglob('*') if p.is_file())} files")
        results: dict[str, list[tuple[float, float]]] = {"citydc": [], "bare": []}
        for n in range(args.rounds):
            order = ["citydc", "bare"] if n % 2 == 0 else ["bare", "citydc"]
            for side in order:
                local, off = work / f"{side}-{n}-local", f"sftp:citydc@127.0.0.1:{remote}/{side}-{n}"
                sftp_opt = f"sftp.command=ssh -F {ssh_config} citydc@127.0.0.1 -s sftp"
                if side == "citydc":
                    cfg = work / f"citydc-{n}.yaml"
                    cfg.write_text(json.dumps({
                        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
                        "backup": {"state_dir": str(work / f"state-{n}"), "textfile_dir": str(work / f"prom-{n}"),
                                   "jobs": [{"name": "bench", "site": "siwei", "sources": [str(data)],
                                             "local_repo": {"url": str(local), "password": "env:CITYDC_BENCH_PW",
                                                            "site": "siwei"},
                                             "offsite_repo": {"url": off, "password": "env:CITYDC_BENCH_PW",
                                                              "site": "fengshan", "ssh_config": ssh_config}}]},
                        "security_log": {"spool_dir": str(work / f"spool-{n}")}}))
                    timed([[CITYDC, "-c", str(cfg), "backup", "init", "bench"]], ENV)
                    results[side].append(timed([[CITYDC, "-c", str(cfg), "backup", "run", "bench"]], ENV))
                else:
                    env = {**ENV, "RESTIC_PASSWORD": PASSWORD, "RESTIC_FROM_PASSWORD": PASSWORD,
                           "RESTIC_CACHE_DIR": str(work / f"cache-{n}")}
                    timed([["restic", "-r", str(local), "init"],
                           ["restic", "-r", off, "-o", sftp_opt, "init", "--copy-chunker-params",
                            "--from-repo", str(local)]], env)
                    results[side].append(timed([
                        ["restic", "-r", str(local), "--json", "backup", "--tag", "citydc.job=bench",
                         "--host", os.uname().nodename, str(data)],
                        ["restic", "-r", off, "-o", sftp_opt, "copy", "--from-repo", str(local),
                         "--tag", "citydc.job=bench"]], env))
                wall, cpu = results[side][-1]
                print(f"round {n + 1} {side:6}: wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)
        med = {side: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
               for side, r in results.items()}
        print(f"median citydc backup run: wall {med['citydc'][0]:.2f} s, cpu {med['citydc'][1]:.2f} s")
        print(f"median bare restic      : wall {med['bare'][0]:.2f} s, cpu {med['bare'][1]:.2f} s")
        # citydc adds a fixed cost per run (Python start-up and imports, config, events, state,
        # metrics); the ratio therefore falls as the data set grows.
        print(f"fixed overhead per run (median wall difference): {med['citydc'][0] - med['bare'][0]:.2f} s")
        print(f"RATIO cpu_vs_bare_restic {med['citydc'][1] / med['bare'][1]:.3f}")
        print(f"RATIO wall_vs_bare_restic {med['citydc'][0] / med['bare'][0]:.3f}")
    finally:
        shutil.rmtree(remote, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

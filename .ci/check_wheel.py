"""Build the wheel, install it in a clean venv, and import every citydc module from it.

Catches what an editable install hides: a sub-package missing from the explicit package list,
package data left out, an import of the repository layout instead of the installed one.

With ``--demo`` it then runs ``citydc demo`` from that venv, in an empty directory with a lab
directory of its own, as a user who ran ``pip install citydc`` would: the demo must find every
lab file it needs in the installed package. The lab of the checkout is stopped first (the two
would share the lab's loopback ports), and the wheel's lab is stopped after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = r"""
import importlib, pkgutil, sys, citydc
assert "site-packages" in citydc.__file__, citydc.__file__
names = ["citydc"] + [m.name for m in pkgutil.walk_packages(citydc.__path__, "citydc.")]
for name in names:
    importlib.import_module(name)
from citydc.config import sample, load_text
assert sample.SAMPLE_PATH.read_text(encoding="utf-8") == sample.reference_text(), "packaged sample.yaml is stale"
load_text(sample.reference_text(), check_files=False)  # the files it names (ssh_config, ca_file) are not here
from importlib import resources
for data in ("lab-data/pcap_immediate.c", "lab-data/snmpsim_lite.py", "lab-data/snmpsim_full.py",
             "lab-data/snmp/sources.json", "lab-data/snmp/LICENSE-snmpsim-data.txt",
             "lab-data/snmp/LICENSE-snmpsim.txt"):
    assert resources.files("citydc.lab").joinpath(data).is_file(), f"package data citydc.lab/{data} missing"
from citydc.lab.snmpsim import RECORDED, recording
for name in RECORDED:
    recording(name)
from citydc.collectors.netflow import fastpath
assert fastpath.available(), "the compiled NetFlow extension was not built into the wheel"
print(f"imported {len(names)} modules from {citydc.__file__}")
"""


def run_demo(venv: Path, cwd: Path) -> bool:
    """Stop the checkout's lab, run the wheel's ``citydc demo --json`` in ``cwd``; return whether it passed."""
    subprocess.run([sys.executable, "-m", "citydc.cli.main", "lab", "down"], capture_output=True, check=False)
    env = {**os.environ, "CITYDC_LAB_DIR": str(cwd / "lab")}
    citydc = str(venv / "bin" / "citydc")
    try:
        proc = subprocess.run([citydc, "demo", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=1200, check=False)
    finally:
        subprocess.run([citydc, "lab", "down"], cwd=cwd, env=env, capture_output=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        print(f"wheel demo: exit {proc.returncode}, no JSON report:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return False
    for step in report["steps"]:
        print(f"  {'ok    ' if step['ok'] else 'FAILED'} {step['step']}: {step['detail'][:150]}")
    if proc.returncode != 0 or not report["ok"]:
        print(f"wheel demo failed (exit {proc.returncode})", file=sys.stderr)
        return False
    print(f"wheel demo: {len(report['steps'])} steps ok, run from {venv} in an empty directory")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="also run `citydc demo` from the installed wheel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citydc-wheel-") as tmp:
        tmp_path = Path(tmp)
        # mkdtemp makes it 0700; the lab's unprivileged SFTP login must search through it.
        tmp_path.chmod(0o711)
        subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(ROOT)],
                       check=True, stdout=subprocess.DEVNULL)
        wheel = next((tmp_path / "dist").glob("citydc-*.whl"))
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # Reuse the already-downloaded dependencies from the dev venv's pip cache.
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True)
        # Run from an empty directory so the checkout cannot be imported by accident.
        proc = subprocess.run([str(venv / "bin" / "python"), "-c", IMPORT_ALL], cwd=tmp_path, text=True,
                              capture_output=True, check=False)
        print(proc.stdout.strip() or proc.stderr.strip())
        cli = subprocess.run([str(venv / "bin" / "citydc"), "--help"], cwd=tmp_path, capture_output=True, text=True,
                             check=False)
        if proc.returncode != 0 or cli.returncode != 0:
            print(proc.stderr[-3000:], cli.stderr[-1000:], file=sys.stderr)
            return 1
        print(f"wheel {wheel.name}: installs in a clean venv, every module imports, `citydc --help` works")
        if args.demo:
            empty = tmp_path / "run"
            empty.mkdir()
            if not run_demo(venv, empty):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the wheel, install it in a clean venv, and import every citydc module from it.

Catches what an editable install hides: a sub-package missing from the explicit package list,
package data left out, an import of the repository layout instead of the installed one.
"""

from __future__ import annotations

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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="citydc-wheel-") as tmp:
        tmp_path = Path(tmp)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

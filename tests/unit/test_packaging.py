"""The layout guards of STYLE.md: explicit package list, __init__ everywhere, bare-name guard."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def discovered_packages() -> set[str]:
    """Walk every mapped folder and return the dotted names of folders holding Python code."""
    found = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for path in [base, *sorted(p for p in base.rglob("*") if p.is_dir())]:
            if "__pycache__" in path.parts or path.name == "lab-data":
                continue
            if any(path.glob("*.py")):
                rel = path.relative_to(base)
                name = ".".join([package, *rel.parts]) if rel.parts else package
                # A sub-folder of citydc/ that is itself mapped elsewhere is not double counted.
                found.add(name)
    return found


def test_every_code_folder_is_in_the_explicit_package_list():
    listed = set(SETUPTOOLS["packages"])
    missing = discovered_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_has_an_init():
    for name in SETUPTOOLS["packages"]:
        parts = name.split(".")
        for depth in range(len(parts), 0, -1):
            prefix = ".".join(parts[:depth])
            if prefix in SETUPTOOLS["package-dir"]:
                folder = ROOT / SETUPTOOLS["package-dir"][prefix] / Path(*parts[depth:])
                break
        assert (folder / "__init__.py").is_file(), f"{name}: missing {folder}/__init__.py"


@pytest.mark.parametrize("package", [p for p in SETUPTOOLS["package-dir"] if p != "citydc"])
def test_mapped_folder_refuses_its_bare_name(package):
    folder = SETUPTOOLS["package-dir"][package]
    proc = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0
    assert f"import {package}" in proc.stderr


def test_content_folders_are_not_packages():
    for folder in ("playbooks", "alerts"):
        assert not list((ROOT / folder).rglob("__init__.py")), f"{folder}/ is content, never a Python package"


def test_pytest_runs_in_importlib_mode():
    assert "--import-mode=importlib" in PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"]
    assert not (ROOT / "tests" / "__init__.py").exists()

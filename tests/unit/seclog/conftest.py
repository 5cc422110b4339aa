"""The auditor of docs/operations.md §5, played for real: the ``nobody`` user with the group ``nogroup`` as the
auditors' group (``files.group: nogroup``), not the owner of what it reads.

Root runs the tests (root itself ignores file modes) and starts the auditor's processes as that user. Their
interpreter is the system ``python3`` of the same version, with this venv's packages: the venv's own
interpreter may sit under a home directory other users cannot enter (/root).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NOBODY, NOGROUP = 65534, 65534

PRELUDE = f"""
import json, site, sys
site.addsitedir({sysconfig.get_paths()["purelib"]!r})
sys.path.insert(0, {str(REPO)!r})
"""

CLI_PROGRAM = """
from citydc.cli.main import main
sys.argv = ["citydc", *sys.argv[1:]]
main()
"""


def _other_python() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                     capture_output=True, text=True, check=False).stdout.strip()
            if version == str(sys.version_info[:2]):
                return candidate
    return None


@dataclass(frozen=True)
class Auditor:
    """Runs Python programs, or the real ``citydc`` command line, as ``nobody:nogroup`` (no other groups)."""

    python: str
    uid: int = NOBODY
    gid: int = NOGROUP

    def _argv(self, program: str, args: tuple[str, ...]) -> list[str]:
        return [self.python, "-S", "-c", PRELUDE + program, *args]

    def _as_user(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "cwd": "/",
                "env": {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}}

    def run(self, program: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Given a program (run after PRELUDE: json, site and sys imported, this venv's packages and the repository
        on the path) and its arguments, run it to its end."""
        return subprocess.run(self._argv(program, args), capture_output=True, text=True, timeout=120, input=stdin,
                              check=False, **self._as_user())

    def popen(self, program: str, *args: str) -> subprocess.Popen:
        """Given a program and its arguments, start it with pipes for stdin, stdout and stderr (text)."""
        return subprocess.Popen(self._argv(program, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **self._as_user())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Given citydc's arguments, run the real command line (citydc.cli.main:main)."""
        return self.run(CLI_PROGRAM, *args)


@pytest.fixture(scope="session")
def auditor() -> Auditor:
    """The auditor; the test is skipped where it cannot be played (not root, no system python3 of this version)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a child as nobody")
    python = _other_python()
    if python is None:
        pytest.skip(f"needs a system python3 {sys.version_info[0]}.{sys.version_info[1]} that nobody may run")
    return Auditor(python)

"""playbooks/ passes ansible-lint's production profile, offline (playbooks/.ansible-lint).

ansible-lint comes with the ``play-lint`` extra (the Makefile installs it); missing, these tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def ansible_lint(directory: Path) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ansiblelint", "--offline", "-p", "--nocolor"], cwd=directory,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_playbooks_pass_the_production_profile():
    proc = ansible_lint(PLAYBOOKS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


def test_a_violation_fails_the_lint(tmp_path):
    """The same configuration refuses a short module name (fqcn) and a task without a name: the lint can fail."""
    books = tmp_path / "playbooks"
    books.mkdir()
    for name in (".ansible-lint", "ansible.cfg"):
        shutil.copy(PLAYBOOKS / name, books / name)
    (books / "bad.yml").write_text("---\n- name: Bad\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                                   "    - debug:\n        msg: hello\n")
    proc = ansible_lint(books)
    assert proc.returncode != 0
    assert "fqcn" in proc.stdout and "name[missing]" in proc.stdout, proc.stdout + proc.stderr

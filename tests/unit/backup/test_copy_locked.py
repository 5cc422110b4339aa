"""A copy to the off-site repository that a live lock in the local (source) repository blocks: restic's words do not
say which repository is locked, so citydc looks at the locks of both and names the one holding it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def exclusive_lock(job: Any, repo: str, remove: bool = True) -> Iterator[int]:
    """Hold a real exclusive lock on ``root/<repo>``: a ``restic prune`` stopped (SIGSTOP) once its lock file is
    written; yield its pid, then kill it (its lock stays, as a crashed prune's would) and remove the lock unless
    ``remove`` is false."""
    locks = job.root / repo / "locks"
    env = {**os.environ, "RESTIC_PASSWORD": (job.root / "pw").read_text().strip(),
           "RESTIC_CACHE_DIR": str(job.root / "cache")}
    assert not any(locks.iterdir())
    proc = subprocess.Popen(["restic", "-r", str(job.root / repo), "prune"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        # The local backend writes <id>-tmp-<n> first and renames it: only the renamed file is a lock.
        while proc.poll() is None and not any(re.fullmatch("[0-9a-f]{64}", f.name) for f in locks.iterdir()):
            assert time.monotonic() < deadline, "restic prune wrote no lock within 30 s"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGSTOP)
        assert proc.poll() is None, "restic prune ended before it could be stopped"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=30)
        for lock in locks.iterdir():
            if remove or not re.fullmatch("[0-9a-f]{64}", lock.name):
                lock.unlink()




@pytest.mark.parametrize("repo", ["local", "offsite"])
def test_a_copy_blocked_by_a_live_lock_names_the_repository_holding_it(restic_job, repo):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    backup, copy = job.runner().run()
    assert backup.ok and copy.ok
    with exclusive_lock(job, repo) as pid:
        result = job.runner()._copy()
    assert result.status == "failure"
    other = "offsite" if repo == "local" else "local"
    assert f"repository locked: the {repo} repository holds lock " in result.error
    assert f"(pid {pid} on " in result.error and f"process {pid} is still running" in result.error
    assert f"the {other} repository" not in result.error
    assert any(f"the {repo} repository holds" in note for note in result.details["locks_kept"])


def test_a_stale_local_lock_in_the_way_of_the_copy_is_removed_and_the_copy_retried(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert all(r.ok for r in job.runner().run())
    (job.src / "b.txt").write_text("b\n")
    with exclusive_lock(job, "local", remove=False):
        pass  # the prune is killed: its lock stays, its process is gone
    (lock,) = (job.root / "local" / "locks").iterdir()
    time.sleep(1.1)
    events: list[dict] = []
    runner = job.runner(lock_stale_seconds=1)
    runner.emit = events.extend
    result = runner._copy()
    assert result.status == "success", result.error
    removed = [e for e in events if e["event"]["action"] == "backup-lock-removed"]
    assert [e["citydc"]["backup"]["repo"] for e in removed] == ["local"]
    assert removed[0]["citydc"]["backup"]["lock_id"] == lock.name and not lock.exists()

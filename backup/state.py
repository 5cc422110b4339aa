"""What the backup jobs remember between runs: last attempt and success per step and repository,
repository counts, the check cycle's progress and the last drill's evidence.

One JSON file per job under ``backup.state_dir``, replaced atomically (temp file, fsync, rename,
fsync of the directory), so a killed run leaves either the old state or the new one, never half of
each. Two commands on the same job (a cron ``run`` and an operator's ``check``) change it through
``update`` only: it holds the job's lock file (``<job>.lock``, ``flock``) around load, change and
save, so each merges its own fields into the current state instead of writing back a stale copy.
The lock is held for milliseconds, never while restic runs; restic's own repository locks are
separate and unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citydc import atomicfile, runlock

__all__ = [
    "LOCK_TIMEOUT_SECONDS",
    "JobBusy",
    "StateDamaged",
    "StateLocked",
    "advance_check_cycle",
    "load",
    "load_all",
    "locked",
    "metrics_locked",
    "next_check_subset",
    "run_locked",
    "save",
    "step_key",
    "update",
]

LOCK_TIMEOUT_SECONDS = 30.0  # the lock is held only around a load and a save: waiting this long means a hang


@dataclass
class _TestHooks:
    """Injection points for tests only (production never sets them): ``inside(job)`` runs in ``update``
    between the load and the save, inside the critical section; ``waiting(lock_path)`` runs once when a
    lock is found taken, before waiting for it; ``lock=False`` leaves the job's lock out of ``update``.
    With them a test provokes the lost update deterministically, and shows the lock is what prevents it
    (tests/unit/backup/test_state_concurrency.py)."""

    inside: Callable[[str], None] | None = None
    waiting: Callable[[Path], None] | None = None
    lock: bool = True


TEST_HOOKS = _TestHooks()


class StateDamaged(ValueError):
    """A job's state file is not the JSON object citydc wrote; names the file and how to recover."""


class StateLocked(RuntimeError):
    """Another process held a job's state lock longer than the bounded wait; names the job and the holder."""


class JobBusy(RuntimeError):
    """Another ``backup run`` of the same job is in progress; names the job and the holder's PID."""


def step_key(repo: str, step: str) -> str:
    return f"{repo}/{step}"


def _path(state_dir: Path, job: str) -> Path:
    return state_dir / f"{job}.json"


def _lock_path(state_dir: Path, job: str) -> Path:
    return state_dir / f"{job}.lock"


def load(state_dir: Path, job: str) -> dict[str, Any]:
    """Given the state directory and a job name, return its state (empty when none was saved yet).

    Raise StateDamaged (a ValueError) naming the file if it is not valid JSON or not an object of
    objects as saved (never silently start over).
    """
    path = _path(state_dir, job)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"job": job, "steps": {}, "repos": {}, "check_cycle": {}, "drill": {}}
    except UnicodeDecodeError as exc:
        raise StateDamaged(f"{path}: not UTF-8 text ({exc.reason}); {_RECOVER}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateDamaged(f"{path}: not valid JSON ({exc}); {_RECOVER}") from None
    if not isinstance(data, dict):
        raise StateDamaged(f"{path}: expected a JSON object, got {type(data).__name__}; {_RECOVER}")
    for key in ("steps", "repos", "check_cycle", "drill"):
        if not isinstance(data.setdefault(key, {}), dict):
            raise StateDamaged(f"{path}: {key!r} is not a JSON object; {_RECOVER}")
    return data


_RECOVER = "move it away to start a new state"


def load_all(state_dir: Path) -> list[dict[str, Any]]:
    """Return the state of every job that has one, skipping unreadable files."""
    out = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            out.append(load(state_dir, path.stem))
        except ValueError:
            continue
    return out


def save(state_dir: Path, job: str, data: dict[str, Any]) -> None:
    """Write a job's state atomically (0600). Callers that changed a loaded state use ``update`` instead."""
    atomicfile.write(_path(state_dir, job), json.dumps(data, indent=1, sort_keys=True))


@contextmanager
def _flock(path: Path, what: str, timeout: float, poll: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if TEST_HOOKS.waiting is not None and not waited:
                    TEST_HOOKS.waiting(path)
                waited = True
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    raise StateLocked(f"{what} {path} still held by another citydc command (pid {holder}) "
                                      f"after {timeout:g} s; nothing was changed") from None
                time.sleep(poll)
        # Only for the error message above: who to look at when the wait runs out.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def locked(state_dir: Path, job: str, timeout: float = LOCK_TIMEOUT_SECONDS, poll: float = 0.02):
    """Return a context manager holding the job's state lock (``flock`` on ``<job>.lock``).

    Entering it raises StateLocked naming the job, the lock file and the holder's PID if another
    process holds the lock for more than ``timeout`` seconds. The kernel drops the lock when its
    holder dies, so a killed command never leaves it behind.
    """
    return _flock(_lock_path(state_dir, job), f"backup job {job}: state lock", timeout, poll)


@contextmanager
def run_locked(state_dir: Path, job: str) -> Iterator[None]:
    """Hold the job's run lock (``flock`` on ``<job>.run.lock``) for a whole ``backup run``, or raise
    JobBusy at once naming the PID of the run holding it. Two runs of one job at once would each copy
    every new snapshot off-site (restic's copy decides what is missing when it starts): the second one is
    refused instead. The kernel drops the lock when its holder dies."""
    try:
        fd = runlock.take(state_dir / f"{job}.run.lock", str(os.getpid()))
    except runlock.Held as exc:
        raise JobBusy(f"job {job}: a run is already in progress (pid {exc.holder or 'unknown'}); this run did "
                      "nothing") from None
    try:
        yield
    finally:
        os.close(fd)


def metrics_locked(state_dir: Path, timeout: float = LOCK_TIMEOUT_SECONDS, poll: float = 0.02):
    """Return a context manager serialising the render of the metrics textfile from every job's state.

    Whoever renders last then read the state after every earlier render, so the file never goes
    back to an older view. (Job names cannot start with a dot, so the lock file is no job's.)
    """
    return _flock(state_dir / ".metrics.lock", "backup metrics lock", timeout, poll)


def update(state_dir: Path, job: str, change: Callable[[dict[str, Any]], None], *,
           timeout: float = LOCK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Given a job and a function changing only its own fields of a state, apply it to the current
    state under the job's lock and save it atomically; return the saved state.

    Raise StateLocked if the lock cannot be taken within ``timeout`` seconds, ValueError if the
    saved state is not valid JSON (nothing is written then).
    """
    with locked(state_dir, job, timeout) if TEST_HOOKS.lock else nullcontext():
        data = load(state_dir, job)
        if TEST_HOOKS.inside is not None:
            TEST_HOOKS.inside(job)
        change(data)
        save(state_dir, job, data)
    return data


def next_check_subset(current: dict[str, Any] | None, total: int) -> int:
    """Given a repository's check cycle and N, return the subset n (1..N) the next check reads."""
    if not current or current.get("total") != total:
        return 1  # first check, or N changed: a new cycle
    return int(current.get("next", 1))


def advance_check_cycle(current: dict[str, Any] | None, subset: int, total: int, *, clean: bool,
                        now: float) -> dict[str, Any]:
    """Given a repository's current check cycle, the subset n of N just checked and whether the check
    was clean, return the new cycle: subset n is marked read and ``next`` moves past it; when every
    subset was read the cycle starts over. A cycle of another N (the setting changed) starts over.

    ``next`` moves only if it still points at n: a check that finished meanwhile may have moved it
    already, and its progress is kept.
    """
    cycle = dict(current or {})
    if cycle.get("total") != total:
        cycle = {"total": total, "next": 1, "read": [], "cycle_started": now}
    if not clean:
        return cycle
    read = sorted(set(cycle.get("read", [])) | {subset})
    cycle["read"] = read
    if int(cycle.get("next", 1)) == subset:
        cycle["next"] = subset % total + 1
    if len(read) >= total:
        cycle.update(read=[], cycle_started=now, last_full_cycle=now)
    return cycle

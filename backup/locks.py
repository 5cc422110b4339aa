"""Stale restic locks: find them, decide by policy, remove only those, and say which were removed.

A lock (``time``, ``hostname``, ``pid``) is stale only when it is older than the configured
threshold AND was made on this host AND its process is gone. restic's own ``unlock`` is looser
(any lock older than 30 minutes, from any host, counts as stale), so it runs only when every lock
it would remove is stale by our policy too; otherwise, for a local repository, exactly the stale
lock files are deleted, and for a remote one nothing is removed and the reason is reported.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from citydc.backup import restic
from citydc.backup.restic import Lock, RepoAccess, Restic

__all__ = ["LockReport", "clear_stale", "is_stale", "lock_age_seconds", "pid_alive"]

RESTIC_STALE_SECONDS = 30 * 60  # restic's own staleness timeout (internal/restic/lock.go)
_REMOTE = re.compile(r"^(sftp|rest|s3|b2|azure|gs|swift|rclone):")


def pid_alive(pid: int, proc_root: Path = Path("/proc")) -> bool:
    """Return True if a process with this PID runs on this host (a zombie has ended: it holds nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return True  # no /proc to look at: trust the signal check
    # The state follows the command name, which may itself contain ')'.
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


def parse_time(text: str) -> datetime:
    """Given restic's RFC 3339 time (nanoseconds allowed), return an aware datetime. Raise ValueError if not."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not m:
        raise ValueError(f"lock time: expected RFC 3339 like 2026-01-02T03:04:05.123Z, got {text!r}")
    frac = (m[2] or ".0")[:7]  # Python keeps microseconds
    return datetime.fromisoformat(m[1] + frac + ("+00:00" if m[3] == "Z" else m[3]))


def lock_age_seconds(lock: Lock, now: datetime) -> float:
    return (now - parse_time(lock.time)).total_seconds()


def is_stale(lock: Lock, *, now: datetime, hostname: str, threshold_seconds: float,
             alive: Callable[[int], bool] = pid_alive) -> tuple[bool, str]:
    """Given a lock and the policy, return (stale?, reason)."""
    age = lock_age_seconds(lock, now)
    if lock.hostname != hostname:
        return False, f"made on host {lock.hostname}, cannot check its process from {hostname}"
    if alive(lock.pid):
        return False, f"process {lock.pid} is still running"
    if age <= threshold_seconds:
        return False, f"only {age:.0f} s old (threshold {threshold_seconds:.0f} s)"
    return True, f"process {lock.pid} is gone and the lock is {age:.0f} s old"


def restic_would_remove(lock: Lock, *, now: datetime, hostname: str,
                        alive: Callable[[int], bool] = pid_alive) -> bool:
    """Return True if ``restic unlock`` (without --remove-all) would remove this lock."""
    if lock_age_seconds(lock, now) > RESTIC_STALE_SECONDS:
        return True
    return lock.hostname == hostname and not alive(lock.pid)


def local_path(url: str) -> Path | None:
    """Given a repository URL, return its directory if it is a local repository."""
    if url.startswith("local:"):
        return Path(url[len("local:"):])
    return None if _REMOTE.match(url) else Path(url)


@dataclass(frozen=True)
class LockReport:
    removed: tuple[tuple[Lock, float], ...]  # (lock, age in seconds)
    kept: tuple[tuple[Lock, str], ...]  # (lock, why it was kept)
    error: str = ""
    unreadable: tuple[tuple[str, str], ...] = ()  # (lock id, why it cannot be read): kept, for a person to judge


def list_locks(runner: Restic, access: RepoAccess) -> tuple[list[Lock], list[tuple[str, str]], str]:
    """Return the repository's readable locks, the unreadable ones as (id, why), and an error text.

    A lock that vanishes while being read is skipped. One that cannot be read (a run killed while
    writing it) has no PID to check, so it is never removed automatically.
    """
    res = runner.run(restic.list_locks_argv(runner.binary, access), access, timeout=300)
    if not res.ok:
        return [], [], restic.classify_failure(res.masked_stderr())
    locks, unreadable = [], []
    for lock_id in res.stdout.split():
        cat = runner.run(restic.cat_lock_argv(runner.binary, access, lock_id), access, timeout=120)
        try:
            if cat.ok:
                locks.append(restic.parse_lock(lock_id, cat.stdout))
                continue
        except restic.ResticError as exc:
            unreadable.append((lock_id, str(exc)))
            continue
        if "no such file" not in cat.stderr and "does not exist" not in cat.stderr:
            unreadable.append((lock_id, restic.classify_failure(cat.masked_stderr())))
    return locks, unreadable, ""


def clear_stale(runner: Restic, access: RepoAccess, threshold_seconds: float, *, now: datetime | None = None,
                hostname: str | None = None, alive: Callable[[int], bool] = pid_alive) -> LockReport:
    """Given a repository and the threshold, remove its stale locks; return what was removed and kept."""
    now = now or datetime.now(UTC)
    hostname = hostname or socket.gethostname()
    locks, unreadable, error = list_locks(runner, access)
    if error or not locks:
        return LockReport((), (), error, tuple(unreadable))
    verdicts = {lk.id: is_stale(lk, now=now, hostname=hostname, threshold_seconds=threshold_seconds, alive=alive)
                for lk in locks}
    stale = [lk for lk in locks if verdicts[lk.id][0]]
    kept = [(lk, verdicts[lk.id][1]) for lk in locks if not verdicts[lk.id][0]]
    if not stale:
        return LockReport((), tuple(kept), unreadable=tuple(unreadable))
    extra = [lk for lk in locks if restic_would_remove(lk, now=now, hostname=hostname, alive=alive)
             and not verdicts[lk.id][0]]
    directory = local_path(access.url)
    if not extra:
        res = runner.run(restic.unlock_argv(runner.binary, access), access, timeout=300)
        if not res.ok:
            return LockReport((), tuple(kept), f"unlock failed: {restic.classify_failure(res.masked_stderr())}",
                              tuple(unreadable))
    elif directory is not None:
        for lk in stale:
            (directory / "locks" / lk.id).unlink(missing_ok=True)
    else:
        why = "restic unlock would also remove locks the policy keeps; remove them by hand"
        return LockReport((), tuple(kept) + tuple((lk, why) for lk in stale), unreadable=tuple(unreadable))
    remaining, _, _ = list_locks(runner, access)
    left = {lk.id for lk in remaining}
    removed = tuple((lk, lock_age_seconds(lk, now)) for lk in stale if lk.id not in left)
    return LockReport(removed, tuple(kept), unreadable=tuple(unreadable))


def describe(report: LockReport) -> list[str]:
    """Given a report, return one line per kept or unreadable lock, for people."""
    return ([f"lock {lk.id[:8]} (pid {lk.pid} on {lk.hostname}): {why}" for lk, why in report.kept]
            + [f"lock {lock_id[:8]}: unreadable ({why}); not removed, check it by hand"
               for lock_id, why in report.unreadable])

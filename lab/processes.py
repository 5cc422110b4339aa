"""Start, record and stop lab processes by PID, and only those.

A PID alone can be reused after a crash, so each record also keeps the process's start time
from ``/proc/PID/stat``: a PID whose start time changed is not ours and is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ProcessRecord", "alive", "descendants", "spawn", "stop"]


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: int
    argv0: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ProcessRecord:
        return cls(int(data["pid"]), int(data["start_time"]), str(data["argv0"]))


def _start_time(pid: int, proc_root: Path = Path("/proc")) -> int | None:
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] == "Z":  # zombie: finished, only waiting to be reaped
        return None
    return int(fields[19])


def record(pid: int, argv0: str) -> ProcessRecord:
    start = _start_time(pid)
    if start is None:
        raise RuntimeError(f"process {pid} ({argv0}) exited right after it was started")
    return ProcessRecord(pid, start, argv0)


def record_living(pids: list[int], argv0: str) -> list[ProcessRecord]:
    """Return records for those of ``pids`` still running; a short-lived child (sshd's per-connection
    process from a readiness probe) may be gone by the time it is read, and is no part of the service."""
    recs = []
    for pid in pids:
        start = _start_time(pid)
        if start is not None:
            recs.append(ProcessRecord(pid, start, argv0))
    return recs


def alive(rec: ProcessRecord) -> bool:
    """Return True if the recorded process still runs (same PID and same start time)."""
    return _start_time(rec.pid) == rec.start_time


def descendants(pid: int, proc_root: Path = Path("/proc")) -> list[int]:
    """Return the PIDs of all live descendants of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen:
    """Start argv detached in its own session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            user=user, group=user if user else None, extra_groups=[] if user else None,
        )


def stop(records: Sequence[ProcessRecord], timeout: float = 20.0) -> list[ProcessRecord]:
    """SIGTERM each live recorded process, SIGKILL those still alive after ``timeout``.

    Return the records that were still alive when asked to stop.
    """
    live = [r for r in records if alive(r)]
    for rec in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(r) for r in live):
        _reap()
        time.sleep(0.1)
    for rec in live:
        if alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(r) for r in live):
        _reap()
        time.sleep(0.05)
    return live


def _reap() -> None:
    # Processes started by this very process become zombies until waited for.
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
    except ChildProcessError:
        pass


def save(path: Path, records: Sequence[ProcessRecord]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([r.to_json() for r in records]))
    tmp.replace(path)


def load(path: Path) -> list[ProcessRecord]:
    try:
        return [ProcessRecord.from_json(d) for d in json.loads(path.read_text())]
    except (OSError, ValueError, KeyError):
        return []

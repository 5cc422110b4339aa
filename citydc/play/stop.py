"""Stop ansible-playbook and every process it started, and return only once they are gone.

ansible-runner cancels a run (Ctrl-C, ``--timeout``) with SIGKILL to the process group of its pexpect child,
ansible-playbook. That group is not the whole run: each of Ansible's WorkerProcesses calls ``setsid()``
(ansible/executor/process/worker.py), so a worker and the task it runs (a module, the command it started)
live in their own session. Killed that way, ansible-playbook dies, and the worker and its task go on under
init: the change in progress on the hosts completes with nothing watching, after the operator was told
the run was stopped.

So ``stop_tree`` first asks ansible-playbook to stop the way Ansible expects, SIGTERM: its task queue
manager forwards the signal to every worker, which kills its own process group (the task included) and
exits. The processes of the run are found from /proc (a child's PPid) before the signal, and again while
waiting, so a worker re-parented to init once ansible-playbook is gone is still known. Whatever is left
after ``GRACE_SECONDS`` is killed (SIGKILL, each process and its group), then waited for. A process is told
apart from a later one with the same PID by its start time; a zombie counts as gone (it runs nothing; its
parent or init reaps it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GRACE_SECONDS", "KILL_WAIT_SECONDS", "stop_tree"]

GRACE_SECONDS = 5.0  # for Ansible's own SIGTERM handling: workers told, their process groups killed
KILL_WAIT_SECONDS = 5.0  # after SIGKILL: only a process stuck in the kernel takes longer
_POLL = 0.05


@dataclass(frozen=True)
class _Proc:
    pid: int
    pgid: int
    started: int  # clock ticks after boot (/proc/PID/stat field 22): a reused PID has another


def _read(pid: int) -> tuple[_Proc, int, str] | None:
    """Given a PID, return (the process, its parent's PID, its state letter), or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command (field 2) may hold spaces and parentheses
    return _Proc(pid, int(fields[2]), int(fields[19])), int(fields[1]), fields[0]


def _alive(proc: _Proc) -> bool:
    now = _read(proc.pid)
    return now is not None and now[0].started == proc.started and now[2] not in ("Z", "X")


def _children(parents: Iterable[_Proc]) -> list[_Proc]:
    """Given processes, return every living process below them (children, their children, ...)."""
    by_parent: dict[int, list[_Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _read(int(entry.name))) is not None and info[2] not in ("Z", "X"):
            by_parent.setdefault(info[1], []).append(info[0])
    found: list[_Proc] = []
    todo = [p.pid for p in parents]
    seen = set(todo)
    while todo:
        for child in by_parent.get(todo.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                found.append(child)
                todo.append(child.pid)
    return found


def _wait_gone(known: dict[int, _Proc], seconds: float) -> None:
    """Wait until every known process is gone, adding the ones they start meanwhile; at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        living = [p for p in known.values() if _alive(p)]
        if not living:
            return
        for child in _children(living):
            known.setdefault(child.pid, child)
        time.sleep(_POLL)


def _kill(proc: _Proc) -> None:
    if not _alive(proc):
        return
    with contextlib.suppress(OSError):
        if proc.pgid == proc.pid:  # a group leader (a worker after setsid): its whole group
            os.killpg(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGKILL)


def stop_tree(pid: int, grace: float = GRACE_SECONDS, kill_wait: float = KILL_WAIT_SECONDS) -> list[int]:
    """Given ansible-playbook's PID, stop it and every process below it; return the PIDs still alive after all
    (empty unless a process is stuck in the kernel)."""
    first = _read(pid)
    if first is None:
        return []
    root = first[0]
    known = {p.pid: p for p in [root, *_children([root])]}
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    _wait_gone(known, grace)
    for _ in range(3):  # a process seen only now (started just before a kill) gets a round of its own
        living = [p for p in known.values() if _alive(p)]
        if not living:
            break
        for proc in [*living, *_children(living)]:
            known.setdefault(proc.pid, proc)
            _kill(proc)
        _wait_gone(known, kill_wait)
    return sorted(p.pid for p in known.values() if _alive(p))

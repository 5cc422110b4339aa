"""Run locks: an exclusive ``flock`` taken at once or refused, naming who holds it.

A command that must not run twice at once (one backup job's run, runs that change hosts on one control node)
takes one for its whole run. The holder's description is written into the lock file so that the refused
command can name it; the kernel drops the lock when its holder's descriptor closes or the process dies, so a
killed command never leaves it behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["Held", "take"]


class Held(Exception):
    """The lock is held by another process; ``holder`` is what it wrote into the file ("" if nothing)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def take(path: Path, holder: str) -> int:
    """Given the lock file and a description of the taker, take the lock and return its descriptor (held until it
    is closed). Raise Held with the holder's description if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        raise Held(held) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder}\n".encode(), 0)
    return fd

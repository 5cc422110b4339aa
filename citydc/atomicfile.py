"""Durable atomic file replacement: the one way citydc writes a file a crash must not tear.

A reader (Prometheus reading file_sd, a restarted exporter reading its counter state, the
shipper reading the chain head) sees either the old file or the new one, and once ``write``
returns the new one survives a power cut: temporary file in the same directory, fsync, rename,
fsync of the directory (the rename is durable only once the directory entry is on disk).

``sync_dir=False`` leaves that last fsync to the caller, for a writer that makes the directory
durable once for several changes (or whose reader recovers from the previous version, which a
crash before the next directory fsync may bring back: whichever name survives, its content is
complete, since the file is fsynced before the rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "stage", "write"]


def write(path: str | Path, data: bytes | str, mode: int = 0o600, *, sync_dir: bool = True) -> Path:
    """Given a path, bytes (or text, written as UTF-8) and a file mode, replace the file atomically
    and durably; create missing parent directories (0700). Return the path. Raise OSError.

    ``sync_dir=False``: the directory is not fsynced (see the module docstring; ``sync_dir(path.parent)``).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = stage(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
    return path


def stage(path: str | Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Given a path (its directory must exist), the data and a mode, write the data to a new temporary file
    beside it, fsynced, and return that file: the caller checks it, then renames it over ``path`` (or
    removes it). Raise OSError (no temporary file is left)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def fsync_dir(directory: str | Path) -> None:
    """Given a directory, fsync it: renames, creations and deletions in it so far become durable. Raise OSError."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

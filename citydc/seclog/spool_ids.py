"""The spool's index of recently spooled event ids (``<spool_dir>/ids.db``), kept open per process.

Opening the SQLite file for every ``emit()`` cost more than the rest of a small emit: the
statements that set it up, and on close a checkpoint of its WAL with two fsyncs. So each process
keeps one connection per spool, used only while the spool's writer lock is held (threads and
processes take turns there). A connection is never used across ``fork()`` (SQLite forbids it):
a child opens its own. A spool directory deleted and made again is noticed by the file's inode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

__all__ = ["MAX_OPEN", "connection"]

MAX_OPEN = 8  # spools a process emits into at once is small; beyond this, the oldest is closed

_lock = threading.Lock()
_open: dict[Path, tuple[sqlite3.Connection, tuple[int, int]]] = {}
_owner = os.getpid()
_inherited: list[sqlite3.Connection] = []  # a forked child's copies: kept, never used or closed


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # the spool's fsync and the head are the durable record
    # Ids are hashes, so each emit() of 1,000 events dirties pages all over the index, and the default
    # checkpoint (every 1,000 WAL pages) ran at almost every emit: 39 fdatasyncs per 50,000 events, 15 so.
    conn.execute("PRAGMA wal_autocheckpoint=4000")
    conn.execute("CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY, day INTEGER NOT NULL)")
    conn.execute("CREATE INDEX IF NOT EXISTS ids_day ON ids(day)")
    return conn


def connection(spool_dir: Path) -> sqlite3.Connection:
    """Given a spool directory, return this process's open connection to its ``ids.db``.

    Use it only while holding the spool's writer lock.
    """
    global _owner
    path = Path(spool_dir) / "ids.db"
    with _lock:
        if _owner != os.getpid():  # forked: the parent's connections belong to the parent
            _inherited.extend(conn for conn, _ in _open.values())
            _open.clear()
            _owner = os.getpid()
        cached = _open.pop(path, None)
        if cached is not None and cached[1] == _identity(path):
            _open[path] = cached  # most recently used last
            return cached[0]
        if cached is not None:
            cached[0].close()  # the directory was replaced: that file is gone
        while len(_open) >= MAX_OPEN:
            _open.pop(next(iter(_open)))[0].close()
        conn = _connect(path)
        _open[path] = (conn, _identity(path))
        return conn

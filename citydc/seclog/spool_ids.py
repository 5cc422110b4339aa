"""The spool's index of recently spooled event ids (``<spool_dir>/ids.db``), kept open per process.

Opening the SQLite file for every ``emit()`` cost more than the rest of a small emit: the
statements that set it up, and on close a checkpoint of its WAL with two fsyncs. So each process
keeps one connection per spool, used only while the spool's writer lock is held (threads and
processes take turns there). A connection is never used across ``fork()`` (SQLite forbids it):
a child opens its own. A spool directory deleted and made again is noticed by the file's inode.

The ids live in the table ``seen``: the 16 bytes of each id (not its 32 hex characters) as the key of a
``WITHOUT ROWID`` table, so one emit() touches one b-tree instead of three (the rowid table, the index
of the id and the index of the day in the older table ``ids``). The retention purge scans it once a day
(``purged_day`` in ``meta``) instead of keeping an index of days. An ``ids.db`` of the older layout is
migrated on first use (``migrate``).

An ``ids.db`` that is not a database, or that SQLite finds corrupted when it is opened, raises
IndexDamaged; the spool then sets it aside (``set_aside``) and starts a new one (spool.py, ``_ids``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from citydc import files

__all__ = ["MAX_OPEN", "IndexDamaged", "claim", "connection", "forget_before", "key", "migrate", "remember",
           "remember_in", "set_aside", "unseen"]

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


class IndexDamaged(RuntimeError):
    """``ids.db`` is not an SQLite database, or SQLite found it corrupted, when it was opened."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Given an SQLite error, return whether it says the file is damaged (not "locked", "read-only" and the like)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT")


def _create(path: Path) -> None:
    """Given the ``ids.db`` path, create the file if it is missing: 0600, or 0640 while files.group is in effect
    (citydc.files.private_modes). SQLite would create it 0644 less the umask (0644 under a library caller's 022);
    its -wal and -shm files take the database's mode."""
    # O_EXCL: never a descriptor of an existing file, whose closing would drop the POSIX locks this
    # process's other connections hold on it.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, files.private_modes()[0]))


def _connect(path: Path) -> sqlite3.Connection:
    _create(path)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # the spool's fsync and the head are the durable record
        # Ids are hashes, so each emit() of 1,000 events dirties pages all over the index, and the default
        # checkpoint (every 1,000 WAL pages) ran at almost every emit: 39 fdatasyncs per 50,000 events, 15 so.
        conn.execute("PRAGMA wal_autocheckpoint=4000")
        conn.execute("CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY, day INTEGER NOT NULL) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _damaged(exc):
            raise IndexDamaged(path, str(exc)) from None
        raise
    return conn


def set_aside(spool_dir: Path, stamp: str) -> Path:
    """Given a spool directory and a time stamp, rename its ``ids.db`` (and the WAL files with it) to
    ``ids.db.damaged-<stamp>-<pid>``, forgetting this process's connection to it; return the new name.

    Kept, not deleted: what damaged it may be worth a look. Call it holding the spool's writer lock.
    """
    path = Path(spool_dir) / "ids.db"
    aside = path.with_name(f"ids.db.damaged-{stamp}-{os.getpid()}")
    with _lock:
        cached = _open.pop(path, None)
        if cached is not None:
            cached[0].close()
    for suffix in ("-wal", "-shm", ""):  # the database last: a WAL left behind must not meet a new database
        try:
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        except FileNotFoundError:
            continue
    return aside


def key(event_id: str) -> bytes:
    """Given an event id (32 hex digits), return its key in ``seen``; an id of another shape keeps its UTF-8 bytes
    (never the 16 bytes of a valid id, which are not UTF-8 of 32 hex digits, so keys never collide)."""
    try:
        raw = bytes.fromhex(event_id)
    except ValueError:
        return event_id.encode()
    return raw if len(raw) == 16 and event_id == raw.hex() else event_id.encode()


def migrate(conn: sqlite3.Connection) -> int:
    """Given a connection to an ``ids.db``, move the ids of the older table ``ids`` (id text, day) into ``seen``
    and drop it, in one transaction; return how many ids were moved (0 when there is no older table)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ids'").fetchone() is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ids'").fetchone() is None:
            conn.execute("COMMIT")  # another process migrated it meanwhile
            return 0
        rows = conn.execute("SELECT id, day FROM ids").fetchall()
        conn.executemany("INSERT OR IGNORE INTO seen (id, day) VALUES (?, ?)", ((key(i), d) for i, d in rows))
        conn.execute("DROP TABLE ids")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def unseen(conn: sqlite3.Connection, event_ids: list[str], cutoff: int) -> set[str]:
    """Given a connection, event ids and the first day still remembered, return those of the ids not in ``seen``
    since that day (an id older than that counts as forgotten even before the daily purge removed it)."""
    keys = {key(i): i for i in event_ids}
    found: set[bytes] = set()
    wanted = list(keys)
    for i in range(0, len(wanted), 900):
        chunk = wanted[i:i + 900]
        found.update(row[0] for row in conn.execute(
            f"SELECT id FROM seen WHERE id IN ({','.join('?' * len(chunk))}) AND day >= ?",  # noqa: S608
            [*chunk, cutoff]))
    return {ident for k, ident in keys.items() if k not in found}


# Rows per claiming statement: two parameters each, under SQLite's default limit of 32,766 variables.
CLAIM_ROWS = 500


def claim(conn: sqlite3.Connection, event_ids: Sequence[str], day: int, retention_days: int) -> set[str]:
    """Given a connection inside a transaction the caller opened, event ids, today's day number and the retention,
    record as seen today the ids not remembered since ``day - retention_days``; return those ids.

    One pass over the b-tree per id (an upsert that reports what it inserted or renewed) instead of a
    lookup and then an insert. An id that occurs twice is claimed by its first copy only. The caller
    commits once the events are durable, or rolls back (then nothing is remembered). Forgets the ids
    older than the retention first (once a day), as ``remember`` does.
    """
    cutoff = day - retention_days
    forget_before(conn, cutoff, day)
    keys = {key(i): i for i in event_ids}  # first copy wins; the rest are duplicates of it
    wanted = list(keys)
    claimed: set[str] = set()
    for i in range(0, len(wanted), CLAIM_ROWS):
        chunk = wanted[i:i + CLAIM_ROWS]
        params: list = []
        for k in chunk:
            params += (k, day)
        params.append(cutoff)
        sql = ("INSERT INTO seen (id, day) VALUES " + ",".join(["(?,?)"] * len(chunk))  # noqa: S608
               + " ON CONFLICT(id) DO UPDATE SET day = excluded.day WHERE seen.day < ? RETURNING id")
        claimed.update(keys[row[0]] for row in conn.execute(sql, params))
    return claimed


def remember(conn: sqlite3.Connection, event_ids: Iterable[str], day: int, retention_days: int) -> None:
    """Given a connection, event ids, today's day number and the retention, record the ids in one transaction,
    and forget those older than the retention (once a day: a scan of the table)."""
    conn.execute("BEGIN")
    try:
        forget_before(conn, day - retention_days, day)  # first: an expired id emitted again is remembered anew
        conn.executemany("INSERT OR IGNORE INTO seen (id, day) VALUES (?, ?)", ((key(i), day) for i in event_ids))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def remember_in(conn: sqlite3.Connection, event_ids: Iterable[str], day: int) -> None:
    """Given a connection inside a transaction, event ids and today's day number, record the ids as seen today."""
    conn.executemany("INSERT OR REPLACE INTO seen (id, day) VALUES (?, ?)", ((key(i), day) for i in event_ids))


def forget_before(conn: sqlite3.Connection, cutoff: int, today: int) -> None:
    """Given a connection inside a transaction, delete the ids of days before ``cutoff`` unless that was done
    already today."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'purged_day'").fetchone()
    if row is not None and row[0] >= today:
        return
    conn.execute("DELETE FROM seen WHERE day < ?", (cutoff,))
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('purged_day', ?)", (today,))


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

"""The default security-log store: one SQLite file, WAL mode, full text on ``message``.

The fields auditors filter by are indexed columns next to the full JSON document; ``event.id``
is the primary key and batches go in with ``INSERT OR IGNORE``, so a redelivered event is stored
once. Semantics shared with the Elasticsearch store (same Query, same results):

- ``since`` is inclusive, ``until`` exclusive, compared in milliseconds (ES ``date`` precision);
- order is (@timestamp, event.id), both descending when ``newest_first``;
- filters are exact matches; a field holding a list matches when any element equals the value;
- ``text``: every word must occur in ``message`` (case-insensitive word match);
- stats count a missing value as ``""``; order is count descending, then values ascending.

An event re-emitted after the spool forgot its id (or sent by a second spool) arrives with an
event.id the store holds at another chain position: the ``events`` row stays as it is (searches
show the event once), and the new chain position is kept in ``reemitted`` so that ``chain()``
walks every link (see ``_keep_reemitted``; docs/security-log.md, "Re-emitted events").
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import orjson

from citydc import files
from citydc.seclog.chain import AlreadyStored, Sealed, Unreadable, seal
from citydc.seclog.event import parse_timestamp
from citydc.seclog.pacing import let_others_run
from citydc.seclog.spool import SpooledEvent, gc_paused
from citydc.seclog.store import FILTER_FIELDS, DeliveryError, Query, storable_timestamp

__all__ = ["PreparedRows", "SqliteStore", "StoreUnusable"]

# ECS field -> column. The filter fields of store.FILTER_FIELDS, each indexed.
COLUMNS: dict[str, str] = {
    "user.name": "user_name",
    "event.action": "action",
    "event.outcome": "outcome",
    "event.dataset": "dataset",
    "labels.site": "site",
    "source.ip": "source_ip",
    "event.kind": "kind",
    "host.name": "host_name",
}
assert set(COLUMNS) == set(FILTER_FIELDS.values())

_FIELD = re.compile(r"^[A-Za-z0-9_@]+(\.[A-Za-z0-9_@]+)*$")
# A word of free text as FTS5's unicode61 tokenizer makes one: letters and digits (``_`` separates, as in
# store_es_query._TOKEN), so a_b is the two words a and b, each found anywhere (not the phrase "a b").
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    user_name TEXT, action TEXT, outcome TEXT, dataset TEXT, site TEXT, source_ip TEXT, kind TEXT, host_name TEXT,
    writer TEXT, seq INTEGER,
    message TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts_ms, id);
CREATE INDEX IF NOT EXISTS events_chain ON events(writer, seq);
CREATE INDEX IF NOT EXISTS events_user ON events(user_name, ts_ms);
CREATE INDEX IF NOT EXISTS events_action ON events(action, ts_ms);
CREATE INDEX IF NOT EXISTS events_outcome ON events(outcome, ts_ms);
CREATE INDEX IF NOT EXISTS events_dataset ON events(dataset, ts_ms);
CREATE INDEX IF NOT EXISTS events_site ON events(site, ts_ms);
CREATE INDEX IF NOT EXISTS events_source_ip ON events(source_ip, ts_ms);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, ts_ms);
CREATE INDEX IF NOT EXISTS events_host ON events(host_name, ts_ms);
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(message, content='events', content_rowid='rowid');
-- New rows are indexed in bulk by put() (a per-row trigger costs 25 times more); deletions and
-- edits, including direct ones by hand, keep the full-text index in step through these triggers.
CREATE TRIGGER IF NOT EXISTS events_ad AFTER DELETE ON events BEGIN
    INSERT INTO events_fts(events_fts, rowid, message) VALUES ('delete', old.rowid, old.message);
END;
CREATE TRIGGER IF NOT EXISTS events_au AFTER UPDATE OF message ON events BEGIN
    INSERT INTO events_fts(events_fts, rowid, message) VALUES ('delete', old.rowid, old.message);
    INSERT INTO events_fts(rowid, message) VALUES (new.rowid, new.message);
END;
"""


# Chain positions whose event.id the store already held at another position (a re-emission): kept
# for the chain walk only, keyed by their hash (unique per chain position), so a redelivery of the
# same line is stored once.
REEMITTED_SCHEMA = """
CREATE TABLE IF NOT EXISTS reemitted (
    hash TEXT PRIMARY KEY,
    id TEXT NOT NULL, ts_ms INTEGER NOT NULL, writer TEXT, seq INTEGER, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reemitted_chain ON reemitted(writer, seq);
"""


def _get(doc: dict, path: str) -> object:
    value: object = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _sub(doc: dict, key: str) -> dict:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _row(doc: dict) -> tuple:
    """Given a chained event, return its row for ``events`` (columns in table order; see COLUMNS). Raise
    EventInvalid (store.storable_timestamp) or KeyError for an event the table cannot hold."""
    event, chain = doc["event"], _sub(_sub(doc, "citydc"), "chain")
    raw = getattr(doc, "raw", None)  # read from the spool: keep its line instead of encoding again
    if raw is None:
        raw = _line_of(doc, chain)
    # Spelled out rather than walking COLUMNS' paths: this runs for every stored event.
    # A line the shipper read was checked as it was parsed (spool._parse_line): not twice per event.
    when = parse_timestamp(doc["@timestamp"]) if type(doc) is SpooledEvent else storable_timestamp(doc)
    return (event["id"], _ms(when), _sub(doc, "user").get("name"),
            event.get("action"), event.get("outcome"), event.get("dataset"), _sub(doc, "labels").get("site"),
            _sub(doc, "source").get("ip"), event.get("kind"), _sub(doc, "host").get("name"),
            chain.get("writer"), chain.get("seq"), doc["message"], raw)


def _line_of(doc: dict, chain: dict) -> str:
    """Given a chained event handed to ``put`` as a dict (not read from the spool) and its chain fields, return
    its spool line: the exact bytes ``chain.seal`` makes, which verify compares the stored document with. An
    event whose line cannot be rebuilt (no chain fields, a hash that is not its own) is kept as it is encoded."""
    try:
        line = seal(doc, chain["writer"], chain["seq"], chain["prev"], chain.get("incarnation"))[1]
        if orjson.loads(line)["event"]["hash"] == doc["event"]["hash"]:
            return line.decode("utf-8")
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    try:
        return orjson.dumps(doc).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _row_of(i: int, doc: dict) -> tuple:
    """Given the index of an event in its batch and the event, return its row. Raise DeliveryError naming it."""
    try:
        return _row(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise DeliveryError(f"event {i} of the batch cannot be stored: {type(exc).__name__} {exc}",
                            "bad_event") from None


class StoreUnusable(DeliveryError):
    """The database file (or its directory) cannot be created, read or written by this user; the message
    names the path, the reason and the config field (``field``), a setup problem rather than a failed delivery."""

    def __init__(self, message: str, field: str):
        super().__init__(message, "sqlite_error")
        self.field = field


class PreparedRows(list):
    """A batch's rows for ``events``, built by ``SqliteStore.prepare`` for a later ``put`` of that store.
    It holds no event dicts: the shipper drops them once the rows are built."""

    __slots__ = ("store",)


# How a batch is written, not whether it is durable (that is synchronous=FULL). Measured with strace on
# 50,000 events in batches of 5,000 (bench/seclog.py): a batch dirties more pages (ten indexes and the
# full-text index) than SQLite's default 2 MiB cache holds, so pages were spilled to the WAL mid-batch and
# written again: 180,000 page writes; with a 16 MiB cache 73,000. A checkpoint every 10,000 WAL pages
# instead of 1,000 copies each hot page once per several batches: 59 fdatasyncs became 38.
WRITE_PRAGMAS = ("PRAGMA cache_size=-16384", "PRAGMA wal_autocheckpoint=10000")

_WIDTH = len(COLUMNS) + 6  # id, ts_ms, the columns, writer, seq, message, doc
ROWS_PER_INSERT = 1000


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    """Given a row count, return the INSERT of that many rows (a few sizes per run: sqlite3 caches them)."""
    values = "(" + ",".join("?" * _WIDTH) + ")"
    return "INSERT OR IGNORE INTO events VALUES " + ",".join([values] * rows)  # noqa: S608


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000) if when.tzinfo else _naive(when)


def _ms_up(when: datetime) -> int:
    """Given an aware datetime, return it in epoch milliseconds rounded up: an exclusive end inside a millisecond
    (00:00:00.0005) keeps the event at the start of that millisecond, which lies before it."""
    ms = _ms(when)
    return ms + 1 if when.microsecond % 1000 else ms


def _naive(when: datetime) -> int:
    raise ValueError(f"expected a timezone-aware datetime, got {when.isoformat()}")


# What a counted value that is an object becomes in stats (a control character: no stored string is this).
_OBJECT_MARK = "\x00object"


def _json_path(field: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"not an ECS field name: {field!r}")
    return "$." + ".".join(f'"{part}"' for part in field.split("."))


def fts_query(text: str) -> str | None:
    """Given free text, return an FTS5 query requiring every word (quoted, so no operators), or None."""
    words = _WORD.findall(text)
    return " ".join(f'"{w}"' for w in words) if words else None


def _checked(row: tuple) -> dict:
    """Given a chain() row, return its document; one whose columns disagree with it comes back altered.

    Searches read the columns and verification reads the document, so an edit of either must
    break the hash: a mismatch is folded into the document, and then its hash no longer matches.
    """
    event_id, writer, seq, ts_ms, *values, message, raw = row
    try:
        doc = _document(raw)
        derived = (doc["event"]["id"], _ms(parse_timestamp(doc["@timestamp"])),
                   *(_get(doc, f) for f in COLUMNS), doc["message"])
        chain = doc["citydc"]["chain"]
    except (ValueError, KeyError, TypeError, AttributeError):
        # No longer a document at all: keep its place in the chain so it is reported as changed.
        return _unreadable(event_id, writer, seq)
    stored = (event_id, ts_ms, *values, message)
    if derived != stored or (chain.get("writer"), chain.get("seq")) != (writer, seq):
        doc["store_columns_differ"] = [f for f, a, b in zip(("event.id", "@timestamp", *COLUMNS, "message"),
                                                           derived, stored, strict=True) if a != b] or ["chain"]
    else:
        doc = _line_checked(doc, chain, raw)
    return doc


class _DuplicateKey(ValueError):
    """A stored document with a key given twice in one object."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise _DuplicateKey("a key given twice")
    return doc


def _document(raw: str) -> dict:
    """Given a stored document's text, return it parsed; raise ValueError if it is not one JSON object."""
    doc = json.loads(raw)  # not orjson: it reads an integer over 64 bits as a float, which no longer hashes
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


# Why a stored document is reported as changed although its values may hash as recorded (chain._check_one's reason).
NOT_THE_LINE = "store_document_problem"
NOT_THE_LINE_REASON = ("the stored document is not byte for byte the line that was hashed (other escapes, spacing or "
                       "key order): the store holds text the chain did not cover")
DUPLICATE_KEY = ("the stored document gives a key twice in one object: searches and stats read one value, the hash "
                 "covers another")


def _line_checked(doc: dict, chain: dict, raw: str) -> dict:
    """Given a parsed stored document, its chain fields and its text, return the document: as ``Sealed`` when
    the text is byte for byte the line the chain hashed (``chain.seal``: verify then uses the hash this gave);
    marked with ``NOT_THE_LINE`` when it is
    other text holding values that hash as recorded (escapes, spacing, key order, a key given twice: Python
    keeps the last value, SQLite's json_extract the first, so what verify hashes and what stats and filters read
    would differ); as it is when its hash is not its own (the hash check reports it)."""
    try:
        position = (chain["prev"], chain["writer"], chain["seq"], chain.get("incarnation"))
        sealed_doc, line = seal(doc, position[1], position[2], position[0], position[3])
    except (KeyError, TypeError, ValueError, AttributeError):
        return doc  # not shaped as a chained event: the hash check reports it
    digest = sealed_doc["event"]["hash"]
    try:
        same = line == raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the text
        same = False
    if same:
        out = Sealed(doc)
        out.sealed = (*position, digest)
        return out
    hsh = doc.get("event", {}).get("hash") if isinstance(doc.get("event"), dict) else None
    if isinstance(hsh, str) and digest == hsh:
        try:
            json.loads(raw, object_pairs_hook=_no_duplicates)
            doc[NOT_THE_LINE] = NOT_THE_LINE_REASON
        except _DuplicateKey:
            doc[NOT_THE_LINE] = DUPLICATE_KEY
    return doc


def _unreadable(event_id: str, writer: str | None, seq: int | None) -> dict:
    """Given a row whose document cannot be read, return a stand-in at its chain place that verify reports as
    changed."""
    return Unreadable({"event": {"id": event_id, "hash": ""},
                       "citydc": {"chain": {"writer": writer, "seq": seq, "prev": ""}}})


def _reemitted(row: list) -> dict:
    """Given a ``reemitted`` row as chain() selects it, return its document as ``AlreadyStored``; one whose
    columns disagree with it comes back altered (as in ``_checked``), so its hash no longer matches."""
    event_id, writer, seq, raw = row[0], row[1], row[2], row[-1]
    try:
        doc = _document(raw)
        chain = doc["citydc"]["chain"]
        if (doc["event"]["id"], chain.get("writer"), chain.get("seq")) != (event_id, writer, seq):
            doc["store_columns_differ"] = ["chain"]
        else:
            checked = _line_checked(doc, chain, raw)
            if isinstance(checked, Sealed):
                out = AlreadyStored(checked)
                out.sealed = checked.sealed
                return out
        return AlreadyStored(doc)
    except (ValueError, KeyError, TypeError, AttributeError):
        return _unreadable(event_id, writer, seq)


class SqliteStore:
    """The embedded store. Implements citydc.seclog.store.Store."""

    def __init__(self, path: str | Path, *, field: str = "security_log.sink.path", create: bool = True):
        """Given the database file (and the config field it comes from, for messages), open it: read-only
        if it exists, so an auditor with read access only can search and verify; read-write (created,
        with its tables) if it does not exist yet or lacks tables. ``put`` opens it read-write when it
        first writes. Raise DeliveryError naming the path and the field if it cannot be opened.

        With ``create`` False (the reading commands: search, stats, saved, verify) nothing is ever created or
        altered: a missing file, or one that is no citydc store (no ``events`` table), raises StoreUnusable
        naming the path and the field, and a store from before the ``reemitted`` table is read as if that
        table were empty. A file holding other tables but no ``events`` is refused either way.
        """
        self.path = Path(path)
        self.field = field
        self.writable = False
        self.create = create
        self._connections: list[sqlite3.Connection] = []
        self._unchanged: tuple[int, int, int] | None = None  # the file as read with immutable=1 (see _open_reader)
        exists = self._exists()
        if not exists and not create:
            raise StoreUnusable(f"no security-log store at {self.path} (nothing was shipped there yet, or the path "
                                f"is wrong) ({self.field})", self.field)
        self.conn = self._open_reader() if exists else None
        tables = self._tables() if self.conn is not None else set()
        if tables and "events" not in tables:  # somebody else's database: never add our tables to it
            self._close_connections()
            raise StoreUnusable(f"not a citydc security-log store: {self.path} (it has no events table) "
                                f"({self.field})", self.field)
        if not create and "events" not in tables:
            self._close_connections()
            raise StoreUnusable(f"not a citydc security-log store: {self.path} (an empty database) ({self.field})",
                                self.field)
        self._has_reemitted = "reemitted" in tables
        if create and not {"events", "events_fts", "reemitted"} <= tables:
            self._open_writer()

    @classmethod
    def from_config(cls, sink, base_dir: Path, *, create: bool = True) -> SqliteStore:
        """Given a SqliteSink and the config file's directory (and whether to create the store if missing: not for
        the reading commands), return the store."""
        path = sink.path if sink.path.is_absolute() else base_dir / sink.path
        return cls(path, create=create)

    # -- opening: read-only for readers, read-write on the first write ----------------------------------

    def _unusable(self, what: str, exc: OSError | sqlite3.Error) -> StoreUnusable:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return StoreUnusable(f"{what}: {reason} ({self.field})", self.field)

    def _exists(self) -> bool:
        try:
            if self.path.is_dir():  # SQLite would say only "disk I/O error"
                raise self._unusable(f"cannot use {self.path}", IsADirectoryError(errno.EISDIR,
                                                                                  os.strerror(errno.EISDIR)))
            return self.path.exists()
        except OSError as exc:  # a directory on the way that this user may not enter
            raise self._unusable(f"cannot read {self.path}", exc) from None

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(target, uri=uri, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:  # anything else SQLite cannot open: one error line naming the path
            raise self._unusable(f"cannot open {self.path}", exc) from None
        self._connections.append(conn)
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        """Open the existing database read-only (SQLite ``mode=ro``).

        A reader of a WAL database needs its -shm and -wal files. While a writer has it open (the
        ``log ship --follow`` service) they exist and, created with the database's mode, are readable
        by whoever may read the database. When no writer has it open they are gone, and a reader that
        may not create files in the directory (an auditor: 0750) cannot make them; then no WAL holds
        anything newer than the file, which is read as it stands (``immutable=1``) and checked after
        each read to have stayed unchanged (``_check_unchanged``).
        """
        # The OS's own reason (permission) rather than SQLite's. Not by opening and closing a descriptor:
        # that would drop the POSIX locks of any other connection of this process to the file.
        if not os.access(self.path, os.R_OK):
            raise self._unusable(f"cannot read {self.path}", PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
        uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
        conn = self._connect(uri, uri=True)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                # Another process holds the file locked (for 30 s and more): a failed read, not a wrong path or
                # permission, so exit 1 with "try again", not exit 2 naming security_log.sink.path.
                raise DeliveryError(f"cannot read {self.path}: another process holds it locked ({exc}); run the "
                                    "command again when it is done", "sqlite_busy") from None
            wal = Path(f"{self.path}-wal")
            # SQLite's error when it may not create the -shm file (3.40: SQLITE_READONLY; CANTOPEN in others)
            cannot_make_shm = (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_READONLY",
                                                                                       "SQLITE_CANTOPEN"))
            if not cannot_make_shm or os.path.lexists(wal):
                raise self._unusable(f"cannot read {self.path}", exc) from None
        stamp = self._stamp()
        conn = self._connect(uri + "&immutable=1", uri=True)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._unusable(f"cannot read {self.path}", exc) from None
        self._unchanged = stamp
        return conn

    def _tables(self) -> set[str]:
        try:
            return {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:  # not a database at all, for one
            self._close_connections()
            raise self._unusable(f"cannot read {self.path}", exc) from None

    def _open_writer(self) -> None:
        """Open the database read-write, creating it and its tables if needed; reads use it from then on.

        Created 0600 whatever the umask (user names, addresses, audit outcomes), or 0640 in a 0750
        directory while files.group is in effect (citydc.files.private_modes); SQLite gives its -wal
        and -shm files the database file's mode.
        """
        # The reader goes first: closing any descriptor of the file (the os.open below) drops every POSIX
        # lock this process holds on it, its connections' included; another process could then take
        # itself for the database's only user and rebuild the WAL index under our writes ("database disk
        # image is malformed": tests/lab/test_seclog_sqlite.py's SIGKILL test showed it).
        self._close_connections()
        file_mode, dir_mode = files.private_modes()
        try:
            self.path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(f"cannot create {exc.filename or self.path.parent}", exc) from None
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode))
        except OSError as exc:
            raise self._unusable(f"cannot open {self.path} for writing", exc) from None
        conn = self._connect(str(self.path), uri=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for pragma in WRITE_PRAGMAS:
                conn.execute(pragma)
            # FULL: a batch is on disk before the shipper records it as acknowledged.
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            conn.executescript(REEMITTED_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(f"cannot write {self.path}", exc) from None
        self.conn, self.writable, self._unchanged, self._has_reemitted = conn, True, None, True

    def _stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _check_unchanged(self) -> None:
        """After a read of the file as it stood (immutable): raise DeliveryError if a writer changed it
        meanwhile (a checkpoint), since that read may have mixed old and new pages."""
        if self._unchanged is None:
            return
        try:
            same = self._stamp() == self._unchanged
        except OSError:
            same = False
        if not same:
            raise DeliveryError(f"{self.path} was written while it was read (a shipper finished meanwhile); "
                                "run the command again", "sqlite_busy")

    # -- the insert path (shipper → store): prepare in the read-ahead thread, put, commit ---------------

    def prepare(self, events: Sequence[dict]) -> PreparedRows:
        """Given a batch of chained events, return their rows, for a later ``put`` of this store.

        The shipper calls this in its read-ahead thread (with the garbage collector paused) while
        the previous batch is being inserted: SQLite releases the GIL while it inserts, so building
        the rows costs the insert no time. Raise DeliveryError naming the event if one lacks a field.
        """
        rows = PreparedRows()
        rows.store = self
        for i, doc in enumerate(events):
            let_others_run(i)  # the thread inside put() needs the GIL between its statements
            rows.append(_row_of(i, doc))
        return rows

    def put(self, events: Sequence[dict]) -> int:
        """Given a batch of chained events (or this store's PreparedRows of them), store the new ones in
        one transaction; return how many were new.

        Raise DeliveryError if an event lacks a field the table needs, or if the database refuses the
        batch (then none of it is stored).
        """
        if isinstance(events, PreparedRows):
            if events.store is not self:
                raise ValueError("PreparedRows go to the store that prepared them")
            rows: list[tuple] = events
        else:
            # Paused: tens of thousands of new tuples would set off collections that walk every live
            # event dict of the batch (bench/seclog.py measured that at about 10 µs per event).
            with gc_paused():
                rows = [_row_of(i, doc) for i, doc in enumerate(events)]
        if not self.writable:
            if not self.create:
                raise StoreUnusable(f"{self.path} was opened for reading only ({self.field})", self.field)
            self._open_writer()  # opened read-only: only a command that stores events needs write access
        per = max(1, min(ROWS_PER_INSERT, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _WIDTH))
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                top = self.conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0]
                # Many rows per statement: one step for SQLite, and the GIL stays free while it inserts
                # them (executemany takes it back after every row, which stalls behind the shipper's
                # read-ahead thread). rowcount is the rows added (an ignored duplicate adds none).
                new = 0
                for i in range(0, len(rows), per):
                    part = rows[i:i + per]
                    new += self.conn.execute(_insert_sql(len(part)), [v for row in part for v in row]).rowcount
                if new < len(rows):  # some ids were stored already: redeliveries, or re-emissions
                    self._keep_reemitted(rows)
                # New rows got rowids above the previous maximum: index their messages in one statement.
                self.conn.execute("INSERT INTO events_fts(rowid, message) SELECT rowid, message FROM events "
                                  "WHERE rowid > ?", (top,))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            reason = "sqlite_busy" if "locked" in str(exc) or "busy" in str(exc) else "sqlite_error"
            raise DeliveryError(f"{self.path}: {exc}", reason) from None
        except sqlite3.DatabaseError as exc:
            raise DeliveryError(f"{self.path}: {exc}", "sqlite_error") from None
        return new

    def _keep_reemitted(self, rows: Sequence[tuple]) -> None:
        """Given a batch's rows (some of whose ids were already stored), keep in ``reemitted`` each row whose
        chain position differs from the stored event's: a redelivery has the stored hash, a re-emission not."""
        stored: dict[str, str] = {}
        ids = [row[0] for row in rows]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            sql = (f"SELECT id, json_extract(doc, '$.event.hash') FROM events "  # noqa: S608
                   f"WHERE id IN ({','.join('?' * len(chunk))})")
            stored.update(self.conn.execute(sql, chunk).fetchall())
        for row in rows:
            event_id, ts_ms, writer, seq, raw = row[0], row[1], row[-4], row[-3], row[-1]
            hsh = orjson.loads(raw)["event"]["hash"]
            if stored.get(event_id) != hsh:
                self.conn.execute("INSERT OR IGNORE INTO reemitted (hash, id, ts_ms, writer, seq, doc) "
                                  "VALUES (?, ?, ?, ?, ?, ?)", (hsh, event_id, ts_ms, writer, seq, raw))

    def _where(self, query: Query) -> tuple[str, list]:
        clauses, params = [], []
        if query.since is not None:
            clauses.append("ts_ms >= ?")
            params.append(_ms(query.since))
        if query.until is not None:
            clauses.append("ts_ms < ?")
            params.append(_ms_up(query.until))
        for field, value in sorted(query.filters.items()):
            values = tuple(value) if isinstance(value, tuple | list) else (value,)
            test = "= ?" if len(values) == 1 else f"IN ({','.join('?' * len(values))})"
            column = COLUMNS.get(field)
            if column is not None:
                clauses.append(f"{column} {test}")
                params.extend(values)
            else:
                # json_each yields a scalar as itself and a list element-wise: "any element equals".
                clauses.append(  # test holds only placeholders
                    f"EXISTS (SELECT 1 FROM json_each(events.doc, ?) WHERE json_each.value {test})")  # noqa: S608
                params.extend([_json_path(field), *values])
        if query.text:
            match = fts_query(query.text)
            if match is None:
                clauses.append("0")
            else:
                clauses.append("events.rowid IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)")
                params.append(match)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def search(self, query: Query) -> Iterator[dict]:
        """Given a Query, yield the matching events ordered by (@timestamp, event.id), streamed."""
        where, params = self._where(query)
        direction = "DESC" if query.newest_first else "ASC"
        sql = f"SELECT id, doc FROM events{where} ORDER BY ts_ms {direction}, id {direction}"  # noqa: S608
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        cursor = self.conn.cursor()
        try:
            try:
                for event_id, raw in cursor.execute(sql, params):
                    yield self._stored_document(event_id, raw)
            except sqlite3.DatabaseError as exc:  # json_each of a filter met a document that is no JSON
                raise self._read_error(exc) from None
            self._check_unchanged()
        finally:
            cursor.close()

    def _stored_document(self, event_id: str, raw: str) -> dict:
        """Given a row's id and document text, return the document. Raise DeliveryError naming the event when the
        text is no JSON object (altered outside citydc): an auditor gets one line saying so, not a traceback,
        and no answer silently short of that event."""
        try:
            doc = json.loads(raw)
        except (TypeError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            raise DeliveryError(f"{self.path}: the stored document of event {event_id} is not a JSON object: the "
                                "store was altered outside citydc; `citydc log verify` reports it", "sqlite_error")
        return doc

    def _read_error(self, exc: sqlite3.DatabaseError) -> DeliveryError:
        """Given SQLite's error while reading, return the DeliveryError that says what it means."""
        if "malformed JSON" in str(exc):  # json_each/json_extract/json_type of a filter or --by field
            return DeliveryError(f"{self.path}: a stored document is not JSON ({exc}): the store was altered "
                                 "outside citydc; `citydc log verify` names the event", "sqlite_error")
        return DeliveryError(f"{self.path}: {exc}", "sqlite_error")

    def stats(self, query: Query, by: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
        """Given a Query and ECS fields, return ((values...), count) per group, largest count first."""
        if not by:
            raise ValueError("stats needs at least one field to group by")
        where, params = self._where(query)
        exprs, joins, expr_params, join_params = [], [], [], []
        for i, field in enumerate(by):
            if field in COLUMNS:
                exprs.append(f"COALESCE(events.{COLUMNS[field]}, '')")
                continue
            # As Elasticsearch's terms aggregation: a list counts each element, a boolean is true/false, and
            # a missing or null value is "". An object cannot be counted: it is marked, and refused below.
            path = _json_path(field)
            joins.append(f" LEFT JOIN json_each(events.doc, ?) AS j{i}")
            join_params.append(path)
            exprs.append(f"CASE WHEN json_type(events.doc, ?) = 'object' THEN char(0) || 'object' "
                         f"WHEN j{i}.type IN ('true', 'false') THEN j{i}.type "
                         f"WHEN j{i}.type IN ('object', 'array') THEN char(0) || 'object' "
                         f"ELSE COALESCE(j{i}.value, '') END")
            expr_params.append(path)
        cols = ", ".join(f"{e} AS g{i}" for i, e in enumerate(exprs))
        groups = ", ".join(f"g{i}" for i in range(len(exprs)))
        sql = (f"SELECT {cols}, COUNT(*) AS n FROM events{''.join(joins)}{where} "  # noqa: S608
               f"GROUP BY {groups} ORDER BY n DESC, {groups}")
        try:
            rows = self.conn.execute(sql, expr_params + join_params + params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._read_error(exc) from None
        self._check_unchanged()
        for i, field in enumerate(by):
            if any(row[i] == _OBJECT_MARK for row in rows):
                raise ValueError(f"{field} holds an object (or a list of them) in the counted events, which cannot be "
                                 f"counted: name one of its fields ({field}.NAME)")
        return [(tuple(str(v) for v in row[:-1]), row[-1]) for row in rows]  # a float as Python writes it, as ES keys

    def chain(self, since: datetime | None = None) -> Iterator[dict]:
        """Yield stored events and re-emitted chain positions ordered by (writer, seq); with ``since``, each
        writer from its first event then on. A re-emitted position comes as ``chain.AlreadyStored``."""
        params: list = []
        rows = self._positions()
        sql = f"SELECT * FROM ({rows}) ORDER BY writer, seq, id"  # noqa: S608
        if since is not None:
            # Each writer's first position at or after ``since``, found once per writer and joined: a
            # subquery per row (as before 2026-12-06) was quadratic, 18 s for 20,000 events of one writer.
            sql = (f"WITH c AS ({rows}), starts AS (SELECT writer, MIN(seq) AS first_seq FROM c "  # noqa: S608
                   "WHERE ts_ms >= ? GROUP BY writer) "
                   "SELECT e.* FROM c e JOIN starts s ON e.writer IS s.writer WHERE e.seq >= s.first_seq "
                   "ORDER BY e.writer, e.seq, e.id")
            params.append(_ms(since))
        cursor = self.conn.cursor()
        try:
            for kept, *row in cursor.execute(sql, params):
                yield _checked(tuple(row)) if not kept else _reemitted(row)
            self._check_unchanged()
        finally:
            cursor.close()

    def _positions(self, where: str = "") -> str:
        """Return the SELECT of every chain position (events, then re-emitted ones), each restricted by ``where``
        (an SQL condition on writer and seq, placeholders only); a store from before the ``reemitted`` table
        reads as if it were empty."""
        cols = "id, writer, seq, ts_ms, " + ", ".join(COLUMNS.values()) + ", message, doc"
        cond = f" WHERE {where}" if where else ""
        rows = f"SELECT 0 AS kept, {cols} FROM events{cond}"  # noqa: S608
        if self._has_reemitted:
            nulls = ", ".join("NULL" for _ in COLUMNS)
            rows += f" UNION ALL SELECT 1, id, writer, seq, ts_ms, {nulls}, NULL, doc FROM reemitted{cond}"  # noqa: S608
        return rows

    def chain_at(self, writer: str, incarnation: str | None, seq: int) -> dict | None:
        """Given a chain position, return the event stored there (checked as ``chain()`` checks it), or None: one
        indexed lookup, for ``verify --since`` (a partial walk's anchor, a delivered head)."""
        sql = f"SELECT * FROM ({self._positions('writer = ? AND seq = ?')}) ORDER BY kept, id"  # noqa: S608
        params = [writer, seq, writer, seq] if self._has_reemitted else [writer, seq]
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise DeliveryError(f"{self.path}: {exc}", "sqlite_error") from None
        self._check_unchanged()
        unreadable = None
        for kept, *row in rows:
            doc = _checked(tuple(row)) if not kept else _reemitted(row)
            if doc["event"].get("hash") == "" and set(doc["citydc"]["chain"]) == {"writer", "seq", "prev"}:
                unreadable = unreadable or doc  # which incarnation it was cannot be told: changed, if nothing else
            elif doc.get("citydc", {}).get("chain", {}).get("incarnation") == incarnation:
                return doc
        return unreadable

    def search_index_problem(self) -> str | None:
        """Return how the full-text index (events_fts) disagrees with ``events``, or None when it does not.

        Rows are compared by rowid with the index's table of one row per indexed document
        (events_fts_docsize): an event the index lacks is one free-text search cannot find, an entry for
        no event is one it finds wrongly. 0.3 s for 200,000 events, and read-only, as an auditor's verify
        is; FTS5's own 'integrity-check' against the content would also see an entry whose words were
        swapped, but it is an INSERT, which a read-only connection refuses.
        """
        try:
            missing, extra = self.conn.execute(
                "SELECT (SELECT COUNT(*) FROM (SELECT rowid FROM events EXCEPT SELECT id FROM events_fts_docsize)), "
                "(SELECT COUNT(*) FROM (SELECT id FROM events_fts_docsize EXCEPT SELECT rowid FROM events))").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DeliveryError(f"{self.path}: {exc}", "sqlite_error") from None
        self._check_unchanged()
        if not missing and not extra:
            return None
        return (f"the full-text search index disagrees with the events: {missing} event(s) missing from it (a "
                f"free-text search does not find them) and {extra} entry(ies) for no event; keep a copy of "
                f"{self.path} as evidence, then rebuild the index: sqlite3 {self.path} "
                "\"INSERT INTO events_fts(events_fts) VALUES('rebuild')\"")

    def count(self) -> int:
        n = self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        self._check_unchanged()
        return n

    def close(self) -> None:
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()

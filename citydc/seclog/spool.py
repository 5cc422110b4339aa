"""The durable spool: JSON-lines segment files that events reach before anyone is told they were recorded.

Layout of ``<spool_dir>``:

- ``seg-NNNNNNNNNN.jsonl``: segments, one chained event per line; a new one starts past a size limit.
- ``writer.lock``: held (fcntl) by whoever appends, so several processes can emit safely.
- ``chain-head.json``: the spool's incarnation (id and creation time, chosen when the spool is
  created), the chain head (last seq and hash per writer) and where the last batch ended.
- ``ack.json``: the shipper's acknowledged position (segment, byte offset, line) and delivered heads.
- ``ids.db``: ids spooled in the last days, so a re-emitted event (same source identity) is dropped
  here. One re-emitted later is chained again; the store then keeps the event once and records that
  chain position for ``verify`` (docs/security-log.md, "Re-emitted events").

An append writes every line of the batch, fsyncs once, then records the head. A writer killed
mid-batch leaves at most a partial last line: the next writer drops that fragment (it was never
acknowledged to anyone) and adopts the complete lines after the recorded head, so sequence
numbers stay gap-free.

Damage (docs/security-log.md, "Damaged spool files"): a ``chain-head.json`` or ``ack.json`` that is
not what it must be raises SpoolDamaged, naming the file and how to recover; nothing guesses past
it. A head file moved aside is rebuilt from the lines still spooled and the delivered heads, or,
when nothing tells where the chain was, a new incarnation starts (reported by ``verify``). A
damaged ``ids.db`` (an index, not evidence) is set aside and started anew. A newest segment that
was cut (shorter than the head records, or ending in a fragment) gets no more lines: the next
batch starts a new segment, so no new event is joined to the fragment, and the lost events stay
visible as removed.

A spool directory created from scratch (a new host, a replaced disk) gets a new incarnation, and
each writer's chain in it starts at seq 1 with a ``spool-created`` event, so ``citydc log verify``
tells a re-created spool from events inserted into an old chain. A spool from before incarnations
(its chain head has none) keeps its chain as it is.

Modes (docs/operations.md §5): the directory is created 0700 and the segments, ``chain-head.json``,
``ack.json`` and ``ids.db`` 0600, or 0750/0640 while files.group is in effect
(citydc.files.private_modes), so the auditors' group can run ``citydc log verify``. The lock files
stay 0600: a reader takes no lock. What exists keeps its mode; the two state files are replaced at
every write, so they take the writing process's modes and group.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from citydc import atomicfile, files
from citydc.seclog import chain, spool_ids, validated
from citydc.seclog.chain import SpoolDamaged
from citydc.seclog.event import Encoded, EventInvalid, format_timestamp, make_event, validate_event
from citydc.seclog.pacing import let_others_run
from citydc.seclog.spool_scan import SpooledLine, scan_line
from citydc.seclog.store import storable_timestamp

__all__ = ["Batch", "CorruptLine", "Position", "Spool", "SpoolBusy", "SpoolDamaged", "SpooledEvent", "SpooledLine",
           "gc_paused"]

log = logging.getLogger(__name__)

SEGMENT_GLOB = "seg-*.jsonl"
ACK_FILE = "ack.json"
ACK_RECOVERY = ("move it aside: the next `citydc log ship` then delivers the spool again from its oldest segment "
                "(the store keeps every event once) and writes a new ack.json (docs/security-log.md)")
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
READ_BLOCK = 1024 * 1024


class SpoolBusy(RuntimeError):
    """Another shipper holds this spool."""


@dataclass(frozen=True)
class Position:
    """A place in the spool: segment file name, byte offset, and lines before that offset."""

    segment: str
    offset: int = 0
    line: int = 0

    def to_json(self) -> dict:
        return {"segment": self.segment, "offset": self.offset, "line": self.line}


@dataclass(frozen=True)
class CorruptLine:
    file: str
    line: int
    reason: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: skipped corrupted spool line: {self.reason}"


@dataclass
class Batch:
    events: list = field(default_factory=list)  # event dicts, or SpooledLine objects from read(lines=True)
    end: Position | None = None
    corrupt: list[CorruptLine] = field(default_factory=list)
    # Set when ``events`` was replaced by a store's prepared form (the event dicts dropped): the last
    # event of each writer (all ``acknowledge`` needs) and the events per labels.site (for metrics).
    heads: list[dict] | None = None
    sites: dict[str, int] | None = None

    def summarise(self) -> None:
        """Record ``heads`` and ``sites`` of the events, so that ``events`` can be replaced."""
        last: dict[str, dict] = {}
        sites: dict[str, int] = {}
        if self.events and type(self.events[0]) is SpooledLine:
            self._summarise_lines()
            return
        incarnations: dict[str, str | None] = {}
        for doc in self.events:
            c = doc["citydc"]["chain"]
            held = last.get(c["writer"])
            if held is None or c["seq"] > held["citydc"]["chain"]["seq"]:
                last[c["writer"]] = doc
                incarnations[c["writer"]] = c.get("incarnation")
            site = doc["labels"]["site"]
            sites[site] = sites.get(site, 0) + 1
        self.heads = [{"citydc": {"chain": {"writer": w, "seq": d["citydc"]["chain"]["seq"],
                                            "incarnation": incarnations[w]}}, "event": {"hash": d["event"]["hash"]}}
                      for w, d in last.items()]
        self.sites = sites

    def _summarise_lines(self) -> None:
        last: dict[str, SpooledLine] = {}
        sites: dict[str, int] = {}
        for item in self.events:
            held = last.get(item.writer)
            if held is None or item.seq > held.seq:
                last[item.writer] = item
            sites[item.site] = sites.get(item.site, 0) + 1
        # In the shape acknowledge() reads: only the chain position and hash are needed.
        self.heads = [{"citydc": {"chain": {"writer": h.writer, "seq": h.seq, "incarnation": h.incarnation}},
                       "event": {"hash": h.hash}} for h in last.values()]
        self.sites = sites


def _segment_name(number: int) -> str:
    return f"seg-{number:010d}.jsonl"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of JSON documents is built.

    Parsed JSON holds no reference cycles, so reference counting frees all of it; but tens of
    thousands of new dicts trigger collections that walk every live object, which measured at
    half the cost of reading a batch (bench/seclog.py). Leaves the collector as it found it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ack_problem(data: Any) -> str | None:
    """Given a parsed ack.json, return what is wrong with it (what the shipper and verify rely on), or None."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got a JSON {type(data).__name__}"
    position = [k for k in ("segment", "offset", "line") if k in data]
    if position and len(position) < 3:
        return f"expected segment, offset and line together, found only {', '.join(position)}"
    if position and not (isinstance(data["segment"], str) and chain.SEGMENT_NAME.fullmatch(data["segment"])):
        return "segment: expected a segment file name (seg-NNNNNNNNNN.jsonl)"
    for key in ("offset", "line"):
        if key in data and not chain.nonnegative_int(data[key]):
            return f"{key}: expected an integer, 0 or more"
    return chain.writers_problem(data.get("writers", {}), incarnations=True)


def _ends_with_newline(path: Path, size: int) -> bool:
    """Given a non-empty file and its size, return whether its last byte is a newline (one pread, no buffer)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 1, size - 1) == b"\n"
    finally:
        os.close(fd)


def _adopt(head: dict[str, Any], complete: bytes) -> list[dict]:
    """Given the chain head and complete spool lines, move each writer's head on to its lines past it; return
    the events so adopted.

    A line past the head is adopted even after a gap in the numbers (a line lost to damage): the store then
    lacks that event and ``citydc log verify`` reports it as removed, while numbering on from before the gap
    would give two events one number. A line of another incarnation than the head's is not this chain's.
    """
    writers, adopted = head["writers"], []
    for raw in complete.split(b"\n") if complete else []:
        try:
            doc = orjson.loads(raw)
            c = doc["citydc"]["chain"]
            writer, seq, hsh, incarnation = c["writer"], c["seq"], doc["event"]["hash"], c.get("incarnation")
        except (ValueError, KeyError, TypeError):
            continue  # corrupted: the reader reports it
        if not (isinstance(writer, str) and type(seq) is int and isinstance(hsh, str) and chain.HASH.fullmatch(hsh)
                and (incarnation is None or (isinstance(incarnation, str) and chain.INCARNATION.match(incarnation)))):
            continue  # not a chained event: the reader reports it
        if "incarnation" not in head and incarnation:  # the head file was lost: take it back
            head["incarnation"] = {"id": incarnation, "created": doc.get("@timestamp")}
        if incarnation != head.get("incarnation", {}).get("id"):
            continue
        if seq > writers.get(writer, {"seq": 0})["seq"]:
            writers[writer] = {"seq": seq, "hash": hsh}
            adopted.append(doc)
    return adopted


class Spool:
    """One spool directory. Safe for several emitting processes and one shipper."""

    def __init__(self, spool_dir: str | Path, *, writer: str | None = None,
                 max_segment_bytes: int = DEFAULT_SEGMENT_BYTES, id_retention_days: int = 8,
                 clock: Callable[[], float] = time.time, create: bool = True):
        """Given the spool directory, make it (unless ``create`` is False) 0700, or 0750 while files.group is in
        effect (citydc.files.private_modes); a directory that exists keeps its mode."""
        self.dir = Path(spool_dir)
        if create:
            self.dir.mkdir(parents=True, exist_ok=True, mode=files.private_modes()[1])
        self._writer = writer  # None: this host's writer of the spool, found when first needed (_writer_of)
        self.max_segment_bytes = max_segment_bytes
        self.id_retention_days = id_retention_days
        self.clock = clock  # the id memory's days and a new incarnation's time (tests move it forward)

    @property
    def writer(self) -> str:
        """The writer id this spool's events are chained under: the one given, else this host's (chain.default_writer).
        Raise SpoolDamaged when chain-head.json or ack.json is damaged and none was given."""
        return self._writer_of(chain.read_head(self.dir)) if self._writer is None else self._writer

    def _writer_of(self, head: dict[str, Any]) -> str:
        """Given the chain head, return the writer id (found once: the writer the spool's state records, so a spool
        made before the ids held a digest of the directory keeps its chain, else a new one)."""
        if self._writer is None:
            recorded = head.get("writers") or self.ack().get("writers", {})  # a head moved aside: the ack has it
            self._writer = chain.default_writer(self.dir, recorded)
        return self._writer

    # -- writing ---------------------------------------------------------------------------

    def segments(self) -> list[str]:
        """Return the segment file names, oldest first."""
        return sorted(p.name for p in self.dir.glob(SEGMENT_GLOB))

    @classmethod
    def existing(cls, spool_dir: str | Path) -> Spool | None:
        """Given a spool directory, return the spool to read its state from (``ack``, ``emitted_heads``), or None
        when there is no such directory. Nothing is created or locked, so a user who may read the spool but
        not write it (an auditor of files.group, docs/operations.md §5) can: no lock is needed, as ack.json
        and chain-head.json are only ever replaced whole by a rename (citydc.atomicfile), so a read sees one
        complete version. Raise OSError when this user may not look into the directory's parent."""
        spool_dir = Path(spool_dir)
        return cls(spool_dir, create=False) if spool_dir.is_dir() else None

    @contextmanager
    def _lock(self, name: str, blocking: bool = True) -> Iterator[None]:
        # Owner-only whatever files.group says: only writers and the shipper lock, a reader never does.
        fd = os.open(self.dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                raise SpoolBusy(f"another shipper is delivering from {self.dir}") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock; a killed process releases it too

    @contextmanager
    def shipping(self) -> Iterator[None]:
        """Hold the shipper lock for the duration. Raise SpoolBusy if another shipper holds it."""
        with self._lock("shipper.lock", blocking=False):
            yield

    def append(self, events: Sequence[dict | Encoded]) -> list[dict | Encoded]:
        """Given validated events, spool the ones not spooled before, chained; return those written (a dict as a
        copy carrying the chain fields, an ``Encoded`` event as itself).

        All lines are written and fsynced before this returns. Raise EventInvalid if an event is
        invalid, SpoolDamaged if chain-head.json is damaged (then nothing of the batch is written). An
        ``Encoded`` event was validated when it was made and cannot change since: its bytes are sealed
        and written as they are, not encoded again.
        """
        bodies: dict[int, bytes] = {}  # id(event) -> canonical bytes, for the sealer (the events stay alive here)
        for i, doc in enumerate(events):
            if type(doc) is Encoded:
                continue
            body = validated.plain_body(doc)
            if body is not None:
                bodies[id(doc)] = body
                if validated.known(body):
                    continue  # make_event validated exactly these bytes
            try:
                validate_event(doc)
            except EventInvalid as exc:
                raise EventInvalid(exc.field, exc.expected, i) from None
        if not events:
            return []
        with self._lock("writer.lock"), self._ids() as ids:
            head = self._recover(ids)
            self._writer_of(head)
            # The batch's ids are claimed in a transaction that commits only once its lines are on disk
            # (a failure rolls it back: _ids); one upsert per id instead of a lookup and an insert.
            ids.execute("BEGIN IMMEDIATE")
            fresh = self._claim(ids, events)
            if not fresh:
                ids.execute("COMMIT")  # only the daily purge, if it was due
                return []
            writers = head["writers"]
            if "incarnation" not in head and not writers and not self.segments():
                head["incarnation"] = self._new_incarnation()
                chain.write_head(self.dir, head)  # before any line: a writer killed now leaves no doubt about it
            incarnation = head["incarnation"]["id"] if "incarnation" in head else None
            announced = 0
            if incarnation is not None and self.writer not in writers:
                first = fresh[0]
                site = first.site if type(first) is Encoded else first["labels"]["site"]
                fresh.insert(0, self._spool_created(head["incarnation"], site))
                announced = 1
            seq, prev = (writers[self.writer]["seq"], writers[self.writer]["hash"]) \
                if self.writer in writers else (0, chain.GENESIS)
            linked, lines = [], []
            sealer = chain.Sealer(self.writer, seq, prev, incarnation)  # one encoding: the hashed bytes are the line
            for doc in fresh:
                if type(doc) is Encoded:
                    lines.append(sealer.seal_body(doc.body))  # the bytes validated when it was made
                    linked.append(doc)
                    continue
                doc, line = sealer.seal(doc, bodies.get(id(doc)))
                linked.append(doc)
                lines.append(line)
            seq, prev = sealer.seq, sealer.prev
            lines.append(b"")
            data = b"\n".join(lines)
            segment, offset = self._write(data)
            if announced:  # the spool-created event is the spool's own: not among the claimed ids
                spool_ids.remember_in(ids, [linked[0]["event"]["id"]], int(self.clock() // 86400))
            ids.execute("COMMIT")
            writers[self.writer] = {"seq": seq, "hash": prev}
            chain.write_head(self.dir, {**head, "writers": writers, "segment": segment, "offset": offset})
            return linked[announced:]  # the caller's events; the spool-created event is the spool's own

    def _new_incarnation(self) -> dict[str, str]:
        """Return a new incarnation record: an id that sorts by creation time, and that time."""
        now = self.clock()
        return {"id": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(4),
                "created": format_timestamp(datetime.fromtimestamp(now, UTC))}

    def _spool_created(self, incarnation: dict[str, str], site: str) -> dict:
        """Given the incarnation record and the site of the first event, return this writer's ``spool-created``
        event, the first of its chain in this incarnation."""
        inc = incarnation["id"]
        return make_event(
            action="spool-created", dataset="citydc.seclog", kind="event", category=["configuration"],
            type=["creation"], outcome="success", site=site, host=socket.gethostname(),
            message=f"security-log spool {self.dir} created: writer {self.writer} starts a new chain "
                    f"(incarnation {inc})",
            id_key=f"spool-created:{self.writer}:{inc}", timestamp=datetime.fromtimestamp(self.clock(), UTC),
            details={"writer": self.writer, "incarnation": inc, "spool_dir": str(self.dir),
                     "incarnation_created": incarnation["created"]})

    def _write(self, data: bytes) -> tuple[str, int]:
        """Append data to the current segment (a new one past the size limit), fsync; return (segment, end)."""
        segments = self.segments()
        created = False
        if not segments:
            name, created = _segment_name(1), True
        else:
            name = segments[-1]
            if (self.dir / name).stat().st_size >= self.max_segment_bytes:
                name, created = _segment_name(int(name[4:14]) + 1), True
        fd = os.open(self.dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, files.private_modes()[0])
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            end = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.dir)
        return name, end

    def _recover(self, ids: sqlite3.Connection) -> dict[str, Any]:
        """Return the chain head brought up to the spool: the complete lines written after it adopted, a killed
        writer's partial tail dropped, and a new segment begun if the newest one was cut (``_append_point``).

        The head lags the spool after a writer killed before recording it, after its file was moved aside
        (then rebuilt here from every line still spooled) and after it was restored from an older copy.
        Raise SpoolDamaged when chain-head.json is damaged: nothing is written then.
        """
        head = chain.read_head(self.dir)
        lost = not head
        head.setdefault("writers", {})
        segments = self.segments()
        if not segments:
            return head
        start_seg, start_off = head.get("segment"), head.get("offset", 0)
        if start_seg == segments[-1]:
            size = (self.dir / start_seg).stat().st_size
            if size == start_off and (size == 0 or _ends_with_newline(self.dir / start_seg, size)):
                return head  # the common case: nothing happened since the last batch
        adopted: list[dict] = []
        for name in segments:
            if start_seg is None or name >= start_seg:
                # A fragment is a killed writer's only when the head says where its batch began.
                complete = self._complete_lines(name, start_off if name == start_seg else 0,
                                                drop_partial=name == segments[-1] and not lost)
                adopted += _adopt(head, complete)
        self._take_delivered(head)
        if adopted:
            log.warning("%s: adopted %d events %s", self.dir, len(adopted),
                        f"still in the spool, as {chain.HEAD_FILE} was missing" if lost
                        else "written by a writer stopped (killed, or its write failed) before recording the "
                             "chain head")
            self._remember(ids, adopted)
        if lost and not head["writers"] and "incarnation" not in head:
            # Nothing tells where the chain was: a new incarnation, which `citydc log verify` reports with
            # where the previous chain ended, rather than a seq 1 that would collide with the store's.
            head["incarnation"] = self._new_incarnation()
            log.warning("%s: %s was missing and no event says where the chain was: a new spool incarnation "
                        "starts", self.dir, chain.HEAD_FILE)
        head["segment"], head["offset"] = self._append_point(segments[-1], start_seg, start_off)
        chain.write_head(self.dir, head)
        return head

    def _complete_lines(self, name: str, offset: int, drop_partial: bool) -> bytes:
        """Given a segment and an offset, return its complete lines from there; with ``drop_partial``, cut off a
        fragment after them (a killed writer's, never acknowledged to anyone)."""
        path = self.dir / name
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        complete, _, partial = data.rpartition(b"\n")
        if partial and drop_partial:
            log.warning("%s: dropping a partial last line of %d bytes left by an interrupted write (a writer "
                        "killed, or a write that failed: disk full?)", path, len(partial))
            os.truncate(path, offset + len(complete) + (1 if complete else 0))
        return complete

    def _take_delivered(self, head: dict[str, Any]) -> None:
        """Move a writer's head on to its delivered head (ack.json) where that is further: a head restored from
        an older copy, or rebuilt from a spool whose lines of that writer were delivered and deleted, must not
        number again what the store holds. A damaged ack.json is the shipper's to report, here it is ignored:
        refusing the event for it would lose the event."""
        try:
            delivered = self.delivered_heads()
        except SpoolDamaged:
            return
        incarnation = head.get("incarnation", {}).get("id")
        writers = head["writers"]
        for writer, h in delivered.items():
            if h.incarnation == incarnation and h.seq > writers.get(writer, {"seq": 0})["seq"]:
                writers[writer] = {"seq": h.seq, "hash": h.hash}

    def _append_point(self, newest: str, start_seg: str | None, start_off: int) -> tuple[str, int]:
        """Given the newest segment and where the head says the last batch ended, return where the next batch
        goes: the segment's end, or a new empty segment when the newest one was cut, that is shorter than the
        head records (truncated, or restored from an older copy) or ending in a fragment.

        A line appended to a fragment is lost with it, and the shipper's ack may point past the cut: the cut
        segment is left as it is, so the shipper reports its fragment and ``verify`` the events it lost.
        """
        path = self.dir / newest
        size = path.stat().st_size
        if newest == start_seg and size < start_off:
            problem = (f"is {size} bytes, shorter than the {start_off} bytes the chain head records (truncated, "
                       "or restored from an older copy): the events past its end are gone")
        elif size and not _ends_with_newline(path, size):
            problem = "ends in an incomplete line"
        else:
            return newest, size
        name = _segment_name(int(newest[4:14]) + 1)
        os.close(os.open(self.dir / name, os.O_WRONLY | os.O_CREAT, files.private_modes()[0]))
        _fsync_dir(self.dir)
        log.warning("%s %s; the next events go to a new segment, %s (`citydc log verify` reports the lost events "
                    "as removed)", path, problem, name)
        return name, 0

    @contextmanager
    def _ids(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = spool_ids.connection(self.dir)  # kept open: opening it per emit cost more than the emit
        except spool_ids.IndexDamaged as exc:
            conn = self._new_ids(exc)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # the next append in this process reuses the connection
            raise

    def _new_ids(self, damage: spool_ids.IndexDamaged) -> sqlite3.Connection:
        """Set a damaged ids.db aside and start a new one holding the ids still in the spool; return its connection.

        Safe, so not an error that would stop every event: ids.db is an index, not evidence (the chain is in
        the segments and the chain head). An id the new index lacks only lets that event, emitted again, be
        chained again: the store keeps it once and ``citydc log verify`` notes it as re-emitted.
        """
        aside = spool_ids.set_aside(self.dir, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
        conn = spool_ids.connection(self.dir)
        known = list(self._spooled_ids())
        spool_ids.remember(conn, known, int(self.clock() // 86400), self.id_retention_days)
        log.warning("%s; set it aside as %s and started a new one with the %d event id(s) still in the spool "
                    "(an older event emitted again is chained again, which `citydc log verify` notes as "
                    "re-emitted)", damage, aside.name, len(known))
        return conn

    def _spooled_ids(self) -> Iterator[str]:
        """Yield the event.id of every readable line in the spool's segments."""
        for name in self.segments():
            try:
                with (self.dir / name).open("rb") as f:
                    for raw in f:
                        try:
                            ident = orjson.loads(raw)["event"]["id"]
                        except (ValueError, KeyError, TypeError):
                            continue  # corrupted: the shipper reports it
                        if isinstance(ident, str):
                            yield ident
            except FileNotFoundError:
                continue  # acknowledged and deleted by the shipper meanwhile

    def _claim(self, ids: sqlite3.Connection, events: Sequence[dict]) -> list[dict]:
        """Given the ids connection inside a transaction and the batch, claim the ids not spooled before; return
        those events in order (an event whose id occurs earlier in the batch is a duplicate too)."""
        idents = [doc.id if type(doc) is Encoded else doc["event"]["id"] for doc in events]
        claimed = spool_ids.claim(ids, idents, int(self.clock() // 86400), self.id_retention_days)
        fresh = []
        for doc, ident in zip(events, idents, strict=True):
            if ident in claimed:
                claimed.discard(ident)
                fresh.append(doc)
        if len(fresh) < len(events):
            log.info("dropped %d event(s) already spooled (same event.id)", len(events) - len(fresh))
        return fresh

    def _remember(self, ids: sqlite3.Connection, docs: Sequence[dict]) -> None:
        spool_ids.remember(ids, (d["event"]["id"] for d in docs), int(self.clock() // 86400), self.id_retention_days)

    # -- reading ---------------------------------------------------------------------------

    def ack(self) -> dict[str, Any]:
        """Return the ack record ({} before the first acknowledgement). Raise SpoolDamaged if ack.json is damaged."""
        return chain.read_state_file(self.dir / ACK_FILE, _ack_problem, ACK_RECOVERY)

    def ack_position(self) -> Position | None:
        """Return the acknowledged position, or None when nothing was acknowledged yet."""
        data = self.ack()
        return Position(data["segment"], data["offset"], data["line"]) if "segment" in data else None

    def delivered_heads(self) -> dict[str, chain.ChainHead]:
        """Return the last delivered (seq, hash, incarnation) per writer, as recorded with the acks."""
        return {w: chain.ChainHead(w, h["seq"], h["hash"], h.get("incarnation"))
                for w, h in self.ack().get("writers", {}).items()}

    def emitted_heads(self) -> dict[str, chain.ChainHead]:
        """Return the chain head per writer as spooled (with the spool's incarnation, None before incarnations)."""
        head = chain.read_head(self.dir)
        incarnation = head.get("incarnation", {}).get("id")
        return {w: chain.ChainHead(w, h["seq"], h["hash"], incarnation) for w, h in head.get("writers", {}).items()}

    def incarnation(self) -> dict[str, str] | None:
        """Return this spool's incarnation record ({"id", "created"}), or None (none yet, or from before them)."""
        return chain.read_head(self.dir).get("incarnation")

    def read(self, start: Position | None, max_events: int, *, lines: bool = False) -> Batch:
        """Given a position (None: the oldest segment's start), return up to ``max_events`` complete lines after it.

        A line that is not a valid chained event is reported in ``corrupt`` (file, line, reason)
        and skipped; the lines around it are returned. With ``lines``, the batch holds SpooledLine
        objects (the line and the few fields a shipper needs) instead of parsed events: an intact
        line is recognised by its chain hash without parsing it (spool_scan.py); any other line is
        parsed and judged exactly as without ``lines``.
        """
        segments = self.segments()
        batch = Batch(end=start)
        if not segments:
            return batch
        if start is None or start.segment < segments[0]:
            start = Position(segments[0])
        with gc_paused():
            return self._read_batch(start, max_events, segments, batch, lines)

    def _read_batch(self, pos: Position, max_events: int, segments: list[str], batch: Batch, lines: bool) -> Batch:
        while len(batch.events) < max_events and pos.segment in segments:
            new = self._read_segment(pos, max_events - len(batch.events), batch, last=pos.segment == segments[-1],
                                     scan=lines)
            progressed, pos = new != pos, new
            batch.end = pos
            if len(batch.events) >= max_events:
                break
            if pos.offset < (self.dir / pos.segment).stat().st_size:
                if progressed:
                    continue  # the segment holds more than one read block
                break  # a line still being written by an emitter: wait for it
            later = [s for s in segments if s > pos.segment]
            if not later:
                break
            pos = Position(later[0])
            batch.end = pos
        return batch

    def _read_segment(self, pos: Position, room: int, batch: Batch, last: bool, scan: bool) -> Position:
        path = self.dir / pos.segment
        with path.open("rb") as f:
            f.seek(pos.offset)
            data = f.read(READ_BLOCK)
            if not data:
                return pos
            while b"\n" not in data:  # a line longer than one block
                more = f.read(READ_BLOCK)
                if not more:
                    break
                data += more
        offset, line = pos.offset, pos.line
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: nothing, or a line not complete (yet)
        events, corrupt = batch.events, batch.corrupt
        for raw in lines:
            if room <= 0:
                break
            let_others_run(line)  # a shipper's store thread may be waiting for the GIL
            line += 1
            offset += len(raw) + 1
            if scan:
                item = scan_line(raw)
                if item is not None:
                    events.append(item)
                    room -= 1
                    continue
            doc, reason = _parse_line(raw)  # the full parse: not proven intact by its hash, or not asked to
            if doc is None:
                corrupt.append(CorruptLine(str(path), line, reason))
                continue
            events.append(SpooledLine.of(raw, doc) if scan else doc)
            room -= 1
        else:
            if room > 0 and tail and not last and len(data) < READ_BLOCK:
                # A fragment at the end of a closed segment will never be completed.
                line += 1
                corrupt.append(CorruptLine(str(path), line, "incomplete last line"))
                offset += len(tail)
        return Position(pos.segment, offset, line)

    def acknowledge(self, pos: Position, delivered: Sequence[dict]) -> None:
        """Given the position after a stored batch and its events (at least each writer's last one: the
        highest seq per writer is recorded), record it atomically; delete fully acked segments."""
        data = self.ack()
        writers = data.get("writers", {})
        for doc in delivered:
            c = doc["citydc"]["chain"]
            if c["seq"] > writers.get(c["writer"], {}).get("seq", 0):
                writers[c["writer"]] = {"seq": c["seq"], "hash": doc["event"]["hash"]}
                if c.get("incarnation") is not None:
                    writers[c["writer"]]["incarnation"] = c["incarnation"]
        atomicfile.write(self.dir / ACK_FILE, json.dumps({**pos.to_json(), "writers": writers}, sort_keys=True),
                         files.private_modes()[0])
        for name in self.segments():
            if name < pos.segment:
                (self.dir / name).unlink(missing_ok=True)

    def end(self) -> tuple[str, int] | None:
        """Return (newest segment, its size) now, or None for an empty spool."""
        segments = self.segments()
        if not segments:
            return None
        try:
            return segments[-1], (self.dir / segments[-1]).stat().st_size
        except FileNotFoundError:
            return None

    def backlog(self) -> tuple[int, int]:
        """Return (events, bytes) spooled but not acknowledged yet."""
        pos = self.ack_position()
        total = 0
        for name in self.segments():
            if pos is None or name >= pos.segment:
                try:
                    total += (self.dir / name).stat().st_size
                except FileNotFoundError:
                    continue
        if pos is not None and pos.segment in self.segments():
            total -= pos.offset
        emitted = sum(h.seq for h in self.emitted_heads().values())
        delivered = sum(h.seq for h in self.delivered_heads().values())
        return max(emitted - delivered, 0), max(total, 0)


class SpooledEvent(dict):
    """An event read from the spool, with its line so a store can keep it without encoding it again:
    ``raw`` as text, ``line`` as the bytes read (what the Elasticsearch store sends)."""

    __slots__ = ("line", "raw")


def _parse_line(raw: bytes) -> tuple[dict | None, str]:
    """Given one spool line, return (event, "") or (None, why it is not a valid chained event)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    try:
        doc = orjson.loads(raw)  # several times faster than json.loads; the decoded text is kept as .raw
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(text)  # the reference parser has the last word (and the clearer message)
        except ValueError as exc:
            return None, f"not JSON ({exc.msg} at column {exc.colno})"
    # Lines were fully validated before they were spooled; this cheaper check catches what damage
    # does to a line (truncation, garbage, a foreign object) without validating every field again.
    try:
        event, chain_fields = doc["event"], doc["citydc"]["chain"]
        intact = (type(event["id"]) is str and type(event["hash"]) is str and type(event["dataset"]) is str
                  and type(doc["@timestamp"]) is str and type(doc["message"]) is str
                  and type(doc["labels"]["site"]) is str and type(chain_fields["writer"]) is str
                  and type(chain_fields["seq"]) is int)
    except (KeyError, TypeError, IndexError):
        intact = False
    if not intact:
        return None, _damage(doc)
    try:
        storable_timestamp(doc)  # what a store refuses would fail the whole batch, again at every attempt
    except EventInvalid as exc:
        return None, f"not a valid event ({exc})"
    event = SpooledEvent(doc)
    event.raw = text  # the line is a compact encoding of this event: stores keep it as it is
    event.line = raw  # and its bytes, already in memory: sending them saves encoding the text again
    return event, ""


def _damage(doc: Any) -> str:
    """Given a parsed line that is not a chained event, return what is wrong with it (the slow, wordy check)."""
    if not isinstance(doc, dict):
        return f"not an event object (a JSON {type(doc).__name__})"
    try:
        event, chain_fields = doc["event"], doc["citydc"]["chain"]
        for value, name in ((event["id"], "event.id"), (event["hash"], "event.hash"), (event["dataset"],
                            "event.dataset"), (doc["@timestamp"], "@timestamp"), (doc["message"], "message"),
                            (doc["labels"]["site"], "labels.site"), (chain_fields["writer"], "citydc.chain.writer")):
            if not isinstance(value, str):
                return f"not a valid event ({name}: expected a string)"
        if isinstance(chain_fields["seq"], bool) or not isinstance(chain_fields["seq"], int):
            return "not a valid event (citydc.chain.seq: expected an integer)"
    except (KeyError, TypeError, IndexError) as exc:
        return f"not a valid event (missing {exc})"
    return "not a valid event"

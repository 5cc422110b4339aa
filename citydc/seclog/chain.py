"""Tamper evidence: a hash chain per writer, and the walk that verifies it.

Each writer (one spool: host name + spool directory name) numbers its events 1, 2, 3, ... and
hashes each event together with the previous hash. A spool made since incarnations exist has an
incarnation id (chosen when the spool directory is created; a spool re-created from scratch gets a
new one), and a chain is then identified by (writer, incarnation):

    hash = sha256(prev + "|" + writer + "|" + incarnation + "|" + seq + "|" + canonical(event without chain fields))

A spool older than incarnations (its ``chain-head.json`` has none) keeps its chain and its recipe:

    hash = sha256(prev + "|" + writer + "|" + seq + "|" + canonical(event without chain fields))

``canonical`` is JSON with sorted keys, no whitespace, UTF-8. Writer and seq are hashed too, so
a row cannot be renumbered unnoticed. ``seal`` encodes an event once: its canonical bytes are
hashed, and the spool line is those same bytes with the chain fields spliced in. The last
(seq, hash) of each writer, the chain head, is kept in a file outside the store
(``<spool_dir>/chain-head.json``, included by the backup jobs): an event appended to the
store after the head, even with a correctly computed hash, is found.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from citydc import atomicfile, files

__all__ = ["GENESIS", "INCARNATION", "AlreadyStored", "ChainHead", "Finding", "Notice", "Report", "Sealer",
           "SpoolDamaged", "Unreadable", "canonical", "chain_hash", "chain_name", "default_writer", "link", "read_head",
           "read_state_file", "seal", "verify", "verify_report", "write_head"]

GENESIS = "0" * 64
HEAD_FILE = "chain-head.json"
# A spool incarnation id: when the spool was created (UTC, to the second, so ids sort by age) and 8
# random hex digits. Nothing in it needs escaping in JSON, so spool_scan can find it by bytes.
INCARNATION = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


def chain_name(writer: str, incarnation: str | None) -> str:
    """Given a writer and its incarnation (None for a chain older than incarnations), return how reports name it."""
    return writer if incarnation is None else f"{writer} incarnation {incarnation}"


@dataclass(frozen=True)
class ChainHead:
    writer: str
    seq: int
    hash: str
    incarnation: str | None = None

    def to_json(self) -> dict:
        return {"writer": self.writer, "seq": self.seq, "hash": self.hash, "incarnation": self.incarnation}


@dataclass(frozen=True)
class Finding:
    """The first break of a chain: ``problem`` is changed, removed or inserted."""

    problem: str
    writer: str | None  # None: a finding about the store as a whole (its search index), not about a chain
    seq: int | None
    event_id: str | None
    reason: str
    incarnation: str | None = None

    def format(self) -> str:
        if self.writer is None:
            return f"{self.problem}: {self.reason}"
        name = chain_name(self.writer, self.incarnation)
        where = f"writer {name} seq {self.seq}" if self.seq is not None else f"writer {name}"
        ident = f" (event.id {self.event_id})" if self.event_id else ""
        return f"{self.problem}: {where}{ident}: {self.reason}"

    def to_json(self) -> dict:
        return {"problem": self.problem, "writer": self.writer, "incarnation": self.incarnation, "seq": self.seq,
                "event_id": self.event_id, "reason": self.reason}


@dataclass(frozen=True)
class Notice:
    """Information from a walk that is not a break: ``kind`` is ``new-incarnation`` or ``re-emitted``."""

    kind: str
    writer: str
    incarnation: str | None
    seq: int | None
    event_id: str | None
    message: str

    def format(self) -> str:
        return f"{self.kind}: writer {chain_name(self.writer, self.incarnation)}: {self.message}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "writer": self.writer, "incarnation": self.incarnation, "seq": self.seq,
                "event_id": self.event_id, "message": self.message}


@dataclass
class Report:
    """What a walk found: ``findings`` (breaks, exit 1) and ``notices`` (information, exit 0); ``firsts`` is the
    first seq walked of each (writer, incarnation) chain (a --since walk says where it started)."""

    findings: list[Finding]
    notices: list[Notice]
    firsts: dict[tuple[str, str | None], int] = field(default_factory=dict)


def default_writer(spool_dir: Path, recorded: Iterable[str] = ()) -> str:
    """Given the spool directory and the writers its state files record, return this host's writer id there.

    A spool keeps the writer it has: the recorded one of this host and directory name, ``<host>:<dir
    name>`` as spools made before 2026-12 have it, or ``<host>:<dir name>~<8 hex digits>`` (kept too when
    the directory moved), so neither an upgrade nor a move forks a chain. Otherwise the id is the latter,
    the digits from the directory's absolute path: two spools of one host whose directories share a name
    (one per site, or the default var/spool under two config files) are two writers, not one writer's
    incarnations.
    """
    spool_dir = Path(spool_dir)
    plain = f"{socket.gethostname()}:{spool_dir.name}"
    fresh = f"{plain}~{hashlib.sha256(str(spool_dir.resolve()).encode()).hexdigest()[:8]}"
    own = re.compile(re.escape(plain) + r"(~[0-9a-f]{8})?")
    kept = sorted(w for w in recorded if own.fullmatch(w))
    return fresh if fresh in kept or not kept else kept[0]


def canonical(doc: Mapping) -> bytes:
    """Given an event, return its canonical JSON without the chain fields (sorted keys, no whitespace, UTF-8).

    A ``citydc`` object left empty (or null) is omitted, so an event hashes the same before and
    after the chain fields are added to it.
    """
    event, citydc = doc.get("event"), doc.get("citydc")
    if isinstance(event, Mapping) and "hash" not in event and (
            "citydc" not in doc or (isinstance(citydc, Mapping) and citydc and "chain" not in citydc)):
        return _sorted_json(doc)  # nothing to strip (an event being chained): no copies
    body = dict(doc)
    event = dict(body.get("event") or {})
    event.pop("hash", None)
    body["event"] = event
    if citydc is None or isinstance(citydc, Mapping):
        rest = {k: v for k, v in (citydc or {}).items() if k != "chain"}
        if rest:
            body["citydc"] = rest
        else:
            body.pop("citydc", None)
    return _sorted_json(body)


def _sorted_json(body: Mapping) -> bytes:
    """Given a document, return ``json.dumps(sort_keys, compact, ensure_ascii=False)`` as UTF-8, byte for byte.

    orjson gives the same bytes for strings, integers of up to 64 bits, booleans and null (a unit test
    compares every code point) at a fifth of the cost; floats it writes differently (1e-05 vs 0.00001),
    and they can only occur in component details, so an event with a float there takes the slow path.
    """
    if not _has_float(body.get("citydc")):
        try:
            return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            pass  # an integer beyond 64 bits, a non-string key: the reference encoder decides
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _has_float(value: Any) -> bool:
    if type(value) is dict:  # the usual shape, {component: {flat details}}, without building a stack
        inner = [v for v in value.values() if type(v) is not str and type(v) is not int and v is not None]
        if all(type(v) is dict for v in inner):
            inner = [x for v in inner for x in v.values() if type(x) is not str and type(x) is not int
                     and x is not None]
        if not inner:
            return False
    todo = [value]
    while todo:  # iterative: details are small, and this runs for every event
        value = todo.pop()
        if isinstance(value, float):
            return True
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list | tuple):
            todo.extend(value)
    return False


def _position(prev: str, writer: str, seq: int, incarnation: str | None) -> bytes:
    """Return the bytes hashed before the event: ``prev|writer|seq|``, or ``prev|writer|incarnation|seq|``."""
    if incarnation is None:
        return f"{prev}|{writer}|{seq}|".encode()
    return f"{prev}|{writer}|{incarnation}|{seq}|".encode()


def chain_hash(prev: str, writer: str, seq: int, doc: Mapping, incarnation: str | None = None) -> str:
    """Given the previous hash, the writer, the sequence number, the event and the writer's incarnation
    (None for a chain older than incarnations), return the event's hash."""
    h = hashlib.sha256(_position(prev, writer, seq, incarnation))
    h.update(canonical(doc))
    return h.hexdigest()


def link(doc: Mapping, writer: str, seq: int, prev: str, incarnation: str | None = None) -> dict:
    """Given a validated event and its chain position, return a copy carrying the chain fields."""
    return seal(doc, writer, seq, prev, incarnation)[0]


_EVENT_OBJECT = b'"event":{"action":'  # sorted keys: a validated event object always starts with its action


def seal(doc: Mapping, writer: str, seq: int, prev: str, incarnation: str | None = None) -> tuple[dict, bytes]:
    """Given a validated event and its chain position, return (a copy carrying the chain fields, its JSON line).

    The line is the canonical bytes that were hashed, with ``"hash"`` spliced in as the first key of
    ``event`` and ``"chain"`` as the first key of ``citydc``: one encoding per event instead of two.
    Why the splice points are exact: ``@timestamp`` (validated, no quote or backslash) is the first
    key; ``citydc`` is the only key that can follow it before ``ecs``; and the byte sequence
    ``"event":{"action":`` cannot occur inside a JSON string (a quote there is escaped), so its last
    occurrence is the top-level event object (no key sorting after ``event`` holds free-form objects).
    The input is left untouched.
    """
    body = canonical(doc)
    digest = hashlib.sha256(_position(prev, writer, seq, incarnation))
    digest.update(body)
    hsh = digest.hexdigest()
    # Key order as spool_scan expects it: writer, incarnation (when there is one), seq, prev.
    chain = ({"writer": writer, "seq": seq, "prev": prev} if incarnation is None
             else {"writer": writer, "incarnation": incarnation, "seq": seq, "prev": prev})
    out = dict(doc)
    out["event"] = {**doc["event"], "hash": hsh}
    out["citydc"] = {**(doc.get("citydc") or {}), "chain": chain}
    ev_at = body.rfind(_EVENT_OBJECT) + 9  # just after '"event":{'
    ts_end = body.find(b'"', 15) + 1 if body.startswith(b'{"@timestamp":"') else -1
    if ev_at < 9 or ts_end <= 0:
        return out, orjson.dumps(out)  # not shaped as validated: encode the copy (never reached from the spool)
    chain_json = orjson.dumps(chain)
    if body.startswith(b',"citydc":{', ts_end):
        at = ts_end + 11
        cit = b'"chain":' + chain_json + (b"" if body[at:at + 1] == b"}" else b",")  # defensive: {} is omitted
    else:
        at, cit = ts_end, b',"citydc":{"chain":' + chain_json + b"}"
    return out, b"".join((body[:at], cit, body[at:ev_at], b'"hash":"', hsh.encode(), b'",', body[ev_at:]))


class Sealer:
    """Seals one chain's events in order from a chain position: byte for byte what ``seal`` gives event by
    event (a unit test compares them), with what is the same for the whole batch done once, not per event:
    the writer's and incarnation's bytes of the hashed prefix and the start of the ``citydc.chain`` JSON.

    ``seq`` and ``prev`` are the position of the last event sealed (0 and GENESIS for a new chain).
    """

    __slots__ = ("_chain_open", "_chain_start", "_middle", "incarnation", "prev", "seq", "writer")

    def __init__(self, writer: str, seq: int, prev: str, incarnation: str | None = None):
        self.writer, self.seq, self.prev, self.incarnation = writer, seq, prev, incarnation
        self._middle = _position("", writer, 0, incarnation)[:-2]  # "|writer|" or "|writer|incarnation|"
        self._chain_start = ({"writer": writer} if incarnation is None
                             else {"writer": writer, "incarnation": incarnation})
        self._chain_open = orjson.dumps(self._chain_start)[:-1] + b',"seq":'

    def seal(self, doc: Mapping, body: bytes | None = None) -> tuple[dict, bytes]:
        """Given the next validated event (and its ``canonical`` bytes, if the caller has them already), return
        (a copy carrying the chain fields, its JSON line), as ``seal``."""
        seq, prev = self.seq + 1, self.prev
        if body is None:
            body = canonical(doc)
        line = self._line(body, seq, prev)
        if line is None:  # not shaped as validated: the general path decides
            out, line = seal(doc, self.writer, seq, prev, self.incarnation)
            self.seq, self.prev = seq, out["event"]["hash"]
            return out, line
        hsh = self.prev  # _line moved the chain on
        chain = {**self._chain_start, "seq": seq, "prev": prev}
        out = dict(doc)
        out["event"] = {**doc["event"], "hash": hsh}
        citydc = doc.get("citydc")
        out["citydc"] = {**citydc, "chain": chain} if citydc else {"chain": chain}
        return out, line

    def seal_body(self, body: bytes) -> bytes:
        """Given the next validated event's ``canonical`` bytes alone, return its JSON line: the line ``seal`` gives
        for that event, without building the event's dicts (``citydc.seclog.event.Encoded``)."""
        line = self._line(body, self.seq + 1, self.prev)
        if line is None:  # never from a validated event; the general path decides
            return self.seal(json.loads(body))[1]
        return line

    def _line(self, body: bytes, seq: int, prev: str) -> bytes | None:
        """Given canonical bytes and their chain position, return the line and move the chain on to it; None
        (the chain unmoved) when the bytes are not shaped as a validated event's."""
        ev_at = body.rfind(_EVENT_OBJECT) + 9
        ts_end = body.find(b'"', 15) + 1 if body.startswith(b'{"@timestamp":"') else -1
        if ev_at < 9 or ts_end <= 0:
            return None
        seq_text = str(seq).encode()
        prev_bytes = prev.encode()
        hsh = hashlib.sha256(b"".join((prev_bytes, self._middle, seq_text, b"|", body))).hexdigest()
        chain_json = b"".join((self._chain_open, seq_text, b',"prev":"', prev_bytes, b'"}'))
        if body.startswith(b',"citydc":{', ts_end):
            at = ts_end + 11
            cit = b'"chain":' + chain_json + (b"" if body[at:at + 1] == b"}" else b",")
        else:
            at, cit = ts_end, b',"citydc":{"chain":' + chain_json + b"}"
        self.seq, self.prev = seq, hsh
        return b"".join((body[:at], cit, body[at:ev_at], b'"hash":"', hsh.encode(), b'",', body[ev_at:]))


class SpoolDamaged(RuntimeError):
    """A spool state file (``chain-head.json``, ``ack.json``) holds something else than what it must hold.

    The message is one line: the file, what is wrong with it, and how to recover. Nothing guesses
    past such a file: the chain head anchors ``citydc log verify``, the ack is what was delivered.
    """

    def __init__(self, path: Path, problem: str, recovery: str):
        super().__init__(f"{path}: damaged spool state file: {problem}; {recovery}")
        self.path, self.problem = path, problem


HEAD_RECOVERY = ("restore it from a backup, or move it aside: the next emit then rebuilds the chain head from "
                 "the events still in the spool and ack.json, or, if none of them says where the chain was, "
                 "starts a new spool incarnation that `citydc log verify` reports (docs/security-log.md)")
SEGMENT_NAME = re.compile(r"seg-[0-9]{10}\.jsonl")  # fullmatch
HASH = re.compile(r"[0-9a-f]{64}")  # fullmatch


def read_state_file(path: Path, problem: Callable[[Any], str | None], recovery: str) -> dict[str, Any]:
    """Given a spool state file, a check of its content (the problem found, or None) and how to recover from
    damage, return its content ({} when absent). Raise SpoolDamaged naming the file when it is not JSON or
    the check finds a problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        raise SpoolDamaged(path, "empty (expected a JSON object)", recovery)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SpoolDamaged(path, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", recovery) from None
    found = problem(data)
    if found is not None:
        raise SpoolDamaged(path, found, recovery)
    return data


def nonnegative_int(value: Any) -> bool:
    return type(value) is int and value >= 0


def writers_problem(writers: Any, incarnations: bool = False) -> str | None:
    """Given a ``writers`` record ({writer: {seq, hash[, incarnation]}}), return what is wrong with it, or None."""
    if not isinstance(writers, dict):
        return "writers: expected an object"
    for name, h in writers.items():
        if not (isinstance(h, dict) and nonnegative_int(h.get("seq")) and isinstance(h.get("hash"), str)
                and HASH.fullmatch(h["hash"])):
            return f"writers[{name[:80]!r}]: expected {{seq: integer, hash: 64 hex digits}}"
        if incarnations and h.get("incarnation") is not None and not (
                isinstance(h["incarnation"], str) and INCARNATION.match(h["incarnation"])):
            return f"writers[{name[:80]!r}].incarnation: expected an incarnation id"
    return None


def _head_problem(data: Any) -> str | None:
    """Given a parsed chain-head file, return what is wrong with it (what the writer relies on), or None."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got a JSON {type(data).__name__}"
    if "segment" in data and not (isinstance(data["segment"], str) and SEGMENT_NAME.fullmatch(data["segment"])):
        return "segment: expected a segment file name (seg-NNNNNNNNNN.jsonl)"
    if "offset" in data and not nonnegative_int(data["offset"]):
        return "offset: expected a byte offset (an integer, 0 or more)"
    incarnation = data.get("incarnation")
    if "incarnation" in data and not (isinstance(incarnation, dict) and isinstance(incarnation.get("id"), str)
                                      and INCARNATION.match(incarnation["id"])):
        return "incarnation: expected {id: an incarnation id, created: a time}"
    return writers_problem(data.get("writers", {}))


def read_head(spool_dir: Path) -> dict[str, Any]:
    """Given the spool directory, return the chain-head file's content ({} when absent).

    Raise SpoolDamaged when the file is there but is not a chain head (empty, not JSON, wrong shape).
    """
    return read_state_file(Path(spool_dir) / HEAD_FILE, _head_problem, HEAD_RECOVERY)


def write_head(spool_dir: Path, data: Mapping[str, Any], *, sync_dir: bool = True) -> None:
    """Given the spool directory and the head record, write ``chain-head.json`` atomically (tmp, fsync, rename,
    and unless ``sync_dir`` is False, fsync of the directory), 0600, or 0640 while files.group is in effect: an
    auditor's ``citydc log verify`` reads it."""
    path = Path(spool_dir) / HEAD_FILE
    atomicfile.write(path, json.dumps(dict(data), sort_keys=True), files.private_modes()[0], sync_dir=sync_dir)


class AlreadyStored(dict):
    """A chain position the store keeps for the chain only: its event was re-emitted (the spool's id
    memory had expired, or another spool sent it) and the store already held that event.id, so searches
    show the event once while the walk still sees every link. ``sealed`` as in ``Sealed``, when the store set it."""

    __slots__ = ("sealed",)


class Unreadable(dict):
    """A stand-in for a stored row whose document cannot be read as an event (text that is no JSON object): only
    what the store's columns say is in it, ``event.id`` and the writer and seq of ``citydc.chain``. Which
    incarnation it belonged to was in the lost document; the walk reports it as changed."""

    __slots__ = ()


class Sealed(dict):
    """A stored document the store found to be byte for byte the line ``seal`` makes of it: ``sealed`` is the
    (prev, writer, seq, incarnation, hash) it was sealed with, so the walk need not encode and hash it again."""

    __slots__ = ("sealed",)


def _chain_fields(doc: Mapping) -> tuple[str, str | None, int, str, str] | None:
    try:
        chain = doc["citydc"]["chain"]
        writer, seq, prev, hsh = chain["writer"], chain["seq"], chain["prev"], doc["event"]["hash"]
        incarnation = chain.get("incarnation")
    except (KeyError, TypeError, AttributeError):
        return None
    if not (isinstance(writer, str) and isinstance(seq, int) and isinstance(prev, str) and isinstance(hsh, str)
            and (incarnation is None or isinstance(incarnation, str))):
        return None
    return writer, incarnation, seq, prev, hsh


@dataclass
class _Chain:
    """What the walk keeps of one (writer, incarnation) chain."""

    seq: int
    hash: str
    event_id: str | None
    timestamp: str | None


# The store's point lookup of one chain position: (writer, incarnation, seq) -> the stored event there, or None.
Lookup = Callable[[str, "str | None", int], "Mapping | None"]


def verify(events: Iterable[Mapping], *, partial: bool = False,
           delivered: Mapping[str, ChainHead] | None = None,
           emitted: Callable[[], Mapping[str, ChainHead]] | None = None,
           lookup: Lookup | None = None) -> list[Finding]:
    """Given events ordered by (writer, seq), return the first break of each chain ([] when intact).

    See ``verify_report``, which also returns the notices.
    """
    return verify_report(events, partial=partial, delivered=delivered, emitted=emitted, lookup=lookup).findings


def verify_report(events: Iterable[Mapping], *, partial: bool = False,
                  delivered: Mapping[str, ChainHead] | None = None,
                  emitted: Callable[[], Mapping[str, ChainHead]] | None = None,
                  lookup: Lookup | None = None) -> Report:
    """Given events ordered by seq within each (writer, incarnation) chain, return the first break of each
    chain and the notices (a writer's new incarnation, a re-emitted event the store held already).

    ``delivered`` are heads the shipper recorded as acknowledged (read before the walk): a store
    ending before one lost its tail. ``emitted`` returns the spool's chain heads (read after the
    walk): a store going beyond one holds an inserted event, and so does a chain of an incarnation
    newer than the spool's own. With ``partial`` (a walk that starts at --since), a chain's first
    event need not be seq 1: given ``lookup`` (the store's point lookup of a chain position), it is
    anchored at the stored event just before it, which must exist and whose hash must be its ``prev``
    (events deleted from the start of the window are ``removed``), and every delivered head the walk
    did not reach is looked up (a window whose events were all deleted is ``removed`` too). Without
    ``lookup`` a partial walk trusts each chain's first event as its start.
    """
    findings: list[Finding] = []
    notices: list[Notice] = []
    state: dict[tuple[str, str | None], _Chain] = {}
    firsts: dict[tuple[str, str | None], int] = {}
    broken: set[tuple[str, str | None]] = set()
    walked_from: dict[tuple[str, str | None], int] = {}  # each chain's first event walked, even a broken one
    # The walk keeps only each chain's last state: the hash at each delivered head's seq is noted in passing.
    delivered_seqs = {(writer, head.incarnation): head.seq for writer, head in (delivered or {}).items()}
    at_delivered: dict[tuple[str, str | None], str] = {}
    for doc in events:
        event = doc.get("event")
        event_id = event.get("id") if isinstance(event, Mapping) else None
        if isinstance(doc, Unreadable):
            # Not a chain of its own (its incarnation is unknown): seq 1..n-1 of such a chain would read as removed
            # and the row's own position as missing from its real chain, five removed events for one altered row.
            key = _chain_of_unreadable(doc, state, broken)
            if key not in broken:
                findings.append(Finding("changed", key[0], _chain_fields_seq(doc), event_id,
                                        "the stored document cannot be read (it is no JSON object of an event): "
                                        "the store was altered", key[1]))
                broken.add(key)
            continue
        fields = _chain_fields(doc)
        if fields is None:
            named = _named_chain(doc)
            if named is not None:
                # It names its chain, but a chain field is of another type (seq "abc", edited in the store): an
                # altered event of that chain, not an inserted one "without chain fields".
                if (named, "<malformed>") not in broken:
                    findings.append(Finding("changed", named[0], None, event_id, "its chain fields are not of the "
                                            "expected types (strings writer, prev and event.hash, an integer seq)",
                                            named[1]))
                    broken.add((named, "<malformed>"))
            elif ("<none>", None) not in broken:
                findings.append(Finding("inserted", "<none>", None, event_id, "event has no chain fields"))
                broken.add(("<none>", None))
            continue
        writer, incarnation, seq, prev, stored_hash = fields
        key = (writer, incarnation)
        if key in broken:
            continue
        walked_from.setdefault(key, seq)
        last = state.get(key)
        if last is None and partial and lookup is not None and seq > 1:
            anchored = _anchor(lookup, writer, incarnation, seq)
            if isinstance(anchored, Finding):
                findings.append(anchored)
                broken.add(key)
                continue
            last = anchored
            if delivered_seqs.get(key) == last.seq:
                at_delivered[key] = last.hash
        finding = _check_one(doc, writer, incarnation, seq, prev, stored_hash, last, partial, event_id)
        if finding is not None:
            findings.append(finding)
            broken.add(key)
            continue
        timestamp = doc.get("@timestamp")
        state[key] = _Chain(seq, stored_hash, event_id, timestamp if isinstance(timestamp, str) else None)
        if delivered_seqs.get(key) == seq:
            at_delivered[key] = stored_hash
        firsts.setdefault(key, seq)
        if isinstance(doc, AlreadyStored):
            notices.append(Notice("re-emitted", writer, incarnation, seq, event_id,
                                  f"seq {seq} (event.id {event_id}) was emitted again after the store had it; "
                                  "the store keeps the event once and this chain position for the chain"))
    for writer, head in (delivered or {}).items():
        key = (writer, head.incarnation)
        last = state.get(key)
        if key in broken:
            continue
        if partial and key not in at_delivered and (last is None or last.seq >= head.seq):
            # The walk did not pass the delivered head (a --since window may hold nothing of this writer, or
            # start after the head): the store must still hold it, with the hash the shipper recorded.
            if lookup is not None and (finding := _delivered_head_problem(lookup, writer, head)) is not None:
                findings.append(finding)
                broken.add(key)
            continue
        if last is None or last.seq < head.seq:
            have = f"the store ends at seq {last.seq}" if last else "the store has none of its events"
            findings.append(Finding("removed", writer, (last.seq + 1) if last else 1, None,
                                    f"{have}, but seq {head.seq} was delivered", head.incarnation))
            broken.add(key)
        elif key in at_delivered and at_delivered[key] != head.hash:
            findings.append(Finding("changed", writer, head.seq, None, _REHASHED.format(
                seq=head.seq, head=f"the hash the shipper recorded when it delivered seq {head.seq} (ack.json)"),
                head.incarnation))
            broken.add(key)
    for writer, head in (emitted() if emitted else {}).items():
        key = (writer, head.incarnation)
        for w, inc in list(state):
            if w == writer and (w, inc) not in broken and head.incarnation is not None and (
                    inc is not None and inc > head.incarnation):
                findings.append(Finding("inserted", w, firsts[(w, inc)], None,
                                        f"a chain of incarnation {inc}, newer than the spool's own "
                                        f"({head.incarnation})", inc))
                broken.add((w, inc))
        last = state.get(key)
        if key in broken:
            continue
        if last is None:
            if partial and lookup is not None and head.seq >= 0:
                beyond = _lookup(lookup, writer, head.incarnation, head.seq + 1)
                if beyond is not None:  # the window held nothing of this writer, but its chain goes on past the head
                    findings.append(Finding("inserted", writer, head.seq + 1, _event_id(beyond),
                                            f"the store goes beyond the chain head (seq {head.seq})",
                                            head.incarnation))
            continue
        if last.seq > head.seq:
            findings.append(Finding("inserted", writer, last.seq, last.event_id,
                                    f"the store goes beyond the chain head (seq {head.seq})", head.incarnation))
        elif last.seq == head.seq and last.hash != head.hash:
            findings.append(Finding("changed", writer, last.seq, last.event_id, _REHASHED.format(
                seq=last.seq, head="the chain head (chain-head.json)"), head.incarnation))
    notices[:0] = _incarnation_notices(state, firsts, partial)
    return Report(findings, notices, walked_from)


def _named_chain(doc: Mapping) -> tuple[str, str | None] | None:
    """Given a stored event whose chain fields are not all of their types, return the (writer, incarnation) it
    still names, or None when it names none (no ``citydc.chain``, or no writer string there)."""
    citydc = doc.get("citydc")
    chain = citydc.get("chain") if isinstance(citydc, Mapping) else None
    if not isinstance(chain, Mapping) or not isinstance(chain.get("writer"), str):
        return None
    incarnation = chain.get("incarnation")
    return chain["writer"], incarnation if isinstance(incarnation, str) else None


def _chain_fields_seq(doc: Mapping) -> int | None:
    seq = doc.get("citydc", {}).get("chain", {}).get("seq")
    return seq if isinstance(seq, int) else None


def _chain_of_unreadable(doc: Mapping, state: Mapping[tuple[str, str | None], _Chain],
                         broken: set[tuple[str, str | None]]) -> tuple[str, str | None]:
    """Given an Unreadable stand-in and the walk's chains so far, return the chain it breaks: the one chain of its
    writer that expects its seq next, or (writer, None) when no single chain does (then that chain's next event
    also shows the gap)."""
    chain = doc.get("citydc", {}).get("chain", {})
    writer, seq = chain.get("writer"), chain.get("seq")
    writer = writer if isinstance(writer, str) else "<none>"
    waiting = [key for key, last in state.items() if key[0] == writer and key not in broken and isinstance(seq, int)
               and last.seq == seq - 1]
    return waiting[0] if len(waiting) == 1 else (writer, None)


def _event_id(doc: Mapping) -> str | None:
    event = doc.get("event")
    value = event.get("id") if isinstance(event, Mapping) else None
    return value if isinstance(value, str) else None


def _lookup(lookup: Lookup, writer: str, incarnation: str | None, seq: int) -> Mapping | None:
    """Given the store's lookup and a chain position, return the stored event there (its chain fields intact),
    or None."""
    doc = lookup(writer, incarnation, seq)
    if doc is None:
        return None
    fields = _chain_fields(doc)
    if fields is None or fields[:3] != (writer, incarnation, seq):
        # No longer a chained event at all (the store's damaged row): it is there, but changed.
        return {"event": {"id": _event_id(doc), "hash": ""},
                "citydc": {"chain": {"writer": writer, "seq": seq, "prev": "",
                                     **({"incarnation": incarnation} if incarnation is not None else {})}}}
    return doc


def _anchor(lookup: Lookup, writer: str, incarnation: str | None, seq: int) -> _Chain | Finding:
    """Given a partial walk's first event of a chain (seq > 1), return the chain state at the stored event just
    before it (its own hash checked), or the finding when that event is missing or changed."""
    doc = _lookup(lookup, writer, incarnation, seq - 1)
    if doc is None:
        return Finding("removed", writer, seq - 1, None,
                       f"seq {seq - 1} missing (the event before seq {seq}, where this walk starts)", incarnation)
    _, _, _, prev, stored_hash = _chain_fields(doc)
    event_id = _event_id(doc)
    finding = _check_one(doc, writer, incarnation, seq - 1, prev, stored_hash, None, True, event_id)
    if finding is not None:
        return finding
    timestamp = doc.get("@timestamp")
    return _Chain(seq - 1, stored_hash, event_id, timestamp if isinstance(timestamp, str) else None)


def _delivered_head_problem(lookup: Lookup, writer: str, head: ChainHead) -> Finding | None:
    """Given the store's lookup and a head the shipper delivered, return the finding when the store lacks it,
    holds another hash there, or its content no longer matches its hash; None when it is intact."""
    if head.seq < 1:
        return None
    doc = _lookup(lookup, writer, head.incarnation, head.seq)
    if doc is None:
        return Finding("removed", writer, head.seq, None,
                       f"seq {head.seq} was delivered (ack.json), but the store does not hold it", head.incarnation)
    _, _, _, prev, stored_hash = _chain_fields(doc)
    finding = _check_one(doc, writer, head.incarnation, head.seq, prev, stored_hash, None, True, _event_id(doc))
    if finding is not None:
        return finding
    if stored_hash != head.hash:
        return Finding("changed", writer, head.seq, None, _REHASHED.format(
            seq=head.seq, head=f"the hash the shipper recorded when it delivered seq {head.seq} (ack.json)"),
            head.incarnation)
    return None


# Every link checked out, so the events up to that seq were rewritten and hashed again as a chain: which
# one of them was altered first no hash can tell (the store's copies agree with each other).
_REHASHED = ("event.hash differs from {head}: this event, or any before it, was changed and the chain up to "
             "seq {seq} hashed again (which event was changed first cannot be told from the store)")


def _incarnation_notices(state: Mapping[tuple[str, str | None], _Chain], firsts: Mapping[tuple[str, str | None], int],
                         partial: bool) -> list[Notice]:
    """Given the walked chains, return a notice for every incarnation of a writer after its first one."""
    by_writer: dict[str, list[str | None]] = {}
    for writer, incarnation in state:
        by_writer.setdefault(writer, []).append(incarnation)
    notices = []
    for writer, incs in sorted(by_writer.items()):
        # The chain from before incarnations first, then by id: it starts with the creation time.
        incs.sort(key=lambda inc: (inc is not None, inc or ""))
        for before, inc in itertools.pairwise(incs):
            prev = state[(writer, before)]
            started = f"{inc[0:4]}-{inc[4:6]}-{inc[6:8]}T{inc[9:11]}:{inc[11:13]}:{inc[13:15]}Z" \
                if inc and INCARNATION.match(inc) else "an unknown time"
            ended = (f"seq {prev.seq} (event.id {prev.event_id}, @timestamp {prev.timestamp}, "
                     f"event.hash {prev.hash})")
            which = "the chain from before incarnations" if before is None else f"incarnation {before}"
            first = firsts[(writer, inc)]
            opening = "its seq 1 is the spool-created event" if first == 1 else \
                f"this walk starts at its seq {first}" if partial else f"it starts at seq {first}"
            notices.append(Notice("new-incarnation", writer, inc, first, None,
                                  f"a new spool incarnation started at {started} ({opening}); "
                                  f"the previous chain ({which}) ended at {ended}"))
    return notices


def _check_one(doc: Mapping, writer: str, incarnation: str | None, seq: int, prev: str, stored_hash: str,
               last: _Chain | None, partial: bool, event_id: str | None) -> Finding | None:
    """Given one event and its chain's state so far, return the break it shows, or None."""
    if last is None:
        expected_seq, expected_prev = (seq, prev) if partial else (1, GENESIS)
    else:
        expected_seq, expected_prev = last.seq + 1, last.hash
    if last is not None and seq <= last.seq:
        return Finding("inserted", writer, seq, event_id, f"duplicate sequence number (after seq {last.seq})",
                       incarnation)
    if seq > expected_seq:
        missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
        return Finding("removed", writer, expected_seq, None, f"{missing} missing (next present is seq {seq})",
                       incarnation)
    sealed = getattr(doc, "sealed", None)
    computed = (sealed[4] if sealed is not None and sealed[:4] == (prev, writer, seq, incarnation)
                else chain_hash(prev, writer, seq, doc, incarnation))
    if computed != stored_hash:
        differ, problem = doc.get("store_columns_differ"), doc.get("store_document_problem")
        reason = (f"the store's indexed columns ({', '.join(differ)}) differ from the stored document" if differ
                  else problem if isinstance(problem, str) else "content does not match event.hash")
        return Finding("changed", writer, seq, event_id, reason, incarnation)
    if prev != expected_prev:
        if last is None:
            return Finding("inserted", writer, seq, event_id, "first event of the writer does not start the chain",
                           incarnation)
        # This event is intact but the previous one's hash was rewritten along with its content.
        return Finding("changed", writer, last.seq, last.event_id,
                       f"event.hash was rewritten (seq {seq} still points at the original)", incarnation)
    return None

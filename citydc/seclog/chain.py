"""Tamper evidence: a hash chain per writer, and the walk that verifies it.

Each writer (one spool: host name + spool directory name) numbers its events 1, 2, 3, ... and
hashes each event together with the previous hash:

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
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from citydc import atomicfile

__all__ = ["GENESIS", "ChainHead", "Finding", "canonical", "chain_hash", "default_writer", "link", "read_head",
           "seal", "verify", "write_head"]

GENESIS = "0" * 64
HEAD_FILE = "chain-head.json"


@dataclass(frozen=True)
class ChainHead:
    writer: str
    seq: int
    hash: str

    def to_json(self) -> dict:
        return {"writer": self.writer, "seq": self.seq, "hash": self.hash}


@dataclass(frozen=True)
class Finding:
    """The first break of a writer's chain: ``problem`` is changed, removed or inserted."""

    problem: str
    writer: str
    seq: int | None
    event_id: str | None
    reason: str

    def format(self) -> str:
        where = f"writer {self.writer} seq {self.seq}" if self.seq is not None else f"writer {self.writer}"
        ident = f" (event.id {self.event_id})" if self.event_id else ""
        return f"{self.problem}: {where}{ident}: {self.reason}"

    def to_json(self) -> dict:
        return {"problem": self.problem, "writer": self.writer, "seq": self.seq, "event_id": self.event_id,
                "reason": self.reason}


def default_writer(spool_dir: Path) -> str:
    """Given the spool directory, return the writer id ``<host name>:<spool dir name>``."""
    return f"{socket.gethostname()}:{Path(spool_dir).name}"


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


def chain_hash(prev: str, writer: str, seq: int, doc: Mapping) -> str:
    """Given the previous hash, the writer, the sequence number and the event, return the event's hash."""
    h = hashlib.sha256(f"{prev}|{writer}|{seq}|".encode())
    h.update(canonical(doc))
    return h.hexdigest()


def link(doc: Mapping, writer: str, seq: int, prev: str) -> dict:
    """Given a validated event and its chain position, return a copy carrying the chain fields."""
    return seal(doc, writer, seq, prev)[0]


_EVENT_OBJECT = b'"event":{"action":'  # sorted keys: a validated event object always starts with its action


def seal(doc: Mapping, writer: str, seq: int, prev: str) -> tuple[dict, bytes]:
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
    digest = hashlib.sha256(f"{prev}|{writer}|{seq}|".encode())
    digest.update(body)
    hsh = digest.hexdigest()
    chain = {"writer": writer, "seq": seq, "prev": prev}
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


def read_head(spool_dir: Path) -> dict[str, Any]:
    """Given the spool directory, return the chain-head file's content ({} when absent)."""
    path = Path(spool_dir) / HEAD_FILE
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}


def write_head(spool_dir: Path, data: Mapping[str, Any]) -> None:
    """Given the spool directory and the head record, write ``chain-head.json`` atomically (tmp, fsync, rename)."""
    path = Path(spool_dir) / HEAD_FILE
    atomicfile.write(path, json.dumps(dict(data), sort_keys=True))


def _chain_fields(doc: Mapping) -> tuple[str, int, str, str] | None:
    try:
        chain = doc["citydc"]["chain"]
        writer, seq, prev, hsh = chain["writer"], chain["seq"], chain["prev"], doc["event"]["hash"]
    except (KeyError, TypeError):
        return None
    if not isinstance(writer, str) or not isinstance(seq, int) or not isinstance(prev, str) or not isinstance(hsh, str):
        return None
    return writer, seq, prev, hsh


def verify(events: Iterable[Mapping], *, partial: bool = False,
           delivered: Mapping[str, ChainHead] | None = None,
           emitted: Callable[[], Mapping[str, ChainHead]] | None = None) -> list[Finding]:
    """Given events ordered by (writer, seq), return the first break of each writer's chain ([] when intact).

    ``delivered`` are heads the shipper recorded as acknowledged (read before the walk): a store
    ending before one lost its tail. ``emitted`` returns the spool's chain heads (read after the
    walk): a store going beyond one holds an inserted event. With ``partial`` (a walk that starts
    at --since), a writer's first event is trusted as a start instead of having to be seq 1.
    """
    findings: list[Finding] = []
    state: dict[str, tuple[int, str, str | None]] = {}  # writer -> (last seq, last hash, last event id)
    broken: set[str] = set()
    for doc in events:
        fields = _chain_fields(doc)
        event = doc.get("event")
        event_id = event.get("id") if isinstance(event, Mapping) else None
        if fields is None:
            if "<none>" not in broken:
                findings.append(Finding("inserted", "<none>", None, event_id, "event has no chain fields"))
                broken.add("<none>")
            continue
        writer, seq, prev, stored_hash = fields
        if writer in broken:
            continue
        finding = _check_one(doc, writer, seq, prev, stored_hash, state.get(writer), partial, event_id)
        if finding is not None:
            findings.append(finding)
            broken.add(writer)
            continue
        state[writer] = (seq, stored_hash, event_id)
    for writer, head in (delivered or {}).items():
        last = state.get(writer)
        if writer in broken or (last is None and partial):
            continue  # a --since walk may legitimately hold nothing of this writer
        if last is None or last[0] < head.seq:
            have = f"the store ends at seq {last[0]}" if last else "the store has none of its events"
            findings.append(Finding("removed", writer, (last[0] + 1) if last else 1, None,
                                    f"{have}, but seq {head.seq} was delivered"))
            broken.add(writer)
    for writer, head in (emitted() if emitted else {}).items():
        last = state.get(writer)
        if writer in broken or last is None:
            continue
        if last[0] > head.seq:
            findings.append(Finding("inserted", writer, last[0], last[2],
                                    f"the store goes beyond the chain head (seq {head.seq})"))
        elif last[0] == head.seq and last[1] != head.hash:
            findings.append(Finding("changed", writer, last[0], last[2], "event.hash differs from the chain head"))
    return findings


def _check_one(doc: Mapping, writer: str, seq: int, prev: str, stored_hash: str,
               last: tuple[int, str, str | None] | None, partial: bool, event_id: str | None) -> Finding | None:
    """Given one event and its writer's state so far, return the break it shows, or None."""
    if last is None:
        expected_seq, expected_prev = (seq, prev) if partial else (1, GENESIS)
    else:
        expected_seq, expected_prev = last[0] + 1, last[1]
    if last is not None and seq <= last[0]:
        return Finding("inserted", writer, seq, event_id, f"duplicate sequence number (after seq {last[0]})")
    if seq > expected_seq:
        missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
        return Finding("removed", writer, expected_seq, None, f"{missing} missing (next present is seq {seq})")
    if chain_hash(prev, writer, seq, doc) != stored_hash:
        differ = doc.get("store_columns_differ")
        reason = (f"the store's indexed columns ({', '.join(differ)}) differ from the stored document" if differ
                  else "content does not match event.hash")
        return Finding("changed", writer, seq, event_id, reason)
    if prev != expected_prev:
        if last is None:
            return Finding("inserted", writer, seq, event_id, "first event of the writer does not start the chain")
        # This event is intact but the previous one's hash was rewritten along with its content.
        return Finding("changed", writer, last[0], last[2],
                       f"event.hash was rewritten (seq {seq} still points at the original)")
    return None

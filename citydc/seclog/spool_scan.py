"""Read the few fields the shipper needs from a spool line, trusting it only if its chain hash verifies.

A spool line is the canonical JSON that ``chain.seal`` hashed, with two splices: ``"chain":{...}``
as the first key of ``citydc`` and ``"hash":"<64 hex>",`` as the first key of ``event``. Cutting
those two splices out again gives back the hashed bytes, so

    sha256(prev + "|" + writer + "|" + seq + "|" + line without the splices) == event.hash
    (with ``incarnation + "|"`` after the writer's ``"|"`` when the chain has an incarnation)

proves that every byte of the line is what the writer wrote (the splices themselves included:
prev, writer and seq are hashed, and the hash is compared). A changed, truncated or garbled line
fails that check, or the scan before it, and the caller then parses the line in full as before
(``spool._parse_line``), which decides exactly as it always did. So this is a shortcut for intact
lines only: a line whose hash verifies is the canonical encoding of an event that was validated
when it was emitted, which the full parse accepts with the same fields (tests compare both). Only
someone who edits the spool and recomputes the hash gets past it, as past the full parse; the chain
(the next event's prev, the chain head) still shows that edit in ``citydc log verify``.

Why the fields can be found by searching for byte strings: a quote inside a JSON string is escaped,
so a byte sequence starting and ending with an unescaped quote, such as ``"labels":{"site":"``,
occurs only as structure. In canonical (sorted) order the top level reads ``@timestamp``, ``citydc``
(the only free-form objects), ``ecs``, ``error``, ``event``, ``host``, ``labels``, ``message``, then
flat objects. So the last ``,"event":{"hash":"`` is the top-level event object (as in ``seal``), its
first ``"id":"`` is event.id (event fields are flat), and after it the first ``"labels":{"site":"``
is labels.site, which the validated model makes labels' only key, followed at once by ``message``.
Anything else (an older line shape, a writer id with characters JSON escapes) fails the scan and
takes the full parse.

The scan costs about as much as parsing the line (a third of it is the hash); the saving is around it:
no dicts to build, look up, walk or free (bench/seclog.py --null-client --compare-full-parse).
"""

from __future__ import annotations

import hashlib
import re

import orjson

__all__ = ["SpooledLine", "scan_line"]

# The line's start: @timestamp (validated: no quote or backslash), then the chain splice as orjson
# writes it, in this key order: writer (no quote or backslash, else the full parse decides), seq (JSON
# integers have no leading zero), prev; then "," if citydc has more keys, "}" if chain was its only one.
# The incarnation, when the chain has one, sits between writer and seq (chain.seal writes it there).
_HEAD = re.compile(rb'\{"@timestamp":"([^"\\]*)","citydc":\{"chain":\{"writer":"([^"\\]+)",'
                   rb'(?:"incarnation":"([0-9]{8}T[0-9]{6}Z-[0-9a-f]{8})",)?"seq":([1-9][0-9]{0,18}),'
                   rb'"prev":"([0-9a-f]{64})"\}([,}])')
_EVENT = b',"event":{"hash":"'
_ID = b'"id":"'
_SITE = b'"labels":{"site":"'
_MESSAGE = b'"},"message":"'
_sha256 = hashlib.sha256

class SpooledLine:
    """One intact spool line and what the shipper and the Elasticsearch store need of it: the bytes
    (sent as the document), the ids for the bulk action and the acknowledgement, the site (metrics)
    and the message (search words). ``event()`` parses the rest, for a store that wants it."""

    __slots__ = ("event_id", "hash", "incarnation", "line", "message", "seq", "site", "timestamp", "writer")

    def __init__(self, line: bytes, event_id: str, timestamp: str, writer: str, seq: int, hash: str,
                 site: str, message: str, incarnation: str | None = None):
        self.line = line
        self.event_id = event_id
        self.timestamp = timestamp
        self.writer = writer
        self.seq = seq
        self.hash = hash
        self.site = site
        self.message = message
        self.incarnation = incarnation

    @classmethod
    def of(cls, line: bytes, doc: dict) -> SpooledLine:
        """Given a line and its parsed event (which ``spool._parse_line`` checked), return its SpooledLine."""
        c = doc["citydc"]["chain"]
        return cls(line, doc["event"]["id"], doc["@timestamp"], c["writer"], c["seq"], doc["event"]["hash"],
                   doc["labels"]["site"], doc["message"], c.get("incarnation"))

    def event(self) -> dict:
        """Return the whole event, parsed from the line."""
        return orjson.loads(self.line)

    def __repr__(self) -> str:
        return f"SpooledLine({self.writer} seq {self.seq}, event.id {self.event_id})"


def scan_line(raw: bytes) -> SpooledLine | None:
    """Given one spool line, return its SpooledLine if the line is intact (its chain hash verifies), else None.

    None means "not proven intact here": the caller parses the line in full to decide.
    """
    head = _HEAD.match(raw)
    if head is None:
        return None
    timestamp, writer, incarnation, seq, prev, after = head.groups()
    # The hashed body: without the chain splice, and without "citydc" itself when chain was its only key.
    ts_end = len(timestamp) + 16  # just after the quote that closes @timestamp
    cut_from, cut_to = (ts_end + 11, head.end()) if after == b"," else (ts_end, head.end())
    ev = raw.rfind(_EVENT)
    if ev < cut_to or raw[ev + 82:ev + 84] != b'",':
        return None
    hsh = raw[ev + 18:ev + 82].decode("latin-1")  # never fails; equal to the hex digest only if it is one
    # One call over the joined pieces: cheaper than feeding them one by one.
    position = (prev, b"|", writer, b"|", seq, b"|") if incarnation is None else \
        (prev, b"|", writer, b"|", incarnation, b"|", seq, b"|")
    if _sha256(b"".join((*position, raw[:cut_from], raw[cut_to:ev + 10], raw[ev + 84:]))).hexdigest() != hsh:
        return None
    # Intact: what follows is the canonical encoding of a validated event, so the fields sit where
    # the model puts them. The checks below only guard against a line forged with a valid hash.
    at = raw.find(_ID, ev + 84)
    site_at = raw.find(_SITE, at)
    site_end = raw.find(b'"', site_at + 18)
    if at < 0 or site_at < 0 or raw[at + 38:at + 39] != b'"' or not raw.startswith(_MESSAGE, site_end):
        return None
    start = site_end + 14
    end = raw.find(b'"', start)
    try:
        if end > 0 and raw.find(b"\\", start, end) < 0:  # no escape before the first quote: it closes the message
            message = raw[start:end].decode()
        else:
            message = _escaped_string(raw, start)
            if message is None:
                return None
        return SpooledLine(raw, raw[at + 6:at + 38].decode(), timestamp.decode(), writer.decode(), int(seq), hsh,
                           raw[site_at + 18:site_end].decode(), message,
                           None if incarnation is None else incarnation.decode())
    except UnicodeDecodeError:
        return None  # only a line forged with a valid hash gets here


def _escaped_string(raw: bytes, start: int) -> str | None:
    """Given a line and where a JSON string's text starts, return the decoded string (None if unterminated)."""
    end = start
    while True:
        end = raw.find(b'"', end)
        if end < 0:
            return None
        backslashes = 0
        while raw[end - 1 - backslashes] == 0x5C:  # an odd run of backslashes escapes this quote
            backslashes += 1
        if backslashes % 2 == 0:
            break
        end += 1
    try:
        return orjson.loads(raw[start - 1:end + 1])
    except orjson.JSONDecodeError:
        return None

"""Binds from slapd's ``stats`` log, read incrementally.

A bind is spread over several lines of one connection: ``ACCEPT from IP=…`` (the only line with
the client address), ``BIND dn=… method=…`` and ``RESULT tag=97 err=N`` (the outcome); ``TLS
established`` or a StartTLS ``EXT`` marks the connection as encrypted. The parser keeps the open
connections' address and TLS flag (bounded: the oldest are dropped past ``MAX_CONNS``) and emits
one ``Bind`` per bind result.

slapd logs from several threads, and the listener's ``ACCEPT`` line is sometimes written after the
worker's ``BIND`` and ``RESULT`` of the same connection (seen in the lab under load: the ACCEPT's own
timestamp is the earlier one). A bind result on a connection whose ACCEPT has not been read yet is
held until that ACCEPT arrives (it gets the address) or the connection's ``closed`` line does (the
log began mid-connection: no address).

Two line shapes are read: ``slapd -d stats`` on stderr (``6b12fd85.026d243a 0x7fc… conn=…``, hex
epoch seconds) and syslog with an RFC 3339 time (``2026-11-26T03:50:06.944628+00:00 host
slapd[123]: conn=…``). Other lines are counted and skipped.

The reader resumes at the byte offset it stopped at (the log's inode and offset, the open
connections and pending binds are saved with the state); a log that was rotated (another inode)
or truncated (smaller than the offset) is read from its start.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["MAX_CONNS", "MAX_LINE", "RESTARTED", "Bind", "LogPosition", "StatsParser", "read_binds", "read_lines"]

MAX_CONNS = 100_000
# slapd's stats lines are a few hundred bytes (a BIND line holds one DN, at most a few KiB): a longer "line" is a
# log filled with NULs after a crash, or a file without newlines. It is skipped and counted, never held whole.
MAX_LINE = 64 * 1024
# A bind waits for its connection's ACCEPT line (slapd's threads sometimes write it after the bind) at most
# this long in log time, and at most this many per connection; then it goes on without an address. Without
# a limit, binds of a connection whose ACCEPT was never read (opened before the part of the log read, or
# before a rotation) waited until the connection closed: a long-lived connection's brute force went
# undetected for as long as it stayed open, and its binds filled memory.
HOLD_SECONDS = 60
MAX_HELD_PER_CONN = 1000
_HOLD = timedelta(seconds=HOLD_SECONDS)

_HEX = re.compile(r"^([0-9a-f]{8})\.([0-9a-f]{8}) \S+ (conn=.*)$")
_SYSLOG = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) \S+ slapd\[\d+\]: (conn=.*)$")
_BODY = re.compile(
    r"^conn=(?P<conn>\d+) (?:"
    r"fd=\d+ (?:ACCEPT from (?:IP=(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<ip4>[0-9.]+)):\d+|(?P<path>PATH=)\S+)"
    r"|(?P<closed>closed)|(?P<tls>TLS established))"
    r"|op=(?P<op>\d+) (?:BIND dn=\"(?P<dn>.*)\" (?P<kind>method|mech)=(?P<method>\S+)"
    r"|RESULT tag=97 err=(?P<err>\d+)|EXT oid=(?P<oid>\S+))"
    r")")
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
_METHODS = {"128": "simple", "163": "sasl"}


def _valid_ip(text: str | None) -> str | None:
    # A damaged line must not put a non-address into source.ip (the event would be refused).
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class Bind:
    when: datetime
    conn: int
    op: int
    dn: str
    source_ip: str | None
    code: int
    method: str | None
    tls: bool

    @property
    def success(self) -> bool:
        return self.code == 0

    @property
    def user(self) -> str:  # the detector's view (detect.Attempt)
        return self.dn

    origin = "ldap"


@dataclass
class StatsParser:
    """Feeds on stats log lines; keeps per-connection context; returns the binds they complete."""

    conns: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)  # conn -> {ip, tls}
    # OrderedDicts: at their caps the oldest entry goes, in O(1) (a plain dict's next(iter(d)) walks the holes of
    # earlier evictions: linear per eviction)
    pending: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)  # "conn/op" -> {dn, method}
    held: OrderedDict[int, list[Bind]] = field(default_factory=OrderedDict)  # conn -> binds awaiting its ACCEPT
    skipped: int = 0
    _latest: datetime | None = field(default=None, repr=False, compare=False)  # the newest line's time

    def feed(self, line: str) -> list[Bind]:
        """Given one log line, return the binds it completes (often none), after any held bind that waited
        too long for its ACCEPT line. Never raises on bad input."""
        binds = self._line(line)
        if self.held and self._latest is not None:
            horizon = self._latest - _HOLD
            expired: list[Bind] = []
            while self.held:  # the oldest held connection first (an OrderedDict: O(1) each)
                if next(iter(self.held.values()))[0].when >= horizon:
                    break
                expired += self.held.popitem(last=False)[1]
            if expired:
                return expired + binds
        return binds

    def _line(self, line: str) -> list[Bind]:
        m = _HEX.match(line)
        if m:
            when = datetime.fromtimestamp(int(m.group(1), 16) + int(m.group(2), 16) / 1e9, UTC)
            body = m.group(3)
        else:
            m = _SYSLOG.match(line)
            if not m:
                self.skipped += 1
                return []
            try:
                when = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                self.skipped += 1
                return []
            body = m.group(2)
        self._latest = when
        b = _BODY.match(body)
        if not b:
            return []  # a stats line of another kind (SRCH, MOD, UNBIND...): not an error
        conn = int(b["conn"])
        if b["ip4"] or b["ip6"] or b["path"]:
            ip = _valid_ip(b["ip4"] or b["ip6"])
            # A TLS line of this connection may already have been read (written out of order too).
            tls = self.conns.get(conn, {}).get("tls", False)
            self.conns[conn] = {"ip": ip, "tls": tls, "accepted": True}
            while len(self.conns) > MAX_CONNS:
                self.conns.popitem(last=False)
            return [replace(h, source_ip=ip, tls=h.tls or tls) for h in self.held.pop(conn, [])]
        if b["closed"]:
            self.conns.pop(conn, None)
            return self.held.pop(conn, [])
        if b["tls"]:  # TLS established (LDAPS, or after StartTLS)
            self.conns.setdefault(conn, {"ip": None, "tls": False})["tls"] = True
            return []
        key = f"{conn}/{b['op']}"
        if b["dn"] is not None:
            if b["kind"] == "method":
                self.pending[key] = {"dn": b["dn"], "method": _METHODS.get(b["method"], b["method"])}
                if len(self.pending) > MAX_CONNS:
                    self.pending.popitem(last=False)
            elif (p := self.pending.get(key)) is not None and not p["dn"]:
                # A SASL bind's BIND line has dn="" (method=163); the identity it authenticated as comes on the
                # ``mech=`` line slapd writes before a successful RESULT. Without it, a SASL login of a privileged
                # account outside working hours had no account to match.
                p["dn"] = b["dn"]
            return []
        if b["oid"] is not None:
            if b["oid"] == STARTTLS_OID:
                self.conns.setdefault(conn, {"ip": None, "tls": False})["tls"] = True
            return []
        code = int(b["err"])
        op = int(b["op"])
        if code == 14:  # SASL bind in progress: the bind is not over
            return []
        p = self.pending.pop(key, None)
        if p is None:
            return []  # a bind whose BIND line was before the part of the log we read
        c = self.conns.get(conn, {})
        bind = Bind(when, conn, op, p["dn"], c.get("ip"), code, p["method"], bool(c.get("tls")))
        if c.get("accepted"):
            return [bind]
        waiting = self.held.setdefault(conn, [])
        waiting.append(bind)
        released = [waiting.pop(0)] if len(waiting) > MAX_HELD_PER_CONN else []
        while len(self.held) > MAX_CONNS:  # bounded: the oldest give up waiting, without an address
            released += self.held.popitem(last=False)[1]
        return released

    def to_json(self) -> dict[str, Any]:
        return {"conns": {str(k): v for k, v in self.conns.items()}, "pending": self.pending,
                "held": {str(k): [_bind_json(b) for b in v] for k, v in self.held.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatsParser:
        conns = OrderedDict((int(k), dict(v)) for k, v in (data.get("conns") or {}).items())
        held = OrderedDict((int(k), [_bind_from_json(b) for b in v]) for k, v in (data.get("held") or {}).items())
        return cls(conns, OrderedDict(data.get("pending") or {}), held)


def _bind_json(b: Bind) -> dict[str, Any]:
    return {**asdict(b), "when": b.when.isoformat()}


def _bind_from_json(data: dict[str, Any]) -> Bind:
    return Bind(**{**data, "when": datetime.fromisoformat(data["when"])})


@dataclass
class LogPosition:
    inode: int | None = None
    offset: int = 0
    # A digest of the file's first line: a log truncated and written again in place (logrotate's copytruncate)
    # keeps its inode and may have grown past the offset by the next read; its first line tells it apart.
    head: str | None = None
    restarted: bool = False  # set when the log was rotated or truncated since the last read
    long_lines: list[int] = field(default_factory=list)  # byte offsets of the lines skipped as too long (this run)

    def to_json(self) -> dict[str, Any]:
        return {"inode": self.inode, "offset": self.offset, "head": self.head}

    @classmethod
    def from_json(cls, data: Any) -> LogPosition:
        """Given a saved position (or anything else: a damaged state), return it, or the start of a new file."""
        if not isinstance(data, dict):
            return cls()
        inode, offset, head = data.get("inode"), data.get("offset"), data.get("head")
        if (type(inode) is not int or type(offset) is not int or offset < 0
                or (head is not None and not isinstance(head, str))):
            return cls()
        return cls(inode, offset, head)


def read_binds(path: Path, pos: LogPosition, parser: StatsParser, max_bytes: int = 1 << 30) -> Iterator[Bind]:
    """Given the log, where reading stopped and the parser, yield the binds of the complete new lines.

    ``pos`` is advanced past each complete line as it is consumed (a partial last line is left for
    the next read). At most ``max_bytes`` are read per call, so one run is bounded. A line longer than
    ``MAX_LINE`` is skipped (its offset added to ``pos.long_lines``, counted in ``parser.skipped``)
    without being held whole. Raise OSError if the log cannot be opened.
    """
    lines = read_lines(path, pos, max_bytes)
    if next(lines) is RESTARTED:
        # Binds still waiting for their ACCEPT line will not get it from a new file.
        for held in parser.held.values():
            yield from held
        parser.conns.clear()
        parser.pending.clear()
        parser.held.clear()
    for _, line in lines:
        if line is None:
            parser.skipped += 1
        else:
            yield from parser.feed(line)


RESTARTED = (-1, None)  # read_lines' first item when the file is new to ``pos`` (rotated, truncated, first read)
_SAME_FILE = (-2, None)


def read_lines(path: Path, pos: LogPosition, max_bytes: int = 1 << 30) -> Iterator[tuple[int, str | None]]:
    """Given a log and where reading stopped, yield ``RESTARTED`` (the file is not the one ``pos`` was in, or
    was truncated: read from its start) or another marker first, then ``(byte offset, line)`` for each
    complete new line (decoded as UTF-8, invalid bytes replaced, without its newline), ``(offset, None)`` for
    a line longer than ``MAX_LINE`` (its offset added to ``pos.long_lines``; never held whole).

    ``pos`` is advanced past each line before it is yielded; a partial last line is left for the next read.
    At most ``max_bytes`` are read per call. Raise OSError if the log cannot be opened (before any item).
    """
    # Opened before the generator's first item, so OSError comes at once; without blocking, so a FIFO (or a
    # device) named as the log is refused rather than waited on forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return _lines(fh, st, pos, max_bytes)


def _first_line_digest(fh: Any) -> str | None:
    fh.seek(0)
    line = fh.readline(MAX_LINE + 1)
    return hashlib.sha256(line).hexdigest()[:16] if line.endswith(b"\n") else None


def _lines(fh: Any, st: os.stat_result, pos: LogPosition, max_bytes: int) -> Iterator[tuple[int, str | None]]:
    with fh:
        head = _first_line_digest(fh)
        rewritten = pos.offset > 0 and pos.head is not None and head != pos.head
        if pos.inode != st.st_ino or st.st_size < pos.offset or rewritten:
            pos.restarted = pos.inode is not None
            pos.inode, pos.offset = st.st_ino, 0
            pos.head = head
            yield RESTARTED
        else:
            pos.head = head
            yield _SAME_FILE
        fh.seek(pos.offset)
        budget = max_bytes
        held = b""  # the start of the line whose end is not read yet (at most MAX_LINE bytes)
        too_long = False  # that line is longer than MAX_LINE: dropped up to its end
        block_at = pos.offset  # offset of the block in the file
        while budget > 0:
            block = fh.read(min(budget, 1 << 20))
            if not block:
                return  # a partial last line is read again next time
            budget -= len(block)
            start = 0
            while (nl := block.find(b"\n", start)) >= 0:
                raw = b"" if too_long else held + block[start:nl + 1]
                line_at, pos.offset, start, held = pos.offset, block_at + nl + 1, nl + 1, b""
                if too_long or len(raw) > MAX_LINE:
                    too_long = False
                    pos.long_lines.append(line_at)
                    yield line_at, None
                    continue
                yield line_at, raw.decode("utf-8", "replace").rstrip("\r\n")  # CRLF: a log passed through Windows
            if not too_long:
                held += block[start:]
                if len(held) > MAX_LINE:
                    too_long, held = True, b""
            block_at += len(block)

"""Keycloak's login and admin events from its log (``sso:`` entries of kind ``log``), read incrementally.

Keycloak's ``jboss-logging`` event listener (on in every realm unless removed) writes one line per event
with the logger ``org.keycloak.events``: ``type="LOGIN_ERROR", realmId="…", realmName="city",
clientId="…", userId="…", ipAddress="…", error="…", <details>`` for a user event and
``operationType="CREATE", realmId="…", realmName="…", clientId="…", userId="…", ipAddress="…",
resourceType="…", resourcePath="…"`` for an admin event (the acting user's realm, client, id and address).
Since Keycloak 24 the values are quoted and sanitized: a quote inside a value is written ``\\"``, line
breaks and tabs become spaces, and a backslash is written as it is (measured on 26.5.6: a username
``back\\`` is logged ``username="back\\"``). So a value ends at the first quote that is followed by
``, name="`` or by the end of the line: a quote that belongs to a value always has a backslash before it,
so ``="`` never occurs inside one, and a value ending in a backslash is read right.

Successful events are logged at DEBUG unless the listener's level is raised
(``--spi-events-listener--jboss-logging--success-level=info``): without that only failures reach the log,
and a success after failures cannot be seen (docs/sso-audit.md).

Two file shapes (``format``):
- ``keycloak-json``: Quarkus JSON lines (``--log-file-output=json`` or ``--log-console-output=json``), with
  ``timestamp`` (RFC 3339), ``loggerName`` and ``message``;
- ``syslog``: a syslog file in RFC 3339 layout (rsyslog's ``RSYSLOG_FileFormat``: time, host, tag, then
  Keycloak's own pattern with ``[org.keycloak.events]``); the time is the syslog line's.

Each event becomes the ECS event a stored event of the admin API becomes (``kc_events.map_user_event`` /
``map_admin_event``), with the id ``<inode>-<first line's digest>:<byte offset>`` of its line: a line read
again after a crash is stored once, and a file truncated and rewritten in place gives new ids. Lines of
other loggers are passed over; an event line that cannot be read is counted and its byte offset kept for
the report. Admin events name users by id only (a log source has no API access). A trailing CR (a log
passed through Windows) is dropped with the newline.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from citydc.sso.authlog import LogPosition, read_lines
from citydc.sso.kc_events import KcItem, _key, map_admin_event, map_user_event
from citydc.sso.keycloak import ApiShapeError

__all__ = ["FORMATS", "EventLine", "KcLogReader", "parse_event", "parse_line"]

FORMATS = ("keycloak-json", "syslog")
LOGGER = "org.keycloak.events"
MAX_BAD = 100  # byte offsets of unreadable event lines kept for the report

# name="value" pairs: the value ends at a quote followed by ', name="' or by the end (see the docstring)
_PAIR = re.compile(r'(\w+)="(.*?)"(?:, (?=\w+=")|$)')
_BARE_QUOTE = re.compile(r'(?<!\\)"')  # a quote Keycloak would have escaped: the line is not its own
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)$")
_SYSLOG = re.compile(r"^(\S+) \S+ [^:\s]+: .*?\[org\.keycloak\.events\] \([^)]*\) (.*)$")
_USER_KEYS = frozenset({"type", "realmId", "realmName", "clientId", "userId", "ipAddress", "error",
                        "sessionId"})
_NULL = "null"  # Keycloak writes a missing value as the word null


class LineError(ValueError):
    """An ``org.keycloak.events`` line that does not hold an event; the message says what was expected."""


@dataclass(frozen=True)
class EventLine:
    """One event of the log: its time (epoch ms), realm, whether it is an admin event, and the event in the
    admin API's representation (what kc_events maps)."""

    time_ms: int
    realm: str
    admin: bool
    rep: dict[str, Any]


def parse_pairs(text: str) -> dict[str, str]:
    """Given the listener's message, return its ``name: value`` pairs (the first of a repeated name; the word
    null dropped). Raise LineError if the message is not a run of ``name="value"`` pairs."""
    out: dict[str, str] = {}
    at = 0
    for m in _PAIR.finditer(text):
        if m.start() != at:
            break
        at = m.end()
        name, value = m.group(1), m.group(2)
        if '"' in value:
            if _BARE_QUOTE.search(value):
                raise LineError(f"{name}: a quote in its value that Keycloak would have escaped")
            value = value.replace('\\"', '"')
        if name not in out and value != _NULL:
            out[name] = value
    if at != len(text) or not out:
        raise LineError(f'expected name="value" pairs (Keycloak 24 or later: quoted values), '
                        f"unreadable from character {at}")
    return out


@functools.lru_cache(maxsize=256)
def _second_ms(base: str, zone: str) -> int:
    # Events come many per second: the second (with its zone) is parsed once.
    when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    if when.year < 1970:
        raise LineError(f"time before 1970: {base}{zone}")
    return int(when.timestamp()) * 1000


def parse_time(text: str) -> int:
    """Given an RFC 3339 time (any number of fraction digits), return epoch milliseconds."""
    m = _TIME.match(text)
    if m is None:
        raise LineError(f"expected an RFC 3339 time with its zone, got {text[:40]!r}")
    try:
        return _second_ms(m.group(1), m.group(3)) + int((m.group(2) or "0")[:3].ljust(3, "0"))
    except ValueError as exc:
        raise LineError(f"time {text[:40]!r}: {exc}") from None


def parse_event(time_ms: int, message: str, event_id: str) -> EventLine:
    """Given the time and message of an ``org.keycloak.events`` line and an id for it, return the event."""
    pairs = parse_pairs(message)
    realm = pairs.get("realmName") or pairs.get("realmId")
    if not realm:
        raise LineError("no realmName or realmId")
    if "operationType" in pairs:
        rep: dict[str, Any] = {
            "time": time_ms, "id": event_id, "operationType": pairs["operationType"],
            "resourceType": pairs.get("resourceType"), "resourcePath": pairs.get("resourcePath"),
            "error": pairs.get("error"),
            "authDetails": {k: pairs[k] for k in ("realmId", "clientId", "userId", "ipAddress") if k in pairs}}
        return EventLine(time_ms, realm, True, rep)
    if "type" not in pairs:
        raise LineError("neither type (a user event) nor operationType (an admin event)")
    rep = {k: v for k, v in pairs.items() if k in _USER_KEYS}
    rep.update(time=time_ms, id=event_id, details={k: v for k, v in pairs.items() if k not in _USER_KEYS})
    return EventLine(time_ms, realm, False, rep)


def parse_line(line: str, fmt: str, event_id: str) -> EventLine | None:
    """Given one line of the log in ``fmt``, return its event, or None for a line of another logger or
    program. Raise LineError for an event line that cannot be read."""
    if fmt == "syslog":
        if "[org.keycloak.events]" not in line:
            return None
        m = _SYSLOG.match(line)
        if m is None:
            raise LineError("expected 'TIME HOST TAG: … [org.keycloak.events] (thread) message'")
        return parse_event(parse_time(m.group(1)), m.group(2), event_id)
    if LOGGER not in line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        if line.lstrip().startswith("{"):
            raise LineError("expected one JSON object per line") from None
        return None  # a line the JVM or kc.sh wrote beside the JSON log
    # Quarkus' default JSON names, or its ECS ones (--log-file-json-format=ecs)
    if not isinstance(obj, dict) or (obj.get("loggerName") or obj.get("log.logger")) != LOGGER:
        return None
    when, message = obj.get("timestamp") or obj.get("@timestamp"), obj.get("message")
    if not isinstance(when, str) or not isinstance(message, str):
        raise LineError("expected the strings timestamp and message")
    return parse_event(parse_time(when), message, event_id)


@dataclass
class KcLogReader:
    """Reads one Keycloak log from where the last run stopped and yields its events as ``KcItem``s."""

    source: str
    site: str
    path: Path
    fmt: str
    pos: LogPosition = field(default_factory=LogPosition)
    events: int = 0  # event lines read
    bad: int = 0  # event lines that could not be read
    bad_at: list[tuple[int, str]] = field(default_factory=list)  # (byte offset, why), the first MAX_BAD

    # The log is read ahead of the events' processing (the merge holds each feed's next event): the position
    # saved is the end of the last line whose event was processed (``done``), or where reading stopped
    # when everything read was processed. A crash between the two reads a few lines again, never loses one.
    _yielded_end: int = 0
    _done_end: int = 0

    def done(self) -> None:
        """The caller has processed the event last yielded."""
        self._done_end = self._yielded_end

    def saved_position(self) -> dict[str, Any]:
        offset = self.pos.offset if self._done_end == self._yielded_end else self._done_end
        return {"inode": self.pos.inode, "offset": offset, "head": self.pos.head}

    def items(self) -> Iterator[KcItem]:
        """Yield the new events in the order of the log. Raise OSError if the log cannot be opened."""
        lines = read_lines(self.path, self.pos)
        next(lines)  # rotated or not, the events of a new file are read from its start
        self._yielded_end = self._done_end = self.pos.offset
        source, site, fmt = self.source, self.site, self.fmt
        # The file is named by its inode and first line: a log truncated and written again in place, or a new
        # file on a freed inode, gives its lines other ids than the lines read before at the same offsets.
        file_id = f"{self.pos.inode}-{self.pos.head}"
        for at, line in lines:
            if line is None:
                continue  # too long: in pos.long_lines, reported by the caller
            event_id = f"{file_id}:{at}"
            try:
                ev = parse_line(line, fmt, event_id)
                if ev is None:
                    continue
                where = f"{self.path}:byte {at}"
                if ev.admin:
                    doc, t, eid = map_admin_event(ev.rep, realm=ev.realm, where=where, source=source, site=site,
                                                  names=None)
                    item = KcItem(_key(t), ev.realm, "admin-events", t, eid, doc, None)
                else:
                    doc, attempt, t, eid = map_user_event(ev.rep, realm=ev.realm, where=where, source=source,
                                                          site=site, names=None)
                    item = KcItem(_key(t), ev.realm, "events", t, eid, doc, attempt)
            except (LineError, ApiShapeError, ValueError) as exc:
                self.bad += 1
                if len(self.bad_at) < MAX_BAD:
                    self.bad_at.append((at, str(exc)[:200]))
                continue
            self.events += 1
            self._yielded_end = self.pos.offset
            yield item

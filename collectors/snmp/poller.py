"""SNMP requests with pysnmp 7 (asyncio): GETBULK walks of several table columns at once, and GETs.

``Session`` is the pysnmp path (SNMPv3, and v2c when asked); ``v2c.V2cSession`` is the fast v2c
path with the same two calls. The walk logic here runs on either: values may be pyasn1 objects or
the plain values of ``ber``, and ``to_python`` gives the same result for both.

The walk sends one GETBULK for all the columns still open, so a module of 20 columns and 54
interfaces costs a few round trips, not 20 walks. Every failure becomes a ``PollError`` with a
short, bounded ``reason`` (``timeout``, ``auth``, ``error_status``, ...) so the exporter can say
``citydc_snmp_up 0`` and why; nothing here lets an exception of pysnmp escape.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    usm3DESEDEPrivProtocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto import rfc1905

from citydc.collectors.snmp import ber
from citydc.config.models import SnmpV2c, SnmpV3

__all__ = ["MAX_REQUESTS", "MAX_ROWS", "PARTIAL_REASONS", "PollError", "Session", "WalkResult", "auth_data",
           "error_status_message", "parse_address", "rows_to_ask", "to_python"]

AUTH_PROTOCOLS = {"MD5": usmHMACMD5AuthProtocol, "SHA": usmHMACSHAAuthProtocol,
                  "SHA224": usmHMAC128SHA224AuthProtocol, "SHA256": usmHMAC192SHA256AuthProtocol,
                  "SHA384": usmHMAC256SHA384AuthProtocol, "SHA512": usmHMAC384SHA512AuthProtocol}
PRIV_PROTOCOLS = {"DES": usmDESPrivProtocol, "3DES": usm3DESEDEPrivProtocol, "AES": usmAesCfb128Protocol,
                  "AES192": usmAesCfb192Protocol, "AES256": usmAesCfb256Protocol}
# pysnmp error indications that mean "the agent rejected our credentials".
AUTH_FAILURES = {"WrongDigest", "UnknownUserName", "DecryptionError", "AuthenticationFailure",
                 "UnsupportedSecLevel", "UnknownSecurityName", "UnknownEngineID", "NotInTimeWindow",
                 "AuthenticationError"}
MAX_REQUESTS = 2000  # per walk: a misbehaving agent cannot keep a poll busy forever
# Rows per column and walk. An agent whose table never ends (OIDs that keep increasing inside the
# column) or a chassis with more interfaces than one scrape can export stops here with the
# reason ``too_many_rows``, and the rows read so far are exported.
MAX_ROWS = 10_000
# Failures of a request after the device already answered others: what was read is kept, flagged.
PARTIAL_REASONS = ("timeout", "decode", "truncated")
_END = (rfc1905.EndOfMibView, rfc1905.NoSuchObject, rfc1905.NoSuchInstance, ber.SnmpException)


class PollError(Exception):
    """A poll failed; ``reason`` is a short label-safe word, the message never holds a secret."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        # What the failed walk had sent and received before it gave up (the poll's scrape_requests
        # and scrape_varbinds count them: a timed-out poll was not silent).
        self.requests = 0
        self.varbinds = 0

    def after(self, requests: int, varbinds: int) -> PollError:
        """Given the requests sent and varbinds received before this error, record them; return self."""
        self.requests, self.varbinds = requests, varbinds
        return self


def error_status_message(name: str, index: int, oids: Sequence[tuple[int, ...]]) -> str:
    """Given an answer's error-status name, its error-index and the OIDs the request asked for, return the
    error's message, naming the OID asked for at that index (RFC 3416: the index is into the request), so
    the engineer sees which column to leave out of the module."""
    where = f" (asked for {'.'.join(map(str, oids[index - 1]))})" if 0 < index <= len(oids) else ""
    return f"agent answered {name} at varbind {index}{where}"


def parse_address(address: str, default_port: int = 161) -> tuple[str, int]:
    """Given ``host``, ``host:port`` or ``[v6]:port``, return (host, port). Raise ValueError if malformed."""
    from citydc.hostport import parse_host_port  # the project's one host:port parser

    return parse_host_port(address, default_port)


def auth_data(auth: SnmpV2c | SnmpV3, environ: Mapping[str, str] | None = None) -> CommunityData | UsmUserData:
    """Given an auth profile, return pysnmp's auth object with the secrets resolved.

    Raise citydc.secrets.SecretUnavailable if a referenced secret cannot be read.
    """
    if isinstance(auth, SnmpV2c):
        # v2c only when the config says so; SNMPv3 profiles exist for devices that support it.
        return CommunityData(auth.community.reveal(environ), mpModel=1)  # noqa: S508
    auth_key = auth.auth_key.reveal(environ) if auth.auth_key and auth.security_level != "noAuthNoPriv" else None
    priv_key = auth.priv_key.reveal(environ) if auth.priv_key and auth.security_level == "authPriv" else None
    return UsmUserData(
        auth.username, authKey=auth_key, privKey=priv_key,
        authProtocol=AUTH_PROTOCOLS[auth.auth_protocol] if auth_key else usmNoAuthProtocol,
        privProtocol=PRIV_PROTOCOLS[auth.priv_protocol] if priv_key else usmNoPrivProtocol)


def to_python(value: object) -> int | str | bytes | None:
    """Given an SNMP value, return int, bytes (octet strings), str (OIDs) or None (no such / end of view).

    Values from the fast v2c path (``ber``) are already int, bytes or str and pass through; pysnmp's
    pyasn1 objects are converted so both paths give the same result.
    """
    kind = type(value)
    if kind is int or kind is bytes or kind is str:
        return value  # type: ignore[return-value]
    if isinstance(value, _END):
        return None
    if isinstance(value, univ.OctetString):
        return value.asOctets()
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(map(str, value))
    return None


@dataclass
class WalkResult:
    """Column name -> {ifIndex: value}; scalars by OID; varbinds received; errors by reason."""

    columns: dict[str, dict[int, object]] = field(default_factory=dict)
    scalars: dict[tuple[int, ...], object] = field(default_factory=dict)
    varbinds: int = 0
    requests: int = 0
    errors: Counter = field(default_factory=Counter)


class Session:
    """One agent reached with one auth profile, sharing the exporter's SnmpEngine (SNMPv3, and v2c on request)."""

    path = "pysnmp"  # the value of the exporter's ``path`` label for polls on this session

    def __init__(self, engine: SnmpEngine, auth: CommunityData | UsmUserData, transport: UdpTransportTarget,
                 context_name: str = ""):
        self.engine = engine
        self.auth = auth
        self.transport = transport
        self.context = ContextData(contextName=context_name.encode()) if context_name else ContextData()

    @classmethod
    async def open(cls, engine: SnmpEngine, auth: CommunityData | UsmUserData, host: str, port: int,
                   timeout: float, retries: int, context_name: str = "") -> Session:
        """Return a session; raise PollError('resolve') if the host name does not resolve."""
        try:
            transport = await UdpTransportTarget.create((host, port), timeout=timeout, retries=retries)
        except Exception as exc:  # pysnmp wraps socket.gaierror in its own error types
            raise PollError("resolve", f"cannot resolve {host}: {exc}") from None
        return cls(engine, auth, transport, context_name)

    def close(self) -> None:
        """Nothing to release: the transport belongs to the shared SnmpEngine."""

    async def _request(self, coro, oids: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], object]]:
        try:
            ind, status, index, var_binds = await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a malformed or truncated response must not become a traceback
            raise PollError("decode", f"SNMP request failed: {type(exc).__name__}: {exc}") from None
        if ind:
            name = type(ind).__name__
            if name == "RequestTimedOut":
                raise PollError("timeout", "no SNMP response before timeout (down, filtered or wrong community)")
            if name in AUTH_FAILURES:
                raise PollError("auth", f"SNMPv3 authentication failed: {ind}")
            raise PollError("snmp_error", f"SNMP error: {ind}")
        if int(status):
            raise PollError("error_status", error_status_message(status.prettyPrint(), int(index), oids))
        return [(tuple(oid), value) for oid, value in var_binds]

    async def get_bulk(self, scalars: Sequence[tuple[int, ...]], columns: Sequence[tuple[int, ...]],
                       max_repetitions: int) -> list[tuple[tuple[int, ...], object]]:
        """Given non-repeater OIDs and repeated OIDs, return the GETBULK response varbinds in order."""
        oids = (*scalars, *columns)
        var_binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        return await self._request(bulk_cmd(self.engine, self.auth, self.transport, self.context,
                                            len(scalars), max_repetitions, *var_binds, lookupMib=False), oids)

    async def get(self, oids: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], object]]:
        """Given OIDs, return the GET response varbinds."""
        var_binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        return await self._request(get_cmd(self.engine, self.auth, self.transport, self.context, *var_binds,
                                           lookupMib=False), oids)


def rows_to_ask(left: int, max_repetitions: int) -> int:
    """Given how many rows a column is still expected to have (negative: it already has more than
    expected), return the max-repetitions of its next GETBULK.

    One row more than expected, so the same answer shows where the column really ends (the agent's
    next OID leaves the column) or that more rows exist; with 0 left, one row to check the end; once
    the expectation proved too low, plain ``max_repetitions``: the real count is unknown.
    """
    if left < 0:
        return max_repetitions
    return max(1, min(max_repetitions, left + 1))


async def walk_columns(session: Session, columns: Mapping[str, tuple[int, ...]], max_repetitions: int,
                       deadline: float, scalars: Sequence[tuple[int, ...]] = (),
                       known_indexes: Sequence[int] = (), row_hint: int | None = None) -> WalkResult:
    """Given table columns (name -> column OID), walk them together with GETBULK; return what was read.

    ``scalars`` go as non-repeaters in the first request (e.g. sysUpTime.0). Every column is walked to
    its end, as snmpbulkwalk does: a column ends only at the first OID outside it (or endOfMibView);
    an OID that does not increase ends that column with an error. ``known_indexes`` (sorted ifIndexes
    from an earlier walk) and ``row_hint`` (ifNumber.0, when the indexes are not known yet) only size
    the requests: they ask for the rows expected plus one, so a right expectation costs no request
    more than stopping at it, and a wrong one (an agent whose ifNumber disagrees with its ifTable, a
    new interface) costs requests, never rows. Raise PollError if the first request fails (nothing
    read) or when the budget is spent before the first answer; once rows were read, the budget
    running out ends the walk with the reason ``budget_exhausted`` and MAX_ROWS in a column ends
    that column with ``too_many_rows``: what was read is returned. A PollError carries the
    requests and varbinds of the walk (PollError.after).
    """
    result = WalkResult(columns={name: {} for name in columns})
    position = dict(columns)
    first = True
    known = list(known_indexes)
    hint = row_hint if row_hint is not None and row_hint > 0 else None
    while position and result.requests < MAX_REQUESTS:
        if time.monotonic() > deadline:
            if first:
                raise PollError("timeout", "poll ran out of its scrape budget").after(result.requests,
                                                                                     result.varbinds)
            result.errors["budget_exhausted"] += 1  # rows were read: keep them, flagged
            break
        names = list(position)
        reps = max_repetitions
        if known:
            reps = max(rows_to_ask(_known_left(known, position[n], columns[n]), max_repetitions) for n in names)
        elif hint is not None:
            reps = max(rows_to_ask(hint - len(result.columns[n]), max_repetitions) for n in names)
        sent_scalars = scalars if first else ()
        result.requests += 1  # counted when sent: a request that timed out was sent too
        try:
            # Non-repeaters are GETNEXTs: ask for the parent of each scalar (x.0) to get x.0 itself.
            var_binds = await session.get_bulk([o[:-1] for o in sent_scalars], [position[n] for n in names], reps)
        except PollError as exc:
            if exc.reason == "error_status" and "tooBig" in str(exc) and reps > 1:
                max_repetitions = max(1, reps // 2)  # the agent cannot fit the answer: ask for fewer rows
                continue
            if first or exc.reason not in PARTIAL_REASONS:
                raise exc.after(result.requests, result.varbinds) from None
            # Later requests failing after data arrived: keep what was read, mark it partial.
            result.errors[exc.reason] += 1
            break
        result.varbinds += len(var_binds)
        for wanted, (oid, value) in zip(sent_scalars, var_binds[:len(sent_scalars)], strict=False):
            if oid == wanted:
                result.scalars[oid] = to_python(value)
            else:
                result.errors["no_such"] += 1
        first = False
        rows = var_binds[len(sent_scalars):]
        if not rows:
            result.errors["truncated"] += 1
            break
        closed: set[str] = set()
        width = len(names)
        for i, (oid, value) in enumerate(rows):
            name = names[i % width]
            if name in closed:
                continue
            col = columns[name]
            if (value is ber.END_OF_MIB_VIEW or isinstance(value, rfc1905.EndOfMibView) or oid[:len(col)] != col
                    or len(oid) <= len(col)):
                closed.add(name)
                continue
            if oid <= position[name]:
                result.errors["oid_not_increasing"] += 1
                closed.add(name)
                continue
            position[name] = oid
            if len(oid) != len(col) + 1:
                # IF-MIB rows are indexed by one ifIndex; a longer index (a broken agent) is skipped, not
                # mixed into the ifIndexes, where it would fail the whole poll. The walk goes on past it.
                result.errors["bad_index"] += 1
                continue
            converted = to_python(value)
            if converted is None:
                result.errors["no_such"] += 1
                continue
            cells = result.columns[name]
            cells[oid[len(col)]] = converted
            if len(cells) >= MAX_ROWS:
                result.errors["too_many_rows"] += 1
                closed.add(name)
        for name in closed:
            position.pop(name, None)
    return result


def _known_left(known: Sequence[int], position: tuple[int, ...], column: tuple[int, ...]) -> int:
    """Given sorted known ifIndexes and where a column's walk stands, return the known rows after it
    (-1 when the walk is already past the last known row: there are more rows than known)."""
    at = position[len(column)] if len(position) > len(column) else -1
    if at > known[-1]:
        return -1
    return len(known) - bisect.bisect_right(known, at)


async def get_columns(session: Session, columns: Mapping[str, tuple[int, ...]], indexes: Sequence[int],
                      deadline: float, per_request: int = 40) -> WalkResult:
    """Given columns and the ifIndexes wanted, GET exactly those cells; return what was read."""
    result = WalkResult(columns={name: {} for name in columns})
    cells = [(name, idx) for name in columns for idx in indexes]
    for start in range(0, len(cells), per_request):
        if time.monotonic() > deadline:
            raise PollError("timeout", "poll ran out of its scrape budget").after(result.requests, result.varbinds)
        chunk = cells[start:start + per_request]
        result.requests += 1
        try:
            var_binds = await session.get([(*columns[name], idx) for name, idx in chunk])
        except PollError as exc:
            raise exc.after(result.requests, result.varbinds) from None
        result.varbinds += len(var_binds)
        for (name, idx), (_oid, value) in zip(chunk, var_binds, strict=False):
            converted = to_python(value)
            if converted is None:
                result.errors["no_such"] += 1
            else:
                result.columns[name][idx] = converted
    return result

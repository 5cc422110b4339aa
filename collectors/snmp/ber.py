"""A small, strict BER codec for the SNMPv2c hot path: GET/GETBULK requests out, Response-PDUs in.

pysnmp decodes every response through pyasn1, which builds a typed object per tag and per value;
that was about 70 % of the exporter's CPU. This module decodes a v2c Response in one pass over the
bytes straight into plain Python values, with exactly the results ``poller.to_python`` gives for
pysnmp's objects (a property test checks it on messages pysnmp encodes):

* INTEGER, Counter32, Gauge32, TimeTicks, Counter64 → ``int`` (range-checked as pysnmp does);
* OCTET STRING, IpAddress (4 octets), Opaque, NULL → ``bytes``; OBJECT IDENTIFIER value → dotted ``str``;
* noSuchObject, noSuchInstance, endOfMibView → the singletons below;
* varbind names → OID tuples.

Anything else (indefinite or overlong lengths, unknown tags, trailing bytes, a value out of its
type's range) raises ``BerError`` naming the offset and what was expected; ``reason`` is
``truncated`` when the data ends early and ``decode`` otherwise. Nothing here ever logs or
returns the community in an error. SNMPv3 stays with pysnmp (USM needs its engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["END_OF_MIB_VIEW", "ERROR_STATUS", "NO_SUCH_INSTANCE", "NO_SUCH_OBJECT", "BerError", "Response",
           "SnmpException", "decode_response", "encode_get", "encode_get_bulk", "encode_oid"]

VERSION_2C = 1
GET, GET_BULK, RESPONSE = 0xA0, 0xA5, 0xA2
SEQUENCE, INTEGER, OCTET_STRING, NULL, OID = 0x30, 0x02, 0x04, 0x05, 0x06
IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46
INT32_MIN, INT32_MAX, UINT32_MAX, UINT64_MAX = -(2**31), 2**31 - 1, 2**32 - 1, 2**64 - 1
MAX_SUBIDS = 128  # RFC 2578 section 3.5: at most 128 sub-identifiers
ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
                "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
                "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
                "inconsistentName")


class BerError(ValueError):
    """The bytes are not a well-formed SNMPv2c message; ``reason`` is ``truncated`` or ``decode``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SnmpException:
    """One of the three SNMPv2 exception values a varbind can carry instead of a value."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NO_SUCH_OBJECT = SnmpException("noSuchObject")
NO_SUCH_INSTANCE = SnmpException("noSuchInstance")
END_OF_MIB_VIEW = SnmpException("endOfMibView")
_EXCEPTIONS = {0x80: NO_SUCH_OBJECT, 0x81: NO_SUCH_INSTANCE, 0x82: END_OF_MIB_VIEW}
_UNSIGNED_MAX = {COUNTER32: UINT32_MAX, GAUGE32: UINT32_MAX, TIMETICKS: UINT32_MAX, COUNTER64: UINT64_MAX}
_TYPE_NAMES = {COUNTER32: "Counter32", GAUGE32: "Gauge32", TIMETICKS: "TimeTicks", COUNTER64: "Counter64"}


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[tuple[int, ...], object]]

    @property
    def error_name(self) -> str:
        s = self.error_status
        return ERROR_STATUS[s] if 0 <= s < len(ERROR_STATUS) else f"error-status {s}"


# -- encoding (requests) ----------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    # Minimal two's complement, as pyasn1 writes it: one sign bit more than the magnitude needs.
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return _tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_oid(oid: Sequence[int]) -> bytes:
    """Given an OID as integers, return its BER encoding (tag and length included).

    Raise ValueError if it has fewer than two arcs, the first two are out of range, or a sub-identifier is negative.
    """
    if len(oid) < 2 or not 0 <= oid[0] <= 2 or (oid[0] < 2 and not 0 <= oid[1] <= 39):
        raise ValueError(f"OID {'.'.join(map(str, oid))!r}: expected at least two arcs, first 0-2")
    body = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0:
            raise ValueError(f"OID {'.'.join(map(str, oid))!r}: negative sub-identifier")
        if arc < 0x80:
            body.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(OID, bytes(body))


def _request(pdu_tag: int, community: bytes, request_id: int, a: int, b: int, oids: Sequence[Sequence[int]]) -> bytes:
    null = b"\x05\x00"
    varbinds = b"".join(_tlv(SEQUENCE, encode_oid(o) + null) for o in oids)
    pdu = _tlv(pdu_tag, _integer(request_id) + _integer(a) + _integer(b) + _tlv(SEQUENCE, varbinds))
    return _tlv(SEQUENCE, _integer(VERSION_2C) + _tlv(OCTET_STRING, community) + pdu)


def encode_get(community: bytes, request_id: int, oids: Sequence[Sequence[int]]) -> bytes:
    """Given the community, a request-id and OIDs, return a v2c GetRequest message."""
    return _request(GET, community, request_id, 0, 0, oids)


def encode_get_bulk(community: bytes, request_id: int, non_repeaters: int, max_repetitions: int,
                    oids: Sequence[Sequence[int]]) -> bytes:
    """Given the community, a request-id, non-repeaters, max-repetitions and OIDs, return a v2c GetBulkRequest."""
    return _request(GET_BULK, community, request_id, non_repeaters, max_repetitions, oids)


# -- decoding (responses) ---------------------------------------------------------------------------------


def _header(data: bytes, pos: int, end: int, expected: int, what: str) -> tuple[int, int]:
    """Given the offset of a TLV, check its tag; return (offset of its contents, offset past it)."""
    if pos + 2 > end:
        raise BerError("truncated", f"BER data ends at offset {end}, expected {what} at offset {pos}")
    tag = data[pos]
    if tag != expected:
        raise BerError("decode", f"offset {pos}: expected {what} (tag 0x{expected:02x}), got tag 0x{tag:02x}")
    return _extent(data, pos + 1, end, what)


def _extent(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Given the offset of a length, return (offset of the contents, offset past them)."""
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise BerError("decode", f"offset {pos - 1}: {what} has an indefinite length, SNMP requires definite")
    else:
        n = first & 0x7F
        if n > 4:
            raise BerError("decode", f"offset {pos - 1}: {what} has a {n}-octet length, expected at most 4")
        if pos + n > end:
            raise BerError("truncated", f"BER data ends at offset {end} inside the length of {what}")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise BerError("truncated", f"offset {pos}: {what} needs {length} octets, only {end - pos} left")
    return pos, pos + length


def _int_at(data: bytes, pos: int, end: int, what: str, low: int, high: int) -> tuple[int, int]:
    start, stop = _header(data, pos, end, INTEGER, what)
    value = int.from_bytes(data[start:stop], "big", signed=True)
    if not low <= value <= high:
        raise BerError("decode", f"offset {pos}: {what} {value} out of range {low}..{high}")
    return value, stop


def _oid(raw: bytes, pos: int) -> tuple[int, ...]:
    """Given an OID's contents (offset ``pos`` for errors), return its arcs."""
    if not raw:
        raise BerError("decode", f"offset {pos}: empty OBJECT IDENTIFIER")
    if raw.isascii():  # every sub-identifier below 128: the common case, decoded by C code
        first = raw[0]
        head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
        arcs = head + tuple(raw[1:])
    else:
        subids = []
        value = 0
        fresh = True
        for octet in raw:
            if fresh and octet == 0x80:
                raise BerError("decode", f"offset {pos}: OBJECT IDENTIFIER sub-identifier starts with 0x80")
            value = (value << 7) | (octet & 0x7F)
            fresh = octet < 0x80
            if fresh:
                if value > UINT32_MAX and subids:
                    raise BerError("decode", f"offset {pos}: OBJECT IDENTIFIER sub-identifier above 2^32-1")
                subids.append(value)
                value = 0
        if not fresh:
            raise BerError("truncated", f"offset {pos}: OBJECT IDENTIFIER ends inside a sub-identifier")
        first = subids[0]
        head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
        arcs = head + tuple(subids[1:])
    if len(arcs) > MAX_SUBIDS:
        raise BerError("decode", f"offset {pos}: OBJECT IDENTIFIER has {len(arcs)} arcs, at most {MAX_SUBIDS}")
    return arcs


def _value(tag: int, raw: bytes, pos: int) -> object:
    """Given a varbind value's tag and contents (offset ``pos`` for errors), return its Python value."""
    limit = _UNSIGNED_MAX.get(tag)
    if limit is not None:
        value = int.from_bytes(raw, "big", signed=True)
        if not 0 <= value <= limit:
            raise BerError("decode", f"offset {pos}: {_TYPE_NAMES[tag]} value {value} out of range 0..{limit}")
        return value
    if tag in (OCTET_STRING, OPAQUE):
        return raw
    if tag == INTEGER:
        value = int.from_bytes(raw, "big", signed=True)
        if not INT32_MIN <= value <= INT32_MAX:
            raise BerError("decode", f"offset {pos}: Integer32 value {value} out of range")
        return value
    exception = _EXCEPTIONS.get(tag)
    if exception is not None or tag == NULL:
        if raw:
            raise BerError("decode", f"offset {pos}: tag 0x{tag:02x} must be empty, has {len(raw)} octets")
        return exception if exception is not None else b""
    if tag == IP_ADDRESS:
        if len(raw) != 4:
            raise BerError("decode", f"offset {pos}: IpAddress has {len(raw)} octets, expected 4")
        return raw
    if tag == OID:
        return ".".join(map(str, _oid(raw, pos)))
    raise BerError("decode", f"offset {pos}: unknown varbind value tag 0x{tag:02x}")


def decode_response(data: bytes) -> Response:
    """Given one UDP datagram, return the v2c Response it holds.

    Raise BerError if it is not exactly one well-formed SNMPv2c Response-PDU message.
    """
    end = len(data)
    start, stop = _header(data, 0, end, SEQUENCE, "SNMP message SEQUENCE")
    if stop != end:
        raise BerError("decode", f"offset {stop}: {end - stop} octets after the SNMP message")
    version, pos = _int_at(data, start, stop, "version", INT32_MIN, INT32_MAX)
    if version != VERSION_2C:
        raise BerError("decode", f"offset {start}: SNMP version field {version}, expected 1 (v2c)")
    _community_start, pos = _header(data, pos, stop, OCTET_STRING, "community OCTET STRING")
    pdu_start, pdu_stop = _header(data, pos, stop, RESPONSE, "Response-PDU")
    if pdu_stop != stop:
        raise BerError("decode", f"offset {pdu_stop}: octets after the Response-PDU")
    request_id, pos = _int_at(data, pdu_start, pdu_stop, "request-id", INT32_MIN, INT32_MAX)
    error_status, pos = _int_at(data, pos, pdu_stop, "error-status", INT32_MIN, INT32_MAX)
    error_index, pos = _int_at(data, pos, pdu_stop, "error-index", 0, INT32_MAX)
    pos, list_stop = _header(data, pos, pdu_stop, SEQUENCE, "variable-bindings SEQUENCE")
    if list_stop != pdu_stop:
        raise BerError("decode", f"offset {list_stop}: octets after the variable-bindings")
    varbinds = []
    append = varbinds.append
    while pos < list_stop:
        vb_start, vb_stop = _header(data, pos, list_stop, SEQUENCE, "VarBind SEQUENCE")
        name_start, name_stop = _header(data, vb_start, vb_stop, OID, "VarBind name OBJECT IDENTIFIER")
        name = _oid(data[name_start:name_stop], name_start)
        if name_stop + 2 > vb_stop:
            raise BerError("truncated", f"offset {name_stop}: VarBind ends before its value")
        tag = data[name_stop]
        value_start, value_stop = _extent(data, name_stop + 1, vb_stop, "VarBind value")
        if value_stop != vb_stop:
            raise BerError("decode", f"offset {value_stop}: octets after the VarBind value")
        append((name, _value(tag, data[value_start:value_stop], value_start)))
        pos = vb_stop
    return Response(request_id, error_status, error_index, varbinds)

"""IPFIX (RFC 7011): message header, template sets and options template sets, with
enterprise-specific elements, variable-length fields and template withdrawal.
"""

from __future__ import annotations

import struct

from citydc.collectors.netflow.records import Malformed

__all__ = ["HEADER_LEN", "OPTIONS_SET", "TEMPLATE_SET", "Withdrawal", "parse_header", "parse_templates"]

HEADER_LEN = 16
TEMPLATE_SET = 2
OPTIONS_SET = 3
_HEADER = struct.Struct("!HHIII")
_PAIR = struct.Struct("!HH")
_PEN = struct.Struct("!I")


class Withdrawal(int):
    """A template id being withdrawn (a template record with field count 0)."""


def parse_header(data: bytes) -> int:
    """Given an IPFIX message, return its observation domain id.

    Raise Malformed('truncated_header') if shorter than the header, 'length_mismatch' if the
    header's length field is not the datagram's size.
    """
    if len(data) < HEADER_LEN:
        raise Malformed("truncated_header", f"IPFIX message of {len(data)} bytes")
    _, length, _, _, domain = _HEADER.unpack_from(data)
    if length != len(data):
        raise Malformed("length_mismatch", f"IPFIX length field {length} for a datagram of {len(data)} bytes")
    return domain


def parse_templates(data: bytes, start: int, end: int, options: bool
                    ) -> list[tuple[int, list[tuple[int, int, int]], int] | Withdrawal]:
    """Given a (options) template set body data[start:end], return its records: each either
    (template id, [(enterprise number, element id, length)], scope field count) or a Withdrawal.

    Raise Malformed('bad_template') if a template id is below 256 (other than the withdraw-all
    id), a scope count is 0 or above the field count, or fields run past the set.
    """
    out: list = []
    pos = start
    while end - pos >= 4:
        tid, count = _PAIR.unpack_from(data, pos)
        pos += 4
        if count == 0:
            # Withdrawal: a single template id, or the set id to withdraw all (§8.1).
            if tid < 256 and tid != (OPTIONS_SET if options else TEMPLATE_SET):
                raise Malformed("bad_template", f"IPFIX withdrawal of template {tid}")
            out.append(Withdrawal(tid))
            continue
        if tid < 256:
            raise Malformed("bad_template", f"IPFIX template id {tid} below 256")
        scope = 0
        if options:
            if end - pos < 2:
                raise Malformed("bad_template", f"IPFIX options template {tid} truncated")
            (scope,) = struct.unpack_from("!H", data, pos)
            pos += 2
            if scope == 0 or scope > count:
                raise Malformed("bad_template", f"IPFIX options template {tid}: scope count {scope} of {count}")
        fields = []
        for _ in range(count):
            if end - pos < 4:
                raise Malformed("bad_template", f"IPFIX template {tid}: {count} fields run past the set")
            element, length = _PAIR.unpack_from(data, pos)
            pos += 4
            enterprise = 0
            if element & 0x8000:
                if end - pos < 4:
                    raise Malformed("bad_template", f"IPFIX template {tid}: enterprise number past the set")
                (enterprise,) = _PEN.unpack_from(data, pos)
                enterprise = enterprise or -2  # E bit with PEN 0: still not an IANA element
                pos += 4
                element &= 0x7FFF
            fields.append((enterprise, element, length))
        out.append((tid, fields, scope))
    return out

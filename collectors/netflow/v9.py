"""NetFlow v9 (RFC 3954): header, template flowsets and options template flowsets.

The header's ``count`` is not trusted: softflowd puts the number of data records there, RFC
3954 the number of all records, and some flowsets are unpadded, so flowsets are walked by their
own length fields (see shared/notes/PLATFORM.md §7).
"""

from __future__ import annotations

import struct

from citydc.collectors.netflow.records import Malformed

__all__ = ["HEADER_LEN", "OPTIONS_SET", "SCOPE", "TEMPLATE_SET", "parse_header", "parse_options_templates",
           "parse_templates"]

HEADER_LEN = 20
# RFC 3954 has no variable-length fields: a length of 65535 (IPFIX's variable-length marker) is a
# 65535-byte field, which no datagram can carry.
_IPFIX_VARIABLE = 65535
TEMPLATE_SET = 0
OPTIONS_SET = 1
SCOPE = -1  # enterprise marker of v9 scope fields: their type numbers are a separate namespace
_HEADER = struct.Struct("!HHIIII")
_PAIR = struct.Struct("!HH")
_TRIPLE = struct.Struct("!HHH")


def parse_header(data: bytes) -> int:
    """Given a v9 datagram, return its source id. Raise Malformed('truncated_header') if too short."""
    if len(data) < HEADER_LEN:
        raise Malformed("truncated_header", f"v9 datagram of {len(data)} bytes")
    return _HEADER.unpack_from(data)[5]


def parse_templates(data: bytes, start: int, end: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Given a template flowset body data[start:end], return [(template id, fields)].

    Raise Malformed('bad_template') if a template id is below 256, has no fields, its fields run
    past the flowset or a field has length 65535.
    """
    out = []
    pos = start
    while end - pos >= 4:
        tid, count = _PAIR.unpack_from(data, pos)
        pos += 4
        if tid < 256 or count == 0 or pos + 4 * count > end:
            raise Malformed("bad_template", f"v9 template {tid} with {count} fields in a {end - start}-byte set")
        fields = [(0, *_PAIR.unpack_from(data, pos + 4 * i)) for i in range(count)]
        pos += 4 * count
        _fixed_lengths(tid, fields)
        out.append((tid, fields))
    return out


def parse_options_templates(data: bytes, start: int, end: int) -> list[tuple[int, list[tuple[int, int, int]], int]]:
    """Given an options template flowset body, return [(template id, fields, scope field count)].

    Scope fields are marked with enterprise SCOPE. Raise Malformed('bad_template') if the
    scope and option lengths are not multiples of 4 or run past the flowset, or a field has
    length 65535.
    """
    out = []
    pos = start
    while end - pos >= 6:
        tid, scope_len, option_len = _TRIPLE.unpack_from(data, pos)
        pos += 6
        if (tid < 256 or scope_len % 4 or option_len % 4 or scope_len == 0
                or pos + scope_len + option_len > end):
            raise Malformed("bad_template", f"v9 options template {tid} (scope {scope_len}, options {option_len})")
        n_scope = scope_len // 4
        fields = [((SCOPE if i < n_scope else 0), *_PAIR.unpack_from(data, pos + 4 * i))
                  for i in range((scope_len + option_len) // 4)]
        pos += scope_len + option_len
        _fixed_lengths(tid, fields)
        out.append((tid, fields, n_scope))
        # Options templates are padded to 4 bytes; whatever is left is padding.
        pos += (-(pos - start)) % 4
    return out


def _fixed_lengths(tid: int, fields: list[tuple[int, int, int]]) -> None:
    # compile_template would read 65535 as IPFIX's variable length: a v9 template must not reach it.
    for _, element, length in fields:
        if length == _IPFIX_VARIABLE:
            raise Malformed("bad_template", f"v9 template {tid}: field {element} of length 65535 (v9 has no "
                                            "variable-length fields)")

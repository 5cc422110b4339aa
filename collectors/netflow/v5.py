"""NetFlow v5: the fixed 24-byte header and the fixed 48-byte record, as a template.

A v5 record is just a template that never changes, so it goes through the same bulk path as
v9 and IPFIX records.
"""

from __future__ import annotations

import struct

from citydc.collectors.netflow.decode import compile_template
from citydc.collectors.netflow.records import Malformed

__all__ = ["HEADER_LEN", "MAX_COUNT", "RECORD_LEN", "TEMPLATE", "parse_header"]

HEADER_LEN = 24
RECORD_LEN = 48
MAX_COUNT = 30  # Cisco's limit; softflowd and nfcapd use it too
_HEADER = struct.Struct("!HHIIIIBBH")

# (enterprise, IANA element id, length) in v5 record order; 210 is paddingOctets.
TEMPLATE = compile_template(0, [
    (0, 8, 4), (0, 12, 4), (0, 15, 4), (0, 10, 2), (0, 14, 2), (0, 2, 4), (0, 1, 4), (0, 22, 4), (0, 21, 4),
    (0, 7, 2), (0, 11, 2), (0, 210, 1), (0, 6, 1), (0, 4, 1), (0, 5, 1), (0, 16, 2), (0, 17, 2), (0, 9, 1),
    (0, 13, 1), (0, 210, 2),
])
assert TEMPLATE.record_len == RECORD_LEN


def parse_header(data: bytes) -> tuple[int, int]:
    """Given a v5 datagram, return (record count, sampling rate; 1 when not sampled).

    Raise Malformed if the datagram is shorter than the header ('truncated_header') or its
    size is not exactly header + count records ('length_mismatch').
    """
    if len(data) < HEADER_LEN:
        raise Malformed("truncated_header", f"v5 datagram of {len(data)} bytes")
    _, count, _, _, _, _, _, _, sampling = _HEADER.unpack_from(data)
    if count == 0 or count > MAX_COUNT or len(data) != HEADER_LEN + count * RECORD_LEN:
        raise Malformed("length_mismatch", f"v5 count {count} for a datagram of {len(data)} bytes")
    # Top 2 bits: sampling mode; low 14 bits: the interval (0 = not sampled).
    interval = sampling & 0x3FFF
    return count, max(interval, 1)

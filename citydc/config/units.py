"""Bit rates with their unit, as people write them in ``citydc.yaml`` (``100 Mbit/s``, ``1Gbps``).

Decimal (SI) prefixes, as network links are sold: 1 Mbit/s = 1,000,000 bit/s. Bytes are refused
with a hint, since a committed rate in MB/s would be read eight times too small.
"""

from __future__ import annotations

import re

__all__ = ["format_bit_rate", "parse_bit_rate"]

_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(bit/s|bps|b/s)\s*$")
_BYTES = re.compile(r"^\s*\d+(?:\.\d+)?\s*[kKmMgGtT]?(B/s|Bps|byte/s|bytes/s)\s*$")
_SHOWN = (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3))


def parse_bit_rate(text: str) -> float:
    """Given ``100 Mbit/s`` (also ``100Mbps``, ``1.5 Gbit/s``, ``800 kbit/s``), return bits per second.

    Raise ValueError, saying what is expected, if the text is not a bit rate with a unit.
    """
    if _BYTES.match(text):
        raise ValueError(f"{text!r} is in bytes; give the rate in bits, e.g. '100 Mbit/s'")
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"expected a bit rate with its unit, e.g. '100 Mbit/s' or '1 Gbit/s' "
                         f"(units bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s; decimal), got {text!r}")
    value = float(m.group(1)) * _PREFIX[m.group(2).lower()]
    if value <= 0:
        raise ValueError(f"a committed rate must be above 0, got {text!r}")
    return value


def format_bit_rate(bps: float | None, missing: str = "-") -> str:
    """Given bits per second, return ``123.4 Mbit/s`` (three significant figures at least); ``missing`` for None."""
    if bps is None:
        return missing
    for unit, scale in _SHOWN:
        if abs(bps) >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bit/s"

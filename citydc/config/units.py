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
    """Given bits per second, return ``123.4 Mbit/s``, ``1.05 Gbit/s`` (three significant figures at least: a
    1.049 Gbit/s 95th percentile must not read as the 1.0 Gbit/s it exceeds); ``missing`` for None. The unit is
    chosen after rounding: 999.96 Mbit/s is ``1.00 Gbit/s``, not ``1000.0 Mbit/s``."""
    if bps is None:
        return missing
    larger = None
    for unit, scale in (*_SHOWN, ("bit/s", 1.0)):
        if abs(bps) >= scale or unit == "bit/s":
            value = bps / scale
            decimals = 0 if unit == "bit/s" else 2 if abs(round(value, 2)) < 10 else 1
            if larger is not None and abs(round(value, decimals)) >= 1000:
                value, unit, decimals = bps / larger[1], larger[0], 2  # rounding reached the next unit
            return f"{value:.{decimals}f} {unit}"
        larger = (unit, scale)
    return f"{bps:.0f} bit/s"  # pragma: no cover - the loop always returns at bit/s

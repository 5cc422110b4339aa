"""A streaming LDIF reader for ``ldapsearch -LLL -o ldif-wrap=no`` output.

Entries are separated by blank lines; ``name: value`` is text, ``name:: value`` base64 (slapd
sends userPassword and any non-printable value that way). Continuation lines (a leading space)
are joined, so wrapped LDIF works too, only slower. Comment lines are skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator

__all__ = ["LdifError", "parse"]


class LdifError(ValueError):
    """A line is not LDIF; the message names its number (and never prints a value)."""


def _unfold(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    pending: str | None = None
    start = 0
    n = 0
    for n, line in enumerate(lines, 1):
        if line.startswith(" ") and pending is not None:
            pending += line[1:]
            continue
        if pending is not None:
            yield start, pending
        pending, start = line, n
    if pending is not None:
        yield start, pending


def parse(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Given LDIF lines, yield (dn, {lowercase attribute: [values]}) per entry.

    Raise LdifError naming the line when a line has no ``:`` or a base64 value is invalid.
    """
    dn: str | None = None
    attrs: dict[str, list[str]] = {}
    for n, line in _unfold(lines):
        if not line:
            if dn is not None:
                yield dn, attrs
            dn, attrs = None, {}
            continue
        if line[0] == "#":
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise LdifError(f"line {n}: expected 'attribute: value'")
        if value[:1] == ":":
            try:
                value = base64.b64decode(value[1:].strip(), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                raise LdifError(f"line {n}: attribute {name}: invalid base64 value") from None
        elif value[:1] == " ":
            value = value[1:]
        if dn is None:
            if name.lower() != "dn":
                raise LdifError(f"line {n}: expected 'dn:' to start an entry, got {name!r}")
            dn = value
            continue
        key = name.lower()
        got = attrs.get(key)
        if got is None:
            attrs[key] = [value]
        else:
            got.append(value)
    if dn is not None:
        yield dn, attrs

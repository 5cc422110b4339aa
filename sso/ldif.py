"""A streaming LDIF reader for ``ldapsearch -LLL -o ldif-wrap=no`` output.

Entries are separated by blank lines; ``name: value`` is text, ``name:: value`` base64 (slapd
sends userPassword and any non-printable value that way). Continuation lines (a leading space)
are joined, so wrapped LDIF works too. Comment lines are skipped.

Built for 100k entries: the input is read in large blocks and cut at blank lines, and each entry
is split and decoded in one go (``parse_chunks``); ``parse`` takes lines for small inputs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator

__all__ = ["LdifError", "parse", "parse_chunks"]

Entry = tuple[str, dict[str, list[str]]]


class LdifError(ValueError):
    """A line is not LDIF; the message names its number (and never prints a value)."""


_LOWER: dict[str, str] = {}


def _entry(block: str, first_line: int) -> Entry | None:
    """Given one entry's text (no blank line inside) and its first line number, return (dn, attrs)."""
    if "\n " in block:
        block = block.replace("\n ", "")  # unfold continuation lines (wrapped LDIF)
    lines = block.split("\n")
    if lines[0].startswith("#") or "\n#" in block:
        lines = [ln for ln in lines if not ln.startswith("#")]
        if not lines:
            return None
    dn: str | None = None
    attrs: dict[str, list[str]] = {}
    lower = _LOWER
    for i, line in enumerate(lines):
        name, sep, value = line.partition(":")
        if not sep:
            raise LdifError(f"line {first_line + i}: expected 'attribute: value'")
        if value[:1] == ":":
            try:
                value = base64.b64decode(value[1:].strip(), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                raise LdifError(f"line {first_line + i}: attribute {name}: invalid base64 value") from None
        elif value[:1] == " ":
            value = value[1:]
        if dn is None:
            if name.lower() != "dn":
                raise LdifError(f"line {first_line + i}: expected 'dn:' to start an entry, got {name!r}")
            dn = value
            continue
        key = lower.get(name)
        if key is None:
            key = lower[name] = name.lower()
        got = attrs.get(key)
        if got is None:
            attrs[key] = [value]
        else:
            got.append(value)
    return None if dn is None else (dn, attrs)


# One line of LDIF: (name, ":" or "::" or "" for a blank / malformed line, value). A blank line ends an entry.
_LINE = re.compile(r"^([^:\n]*)(:{0,2}) ?(.*)$", re.M)


def _entries(text: str, first_line: int) -> list[Entry]:
    """Given complete entries (the text ends at an entry boundary), return them; the fast path of the reader.

    Anything unusual (wrapped lines, CRLF, a malformed line) sends the whole text to the careful path,
    which names the line of an error; nothing is returned twice.
    """
    if "\n " in text or "\r" in text:
        return list(_slow(text, first_line))
    out: list[Entry] = []
    dn: str | None = None
    attrs: dict[str, list[str]] = {}
    lower = _LOWER
    b64 = base64.b64decode
    for name, sep, value in _LINE.findall(text):
        if name[:1] == "#":
            continue  # a comment, even one with a colon (ldapsearch's "# pagedresults: cookie=...")
        if not sep:
            if not name:  # blank line
                if dn is not None:
                    out.append((dn, attrs))
                    dn, attrs = None, {}
                continue
            return list(_slow(text, first_line))  # raises LdifError naming the line
        if sep == "::":
            try:
                value = b64(value.strip(), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return list(_slow(text, first_line))
        if dn is None:
            if name != "dn" and name.lower() != "dn":
                return list(_slow(text, first_line))
            dn = value
            continue
        key = lower.get(name)
        if key is None:
            key = lower[name] = name.lower()
        got = attrs.get(key)
        if got is None:
            attrs[key] = [value]
        else:
            got.append(value)
    if dn is not None:
        out.append((dn, attrs))
    return out


def _slow(text: str, first_line: int) -> Iterator[Entry]:
    line = first_line
    for raw in text.split("\n\n"):
        block = raw.strip("\n")
        if block:
            entry = _entry(block, line + len(raw) - len(raw.lstrip("\n")))
            if entry is not None:
                yield entry
        line += raw.count("\n") + 2


def parse_chunks(chunks: Iterable[bytes]) -> Iterator[Entry]:
    """Given LDIF as byte chunks (any split), yield (dn, {lowercase attribute: [values]}) per entry.

    Raise LdifError naming the line when a line has no ``:`` or a base64 value is invalid.
    """
    rest = b""
    line = 1
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            rest = data
            continue
        done, rest = data[:cut + 2], data[cut + 2:]
        yield from _entries(done.decode("utf-8", "replace"), line)
        line += done.count(b"\n")
    if rest.strip(b"\n"):
        yield from _entries(rest.decode("utf-8", "replace") + "\n\n", line)


def parse(lines: Iterable[str]) -> Iterator[Entry]:
    """Given LDIF lines, yield (dn, attrs) per entry (see ``parse_chunks``). Raise LdifError."""
    return parse_chunks([("\n".join(lines) + "\n").encode("utf-8")])

"""The audit's fast path over ldapsearch LDIF: find the few accounts a rule could fire on, in C.

On 100k accounts, building a Python dict and an ``Account`` per entry costs more than ldapsearch
itself. Nearly every account of a healthy directory is *clean*: a strong password hash, a recent
bind, a recent password change, no lock, the default policy. ``Screen.scan`` matches whole
blocks of LDIF against one regular expression of the block's usual entry shape (attribute names
and order learned from the block's first entry) that accepts only such clean values; ``findall``
returns one tuple per entry (DN, uid, uidNumber, mail, two times) and the time cuts are string
comparisons. Every entry that does not match — another shape, a weak or cleartext password, a
lock, a policy subentry, base64 or folded values, a comment inside, a malformed line, an old
time — is a *candidate*: it is parsed by the careful LDIF reader into an ``Account`` and goes
through every rule, exactly as without the fast path. Clean entries only feed the duplicate
rules (uid, uidNumber, mail). So the fast path can only skip work, never change a result, as
long as a clean entry cannot make an account rule fire: rules that know this set ``screened``;
one that does not (a new rule) turns the fast path off.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress

from citydc.sso import ldif

__all__ = ["Clean", "Screen", "b64_prefix_pattern"]

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# A base64 value, captured: what b64decode(validate=True) accepts once its length is also a multiple of 4
# (checked in ``scan``). One repeat of a character class is a tight loop in the regex engine; the strict
# form, a repeated group of four, made the whole match 1.5 times slower (bench/ldap_audit.py, 2026-12-06).
_B64_VALUE = "([A-Za-z0-9+/]*+={0,2})"
# Attributes a clean shape may hold, and how their line must look (group: the value kept). Possessive
# repeats (``*+``): a line that fails never needs the engine to try shorter values.
_LINE = {
    "uid": r"uid: ([^\n]*+)\n",
    "uidNumber": r"uidNumber: ([^\n]*+)\n",
    "mail": r"mail: ([^\n]*+)\n",
    "pwdChangedTime": r"pwdChangedTime: ([0-9]{14})[^\n]++\n",
    "pwdLastSuccess": r"pwdLastSuccess: ([0-9]{14})[^\n]++\n",
    "createTimestamp": r"createTimestamp: [^\n]*+\n",
    # the lastbind overlay's last bind: a clean entry's pwdLastSuccess is recent, and the last bind is the later
    # of the two, so its value cannot make the entry stale
    "authTimestamp": r"authTimestamp: [^\n]*+\n",
}
_KEPT = ("uid", "uidNumber", "mail", "userPassword", "pwdChangedTime", "pwdLastSuccess")
_NAME = re.compile(r"([A-Za-z][A-Za-z0-9-]*)::? ")


def b64_prefix_pattern(prefix: bytes) -> str:
    """Given bytes, return a regex matching the start of every base64 text whose decoded bytes start with them."""
    whole = len(prefix) // 3 * 3
    out = re.escape(base64.b64encode(prefix[:whole]).decode())
    rest = prefix[whole:]
    if len(rest) == 1:
        b = rest[0]
        out += re.escape(_B64[b >> 2]) + "[" + re.escape("".join(_B64[((b & 3) << 4) | x] for x in range(16))) + "]"
    elif len(rest) == 2:
        b1, b2 = rest
        out += re.escape(_B64[b1 >> 2] + _B64[((b1 & 3) << 4) | (b2 >> 4)])
        out += "[" + re.escape("".join(_B64[((b2 & 15) << 2) | x] for x in range(4))) + "]"
    return out


@dataclass
class Clean:
    """The clean entries of one block: parallel lists (missing attribute: None)."""

    dns: list[str] = field(default_factory=list)
    values: dict[str, list[str | None]] = field(  # "uid" | "uidNumber" | "mail" -> values
        default_factory=lambda: {"uid": [], "uidNumber": [], "mail": []})


class Screen:
    """Given the strong password prefixes and the time cuts, split LDIF blocks into clean rows and candidates.

    ``last_cut`` / ``changed_cut``: GeneralizedTime digits; a clean entry's pwdLastSuccess (and
    pwdChangedTime, when it has one) must be at or after them, as the rules' own fast checks say.
    """

    def __init__(self, strong: Sequence[str], last_cut: str, changed_cut: str, max_shapes: int = 8) -> None:
        self.password = "(?=" + "|".join(b64_prefix_pattern(p.encode()) for p in strong) + ")" + _B64_VALUE \
            if strong else None
        self.last_cut, self.changed_cut = last_cut, changed_cut
        self.shapes: dict[tuple[str, ...], tuple[re.Pattern[str], dict[str, int]] | None] = {}
        self.max_shapes = max_shapes

    def _shape(self, names: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, int]] | None:
        """Given an entry's attribute names in order, return (pattern, kept attribute -> group) or None."""
        if names in self.shapes:
            return self.shapes[names]
        got = None
        if (len(self.shapes) < self.max_shapes and "pwdLastSuccess" in names and len(set(names)) == len(names)
                and all(n in _LINE or (n == "userPassword" and self.password) for n in names)):
            body = "".join(_LINE.get(n, f"userPassword:: {self.password}\\n") for n in names)
            groups = {n: i + 1 for i, n in enumerate(n for n in names if n in _KEPT)}
            other = len(groups) + 1
            # One alternative per paragraph kind, each ending where the paragraph does, so findall walks
            # the block paragraph by paragraph: a clean entry, a comment-only paragraph, anything else.
            pat = re.compile(f"dn: ([^\\n]*+)\\n{body}\\n|#[^\\n]*\\n(?:#[^\\n]*\\n)*\\n|"
                             f"([^\\n](?:[^\\n]|\\n(?!\\n))*\\n)\\n|\\n")
            got = (pat, {"dn": 0, **groups, "other": other})
        self.shapes[names] = got
        return got

    def scan(self, text: str, first_line: int) -> tuple[Clean, list[ldif.Entry]]:
        """Given LDIF text ending at a paragraph boundary, return its clean entries and the parsed candidates.

        Raise ldif.LdifError (naming the line) when a candidate is not LDIF.
        """
        clean = Clean()
        if "\r" in text or "\n " in text or text[:1] in (" ", "\n"):
            return clean, list(ldif._slow(text, first_line))
        shape = None
        start = 0 if text.startswith("dn: ") else text.find("\n\ndn: ") + 2
        for _ in range(8):  # the shape of the first clean-looking entry among the block's first few
            if start < 2 and not text.startswith("dn: "):
                break
            end = text.find("\n\n", start)
            head = text[start:end].split("\n")[1:]
            names = tuple(m.group(1) for ln in head if (m := _NAME.match(ln)))
            if len(names) == len(head) and (shape := self._shape(names)) is not None:
                break
            start = text.find("\n\ndn: ", end) + 2
        if shape is None:
            return clean, list(ldif._slow(text, first_line))
        pat, at = shape
        rows = pat.findall(text)
        o, d = at["other"], at["dn"]
        last, changed, pw = at.get("pwdLastSuccess"), at.get("pwdChangedTime"), at.get("userPassword")
        lc, cc = self.last_cut, self.changed_cut

        def unclean(r: tuple[str, ...]) -> bool:  # too old a time, or a base64 value of a length b64decode refuses
            return r[last] < lc or (changed is not None and r[changed] < cc) or (pw is not None and len(r[pw]) % 4 > 0)

        # Column-wise, so the per-entry work runs in C (zip, compress, min, map): a Python loop or
        # comprehension over the rows cost as much as the match itself. A clean-shape row is the one
        # with its time (the ``last`` group) set; the others are comment, blank or candidate paragraphs.
        cols = list(zip(*rows, strict=True)) or [()] * pat.groups
        others = list(filter(None, cols[o]))
        kept = cols[last]
        lasts = list(compress(kept, kept))
        if lasts and (min(lasts) < lc or (changed is not None and min(compress(cols[changed], kept)) < cc)
                      or (pw is not None and any(n % 4 for n in set(map(len, compress(cols[pw], kept)))))):
            # rare: walk the block again, keeping each unclean entry's own text (DNs need not be unique)
            good = []
            for m in pat.finditer(text):
                r = m.groups("")
                if r[o] or not r[last]:
                    continue
                if unclean(r):
                    others.append(m.group(0)[:-1])
                else:
                    good.append(r)
            cols = list(zip(*good, strict=True)) or [()] * pat.groups
            kept = cols[last]
        clean.dns = list(compress(cols[d], kept))
        for name in ("uid", "uidNumber", "mail"):
            i = at.get(name)
            clean.values[name] = list(compress(cols[i], kept)) if i is not None else [None] * len(clean.dns)
        if not others:
            return clean, []
        try:
            cands = [e for p in others if (e := ldif._entry(p.rstrip("\n"), first_line)) is not None]
        except ldif.LdifError:
            list(ldif._slow(text, first_line))  # raises the same error with its line number
            raise
        return clean, cands


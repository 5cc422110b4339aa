"""Per-platform rules of the device config backup, as data: commands, volatile lines, secrets, sections.

Each platform (a netmiko ``device_type``) says which command shows the running config, which the
startup config (None where the platform has none), whether it needs ``enable``; which lines are
volatile (timestamps, uptime, NTP clock period: they change without anyone changing the config)
and which tokens are secrets (enable secrets, user password hashes, SNMP communities, TACACS+/RADIUS
keys, IKE pre-shared keys, NTP keys). Functions here are pure: :func:`strip` removes volatile
lines, :func:`mask` replaces secrets by ``<masked:xxxxxxxx>`` (a keyed fingerprint: the stored file
shows that a secret changed without holding it), :func:`diff_summary` counts a diff and names the
sections it touches.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MASK_RE", "PLATFORMS", "DiffSummary", "Platform", "diff_summary", "mask", "strip", "unified_diff"]

MASK_RE = re.compile(r"<masked:[0-9a-f]{8}>")


@dataclass(frozen=True)
class Platform:
    running: str
    startup: str | None
    enable: bool
    volatile: tuple[str, ...]
    secrets: tuple[str, ...]  # regexes; the named group ``s`` is the secret

    def volatile_re(self) -> re.Pattern:
        return _compiled("|".join(f"(?:{v})" for v in self.volatile) or r"(?!x)x")

    def secret_res(self) -> tuple[re.Pattern, ...]:
        return tuple(_compiled(s) for s in self.secrets)


_CACHE: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(pattern, re.MULTILINE)
    return _CACHE[pattern]


_TOKEN = r"(?P<s>\S+)"  # noqa: S105 - the regex group of a secret, not one
# Cisco-like CLIs (IOS, IOS-XE, NX-OS, EOS) share the secret syntax.
_CISCO_SECRETS = (
    rf"^\s*enable (?:secret|password)(?: level \d+)?(?: (?:\d|sha512|md5))? {_TOKEN}",
    rf"^\s*username \S+(?: .*?)? (?:secret|password)(?: (?:\d|sha512|md5))? {_TOKEN}",
    rf"^\s*snmp-server community {_TOKEN}",
    rf"^\s*snmp-server host \S+(?: (?:traps|informs))?(?: version (?:1|2c))? {_TOKEN}",
    rf"^\s*snmp-server user \S+ \S+(?: .*?)? (?:auth (?:md5|sha\S*)|priv (?:des|3des|aes(?: \d+)?)) {_TOKEN}",
    rf"^\s*(?:tacacs-server|radius-server|tacacs|radius)(?: .*?)? key(?: \d)? {_TOKEN}",
    rf"^\s*key(?: \d)? {_TOKEN}",  # the key line of a ``tacacs server`` / ``radius server`` block
    rf"^\s*crypto isakmp key(?: \d)? {_TOKEN}",
    rf"^\s*(?:pre-shared-key|ikev2 local-authentication pre-shared-key)(?: \d)? {_TOKEN}",
    rf"^\s*ntp authentication-key \d+ \S+ {_TOKEN}",
    rf"^\s*(?:ip ospf|ip bgp|neighbor \S+) (?:message-digest-key \d+ md5|authentication-key|password)(?: \d)? "
    rf"{_TOKEN}",
)
_CISCO_VOLATILE = (
    r"^! Last configuration change at .*$",
    r"^! NVRAM config last updated at .*$",
    r"^! No configuration change since last restart.*$",
    r"^Building configuration\.\.\..*$",
    r"^Current configuration ?: .*$",
    r"^ntp clock-period .*$",
)

PLATFORMS: dict[str, Platform] = {
    "cisco_ios": Platform("show running-config", "show startup-config", True, _CISCO_VOLATILE, _CISCO_SECRETS),
    "cisco_xe": Platform("show running-config", "show startup-config", True, _CISCO_VOLATILE, _CISCO_SECRETS),
    "cisco_nxos": Platform("show running-config", "show startup-config", True,
                           (r"^!Time: .*$", r"^!Running configuration last done at: .*$",
                            r"^!Startup config saved at: .*$"), _CISCO_SECRETS),
    "arista_eos": Platform("show running-config", "show startup-config", True,
                           (r"^! Startup-config last modified at .*$", r"^! Uptime: .*$", r"^! Time: .*$"),
                           _CISCO_SECRETS),
    "juniper_junos": Platform("show configuration | display set", None, False,
                              (r"^## Last commit: .*$", r"^## Last changed: .*$"),
                              # a quoted value is masked with its quotes (it may hold spaces or ;)
                              (r"(?:encrypted-password|secret|authentication-key|pre-shared-key ascii-text|"
                               r"community) (?P<s>\"[^\"]*\"|[^\s;\"]+)",)),
    # A Linux host's "running config" is whatever file its device names (config_commands); no startup.
    "linux": Platform("cat /etc/os-release", None, False, (),
                      (r"(?i)^\s*[\w.-]*(?:password|passwd|secret|psk|community|token|key)[\w.-]*\s*[=:]\s*"
                       r"\"?(?P<s>[^\"\s]+)\"?",)),
}


def strip(text: str, platform: str) -> str:
    """Given a fetched config and its platform, return it without volatile lines, with ``\\n`` line ends,
    no trailing spaces and no blank lines at either end."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = PLATFORMS[platform].volatile_re().sub("\x00", text)
    lines = [line.rstrip() for line in text.split("\n") if line != "\x00"]
    return "\n".join(lines).strip("\n") + "\n"


def _fingerprint(secret: str, key: bytes) -> str:
    return hmac.new(key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:8]


def mask(text: str, platform: str, key: bytes, extra: Iterable[str] = ()) -> tuple[str, set[str]]:
    """Given a config, its platform and the masking key, return (masked text, secret values found).

    Each secret token becomes ``<masked:xxxxxxxx>`` (HMAC-SHA256 of the value under ``key``, so a
    changed secret changes the stored line, and the same secret masks the same on every device of
    one repository). Every other occurrence of a found value, and of the ``extra`` values (the
    login's password, the enable secret), is masked too, wherever it appears.
    """
    found: set[str] = set()
    for rx in PLATFORMS[platform].secret_res():
        def repl(m: re.Match) -> str:
            value = m.group("s")
            if MASK_RE.fullmatch(value):
                return m.group(0)
            found.add(value)
            start, end = m.span("s")
            base = m.start()
            return m.group(0)[:start - base] + f"<masked:{_fingerprint(value, key)}>" + m.group(0)[end - base:]
        text = rx.sub(repl, text)
    values = {*found, *(v.strip('"') for v in found), *(e for e in extra if e)}
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:  # a 1-3 character "secret" would mask every word containing it
            text = text.replace(value, f"<masked:{_fingerprint(value, key)}>")
    return text, found


@dataclass(frozen=True)
class DiffSummary:
    added: int
    removed: int
    sections: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _section(lines: list[str], index: int) -> str:
    line = lines[index]
    if line[:1] in (" ", "\t"):
        for j in range(index - 1, -1, -1):
            parent = lines[j]
            if parent.strip() and parent[:1] not in (" ", "\t", "!", "#"):
                return parent.strip()
        return line.split()[0] if line.split() else ""
    return line.split()[0] if line.split() else ""


def diff_summary(old: str, new: str, limit: int = 20) -> DiffSummary:
    """Given two configs, return lines added and removed and the sections touched (at most ``limit``):
    for an indented line its parent line (``interface GigabitEthernet0/1``), else its first word."""
    a, b = old.splitlines(), new.splitlines()
    added = removed = 0
    sections: dict[str, None] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        removed += i2 - i1
        added += j2 - j1
        for k in range(i1, i2):
            if a[k].strip() and a[k].strip() not in ("!", "#"):
                sections[_section(a, k)] = None
        for k in range(j1, j2):
            if b[k].strip() and b[k].strip() not in ("!", "#"):
                sections[_section(b, k)] = None
    return DiffSummary(added, removed, tuple(s for s in sections if s)[:limit])


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """Given two (masked) configs, return their unified diff."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        old_name, new_name))

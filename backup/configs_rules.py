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
    # the first word of every line is a command keyword (``version``, ``key``, ``set``), never a value
    keyword_first: bool = True
    # the line the platform's running config always ends with (IOS, IOS-XE, EOS: ``end``); an answer
    # without it is cut short or is not a config
    last_line: str | None = None

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
_ENC = r"(?: [0-9])?"  # the encryption type before a key: 0 clear, 6 AES, 7 Cisco type 7 (EOS: 7, 8a)
# Cisco-like CLIs (IOS, IOS-XE, NX-OS, EOS) share the secret syntax. A pattern masks one token; a line
# with two secrets (an SNMPv3 user's auth and priv keys) has one pattern per secret.
_CISCO_SECRETS = (
    rf"^\s*enable (?:secret|password)(?: level \d+)?(?: (?:\d|sha512|md5))? {_TOKEN}",
    rf"^\s*username \S+(?: .*?)? (?:secret|password)(?: (?:\d|sha512|md5))? {_TOKEN}",
    rf"^\s*snmp-server community {_TOKEN}",
    # the community of a v1/v2c trap host; a ``version 3`` host names a user (no secret), and NX-OS
    # puts ``use-vrf`` / ``source-interface`` on lines of their own
    rf"^\s*snmp-server host \S+(?: (?:traps|informs|vrf \S+))*(?: version (?:1|2c))? "
    rf"(?!(?:version|vrf|use-vrf|filter-vrf|source-interface|traps|informs)\b){_TOKEN}",
    # SNMPv3 user keys: ``auth sha KEY priv aes 128 KEY`` (IOS), ``priv aes KEY`` (EOS), ``priv 0x.. localizedkey``
    # (NX-OS, no algorithm)
    rf"^\s*snmp-server user \S+(?: .*?)? auth (?:md5|sha\S*(?: \d{{3}})?) {_TOKEN}",
    rf"^\s*snmp-server user \S+(?: .*?)? priv(?: (?:des\S*|3des|aes\S*(?: \d{{3}})?))? {_TOKEN}",
    rf"^\s*(?:tacacs-server|radius-server|tacacs|radius)(?: .*?)? key{_ENC} {_TOKEN}",
    rf"^\s*server-private \S+(?: .*?)? key{_ENC} {_TOKEN}",
    # the key line of a ``tacacs server`` / ``radius server`` block; not ``key chain NAME`` (a name) nor the
    # ``key 1`` id line of a key chain (the key-string follows on the next line)
    rf"^\s*key{_ENC} (?!chain\b)(?P<s>\S+)$(?!\n\s*(?:key-string|accept-lifetime|send-lifetime|"
    rf"cryptographic-algorithm)\b)",
    # key chains (``key-string 7 X``), HSRP/VRRP ``authentication md5 key-string X``, EOS ``ietf-md5 key-string``
    rf"^\s*(?:\S.*? )?key-string{_ENC} {_TOKEN}",
    rf"^\s*(?:\S.*? )?authentication text{_ENC} {_TOKEN}",  # HSRP/VRRP plain-text authentication
    rf"^\s*standby(?: \d+)? authentication (?!(?:md5|text)\b){_TOKEN}",  # HSRP, older IOS: no ``text``
    rf"^\s*ppp (?:chap|pap)(?: .*?)? password{_ENC} {_TOKEN}",
    # a ``line vty`` / ``line con`` password; not the global ``password encryption aes`` (IOS) or
    # ``password strength-check`` (NX-OS)
    rf"^\s*password{_ENC} (?!(?:encryption|strength-check|secure-mode)\b){_TOKEN}",
    rf"^\s*aaa root secret(?: (?:\d|sha512))? {_TOKEN}",  # EOS
    rf"^\s*ip (?:ftp|http client) password{_ENC} {_TOKEN}",
    rf"^\s*crypto isakmp key(?: \d)? {_TOKEN}",
    # keyring peers: ``pre-shared-key address 203.0.113.1 key X``; IKEv2: ``pre-shared-key [local|remote] [6] X``
    rf"^\s*pre-shared-key (?:address \S+(?: \d+\.\S+)?|hostname \S+) key{_ENC} {_TOKEN}",
    rf"^\s*(?:ikev2 local-authentication )?pre-shared-key(?: (?:local|remote))?{_ENC} "
    rf"(?!(?:address|hostname)\b){_TOKEN}",
    rf"^\s*ntp authentication-key \d+ \S+{_ENC} {_TOKEN}",  # EOS: ``md5 7 KEY``; IOS: ``md5 KEY 7``
    rf"^\s*(?:ip ospf|ip bgp|neighbor \S+) (?:message-digest-key \d+ md5|authentication-key|password){_ENC} "
    rf"{_TOKEN}",
    rf"^\s*(?:isis password|isis authentication key|area-password|domain-password){_ENC} {_TOKEN}",  # IS-IS
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
    "cisco_ios": Platform("show running-config", "show startup-config", True, _CISCO_VOLATILE, _CISCO_SECRETS,
                          last_line="end"),
    "cisco_xe": Platform("show running-config", "show startup-config", True, _CISCO_VOLATILE, _CISCO_SECRETS,
                         last_line="end"),
    "cisco_nxos": Platform("show running-config", "show startup-config", True,
                           (r"^!Time: .*$", r"^!Running configuration last done at: .*$",
                            r"^!Startup config saved at: .*$"), _CISCO_SECRETS),
    "arista_eos": Platform("show running-config", "show startup-config", True,
                           (r"^! Startup-config last modified at .*$", r"^! Uptime: .*$", r"^! Time: .*$"),
                           _CISCO_SECRETS, last_line="end"),
    "juniper_junos": Platform("show configuration | display set", None, False,
                              (r"^## Last commit: .*$", r"^## Last changed: .*$"),
                              # a quoted value is masked with its quotes (it may hold spaces or ;); ``secret``
                              # also covers key chains' and PPP's ``chap-secret``; a policy-options
                              # ``community NAME`` is a BGP community, not the SNMP one
                              (r"(?:encrypted-password|secret|authentication-key|privacy-key|"
                               r"pre-shared-key (?:ascii-text|hexadecimal)|(?<=snmp )community|md5 \d+ key|"
                               r"local-password|pap-password|simple-password) (?P<s>\"[^\"]*\"|[^\s;\"]+)",)),
    # A Linux host's "running config" is whatever file its device names (config_commands); no startup.
    "linux": Platform("cat /etc/os-release", None, False, (),
                      (r"(?i)^\s*[\w.-]*(?:password|passwd|secret|psk|community|token|key)[\w.-]*\s*[=:]\s*"
                       r"\"?(?P<s>[^\"\s]+)\"?",), keyword_first=False),
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
    one repository). Every other occurrence of a found value is masked too where it stands as a whole
    token (not inside a longer word, not as the command word a line starts with: a community
    ``version`` leaves ``version 15.2`` alone); the ``extra`` values (the login's password, the enable
    secret) are masked wherever they appear, even inside a word.
    """
    rules = PLATFORMS[platform]
    found: set[str] = set()
    for rx in rules.secret_res():
        def repl(m: re.Match) -> str:
            value = m.group("s")
            if MASK_RE.fullmatch(value):
                return m.group(0)
            found.add(value)
            start, end = m.span("s")
            base = m.start()
            return m.group(0)[:start - base] + f"<masked:{_fingerprint(value, key)}>" + m.group(0)[end - base:]
        text = rx.sub(repl, text)
    extras = {e for e in extra if e}
    values = {*found, *(v.strip('"') for v in found), *extras}
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:  # a 1-3 character "secret" would mask every word containing it
            masked = f"<masked:{_fingerprint(value, key)}>"
            if value in extras:
                text = text.replace(value, masked)
            else:
                text = _mask_tokens(text, value, masked, rules.keyword_first)
    return text, found


def _mask_tokens(text: str, value: str, masked: str, keyword_first: bool) -> str:
    """Replace ``value`` where it is a whole token (no letter, digit, ``_`` or ``-`` touching it), except
    as a line's first word when that word is a command keyword."""
    def repl(m: re.Match) -> str:
        line_start = text.rfind("\n", 0, m.start()) + 1
        if keyword_first and not text[line_start:m.start()].strip():
            return m.group(0)
        return masked
    return re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", repl, text)


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

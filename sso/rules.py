"""The directory audit's rules: each one a stable id, a severity, a description and a remediation.

A rule is a small class in this file, registered with ``@rule(...)``. It looks at one account at
a time (``account``: called for every account of the bulk read, in one pass, so memory stays
bounded) and/or at the whole directory once at the end (``finish``: policies, privileged groups,
duplicates, the server's posture). Adding a rule is adding one class here; ids never change
meaning once published, because accepted risks and the security log refer to them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from citydc.config.models import LdapRuleSettings
from citydc.sso.model import Account, Finding, RuleInfo, parse_gtime

__all__ = ["RULES", "MemberStatus", "Policy", "Rule", "RuleContext", "ServerPosture", "fold", "make_rules", "norm_dn",
           "password_problem"]


def norm_dn(dn: str) -> str:
    """Given a DN, return the form used to compare DNs (lowercase, no spaces around separators)."""
    return ",".join(p.strip() for p in dn.lower().split(","))


def fold(value: str) -> str:
    """Given an attribute value, return the form slapd's caseIgnoreMatch compares (RFC 4518 string preparation):
    Unicode NFKC with case folding, and insignificant spaces: none leading or trailing, a run of spaces (any
    Unicode white space) counting as one. ``" Chen.Wei "``, ``"chen.wei"`` and fullwidth ``"ｃｈｅｎ.ｗｅｉ"``
    are one value to slapd, so a filter ``(uid=chen.wei)`` finds all three; the duplicate rules compare them so."""
    if value.isascii():
        v = value.lower()
    else:
        v = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return " ".join(v.split())


@dataclass(frozen=True)
class Policy:
    dn: str
    min_length: int  # effective: 0 unless pwdCheckQuality makes slapd check it
    lockout: bool
    history: int
    max_age_seconds: int

    @classmethod
    def from_attrs(cls, dn: str, attrs: Mapping[str, Sequence[str]]) -> Policy:
        """Given a pwdPolicy entry's {lowercase attribute: values}, return the policy."""
        def num(name: str) -> int:
            v = attrs.get(name)
            try:
                return int(v[0]) if v else 0
            except ValueError:
                return 0

        quality = num("pwdcheckquality")
        lockout = (attrs.get("pwdlockout") or ["FALSE"])[0].upper() == "TRUE" and num("pwdmaxfailure") > 0
        return cls(dn, num("pwdminlength") if quality in (1, 2) else 0, lockout, num("pwdinhistory"),
                   num("pwdmaxage"))


@dataclass(frozen=True)
class ServerPosture:
    url: str
    anonymous_bind: bool | None = None  # None: not probed
    plain_simple_bind: bool | None = None
    cert_not_after: datetime | None = None
    cert_subject: str | None = None


@dataclass(frozen=True)
class MemberStatus:
    exists: bool
    disabled: bool = False


@dataclass
class RuleContext:
    settings: LdapRuleSettings
    now: datetime
    server: ServerPosture
    policies: dict[str, Policy] = field(default_factory=dict)  # norm DN -> policy
    default_policy_dn: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)  # privileged group DN -> member DNs
    baseline: dict[str, list[str]] | None = None  # group DN -> approved member DNs (None: no baseline)
    members: dict[str, MemberStatus] = field(default_factory=dict)  # norm member DN -> status
    # privileged group DN -> {member DN: the nested group it is a member of}, for members that are not direct
    via: dict[str, dict[str, str]] = field(default_factory=dict)


class Rule:
    """A rule; subclasses set ``info`` (through ``@rule``) and override one or both hooks.

    ``screened``: the rule's ``account`` never fires on a *clean* account (bulk.py: strong password
    hash, pwdLastSuccess and pwdChangedTime at or after the stale and default-policy cuts, no lock,
    no pwdPolicySubentry), so the audit may skip it for those. A new account rule leaves it False
    and every account goes through it (the fast path is off) until someone checks that.
    """

    info: RuleInfo
    screened: bool = False

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx

    def account(self, acct: Account) -> Iterable[Finding]:
        return ()

    def finish(self) -> Iterable[Finding]:
        return ()

    def found(self, subject: str, message: str, **evidence: Any) -> Finding:
        return Finding(self.info, subject, message, evidence)


RULES: dict[str, type[Rule]] = {}


def rule(id: str, severity: str, scope: str, title: str, description: str, remediation: str):
    """Register the decorated Rule class under ``id`` with its metadata."""
    def register(cls: type[Rule]) -> type[Rule]:
        if id in RULES:
            raise ValueError(f"duplicate rule id {id}")
        cls.info = RuleInfo(id, severity, title, description, remediation, scope)
        RULES[id] = cls
        return cls
    return register


def make_rules(ctx: RuleContext) -> list[Rule]:
    """Given the context, return an instance of every rule not disabled in the settings."""
    return [cls(ctx) for rid, cls in RULES.items() if rid not in ctx.settings.disabled]


# -- password storage ----------------------------------------------------------------------------

_STRONG_CRYPT = ("$5$", "$6$", "$y$", "$gy$", "$7$", "$2a$", "$2b$", "$2y$")
_STRONG_PREFIXES = ("{SSHA}", "{SSHA256}", "{SSHA384}", "{SSHA512}", "{ARGON2}", "{PBKDF2-", "{PBKDF2}",
                    *(f"{{CRYPT}}{c}" for c in _STRONG_CRYPT))


# pw-sha2's unsalted schemes: {SHA} with a longer digest, no salt either, so as open to precomputed tables and as
# cheap per guess (a GPU does billions a second). Weak whenever {SHA} is (the rule's "unsalted" schemes); before
# 2026-12-08 a {SHA512} value passed as strong.
_UNSALTED_SHA2 = ("SHA256", "SHA384", "SHA512")


def strong_prefixes(weak_schemes: Sequence[str]) -> tuple[str, ...]:
    """Given the configured weak schemes, return the prefixes of values that are strong hashes."""
    return tuple(p for p in _STRONG_PREFIXES if p[1:].split("}")[0].rstrip("-") not in weak_schemes)


def gcut(when: datetime) -> str:
    """Given a time, return its GeneralizedTime digits (``YYYYmmddHHMMSS``) for string comparison."""
    return when.strftime("%Y%m%d%H%M%S")


def _digits(value: str | None) -> bool:
    # Well-formed UTC GeneralizedTime compares as a string: no datetime per account in the hot loop.
    return value is not None and len(value) >= 15 and value[:14].isdigit()


def password_problem(value: str, weak_schemes: Sequence[str]) -> tuple[str, str] | None:
    """Given a userPassword value, return ("cleartext" | "weak", scheme) or None when it is a strong hash.

    The value itself never leaves this function: findings name the scheme only.
    """
    if not value.startswith("{") or "}" not in value:
        return "cleartext", "(none)"
    scheme = value[1:value.index("}")].upper()
    if scheme == "CLEARTEXT":
        return "cleartext", scheme
    if scheme in _UNSALTED_SHA2:
        return ("weak", scheme) if "SHA" in weak_schemes else None
    if scheme == "CRYPT":
        rest = value[value.index("}") + 1:]
        if rest.startswith(_STRONG_CRYPT):
            return None
        return ("weak", "CRYPT-MD5" if rest.startswith("$1$") else "CRYPT-DES") if "CRYPT" in weak_schemes else None
    return ("weak", scheme) if scheme in weak_schemes else None


@rule("LDAP-PWD-001", "critical", "account", "Password stored in cleartext",
      "userPassword holds the password itself ({CLEARTEXT} or no scheme): anyone who can read the entry, "
      "a backup or an LDIF export has the password.",
      "Reset the password so slapd stores a salted hash (olcPasswordHash {SSHA512} or {ARGON2} with the "
      "pw-sha2/argon2 module), and set olcPPolicyHashCleartext TRUE so new cleartext values are hashed.")
class CleartextPassword(Rule):
    kind = "cleartext"
    screened = True  # a clean account's passwords all start with a strong prefix

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # Prefixes of strong values, checked first: nearly every account has one, and this is the hot loop.
        self.strong = strong_prefixes(ctx.settings.weak_schemes)

    def schemes(self, acct: Account) -> list[str]:
        weak, strong = self.ctx.settings.weak_schemes, self.strong
        out = []
        for v in acct.passwords:
            if v.startswith(strong):
                continue
            p = password_problem(v, weak)
            if p is not None and p[0] == self.kind:
                out.append(p[1])
        return out

    def account(self, acct: Account) -> Iterable[Finding]:
        schemes = self.schemes(acct)
        if not schemes:
            return ()
        return [self.found(acct.dn, f"password stored in cleartext (scheme {', '.join(schemes)})", schemes=schemes)]


@rule("LDAP-PWD-002", "high", "account", "Password stored with a weak hash",
      "userPassword uses an unsalted or obsolete scheme ({MD5}, {SHA}, unsalted {SHA256}/{SHA384}/{SHA512}, "
      "{SMD5}, DES or MD5 {CRYPT}) that "
      "off-the-shelf tools crack quickly once the hash leaks.",
      "Have the user change the password (or reset it) so it is stored with a strong scheme such as {SSHA512}, "
      "{ARGON2} or {CRYPT}$6$.")
class WeakHash(CleartextPassword):
    kind = "weak"

    def account(self, acct: Account) -> Iterable[Finding]:
        schemes = self.schemes(acct)
        if not schemes:
            return ()
        return [self.found(acct.dn, f"password hashed with weak scheme {', '.join(schemes)}", schemes=schemes)]


# -- accounts ------------------------------------------------------------------------------------

@rule("LDAP-ACC-001", "medium", "account", "Stale enabled account",
      "An enabled account has not bound for longer than the stale threshold (pwdLastSuccess kept by slapd's "
      "lastbind, or the lastbind overlay's authTimestamp: the later of the two), or has no recorded bind and "
      "both its creation and its last password change "
      "(pwdChangedTime: slapd deletes pwdLastSuccess when the password changes) are older than it. Unused "
      "accounts are the quietest way in.",
      "Confirm with the owner's unit; disable the account (pwdAccountLockedTime 000001010000Z) or delete it.")
class StaleAccount(Rule):
    screened = True  # a clean account is enabled and its pwdLastSuccess is at or after ``cut``

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self.cut = gcut(ctx.now - timedelta(days=ctx.settings.stale_days))

    def account(self, acct: Account) -> Iterable[Finding]:
        if acct.disabled:
            return ()
        last = acct.last_success
        if _digits(last) and last[:14] >= self.cut:  # type: ignore[index]
            return ()  # the common case: bound recently
        limit = timedelta(days=self.ctx.settings.stale_days)
        last_t = parse_gtime(last)
        if last_t is not None:
            if self.ctx.now - last_t > limit:
                days = (self.ctx.now - last_t).days
                return [self.found(acct.dn, f"last bind {days} days ago", last_bind=last, days=days)]
            return ()
        # No pwdLastSuccess: slapd's ppolicy deletes it when the password is changed (a helpdesk reset, too), so
        # its absence means "no bind recorded since the password was set" when pwdChangedTime is newer than the
        # entry, and "never bound" only when it is not. The later of the two times is where the count starts.
        created = parse_gtime(acct.created)
        changed = parse_gtime(acct.pwd_changed)
        if changed is not None and (created is None or changed > created):
            if self.ctx.now - changed > limit:
                days = (self.ctx.now - changed).days
                return [self.found(acct.dn, f"no bind recorded since the password was set {days} days ago "
                                            "(slapd clears pwdLastSuccess when the password changes)",
                                   pwd_changed=acct.pwd_changed, created=acct.created, days=days)]
            return ()
        if created is not None and self.ctx.now - created > limit:
            days = (self.ctx.now - created).days
            return [self.found(acct.dn, f"never bound; created {days} days ago", created=acct.created, days=days)]
        return ()


def _effective_policy(ctx: RuleContext, acct: Account) -> str | None:
    return acct.policy_dn or ctx.default_policy_dn


@rule("LDAP-ACC-002", "medium", "account", "Password older than the policy allows",
      "The password of an enabled account was last changed (pwdChangedTime) longer ago than its policy's "
      "pwdMaxAge (or the configured maximum when the policy sets none).",
      "Expire the password so the user must change it at the next login, and check why the policy did not.")
class PasswordAge(Rule):
    screened = True  # a clean account has the default policy and pwdChangedTime at or after its cut (or none)

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self.limits: dict[str | None, tuple[int, str]] = {}  # policy DN -> (max age s, cut), per policy once

    def limit(self, pol_dn: str | None) -> tuple[int, str]:
        got = self.limits.get(pol_dn)
        if got is None:
            policy = self.ctx.policies.get(norm_dn(pol_dn)) if pol_dn else None
            max_age = policy.max_age_seconds if policy and policy.max_age_seconds > 0 else \
                self.ctx.settings.password_max_age_days * 86400
            got = self.limits[pol_dn] = (max_age, gcut(self.ctx.now - timedelta(seconds=max_age)))
        return got

    def account(self, acct: Account) -> Iterable[Finding]:
        if acct.disabled or acct.pwd_changed is None:
            return ()
        max_age, cut = self.limit(_effective_policy(self.ctx, acct))
        if _digits(acct.pwd_changed) and acct.pwd_changed[:14] >= cut:
            return ()
        changed = parse_gtime(acct.pwd_changed)
        if changed is None:
            return ()
        age = (self.ctx.now - changed).total_seconds()
        if age > max_age:
            return [self.found(acct.dn, f"password {int(age // 86400)} days old (limit {max_age // 86400} days)",
                               pwd_changed=acct.pwd_changed, max_age_days=max_age // 86400)]
        return ()


@rule("LDAP-ACC-003", "high", "account", "Account without a password policy",
      "An enabled account has no effective password policy: no pwdPolicySubentry and no default policy "
      "configured (default_policy_dn), or "
      "a pwdPolicySubentry naming an entry that is not a pwdPolicy. No lockout, no expiry, no quality check "
      "applies to it.",
      "Point pwdPolicySubentry at an existing policy, or remove it so the default policy applies.")
class NoPolicy(Rule):
    screened = True  # a clean account has the default policy; the fast path is off when that is not a policy

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        self.known: dict[str, bool] = {}

    def account(self, acct: Account) -> Iterable[Finding]:
        if acct.disabled:
            return ()
        dn = _effective_policy(self.ctx, acct)
        if dn is None:
            # Nothing on the server was asked: the config names no default policy (the server's olcPPolicyDefault
            # is not readable by the audit account).
            return [self.found(acct.dn, "no pwdPolicySubentry, and no default_policy_dn is configured for this "
                                        "source (the server's default policy, if any, is not known to the audit)")]
        ok = self.known.get(dn)
        if ok is None:
            ok = self.known[dn] = norm_dn(dn) in self.ctx.policies
        if not ok:
            return [self.found(acct.dn, f"pwdPolicySubentry names {dn}, which is not a password policy", policy=dn)]
        return ()


# -- password policies ---------------------------------------------------------------------------

@rule("LDAP-POL-001", "medium", "policy", "Policy allows short passwords",
      "The policy enforces a minimum length below the configured minimum (pwdMinLength is enforced only "
      "with pwdCheckQuality 1 or 2).",
      "Set pwdMinLength to at least the configured minimum and pwdCheckQuality to 1 or 2.")
class PolicyMinLength(Rule):
    def finish(self) -> Iterable[Finding]:
        need = self.ctx.settings.min_password_length
        for p in self.ctx.policies.values():
            if p.min_length < need:
                yield self.found(p.dn, f"minimum password length {p.min_length} (expected at least {need})",
                                 min_length=p.min_length)


@rule("LDAP-POL-002", "high", "policy", "Policy without account lockout",
      "The policy does not lock an account after repeated failures (pwdLockout FALSE or pwdMaxFailure 0), so "
      "passwords can be guessed online without limit.",
      "Set pwdLockout TRUE, pwdMaxFailure 5-10, pwdLockoutDuration and pwdFailureCountInterval.")
class PolicyLockout(Rule):
    def finish(self) -> Iterable[Finding]:
        for p in self.ctx.policies.values():
            if not p.lockout:
                yield self.found(p.dn, "no lockout after failed binds")


@rule("LDAP-POL-003", "low", "policy", "Policy keeps a short password history",
      "The policy remembers fewer previous passwords than configured (pwdInHistory), so users can cycle back.",
      "Set pwdInHistory to at least the configured minimum.")
class PolicyHistory(Rule):
    def finish(self) -> Iterable[Finding]:
        need = self.ctx.settings.min_password_history
        for p in self.ctx.policies.values():
            if p.history < need:
                yield self.found(p.dn, f"password history {p.history} (expected at least {need})",
                                 history=p.history)


@rule("LDAP-POL-004", "medium", "policy", "Policy without a maximum password age",
      "The policy never expires passwords (pwdMaxAge 0 or absent) or lets them live longer than configured.",
      "Set pwdMaxAge to at most the configured number of days (in seconds).")
class PolicyMaxAge(Rule):
    def finish(self) -> Iterable[Finding]:
        limit = self.ctx.settings.max_policy_age_days * 86400
        for p in self.ctx.policies.values():
            if p.max_age_seconds <= 0 or p.max_age_seconds > limit:
                days = p.max_age_seconds // 86400
                yield self.found(p.dn, "passwords never expire" if p.max_age_seconds <= 0 else
                                 f"passwords expire after {days} days (limit {limit // 86400})",
                                 max_age_days=days)


# -- privileged groups ---------------------------------------------------------------------------

def _in(member: str, group: str) -> str:
    return f"{member} in {group}"


def _dn_key() -> Callable[[str], str]:
    """Return ``files.dn_key``: the baseline (written by people) and the group's member values (as slapd returns
    them: ``uid=lin\\2Cmei`` for the entry ``uid=lin\\,mei``) name one entry in different spellings: escapes,
    case, spaces. ``norm_dn`` (lowercase, spaces) is the hot path's key and does not decode escapes."""
    from citydc.sso.files import dn_key  # files imports this module's fold(): imported when the rule runs

    return dn_key


class _GroupRule(Rule):
    def through(self, group: str, member: str) -> tuple[str, dict[str, str]]:
        """Given a group and one of its members, return the message's " (through NESTED)" and the evidence's
        ``via`` for a member of a nested group ("" and {} for a direct member)."""
        nested = self.ctx.via.get(group, {}).get(member)
        return (f" (through {nested})", {"via": nested}) if nested else ("", {})

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        """Yield (group DN, member DN, norm member DN) for every member of every privileged group."""
        for group, members in self.ctx.groups.items():
            for m in members:
                yield group, m, norm_dn(m)


@rule("LDAP-PRIV-001", "high", "group", "Privileged group member not in the approved baseline",
      "A privileged group has a member that the approved baseline does not list: someone was granted "
      "administrative rights outside the approval process.",
      "Confirm the change was approved; remove the member, or add it to the baseline file with the approval.")
class PrivilegedAdded(_GroupRule):
    def finish(self) -> Iterable[Finding]:
        if self.ctx.baseline is None:
            return
        key = _dn_key()
        base = {key(g): {key(m) for m in ms} for g, ms in self.ctx.baseline.items()}
        for group, member, _ in self.pairs():
            if key(member) not in base.get(key(group), set()):
                how, ev = self.through(group, member)
                yield self.found(_in(member, group), f"{member} is in {group}{how} but not in the baseline",
                                 group=group, member=member, **ev)


@rule("LDAP-PRIV-002", "medium", "group", "Approved privileged member removed",
      "A member that the approved baseline lists is no longer in the privileged group. Harmless when planned; "
      "otherwise the baseline is stale or someone changed the group.",
      "Confirm the removal and update the baseline file.")
class PrivilegedRemoved(_GroupRule):
    def finish(self) -> Iterable[Finding]:
        if self.ctx.baseline is None:
            return
        key = _dn_key()
        current = {key(g): {key(m) for m in ms} for g, ms in self.ctx.groups.items()}
        for group, members in self.ctx.baseline.items():
            now = current.get(key(group))
            if now is None:
                continue  # the group itself is missing: reported in the run's notes
            for m in members:
                if key(m) not in now:
                    yield self.found(_in(m, group), f"{m} is in the baseline of {group} but not in the group",
                                     group=group, member=m)


@rule("LDAP-PRIV-003", "medium", "group", "Disabled account in a privileged group",
      "A disabled account is still a member of a privileged group: re-enabling it would silently restore "
      "administrative rights.",
      "Remove the disabled account from the group (and from the baseline).")
class PrivilegedDisabled(_GroupRule):
    def finish(self) -> Iterable[Finding]:
        for group, member, norm in self.pairs():
            st = self.ctx.members.get(norm)
            if st is not None and st.exists and st.disabled:
                how, ev = self.through(group, member)
                yield self.found(_in(member, group), f"disabled account {member} is in {group}{how}",
                                 group=group, member=member, **ev)


@rule("LDAP-PRIV-004", "medium", "group", "Missing account in a privileged group",
      "A privileged group lists a member DN that does not exist: an account created later with that DN would "
      "inherit administrative rights.",
      "Remove the dangling member value from the group.")
class PrivilegedMissing(_GroupRule):
    def finish(self) -> Iterable[Finding]:
        for group, member, norm in self.pairs():
            st = self.ctx.members.get(norm)
            if st is not None and not st.exists:
                how, ev = self.through(group, member)
                yield self.found(_in(member, group), f"{member} in {group}{how} does not exist",
                                 group=group, member=member, **ev)


# -- duplicates ----------------------------------------------------------------------------------

class _Duplicates(Rule):
    attribute = ""
    lower = False  # compare values as caseIgnoreMatch does (``fold``: NFKC, case folding, insignificant spaces)
    screened = True  # clean accounts come in through ``add_many``

    def __init__(self, ctx: RuleContext) -> None:
        super().__init__(ctx)
        # value -> first DN, then a list once a second DN has it; one dict of 100k short strings.
        self.seen: dict[str, str | list[str]] = {}
        self.shared: list[str] = []  # values held by more than one account, in the order found

    def values(self, acct: Account) -> Sequence[str]:
        raise NotImplementedError

    def account(self, acct: Account) -> Iterable[Finding]:
        for v in self.values(acct):
            self._add(v, acct.dn)
        return ()

    def add_many(self, values: Sequence[str | None], dns: Sequence[str]) -> None:
        """Given one value (or None) per account and the accounts' DNs, count them like ``account`` does."""
        if not self.lower:
            vals = values
        elif None in values:
            vals = [v if v is None else fold(v) for v in values]
        else:  # one C call instead of one per value; LDIF values hold no newline
            joined = "\n".join(values)  # type: ignore[arg-type]
            # plain ASCII without insignificant spaces: lowercasing is the whole of fold()
            if joined.isascii() and " " not in joined and "\t" not in joined and "\r" not in joined \
                    and "\x0b" not in joined and "\x0c" not in joined:
                vals = joined.lower().split("\n")
            else:
                vals = []
            if len(vals) != len(values):
                vals = [fold(v) for v in values]  # type: ignore[arg-type]
        fresh = dict(zip(vals, dns, strict=True))
        if None not in fresh and len(fresh) == len(vals) and fresh.keys().isdisjoint(self.seen.keys()):
            self.seen.update(fresh)  # the common case: no value seen before, none twice here
            return
        for v, dn in zip(vals, dns, strict=True):
            if v is not None:
                self._add(v, dn)

    def _add(self, v: str, dn: str) -> None:
        prev = self.seen.get(v)
        if prev is None:
            self.seen[v] = dn
        elif isinstance(prev, list):
            prev.append(dn)
        else:
            self.seen[v] = [prev, dn]
            self.shared.append(v)

    def finish(self) -> Iterable[Finding]:
        for value in self.shared:
            dns = self.seen[value]
            yield self.found(f"{self.attribute}={value}", f"{len(dns)} accounts share {self.attribute} {value}",
                             accounts=sorted(dns))


@rule("LDAP-DUP-001", "high", "directory", "Duplicate uid",
      "Several accounts share a uid: logins, sudo rules and group memberUid values resolve to whichever entry "
      "a client finds first.",
      "Rename or remove all but one of the accounts.")
class DuplicateUid(_Duplicates):
    attribute = "uid"
    lower = True

    def values(self, acct: Account) -> Sequence[str]:
        return [fold(v) for v in acct.uid]


@rule("LDAP-DUP-002", "high", "directory", "Duplicate uidNumber",
      "Several accounts share a uidNumber: on every host they are the same Unix user and own each other's files.",
      "Give each account its own uidNumber and fix file ownership on the hosts.")
class DuplicateUidNumber(_Duplicates):
    attribute = "uidNumber"

    def values(self, acct: Account) -> Sequence[str]:
        return acct.uid_number


@rule("LDAP-DUP-003", "low", "directory", "Duplicate mail",
      "Several accounts share a mail address: password-reset and notification mail reaches the wrong person.",
      "Give each account its own address (shared mailboxes belong on a group or role entry).")
class DuplicateMail(_Duplicates):
    attribute = "mail"
    lower = True

    def values(self, acct: Account) -> Sequence[str]:
        return [fold(v) for v in acct.mail]


# -- server posture ------------------------------------------------------------------------------

@rule("LDAP-SRV-001", "medium", "server", "Anonymous bind allowed",
      "The server accepts anonymous binds, so anyone who reaches the port can query what the ACLs leave to "
      "anonymous users (naming contexts, schema, and often people and groups).",
      "Add olcDisallows: bind_anon (and olcRequires: authc on the databases).")
class AnonymousBind(Rule):
    def finish(self) -> Iterable[Finding]:
        if self.ctx.server.anonymous_bind:
            yield self.found(self.ctx.server.url, "the server accepts anonymous binds")


@rule("LDAP-SRV-002", "high", "server", "Simple bind without TLS allowed",
      "The server accepts a simple bind on a connection without TLS (checked with a throwaway DN and password, "
      "never a real one): any client misconfiguration sends passwords in clear.",
      "Set olcSecurity: simple_bind=128 (or tls=1) so slapd refuses simple binds before StartTLS.")
class PlainSimpleBind(Rule):
    def finish(self) -> Iterable[Finding]:
        if self.ctx.server.plain_simple_bind:
            yield self.found(self.ctx.server.url, "a simple bind without TLS reached the credential check")


@rule("LDAP-SRV-003", "high", "server", "TLS certificate expiring",
      "The server certificate expires within the configured number of days (or has expired): clients that "
      "verify it, as they must, will stop authenticating.",
      "Renew the certificate and reload slapd (olcTLSCertificateFile).")
class CertificateExpiry(Rule):
    def finish(self) -> Iterable[Finding]:
        not_after = self.ctx.server.cert_not_after
        if not_after is None:
            return
        left = not_after - self.ctx.now
        if left < timedelta(days=self.ctx.settings.cert_expiry_days):
            days = left.days
            yield self.found(self.ctx.server.url,
                             f"certificate expires {not_after:%Y-%m-%d} ({days} days)" if days >= 0
                             else f"certificate expired {not_after:%Y-%m-%d}",
                             not_after=not_after.isoformat(), days_left=days, cert_subject=self.ctx.server.cert_subject)

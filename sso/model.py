"""The directory audit's vocabulary: severities, rules, findings and the audited account.

An account is parsed once from the attributes the audit reads (``ACCOUNT_ATTRIBUTES``); the
rules see only these typed fields, never a client library's entry object, so the bulk reader can
be any LDAP client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ACCOUNT_ATTRIBUTES", "PROBE_RDN", "SEVERITIES", "Account", "Finding", "RuleInfo", "later_gtime",
           "parse_gtime", "severity_rank"]

SEVERITIES = ("info", "low", "medium", "high", "critical")
# The only attributes the bulk read asks for: each one costs time on 100k accounts.
# authTimestamp: the last bind as the lastbind overlay (contrib, OpenLDAP 2.4 and later) records it; slapd 2.5's
# built-in olcLastBind records pwdLastSuccess. A directory may have either or both (a server moved from the
# overlay to olcLastBind keeps the old values): the later of the two is the account's last bind.
ACCOUNT_ATTRIBUTES = ("uid", "uidNumber", "mail", "userPassword", "pwdChangedTime", "pwdLastSuccess",
                      "createTimestamp", "pwdAccountLockedTime", "pwdPolicySubentry", "authTimestamp")
# The DN of the audit's plain-bind probe (``<PROBE_RDN>,<base_dn>``, directory.py): a fixed account that does not
# exist, whose failed binds are the audit's own (detect.py does not count them as guesses).
PROBE_RDN = "cn=citydc-plain-bind-probe"
# ppolicy's "locked until an administrator unlocks": the directory's disabled account.
ADMIN_LOCK = "000001010000Z"


def severity_rank(severity: str) -> int:
    """Given a severity name, return its rank (info 0 … critical 4). Raise ValueError if unknown."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r} (known: {', '.join(SEVERITIES)})") from None


def parse_gtime(value: str | None) -> datetime | None:
    """Given LDAP GeneralizedTime (``20261204174500Z``, fraction allowed), return an aware datetime.

    Return None for None, and for values that are not a UTC time (an unparsable value is treated
    as absent by the rules and shown in the finding's evidence instead).
    """
    if not value or len(value) < 15 or not value.endswith("Z"):
        return None
    try:
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[8:10]), int(value[10:12]),
                        int(value[12:14]), tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    severity: str
    title: str
    description: str
    remediation: str
    scope: str  # account | policy | group | directory | server

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "title": self.title, "description": self.description,
                "remediation": self.remediation, "scope": self.scope}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: RuleInfo
    subject: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule.id, self.subject

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule.id, "severity": self.rule.severity, "title": self.rule.title,
                "subject": self.subject, "message": self.message, "evidence": dict(self.evidence),
                "remediation": self.rule.remediation}


@dataclass(slots=True)
class Account:
    dn: str
    uid: Sequence[str]
    uid_number: Sequence[str]
    mail: Sequence[str]
    passwords: Sequence[str]
    pwd_changed: str | None
    last_success: str | None
    created: str | None
    locked: str | None
    policy_dn: str | None

    @property
    def disabled(self) -> bool:
        return self.locked == ADMIN_LOCK

    @classmethod
    def from_attrs(cls, dn: str, attrs: Mapping[str, Sequence[str]]) -> Account:
        """Given a DN and {lowercase attribute: values}, return the account."""
        get = attrs.get

        def one(name: str) -> str | None:
            v = get(name)
            return v[0] if v else None

        last = one("pwdlastsuccess")
        auth = one("authtimestamp")
        if auth is not None and auth != last:
            last = later_gtime(last, auth)
        return cls(dn, get("uid", ()), get("uidnumber", ()), get("mail", ()), get("userpassword", ()),
                   one("pwdchangedtime"), last, one("createtimestamp"),
                   one("pwdaccountlockedtime"), one("pwdpolicysubentry"))


def later_gtime(a: str | None, b: str | None) -> str | None:
    """Given two GeneralizedTime values (or None), return the later one; a value that is not a UTC time loses
    to one that is (and is kept when both are not, so the rules can show it)."""
    ta, tb = parse_gtime(a), parse_gtime(b)
    if ta is None or tb is None:
        return a if tb is None and (ta is not None or b is None) else b
    return a if (ta, a) >= (tb, b) else b

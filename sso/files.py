"""The audit's two reviewed files: the privileged-group baseline and the accepted risks.

Both are YAML, typed (unknown keys are errors) and reported with their line, like citydc.yaml:

    # baseline: the approved members of each privileged group
    groups:
      cn=domain-admins,ou=groups,dc=city,dc=example:
        - uid=sw-admin1,ou=people,ou=siwei,dc=city,dc=example

    # accepted risks: a finding (rule id + subject) is suppressed until its expiry date
    accepted:
      - rule: LDAP-PWD-002
        subject: uid=sw-md5,ou=people,ou=siwei,dc=city,dc=example
        reason: legacy ERP integration; replacement in ticket CHG-1234
        expires: 2027-03-31
        approved_by: CISO
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# the config file's error style, and its bounded YAML reading (no alias bomb, no text of the file echoed)
from citydc.config.loader import ConfigInvalid, _line_for, _pydantic_errors, read_yaml
from citydc.sso.model import Finding

__all__ = ["MAX_ACCEPTANCE_DAYS", "Acceptance", "AcceptedRisks", "Baseline", "FileInvalid", "apply_acceptances",
           "dn_key", "load_accepted", "load_baseline", "subject_key"]

TZ = ZoneInfo("Asia/Taipei")
# The longest an acceptance may run: its ``expires`` at most this many days after the day the file is read.
# A risk is accepted for a period and reviewed again; an expiry of 9999-12-31 is an acceptance for ever.
MAX_ACCEPTANCE_DAYS = 730
# Rules whose finding names a set of accounts (evidence ``accounts``): an acceptance lists the accounts it was
# approved for, and a finding with an account beyond them is active again.
ACCOUNT_SET_RULES = ("LDAP-DUP-001", "LDAP-DUP-002", "LDAP-DUP-003")


class FileInvalid(ValueError):
    """A baseline or accepted-risk file is wrong; the message lists every error with file:line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Acceptance(_Model):
    rule: str = Field(description="rule id, e.g. LDAP-PWD-002")
    subject: str = Field(min_length=1, description="the finding's subject, as the report prints it")
    reason: str = Field(min_length=3, description="why the risk is accepted (ticket, compensating control)")
    expires: date = Field(description="last day the acceptance holds (YYYY-MM-DD); the finding returns after it")
    approved_by: str = Field(min_length=1)
    accounts: tuple[str, ...] | None = Field(
        default=None, description="duplicate rules (LDAP-DUP-*) only, and required there: the DNs of the accounts "
                                  "that share the value, as approved; an account beyond them makes the finding "
                                  "active again")

    @field_validator("rule")
    @classmethod
    def known_rule(cls, value: str) -> str:
        # the rule tables are imported only when a file names a rule (the audit starts its read after this)
        from citydc.sso.rules import RULES
        from citydc.sso.sso_rules import SSO_RULES

        if value not in RULES and value not in SSO_RULES:
            raise ValueError(f"unknown rule id {value!r} (known: {', '.join(sorted([*RULES, *SSO_RULES]))})")
        return value

    @field_validator("subject", "reason", "approved_by")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def a_date(cls, value: Any) -> Any:
        # YAML reads 2027-03-31 as a date. A number (1798675200, 20270331) would be taken by pydantic as a Unix
        # time, a datetime as a date at midnight, a string "20270331" fails with a message about datetimes.
        if isinstance(value, datetime):
            raise ValueError("expected a date (YYYY-MM-DD), got a date with a time")
        if isinstance(value, date):
            return value
        if isinstance(value, int | float):  # bool too
            raise ValueError("expected a date (YYYY-MM-DD, e.g. 2027-03-31), got a number")
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()) if len(value.strip()) == 10 else _bad_date()
            except ValueError:
                raise ValueError("expected a date (YYYY-MM-DD, e.g. 2027-03-31)") from None
        raise ValueError("expected a date (YYYY-MM-DD, e.g. 2027-03-31)")

    @model_validator(mode="after")
    def accounts_for_sets(self) -> Acceptance:
        if self.rule in ACCOUNT_SET_RULES:
            if not self.accounts:
                raise ValueError(f"{self.rule} names a set of accounts: list the accounts the acceptance covers "
                                 "(accounts: [DN, ...]); an account added later is not covered")
        elif self.accounts is not None:
            raise ValueError(f"accounts: only for the duplicate rules ({', '.join(ACCOUNT_SET_RULES)})")
        return self


def _bad_date() -> date:
    raise ValueError("not YYYY-MM-DD")


class AcceptedRisks(_Model):
    accepted: list[Acceptance] = Field(default_factory=list)


class Baseline(_Model):
    groups: dict[str, list[str]] = Field(default_factory=dict)


def _load(path: Path, model: type[BaseModel]) -> BaseModel:
    return _load_lines(path, model)[0]


def _load_lines(path: Path, model: type[BaseModel]) -> tuple[BaseModel, dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileInvalid(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # not UTF-8
        raise FileInvalid(f"{path}: cannot read: not UTF-8 text") from None
    try:
        raw, lines, duplicates = read_yaml(text, str(path))
    except ConfigInvalid as exc:
        raise FileInvalid("\n".join(f"{path}:{e.line}: {e.message}" if e.line else f"{path}: {e.message}"
                                     for e in exc.errors)) from None
    if duplicates:
        raise FileInvalid("\n".join(e.format(str(path)) for e in duplicates))
    try:
        return model.model_validate(raw or {}), lines
    except ValidationError as exc:
        msgs = []
        for loc, msg in _pydantic_errors(exc):
            line = _line_for(lines, loc)
            msgs.append(f"{path}:{line}: {loc or '<top>'}: {msg}" if line else f"{path}: {loc}: {msg}")
        raise FileInvalid("\n".join(msgs)) from None


def load_baseline(path: Path) -> dict[str, list[str]]:
    """Given the baseline file, return {group DN: approved member DNs}. Raise FileInvalid."""
    return dict(_load(path, Baseline).groups)  # type: ignore[attr-defined]


def load_accepted(path: Path, today: date | None = None) -> list[Acceptance]:
    """Given the accepted-risk file (and the day it is judged on: default today in Asia/Taipei), return its
    acceptances. Raise FileInvalid: besides the types, two entries for one finding (same rule, subject equal as
    the audit matches it) are an error naming both lines, and an ``expires`` more than MAX_ACCEPTANCE_DAYS away."""
    model, lines = _load_lines(path, AcceptedRisks)
    today = today or datetime.now(TZ).date()
    limit = today + timedelta(days=MAX_ACCEPTANCE_DAYS)
    out: list[Acceptance] = list(model.accepted)  # type: ignore[attr-defined]
    first: dict[tuple[str, str], int] = {}
    errors = []
    for i, a in enumerate(out):
        line = _line_for(lines, f"accepted[{i}]")
        key = subject_key(a.rule, a.subject)
        if key in first:
            j = first[key]
            errors.append(f"{path}:{line}: accepted[{i}]: the same finding ({a.rule} {a.subject}) as accepted[{j}] "
                          f"on line {_line_for(lines, f'accepted[{j}]')}: keep one entry")
        else:
            first[key] = i
        if a.expires > limit:
            errors.append(f"{path}:{_line_for(lines, f'accepted[{i}].expires')}: accepted[{i}].expires: "
                          f"{a.expires} is more than {MAX_ACCEPTANCE_DAYS} days after today ({today}): accept a "
                          f"risk for at most that long, then review it")
    if errors:
        raise FileInvalid("\n".join(errors))
    return out


# -- matching a finding's subject ----------------------------------------------------------------------------------

def _unescape_parts(dn: str) -> list[str]:
    """Given a DN (or a subject made of DNs), return its comma-separated parts with RFC 4514 escapes decoded
    (``\\,`` and ``\\2C`` alike); a decoded comma is kept escaped so parts stay parts."""
    parts: list[str] = []
    cur: list[str] = []
    pending = bytearray()  # consecutive \XX escapes: the UTF-8 bytes of one or more characters

    def flush() -> None:
        if pending:
            cur.append(pending.decode("utf-8", "replace").replace("\\", "\\\\").replace(",", "\\,"))
            pending.clear()

    i, n = 0, len(dn)
    while i < n:
        c = dn[i]
        if c == "\\" and i + 1 < n:
            hx = dn[i + 1:i + 3]
            if len(hx) == 2 and all(h in "0123456789abcdefABCDEF" for h in hx):
                pending.append(int(hx, 16))
                i += 3
                continue
            flush()
            nxt = dn[i + 1]
            cur.append("\\," if nxt == "," else "\\\\" if nxt == "\\" else nxt)
            i += 2
            continue
        flush()
        if c == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    flush()
    parts.append("".join(cur))
    return parts


def dn_key(dn: str) -> str:
    """Given a DN, return the form two DNs naming one entry share: attribute types and values compared as slapd
    does for uid, cn, ou, dc, mail (case and Unicode compatibility forms ignored, spaces around separators and
    runs of spaces insignificant, escapes decoded). ``uid=SW-MD5, ou=People,dc=x`` and ``uid=sw-md5,ou=people,dc=x``
    give the same key."""
    from citydc.sso.rules import fold

    out = []
    for part in _unescape_parts(dn):
        name, eq, value = part.partition("=")
        out.append(f"{fold(name)}={fold(value)}" if eq else fold(part))
    return ",".join(out)


def subject_key(rule: str, subject: str) -> tuple[str, str]:
    """Given a rule id and a subject (a finding's or an acceptance's), return what acceptances are matched on.

    Directory subjects (LDAP-*) are DNs, ``MEMBER in GROUP``, ``uid=VALUE`` and the like, or the source URL:
    compared the LDAP way (``dn_key``). Keycloak subjects (realm, client and user names) only lose surrounding
    spaces: Keycloak tells client ids apart by case."""
    if rule.startswith("LDAP-"):
        return rule, dn_key(subject)
    return rule, subject.strip()


@dataclass(frozen=True)
class Applied:
    active: list[Finding]
    accepted: list[tuple[Finding, Acceptance]]
    expired: list[tuple[Finding, Acceptance]]  # findings whose acceptance has run out: they count again
    unused: list[Acceptance]  # acceptances that matched no finding (fixed, or a typo in the subject)
    # findings of an account set (duplicates) with accounts the acceptance does not list: they count again
    uncovered: list[tuple[Finding, Acceptance, list[str]]] = field(default_factory=list)


def apply_acceptances(findings: Iterable[Finding], acceptances: Iterable[Acceptance], today: date) -> Applied:
    """Given findings, acceptances and today's date (the data centre's zone), split the findings.

    An acceptance holds through its ``expires`` day; from the next day its finding is active again. Subjects are
    matched as ``subject_key`` says. An acceptance with ``accounts`` covers its finding only while every account
    of the finding's evidence is one of them (a new account sharing an accepted uid is not accepted).
    """
    acceptances = list(acceptances)
    if not acceptances:  # the common case: no subject to normalise
        return Applied(list(findings), [], [], [], [])
    by_key: dict[tuple[str, str], Acceptance] = {}
    for a in acceptances:
        by_key.setdefault(subject_key(a.rule, a.subject), a)  # the loader refuses two for one finding
    used: set[tuple[str, str]] = set()
    active, accepted, expired, uncovered = [], [], [], []
    for f in findings:
        key = subject_key(f.rule.id, f.subject)
        acc = by_key.get(key)
        if acc is None:
            active.append(f)
            continue
        used.add(key)
        if acc.accounts is not None:
            approved = {dn_key(dn) for dn in acc.accounts}
            extra = [dn for dn in (f.evidence.get("accounts") or ()) if dn_key(str(dn)) not in approved]
            if extra:
                uncovered.append((f, acc, extra))
                active.append(f)
                continue
        if today <= acc.expires:
            accepted.append((f, acc))
        else:
            expired.append((f, acc))
            active.append(f)
    return Applied(active, accepted, expired, [a for k, a in by_key.items() if k not in used], uncovered)

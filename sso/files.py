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
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# the config file's error style, and its bounded YAML reading (no alias bomb, no text of the file echoed)
from citydc.config.loader import ConfigInvalid, _line_for, _pydantic_errors, read_yaml
from citydc.sso.model import Finding

__all__ = ["Acceptance", "AcceptedRisks", "Baseline", "FileInvalid", "apply_acceptances", "load_accepted",
           "load_baseline"]


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

    @field_validator("rule")
    @classmethod
    def known_rule(cls, value: str) -> str:
        # the rule tables are imported only when a file names a rule (the audit starts its read after this)
        from citydc.sso.rules import RULES
        from citydc.sso.sso_rules import SSO_RULES

        if value not in RULES and value not in SSO_RULES:
            raise ValueError(f"unknown rule id {value!r} (known: {', '.join(sorted([*RULES, *SSO_RULES]))})")
        return value


class AcceptedRisks(_Model):
    accepted: list[Acceptance] = Field(default_factory=list)


class Baseline(_Model):
    groups: dict[str, list[str]] = Field(default_factory=dict)


def _load(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileInvalid(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw, lines, duplicates = read_yaml(text, str(path))
    except ConfigInvalid as exc:
        raise FileInvalid("\n".join(f"{path}:{e.line}: {e.message}" if e.line else f"{path}: {e.message}"
                                     for e in exc.errors)) from None
    if duplicates:
        raise FileInvalid("\n".join(e.format(str(path)) for e in duplicates))
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        msgs = []
        for loc, msg in _pydantic_errors(exc):
            line = _line_for(lines, loc)
            msgs.append(f"{path}:{line}: {loc or '<top>'}: {msg}" if line else f"{path}: {loc}: {msg}")
        raise FileInvalid("\n".join(msgs)) from None


def load_baseline(path: Path) -> dict[str, list[str]]:
    """Given the baseline file, return {group DN: approved member DNs}. Raise FileInvalid."""
    return dict(_load(path, Baseline).groups)  # type: ignore[attr-defined]


def load_accepted(path: Path) -> list[Acceptance]:
    """Given the accepted-risk file, return its acceptances. Raise FileInvalid."""
    return list(_load(path, AcceptedRisks).accepted)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Applied:
    active: list[Finding]
    accepted: list[tuple[Finding, Acceptance]]
    expired: list[tuple[Finding, Acceptance]]  # findings whose acceptance has run out: they count again
    unused: list[Acceptance]  # acceptances that matched no finding (fixed, or a typo in the subject)


def apply_acceptances(findings: Iterable[Finding], acceptances: Iterable[Acceptance], today: date) -> Applied:
    """Given findings, acceptances and today's date (the data centre's zone), split the findings.

    An acceptance holds through its ``expires`` day; from the next day its finding is active again.
    """
    by_key = {(a.rule, a.subject): a for a in acceptances}
    used: set[tuple[str, str]] = set()
    active, accepted, expired = [], [], []
    for f in findings:
        acc = by_key.get(f.key)
        if acc is None:
            active.append(f)
            continue
        used.add(f.key)
        if today <= acc.expires:
            accepted.append((f, acc))
        else:
            expired.append((f, acc))
            active.append(f)
    return Applied(active, accepted, expired, [a for k, a in by_key.items() if k not in used])

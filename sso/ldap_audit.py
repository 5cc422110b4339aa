"""One audit of one LDAP source: read the directory once, run every rule, apply accepted risks, score.

Flow: load the reviewed files (baseline, accepted risks: a bad file stops the run before any
connection) → connect and bind (directory.py) → posture probes, policies, privileged groups →
stream every account through the account rules (one pass, bounded memory) → resolve the
privileged members the stream did not cover → finish rules → accepted risks → posture score.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from citydc.config.models import LdapSource
from citydc.sso import files
from citydc.sso.directory import Directory
from citydc.sso.model import SEVERITIES, Account, Finding, severity_rank
from citydc.sso.rules import MemberStatus, Policy, Rule, RuleContext, make_rules, norm_dn

__all__ = ["AuditRun", "posture_score", "run_audit"]

TZ = ZoneInfo("Asia/Taipei")
# Score penalty of a rule that fired, by severity; more findings of one rule add log10(count).
WEIGHTS = {"info": 0.0, "low": 1.5, "medium": 4.0, "high": 8.0, "critical": 15.0}


def posture_score(findings: Iterable[Finding]) -> int:
    """Given the active findings, return the posture score 0-100 (100: nothing found).

    Each rule that fired costs its severity's weight times (1 + log10(findings of the rule)), so
    one critical rule weighs more than many low ones, and 10,000 stale accounts do not zero the
    score on their own while still counting more than one.
    """
    per_rule: Counter[str] = Counter()
    sev: dict[str, str] = {}
    for f in findings:
        per_rule[f.rule.id] += 1
        sev[f.rule.id] = f.rule.severity
    penalty = sum(WEIGHTS[sev[r]] * (1 + math.log10(n)) for r, n in per_rule.items())
    return max(0, round(100 - penalty))


@dataclass
class AuditRun:
    source: str
    site: str
    url: str
    run_id: str
    started: datetime
    duration_seconds: float = 0.0
    accounts: int = 0
    policies: int = 0
    groups: int = 0
    findings: list[Finding] = field(default_factory=list)  # active (not accepted, or acceptance expired)
    accepted: list[tuple[Finding, files.Acceptance]] = field(default_factory=list)
    expired: list[tuple[Finding, files.Acceptance]] = field(default_factory=list)
    unused_acceptances: list[files.Acceptance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    score: int = 100

    def by_severity(self) -> dict[str, int]:
        counts = Counter(f.rule.severity for f in self.findings)
        return {s: counts.get(s, 0) for s in reversed(SEVERITIES)}

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule.id for f in self.findings).items()))

    def worst(self) -> str | None:
        return max((f.rule.severity for f in self.findings), key=severity_rank, default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "site": self.site, "url": self.url, "run_id": self.run_id,
            "started": self.started.isoformat(), "duration_seconds": round(self.duration_seconds, 3),
            "accounts": self.accounts, "policies": self.policies, "groups": self.groups, "score": self.score,
            "by_severity": self.by_severity(), "by_rule": self.by_rule(),
            "findings": [f.to_json() for f in self.findings],
            "accepted": [{**f.to_json(), "acceptance": _acc(a)} for f, a in self.accepted],
            "expired_acceptances": [{**f.to_json(), "acceptance": _acc(a)} for f, a in self.expired],
            "unused_acceptances": [_acc(a) for a in self.unused_acceptances],
            "notes": self.notes,
        }


def _acc(a: files.Acceptance) -> dict[str, str]:
    return {"rule": a.rule, "subject": a.subject, "reason": a.reason, "expires": a.expires.isoformat(),
            "approved_by": a.approved_by}


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-severity_rank(f.rule.severity), f.rule.id, f.subject))


def run_audit(src: LdapSource, password: str, *, resolve: Callable[[Path], Path] = lambda p: p,
              now: datetime | None = None, today: date | None = None,
              progress: Callable[[int], None] | None = None) -> AuditRun:
    """Given a source, its bind password and a path resolver (relative to the config), audit it.

    ``now`` is the rules' clock (UTC); ``today`` the date acceptances are judged on (Asia/Taipei).
    Raise files.FileInvalid for a bad baseline / accepted-risk file, DirectoryError when the
    directory cannot be reached, verified, bound or read.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    today = today or now.astimezone(TZ).date()
    baseline = files.load_baseline(resolve(src.baseline_file)) if src.baseline_file else None
    acceptances = files.load_accepted(resolve(src.accepted_risk_file)) if src.accepted_risk_file else []
    run = AuditRun(src.name, src.site, src.url, uuid.uuid4().hex, now)
    ca = resolve(src.ca_file) if src.ca_file else None
    with Directory(src, password, ca_file=ca) as d:
        ctx = RuleContext(src.rules, now, d.posture(), default_policy_dn=src.default_policy_dn, baseline=baseline)
        for dn, attrs in d.search(src.base_dn, src.policy_filter,
                                  ["pwdMinLength", "pwdCheckQuality", "pwdLockout", "pwdMaxFailure",
                                   "pwdInHistory", "pwdMaxAge"]):
            ctx.policies[norm_dn(dn)] = Policy.from_attrs(dn, attrs)
        for group in src.privileged_groups:
            entry = d.entry(group, ["member"])
            if entry is None:
                run.notes.append(f"privileged group {group} does not exist")
                continue
            ctx.groups[group] = entry.get("member", [])
        rules = make_rules(ctx)
        findings = _stream(d.accounts(), rules, ctx, run, progress)
        for norm, original in _unresolved(ctx):
            entry = d.entry(original, ["pwdAccountLockedTime"])
            locked = (entry or {}).get("pwdaccountlockedtime", [None])[0]
            ctx.members[norm] = MemberStatus(entry is not None, locked == "000001010000Z")
        for r in rules:
            findings.extend(r.finish())
    run.policies, run.groups = len(ctx.policies), len(ctx.groups)
    if baseline is None and src.privileged_groups:
        run.notes.append("no baseline_file: privileged membership changes (LDAP-PRIV-001/002) not checked")
    applied = files.apply_acceptances(findings, acceptances, today)
    run.findings = _sorted(applied.active)
    run.accepted, run.expired, run.unused_acceptances = applied.accepted, applied.expired, applied.unused
    for _, a in applied.expired:
        run.notes.append(f"acceptance of {a.rule} for {a.subject} expired on {a.expires}: the finding is back")
    run.score = posture_score(run.findings)
    run.duration_seconds = time.monotonic() - started
    return run


def _stream(accounts: Iterable[Account], rules: list[Rule], ctx: RuleContext, run: AuditRun,
            progress: Callable[[int], None] | None) -> list[Finding]:
    # Only rules that look at accounts are called per account (the hot loop of a 100k directory).
    hooks = [r.account for r in rules if type(r).account is not Rule.account]
    wanted = {norm_dn(m) for members in ctx.groups.values() for m in members}
    members = ctx.members
    findings: list[Finding] = []
    extend = findings.extend
    n = 0
    for acct in accounts:
        n += 1
        for hook in hooks:
            extend(hook(acct))
        if wanted:
            key = acct.dn.lower()
            if ", " in key or " ," in key:
                key = norm_dn(key)
            if key in wanted:
                members[key] = MemberStatus(True, acct.disabled)
        if progress is not None and not n % 5000:
            progress(n)
    run.accounts = n
    return findings


def _unresolved(ctx: RuleContext) -> list[tuple[str, str]]:
    out = {}
    for members in ctx.groups.values():
        for m in members:
            key = norm_dn(m)
            if key not in ctx.members:
                out[key] = m
    return list(out.items())

"""One audit of one LDAP source: read the directory once, run every rule, apply accepted risks, score.

Flow: load the reviewed files (baseline, accepted risks: a bad file stops the run before any
connection) → connect and bind (directory.py) → posture probes, policies, privileged groups →
stream every account through the account rules (one pass, bounded memory; with ldapsearch, the
searches start before the bind and clean accounts are screened out in C, see bulk.py) → resolve the
privileged members the stream did not cover → finish rules → accepted risks → posture score.
"""

from __future__ import annotations

import contextlib
import gc
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

from ldap3.utils.conv import escape_filter_chars

from citydc.config.models import LdapSource
from citydc.sso import bulk as bulk_mod
from citydc.sso import files, ldif
from citydc.sso.bulk_search import BulkSearch, DirectoryError, Prepared, prepare
from citydc.sso.deadline import DEADLINE_FACTOR, DeadlinePassed, deadline, deadline_seconds
from citydc.sso.directory import Directory
from citydc.sso.model import SEVERITIES, Account, Finding, severity_rank
from citydc.sso.rules import (
    MemberStatus,
    NoPolicy,
    PasswordAge,
    Policy,
    Rule,
    RuleContext,
    StaleAccount,
    _Duplicates,
    make_rules,
    norm_dn,
    strong_prefixes,
)

__all__ = ["AuditRun", "group_members", "posture_score", "resolve_members", "run_audit"]

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
    # findings of a set of accounts (duplicates) with accounts their acceptance does not list: active again
    uncovered: list[tuple[Finding, files.Acceptance, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    score: int = 100
    unchecked: list[str] = field(default_factory=list)  # checks that could not run, and why (the run exits 1)

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
            "uncovered_acceptances": [{**f.to_json(), "acceptance": _acc(a), "not_covered": extra}
                                      for f, a, extra in self.uncovered],
            "notes": self.notes,
        }


def _acc(a: files.Acceptance) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": a.rule, "subject": a.subject, "reason": a.reason,
                           "expires": a.expires.isoformat(), "approved_by": a.approved_by}
    if a.accounts is not None:
        out["accounts"] = list(a.accounts)
    return out


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-severity_rank(f.rule.severity), f.rule.id, f.subject))


def run_audit(src: LdapSource, password: str, *, resolve: Callable[[Path], Path] = lambda p: p,
              now: datetime | None = None, today: date | None = None,
              progress: Callable[[int], None] | None = None, prepared: Prepared | None = None,
              started: float | None = None) -> AuditRun:
    """Given a source, its bind password and a path resolver (relative to the config), audit it.

    ``now`` is the rules' clock (UTC); ``today`` the date acceptances are judged on (Asia/Taipei).
    ``prepared``: the files and the bulk search from ``bulk_search.prepare(src, password, resolve)``,
    already running (the command starts it before importing the rest); closed here in any case.
    ``started``: the ``time.monotonic()`` the run's duration counts from (default: now).
    Raise files.FileInvalid for a bad baseline / accepted-risk file, DirectoryError when the
    directory cannot be reached, verified, bound or read, or gives no complete answer within the
    source's deadline (``DEADLINE_FACTOR`` × ``timeout_seconds`` from ``started``, see deadline.py).
    """
    started = time.monotonic() if started is None else started
    limit = deadline_seconds(src.timeout_seconds)
    why = f"no complete answer within {limit:g} s (the deadline: {DEADLINE_FACTOR} × timeout_seconds)"
    try:
        with deadline(max(0.001, limit - (time.monotonic() - started)), why):
            return _run_audit(src, password, resolve, now, today, progress, prepared, started)
    except DeadlinePassed as exc:
        raise DirectoryError(str(exc)) from None


def _run_audit(src: LdapSource, password: str, resolve: Callable[[Path], Path], now: datetime | None,
               today: date | None, progress: Callable[[int], None] | None, prepared: Prepared | None,
               started: float) -> AuditRun:
    now = now or datetime.now(UTC)
    today = today or now.astimezone(TZ).date()
    run = AuditRun(src.name, src.site, src.url, uuid.uuid4().hex, now)
    ca = resolve(src.ca_file) if src.ca_file else None
    with contextlib.ExitStack() as stack:
        if prepared is not None:
            stack.callback(prepared.close)
        else:
            # The bulk read starts first: its searches run while ldap3 binds, probes and reads policies and groups.
            prepared = prepare(src, password, resolve)
            stack.callback(prepared.close)
        baseline, acceptances, bulk = prepared.baseline, prepared.acceptances, prepared.bulk
        d = stack.enter_context(Directory(src, password, ca_file=ca))
        ctx = RuleContext(src.rules, now, d.posture(), default_policy_dn=src.default_policy_dn, baseline=baseline)
        for dn, attrs in d.search(src.base_dn, src.policy_filter,
                                  ["pwdMinLength", "pwdCheckQuality", "pwdLockout", "pwdMaxFailure",
                                   "pwdInHistory", "pwdMaxAge"]):
            ctx.policies[norm_dn(dn)] = Policy.from_attrs(dn, attrs)
        for group in src.privileged_groups:
            members = group_members(d, src, group, ctx.members, run.notes, ctx.via.setdefault(group, {}))
            if members is not None:
                ctx.groups[group] = members
        rules = make_rules(ctx)
        screen = _screen(rules, ctx) if bulk is not None else None
        if screen is not None and bulk is not None:
            findings = _stream_screened(bulk, screen, rules, ctx, run, progress)
        else:
            findings = _stream(bulk.accounts() if bulk is not None else d.accounts(), rules, ctx, run, progress)
        resolve_members(d, ctx)
        for r in rules:
            findings.extend(r.finish())
        run.notes += referral_notes(d.referrals, bulk.referrals if bulk is not None else [])
    run.policies, run.groups = len(ctx.policies), len(ctx.groups)
    if baseline is None and src.privileged_groups:
        run.notes.append("no baseline_file: privileged membership changes (LDAP-PRIV-001/002) not checked")
    applied = files.apply_acceptances(findings, acceptances, today)
    run.findings = _sorted(applied.active)
    run.accepted, run.expired, run.unused_acceptances = applied.accepted, applied.expired, applied.unused
    run.uncovered = applied.uncovered
    for _, a in applied.expired:
        run.notes.append(f"acceptance of {a.rule} for {a.subject} expired on {a.expires}: the finding is back")
    for _, a, extra in applied.uncovered:
        run.notes.append(f"acceptance of {a.rule} for {a.subject} does not cover {', '.join(extra)} (it lists "
                         f"{len(a.accounts or ())} accounts): the finding is back")
    run.score = posture_score(run.findings)
    run.duration_seconds = time.monotonic() - started
    return run


GROUP_ATTRIBUTES = ("member", "uniqueMember", "memberUid")
# Entries read to find nested groups, per privileged group: a bound whatever loops or fans out in the directory.
MAX_NESTED_LOOKUPS = 1000


def group_members(d: Any, src: LdapSource, group: str, statuses: dict[str, MemberStatus], notes: list[str],
                  via: dict[str, str] | None = None) -> list[str] | None:
    """Given the open directory, the source, a privileged group's DN, the member statuses and the run's notes,
    return the group's member DNs, nested groups' members included (None when the group does not exist: a
    note says so). ``via`` gets {member DN: the nested group it is a member of} for the members that are not
    direct.

    A group lists its members as ``member`` (groupOfNames), ``uniqueMember`` (groupOfUniqueNames, a DN with an
    optional ``#'…'B`` uid suffix) or ``memberUid`` (posixGroup: a uid, which nss/sssd resolve to the accounts
    with that uid). Read as ``member`` only, a posixGroup looked empty: every baseline member "removed"
    (LDAP-PRIV-002) and its real members never checked. A memberUid no account has is a member that does not
    exist (LDAP-PRIV-004, subject ``memberUid=VALUE in GROUP``): an account created with that uid gets the rights.
    A member that is itself a group passes its members on (sssd and nss resolve nested groups, so they get the
    rights): they are members too, each checked against the baseline (a baseline that approves a nested group
    does not approve whoever is added to it later).
    """
    seen = len(d.referrals)
    entry = d.entry(group, list(GROUP_ATTRIBUTES))
    if entry is None:
        if len(d.referrals) == seen:  # else held by another server: the referral notes name it
            notes.append(f"privileged group {group} does not exist")
        return None
    members = _direct_members(d, src, entry, statuses)
    known = {files.dn_key(group)} | {files.dn_key(m) for m in members}
    todo = [m for m in members if not m.startswith("memberUid=")]
    looked = 0
    while todo and looked < MAX_NESTED_LOOKUPS:
        outer = todo.pop(0)
        looked += 1
        sub = d.entry(outer, list(GROUP_ATTRIBUTES))
        for m in _direct_members(d, src, sub, statuses) if sub else ():
            if (k := files.dn_key(m)) not in known:
                known.add(k)
                members.append(m)
                if via is not None:
                    via[m] = outer
                if not m.startswith("memberUid="):
                    todo.append(m)
    if todo:
        notes.append(f"privileged group {group}: nested groups read up to {MAX_NESTED_LOOKUPS} entries; "
                     f"{len(todo)} member(s) not looked into")
    return members


def _direct_members(d: Any, src: LdapSource, entry: dict[str, list[str]],
                    statuses: dict[str, MemberStatus]) -> list[str]:
    """Given a group's entry (``GROUP_ATTRIBUTES``), return its direct members' DNs (see ``group_members``)."""
    members = list(entry.get("member", []))
    members += [v.rsplit("#'", 1)[0] if v.endswith("'B") else v for v in entry.get("uniquemember", [])]
    # An rfc2307bis group is a groupOfNames and a posixGroup at once: its accounts are often both member and
    # memberUid values, maybe spelled otherwise (``uid=SW-Admin1`` as written, the entry's own DN from the search).
    keys = {files.dn_key(m) for m in members}
    for uid in entry.get("memberuid", []):
        # escaped (RFC 4515): a memberUid is text from the directory, and a * or ) in it must not change the search
        found = d.search(src.base_dn, f"(&{src.account_filter}(uid={escape_filter_chars(uid)}))", ["1.1"])
        if not found:
            missing = f"memberUid={uid}"
            statuses[norm_dn(missing)] = MemberStatus(False)
            members.append(missing)
        for dn, _ in found:
            if (k := files.dn_key(dn)) not in keys:
                keys.add(k)
                members.append(dn)
    return members


def referral_notes(referrals: list[tuple[str, list[str]]], bulk: list[str]) -> list[str]:
    """Given the referrals the small reads met ((search base, URLs)) and the bulk read's search references,
    return the run's note (none without referrals): what another server holds was not audited. A referral is
    never followed: ldap3 would bind to the server it names with the audit's DN and password."""
    urls = list(dict.fromkeys([u for _, us in referrals for u in us] + list(bulk)))
    if not urls and not referrals:
        return []
    shown = ", ".join(urls[:5]) + (f" and {len(urls) - 5} more" if len(urls) > 5 else "")
    return [f"{len(urls) or 1} referral(s) to another server not followed; the entries there were not audited: "
            f"{shown or '(no URL given)'}"]


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


def _screen(rules: list[Rule], ctx: RuleContext) -> bulk_mod.Screen | None:
    """Given the rules and the context, return the fast path's screen, or None when it cannot be used."""
    if any(type(r).account is not Rule.account and not r.screened for r in rules):
        return None  # a rule that may fire on a clean account
    if any(isinstance(r, NoPolicy) for r in rules) and (
            ctx.default_policy_dn is None or norm_dn(ctx.default_policy_dn) not in ctx.policies):
        return None  # every account would be a candidate of LDAP-ACC-003
    last_cut = changed_cut = ""
    for r in rules:
        if isinstance(r, StaleAccount):
            last_cut = r.cut
        elif isinstance(r, PasswordAge):
            changed_cut = r.limit(ctx.default_policy_dn)[1]
    return bulk_mod.Screen(strong_prefixes(ctx.settings.weak_schemes), last_cut, changed_cut)


def _stream_screened(search: BulkSearch, screen: bulk_mod.Screen, rules: list[Rule], ctx: RuleContext,
                     run: AuditRun, progress: Callable[[int], None] | None) -> list[Finding]:
    """Like ``_stream``, with clean accounts screened out in C (bulk.py); candidates go through every rule."""
    hooks = [r.account for r in rules if type(r).account is not Rule.account]
    dups = [r for r in rules if isinstance(r, _Duplicates)]
    wanted = {norm_dn(m) for members in ctx.groups.values() for m in members}
    members = ctx.members
    findings: list[Finding] = []
    n = step = 0
    # The screen makes a tuple per entry and the candidates' dicts: hundreds of thousands of young objects,
    # none in a reference cycle, so reference counting frees them all; the cyclic collector would walk
    # the whole heap (the imported modules, the rules) again and again meanwhile. Paused for the read.
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for text, line in search.blocks():
            clean, cands = screen.scan(text, line)
            for r in dups:
                r.add_many(clean.values[r.attribute], clean.dns)
            if wanted:
                # one C call for the block (a DN holds no newline; a mismatch falls back to one call each)
                lowered = "\n".join(clean.dns).lower().split("\n") if clean.dns else []
                if len(lowered) != len(clean.dns):
                    lowered = [dn.lower() for dn in clean.dns]
                for key in wanted.intersection(lowered):
                    members[key] = MemberStatus(True, False)  # clean accounts are enabled
            for dn, attrs in cands:
                acct = Account.from_attrs(dn, attrs)
                for hook in hooks:
                    findings.extend(hook(acct))
                if wanted and (key := norm_dn(acct.dn)) in wanted:
                    members[key] = MemberStatus(True, acct.disabled)
            n += len(clean.dns) + len(cands)
            if progress is not None and n // 5000 > step:
                step = n // 5000
                progress(n)
    except ldif.LdifError as exc:
        raise DirectoryError(f"ldapsearch output: {exc}") from None
    finally:
        if gc_was:
            gc.enable()
    run.accounts = n
    return findings


def resolve_members(d: Any, ctx: RuleContext) -> None:
    """Given the open directory and the context, look up the privileged members the account read did not see
    (not accounts, outside the account filter, spelled otherwise) and set their status in ``ctx.members``."""
    for norm, original in _unresolved(ctx):
        seen = len(d.referrals)
        entry = d.entry(original, ["pwdAccountLockedTime"])
        if entry is None and len(d.referrals) > seen:
            # on another server (a referral, not followed): neither missing (LDAP-PRIV-004) nor known disabled
            ctx.members[norm] = MemberStatus(True, False)
            continue
        # (ldap3 lists a requested attribute the entry lacks as [], not absent)
        locked = ((entry or {}).get("pwdaccountlockedtime") or [None])[0]
        ctx.members[norm] = MemberStatus(entry is not None, locked == "000001010000Z")


def _unresolved(ctx: RuleContext) -> list[tuple[str, str]]:
    out = {}
    for members in ctx.groups.values():
        for m in members:
            key = norm_dn(m)
            if key not in ctx.members:
                out[key] = m
    return list(out.items())

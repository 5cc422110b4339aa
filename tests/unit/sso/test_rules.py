"""The rules on hand-made accounts, policies and groups (the lab test proves them on slapd)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citydc.config.models import LdapRuleSettings
from citydc.sso.model import Account, Finding, parse_gtime
from citydc.sso.rules import (
    RULES,
    MemberStatus,
    Policy,
    RuleContext,
    ServerPosture,
    fold,
    make_rules,
    password_problem,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WEAK = LdapRuleSettings().weak_schemes


def g(days: float) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y%m%d%H%M%SZ")


def acct(uid: str, **kw) -> Account:
    base = dict(uid=[uid], uid_number=[str(abs(hash(uid)) % 10**6)], mail=[f"{uid}@x"], passwords=["{SSHA}abc"],
                pwd_changed=g(10), last_success=g(1), created=g(500), locked=None, policy_dn=None)
    base.update(kw)
    return Account(f"uid={uid},ou=people,dc=x", **base)


GOOD = Policy("cn=default,ou=policies,dc=x", 12, True, 5, 365 * 86400)


def run(accounts=(), *, policies=(GOOD,), groups=None, baseline=None, members=None, server=None,
        default="cn=default,ou=policies,dc=x") -> set[tuple[str, str]]:
    ctx = RuleContext(LdapRuleSettings(), NOW, server or ServerPosture("ldap://x"),
                      policies={p.dn.lower(): p for p in policies}, default_policy_dn=default,
                      groups=groups or {}, baseline=baseline, members=members or {})
    found: list[Finding] = []
    rules = make_rules(ctx)
    for a in accounts:
        for r in rules:
            found.extend(r.account(a))
    for r in rules:
        found.extend(r.finish())
    return {f.key for f in found}


@pytest.mark.parametrize(("value", "expected"), [
    ("{SSHA}q1w2", None), ("{SSHA512}q1w2", None), ("{ARGON2}$argon2id$v=19", None), ("{CRYPT}$6$salt$hash", None),
    ("{CRYPT}$y$j9T$salt", None), ("plain-text", ("cleartext", "(none)")), ("{CLEARTEXT}x", ("cleartext", "CLEARTEXT")),
    ("{cleartext}x", ("cleartext", "CLEARTEXT")), ("{MD5}X03MO1qnZdYdgyfeuILPmQ==", ("weak", "MD5")),
    ("{SHA}W6ph", ("weak", "SHA")), ("{SMD5}aa", ("weak", "SMD5")), ("{CRYPT}abJnggxhB/yWI", ("weak", "CRYPT-DES")),
    ("{CRYPT}$1$salt$hash", ("weak", "CRYPT-MD5")), ("{broken", ("cleartext", "(none)")),
])
def test_password_schemes(value, expected):
    assert password_problem(value, WEAK) == expected


def test_a_clean_directory_has_no_finding():
    assert run([acct("a"), acct("b")]) == set()


def test_password_rules_name_the_scheme_never_the_value():
    ctx = RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"))
    (f,) = RULES["LDAP-PWD-001"](ctx).account(acct("a", passwords=["hunter2-secret"]))
    assert "hunter2" not in repr(f.to_json())
    assert run([acct("a", passwords=["{MD5}x"])]) == {("LDAP-PWD-002", "uid=a,ou=people,dc=x")}


def test_stale_never_used_and_disabled():
    found = run([acct("old", last_success=g(91)), acct("fresh", last_success=g(89)),
                 acct("never", last_success=None, created=g(100), pwd_changed=g(100)),
                 acct("new", last_success=None, created=g(3)),
                 acct("gone", last_success=g(900), pwd_changed=g(900), locked="000001010000Z"),
                 acct("templocked", last_success=g(900), locked="20261204100000Z")])
    assert found == {("LDAP-ACC-001", "uid=old,ou=people,dc=x"), ("LDAP-ACC-001", "uid=never,ou=people,dc=x"),
                     ("LDAP-ACC-001", "uid=templocked,ou=people,dc=x")}


def test_password_age_uses_the_policy_then_the_setting():
    short = Policy("cn=short,dc=x", 12, True, 5, 30 * 86400)
    never = Policy("cn=never,dc=x", 12, True, 5, 0)
    found = run([acct("a", pwd_changed=g(31), policy_dn="cn=short,dc=x"),
                 acct("b", pwd_changed=g(29), policy_dn="cn=short,dc=x"),
                 acct("c", pwd_changed=g(366), policy_dn="cn=never,dc=x"),
                 acct("d", pwd_changed=g(364))], policies=(GOOD, short, never))
    assert {k for k in found if k[0] == "LDAP-ACC-002"} == {("LDAP-ACC-002", "uid=a,ou=people,dc=x"),
                                                            ("LDAP-ACC-002", "uid=c,ou=people,dc=x")}


def test_no_policy():
    assert run([acct("a", policy_dn="cn=gone,dc=x")]) == {("LDAP-ACC-003", "uid=a,ou=people,dc=x")}
    assert run([acct("a")], default=None) == {("LDAP-ACC-003", "uid=a,ou=people,dc=x")}
    assert run([acct("a", policy_dn="CN=Default, ou=policies,dc=x")]) == set()  # DNs compare normalised


def test_weak_policy_rules():
    quality_off = Policy.from_attrs("cn=q,dc=x", {"pwdminlength": ["14"], "pwdcheckquality": ["0"],
                                                  "pwdlockout": ["TRUE"], "pwdmaxfailure": ["5"],
                                                  "pwdinhistory": ["5"], "pwdmaxage": ["86400"]})
    no_fail = Policy.from_attrs("cn=f,dc=x", {"pwdminlength": ["14"], "pwdcheckquality": ["2"],
                                              "pwdlockout": ["TRUE"], "pwdmaxfailure": ["0"],
                                              "pwdinhistory": ["1"], "pwdmaxage": [str(400 * 86400)]})
    assert run(policies=(GOOD, quality_off, no_fail), default=None) == {
        ("LDAP-POL-001", "cn=q,dc=x"), ("LDAP-POL-002", "cn=f,dc=x"), ("LDAP-POL-003", "cn=f,dc=x"),
        ("LDAP-POL-004", "cn=f,dc=x")}


def test_privileged_groups_against_baseline():
    g1 = "cn=admins,dc=x"
    groups = {g1: ["uid=a,dc=x", "uid=new,dc=x", "uid=off,dc=x", "uid=ghost,dc=x"]}
    baseline = {"CN=admins,dc=x": ["uid=A,dc=x", "uid=off,dc=x", "uid=ghost,dc=x", "uid=left,dc=x"]}
    members = {"uid=a,dc=x": MemberStatus(True), "uid=new,dc=x": MemberStatus(True),
               "uid=off,dc=x": MemberStatus(True, disabled=True), "uid=ghost,dc=x": MemberStatus(False)}
    assert run(groups=groups, baseline=baseline, members=members) == {
        ("LDAP-PRIV-001", f"uid=new,dc=x in {g1}"), ("LDAP-PRIV-002", "uid=left,dc=x in CN=admins,dc=x"),
        ("LDAP-PRIV-003", f"uid=off,dc=x in {g1}"), ("LDAP-PRIV-004", f"uid=ghost,dc=x in {g1}")}
    # Without a baseline the membership changes are not judged; disabled and missing members still are.
    assert {r for r, _ in run(groups=groups, members=members)} == {"LDAP-PRIV-003", "LDAP-PRIV-004"}


def test_duplicates():
    found = run([acct("x", uid_number=["1"], mail=["A@x"]), acct("X", uid_number=["1"], mail=["a@x"]),
                 acct("y", uid_number=["2"], mail=["y@x"])])
    assert found == {("LDAP-DUP-001", "uid=x"), ("LDAP-DUP-002", "uidNumber=1"), ("LDAP-DUP-003", "mail=a@x")}


def test_server_posture():
    soon = ServerPosture("ldap://x", anonymous_bind=True, plain_simple_bind=True,
                         cert_not_after=NOW + timedelta(days=29))
    assert run(server=soon) == {("LDAP-SRV-001", "ldap://x"), ("LDAP-SRV-002", "ldap://x"),
                                ("LDAP-SRV-003", "ldap://x")}
    fine = ServerPosture("ldap://x", anonymous_bind=False, plain_simple_bind=False,
                         cert_not_after=NOW + timedelta(days=31))
    assert run(server=fine) == set()
    assert run(server=ServerPosture("ldap://x")) == set()  # not probed: no finding


def test_disabled_rules_do_not_run():
    ctx = RuleContext(LdapRuleSettings(disabled=["LDAP-DUP-003"]), NOW, ServerPosture("ldap://x"))
    assert "LDAP-DUP-003" not in {r.info.id for r in make_rules(ctx)}


def test_rule_metadata_complete_and_ids_stable():
    for rid, cls in RULES.items():
        assert cls.info.id == rid and cls.info.severity in ("info", "low", "medium", "high", "critical")
        assert len(cls.info.description) > 40 and len(cls.info.remediation) > 20


@pytest.mark.parametrize("value", ["", "2026", "20261304000000Z", "2026120400000", "abcdefghijklmnZ", None])
def test_bad_times_are_absent(value):
    assert parse_gtime(value) is None


def test_add_many_counts_like_one_account_at_a_time():
    """The bulk path of the duplicate rules (clean accounts of the screened read) lowers a block's values in one
    call: case-insensitive uids and mails, None for a missing value, repeats within and across blocks."""
    ctx = RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"), default_policy_dn=None)
    blocks = [(["Ann", "bob", None, "ΑΣ"], ["uid=1", "uid=2", "uid=3", "uid=4"]),
              (["ANN", "cy", "cY", "ας"], ["uid=5", "uid=6", "uid=7", "uid=8"]),
              (["dee", "Eve"], ["uid=9", "uid=10"])]
    bulk, one = (make_rules(ctx) for _ in range(2))
    for rules, many in ((bulk, True), (one, False)):
        for r in rules:
            if not hasattr(r, "add_many"):
                continue
            for values, dns in blocks:
                if many:
                    r.add_many(values, dns)
                else:
                    for v, dn in zip(values, dns, strict=True):
                        if v is not None:
                            r._add(fold(v) if r.lower else v, dn)
    keys = [sorted((*f.key, tuple(f.evidence["accounts"])) for r in rules for f in r.finish())
            for rules in (bulk, one)]
    assert keys[0] == keys[1]
    assert ("LDAP-DUP-001", "uid=ann", ("uid=1", "uid=5")) in keys[0]
    assert ("LDAP-DUP-001", "uid=ασ", ("uid=4", "uid=8")) in keys[0]

"""The audit's fast path (bulk.py) gives exactly the findings of the careful path, on generated directories."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.config.models import LdapRuleSettings
from citydc.sso import ldap_audit, ldif
from citydc.sso.bulk import b64_prefix_pattern
from citydc.sso.model import ADMIN_LOCK, Account
from citydc.sso.rules import Policy, Rule, RuleContext, ServerPosture, make_rules, norm_dn, rule

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DEFAULT = "cn=default,ou=policies,dc=x"
PASSWORDS = ["{SSHA}q1w2e3r4t5y6u7", "{SSHA512}abcdefgh", "{CRYPT}$6$salt$hash", "{ARGON2}$argon2id$x", "{MD5}X03MO1",
             "{SHA}W6ph5Mm5", "{CLEARTEXT}secret", "plain-text", "{CRYPT}abJnggxhB/yWI", "{CRYPT}$1$s$h", "{SSHA",
             "{ssha}lower", "{SSHA}\u00e9t\u00e9"]


def g(days: int) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y%m%d%H%M%SZ")


@given(st.binary(max_size=12), st.binary(max_size=12), st.binary(min_size=1, max_size=12))
def test_the_base64_prefix_pattern_matches_exactly_the_values_starting_with_the_prefix(prefix, rest, other):
    pat = re.compile(b64_prefix_pattern(prefix))
    assert pat.match(base64.b64encode(prefix + rest).decode())
    data = other + rest
    assert bool(pat.match(base64.b64encode(data).decode())) == data.startswith(prefix)


@st.composite
def account_ldif(draw, i: int) -> str:
    """One account paragraph: mostly the directory's usual shape, sometimes anything a rule or the reader minds."""
    uid = draw(st.sampled_from(["ann", "bob", "Ann", f"u{i}", f"u{i}", f"u{i}"]))
    lines = {
        "uid": f"uid: {uid}",
        "uidNumber": f"uidNumber: {draw(st.sampled_from([str(1000 + i)] * 4 + ['7', '8']))}",
        "mail": f"mail: {draw(st.sampled_from([f'u{i}@x'] * 4 + ['desk@x', 'DESK@x']))}",
        "userPassword": "userPassword:: "
                        + base64.b64encode(draw(st.sampled_from(PASSWORDS[:3] * 4 + PASSWORDS)).encode()).decode(),
        "createTimestamp": f"createTimestamp: {g(draw(st.sampled_from([500, 10, 89, 91])))}",
        "pwdChangedTime": f"pwdChangedTime: {g(draw(st.sampled_from([10] * 6 + [364, 366, 900])))}",
        "pwdLastSuccess": f"pwdLastSuccess: {g(draw(st.sampled_from([1] * 6 + [89, 91, 400])))}",
    }
    if draw(st.integers(0, 9)) == 0:
        del lines[draw(st.sampled_from(sorted(lines)))]
    odd = draw(st.integers(0, 30))
    if odd == 1:
        lines["pwdAccountLockedTime"] = f"pwdAccountLockedTime: {draw(st.sampled_from([ADMIN_LOCK, g(1)]))}"
    elif odd == 2:
        lines["pwdPolicySubentry"] = f"pwdPolicySubentry: {draw(st.sampled_from([DEFAULT, 'cn=gone,dc=x']))}"
    elif odd == 3:
        lines["uid"] = "uid:: " + base64.b64encode(b"bob").decode()
    elif odd == 4:
        lines["mail2"] = "MAIL: second@x"
    elif odd == 5:
        lines["cn"] = "cn: extra"
    elif odd == 6:
        lines["pwdLastSuccess"] = "pwdLastSuccess: 2026"
    elif odd == 7:
        lines["comment"] = "# note: a comment inside"
    elif odd == 8:
        lines["pwdLastSuccess"] = f"pwdLastSuccess: {g(1)}\npwdLastSuccess: {g(400)}"
    elif odd == 9 and "userPassword" in lines:  # a damaged value: base64 of a length b64decode refuses
        lines["userPassword"] = lines["userPassword"].rstrip("=")[:-draw(st.integers(1, 3))] + draw(
            st.sampled_from(["", "=", "=="]))
    body = list(lines.values())
    if draw(st.integers(0, 10)) == 0:
        body = draw(st.permutations(body))
    return "\n".join([f"dn: cn=a{i},ou=p{i % 3},dc=x", *body])  # DNs are unique in a directory


@st.composite
def directory(draw) -> str:
    n = draw(st.integers(0, 40))
    paragraphs = [draw(account_ldif(i)) for i in range(n)]
    for _ in range(draw(st.integers(0, 3))):
        paragraphs.insert(draw(st.integers(0, len(paragraphs))), "# pagedresults: cookie=AQ==")
    return "\n\n".join(paragraphs) + "\n\n" if paragraphs else ""


class Blocks:
    """What BulkSearch.blocks yields: the output cut at entry boundaries, here at chosen places."""

    def __init__(self, text: str, cuts: list[int]) -> None:
        self.data, self.cuts = text.encode(), cuts

    def blocks(self):
        bounds = sorted({c for c in self.cuts if 0 < c < len(self.data)})
        rest, line = b"", 1
        for a, b in zip([0, *bounds], [*bounds, len(self.data)], strict=True):
            data = rest + self.data[a:b]
            cut = data.rfind(b"\n\n")
            if cut < 0:
                rest = data
                continue
            done, rest = data[:cut + 2], data[cut + 2:]
            yield done.decode(), line
            line += done.count(b"\n")
        if rest.strip(b"\n"):
            yield rest.decode() + "\n\n", line


def context(default: str | None = DEFAULT) -> RuleContext:
    ctx = RuleContext(LdapRuleSettings(stale_days=90), NOW, ServerPosture("ldap://x"), default_policy_dn=default)
    ctx.policies[norm_dn(DEFAULT)] = Policy(DEFAULT, 12, True, 5, 365 * 86400)
    ctx.groups = {"cn=admins,dc=x": ["cn=a0,ou=p0,dc=x", "CN=a3, ou=p0,dc=x", "cn=a5,ou=p2,dc=x", "cn=x,dc=x"]}
    return ctx


def audit(text: str, cuts: list[int], fast: bool, default: str | None = DEFAULT):
    ctx = context(default)
    rules = make_rules(ctx)
    run = ldap_audit.AuditRun("s", "siwei", "ldap://x", "r", NOW)
    try:
        if fast:
            screen = ldap_audit._screen(rules, ctx)
            assert screen is not None
            found = ldap_audit._stream_screened(Blocks(text, cuts), screen, rules, ctx, run, None)
        else:
            accounts = (Account.from_attrs(dn, a) for dn, a in ldif.parse_chunks([text.encode()]))
            found = ldap_audit._stream(accounts, rules, ctx, run, None)
    except (ldif.LdifError, ldap_audit.DirectoryError) as exc:  # both paths must refuse the same damaged value
        return "refused", str(exc).removeprefix("ldapsearch output: ")
    for r in rules:
        found.extend(r.finish())
    return (sorted((f.rule.id, f.subject, f.message, repr(sorted(f.evidence.items()))) for f in found),
            run.accounts, ctx.members)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(directory(), st.lists(st.integers(1, 20000), max_size=5))
def test_the_fast_path_finds_exactly_what_the_careful_path_finds(text, cuts):
    assert audit(text, cuts, fast=True) == audit(text, cuts, fast=False)


def test_the_fast_path_finds_the_planted_kinds_in_a_large_clean_directory():
    clean = [f"dn: uid=u{i},ou=p,dc=x\nuid: u{i}\nuidNumber: {1000 + i}\nmail: u{i}@x\n"
                    f"userPassword:: {base64.b64encode(b'{SSHA}abcdef').decode()}\n"
                    f"pwdChangedTime: {g(10)}\npwdLastSuccess: {g(1)}\n\n" for i in range(3000)]
    odd = (f"dn: uid=weak,ou=p,dc=x\nuid: u7\nuserPassword:: {base64.b64encode(b'{MD5}x').decode()}\n"
           f"pwdChangedTime: {g(10)}\npwdLastSuccess: {g(1)}\n\n"
           f"dn: uid=stale,ou=p,dc=x\nuid: stale\npwdChangedTime: {g(10)}\npwdLastSuccess: {g(200)}\n\n")
    text = "".join(clean[:1500]) + odd + "".join(clean[1500:])
    found, n, _ = audit(text, [65536, 131072], fast=True)
    assert n == 3002
    assert {(f[0], f[1]) for f in found} == {("LDAP-PWD-002", "uid=weak,ou=p,dc=x"),
                                             ("LDAP-ACC-001", "uid=stale,ou=p,dc=x"), ("LDAP-DUP-001", "uid=u7")}
    assert (found, n) == audit(text, [], fast=False)[:2]


def test_the_fast_path_is_off_for_an_unscreened_rule_or_without_a_default_policy():
    ctx = context()
    assert ldap_audit._screen(make_rules(ctx), ctx) is not None
    assert ldap_audit._screen(make_rules(context(None)), context(None)) is None

    @rule("TEST-NEW-001", "low", "account", "t", "d", "r")
    class NewRule(Rule):
        def account(self, acct):
            return ()

    try:
        assert ldap_audit._screen(make_rules(ctx), ctx) is None
    finally:
        from citydc.sso.rules import RULES
        del RULES["TEST-NEW-001"]

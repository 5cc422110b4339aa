"""Referrals are never followed (ldap3 would bind to the host a referral names with the audit's DN and password,
in clear when the referral says ldap:// and the source is LDAPS), and what they hold is named in the notes."""

from __future__ import annotations

import ldap3

from citydc.config.models import LdapSource
from citydc.sso import bulk_search
from citydc.sso.directory import Directory
from citydc.sso.ldap_audit import referral_notes


def src(**kw) -> LdapSource:
    base = dict(name="city", url="ldaps://127.0.0.1:13636", start_tls=False, bind_dn="cn=auditor,dc=x",
                bind_password="env:PW", base_dn="dc=x", site="siwei")
    return LdapSource(**{**base, **kw})


def test_the_audit_connection_does_not_follow_referrals(monkeypatch):
    made = []

    class Conn:
        def __init__(self, *a, **kw) -> None:
            made.append(kw)

        def open(self) -> None:
            pass

    monkeypatch.setattr(ldap3, "Connection", Conn)
    Directory(src(), "secret")._open(tls=True, user="cn=auditor,dc=x", password="secret")
    Directory(src(), "secret")._open(tls=False)
    # ldap3 follows referrals unless told not to (its default is True)
    assert [kw.get("auto_referrals", True) for kw in made] == [False, False]


class FakeConn:
    def __init__(self, entries, result) -> None:
        self.entries, self.result = entries, result
        self.extend = self
        self.standard = self

    def paged_search(self, *a, **kw):
        return self.entries


def test_a_search_answered_with_a_referral_finds_nothing_and_records_it():
    d = Directory(src(), "secret")
    d.conn = FakeConn([], {"result": 10, "description": "referral",
                           "referrals": ["ldap://evil.example/uid=x,ou=remote,dc=x??base"]})
    assert d.entry("uid=x,ou=remote,dc=x", ["pwdAccountLockedTime"]) is None
    assert d.referrals == [("uid=x,ou=remote,dc=x", ["ldap://evil.example/uid=x,ou=remote,dc=x??base"])]


def test_search_references_in_a_subtree_search_are_recorded():
    d = Directory(src(), "secret")
    d.conn = FakeConn([{"type": "searchResEntry", "dn": "cn=p,dc=x", "raw_attributes": {}},
                       {"type": "searchResRef", "uri": ["ldap://other/ou=remote,dc=x??sub"]}], {"result": 0})
    assert [dn for dn, _ in d.search("dc=x", "(objectClass=pwdPolicy)", ["pwdMaxAge"])] == ["cn=p,dc=x"]
    assert d.referrals == [("dc=x", ["ldap://other/ou=remote,dc=x??sub"])]


def test_the_bulk_read_records_the_search_references_ldapsearch_prints_as_comments():
    search = bulk_search.BulkSearch(src(), "secret")
    text = (b"dn: uid=a,dc=x\nuid: a\n\n# refldap://127.0.0.1:14301/ou=remote,dc=x??sub\n\n"
            b"# pagedresults: cookie=\n\n")
    search._queue.put((-1, 1))
    search._queue.put((0, text[:20]))
    search._queue.put((0, text[20:]))
    search._queue.put((0, None))
    search._done.append(type("Done", (), {"rc": 0})())
    search.searches = [("dc=x", "sub")]
    assert "".join(t for t, _ in search.blocks()).count("dn: ") == 1
    assert search.referrals == ["ldap://127.0.0.1:14301/ou=remote,dc=x??sub"]


def test_the_notes_name_each_referral_once():
    assert referral_notes([], []) == []
    notes = referral_notes([("dc=x", ["ldap://o/ou=r,dc=x??sub"]), ("uid=g,ou=r,dc=x", ["ldap://o/uid=g,ou=r,dc=x"])],
                           ["ldap://o/ou=r,dc=x??sub"])
    assert notes == ["2 referral(s) to another server not followed; the entries there were not audited: "
                     "ldap://o/ou=r,dc=x??sub, ldap://o/uid=g,ou=r,dc=x"]


def test_a_privileged_member_behind_a_referral_is_not_called_missing():
    from datetime import UTC, datetime

    from citydc.config.models import LdapRuleSettings
    from citydc.sso.ldap_audit import resolve_members
    from citydc.sso.rules import MemberStatus, RuleContext, ServerPosture

    class Dir:
        def __init__(self) -> None:
            self.referrals: list = []

        def entry(self, dn, attrs):
            if "ou=remote" in dn:
                self.referrals.append((dn, ["ldap://other/" + dn]))
            return None

    g = "cn=admins,dc=x"
    ctx = RuleContext(LdapRuleSettings(), datetime.now(UTC), ServerPosture("ldap://x"),
                      groups={g: ["uid=ghost,ou=remote,dc=x", "uid=gone,ou=people,dc=x"]})
    resolve_members(Dir(), ctx)
    assert ctx.members == {"uid=ghost,ou=remote,dc=x": MemberStatus(True, False),
                           "uid=gone,ou=people,dc=x": MemberStatus(False, False)}


def test_a_size_limit_says_what_the_audit_account_needs():
    from citydc import execute

    done = execute.Streamed()
    done.rc, done.stderr, done.meaning = 4, "Size limit exceeded (4)\n", "unknown exit code 4"
    msg = bulk_search.ldapsearch_failure(src(), "dc=x", done)
    assert msg.startswith("ldapsearch failed (") and "size.prtotal=unlimited" in msg
    d = Directory(src(), "secret")
    d.conn = FakeConn([], {"result": 4, "description": "sizeLimitExceeded", "message": ""})
    try:
        list(d._accounts_ldap3())
    except bulk_search.DirectoryError as exc:
        assert "size.prtotal=unlimited" in str(exc)
    else:
        raise AssertionError("a cut read must fail")

"""Privileged groups as slapd stores them: member values in another spelling than the baseline (slapd returns
``uid=lin\\2Cmei`` for the entry ``uid=lin\\,mei``), posixGroup memberUid and groupOfUniqueNames uniqueMember."""

from __future__ import annotations

from datetime import UTC, datetime

from citydc.config.models import LdapRuleSettings, LdapSource
from citydc.sso.ldap_audit import group_members
from citydc.sso.rules import MemberStatus, PrivilegedAdded, PrivilegedRemoved, RuleContext, ServerPosture

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
G = "cn=admins,ou=groups,dc=x"


def ctx(groups, baseline) -> RuleContext:
    return RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"), groups=groups, baseline=baseline)


def test_a_member_escaped_otherwise_than_in_the_baseline_is_the_same_member():
    # slapd's pretty form of the member value keeps the hex escape; the baseline has the entry's own DN
    c = ctx({G: ["uid=lin\\2Cmei,ou=people,dc=x", "UID=陳偉-Admin, OU=People,dc=x"]},
            {"CN=Admins, ou=groups,dc=x": ["uid=lin\\,mei,ou=people,dc=x", "uid=陳偉-admin,ou=people,dc=x"]})
    assert list(PrivilegedAdded(c).finish()) == []
    assert list(PrivilegedRemoved(c).finish()) == []


def test_a_member_really_added_or_removed_is_still_found():
    c = ctx({G: ["uid=lin\\2Cmei,ou=people,dc=x", "uid=new,ou=people,dc=x"]},
            {G: ["uid=lin\\,mei,ou=people,dc=x", "uid=old,ou=people,dc=x"]})
    assert [f.subject for f in PrivilegedAdded(c).finish()] == [f"uid=new,ou=people,dc=x in {G}"]
    assert [f.subject for f in PrivilegedRemoved(c).finish()] == [f"uid=old,ou=people,dc=x in {G}"]


class FakeDirectory:
    def __init__(self, entry, accounts=None, referral=False) -> None:
        self._entry, self.accounts, self.referral = entry, accounts or {}, referral
        self.referrals: list = []
        self.filters: list[str] = []

    def entry(self, dn, attrs):
        assert {"member", "uniqueMember", "memberUid"} <= set(attrs)
        if self.referral:
            self.referrals.append((dn, ["ldap://elsewhere/" + dn]))
        return self._entry

    def search(self, base, flt, attrs):
        self.filters.append(flt)
        uid = flt.rsplit("(uid=", 1)[1].rstrip(")")
        return [(dn, {}) for dn in self.accounts.get(uid, [])]


def src() -> LdapSource:
    return LdapSource(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=x", bind_password="env:PW",
                      base_dn="dc=x", site="siwei")


def test_a_posix_group_s_members_are_its_memberuid_accounts():
    d = FakeDirectory({"memberuid": ["sw-admin1", "twin", "gone"]},
                      {"sw-admin1": ["uid=sw-admin1,ou=people,dc=x"],
                       "twin": ["uid=twin,ou=a,dc=x", "uid=twin,ou=b,dc=x"]})
    statuses: dict[str, MemberStatus] = {}
    notes: list[str] = []
    members = group_members(d, src(), G, statuses, notes)
    assert members == ["uid=sw-admin1,ou=people,dc=x", "uid=twin,ou=a,dc=x", "uid=twin,ou=b,dc=x",
                       "memberUid=gone"]
    assert statuses == {"memberuid=gone": MemberStatus(False)} and notes == []
    # the filter is the account filter and the uid, escaped
    assert d.filters[0] == "(&(|(objectClass=posixAccount)(objectClass=inetOrgPerson))(uid=sw-admin1))"


def test_a_memberuid_cannot_change_the_filter():
    d = FakeDirectory({"memberuid": ["*)(uid=x"]})
    group_members(d, src(), G, {}, [])
    assert d.filters == ["(&(|(objectClass=posixAccount)(objectClass=inetOrgPerson))(uid=\\2a\\29\\28uid=x))"]


def test_unique_members_lose_their_optional_uid_and_join_member_values():
    d = FakeDirectory({"member": ["uid=a,dc=x"], "uniquemember": ["uid=b,dc=x#'0101'B", "uid=c,dc=x"]})
    assert group_members(d, src(), G, {}, []) == ["uid=a,dc=x", "uid=b,dc=x", "uid=c,dc=x"]


def test_a_group_behind_a_referral_is_not_called_missing():
    notes: list[str] = []
    assert group_members(FakeDirectory(None, referral=True), src(), G, {}, notes) is None
    assert notes == []
    assert group_members(FakeDirectory(None), src(), G, {}, notes) is None
    assert notes == [f"privileged group {G} does not exist"]


class TreeDirectory(FakeDirectory):
    """Entries by DN; a DN it does not hold does not exist."""

    def __init__(self, entries) -> None:
        super().__init__(None)
        self.entries = entries
        self.read: list[str] = []

    def entry(self, dn, attrs):
        self.read.append(dn)
        return self.entries.get(dn)


def test_members_of_a_nested_group_are_members_checked_against_the_baseline():
    nested, inner = "cn=ops,ou=groups,dc=x", "cn=ops-inner,ou=groups,dc=x"
    d = TreeDirectory({
        G: {"member": ["uid=a,dc=x", nested]},
        "uid=a,dc=x": {},
        nested: {"member": ["uid=b,dc=x", inner, G]},  # a loop back to the group itself
        inner: {"uniquemember": ["uid=c,dc=x", "uid=A,dc=x"]},  # uid=a again, spelled otherwise
        "uid=b,dc=x": {}, "uid=c,dc=x": {},
    })
    via: dict[str, str] = {}
    members = group_members(d, src(), G, {}, [], via)
    assert members == ["uid=a,dc=x", nested, "uid=b,dc=x", inner, "uid=c,dc=x"]
    assert via == {"uid=b,dc=x": nested, inner: nested, "uid=c,dc=x": inner}
    c = ctx({G: members}, {G: ["uid=a,dc=x", nested]})
    c.via = {G: via}
    found = {f.subject: f for f in PrivilegedAdded(c).finish()}
    assert set(found) == {f"uid=b,dc=x in {G}", f"{inner} in {G}", f"uid=c,dc=x in {G}"}
    assert found[f"uid=c,dc=x in {G}"].message == f"uid=c,dc=x is in {G} (through {inner}) but not in the baseline"
    assert found[f"uid=c,dc=x in {G}"].evidence["via"] == inner


def test_nested_groups_are_read_a_bounded_number_of_times(monkeypatch):
    from citydc.sso import ldap_audit

    monkeypatch.setattr(ldap_audit, "MAX_NESTED_LOOKUPS", 3)
    chain = {f"cn=g{i},dc=x": {"member": [f"cn=g{i + 1},dc=x"]} for i in range(10)}
    d = TreeDirectory({G: {"member": ["cn=g0,dc=x"]}, **chain})
    notes: list[str] = []
    assert group_members(d, src(), G, {}, notes) == [f"cn=g{i},dc=x" for i in range(4)]
    assert len(d.read) == 4 and notes == [f"privileged group {G}: nested groups read up to 3 entries; "
                                          "1 member(s) not looked into"]


def test_an_rfc2307bis_group_lists_an_account_once_whichever_attribute_names_it():
    d = TreeDirectory({G: {"member": ["uid=SW-Admin1,ou=People,dc=x"], "memberuid": ["sw-admin1", "sw-u7"]}})
    d.accounts = {"sw-admin1": ["uid=sw-admin1,ou=people,dc=x"], "sw-u7": ["uid=sw-u7,ou=people,dc=x"]}
    assert group_members(d, src(), G, {}, []) == ["uid=SW-Admin1,ou=People,dc=x", "uid=sw-u7,ou=people,dc=x"]

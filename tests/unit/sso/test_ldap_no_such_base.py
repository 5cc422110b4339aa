"""A base_dn that does not exist is named as such ("no such object: base_dn ... does not exist"), by either reader,
instead of "ldapsearch failed (unknown exit code 32)" or, with ldap3, a run of 0 accounts (findings-ldap item
15). ldapsearch exits with the LDAP result code; a stand-in answers as slapd does for a missing base."""

from __future__ import annotations

import pytest

from citydc.config.models import LdapSource
from citydc.sso import bulk_search
from citydc.sso.directory import Directory

FAKE = r"""#!/bin/sh
echo "No such object (32)" >&2
echo "Matched DN: dc=example" >&2
exit 32
"""


def src(**kw) -> LdapSource:
    base = dict(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=example", bind_password="env:PW",
                base_dn="ou=nope,dc=example", site="siwei")
    return LdapSource(**{**base, **kw})


@pytest.fixture
def fake(tmp_path) -> str:
    path = tmp_path / "ldapsearch"
    path.write_text(FAKE)
    path.chmod(0o755)
    return str(path)


EXPECTED = ("no such object: base_dn ou=nope,dc=example does not exist "
            "(the nearest entry that exists: dc=example)")


@pytest.mark.parametrize("searches", [1, 2])  # 2: the one-level listing of the base is what fails
def test_a_missing_base_dn_is_named_by_the_ldapsearch_reader(fake, searches):
    with bulk_search.BulkSearch(src(bulk_searches=searches), "pw", ldapsearch=fake) as bulk, \
            pytest.raises(bulk_search.DirectoryError) as exc:
        list(bulk.accounts())
    assert str(exc.value) == EXPECTED
    assert "unknown exit code" not in str(exc.value)


def test_a_child_removed_during_a_split_read_is_named_as_such():
    done = bulk_search.execute.Streamed(rc=32, stderr="No such object (32)\n")
    msg = bulk_search.ldapsearch_failure(src(), "ou=a,ou=nope,dc=example", done)
    assert msg.startswith("no such object: ou=a,ou=nope,dc=example (under base_dn ou=nope,dc=example) does not exist")


def test_other_failures_give_the_exit_code_without_calling_it_unknown():
    done = bulk_search.execute.Streamed(rc=50, stderr="Insufficient access (50)\n", meaning="unknown exit code 50")
    assert bulk_search.ldapsearch_failure(src(), "ou=nope,dc=example", done) == \
        "ldapsearch failed (exit code 50): Insufficient access (50)"


class _Conn:
    """ldap3's connection as the ldap3 reader sees it, raise_exceptions off: the search ends quietly, the
    result says why."""

    def __init__(self, result: dict) -> None:
        self.result = result
        outer = self

        class _Standard:
            @staticmethod
            def paged_search(*args, **kw):
                outer.result = result
                yield from ()

        self.extend = type("E", (), {"standard": _Standard})()


def test_a_missing_base_dn_is_named_by_the_ldap3_reader():
    d = Directory(src(bulk_reader="ldap3"), "pw")
    d.conn = _Conn({"result": 32, "description": "noSuchObject", "dn": "dc=example", "message": ""})
    with pytest.raises(bulk_search.DirectoryError) as exc:
        list(d.accounts())
    assert str(exc.value) == EXPECTED


def test_a_cut_ldap3_read_is_an_error_and_a_complete_one_is_not():
    d = Directory(src(bulk_reader="ldap3"), "pw")
    d.conn = _Conn({"result": 4, "description": "sizeLimitExceeded", "dn": "", "message": ""})
    with pytest.raises(bulk_search.DirectoryError, match=r"account search failed: sizeLimitExceeded \(4\)"):
        list(d.accounts())
    d.conn = _Conn({"result": 0, "description": "success", "dn": "", "message": ""})
    assert list(d.accounts()) == []

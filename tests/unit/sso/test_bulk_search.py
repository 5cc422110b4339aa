"""The early start of the bulk read: files first (a bad one stops everything before a search starts), then
the search; ldap3 is not imported for it; a started search is not started twice."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from citydc.config.models import LdapSource
from citydc.sso import bulk_search, files


def src(**kw) -> LdapSource:
    base = dict(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=x", bind_password="env:PW",
                base_dn="dc=x", site="siwei")
    return LdapSource(**{**base, **kw})


class Recorder:
    made: ClassVar[list] = []

    def __init__(self, *args, **kw) -> None:
        Recorder.made.append(self)
        self.starts = 0

    def start(self):
        self.starts += 1
        return self


@pytest.fixture
def recorder(monkeypatch):
    Recorder.made = []
    monkeypatch.setattr(bulk_search, "BulkSearch", Recorder)
    return Recorder


def test_a_bad_baseline_stops_before_any_search_starts(tmp_path, recorder):
    bad = tmp_path / "baseline.yaml"
    bad.write_text("groups: [not, a, mapping]\n")
    with pytest.raises(files.FileInvalid):
        bulk_search.prepare(src(baseline_file=bad), "pw")
    assert recorder.made == []


def test_the_search_starts_once_with_ldapsearch_and_not_with_ldap3(tmp_path, recorder):
    prepared = bulk_search.prepare(src(), "pw")
    assert [r.starts for r in recorder.made] == [1] and prepared.bulk is recorder.made[0]
    assert bulk_search.prepare(src(bulk_reader="ldap3"), "pw").bulk is None
    assert len(recorder.made) == 1


def test_starting_a_started_search_does_nothing(tmp_path, monkeypatch):
    spawned = []
    monkeypatch.setattr(bulk_search.threading.Thread, "start", lambda self: spawned.append(self.name))
    monkeypatch.setattr(bulk_search.threading.Thread, "join", lambda self, timeout=None: None)
    search = bulk_search.BulkSearch(src(), "pw")
    assert search.start() is search and search.start() is search
    with search:  # run_audit's ``with`` on a search the command started
        pass
    assert spawned == ["citydc-ldapsearch-0"]


def test_the_early_start_imports_no_ldap3():
    code = "import citydc.sso.bulk_search, sys; print('ldap3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_screened_read_pauses_the_collector_and_restores_it_on_error():
    import gc

    from citydc.sso import ldap_audit, ldif
    from citydc.sso.rules import RuleContext

    seen = []

    class Failing:
        def blocks(self):
            seen.append(gc.isenabled())
            yield from ()
            raise ldif.LdifError("line 3: not LDIF")

    assert gc.isenabled()
    ctx = RuleContext(src().rules, None, None)
    run = ldap_audit.AuditRun("city", "siwei", "ldap://x", "id", None)
    with pytest.raises(bulk_search.DirectoryError):
        ldap_audit._stream_screened(Failing(), None, [], ctx, run, None)
    assert seen == [False] and gc.isenabled()


def test_the_path_before_the_search_starts_imports_no_httpx():
    """What `citydc audit ldap` imports before it starts ldapsearch (the reviewed files' module, which knows the
    SSO rule ids, and bulk_search) must not load httpx: about 0.1 s before the read, measured."""
    code = "import citydc.sso.files, citydc.sso.bulk_search, sys; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# A stand-in for ldapsearch at the process boundary: it answers from the -b/-s of its argv, as slapd would for a
# base with two children (ou=a holds two accounts, ou=b one); with FAIL_LISTING set, the one-level listing fails.
FAKE_LDAPSEARCH = r"""#!/bin/sh
base=""; scope=""
while [ $# -gt 0 ]; do
  case "$1" in -b) base="$2"; shift;; -s) scope="$2"; shift;; esac
  shift
done
case "$scope:$base" in
  one:dc=x)
    if [ -n "$FAIL_LISTING" ]; then echo "ldap_search: Insufficient access (50)" >&2; exit 50; fi
    printf 'dn: ou=a,dc=x\n\ndn: ou=b,dc=x\n\n' ;;
  base:dc=x) ;;
  sub:ou=a,dc=x) printf 'dn: uid=a1,ou=a,dc=x\nuid: a1\n\ndn: uid=a2,ou=a,dc=x\nuid: a2\n\n' ;;
  sub:ou=b,dc=x) printf 'dn: uid=b1,ou=b,dc=x\nuid: b1\n\n' ;;
  sub:dc=x) printf 'dn: uid=a1,ou=a,dc=x\nuid: a1\n\ndn: uid=a2,ou=a,dc=x\nuid: a2\n\n'
            printf 'dn: uid=b1,ou=b,dc=x\nuid: b1\n\n' ;;
  *) echo "unexpected search $scope $base" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_ldapsearch(tmp_path):
    path = tmp_path / "ldapsearch"
    path.write_text(FAKE_LDAPSEARCH)
    path.chmod(0o755)
    return str(path)


def test_the_partition_is_the_base_entry_and_each_child_subtree():
    assert bulk_search.partition("dc=x", []) == [("dc=x", "sub")]
    assert bulk_search.partition("dc=x", ["ou=a,dc=x"]) == [("dc=x", "sub")]
    assert bulk_search.partition("dc=x", ["ou=a,dc=x", "ou=b,dc=x"]) == [
        ("dc=x", "base"), ("ou=a,dc=x", "sub"), ("ou=b,dc=x", "sub")]


@pytest.mark.parametrize("searches", [1, 2, 3])
def test_split_or_not_every_account_is_read_once(fake_ldapsearch, searches):
    with bulk_search.BulkSearch(src(bulk_searches=searches), "s3cret-value", ldapsearch=fake_ldapsearch) as bulk:
        dns = sorted(a.dn for a in bulk.accounts())
    assert dns == ["uid=a1,ou=a,dc=x", "uid=a2,ou=a,dc=x", "uid=b1,ou=b,dc=x"]
    expected = [("dc=x", "sub")] if searches == 1 else [("dc=x", "base"), ("ou=a,dc=x", "sub"), ("ou=b,dc=x", "sub")]
    assert bulk.searches == expected


def test_a_failed_listing_is_a_directory_error_naming_it(fake_ldapsearch, monkeypatch):
    monkeypatch.setenv("FAIL_LISTING", "1")
    with bulk_search.BulkSearch(src(bulk_searches=2), "s3cret-value", ldapsearch=fake_ldapsearch) as bulk, \
            pytest.raises(bulk_search.DirectoryError, match=r"listing dc=x.*Insufficient access"):
        list(bulk.accounts())

"""The ldapsearch argv (pure), the block reader it streams through, the docs' rule table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from citydc import execute
from citydc.config.models import LdapSource
from citydc.sso.directory import DirectoryError, Endpoint, ldapsearch_argv
from citydc.sso.model import ACCOUNT_ATTRIBUTES
from citydc.sso.rules import RULES

ROOT = Path(__file__).resolve().parents[3]


def src(**kw) -> LdapSource:
    base = dict(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=x", bind_password="env:PW",
                base_dn="dc=x", site="siwei")
    return LdapSource(**{**base, **kw})


def test_ldapsearch_argv_starttls_paged_password_by_file():
    argv = ldapsearch_argv(src(), Path("/run/pw"), "dc=x", "(uid=*)", ACCOUNT_ATTRIBUTES)
    assert argv[:8] == ("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", "ldap://127.0.0.1:13389", "-ZZ")
    assert argv[argv.index("-y"):argv.index("-y") + 2] == ("-y", "/run/pw")
    assert "pr=1000/noprompt" in argv and argv[-len(ACCOUNT_ATTRIBUTES):] == ACCOUNT_ATTRIBUTES
    assert "-w" not in argv
    ldaps = ldapsearch_argv(src(url="ldaps://h:636", start_tls=False), Path("/p"), "dc=x", "(uid=*)", ["uid"])
    assert "-ZZ" not in ldaps


def test_endpoint():
    assert Endpoint.parse("ldaps://h") == Endpoint("h", 636, True)
    assert Endpoint.parse("ldap://h:1389") == Endpoint("h", 1389, False)
    with pytest.raises(DirectoryError, match="invalid port"):
        Endpoint.parse("ldap://h:99999")


def test_stream_chunks_yields_all_bytes_and_the_exit_code():
    done = execute.Streamed()
    code = "import sys; sys.stdout.buffer.write(b'x' * 3_000_000); sys.stderr.write('bye'); sys.exit(3)"
    data = b"".join(execute.stream_chunks("py", [sys.executable, "-c", code], done, size=1 << 16))
    assert len(data) == 3_000_000 and done.rc == 3 and done.stderr == "bye"
    assert done.outcome is execute.Outcome.FAILURE


def test_docs_list_every_rule():
    text = (ROOT / "docs" / "ldap-audit.md").read_text()
    for rid, cls in RULES.items():
        assert f"| `{rid}` | {cls.info.severity} |" in text

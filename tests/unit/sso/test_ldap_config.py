"""The ldap section of citydc.yaml: transport policy, thresholds, duplicate names, errors with their line."""

from __future__ import annotations

import pytest

from citydc.config.loader import ConfigInvalid, load_text

HEAD = """\
sites: [{id: siwei, name: Siwei}]
ldap:
"""
SRC = """\
  - name: city
    url: {url}
    bind_dn: cn=auditor,ou=system,dc=city,dc=example
    bind_password: env:CITYDC_LDAP_PASSWORD
    base_dn: dc=city,dc=example
    site: siwei
"""


def cfg(extra: str = "", url: str = "ldap://127.0.0.1:389") -> str:
    return HEAD + SRC.format(url=url) + extra


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text, "c.yaml")
    return [e.format("c.yaml") for e in exc.value.errors]


def test_defaults():
    src = load_text(cfg()).ldap[0]
    assert src.start_tls and not src.allow_plain_bind and src.rules.stale_days == 90
    assert src.auth.timezone == "Asia/Taipei" and src.bulk_reader == "ldapsearch"


def test_plain_bind_refused_unless_allowed():
    (e,) = errors(cfg("    start_tls: false\n"))
    assert e.startswith("c.yaml:3: ldap[0]: ") and "allow_plain_bind" in e
    assert load_text(cfg("    start_tls: false\n    allow_plain_bind: true\n")).ldap[0].allow_plain_bind


def test_ldaps_with_start_tls_is_an_error():
    (e,) = errors(cfg(url="ldaps://127.0.0.1:636"))
    assert "start_tls does not apply" in e
    assert load_text(cfg("    start_tls: false\n", url="ldaps://127.0.0.1:636")).ldap[0].url.startswith("ldaps")


def test_bad_thresholds_and_unknown_keys_name_their_line():
    text = cfg("    rules:\n      stale_days: 0\n      stale: 3\n    auth:\n      working_hours: 8-18\n")
    errs = errors(text)
    assert any(e.startswith("c.yaml:10: ldap[0].rules.stale_days") for e in errs)
    assert any(e.startswith("c.yaml:11: ldap[0].rules.stale: unknown key") for e in errs)
    assert any(e.startswith("c.yaml:13: ldap[0].auth.working_hours") for e in errs)


def test_duplicate_source_names():
    text = HEAD + SRC.format(url="ldap://a:389") + SRC.format(url="ldap://b:389")
    assert any("ldap[1].name: duplicate name" in e for e in errors(text))

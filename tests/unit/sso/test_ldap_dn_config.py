"""A privileged group (or the default policy) that is not a DN is refused when the config is loaded, naming the
field and its line; before, it failed the whole source at run time with "attribute type not present"
(findings-ldap item 15). DNs as OpenLDAP reads them (spaces around separators, escapes, quotes) still load."""

from __future__ import annotations

import json
import time

import pytest

from citydc.config.loader import ConfigInvalid, load_text

CFG = """\
sites: [{id: siwei, name: Siwei}]
ldap:
  - name: city
    url: ldap://127.0.0.1:389
    bind_dn: cn=auditor,ou=system,dc=city,dc=example
    bind_password: env:CITYDC_LDAP_PASSWORD
    base_dn: dc=city,dc=example
    site: siwei
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text, "c.yaml")
    return [e.format("c.yaml") for e in exc.value.errors]


@pytest.mark.parametrize("bad", ["not a dn", "domain-admins", "cn=a,,dc=x", "cn=a,", "cn=", "cn=x<y,dc=x", "cn=a\\"])
def test_a_privileged_group_that_is_no_dn_is_refused_at_load_naming_the_item(bad):
    text = CFG + "    privileged_groups:\n      - cn=domain-admins,ou=groups,dc=city,dc=example\n" \
                 f"      - {json.dumps(bad)}\n"
    (e,) = errors(text)
    assert e.startswith("c.yaml:11: ldap[0].privileged_groups[1]: not a DN: "), e
    assert repr(bad) in e


def test_a_default_policy_that_is_no_dn_is_refused_at_load():
    (e,) = errors(CFG + "    default_policy_dn: default\n")
    assert e.startswith("c.yaml:9: ldap[0].default_policy_dn: not a DN: 'default'"), e


@pytest.mark.parametrize("good", [
    "cn=domain-admins,ou=groups,dc=city,dc=example",
    "CN=Domain Admins, OU=Groups, DC=city, DC=example",
    "cn=Smith\\, John+uid=js,ou=groups,dc=x",
    "cn=\\23hash\\2c,dc=x",
    'cn="a,b",dc=x',
    "cn=#04024869,dc=x",
    "2.5.4.3=x,dc=x",
    "cn=資訊室管理員,ou=groups,dc=city,dc=example",
])
def test_dns_as_openldap_reads_them_load(good):
    text = CFG + f"    default_policy_dn: {json.dumps(good)}\n    privileged_groups: [{json.dumps(good)}]\n"
    src = load_text(text, "c.yaml").ldap[0]
    assert src.privileged_groups == [good] and src.default_policy_dn == good


def test_a_long_value_that_fails_is_refused_at_once():
    started = time.monotonic()
    errors(CFG + f"    privileged_groups: ['cn={' ' * 20000}<']\n")
    errors(CFG + f"    privileged_groups: ['{'cn=a ' * 5000}<']\n")
    assert time.monotonic() - started < 2


def test_a_flow_list_that_split_a_dn_at_its_commas_is_refused():
    # YAML reads [cn=admins,ou=groups,dc=city,dc=example] as four items, each a valid single RDN
    (first, *rest) = errors(CFG + "    privileged_groups: [cn=admins,ou=groups,dc=city,dc=example]\n")
    assert first.startswith("c.yaml:9: ldap[0].privileged_groups[0]: 'cn=admins' is a single RDN"), first
    assert "flow list" in first and len(rest) == 3
    src = load_text(CFG + '    privileged_groups: ["cn=admins,ou=groups,dc=city,dc=example"]\n', "c.yaml").ldap[0]
    assert src.privileged_groups == ["cn=admins,ou=groups,dc=city,dc=example"]

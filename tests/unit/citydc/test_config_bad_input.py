"""Hostile or mistaken input to the config loader: one error line each, exit 2, never a traceback,
never a secret echoed, and bounded work.

YAML aliases that loop, nesting thousands deep and alias "billion laughs" files; duplicate keys;
syntax errors near a secret; URLs with credentials in them; and the messages for bad networks, an
unquoted SNMP version and references between sections.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.cli.main import cli
from citydc.config import ConfigInvalid, load_text
from citydc.config.loader import MAX_ALIAS_VALUES, MAX_DEPTH
from citydc.config.models import SnmpV2c, SnmpV3

HEAD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
"""
SECRET = "Hunter2Secret"


def check(tmp_path, text: str) -> tuple[int, str]:
    """Run `citydc config check` on the text; return (exit code, output)."""
    path = tmp_path / "citydc.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def errors_of(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text, "c.yaml", check_files=False)
    return [(e.path, e.line, e.message) for e in exc.value.errors]


def billion_laughs(levels: int, fan_out: int) -> str:
    """a0 is one value; each further anchor is a list of fan_out aliases of the one before."""
    lines = ['a0: &a0 ["x"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * fan_out)}]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n" + HEAD


# -- item 5: aliases and nesting ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "words", "line"), [
    ("a: &a [*a]\n", "recursive alias", 1),
    ("a: &a {b: &b [1, {c: *a}]}\n", "recursive alias", 1),
    ("sites: " + "[" * 5000 + "]" * 5000 + "\n", f"nesting too deep (more than {MAX_DEPTH} levels)", 1),
    ("sites:\n" + "".join("  " * i + "- \n" for i in range(1, 3000)), "nesting too deep", MAX_DEPTH + 1),
    ("a0: &a0 [x]\n" + "".join(f"a{n}: &a{n} [*a{n - 1}]\n" for n in range(1, 3000)),
     "nesting too deep through aliases", None),
    (billion_laughs(7, 6), "the document expands to too many values through aliases", 7),  # 6^7 values
    (billion_laughs(40, 9), "the document expands to too many values through aliases", 6),  # 9^40: never built
], ids=["self", "mutual", "flow-nesting", "block-nesting", "alias-chain", "laughs-7x6", "laughs-40x9"])
def test_alias_loops_deep_nesting_and_alias_bombs_are_one_yaml_error(tmp_path, text, words, line):
    code, output = check(tmp_path, text)
    assert code == 2, output
    assert "not valid YAML" in output and words in output, output
    assert "1 error(s)" in output
    if line is not None:
        assert f"citydc.yaml:{line}: " in output, output


def test_alias_loop_in_a_real_process_exits_2_without_traceback(tmp_path):
    path = tmp_path / "rec.yaml"
    path.write_text("a: &a [*a]\n")
    proc = subprocess.run([sys.executable, "-m", "citydc.cli.main", "config", "check", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{path}:1: <top>: not valid YAML at column 4: recursive alias" in proc.stderr, proc.stderr


def test_aliases_below_the_bound_still_load():
    # 5^6 = 15,625 values through aliases: big, but under the bound, so the file is read (a0..a6 are
    # unknown keys, which says the whole document was read and validated).
    assert MAX_ALIAS_VALUES > 2 * 5 ** 6
    paths = {p for p, _, _ in errors_of(billion_laughs(6, 5))}
    assert paths == {f"a{n}" for n in range(7)}


def test_anchors_aliases_and_merge_keys_used_normally_keep_working():
    text = HEAD + """\
snmp_auth:
  core: &v2 {version: 2c, community: env:COMMUNITY}
  access: *v2
  edge: {<<: *v2, community: env:EDGE_COMMUNITY}
devices:
  - &switch {name: sw1, address: 10.0.0.1, site: siwei, role: access, snmp_auth: core}
  - {<<: *switch, name: sw2, address: 10.0.0.2}
  - {<<: *switch, name: sw3, address: 10.0.0.3, snmp_auth: edge}
"""
    cfg = load_text(text)
    assert {k: v.community.reference for k, v in cfg.snmp_auth.items()} == {
        "core": "env:COMMUNITY", "access": "env:COMMUNITY", "edge": "env:EDGE_COMMUNITY"}
    assert [(d.name, d.address, d.role, d.snmp_auth) for d in cfg.devices] == [
        ("sw1", "10.0.0.1", "access", "core"), ("sw2", "10.0.0.2", "access", "core"),
        ("sw3", "10.0.0.3", "access", "edge")]


TOKENS = ["[", "]", "{", "}", ", ", ": ", "\n", "\n  ", "- ", "x", "1", "&a ", "*a ", "&b ", "*b ", "<<: ",
          "!t ", "!!int ", "'", '"', "#", "? ", "|", "\t", "%", "@"]


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_any_text_of_yaml_tokens_gives_a_config_or_config_invalid(tokens):
    text = HEAD + "snmp_auth: " + "".join(tokens) + "\n"
    try:
        load_text(text, check_files=False)
    except ConfigInvalid as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        for error in exc.errors:
            error.format("citydc.yaml")


# -- item 2a: a YAML error never quotes the file --------------------------------------------------------


@pytest.mark.parametrize(("value", "column", "words"), [
    (f"*{SECRET}", 15, "undefined alias"),
    (f"!{SECRET}", 15, "unknown tag"),
    (f"!{SECRET}!x", 15, "undefined tag handle"),
    (f"!!int {SECRET}", 15, "cannot be read as its type"),
    ("!!int", 15, "cannot be read as its type"),  # an IndexError inside PyYAML
    (f"!!timestamp {SECRET}", 15, "cannot be read as its type"),  # an AttributeError inside PyYAML
    ("2026-14-41", 15, "cannot be read as its type"),
    (f'"{SECRET}\\q"', 30, "found unknown escape character 'q'"),  # one character is named
])
def test_a_yaml_error_gives_line_column_and_kind_but_not_the_text(tmp_path, value, column, words):
    text = HEAD + f"device_logins:\n  netops:\n    username: admin\n    password: {value}\n"
    code, output = check(tmp_path, text)
    assert code == 2, output
    assert f"citydc.yaml:6: <top>: not valid YAML at column {column}: " in output, output
    assert words in output and SECRET not in output and "14-41" not in output, output


def test_a_duplicate_anchor_is_named_without_its_name(tmp_path):
    code, output = check(tmp_path, HEAD + f"a: &{SECRET} 1\nb: &{SECRET} 2\n")
    assert code == 2 and "citydc.yaml:4: <top>: not valid YAML at column 4: duplicate anchor" in output, output
    assert SECRET not in output


# -- item 13: duplicate keys ---------------------------------------------------------------------------


def test_duplicate_keys_anywhere_are_errors_with_both_lines_among_the_others(tmp_path):
    text = HEAD + """\
security_log:
  spool_dir: /srv/spool
snmp_auth:
  p1: {version: 2c, community: env:A}
  p1: {version: 2c, community: env:B}
devices:
  - {name: sw1, address: 10.0.0.1, site: nowhere, role: access, role: core}
security_log:
  spool_dir: /srv/other-spool
"""
    code, output = check(tmp_path, text)
    assert code == 2, output
    for line in ("citydc.yaml:7: snmp_auth.p1: duplicate key (first at line 6)",
                 "citydc.yaml:9: devices[0].role: duplicate key (first at line 9)",
                 "citydc.yaml:10: security_log: duplicate key (first at line 3)",
                 'citydc.yaml:9: devices[0].site: unknown site "nowhere"',  # every other error too
                 "4 error(s)"):
        assert line in output, output


def test_keys_equal_as_values_are_duplicates_and_merged_keys_may_be_overridden():
    assert errors_of(HEAD + "snmp_auth:\n  '1': {version: 2c, community: env:A}\nx: {1: a, 0x1: b}\n")[0] == \
        ("x.0x1", 5, "duplicate key (first at line 5)")
    text = HEAD + "snmp_auth:\n  a: &a {version: 2c, community: env:A}\n  b: {<<: *a, community: env:B}\n"
    assert load_text(text).snmp_auth["b"].community.reference == "env:B"


# -- item 14: messages -----------------------------------------------------------------------------------


def test_a_bad_network_is_one_line_with_the_value():
    text = """\
sites:
  - {id: siwei, name: S, networks: [10.0.0.0/33, notanet, 10.0.0.1/16, 5, 10.10.0.0/16, "2001:db8::/32"]}
netflow:
  agencies: [{name: police, prefixes: ["2001:db8::1/32"]}]
"""
    expected = "expected an IPv4 or IPv6 network such as 10.10.0.0/16, got "
    assert errors_of(text) == [
        ("sites[0].networks[0]", 2, expected + "'10.0.0.0/33' (prefix length or netmask out of range)"),
        ("sites[0].networks[1]", 2, expected + "'notanet'"),
        ("sites[0].networks[2]", 2, expected + "'10.0.0.1/16' (host bits set; the network is 10.0.0.0/16)"),
        ("sites[0].networks[3]", 2, expected + "5"),
        ("netflow.agencies[0].prefixes[0]", 4,
         expected + "'2001:db8::1/32' (host bits set; the network is 2001:db8::/32)"),
    ]
    good = load_text(text.replace("10.0.0.0/33, notanet, 10.0.0.1/16, 5, ", "").replace("::1/32", "::/32"))
    assert [str(n) for n in good.sites[0].networks] == ["10.10.0.0/16", "2001:db8::/32"]


def test_snmp_version_3_unquoted_is_v3_and_2_asks_for_2c():
    text = HEAD + """\
snmp_auth:
  a: {version: 3, username: u, security_level: noAuthNoPriv}
  b: {version: "3", username: u, security_level: noAuthNoPriv}
  c: {version: 2c, community: env:C}
"""
    cfg = load_text(text)
    assert isinstance(cfg.snmp_auth["a"], SnmpV3) and cfg.snmp_auth["a"].version == "3"
    assert isinstance(cfg.snmp_auth["b"], SnmpV3) and isinstance(cfg.snmp_auth["c"], SnmpV2c)
    assert errors_of(text.replace("version: 2c", "version: 2")) == [
        ("snmp_auth.c.version", 6, "expected 2c or 3, got '2' (SNMPv2 with a community is written 2c)")]
    assert errors_of(text.replace("version: 2c, ", "")) == [
        ("snmp_auth.c", 6, "version is required: 2c (a community) or 3 (a user)")]


def test_sso_references_have_their_path_and_line_and_a_number_key_is_named():
    text = HEAD + """\
ldap:
  - {name: dir, url: "ldaps://d:636", start_tls: false, bind_dn: cn=a, base_dn: dc=x, bind_password: env:P,
     site: siwei}
sso:
  - {name: city-sso, log_path: /var/log/kc.json, site: siwei}
  - {name: city-sso, log_path: /var/log/kc2.json, site: siwei}
  - {kind: keycloak, name: kc, base_url: "https://sso.example", realms: [city], client_id: audit,
     client_secret: env:K, site: siwei, ldap_source: nope}
1: x
"""
    assert errors_of(text) == [
        ("1", 11, "key: expected text, got the int 1; quote it if it is a name"),
        ("sso[1].name", 8, 'duplicate SSO source name "city-sso" (first at sso[0])'),
        ("sso[2].ldap_source", 10, 'unknown ldap source "nope" (known: dir)'),
    ]


# -- items 1 and 2b: no credentials in URLs, never echoed ------------------------------------------------


@pytest.mark.parametrize(("section", "path", "where"), [
    (f"security_log: {{sink: {{kind: elasticsearch, url: 'https://elastic:{SECRET}@127.0.0.1:9200'}}}}",
     "security_log.sink.url", "credentials in the URL are not allowed: give username and password (by reference), "
                              "or api_key"),
    (f"ldap: [{{name: d, url: 'ldap://cn=admin:{SECRET}@127.0.0.1:389', bind_dn: cn=a, base_dn: dc=x, "
     "bind_password: env:P, site: siwei}]", "ldap[0].url",
     "credentials in the URL are not allowed: give bind_dn and bind_password (by reference)"),
    (f"sso: [{{kind: keycloak, name: kc, base_url: 'http://admin:{SECRET}@127.0.0.1:8080', realms: [r], "
     "client_id: a, client_secret: env:K, site: siwei}]", "sso[0].base_url",
     "credentials in the URL are not allowed: the audit signs in with client_id and client_secret (by reference)"),
    (f"report: {{prometheus_url: 'ftp://admin:{SECRET}@prom:9090'}}", "report.prometheus_url",
     "must not carry a user or password"),
    (f"report: {{prometheus_url: 'admin:{SECRET}@prom:9090'}}", "report.prometheus_url",
     "expected an http:// or https:// URL of the Prometheus server"),
    (f"alerting: {{prometheus_url: 'http://admin:{SECRET}'}}", "alerting.prometheus_url",
     "not a valid URL (the port must be a number 1-65535)"),
    (f"alerting: {{alertmanager_url: 'https://u:{SECRET}@am.example'}}", "alerting.alertmanager_url",
     "credentials in the URL are not allowed: give username and password (by reference) in alertmanager_http"),
], ids=["elasticsearch", "ldap", "keycloak", "report-scheme", "report-no-scheme", "alerting-no-host",
        "alertmanager"])
def test_credentials_in_a_url_are_refused_naming_where_they_go_without_echoing(tmp_path, section, path, where):
    code, output = check(tmp_path, HEAD + section + "\n")
    assert code == 2, output
    assert f"citydc.yaml:3: {path}: " in output and where in output.replace("\n", " "), output
    assert SECRET not in output


def test_urls_without_credentials_still_load():
    cfg = load_text(HEAD + """\
security_log: {sink: {kind: elasticsearch, url: "https://es1.example:9200", username: w, password: env:ES}}
ldap: [{name: d, url: "ldap://d.example:389", bind_dn: cn=a, base_dn: dc=x, bind_password: env:P, site: siwei}]
sso: [{kind: keycloak, name: kc, base_url: "https://sso.example/auth/", realms: [r], client_id: a,
       client_secret: env:K, site: siwei}]
report: {prometheus_url: "http://prom.example:9090/"}
""", check_files=False)
    assert cfg.security_log.sink.url == "https://es1.example:9200" and cfg.ldap[0].url == "ldap://d.example:389"
    assert cfg.sso[0].base_url == "https://sso.example/auth" and cfg.report.prometheus_url == "http://prom.example:9090"


def test_raw_yaml_data_never_echoes_a_secret_through_the_loader():
    # The same checks through load_data (what `config check` runs after the YAML), on parsed data.
    doc = yaml.safe_load(HEAD)
    doc["security_log"] = {"sink": {"kind": "elasticsearch", "url": f"https://e:{SECRET}@h:9200"}}
    from citydc.config.loader import load_data

    with pytest.raises(ConfigInvalid) as exc:
        load_data(doc)
    assert SECRET not in str(exc.value) and "credentials in the URL are not allowed" in str(exc.value)


def test_an_error_on_line_100_shows_its_line_number(tmp_path):
    # Rich reads ":100:" as an emoji code unless the consoles are made with emoji=False.
    path = tmp_path / "citydc.yaml"
    path.write_text("sites: [{id: siwei, name: S}]\n" + "# pad\n" * 98 + "bogus_key: 1\n")
    proc = subprocess.run([str(Path(sys.executable).with_name("citydc")), "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert f"{path}:100: bogus_key: unknown key" in proc.stderr


@pytest.mark.parametrize("first,second", [
    ("10.0.0.1", "10.0.0.1:161"),          # the default port spelled out
    ("[2001:db8::1]:161", "2001:DB8:0::1"),  # one IPv6 address, two spellings
    ("SW1.example", "sw1.example:161"),     # host names are case-insensitive
    ("127.0.0.1:24162", "127.0.0.1:24162"),
])
def test_two_devices_at_one_snmp_agent_are_refused_naming_both(tmp_path, first, second):
    # findings-2 #11: the exporter finds a device by address alone, so the second one labelled the
    # first one's scrapes. Each entry is reported at its own line, naming the other.
    text = HEAD + f"""\
snmp_auth:
  v2: {{version: "2c", community: "env:C"}}
devices:
  - {{name: garbage, address: "{first}", site: siwei, role: access, snmp_auth: v2}}
  - {{name: other, address: 10.0.0.9, site: siwei, role: access, snmp_auth: v2}}
  - {{name: v3garbage, address: "{second}", site: siwei, role: access, snmp_auth: v2}}
"""
    found = errors_of(text)
    assert [(p, line) for p, line, _ in found] == [("devices[0].address", 6), ("devices[2].address", 8)]
    assert 'is also devices[2].address ("v3garbage")' in found[0][2]
    assert 'is also devices[0].address ("garbage")' in found[1][2]
    code, output = check(tmp_path, text)
    assert code == 2 and "citydc.yaml:6: devices[0].address" in output and "citydc.yaml:8: devices[2].address" in output


def test_devices_at_one_host_on_different_snmp_ports_are_accepted():
    load_text(HEAD + """\
snmp_auth:
  v2: {version: "2c", community: "env:C"}
devices:
  - {name: a, address: "10.0.0.1", site: siwei, role: access, snmp_auth: v2}
  - {name: b, address: "10.0.0.1:1161", site: siwei, role: access, snmp_auth: v2}
""", check_files=False)


def test_devices_not_polled_may_share_an_address():
    # Hosts reached over SSH only (config backup: no snmp_auth) are never an SNMP target, e.g. the lab's
    # device servers, all at 127.0.0.1 with their own management ports.
    load_text(HEAD + """\
snmp_auth:
  v2: {version: "2c", community: "env:C"}
devices:
  - {name: a, address: "127.0.0.1", site: siwei, role: core, management_address: "127.0.0.1:2201"}
  - {name: b, address: "127.0.0.1", site: siwei, role: core, management_address: "127.0.0.1:2202"}
  - {name: c, address: "127.0.0.1", site: siwei, role: access, snmp_auth: v2}
""", check_files=False)

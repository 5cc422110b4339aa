"""The per-platform rules of the device config backup: volatile lines stripped, secrets masked, diffs summarised."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from citydc.backup.configs_rules import MASK_RE, PLATFORMS, diff_summary, mask, strip
from citydc.config.models import CONFIG_PLATFORMS

KEY = b"k" * 32
# Secret tokens as a device prints them: no whitespace, any printable character otherwise.
secret_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="<>"),
                      min_size=4, max_size=40)

# (platform, line with {s} where the secret goes)
SECRET_LINES = [
    ("cisco_ios", "enable secret 5 {s}"),
    ("cisco_ios", "enable secret level 15 9 {s}"),
    ("cisco_ios", "enable password 7 {s}"),
    ("cisco_ios", "username admin privilege 15 secret 9 {s}"),
    ("cisco_ios", "username ops password 0 {s}"),
    ("cisco_ios", "snmp-server community {s} RO"),
    ("cisco_ios", "snmp-server host 10.0.0.9 version 2c {s}"),
    ("cisco_ios", "tacacs-server host 10.0.0.5 key 7 {s}"),
    ("cisco_ios", "tacacs-server key {s}"),
    ("cisco_ios", "radius-server key 7 {s}"),
    ("cisco_ios", " key 7 {s}"),
    ("cisco_ios", "crypto isakmp key {s} address 203.0.113.1"),
    ("cisco_ios", " pre-shared-key {s}"),
    ("cisco_ios", "ntp authentication-key 1 md5 {s}"),
    ("cisco_nxos", "snmp-server community {s} group network-operator"),
    ("arista_eos", "username netops privilege 15 role network-admin secret sha512 {s}"),
    ("arista_eos", "enable password sha512 {s}"),
    ("arista_eos", "radius-server host 10.0.0.7 key 7 {s}"),
    ("cisco_ios", "snmp-server host 10.0.0.9 vrf MGMT informs version 2c {s}"),
    ("cisco_ios", "snmp-server user v3user v3group v3 auth sha {s}"),
    ("cisco_ios", "  key-string 7 {s}"),
    ("cisco_ios", " standby 1 authentication md5 key-string {s}"),
    ("cisco_ios", " standby 1 authentication text {s}"),
    ("cisco_ios", " vrrp 1 authentication text {s}"),
    ("cisco_ios", " ppp chap password 7 {s}"),
    ("cisco_ios", " ppp pap sent-username r1 password 0 {s}"),
    ("cisco_ios", " password 7 {s}"),
    ("cisco_ios", " pre-shared-key address 203.0.113.9 key {s}"),
    ("cisco_ios", " area-password {s}"),
    ("cisco_nxos", "snmp-server user admin network-admin auth md5 {s} localizedkey"),
    ("arista_eos", "ntp authentication-key 1 md5 7 {s}"),
    ("arista_eos", "   vrrp 1 peer authentication ietf-md5 key-string 7 {s}"),
    ("arista_eos", "aaa root secret sha512 {s}"),
    ("juniper_junos", "set system root-authentication encrypted-password {s}"),
    ("juniper_junos", "set snmp v3 usm local-engine user u privacy-aes128 privacy-key {s}"),
    ("juniper_junos", "set protocols ospf area 0.0.0.0 interface ge-0/0/0.0 authentication md5 1 key {s}"),
    ("linux", "wireguard_psk = {s}"),
    ("linux", "  password: {s}"),
]


def test_platform_names_are_the_configs():
    # citydc.config names them as data so a device type is checked at load without importing backup.
    assert set(CONFIG_PLATFORMS) == set(PLATFORMS)


@settings(max_examples=60, deadline=None)
@given(secret=secret_text.filter(lambda s: not s.startswith('"') and '"' not in s), case=st.sampled_from(SECRET_LINES))
def test_every_secret_form_is_masked_and_masking_is_idempotent(secret, case):
    platform, template = case
    # a "secret" that is also part of a keyword masks that word too (over-masking, the safe side)
    assume(secret not in f"hostname r1\n{template}\nend\n")
    assume(platform != "juniper_junos" or ";" not in secret)  # junos quotes such values: see the test below
    text = f"hostname r1\n{template.format(s=secret)}\nend\n"
    masked, found = mask(text, platform, KEY)
    line = masked.splitlines()[1]
    assert secret not in line
    assert MASK_RE.search(line)
    assert line.replace(MASK_RE.search(line).group(0), "{s}") == template
    assert secret in found
    assert mask(masked, platform, KEY)[0] == masked  # a masked file masks to itself
    assert masked.splitlines()[0] == "hostname r1"  # lines without secrets untouched


@settings(max_examples=40, deadline=None)
@given(a=secret_text, b=secret_text)
def test_fingerprint_changes_with_the_secret_and_the_key(a, b):
    line = "snmp-server community {} RO\n"
    ma = mask(line.format(a), "cisco_ios", KEY)[0]
    mb = mask(line.format(b), "cisco_ios", KEY)[0]
    assert (ma == mb) == (a == b)
    assert mask(line.format(a), "cisco_ios", b"other-key")[0] != ma


@settings(max_examples=40, deadline=None)
@given(secret=secret_text.filter(lambda s: len(s) >= 6))
def test_a_found_secret_is_masked_wherever_else_it_appears(secret):
    text = f"snmp-server community {secret} RO\ninterface Gi0/1\n description see {secret}\n"
    masked, _ = mask(text, "cisco_ios", KEY)
    assert secret not in masked


def test_junos_quoted_values_are_masked_whole():
    text = 'set snmp community "pub lic;x" authorization read-only\nset system host-name r1\n'
    masked, found = mask(text, "juniper_junos", KEY)
    assert "pub lic;x" not in masked and found == {'"pub lic;x"'}
    assert masked.splitlines()[0].startswith("set snmp community <masked:")


def test_extra_values_such_as_the_login_password_are_masked():
    masked, _ = mask("banner motd ^pw is Sup3rPass^\n", "cisco_ios", KEY, extra=("Sup3rPass",))
    assert "Sup3rPass" not in masked and "<masked:" in masked


volatile = st.sampled_from([
    "! Last configuration change at 05:14:17 UTC Sat Dec 05 2026 by netops",
    "! NVRAM config last updated at 05:14:17 UTC Sat Dec 05 2026",
    "Building configuration...",
    "Current configuration : 1834 bytes",
    "ntp clock-period 17179869",
])
config_line = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40).filter(
    lambda s: s.strip() and not s.startswith(("!", "Building", "Current", "ntp clock")) and s == s.rstrip())


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(config_line, min_size=1, max_size=20), noise=st.lists(volatile, max_size=6),
       data=st.data())
def test_strip_removes_volatile_lines_and_keeps_the_rest_in_order(lines, noise, data):
    mixed = list(lines)
    for n in noise:
        mixed.insert(data.draw(st.integers(0, len(mixed))), n)
    stripped = strip("\r\n".join(mixed) + "\r\n", "cisco_ios")
    assert stripped.splitlines() == lines
    assert strip(stripped, "cisco_ios") == stripped


def test_eos_volatile_lines_and_linux_keeps_everything():
    eos = "! Startup-config last modified at x\n! Uptime: 3 minutes\nhostname a\n"
    assert strip(eos, "arista_eos") == "hostname a\n"
    assert strip("! Uptime: 3\nfoo\n", "linux") == "! Uptime: 3\nfoo\n"


def test_diff_summary_counts_lines_and_names_sections():
    old = "hostname r1\ninterface Gi0/1\n description a\n shutdown\n!\nsnmp-server location x\nend\n"
    new = "hostname r1\ninterface Gi0/1\n description a\n no shutdown\n!\nsnmp-server location x\nlogging host 1\nend\n"
    s = diff_summary(old, new)
    assert (s.added, s.removed) == (2, 1)
    assert s.sections == ("interface Gi0/1", "logging")
    assert not diff_summary(old, old).changed


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_platform_rule_compiles(platform):
    rules = PLATFORMS[platform]
    rules.volatile_re()
    assert all(rx.groupindex.get("s") for rx in rules.secret_res())


# Finding 2: real config lines whose secrets the rules missed; each (platform, line, secrets in it). The rest of
# the line must stay as it was, each secret replaced by one mask.
REAL_LINES = [
    ("cisco_ios", "snmp-server user v3user v3group v3 auth sha AuthKEY-v3-sec priv aes 128 PrivKEY-v3-sec",
     ["AuthKEY-v3-sec", "PrivKEY-v3-sec"]),
    ("cisco_ios", "snmp-server user netops-v3 ops v3 auth md5 Md5Auth-k3y priv des Des-Priv-k3y access 99",
     ["Md5Auth-k3y", "Des-Priv-k3y"]),
    ("arista_eos", "snmp-server user v3user v3group v3 localized f5717f00420008177800 auth sha "
     "1b2c3d4e5f60718293a4b5c6 priv aes 9f8e7d6c5b4a39281706f5e4",
     ["1b2c3d4e5f60718293a4b5c6", "9f8e7d6c5b4a39281706f5e4"]),
    ("cisco_nxos", "snmp-server user admin network-admin auth md5 0x7f1e2d3c4b5a69788796a5b4c3d2e1f0 priv "
     "0x0a1b2c3d4e5f60718293a4b5c6d7e8f9 localizedkey",
     ["0x7f1e2d3c4b5a69788796a5b4c3d2e1f0", "0x0a1b2c3d4e5f60718293a4b5c6d7e8f9"]),
    ("cisco_ios", "  key-string 7 KeyString-eigrp-sec", ["KeyString-eigrp-sec"]),
    ("cisco_ios", "  key-string PlainKeyString9", ["PlainKeyString9"]),
    ("cisco_ios", " standby 1 authentication md5 key-string HSRP-md5-sec", ["HSRP-md5-sec"]),
    ("cisco_ios", " standby 10 authentication md5 key-string 7 0822455D0A16544541 timeout 30", ["0822455D0A16544541"]),
    ("cisco_ios", " standby 1 authentication text HSRP-text-sec", ["HSRP-text-sec"]),
    ("cisco_ios", " standby 2 authentication HSRP-bare-sec", ["HSRP-bare-sec"]),
    ("cisco_ios", " vrrp 1 authentication text VRRP-text-sec", ["VRRP-text-sec"]),
    ("cisco_ios", " vrrp 2 authentication md5 key-string 7 VRRP-md5-sec", ["VRRP-md5-sec"]),
    ("arista_eos", "   vrrp 1 peer authentication text EOS-vrrp-sec", ["EOS-vrrp-sec"]),
    ("arista_eos", "   vrrp 1 peer authentication ietf-md5 key-string 7 EOS-vrrp-md5-sec", ["EOS-vrrp-md5-sec"]),
    ("cisco_nxos", "    authentication md5 key-string NX-hsrp-sec", ["NX-hsrp-sec"]),
    ("cisco_ios", " ppp chap password PPP-chap-sec", ["PPP-chap-sec"]),
    ("cisco_ios", " ppp chap password 7 0822455D0A16", ["0822455D0A16"]),
    ("cisco_ios", " ppp pap sent-username r1 password 0 PPP-pap-sec", ["PPP-pap-sec"]),
    ("cisco_ios", " password 7 045802150C2E", ["045802150C2E"]),
    ("cisco_ios", " key 7 TAC-block-sec", ["TAC-block-sec"]),
    ("cisco_ios", " pre-shared-key address 203.0.113.9 key PSK-keyring-sec", ["PSK-keyring-sec"]),
    ("cisco_ios", " server-private 10.10.0.5 key 7 TAC-private-sec", ["TAC-private-sec"]),
    ("cisco_ios", " area-password ISIS-area-sec", ["ISIS-area-sec"]),
    ("arista_eos", "ntp authentication-key 1 md5 7 EOS-ntp-sec", ["EOS-ntp-sec"]),
    ("arista_eos", "aaa root secret sha512 $6$saltsalt$EOSrootHash", ["$6$saltsalt$EOSrootHash"]),
    ("juniper_junos", 'set snmp v3 usm local-engine user u privacy-aes128 privacy-key "$9$JunosPriv"',
     ['"$9$JunosPriv"']),
    ("juniper_junos", 'set protocols ospf area 0.0.0.0 interface ge-0/0/0.0 authentication md5 1 key "$9$JunosOspf"',
     ['"$9$JunosOspf"']),
    ("juniper_junos", 'set access profile P client C chap-secret "$9$JunosChap"', ['"$9$JunosChap"']),
]


@pytest.mark.parametrize(("platform", "line", "secrets"), REAL_LINES)
def test_every_secret_of_a_real_line_is_masked_and_the_rest_kept(platform, line, secrets):
    masked, found = mask(f"hostname r1\n{line}\nend\n", platform, KEY)
    out = masked.splitlines()[1]
    for secret in secrets:
        assert secret.strip('"') not in masked
        assert secret in found
    expected = line
    for secret in secrets:
        expected = expected.replace(secret, "<m>")
    assert MASK_RE.sub("<m>", out) == expected


# Finding 10: lines without a secret, which the rules took for one (and then masked the word everywhere).
NOT_SECRETS = [
    ("cisco_ios", "snmp-server host 10.10.0.9 version 3 priv v3user"),
    ("cisco_ios", "snmp-server host 10.10.0.9 informs version 3 auth v3user"),
    ("cisco_ios", "key chain EIGRP-KEYS"),
    ("cisco_ios", " ip authentication key-chain eigrp 1 EIGRP-KEYS"),
    ("cisco_ios", " standby 1 authentication md5 key-chain HSRP-KEYS"),
    ("cisco_ios", "password encryption aes"),
    ("cisco_ios", " ppp chap hostname r1-chap"),
    ("cisco_nxos", "snmp-server host 10.0.0.1 use-vrf management"),
    ("cisco_nxos", "snmp-server host 10.0.0.1 source-interface mgmt0"),
    ("cisco_nxos", "password strength-check"),
    ("juniper_junos", "set policy-options community BGP-COMM members 65000:100"),
]


@pytest.mark.parametrize(("platform", "line"), NOT_SECRETS)
def test_a_line_without_a_secret_is_kept(platform, line):
    text = f"version 15.2\n{line}\nend\n"
    assert mask(text, platform, KEY) == (text, set())


def test_the_id_line_of_a_key_chain_is_kept_and_its_key_string_masked():
    text = "key chain EIGRP-KEYS\n key 1\n  key-string 7 KeyString-eigrp-sec\n key 2\n  key-string K2-sec\nend\n"
    masked, found = mask(text, "cisco_ios", KEY)
    assert found == {"KeyString-eigrp-sec", "K2-sec"}
    assert MASK_RE.sub("<m>", masked).splitlines() == ["key chain EIGRP-KEYS", " key 1", "  key-string 7 <m>", " key 2",
                                                        "  key-string <m>", "end"]


def test_a_secret_that_is_a_common_word_is_masked_only_where_it_stands_as_a_value():
    # a community (or key) "version": the command word of ``version 15.2`` and words containing it stay
    text = ("version 15.2\nsnmp-server community version RO\nsnmp-server location versions-room\n"
            "interface Gi0/1\n description version\nend\n")
    masked, found = mask(text, "cisco_ios", KEY)
    assert found == {"version"}
    lines = MASK_RE.sub("<m>", masked).splitlines()
    assert lines == ["version 15.2", "snmp-server community <m> RO", "snmp-server location versions-room",
                     "interface Gi0/1", " description <m>", "end"]


def test_the_login_secrets_are_masked_even_inside_a_word():
    masked, _ = mask("banner motd ^xSup3rPassx^\nSup3rPass\n", "cisco_ios", KEY, extra=("Sup3rPass",))
    assert "Sup3rPass" not in masked

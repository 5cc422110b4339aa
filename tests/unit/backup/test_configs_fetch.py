"""What ``configs_fetch`` takes for a device's config: refusals of the platforms the lab does not simulate (NX-OS,
Junos, a linux host's command); the lab's IOS/EOS ones go through the real server in test_configs_devices.py."""

from __future__ import annotations

import pytest

from citydc.backup.configs_fetch import _refusal

IOS_CONFIG = "version 15.2\nhostname r1\n!\ninterface Gi0/1\n shutdown\n!\nend\n"


@pytest.mark.parametrize(("platform", "answer"), [
    ("cisco_nxos", "% Permission denied for the role\n"),
    ("cisco_nxos", "                        ^\n% Invalid command at '^' marker.\n"),
    ("juniper_junos", "error: permission denied\n"),
    ("juniper_junos", "                  ^\nunknown command.\n"),
    ("juniper_junos", "\nerror: syntax error: configuration\n"),
    ("arista_eos", "% Authorization denied for command 'show running-config': Permission denied\n"),
    ("cisco_ios", "\r\nCommand authorization failed.\r\n"),
    ("cisco_xe", "% Ambiguous command:  \"show run\"\n"),
    ("linux", "cat: /etc/haproxy/haproxy.cfg: Permission denied\n"),
    ("linux", "cat: /etc/nftables.conf: No such file or directory\n"),
    ("linux", "bash: nft: command not found\n"),
    ("linux", "sh: 1: nft: not found\n"),
    ("linux", "\n \n"),
])
def test_refusals_of_every_platform_are_recognised(platform, answer):
    assert _refusal(answer, platform, None, ())


@pytest.mark.parametrize(("platform", "answer", "last_line"), [
    ("cisco_ios", IOS_CONFIG, "end"),
    ("cisco_ios", "startup-config is not present\n", None),  # a startup-config: no ``end`` expected
    ("cisco_nxos", "!Command: show running-config\nversion 9.3(8)\nhostname n1\n", None),
    ("juniper_junos", "set system host-name j1\n", None),
    ("linux", "table inet filter {\n  chain input { policy drop; }\n}\n", None),
    ("linux", "# cat: not a refusal when it is the file's own text\nfoo = 1\n", None),
])
def test_a_config_is_taken(platform, answer, last_line):
    assert _refusal(answer, platform, last_line, ()) == ""


def test_a_config_cut_short_is_refused_and_the_message_quotes_none_of_it():
    answer = "snmp-server community Cut-comm-secret RO\nhostname r1\n"
    why = _refusal(answer, "cisco_ios", "end", ())
    assert "'end'" in why and "2 line(s)" in why and "Cut-comm-secret" not in why

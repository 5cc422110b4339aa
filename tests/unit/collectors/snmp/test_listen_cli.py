"""`citydc collect snmp --listen` with a bad address: a one-line usage error naming the option."""

import pytest
from click.testing import CliRunner

from citydc.cli.main import cli

CONFIG = """\
sites:
  - {id: siwei, name: Siwei}
snmp_auth:
  v2: {version: "2c", community: "env:C"}
devices:
  - {name: sw1, address: "127.0.0.1:24161", site: siwei, role: access, snmp_auth: v2}
snmp:
  state_dir: null
"""


@pytest.mark.parametrize("listen,message", [
    ("127.0.0.1:abc", "--listen: port must be 1-65535, got 'abc'"),
    ("127.0.0.1:70000", "--listen: port must be 1-65535, got '70000'"),
    ("[::1", "--listen: expected HOST, HOST:PORT or [IPv6]:PORT, got '[::1'"),
])
def test_a_bad_listen_address_names_the_option(tmp_path, listen, message):
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    result = CliRunner().invoke(cli, ["-c", str(path), "collect", "snmp", "--listen", listen])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_snmp_targets_help_says_what_the_scrape_options_set_and_which_devices():
    result = CliRunner().invoke(cli, ["collect", "snmp-targets", "--help"])
    text = " ".join(result.output.split())
    assert "scrape_interval of the printed scrape config" in text
    assert "scrape_timeout of the printed scrape config" in text
    assert "with an snmp_auth" in text


def test_snmp_help_says_where_a_failed_polls_reason_is_logged():
    result = CliRunner().invoke(cli, ["collect", "snmp", "--help"])
    assert "logged at info level" in " ".join(result.output.split())

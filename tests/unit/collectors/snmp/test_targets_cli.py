"""`citydc collect snmp-targets` prints only scrape configs Prometheus accepts (findings-2 #19)."""

import shutil
import subprocess

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
"""


def targets(tmp_path, *options: str):
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return CliRunner().invoke(cli, ["-c", str(path), "collect", "snmp-targets", "-o", str(tmp_path / "t.json"),
                                    *options])


@pytest.mark.parametrize("options,message", [
    (["--scrape-interval", "bogus"], "--scrape-interval: expected a Prometheus duration"),
    (["--scrape-timeout", "99h"], "--scrape-timeout 99h is longer than --scrape-interval 30s"),
    (["--scrape-timeout", "1m5x"], "--scrape-timeout: expected a Prometheus duration"),
    (["--scrape-interval", "0s"], "--scrape-interval: expected a duration above zero"),
    (["--exporter", "nocolon"], "--exporter: expected HOST:PORT (a port is required)"),
])
def test_settings_prometheus_would_refuse_are_a_usage_error(tmp_path, options, message):
    result = targets(tmp_path, *options)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.json").exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@pytest.mark.parametrize("options", [[], ["--scrape-interval", "1m30s", "--scrape-timeout", "1m"],
                                     ["--exporter", "[::1]:9116"]])
def test_the_printed_scrape_config_passes_promtool(tmp_path, options):
    result = targets(tmp_path, *options)
    assert result.exit_code == 0, result.output
    snippet = result.output[result.output.index("  - job_name"):]
    prometheus_yml = tmp_path / "prometheus.yml"
    prometheus_yml.write_text("scrape_configs:\n" + snippet)
    check = subprocess.run(["promtool", "check", "config", str(prometheus_yml)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_listen_help_names_the_default_port():
    result = CliRunner().invoke(cli, ["collect", "snmp", "--help"])
    assert "9116" in " ".join(result.output.split())


# -- collect snmp: a bad --listen, and the help texts ------------------------------------------------------------


@pytest.mark.parametrize("listen,message", [
    ("127.0.0.1:abc", "--listen: port must be 1-65535, got 'abc'"),
    ("127.0.0.1:70000", "--listen: port must be 1-65535, got '70000'"),
    ("[::1", "--listen: expected HOST, HOST:PORT or [IPv6]:PORT, got '[::1'"),
])
def test_a_bad_listen_address_names_the_option(tmp_path, listen, message):
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG + "snmp:\n  state_dir: null\n")
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

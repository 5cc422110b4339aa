"""`citydc config check` and `config show` without FILE read the config every other command uses
(citydc.cli.output.config_path): --config, then $CITYDC_CONFIG, ./citydc.yaml, /etc/citydc/citydc.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli import output
from citydc.cli.main import cli

CONFIG = """
sites:
  - {id: siwei, name: Siwei}
snmp_auth:
  lab-v2c: {version: 2c, community: env:CITYDC_TEST_COMMUNITY}
devices:
  - {name: %s, address: 127.0.0.1:11161, site: siwei, role: access, snmp_auth: lab-v2c}
"""


def _write(path: Path, device: str) -> Path:
    path.write_text(CONFIG % device)
    path.chmod(0o600)
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Run in an empty directory with no $CITYDC_CONFIG."""
    monkeypatch.delenv("CITYDC_CONFIG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_config_check_without_file_uses_citydc_config_env(env, tmp_path, monkeypatch):
    path = _write(tmp_path / "from-env.yaml", "env-sw")
    monkeypatch.setenv("CITYDC_CONFIG", str(path))
    result = CliRunner().invoke(cli, ["config", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["file"] == str(path) and report["valid"] is True


def test_config_check_and_show_without_file_use_global_config_option(env, tmp_path, monkeypatch):
    by_option = _write(tmp_path / "by-option.yaml", "option-sw")
    monkeypatch.setenv("CITYDC_CONFIG", str(_write(tmp_path / "from-env.yaml", "env-sw")))
    result = CliRunner().invoke(cli, ["-c", str(by_option), "config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["file"] == str(by_option)  # --config beats $CITYDC_CONFIG
    result = CliRunner().invoke(cli, ["--config", str(by_option), "config", "show"])
    assert result.exit_code == 0, result.output
    assert [d["name"] for d in json.loads(result.output)["devices"]] == ["option-sw"]


def test_config_show_without_file_uses_citydc_yaml_in_current_directory(env):
    _write(env / "citydc.yaml", "cwd-sw")
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert [d["name"] for d in json.loads(result.output)["devices"]] == ["cwd-sw"]


def test_config_file_argument_still_beats_the_global_config(env, tmp_path):
    named = _write(tmp_path / "named.yaml", "named-sw")
    _write(env / "citydc.yaml", "cwd-sw")
    result = CliRunner().invoke(cli, ["-c", str(env / "citydc.yaml"), "config", "show", str(named)])
    assert result.exit_code == 0, result.output
    assert [d["name"] for d in json.loads(result.output)["devices"]] == ["named-sw"]


@pytest.mark.parametrize("command", ["check", "show"])
def test_config_without_file_and_no_config_anywhere_exits_2(env, command, monkeypatch):
    monkeypatch.setattr(output, "SYSTEM_CONFIG", str(env / "no-such-dir" / "citydc.yaml"))  # whatever this host has
    result = CliRunner().invoke(cli, ["config", command])
    assert result.exit_code == 2
    assert "no config file found" in result.output
    assert "Missing argument" not in result.output


@pytest.mark.parametrize("command", ["check", "show"])
def test_config_help_says_file_defaults_to_the_global_config(command):
    result = CliRunner().invoke(cli, ["config", command, "--help"])
    assert result.exit_code == 0
    assert "[FILE]" in result.output  # optional
    assert "$CITYDC_CONFIG" in " ".join(result.output.split())

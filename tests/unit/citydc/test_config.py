from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli.main import cli
from citydc.config import ConfigInvalid, load, load_text
from citydc.config.sample import json_schema

GOOD = """
sites:
  - {id: siwei, name: 四維 Siwei}
  - {id: fengshan, name: 鳳山 Fengshan}
snmp_auth:
  lab-v2c: {version: 2c, community: env:CITYDC_TEST_COMMUNITY}
devices:
  - {name: sw1, address: 127.0.0.1:11161, site: siwei, role: access, snmp_auth: lab-v2c}
  - {name: sw2, address: 127.0.0.1:11162, site: fengshan, role: access, snmp_auth: lab-v2c}
  - {name: sw3, address: 127.0.0.1:11163, site: fengshan, role: core, snmp_auth: lab-v2c}
  - {name: sw4, address: 127.0.0.1:11164, site: siwei, role: core, snmp_auth: lab-v2c}
"""

# Three deliberate mistakes: an unknown profile, a bad port, a typo'd key.
THREE_MISTAKES = GOOD.replace("role: core, snmp_auth: lab-v2c}\n", "role: core, snmp_auth: core-v3}\n", 1) \
    .replace("127.0.0.1:11162", "127.0.0.1:99999").replace("site: siwei, role: access", "site: siwei, rol: access")


def test_good_config_loads():
    cfg = load_text(GOOD)
    assert [d.name for d in cfg.devices] == ["sw1", "sw2", "sw3", "sw4"]
    assert cfg.security_log.sink.kind == "sqlite"


def test_every_error_reported_at_once_with_path_and_line():
    with pytest.raises(ConfigInvalid) as exc:
        load_text(THREE_MISTAKES, "bad.yaml")
    messages = [e.format("bad.yaml") for e in exc.value.errors]
    assert any('devices[2].snmp_auth: unknown profile "core-v3"' in m for m in messages), messages
    assert any("devices[1].address" in m and "port must be 1-65535" in m for m in messages), messages
    assert any("devices[0].rol: unknown key" in m for m in messages), messages
    assert any("devices[0].role" in m and "Field required" in m for m in messages), messages
    # Each message carries the line of the offending entry.
    by_path = {e.path: e.line for e in exc.value.errors}
    assert by_path["devices[2].snmp_auth"] == 10
    assert by_path["devices[1].address"] == 9


def test_cross_reference_and_duplicates():
    text = GOOD.replace("site: fengshan, role: core", "site: kaohsiung, role: core").replace("name: sw4", "name: sw1")
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    paths = {e.path: e.message for e in exc.value.errors}
    assert paths["devices[2].site"].startswith('unknown site "kaohsiung"')
    assert "duplicate name" in paths["devices[3].name"]


def test_netflow_exporter_snmp_device_must_name_a_pollable_device():
    text = GOOD.replace("  - {name: sw4, address: 127.0.0.1:11164, site: siwei, role: core, snmp_auth: lab-v2c}\n",
                        "  - {name: sw4, address: 127.0.0.1:11164, site: siwei, role: core}\n") + """
netflow:
  exporters:
    - {address: 10.1.1.1, snmp_device: sw1}
    - {address: 10.1.1.2, snmp_device: core9}
    - {address: 10.1.1.3, snmp_device: sw4}
"""
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    paths = {e.path: e.message for e in exc.value.errors}
    assert set(paths) == {"netflow.exporters[1].snmp_device", "netflow.exporters[2].snmp_device"}
    assert paths["netflow.exporters[1].snmp_device"].startswith('unknown device "core9" (known: sw1, sw2, sw3, sw4)')
    assert "no snmp_auth profile" in paths["netflow.exporters[2].snmp_device"]


def test_invalid_yaml_is_one_error_with_line():
    with pytest.raises(ConfigInvalid) as exc:
        load_text("sites:\n  - id: [unclosed\n")
    assert exc.value.errors[0].line is not None and "not valid YAML" in exc.value.errors[0].message


def test_cli_check_reports_three_mistakes_and_exits_2(tmp_path):
    path = tmp_path / "citydc.yaml"
    path.write_text(THREE_MISTAKES)
    result = CliRunner().invoke(cli, ["config", "check", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.output)
    paths = {e["path"] for e in report["errors"]}
    assert {"devices[2].snmp_auth", "devices[1].address", "devices[0].rol"} <= paths


def test_check_warns_about_secret_files_others_can_read_without_reading_them(tmp_path):
    loose, tight, missing = tmp_path / "loose", tmp_path / "tight", tmp_path / "missing"
    loose.write_text("s3cr3t-loose\n")
    loose.chmod(0o644)
    tight.write_text("s3cr3t-tight\n")
    tight.chmod(0o640)  # group read: allowed
    text = GOOD.replace("lab-v2c: {version: 2c, community: env:CITYDC_TEST_COMMUNITY}",
                        f"lab-v2c: {{version: 2c, community: 'file:{loose}'}}\n"
                        f"  tight: {{version: 2c, community: 'file:{tight}'}}\n"
                        f"  gone: {{version: 2c, community: 'file:{missing}'}}")
    path = tmp_path / "citydc.yaml"
    path.write_text(text)
    path.chmod(0o600)  # the config itself is private (a readable one is warned about: test_files.py)
    result = CliRunner().invoke(cli, ["config", "check", str(path), "--json"])
    assert result.exit_code == 0, result.output  # valid: warnings do not fail the check
    warnings = json.loads(result.output)["warnings"]
    assert warnings == [f"snmp_auth.lab-v2c.community: secret file {loose}: mode 0644 gives others access or the "
                        "group write access; chmod 600 (or 640 with a dedicated group)",
                        f"snmp_auth.gone.community: secret file {missing}: No such file or directory"]
    assert "s3cr3t" not in result.output


def test_secret_value_never_appears_in_any_output(tmp_path):
    """An env: secret is resolved nowhere in config handling: not in check, show, errors or logs."""
    secret = "Sup3r-S3cret-Community"
    env = {**os.environ, "CITYDC_TEST_COMMUNITY": secret}
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(THREE_MISTAKES)
    outputs, codes = [], []
    for args in (["config", "check", str(good)], ["config", "show", str(good)], ["config", "check", str(bad)],
                 ["-vv", "config", "check", str(bad), "--json"]):
        proc = subprocess.run([sys.executable, "-m", "citydc.cli.main", *args], env=env, capture_output=True,
                              text=True, check=False)
        outputs.append(proc.stdout + proc.stderr)
        codes.append(proc.returncode)
    assert codes == [0, 0, 2, 2], outputs  # the bad file really failed, so its output was an error report
    assert "devices[2].snmp_auth" in outputs[2] and '"valid": false' in outputs[3]
    assert all(secret not in o for o in outputs)
    assert "env:CITYDC_TEST_COMMUNITY" in outputs[1]  # show prints the reference


def test_inline_secret_is_refused_without_echoing_it():
    text = GOOD.replace("env:CITYDC_TEST_COMMUNITY", "public-inline-pass")
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    assert "public-inline-pass" not in str(exc.value)
    assert exc.value.errors[0].path == "snmp_auth.lab-v2c.community"


def test_json_schema_forbids_unknown_keys():
    schema = json.loads(json_schema())
    assert schema["additionalProperties"] is False
    assert "devices" in schema["properties"]


def test_relative_paths_resolve_next_to_the_config(tmp_path):
    path = tmp_path / "citydc.yaml"
    path.write_text(GOOD)
    loaded = load(path)
    assert loaded.resolve(Path("var/x.db")) == tmp_path / "var/x.db"
    # The defaults are relative too, and the loader made them absolute against the config's directory.
    assert loaded.config.security_log.spool_dir == tmp_path / "var/spool"
    assert loaded.config.backup.state_dir == tmp_path / "var/backup"

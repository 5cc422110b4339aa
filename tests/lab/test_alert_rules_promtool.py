"""alerts/*.rules.yml: promtool checks every rule file and runs every promtool test file
(*.rules.test.yml: each alert firing and quiet on synthetic series, the recording rules' values).

promtool comes with the Debian package ``prometheus``; when it is missing these tests fail, they
never skip. Lab tier (like test_netflow_rules_promtool.py): the unit tier needs no external tool;
tests/unit/alerts/test_alert_rules.py checks without promtool that every alert has those cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from citydc import execute, promtool

pytestmark = pytest.mark.lab

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted(ALERTS.glob("*.rules.test.yml"))
HINT = "promtool missing? install the Debian package prometheus (citydc lab up prometheus)"


def _rule_count(path: Path) -> int:
    return sum(len(g["rules"]) for g in yaml.safe_load(path.read_text())["groups"])


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rules: Path) -> None:
    res = execute.run("promtool", promtool.check_rules_argv([rules]), timeout=60)
    assert res.ok, f"{HINT}\n{res.stdout}{res.stderr}"
    assert f"SUCCESS: {_rule_count(rules)} rules found" in res.stdout


def test_promtool_test_rules_every_file() -> None:
    assert len(TEST_FILES) == len(RULE_FILES) >= 5
    res = execute.run("promtool", promtool.test_rules_argv(TEST_FILES), timeout=120)
    assert res.ok, f"{HINT}\n{res.stdout}{res.stderr}"
    assert res.stdout.count("SUCCESS") == len(TEST_FILES)


@pytest.mark.parametrize("rules,good,broken,alert", [
    # An alert's threshold moved: its firing case no longer fires.
    ("snmp.rules.yml", "link:citydc_snmp_if_utilisation:ratio_rate5m > 0.8",
     "link:citydc_snmp_if_utilisation:ratio_rate5m > 0.95", "LinkUtilisationHigh"),
    # A recording rule in bytes instead of bits: its promql_expr_test fails.
    ("snmp.rules.yml", "8 * rate(citydc_snmp_if_receive_bytes_total[5m])",
     "rate(citydc_snmp_if_receive_bytes_total[5m])", "link:citydc_snmp_if_bits:rate5m"),
    # The never-succeeded half of the backup alert dropped: the case of a job that never succeeded fails.
    ("backup.rules.yml", "unless citydc_backup_last_success_timestamp_seconds)",
     "and citydc_backup_last_success_timestamp_seconds)", "BackupNotSucceeded"),
])
def test_promtool_test_fails_on_a_broken_rule(tmp_path: Path, rules: str, good: str, broken: str,
                                              alert: str) -> None:
    # The tests can fail: the same rules with one expression broken are refused by their tests.
    for f in (rules, rules.replace(".rules.yml", ".rules.test.yml")):
        shutil.copy(ALERTS / f, tmp_path / f)
    text = (tmp_path / rules).read_text()
    assert good in text
    (tmp_path / rules).write_text(text.replace(good, broken))
    res = execute.run("promtool", promtool.test_rules_argv([tmp_path / rules.replace(".rules.yml", ".rules.test.yml")]),
                      timeout=60)
    assert not res.ok and "FAILED" in res.stdout + res.stderr and alert in res.stdout + res.stderr

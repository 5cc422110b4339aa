"""alerts/netflow.rules.yml: promtool checks it and runs its unit tests (netflow.rules.test.yml).

promtool comes with the Debian package ``prometheus`` (the lab's Prometheus); when it is missing
these tests fail, they never skip. Lab tier: `make test-unit` needs no external tool.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from citydc import execute, promtool

pytestmark = pytest.mark.lab

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
RULES = ALERTS / "netflow.rules.yml"
TESTS = ALERTS / "netflow.rules.test.yml"
HINT = "promtool missing? install the Debian package prometheus (citydc lab up prometheus)"


def test_promtool_check_rules() -> None:
    res = execute.run("promtool", promtool.check_rules_argv([RULES]), timeout=60)
    assert res.ok, f"{HINT}\n{res.stdout}{res.stderr}"
    assert "SUCCESS: 8 rules found" in res.stdout  # 7 alerts and the agency recording rule


def test_promtool_test_rules() -> None:
    res = execute.run("promtool", promtool.test_rules_argv([TESTS]), timeout=60)
    assert res.ok, f"{HINT}\n{res.stdout}{res.stderr}"
    assert "SUCCESS" in res.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check can fail: the same file with an unparsable expression is refused.
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULES.read_text().replace("citydc_netflow_snmp_feed_up == 0", "citydc_netflow_snmp_feed_up == ("))
    res = execute.run("promtool", promtool.check_rules_argv([broken]), timeout=60)
    assert not res.ok and "parse error" in (res.stdout + res.stderr)

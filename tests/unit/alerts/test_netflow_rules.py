"""alerts/netflow.rules.yml: the promtool command lines. Running promtool itself is in the lab tier
(tests/lab/test_netflow_rules_promtool.py): the unit tier needs no external tool.
"""

from __future__ import annotations

from pathlib import Path

from citydc import promtool

ALERTS = Path(__file__).resolve().parents[3] / "alerts"
RULES = ALERTS / "netflow.rules.yml"


def test_argv() -> None:
    assert promtool.check_rules_argv([RULES]) == ("promtool", "check", "rules", str(RULES))
    assert promtool.test_rules_argv(["a.yml", "b.yml"], promtool="/usr/bin/promtool") == (
        "/usr/bin/promtool", "test", "rules", "a.yml", "b.yml")

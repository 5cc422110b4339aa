"""promtool argv for the rule files in ``alerts/`` (content read by path), built as pure functions.

Run them with ``citydc.execute.run("promtool", argv)``; promtool exits 0 when the rules are valid
or the tests pass, 1 otherwise (execute.EXIT_CODES).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_rules_argv", "test_rules_argv"]


def check_rules_argv(rule_files: Sequence[str | Path], promtool: str = "promtool") -> tuple[str, ...]:
    """Given rule files (and the promtool binary), return the argv that checks their syntax and queries."""
    if not rule_files:
        raise ValueError("check_rules_argv: expected at least one rule file")
    return (promtool, "check", "rules", *(str(f) for f in rule_files))


def test_rules_argv(test_files: Sequence[str | Path], promtool: str = "promtool") -> tuple[str, ...]:
    """Given promtool unit-test files (and the binary), return the argv that runs them."""
    if not test_files:
        raise ValueError("test_rules_argv: expected at least one test file")
    return (promtool, "test", "rules", *(str(f) for f in test_files))

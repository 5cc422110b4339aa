"""Directory-audit metrics in node_exporter's textfile format (``citydc_ldap_audit.prom``).

Rewritten atomically after every run from the saved runs' summaries: findings by severity and
rule (rule ids are a fixed set, so the label is bounded), posture score, duration, last attempt and
last success; the alerts issue alerts on a critical finding or a missed night.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from citydc import atomicfile
from citydc.sso.model import SEVERITIES
from citydc.sso.rules import RULES

__all__ = ["FILENAME", "registry_from_state", "write"]

FILENAME = "citydc_ldap_audit.prom"


def registry_from_state(state: Mapping[str, Mapping[str, Any]]) -> CollectorRegistry:
    """Given {source: {site, last_attempt, last_success, result?}}, return a fresh registry."""
    reg = CollectorRegistry(auto_describe=True)
    labels = ["site", "source"]
    sev = Gauge("citydc_ldap_audit_findings", "Active findings of the last successful audit by severity.",
                [*labels, "severity"], registry=reg)
    rule = Gauge("citydc_ldap_audit_rule_findings", "Active findings of the last successful audit by rule.",
                 [*labels, "rule"], registry=reg)
    accepted = Gauge("citydc_ldap_audit_accepted_findings", "Findings suppressed by a valid acceptance.", labels,
                     registry=reg)
    score = Gauge("citydc_ldap_audit_posture_score", "Posture score 0-100 of the last successful audit.", labels,
                  registry=reg)
    accounts = Gauge("citydc_ldap_audit_accounts", "Accounts read by the last successful audit.", labels,
                     registry=reg)
    duration = Gauge("citydc_ldap_audit_last_duration_seconds", "Duration of the last successful audit.", labels,
                     registry=reg)
    attempt = Gauge("citydc_ldap_audit_last_attempt_timestamp_seconds", "Last time an audit was attempted.",
                    labels, registry=reg)
    success = Gauge("citydc_ldap_audit_last_success_timestamp_seconds", "Last time an audit completed.", labels,
                    registry=reg)
    failed = Gauge("citydc_ldap_audit_last_run_failed", "1 if the last attempt failed (directory unreachable, "
                   "bad file).", labels, registry=reg)
    for source, st in state.items():
        lab = (str(st.get("site", "")), source)
        if st.get("last_attempt") is not None:
            attempt.labels(*lab).set(st["last_attempt"])
        failed.labels(*lab).set(1 if st.get("last_error") else 0)
        if st.get("last_success") is not None:
            success.labels(*lab).set(st["last_success"])
        res = st.get("result")
        if not res:
            continue
        for s in SEVERITIES:
            sev.labels(*lab, s).set(res["by_severity"].get(s, 0))
        for rid in RULES:
            rule.labels(*lab, rid).set(res["by_rule"].get(rid, 0))
        accepted.labels(*lab).set(res.get("accepted", 0))
        score.labels(*lab).set(res["score"])
        accounts.labels(*lab).set(res["accounts"])
        duration.labels(*lab).set(res["duration_seconds"])
    return reg


def write(textfile_dir: Path, state: Mapping[str, Mapping[str, Any]]) -> Path:
    """Render the state and replace ``<textfile_dir>/citydc_ldap_audit.prom`` atomically; return its path."""
    path = textfile_dir / FILENAME
    # 0644: node_exporter runs as its own user; counts and scores only, no names.
    atomicfile.write(path, generate_latest(registry_from_state(state)), mode=0o644)
    return path

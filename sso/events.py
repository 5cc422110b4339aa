"""ECS events of the LDAP audits: pure builders over citydc.seclog.make_event.

Mapping (DESIGN.md): an audit finding is an ``alert`` / ``iam`` / ``info`` event
(``ldap-audit-finding``) carrying ``rule.*``; the run's posture is a ``state`` event
(``ldap-audit-posture``); a directory bind is an ``authentication`` / ``start`` event
(``ldap-bind``); a detection is an ``alert`` / ``authentication`` / ``info`` event
(``auth-bruteforce``, ``auth-spraying``, ``auth-success-after-failures``, ``auth-offhours-privileged``).
Ids come from the run id + rule + subject, and from the log position of a bind, so re-emitting
after a crash stores each event once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from citydc.seclog import make_event
from citydc.sso.model import Finding

__all__ = [
    "AUDIT_DATASET",
    "AUTH_DATASET",
    "SEVERITY",
    "SSO_AUDIT_DATASET",
    "bind_event",
    "detection_event",
    "finding_event",
    "posture_event",
]

AUDIT_DATASET = "citydc.ldap_audit"
AUTH_DATASET = "citydc.ldap_auth"
SSO_AUDIT_DATASET = "citydc.sso_audit"
# ECS event.severity is a number; these are the values Elastic's detection rules use.
SEVERITY = {"info": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}


def finding_event(f: Finding, *, source: str, site: str, run_id: str, when: datetime, host: str,
                  action: str = "ldap-audit-finding", dataset: str = AUDIT_DATASET) -> dict:
    """Given a finding of a run, return its ``ldap-audit-finding`` (or ``sso-audit-finding``) alert."""
    return make_event(
        action=action, dataset=dataset, kind="alert", category=["iam"], type=["info"],
        outcome="unknown", message=f"{f.rule.id} {f.rule.title}: {f.subject}: {f.message}", site=site,
        id_key=f"{run_id}:{f.rule.id}:{f.subject}", host=host, timestamp=when, severity=SEVERITY[f.rule.severity],
        rule={"id": f.rule.id, "name": f.rule.title, "description": f.rule.description},
        details={"source": source, "run_id": run_id, "subject": f.subject, "severity": f.rule.severity,
                 "remediation": f.rule.remediation, "evidence": dict(f.evidence)})


def posture_event(result: dict[str, Any], *, site: str, when: datetime, host: str,
                  action: str = "ldap-audit-posture", dataset: str = AUDIT_DATASET) -> dict:
    """Given a run's JSON, return its ``ldap-audit-posture`` (or ``sso-audit-posture``) state event."""
    return make_event(
        action=action, dataset=dataset, kind="state", category=["iam"], type=["info"],
        outcome="success", site=site, host=host, timestamp=when, id_key=f"{result['run_id']}:posture",
        message=(f"{'SSO' if result.get('kind') == 'sso' else 'LDAP'} audit of "
                 f"{result['source']}: score {result['score']}, {len(result['findings'])} findings, "
                 f"{len(result['accepted'])} accepted, {result['accounts']} accounts"),
        duration_ns=int(result["duration_seconds"] * 1e9),
        details={"source": result["source"], "run_id": result["run_id"], "score": result["score"],
                 "accounts": result["accounts"], "by_severity": result["by_severity"],
                 "by_rule": result["by_rule"], "accepted": len(result["accepted"])})


def bind_event(*, user: str, source_ip: str | None, success: bool, code: int, when: datetime, site: str,
               source: str, id_key: str, conn: int, op: int, method: str | None, tls: bool | None) -> dict:
    """Given one bind seen in the directory's log, return its ``ldap-bind`` authentication event."""
    outcome = "success" if success else "failure"
    who = user or "(anonymous)"
    return make_event(
        action="ldap-bind", dataset=AUTH_DATASET, kind="event", category=["authentication"], type=["start"],
        outcome=outcome, site=site, timestamp=when, id_key=id_key, user=user or None, source_ip=source_ip,
        message=f"LDAP bind {outcome} for {who}" + (f" from {source_ip}" if source_ip else "")
                + ("" if success else f" (result {code})"),
        details={"source": source, "conn": conn, "op": op, "result_code": code, "method": method, "tls": tls})


def detection_event(*, action: str, message: str, site: str, source: str, when: datetime, id_key: str,
                    users: Sequence[str], source_ip: str | None, severity: str, details: dict[str, Any]) -> dict:
    """Given a detection, return its authentication alert."""
    return make_event(
        action=action, dataset=AUTH_DATASET, kind="alert", category=["authentication"], type=["info"],
        outcome="unknown", site=site, timestamp=when, id_key=id_key, message=message, severity=SEVERITY[severity],
        user=users[0] if len(users) == 1 else None, source_ip=source_ip,
        related={"user": list(users), **({"ip": [source_ip]} if source_ip else {})},
        details={"source": source, **details})

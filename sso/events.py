"""ECS events of the LDAP audits: pure builders over citydc.seclog.make_event.

Mapping (DESIGN.md): an audit finding is an ``alert`` / ``iam`` / ``info`` event
(``ldap-audit-finding``) carrying ``rule.*``; the run's posture is a ``state`` event
(``ldap-audit-posture``); a directory bind is an ``authentication`` / ``start`` event
(``ldap-bind``); a detection is an ``alert`` / ``authentication`` / ``info`` event
(``auth-bruteforce``, ``auth-spraying``, ``auth-success-after-failures``, ``auth-offhours-privileged``).
Keycloak's stored events: a login is an ``authentication`` / ``start`` event (``sso-login``), a logout
``authentication`` / ``end`` (``sso-logout``), another user event (password or OTP update, registration…)
``sso-event``; an admin event is an ``iam`` event (``iam-role-grant``, ``iam-role-revoke``,
``iam-user-create``, ``iam-user-update``, ``iam-user-delete``, ``iam-group-join``, ``iam-group-leave``,
``iam-admin-change``) with the acting user in ``user.name`` and the changed one in ``user.target.name``.
Ids come from the run id + rule + subject, and from the log position of a bind, so re-emitting
after a crash stores each event once.

The audits' findings and postures are ``make_event`` dicts. The authentication audit's events (binds, SSO
logins, admin changes, detections: tens of thousands a run) are ``Encoded``: each kind's shared facts are an
``EventTemplate`` validated once, and each event is validated and encoded once, its bytes spooled as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from citydc.seclog import make_event
from citydc.seclog.event import Encoded, EventTemplate
from citydc.sso.model import Finding

__all__ = [
    "AUDIT_DATASET",
    "AUTH_DATASET",
    "SEVERITY",
    "SSO_AUDIT_DATASET",
    "SSO_AUTH_DATASET",
    "SsoUserEvents",
    "bind_event",
    "detection_event",
    "finding_event",
    "iam_event",
    "posture_event",
    "sso_user_event",
]

AUDIT_DATASET = "citydc.ldap_audit"
AUTH_DATASET = "citydc.ldap_auth"
SSO_AUDIT_DATASET = "citydc.sso_audit"
SSO_AUTH_DATASET = "citydc.sso_auth"
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
               source: str, id_key: str, conn: int, op: int, method: str | None, tls: bool | None,
               relayed: bool = False) -> Encoded:
    """Given one bind seen in the directory's log, return its ``ldap-bind`` authentication event.

    ``relayed``: the bind came from an SSO server logging a user in (``auth.relay_addresses``); the SSO
    login event is the one the detections count."""
    outcome = "success" if success else "failure"
    who = user or "(anonymous)"
    details = {"source": source, "conn": conn, "op": op, "result_code": code, "method": method, "tls": tls}
    if relayed:
        details["relayed"] = True
    return _template("ldap-bind", AUTH_DATASET, "event", "authentication", "start", outcome, site).make(
        timestamp=when, id_key=id_key, user=user or None, source_ip=source_ip,
        message=f"LDAP bind {outcome} for {who}" + (f" from {source_ip}" if source_ip else "")
                + (" (relayed by SSO)" if relayed else "") + ("" if success else f" (result {code})"),
        details=details)


@functools.lru_cache(maxsize=1024)
def _template(action: str, dataset: str, kind: str, category: str, etype: str, outcome: str, site: str,
              severity: int | None = None) -> EventTemplate:
    """Return the template of one kind of event (made once per process: a handful of kinds and sites)."""
    return EventTemplate(action=action, dataset=dataset, kind=kind, category=[category], type=[etype],
                         outcome=outcome, site=site, severity=severity)


_SSO_KIND = {  # Keycloak event type -> (action, category, type)
    "LOGIN": ("sso-login", "authentication", "start"), "LOGIN_ERROR": ("sso-login", "authentication", "start"),
    "CLIENT_LOGIN": ("sso-login", "authentication", "start"),
    "CLIENT_LOGIN_ERROR": ("sso-login", "authentication", "start"),
    "LOGOUT": ("sso-logout", "authentication", "end"), "LOGOUT_ERROR": ("sso-logout", "authentication", "end"),
}
_SSO_IAM_TYPES = ("UPDATE_", "REMOVE_", "REGISTER", "RESET_PASSWORD", "DELETE_ACCOUNT", "VERIFY_EMAIL")


def sso_user_event(*, kc_type: str, success: bool, user: str | None, client: str | None, source_ip: str | None,
                   site: str, source: str, realm: str, id_key: str, error: str | None, details: dict[str, Any],
                   when: datetime | None = None, when_ms: int | None = None) -> Encoded:
    """Given one of Keycloak's stored user events (its time as a datetime or as epoch ms), return its
    ``sso-login`` / ``sso-logout`` / ``sso-event``."""
    if when_ms is None:
        return SsoUserEvents(site, source, realm).make(kc_type, success, user, client, source_ip, None, id_key,
                                                       error, details, when)
    return SsoUserEvents(site, source, realm).make(kc_type, success, user, client, source_ip, when_ms, id_key, error,
                                                   details)


class SsoUserEvents:
    """``sso_user_event`` for the events of one realm of one Keycloak: what they share looked up once (the
    template of each kind of event, the words of its message), each event's own facts passed positionally."""

    __slots__ = ("_kinds", "realm", "site", "source")

    def __init__(self, site: str, source: str, realm: str) -> None:
        self.site, self.source, self.realm = site, source, realm
        self._kinds: dict[tuple[str, bool], tuple[EventTemplate, str]] = {}

    def make(self, kc_type: str, success: bool, user: str | None, client: str | None, source_ip: str | None,
             when_ms: int | None, id_key: str, error: str | None, details: dict[str, Any],
             when: datetime | None = None) -> Encoded:
        """Given one event's facts (its time as epoch ms, or as a datetime in ``when``), return it encoded."""
        kind = self._kinds.get((kc_type, success))
        if kind is None:
            template, what, outcome = _sso_kind(kc_type, success, self.site)
            kind = self._kinds[(kc_type, success)] = (template, f"SSO {what} {outcome} for ")
        template, opening = kind
        return template.make(
            timestamp=when, timestamp_ms=when_ms, id_key=id_key, user=user, source_ip=source_ip, error=error,
            message=f"{opening}{user or '(unknown user)'} in realm {self.realm}" + (f" via {client}" if client else "")
                    + (f" from {source_ip}" if source_ip else "") + (f" ({error})" if error else ""),
            details={"source": self.source, "realm": self.realm, "client": client, "keycloak_type": kc_type,
                     **details})


@functools.lru_cache(maxsize=1024)
def _sso_kind(kc_type: str, success: bool, site: str) -> tuple[EventTemplate, str, str]:
    """Given a Keycloak event type, its success and the site, return (template, what it is in words, outcome)."""
    action, category, etype = _SSO_KIND.get(kc_type, ("sso-event", "authentication", "info"))
    if action == "sso-event" and kc_type.startswith(_SSO_IAM_TYPES):
        category, etype = "iam", "change"
    outcome = "success" if success else "failure"
    what = {"sso-login": "login", "sso-logout": "logout"}.get(action, kc_type.lower().replace("_", " "))
    return _template(action, SSO_AUTH_DATASET, "event", category, etype, outcome, site), what, outcome


_IAM_ACTIONS = {  # (resource type, operation) -> (action, ECS type)
    ("REALM_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("CLIENT_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("REALM_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("CLIENT_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("USER", "CREATE"): ("iam-user-create", "creation"),
    ("USER", "UPDATE"): ("iam-user-update", "change"),
    ("USER", "DELETE"): ("iam-user-delete", "deletion"),
    ("USER", "ACTION"): ("iam-user-update", "change"),
    ("GROUP_MEMBERSHIP", "CREATE"): ("iam-group-join", "change"),
    ("GROUP_MEMBERSHIP", "DELETE"): ("iam-group-leave", "change"),
}


def iam_event(*, resource_type: str, operation: str, actor: str | None, target: str | None,
              source_ip: str | None, when: datetime, site: str, source: str, realm: str, id_key: str,
              error: str | None, details: dict[str, Any]) -> Encoded:
    """Given one of Keycloak's admin events, return its ``iam-*`` change event (actor and target user)."""
    action, etype = _IAM_ACTIONS.get((resource_type, operation), ("iam-admin-change", "admin"))
    outcome = "failure" if error else "success"
    what = action.removeprefix("iam-").replace("-", " ")
    if action == "iam-admin-change":
        what = f"{operation.lower()} of {resource_type.lower().replace('_', ' ')}"
    return _template(action, SSO_AUTH_DATASET, "event", "iam", etype, outcome, site).make(
        timestamp=when, id_key=id_key, user=actor, user_target=target, source_ip=source_ip, error=error,
        message=f"SSO admin {what} in realm {realm}" + (f" by {actor}" if actor else "")
                + (f" for {target}" if target else "") + (f" from {source_ip}" if source_ip else "")
                + (f" ({error})" if error else ""),
        related={"user": [u for u in (actor, target) if u]},
        details={"source": source, "realm": realm, "resource_type": resource_type, "operation": operation,
                 **details})


def detection_event(*, action: str, message: str, site: str, source: str, when: datetime, id_key: str,
                    users: Sequence[str], source_ip: str | None, severity: str, details: dict[str, Any]) -> Encoded:
    """Given a detection, return its authentication alert."""
    return _template(action, AUTH_DATASET, "alert", "authentication", "info", "unknown", site, SEVERITY[severity]).make(
        timestamp=when, id_key=id_key, message=message,
        user=users[0] if len(users) == 1 else None, source_ip=source_ip,
        related={"user": list(users), **({"ip": [source_ip]} if source_ip else {})},
        details={"source": source, **details})

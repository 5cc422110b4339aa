"""ECS security events of playbook runs: pure builders over citydc.seclog.make_event.

Mapping (DESIGN.md): a playbook run and a changed task are ``configuration``/``change`` events,
actions ``playbook-run`` (once when the run starts, outcome unknown; once when it ends, with its
outcome) and ``playbook-task-changed`` (one per task that changed a host); the cross-site drift report of
``citydc play drift`` is a ``configuration``/``info`` event, action ``playbook-drift`` (outcome failure
when a setting drifts). Details go under
``citydc.playbook.*``. Ids come from the run id (+ the runner's event uuid), so a retried emit is
stored once. Only the *names* of secret extra-vars are ever recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from citydc.seclog import make_event

__all__ = ["DATASET", "RunFacts", "drift_report", "run_end", "run_start", "task_changed"]

DATASET = "citydc.playbook"
_MAX_HOSTS = 200  # hosts listed in one event; more are counted


@dataclass(frozen=True)
class RunFacts:
    """What identifies a run: who ran which playbook where, and how."""

    run_id: str
    user: str
    playbook: str
    inventory: str
    site: str  # --site, or "all"
    limit: str | None
    check: bool
    diff: bool
    revision: str  # git revision of playbooks/ ("+dirty" when it has uncommitted changes), or "unknown"
    host: str  # the machine citydc runs on
    extra_vars: Sequence[str] = ()  # names of the plain extra-vars
    secret_vars: Sequence[str] = ()  # names of the secret extra-vars (values never)
    artifact_dir: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "playbook": self.playbook, "inventory": self.inventory, "limit": self.limit,
                "check_mode": self.check, "diff_mode": self.diff, "revision": self.revision,
                "extra_vars": sorted(self.extra_vars), "secret_vars": sorted(self.secret_vars),
                "artifact_dir": self.artifact_dir}

    def what(self) -> str:
        where = f" limited to {self.limit}" if self.limit else ""
        mode = " in check mode" if self.check else ""
        return f"on inventory {self.inventory}{where}{mode}"


def run_start(facts: RunFacts) -> dict:
    """Given the run's facts, return its ``playbook-run`` start event (outcome unknown)."""
    return make_event(
        action="playbook-run", dataset=DATASET, kind="event", category=["configuration"], type=["change", "start"],
        outcome="unknown", message=f"{facts.playbook} started by {facts.user} {facts.what()}", site=facts.site,
        id_key=f"{facts.run_id}:start", user=facts.user, host=facts.host,
        details={**facts.details(), "phase": "start"})


def run_end(facts: RunFacts, *, status: str, rc: int | None, meaning: str, duration_seconds: float,
            hosts: Mapping[str, Mapping[str, int]], changed_tasks: int, error: str | None = None,
            ok: bool | None = None, warnings: Sequence[str] = ()) -> dict:
    """Given the run's facts and result (per-host counts ok/changed/failed/unreachable/skipped), return its end event.

    The outcome is success only when ansible-playbook exited 0 (its exit-code table in citydc.execute) and, when
    given, ``ok`` (the result's own verdict: a run whose plays matched no host is a failure though it exited 0).
    ``rc`` is ansible-playbook's exit status, None when it has none (stopped by a timeout or an interrupt).
    ``warnings`` (the artifacts not kept or not rotated) are recorded when there are any.
    """
    outcome = "success" if rc == 0 and status == "successful" and ok is not False else "failure"
    names = sorted(hosts)
    listed = {h: dict(hosts[h]) for h in names[:_MAX_HOSTS]}
    totals = {k: sum(c.get(k, 0) for c in hosts.values()) for k in ("ok", "changed", "failed", "unreachable")}
    summary = ", ".join(f"{k}={v}" for k, v in totals.items())
    return make_event(
        action="playbook-run", dataset=DATASET, kind="event", category=["configuration"], type=["change", "end"],
        outcome=outcome,
        message=f"{facts.playbook} by {facts.user} {facts.what()} ended: {status} ({meaning}); {summary}",
        site=facts.site, id_key=f"{facts.run_id}:end", user=facts.user, host=facts.host,
        duration_ns=int(duration_seconds * 1e9), error=error,
        related={"hosts": names[:_MAX_HOSTS]} if names else None,
        details={**facts.details(), "phase": "end", "status": status, "exit_code": rc, "meaning": meaning,
                 "duration_seconds": round(duration_seconds, 3), "hosts": listed, "host_count": len(names),
                 "totals": totals, "changed_tasks": changed_tasks,
                 **({"warnings": [w[:500] for w in warnings[:10]]} if warnings else {})})


def task_changed(facts: RunFacts, *, event_uuid: str, target: str, task: str, module: str, play: str) -> dict:
    """Given one changed task (target host, task name, module), return its ``playbook-task-changed`` event.

    In check mode nothing changed: the event says what would have (``would change``, ECS type ``info``), so an
    auditor's search for changes never counts a dry run's."""
    if facts.check:
        kind, message = ["info"], f"{task} ({module}) would change {target} in {facts.playbook} (check mode)"
    else:
        kind, message = ["change"], f"{task} ({module}) changed {target} in {facts.playbook}"
    return make_event(
        action="playbook-task-changed", dataset=DATASET, kind="event", category=["configuration"], type=kind,
        outcome="success", message=message,
        site=facts.site, id_key=f"{facts.run_id}:task:{event_uuid}", user=facts.user, host=facts.host,
        related={"hosts": [target]},
        details={"run_id": facts.run_id, "playbook": facts.playbook, "target": target, "task": task, "module": module,
                 "play": play, "check_mode": facts.check, "revision": facts.revision})


_MAX_DRIFT = 100  # drifting settings listed in one event; more are counted


def drift_report(facts: RunFacts, *, in_sync: bool, hosts: Mapping[str, str], drift: Sequence[Mapping[str, Any]],
                 error: str | None = None) -> dict:
    """Given the drift run's facts and its report (hosts -> site, drifting settings with each host's value),
    return its ``playbook-drift`` event: outcome success when the sites agree, failure on drift or error."""
    settings = [d["setting"] for d in drift]
    if error:
        message = f"cross-site drift check by {facts.user} {facts.what()} could not compare: {error}"
    elif in_sync:
        message = f"cross-site drift check by {facts.user} {facts.what()}: the load balancers agree"
    else:
        shown = ", ".join(settings[:5]) + (f" and {len(settings) - 5} more" if len(settings) > 5 else "")
        message = f"cross-site drift check by {facts.user} {facts.what()}: {len(settings)} settings differ: {shown}"
    return make_event(
        action="playbook-drift", dataset=DATASET, kind="event", category=["configuration"], type=["info"],
        outcome="success" if in_sync and not error else "failure", message=message, site=facts.site,
        id_key=f"{facts.run_id}:drift", user=facts.user, host=facts.host, error=error,
        related={"hosts": sorted(hosts)} if hosts else None,
        details={"run_id": facts.run_id, "playbook": facts.playbook, "inventory": facts.inventory,
                 "revision": facts.revision, "in_sync": in_sync and not error, "hosts": dict(hosts),
                 "drift_count": len(settings), "drift": [dict(d) for d in drift[:_MAX_DRIFT]]})

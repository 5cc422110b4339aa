"""ECS security events of the backup jobs: pure builders over citydc.seclog.make_event.

Mapping (DESIGN.md): backup run and off-site copy are ``process`` start/end events
(``backup-run``, ``backup-copy``); repository check and restore drill are ``process`` end
events (``repo-check``, ``restore-drill``); a removed stale lock is ``configuration``/``deletion``
(``backup-lock-removed``). Component fields go under ``citydc.backup.*``. The event id comes
from the run identity (run id + step + repository), or the lock id, so a retried emit is stored once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from citydc.seclog import make_event

__all__ = ["DATASET", "lock_removed", "redact_url", "step_end", "step_start"]

DATASET = "citydc.backup"

_ACTIONS = {"backup": "backup-run", "copy": "backup-copy", "check": "repo-check", "drill": "restore-drill",
            "prune": "backup-prune"}
# Prune has no row in DESIGN.md's table; it deletes snapshots and data, so it is a configuration
# deletion like the lock removal.
_CATEGORY = {"backup": "process", "copy": "process", "check": "process", "drill": "process", "prune": "configuration"}
_MAX_LISTED = 20  # files named in one event; the rest are counted


def redact_url(url: str) -> str:
    """Given a repository URL, return it without any password in its userinfo (rest:https://u:p@host/)."""
    scheme, sep, rest = url.partition(":")
    if not sep or "://" not in url or "@" not in rest:
        return url
    parts = urlsplit(rest)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return f"{scheme}:{urlunsplit(parts._replace(netloc=netloc))}"


def _details(job: str, repo: str, url: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"job": job, "repo": repo, "repository": redact_url(url)}
    for key, value in extra.items():
        if value is None:
            continue
        if isinstance(value, list | tuple) and len(value) > _MAX_LISTED:
            out[f"{key}_count"] = len(value)
            value = list(value)[:_MAX_LISTED]
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def step_start(*, step: str, job: str, repo: str, url: str, site: str, run_id: str, host: str) -> dict:
    """Given a backup or copy step about to run, return its ``process``/``start`` event."""
    return make_event(
        action=_ACTIONS[step], dataset=DATASET, kind="event", category=[_CATEGORY[step]], type=["start"],
        outcome="unknown", message=f"{step} of job {job} to the {repo} repository started",
        site=site, id_key=f"{run_id}:{step}:{repo}:start", host=host,
        details=_details(job, repo, url, {"run_id": run_id, "step": step}))


def step_end(*, step: str, job: str, repo: str, url: str, site: str, run_id: str, host: str, status: str,
             duration_seconds: float, exit_code: int | None = None, error: str | None = None,
             snapshot_id: str | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Given the result of one step, return its end event. ``status`` is success, partial or failure.

    A partial backup (unreadable files) has outcome failure: it did not protect everything.
    """
    outcome = "success" if status == "success" else "failure"
    fields = {"run_id": run_id, "step": step, "status": status, "exit_code": exit_code,
              "snapshot_id": snapshot_id, **(extra or {})}
    types = ["end"] if step != "prune" else ["deletion"]
    if step == "drill":
        types = ["end", "access"]
        category = ["process", "file"]
    else:
        category = [_CATEGORY[step]]
    what = f"{step} of job {job} ({repo} repository)"
    message = f"{what}: {status}" + (f": {error}" if error else "")
    return make_event(
        action=_ACTIONS[step], dataset=DATASET, kind="event", category=category, type=types,
        outcome=outcome, message=message, site=site, id_key=f"{run_id}:{step}:{repo}:end", host=host,
        error=error, duration_ns=max(0, int(duration_seconds * 1e9)),
        details=_details(job, repo, url, fields))


def lock_removed(*, job: str, repo: str, url: str, site: str, host: str, lock_id: str, lock_host: str,
                 lock_pid: int, lock_time: str, age_seconds: float, exclusive: bool,
                 related_users: Sequence[str] = ()) -> dict:
    """Given a stale lock that was removed, return its ``configuration``/``deletion`` event."""
    return make_event(
        action="backup-lock-removed", dataset=DATASET, kind="event", category=["configuration"], type=["deletion"],
        outcome="success", site=site, host=host, id_key=f"lock:{lock_id}",
        message=(f"stale restic lock {lock_id[:8]} removed from the {repo} repository of job {job} "
                 f"(pid {lock_pid} on {lock_host} is gone, lock {age_seconds:.0f} s old)"),
        related={"user": list(related_users)} if related_users else None,
        details=_details(job, repo, url, {"lock_id": lock_id, "lock_host": lock_host, "lock_pid": lock_pid,
                                          "lock_time": lock_time, "lock_age_seconds": round(age_seconds, 3),
                                          "lock_exclusive": exclusive}))

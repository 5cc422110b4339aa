"""Run one playbook through ansible-runner's Python API and follow its event stream.

ansible-runner starts ``ansible-playbook`` itself: it is the one place besides ``citydc.execute`` that
starts processes, and its exit status is read through the ``ansible-playbook`` table there.

Secrets: ansible-runner writes ``env/extravars`` into its private data directory and the whole
environment into ``artifacts/<run>/command``. So citydc never hands it a secret that way:
- secret extra-vars (``--secret-var NAME=env:VAR`` / ``NAME=file:PATH``) are written to a 0600 JSON
  file in a private temporary directory outside the artifacts, passed as ``-e @FILE`` and removed
  when the run ends;
- the child's environment is cut down to an allow-list (``ENV_ALLOW``), so no ``*_PASSWORD`` of the
  operator's shell reaches the artifacts;
- every runner event is masked (each secret value replaced by ``***``) before the runner writes it,
  and the runner's raw ``stdout`` file is not written (``suppress_output_file``).
Plain extra-vars go on the command line, where the ``command`` artifact records them for the audit.

SSH: ansible-runner turns host key checking off unless the environment sets it; citydc turns it back on
(``ANSIBLE_HOST_KEY_CHECKING=True`` unless the operator's environment says otherwise), so a host whose key
is not the pinned one (``known_hosts``) is unreachable. A private key given as contents (``ansible_ssh_private_key``,
e.g. a lookup of the encrypted key file in the inventory) with its passphrase as a secret variable
(``--secret-var ansible_ssh_private_key_passphrase=env:VAR``) is decrypted by Ansible into an ssh-agent it
starts and stops for the run (``ANSIBLE_SSH_AGENT=auto``, set when such a secret variable is given): the
key never touches the disk in clear, the passphrase never reaches argv, events or artifacts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citydc import execute

__all__ = ["COUNTS", "ENV_ALLOW", "PlayRequest", "PlayResult", "Tracker", "git_revision", "limit_pattern",
           "list_playbooks", "mask_event", "run_playbook", "runner_kwargs"]

COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
# Environment names the ansible-playbook child keeps (prefixes end with "_").
ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR",
             "VIRTUAL_ENV", "SSH_AUTH_SOCK", "CITYDC_LAB_DIR", "ANSIBLE_")
# Variables of a private key given as contents and its passphrase (ansible-core 2.19 loads it into an ssh-agent).
PRIVATE_KEY_VARS = ("ansible_private_key", "ansible_ssh_private_key", "ansible_private_key_passphrase",
                    "ansible_ssh_private_key_passphrase")
_STATS_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable", "skipped": "skipped"}


@dataclass(frozen=True)
class PlayRequest:
    """One run: the playbook (relative to the playbooks directory) and how to run it."""

    playbooks_dir: Path
    playbook: str
    inventory: Path
    artifacts_dir: Path
    run_id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8])
    site: str | None = None
    limit: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    secret_vars: Mapping[str, str] = field(default_factory=dict, repr=False)  # name -> value, never printed
    keep_runs: int = 20
    timeout: int | None = None


@dataclass
class PlayResult:
    status: str
    rc: int | None
    outcome: execute.Outcome
    meaning: str
    duration_seconds: float
    hosts: dict[str, dict[str, int]]
    changed_tasks: list[dict[str, str]]
    stats_data: dict[str, Any]
    artifact_dir: Path
    failures: list[dict[str, str]]

    @property
    def ok(self) -> bool:
        return self.outcome is execute.Outcome.SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "rc": self.rc, "outcome": str(self.outcome), "meaning": self.meaning,
                "duration_seconds": round(self.duration_seconds, 3), "hosts": self.hosts,
                "changed_tasks": self.changed_tasks, "failures": self.failures, "stats_data": self.stats_data,
                "artifact_dir": str(self.artifact_dir)}


def limit_pattern(site: str | None, limit: str | None) -> str | None:
    """Given --site and --limit, return the ansible limit pattern (both: the hosts of the limit within the site)."""
    if site and limit:
        return f"{site}:&{limit}"
    return site or limit


def list_playbooks(playbooks_dir: Path) -> list[tuple[str, str]]:
    """Given the playbooks directory, return (file, first comment line) of each top-level playbook."""
    out = []
    for path in sorted(playbooks_dir.glob("*.yml")):
        summary = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                summary = line[2:].strip()
                break
        out.append((path.name, summary))
    return out


def git_revision(directory: Path) -> str:
    """Given a directory, return the git commit it is at ("+dirty" if it has uncommitted changes), or "unknown"."""
    try:
        head = execute.run("git", ("git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"), timeout=10)
        if not head.ok:
            return "unknown"
        dirty = execute.run("git", ("git", "-C", str(directory), "status", "--porcelain", "--", "."), timeout=10)
    except execute.ToolFailed:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.ok and dirty.stdout.strip() else "")


def mask_event(value: Any, secrets: Sequence[str]) -> Any:
    """Given a runner event (nested dicts and lists), return it with every secret value replaced by ``***``."""
    if not secrets:
        return value
    if isinstance(value, str):
        return execute.mask(value, secrets)
    if isinstance(value, dict):
        return {k: mask_event(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_event(v, secrets) for v in value]
    return value


def runner_kwargs(req: PlayRequest, private_dir: Path, secret_file: Path | None) -> dict[str, Any]:
    """Given the request, its private data directory and the secret-vars file (or None), return the keyword
    arguments of ``ansible_runner.run`` (the event and status handlers are added by the caller)."""
    cmdline: list[str] = []
    if req.check:
        cmdline.append("--check")
    if req.diff:
        cmdline.append("--diff")
    if req.extra_vars:
        cmdline += ["-e", json.dumps(dict(req.extra_vars), sort_keys=True)]
    if secret_file is not None:
        cmdline += ["-e", f"@{secret_file}"]
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private_dir),
        "project_dir": str(req.playbooks_dir),
        "playbook": req.playbook,
        "inventory": str(req.inventory),
        "artifact_dir": str(req.artifacts_dir),
        "ident": req.run_id,
        "rotate_artifacts": req.keep_runs,
        "quiet": True,
        # (a constructor argument would be overridden by the settings: ansible_runner/config/_base.py)
        "settings": {"suppress_output_file": True, "suppress_ansible_output": True},
        "json_mode": False,
    }
    if cmdline:
        kwargs["cmdline"] = shlex.join(cmdline)
    envvars = {"ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True")}
    if any(name in req.secret_vars for name in PRIVATE_KEY_VARS):
        envvars["ANSIBLE_SSH_AGENT"] = os.environ.get("ANSIBLE_SSH_AGENT", "auto")
    kwargs["envvars"] = envvars
    limit = limit_pattern(req.site, req.limit)
    if limit:
        kwargs["limit"] = limit
    if req.timeout:
        kwargs["timeout"] = req.timeout
    return kwargs


@contextlib.contextmanager
def _no_delay_after_close() -> Iterator[None]:
    """Within the block, closing a pexpect child that has already been reaped does not sleep first.

    ptyprocess sleeps ``delayafterclose`` (0.1 s) in ``close()`` to give a still-running child time to exit
    before it checks on it. ansible-runner closes its child only after its ``while child.isalive()`` loop has
    ended, when the child has exited and been reaped (``terminated``): that sleep was 0.1 s of every run's wall
    for nothing. A child still running when closed keeps the delay."""
    try:
        import pexpect
    except ImportError:  # an ansible-runner without pexpect: nothing to change
        yield
        return
    original = pexpect.spawn.close

    def close(self: Any, force: bool = True) -> None:
        if getattr(self.ptyproc, "terminated", False):
            self.ptyproc.delayafterclose = 0.0
        original(self, force=force)

    pexpect.spawn.close = close
    try:
        yield
    finally:
        pexpect.spawn.close = original


@contextlib.contextmanager
def _child_environment(allow: Sequence[str] = ENV_ALLOW) -> Iterator[None]:
    """Within the block, os.environ holds only allowed names (ansible-runner copies it for the child and into
    its ``command`` artifact), with this interpreter's bin directory first on PATH; restored afterwards."""
    saved = dict(os.environ)
    keep = {k: v for k, v in saved.items() if k in allow or any(k.startswith(p) for p in allow if p.endswith("_"))}
    bindir = str(Path(sys.executable).parent)
    keep["PATH"] = os.pathsep.join([bindir, *(p for p in keep.get("PATH", "").split(os.pathsep) if p != bindir)])
    os.environ.clear()
    os.environ.update(keep)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Tracker:
    """Follows the runner's event stream: current task, per-host counts, changed tasks, failures, stats."""

    def __init__(self, secrets: Sequence[str] = (), on_change: Callable[[Tracker], None] | None = None) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.on_change = on_change
        self.task = ""
        self.play = ""
        self.hosts: dict[str, dict[str, int]] = {}
        self.changed: list[dict[str, str]] = []
        self.failures: list[dict[str, str]] = []
        self.stats_data: dict[str, Any] = {}
        self.final: dict[str, dict[str, int]] | None = None
        self.lock = threading.Lock()

    def _count(self, host: str, key: str) -> None:
        counts = self.hosts.setdefault(host, dict.fromkeys(COUNTS, 0))
        counts[key] += 1

    def handle(self, event: dict) -> bool:
        """ansible-runner's event_handler: mask the event in place (the runner writes it after), follow it."""
        if self.secrets:
            masked = mask_event(event, self.secrets)
            event.clear()
            event.update(masked)
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        with self.lock:
            if kind == "playbook_on_play_start":
                self.play = data.get("play", "")
            elif kind == "playbook_on_task_start":
                self.task = data.get("task", "")
            elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
                self._on_result(kind, event, data)
            elif kind == "playbook_on_stats":
                self._on_stats(data)
        if self.on_change is not None:
            self.on_change(self)
        return True

    def _on_result(self, kind: str, event: dict, data: dict) -> None:
        host = data.get("host", "?")
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            self._count(host, "ok")  # as Ansible's recap: ok includes the changed ones
            if res.get("changed"):
                self._count(host, "changed")
                self.changed.append({"uuid": event.get("uuid", ""), "host": host, "task": data.get("task", ""),
                                     "module": data.get("resolved_action") or data.get("task_action", ""),
                                     "play": data.get("play", "")})
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                self._count(host, "ok")
                return
            self._count(host, "failed")
            self.failures.append({"host": host, "task": data.get("task", ""),
                                  "message": str(res.get("msg", ""))[:500]})
        elif kind == "runner_on_unreachable":
            self._count(host, "unreachable")
            self.failures.append({"host": host, "task": data.get("task", ""),
                                  "message": str(res.get("msg", "unreachable"))[:500]})
        else:
            self._count(host, "skipped")

    def _on_stats(self, data: dict) -> None:
        final: dict[str, dict[str, int]] = {}
        for key, name in _STATS_KEYS.items():
            for host, n in (data.get(key) or {}).items():
                final.setdefault(host, dict.fromkeys(COUNTS, 0))[name] = int(n)
        for host in data.get("processed") or {}:
            final.setdefault(host, dict.fromkeys(COUNTS, 0))
        self.final = final
        self.stats_data = data.get("artifact_data") or {}


def _write_secret_file(secret_vars: Mapping[str, str]) -> tuple[Path, Path]:
    """Write the secret extra-vars to a 0600 JSON file in a new 0700 directory; return (directory, file)."""
    directory = Path(tempfile.mkdtemp(prefix="citydc-play-"))  # mkdtemp makes it 0700
    path = directory / "secret-vars.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(secret_vars), f)
    return directory, path


def run_playbook(req: PlayRequest, tracker: Tracker) -> PlayResult:
    """Given a request and a tracker, run the playbook with ansible-runner; return the result.

    Raise execute.ToolFailed if ansible-runner is not installed.
    """
    try:
        import ansible_runner
    except ImportError:
        raise execute.ToolFailed("ansible-runner is not installed: pip install 'citydc[play]'") from None
    req.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_dir = Path(tempfile.mkdtemp(prefix="citydc-play-pdd-"))
    secret_dir, secret_file = _write_secret_file(req.secret_vars) if req.secret_vars else (None, None)
    started = time.monotonic()
    try:
        kwargs = runner_kwargs(req, private_dir, secret_file)
        with _child_environment(), _no_delay_after_close():
            r = ansible_runner.run(**kwargs, event_handler=tracker.handle)
        status, rc = r.status, r.rc
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
        if secret_dir is not None:
            shutil.rmtree(secret_dir, ignore_errors=True)
    duration = time.monotonic() - started
    if status == "timeout":
        outcome, meaning = execute.Outcome.FAILURE, f"timed out after {req.timeout} s"
    elif rc is None:
        outcome, meaning = execute.Outcome.FAILURE, f"ansible-runner ended {status} without an exit code"
    else:
        outcome, meaning = execute.interpret_exit_code("ansible-playbook", rc)
        if rc == 127:
            meaning = "ansible-playbook not found (install citydc[play] in this environment)"
    hosts = tracker.final if tracker.final is not None else tracker.hosts
    return PlayResult(status=status, rc=rc, outcome=outcome, meaning=meaning, duration_seconds=duration,
                      hosts=hosts, changed_tasks=list(tracker.changed), stats_data=tracker.stats_data,
                      artifact_dir=req.artifacts_dir / req.run_id, failures=list(tracker.failures))

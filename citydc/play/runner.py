"""Run one playbook through ansible-runner's Python API and follow its event stream.

ansible-runner starts ``ansible-playbook`` itself: it is the one place besides ``citydc.execute`` that
starts processes, and its exit status is read through the ``ansible-playbook`` table there.

Early start (``start_playbook``): ``ansible-playbook`` spends about a second importing Ansible before it
reads its extra-vars, and citydc about half a second loading its config before it may record the run.
So the run is started first, with one more extra-vars file, ``-e @config-vars.fifo``: a named pipe in
the run's private 0700 directory. ``ansible-playbook`` opens and reads it while it sets up (ansible-core
2.19 reads extra-vars before it parses the inventory and long before the first play) and blocks there;
meanwhile the caller loads the config and writes the start event, and only then ``release()`` writes the
config's extra-vars (``{}`` when there are none) into the pipe. Why nothing runs before that:
- citydc holds the pipe open read-write from before the start (the "keeper"), so the child's open
  returns at once and its read waits for data, and the keeper is closed only once the child has read
  what ``release()`` wrote (the pipe's unread count, ``FIONREAD``, is 0) or the child is gone;
- ``cancel()`` (config invalid, start event not written, interrupted) sets the runner's cancel flag and
  closes the keeper with nothing written: a child past its open reads end-of-file, which ansible-core
  refuses as extra-vars ("could not be made into a dictionary", exit 5) before any play; a child not yet
  there is killed by the runner (SIGKILL to its process group) at its next check, within
  ``CANCEL_POLL`` seconds; ``cancel()`` waits for the runner thread, so no child is left;
- a citydc that dies outright (SIGKILL) after the child's open leaves it end-of-file the same way;
  one killed in the second before that leaves the child blocked in its open, never running a task
  (SIGINT/SIGTERM are the runner's cancel, as in ``ansible_runner.run``);
- what goes through the pipe is always ``json.dumps`` of a dict: ansible-core opens an extra-vars file a
  second time only to quote it in a parse error, and that second open would wait for a writer forever.
The artifact directory is chosen by the config too: unless the request names one, the run writes into
a staging directory inside the private directory, moved into place (then rotated to ``keep_runs``) when
the run ends, also when it failed or was interrupted; a cancelled run's artifacts are discarded.
Rotation (``rotate_runs``) removes only citydc's own run directories (named ``<UTC stamp>-<8 hex>`` by the run
id, holding ansible-runner's ``job_events``), never anything else in the directory, and never fails the run: what
it cannot remove becomes a warning of the result. ansible-runner's own rotation (which removes the oldest entries
of the directory, whatever they are) is off.

Secrets: ansible-runner writes ``env/extravars`` into its private data directory and the whole
environment into ``artifacts/<run>/command``. So citydc never hands it a secret that way:
- secret extra-vars (``--secret-var NAME=env:VAR`` / ``NAME=file:PATH``) are written to a 0600 JSON
  file in the run's private temporary directory outside the artifacts, passed as ``-e @FILE`` and
  removed when the run ends;
- the child's environment is cut down to an allow-list (``ENV_ALLOW``), so no ``*_PASSWORD`` of the
  operator's shell reaches the artifacts;
- every runner event is masked before the runner writes it: each secret value, and each form it takes once
  encoded in an event (``secret_forms``: JSON-escaped as Ansible prints results, Python ``repr``, HTML and
  URL escaped), is replaced by ``***``; the runner's raw ``stdout`` file is not written (``suppress_output_file``);
- the fact cache (``set_fact: cacheable``, gathered facts; ansible-runner puts its jsonfile cache in the
  artifact directory) is kept in the run's private directory and removed with it: a secret a task caches
  never reaches the artifacts.
Plain extra-vars go on the command line, where the ``command`` artifact records them for the audit; the
config's (``alertmanager_url`` and the settings of ``alertmanager_http``) go through the pipe and are kept as
``config-vars.json`` in the run's artifact directory, except its secret ones (``alertmanager_password``, read
from its reference): those go through the pipe only, and are masked in the events as secret extra-vars are.

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
import difflib
import functools
import html
import importlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citydc import execute
from citydc.play.stop import stop_tree
from citydc.stand_ins import modules_replaced

__all__ = ["AT_FORK_MODULES", "COUNTS", "ENV_ALLOW", "MIN_SECRET_CHARS", "RUN_DIR", "RUN_LOCK", "PlayRequest",
           "PlayResult", "PlaybookRun", "RunLocked", "Tracker", "diff_text", "git_revision", "limit_pattern",
           "list_playbooks", "mask_event", "rotate_runs", "run_playbook", "runner_kwargs", "secret_forms",
           "secret_problem", "start_playbook", "take_run_lock"]

COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
# Environment names the ansible-playbook child keeps (prefixes end with "_").
ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR",
             "VIRTUAL_ENV", "SSH_AUTH_SOCK", "CITYDC_LAB_DIR", "ANSIBLE_")
# Variables of a private key given as contents and its passphrase (ansible-core 2.19 loads it into an ssh-agent).
PRIVATE_KEY_VARS = ("ansible_private_key", "ansible_ssh_private_key", "ansible_private_key_passphrase",
                    "ansible_ssh_private_key_passphrase")
_STATS_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable", "skipped": "skipped"}
# Ansible's own error and warning lines (its "verbose" events): kept to say why a run failed before any host
# result (a playbook that does not parse, no host matched); bounded, an error block can quote source lines.
MAX_MESSAGES = 20
MAX_MESSAGE_CHARS = 500
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ERROR_START = ("[ERROR]", "ERROR!")  # ansible-core 2.19, and earlier versions
_WARNING_START = ("[WARNING]", "[DEPRECATION WARNING]")
# The name of a run's artifact directory (PlayRequest.run_id): the only entries rotation ever removes.
RUN_DIR = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
NO_HOST_MATCHED = "no host matched: no play of the run had a host to run on (check the inventory, --site and --limit)"
# A failed task's message as kept (failures, the end event's error); a validator's reason lines (``validate:``)
MAX_FAILURE_CHARS = 800
MAX_REASON_LINES = 3
# A changed task's diff as kept for --diff (the whole of it stays in the run's job_events), and all of a run's
MAX_DIFF_CHARS = 8000
MAX_DIFFS_CHARS = 400_000
# Modules that register at-fork hooks holding a lock from "before" to "after_in_parent" (concurrent.futures.thread:
# its _global_shutdown_lock; logging: its module lock): imported before the runner's thread forks ansible-playbook.
# Imported later, by another thread while that fork runs, only the "after" half runs and releases a lock the
# importing thread holds ("RuntimeError: release unlocked lock" in ThreadPoolExecutor.submit).
AT_FORK_MODULES = ("concurrent.futures.thread", "logging")
# A secret value is masked wherever it occurs: one this short, or one that is part of a host, group, task or file
# name, would be masked out of those names too, and the "***" in them would show what it is (secret_problem).
MIN_SECRET_CHARS = 6
_SECRET_SCANNED = (".yml", ".yaml", ".j2", ".py", ".json")  # playbooks' files whose text can reach a run's output
_MAX_SCANNED_BYTES = 1 << 20
_MAX_SCANNED_FILES = 5000


@dataclass(frozen=True)
class PlayRequest:
    """One run: the playbook (relative to the playbooks directory) and how to run it."""

    playbooks_dir: Path
    playbook: str
    inventory: Path
    artifacts_dir: Path | None  # None: chosen later (PlaybookRun.release), the run writes to a staging directory
    run_id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8])
    site: str | None = None
    limit: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    secret_vars: Mapping[str, str] = field(default_factory=dict, repr=False)  # name -> value, never printed
    keep_runs: int = 20
    timeout: int | None = None
    # the citydc.yaml of this run: the child's $CITYDC_CONFIG, so an inventory made from its devices
    # (citydc.ops.devices, inventories/production) is made from the same file
    config_file: Path | None = None


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
    messages: list[str] = field(default_factory=list)  # Ansible's error and warning lines (Tracker.messages)
    warnings: list[str] = field(default_factory=list)  # citydc's own: artifacts not kept or not rotated

    @property
    def ok(self) -> bool:
        return self.outcome is execute.Outcome.SUCCESS

    @property
    def interrupted(self) -> bool:
        """Whether SIGINT or SIGTERM stopped the run (ansible-runner's status "canceled")."""
        return self.status == "canceled"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "rc": self.rc, "outcome": str(self.outcome), "meaning": self.meaning,
                "duration_seconds": round(self.duration_seconds, 3), "hosts": self.hosts,
                "changed_tasks": self.changed_tasks, "failures": self.failures, "messages": self.messages,
                "stats_data": self.stats_data, "artifact_dir": str(self.artifact_dir), "warnings": self.warnings}


def limit_pattern(site: str | None, limit: str | None) -> str | None:
    """Given --site and --limit, return the ansible limit pattern (both: the hosts of the limit within the site)."""
    if site and limit:
        return f"{site}:&{limit}"
    return site or limit


def list_playbooks(playbooks_dir: Path) -> list[tuple[str, str]]:
    """Given the playbooks directory, return (file, summary) of each top-level playbook: the first sentence of its
    first comment block (which may span lines), or the whole block when it has no sentence end."""
    out = []
    for path in sorted(playbooks_dir.glob("*.yml")):
        block: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#") and not line.startswith("#!"):
                block.append(line[1:].strip())
            elif block:
                break
        text = " ".join(w for w in block if w)
        end = re.search(r"\.(\s|$)", text)
        out.append((path.name, text[:end.start() + 1] if end else text))
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


@functools.lru_cache(maxsize=32)
def _forms(secret: str) -> frozenset[str]:
    backslashed = secret.replace("\\", "\\\\")
    # how a value is written into a string: as it is, Python repr (a list or dict rendered into a message), XML or
    # HTML (a domain definition, a diff), a URL's userinfo or query
    written = {secret, repr(secret)[1:-1], backslashed.replace("'", "\\'"), backslashed.replace('"', '\\"'),
               html.escape(secret), html.escape(secret, quote=False),
               urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    # ... and each of those JSON-escaped once (a result Ansible prints, a to_json) and twice (that JSON printed)
    once = {json.dumps(w, ensure_ascii=a)[1:-1] for w in written for a in (True, False)}
    twice = {json.dumps(w, ensure_ascii=a)[1:-1] for w in once for a in (True, False)}
    return frozenset(written | once | twice)


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Given secret values, return every form each can take in a runner event (the value itself, in ``repr``,
    HTML and URL escaped, each of these JSON-escaped once and twice), longest first so a longer form is replaced
    whole. A value without characters to escape has one form."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= _forms(secret)
    forms.discard("")
    return tuple(sorted(forms, key=len, reverse=True))


def _scanned_texts(playbooks_dir: Path | None, inventory: Path | None) -> Iterator[tuple[Path, str]]:
    """Given the playbooks directory and the inventory (a file or a directory), yield (path, text) of the files
    whose words can reach a run's output: the playbooks, roles, templates and modules (``_SECRET_SCANNED``), and
    every file of the inventory (an INI inventory has no suffix). Hidden directories, files over 1 MiB and
    unreadable ones are skipped; at most ``_MAX_SCANNED_FILES`` are read."""
    roots: list[tuple[Path, bool]] = []
    if playbooks_dir is not None:
        roots.append((playbooks_dir, True))
    if inventory is not None:
        roots.append((inventory, False))
    seen: set[Path] = set()
    for root, by_suffix in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            rel = path.relative_to(root).parts if path != root else ()
            if path in seen or any(part.startswith(".") or part == "__pycache__" for part in rel):
                continue
            if by_suffix and (path.suffix not in _SECRET_SCANNED or "inventories" in rel[:1]):
                continue  # the inventories: only the one of this run, below
            seen.add(path)
            if len(seen) > _MAX_SCANNED_FILES:
                return
            try:
                if not path.is_file() or path.stat().st_size > _MAX_SCANNED_BYTES:
                    continue
                yield path, path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue


def secret_problem(value: str, *, playbooks_dir: Path | None = None, inventory: Path | None = None,
                   names: Iterable[str] = ()) -> str | None:
    """Given a secret value, the playbooks directory, the inventory and other names the run's hosts may carry (the
    config's sites and devices), return why it is refused, or None.

    Refused: a value shorter than ``MIN_SECRET_CHARS``, and one that occurs (in any form it is masked in) in those
    names or in the text of the inventory, a playbook, a role, a template or a module. Masking it there would change
    a host, group, task or file name into one with ``***`` in it, in the output, the events and the artifacts,
    and whoever reads them could tell what the secret is. The reason never quotes the value."""
    if len(value) < MIN_SECRET_CHARS:
        return (f"its value is shorter than {MIN_SECRET_CHARS} characters: masked wherever it occurs, it would also "
                "be masked out of names and numbers that hold the same characters, which shows what it is")
    forms = secret_forms([value])
    for name in names:
        if any(form in name for form in forms):
            return ("its value is part of a site id or device name (a host or group name of the run): masking it "
                    "there would show what it is; choose another")
    for path, text in _scanned_texts(playbooks_dir, inventory):
        if any(form in text for form in forms):
            return (f"its value occurs in {path} (a host, group, task or file name there would be masked too, "
                    "and the *** would show what it is); choose another")
    return None


class _Masker:
    """Replaces every form of the given secrets (``secret_forms``) by ``***`` in strings, dict keys included.

    Per string, one regular-expression search for the forms' first three characters rejects the usual string
    that holds none (the hot path: every string of every runner event); only a hit runs the substitution of all
    the forms (one alternation, longest first, so the longest form at a place is replaced whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.forms = secret_forms(secrets)
        self._hint = re.compile("|".join(sorted({re.escape(f[:3]) for f in self.forms})))
        self._pattern = re.compile("|".join(map(re.escape, self.forms)))

    def __bool__(self) -> bool:
        return bool(self.forms)

    def text(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._hint.search(text) else text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


@functools.lru_cache(maxsize=8)
def _masker(secrets: tuple[str, ...]) -> _Masker:
    return _Masker(secrets)


def mask_event(value: Any, secrets: Sequence[str]) -> Any:
    """Given a runner event (nested dicts and lists), return it with every secret value, in each of its encoded
    forms (``secret_forms``), replaced by ``***`` (in keys too)."""
    masker = _masker(tuple(secrets))
    return masker.value(value) if masker else value


def _is_run_dir(entry: os.DirEntry) -> bool:
    return (bool(RUN_DIR.match(entry.name)) and entry.is_dir(follow_symlinks=False)
            and os.path.isdir(os.path.join(entry.path, "job_events")))


def rotate_runs(directory: Path, keep: int, current: str | None = None) -> list[str]:
    """Given an artifacts directory, keep only its newest ``keep`` run directories (by modification time, then
    name); return warnings for what could not be read or removed (never raises).

    Only citydc's run directories are candidates (``RUN_DIR`` names, real directories holding ``job_events``):
    any other file or directory there is left alone and not counted, and ``current`` (this run) is never removed.
    """
    warnings: list[str] = []
    runs: list[tuple[float, str, str]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if _is_run_dir(entry):
                        runs.append((entry.stat(follow_symlinks=False).st_mtime, entry.name, entry.path))
                except OSError:
                    continue  # gone meanwhile, or unreadable: not rotated
    except OSError as exc:
        return [f"artifacts not rotated: cannot list {directory}: {exc.strerror or exc}"]
    runs.sort()
    for _, name, path in runs[:max(0, len(runs) - keep)]:
        if name == current:
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            warnings.append(f"artifacts not rotated: cannot remove {path}: {exc.strerror or exc}")
    return warnings


def runner_kwargs(req: PlayRequest, private_dir: Path, secret_file: Path | None, *,
                  config_vars: Path | None = None, staging: Path | None = None) -> dict[str, Any]:
    """Given the request, its private data directory, the secret-vars file (or None), the pipe the config's
    extra-vars come through (or None) and the staging artifact directory (used when the request names none),
    return the keyword arguments of ``ansible_runner.interface.init_runner`` (the handlers are added by the
    caller). The config's extra-vars come first, so an explicit ``-e`` overrides them."""
    cmdline: list[str] = []
    if req.check:
        cmdline.append("--check")
    if req.diff:
        cmdline.append("--diff")
    if config_vars is not None:
        cmdline += ["-e", f"@{config_vars}"]
    if req.extra_vars:
        cmdline += ["-e", json.dumps(dict(req.extra_vars), sort_keys=True)]
    if secret_file is not None:
        cmdline += ["-e", f"@{secret_file}"]
    if req.artifacts_dir is None and staging is None:
        raise ValueError("the request names no artifact directory and no staging directory was given")
    kwargs: dict[str, Any] = {
        "private_data_dir": str(private_dir),
        "project_dir": str(req.playbooks_dir),
        "playbook": req.playbook,
        "inventory": str(req.inventory),
        "artifact_dir": str(req.artifacts_dir if req.artifacts_dir is not None else staging),
        "ident": req.run_id,
        # never ansible-runner's rotation (it removes whatever is oldest in the directory): rotate_runs, at the end
        "rotate_artifacts": 0,
        "quiet": True,
        # (a constructor argument would be overridden by the settings: ansible_runner/config/_base.py)
        # The fact cache (a secret in a cacheable set_fact) goes to the private directory, not the artifacts:
        # an absolute path is kept as it is by the runner's os.path.join(artifact_dir, fact_cache).
        "settings": {"suppress_output_file": True, "suppress_ansible_output": True,
                     "fact_cache_type": "jsonfile", "fact_cache": str(private_dir.absolute() / "fact_cache")},
        "json_mode": False,
    }
    if cmdline:
        kwargs["cmdline"] = shlex.join(cmdline)
    envvars = {"ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True")}
    if req.config_file is not None:
        envvars["CITYDC_CONFIG"] = str(req.config_file.absolute())
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
def _stopping_the_whole_run(on_stopped: Callable[[list[int]], None]) -> Iterator[None]:
    """Within the block, ansible-runner's cancel and timeout stop ansible-playbook and every process it started
    (``citydc.play.stop``), not only its process group, and return once they are gone; ``on_stopped`` gets the
    PIDs still alive after that (none unless one is stuck in the kernel). The runner's own SIGKILL follows."""
    from ansible_runner.runner import Runner

    original = Runner.__dict__["handle_termination"]
    stopped: set[int] = set()

    def handle_termination(cls: Any, pid: int, pidfile: str | None = None) -> None:
        if pid not in stopped:  # called at each check of the cancel flag until the child is reaped
            stopped.add(pid)
            on_stopped(stop_tree(pid))
        original.__func__(cls, pid, pidfile)

    Runner.handle_termination = classmethod(handle_termination)
    try:
        yield
    finally:
        Runner.handle_termination = original


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
        self._masker = _Masker(self.secrets)  # what handle() replaces: made once per set of secrets
        self.on_change = on_change
        self.task = ""
        self.play = ""
        self.hosts: dict[str, dict[str, int]] = {}
        self.changed: list[dict[str, str]] = []
        self.failures: list[dict[str, str]] = []
        self.stats_data: dict[str, Any] = {}
        self.final: dict[str, dict[str, int]] | None = None
        self.messages: list[str] = []  # Ansible's error blocks and warnings, plain text
        self.errors: list[str] = []  # the first line of each error block ("[ERROR]: " cut)
        self.plays_without_hosts: list[str] = []  # plays whose host pattern matched no host
        self._diff_chars = 0  # of the diffs kept in self.changed (MAX_DIFFS_CHARS)
        self._in_error = False
        self.lock = threading.Lock()

    def add_secrets(self, values: Iterable[str]) -> None:
        """Mask these values too in the events handled from now on."""
        self.secrets = (*self.secrets, *(v for v in values if v and v not in self.secrets))
        self._masker = _Masker(self.secrets)

    def _count(self, host: str, key: str) -> None:
        counts = self.hosts.setdefault(host, dict.fromkeys(COUNTS, 0))
        counts[key] += 1

    def handle(self, event: dict) -> bool:
        """ansible-runner's event_handler: mask the event in place (the runner writes it after), follow it."""
        if self._masker:
            masked = self._masker.value(event)
            event.clear()
            event.update(masked)
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        with self.lock:
            if kind == "verbose":
                self._on_verbose(str(event.get("stdout") or ""))
            else:
                self._in_error = False
            if kind == "playbook_on_play_start":
                self.play = data.get("play", "")
            elif kind == "playbook_on_task_start":
                self.task = data.get("task", "")
            elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
                self._on_result(kind, event, data)
            elif kind == "playbook_on_stats":
                self._on_stats(data)
            elif kind == "playbook_on_no_hosts_matched":
                self.plays_without_hosts.append(self.play)
        if self.on_change is not None:
            self.on_change(self)
        return True

    def _on_verbose(self, stdout: str) -> None:
        """Keep Ansible's error blocks (the [ERROR] line and the lines after it: origin, quoted source) and its
        warnings (e.g. "Could not match supplied host pattern"), as plain one-line text."""
        for raw in stdout.splitlines():
            line = plain_text(raw).rstrip()
            if line.startswith(_ERROR_START):
                self._in_error = True
                self.errors.append(re.sub(r"^(\[ERROR\]:?|ERROR!)\s*", "", line)[:MAX_MESSAGE_CHARS])
            elif line.startswith(_WARNING_START):
                self._in_error = False
            elif not (self._in_error and line):
                continue
            if len(self.messages) < MAX_MESSAGES:
                self.messages.append(line[:MAX_MESSAGE_CHARS])

    def _on_result(self, kind: str, event: dict, data: dict) -> None:
        host = data.get("host", "?")
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            self._count(host, "ok")  # as Ansible's recap: ok includes the changed ones
            if res.get("changed"):
                self._count(host, "changed")
                task = {"uuid": event.get("uuid", ""), "host": host, "task": data.get("task", ""),
                        "module": data.get("resolved_action") or data.get("task_action", ""),
                        "play": data.get("play", "")}
                text = _result_diff(res)
                if text and self._diff_chars < MAX_DIFFS_CHARS:
                    self._diff_chars += len(text)
                    task["diff"] = text
                elif text:
                    task["diff"] = "(not kept: the run's diffs are too long; the whole of each is in its job_events)"
                self.changed.append(task)
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                self._count(host, "ok")
                return
            self._count(host, "failed")
            self.failures.append({"host": host, "task": data.get("task", ""),
                                  "message": _failure_text(res)[:MAX_FAILURE_CHARS]})
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


def _validation_reason(res: dict) -> str:
    """Given a failed result of a task with ``validate:`` (ansible.builtin.template/copy: "failed to validate"),
    return the validator's reason: its ``[ALERT]`` lines (HAProxy), else its last lines (keepalived --config-test),
    from stderr, else stdout; at most ``MAX_REASON_LINES``, as plain one-line text joined by " | "."""
    for stream in ("stderr", "stdout"):
        lines = [" ".join(plain_text(line).split()) for line in str(res.get(stream) or "").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        alerts = [line for line in lines if line.startswith("[ALERT]")]
        return " | ".join(alerts[:MAX_REASON_LINES] if alerts else lines[-MAX_REASON_LINES:])
    return ""


def _item_label(item: dict) -> Any:
    """Given one item's result of a loop task, return its label (a dict's ``name``, e.g. a declared VM's)."""
    label = item.get("_ansible_item_label", item.get(item.get("ansible_loop_var") or "item", ""))
    return label.get("name", "") if isinstance(label, dict) else label


def _failure_text(res: dict) -> str:
    """Given a failed result, return its message; for a loop task (Ansible's "One or more items failed"), the first
    failed item's label and message, the reason the loop failed; for a file that failed its ``validate:`` command,
    the validator's reason (``_validation_reason``)."""
    msg = str(res.get("msg", ""))
    if msg == "failed to validate":
        reason = _validation_reason(res)
        return f"{msg}: {reason}" if reason else msg
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("failed"):
                label = _item_label(item)
                return f"{msg} (first: {label}: {item.get('msg', '')})" if label else f"{msg} ({item.get('msg', '')})"
    return msg


def _diff_side(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=4, sort_keys=True, default=str) + "\n"


def diff_text(diff: Any) -> str:
    """Given a task result's ``diff`` (a dict or a list of dicts, as Ansible's own callbacks read it), return it as
    text: a unified diff of before and after (non-text values as indented JSON), a module's ``prepared`` text as it
    is, or why there is none (binary, too large); as plain text, cut after ``MAX_DIFF_CHARS`` characters."""
    parts: list[str] = []
    for d in diff if isinstance(diff, list) else [diff]:
        if not isinstance(d, dict):
            continue
        if d.get("dst_binary") or d.get("src_binary"):
            parts.append("(binary file: no diff)\n")
        elif "dst_larger" in d or "src_larger" in d:
            parts.append(f"(no diff: the file is larger than {d.get('dst_larger') or d.get('src_larger')} bytes)\n")
        if "before" in d and "after" in d:
            before, after = _diff_side(d["before"]), _diff_side(d["after"])
            head_a = f"before: {d['before_header']}" if d.get("before_header") else "before"
            head_b = f"after: {d['after_header']}" if d.get("after_header") else "after"
            lines = list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                              fromfile=head_a, tofile=head_b, n=3))
            parts.append("".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                                 for line in lines))
        if d.get("prepared"):
            prepared = str(d["prepared"])
            parts.append(prepared if prepared.endswith("\n") else prepared + "\n")
    text = "\n".join(plain_text(line) for line in "".join(parts).rstrip("\n").split("\n"))
    return _bounded(text)


def _bounded(text: str) -> str:
    """Given a diff's text, return it cut at a line end within ``MAX_DIFF_CHARS``, saying where the rest is."""
    if len(text) <= MAX_DIFF_CHARS:
        return text
    cut = text.rfind("\n", 0, MAX_DIFF_CHARS)
    cut = cut if cut > 0 else MAX_DIFF_CHARS
    return (f"{text[:cut]}\n... ({len(text) - cut} more characters: the whole diff is in the run's artifacts, "
            "job_events)")


def _result_diff(res: dict) -> str:
    """Given a changed task's result, return its diff as text (``diff_text``), or "". A loop task's result has no
    ``diff`` of its own: each changed item carries one in ``results`` (vm-deploy's define of several VMs), shown
    under the item's label as Ansible's own callback shows them; bounded as a whole as one diff is."""
    if res.get("diff"):
        return diff_text(res["diff"])
    items = res.get("results")
    if not isinstance(items, list):
        return ""
    parts = []
    for item in items:
        if isinstance(item, dict) and item.get("changed") and item.get("diff"):
            parts.append(f"item {plain_text(str(_item_label(item)))}:\n{diff_text(item['diff'])}")
    return _bounded("\n".join(parts))


def plain_text(text: str) -> str:
    """Given a line of Ansible's output, return it without colour codes, any other control character shown as
    ``\\xNN`` (a terminal must not act on what a playbook or an inventory put there)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _ANSI.sub("", text))


def import_ansible_runner() -> Any:
    """Import ansible-runner with no plugin of its own loaded; return its package. Raise ImportError.

    ansible-runner hands every event, and at the start the child's command and environment, to each
    ``ansible_runner.plugins`` entry point installed beside it (ansible-runner-http posts them to a URL).
    A citydc run's events go where citydc sends them (masked, into the security log) and nowhere else, so
    no plugin is loaded: the package's entry-point scan is given an empty list, and the plugin table is
    emptied when another import got there first. That also spares ``importlib.metadata`` and the scan of
    every installed distribution before ansible-playbook starts (about 20 ms; docs/playbooks.md, "Early start").
    """
    if "ansible_runner" not in sys.modules:
        name = "ansible_runner.utils.importlib_compat"
        no_plugins = types.ModuleType(name)
        no_plugins.importlib_metadata = types.SimpleNamespace(entry_points=lambda **_: ())  # type: ignore[attr-defined]
        with modules_replaced({name: no_plugins}):
            import ansible_runner
    import ansible_runner

    ansible_runner.plugins.clear()
    return ansible_runner


RUN_LOCK = "play-run.lock"  # next to the security-log spool: one per citydc.yaml on this machine


class RunLocked(Exception):
    """Another run that may change hosts holds the control node's run lock; the message says which."""


def take_run_lock(path: Path, holder: str) -> int:
    """Given the lock file and who takes it (playbook, user, run id), take the run lock; return its descriptor, held
    until it is closed or the process ends (a killed run releases it too). Raise RunLocked naming the run holding it.

    Two runs that change hosts must not overlap: two lb-rolling.yml runs re-enabled a server the other one had in
    maintenance, and one could drain the last serving server between the other's pool check and its drain. A
    check-mode run (and ``play drift``) changes nothing and does not take it."""
    from citydc import runlock

    try:
        return runlock.take(path, holder)
    except runlock.Held as exc:
        raise RunLocked(f"{exc.holder or 'another citydc play run'} (lock {path})") from None


CANCEL_POLL = 0.2  # seconds between the runner's checks of its cancel flag while ansible-playbook is quiet
CONFIG_VARS_PIPE = "config-vars.fifo"
CONFIG_VARS_FILE = "config-vars.json"  # what went through the pipe, kept in the run's artifact directory


def _write_secret_file(directory: Path, secret_vars: Mapping[str, str]) -> Path:
    """Write the secret extra-vars to a new 0600 JSON file in the given (private) directory; return its path."""
    path = directory / "secret-vars.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(secret_vars), f)
    return path


def _unread(fd: int) -> int:
    """Given a pipe's file descriptor, return how many bytes written to it are not read yet."""
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


class PlaybookRun:
    """One playbook run started before its config is known (``start_playbook``; how: the module docstring).

    ``release`` lets it go on, ``wait`` returns its result; ``cancel`` stops it before it ran anything."""

    def __init__(self, req: PlayRequest, tracker: Tracker) -> None:
        self.req = req
        self.tracker = tracker
        self.artifacts_dir: Path | None = req.artifacts_dir  # where the run's artifact directory ends up
        self.config_vars: dict[str, Any] | None = None  # set by release()
        self.started = time.monotonic()
        self.ended: float | None = None
        self._error: BaseException | None = None  # the run could not start: raised by wait()
        self._raised: BaseException | None = None  # what Runner.run raised in its thread
        self._runner: Any = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._signalled: Callable[[], bool] | None = None
        self._saved_signals: dict[int, Any] = {}
        self._patches = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._keeper: int | None = None  # our read-write end of the pipe
        self._private: Path | None = None
        self._staging: Path | None = None
        self._finished = False
        self.warnings: list[str] = []  # the artifacts not kept or not rotated (the run itself is not failed)
        self.left_running: list[int] | None = None  # after a cancel or timeout: PIDs that would not stop
        self._held: list[int] = []  # descriptors released when the run ends (the control node's run lock)

    @property
    def pipe(self) -> Path | None:
        """The pipe ansible-playbook reads the config's extra-vars from (None when the run could not start)."""
        return None if self._private is None or self._error is not None else self._private / CONFIG_VARS_PIPE

    @property
    def interrupted(self) -> bool:
        """Whether SIGINT or SIGTERM arrived since the start (the runner then cancels the run)."""
        return self._signalled is not None and self._signalled()

    def _cancelled(self) -> bool:  # the runner's cancel_callback
        return self._cancel.is_set() or self.interrupted

    def _start(self) -> None:
        try:
            import_ansible_runner()
            from ansible_runner.interface import init_runner
            from ansible_runner.utils import signal_handler
        except ImportError:
            raise execute.ToolFailed("ansible-runner is not installed: pip install 'citydc[play]'") from None
        if threading.current_thread() is threading.main_thread():
            # as ansible_runner.run does: SIGINT/SIGTERM cancel the run (restored when it ends); set first, so a
            # signal never ends this process between here and the end of the run with its files left behind
            self._saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            self._signalled = signal_handler()
        if self.req.artifacts_dir is not None:
            self.req.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._private = Path(tempfile.mkdtemp(prefix="citydc-play-"))  # mkdtemp makes it 0700
        if self.req.artifacts_dir is None:
            self._staging = self._private / "artifacts"
        private_data_dir = self._private / "pdd"
        private_data_dir.mkdir(mode=0o700)
        secret_file = _write_secret_file(self._private, self.req.secret_vars) if self.req.secret_vars else None
        pipe = self._private / CONFIG_VARS_PIPE
        os.mkfifo(pipe, 0o600)
        self._keeper = os.open(pipe, os.O_RDWR)  # a FIFO opened read-write never blocks; not inherited (PEP 446)
        kwargs = runner_kwargs(self.req, private_data_dir, secret_file, config_vars=pipe, staging=self._staging)
        kwargs["settings"]["pexpect_timeout"] = CANCEL_POLL
        with _child_environment():  # the runner copies os.environ for the child here, not later
            self._runner = init_runner(**kwargs, event_handler=self.tracker.handle, cancel_callback=self._cancelled)
        self._patches.enter_context(_no_delay_after_close())
        self._patches.enter_context(_stopping_the_whole_run(self._stopped))
        for name in AT_FORK_MODULES:  # their at-fork hooks registered whole before the fork, not during it
            importlib.import_module(name)
        self._thread = threading.Thread(target=self._run, name="citydc-play-runner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._runner.run()
        except BaseException as exc:  # handed to wait()
            self._raised = exc
        finally:
            self.ended = time.monotonic()

    def _stopped(self, left: list[int]) -> None:
        self.left_running = left

    def hold(self, fd: int) -> None:
        """Given a descriptor (``take_run_lock``'s), keep it open until the run ends (``wait`` or ``cancel``)."""
        self._held.append(fd)

    def _close_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None:
                os.close(self._keeper)
                self._keeper = None

    def release(self, config_vars: Mapping[str, Any], artifacts_dir: Path | None = None,
                secret_vars: Mapping[str, str] | None = None) -> None:
        """Given the config's extra-vars, its secret ones (a password the config holds by reference) and, when the
        request named none, the artifact directory, let the run go on: ansible-playbook reads the extra-vars and
        starts its plays. Call it once the run's start is on record.

        The secret ones go through the pipe only: they are masked in the events from here on and not kept in
        ``config-vars.json``."""
        if self.req.artifacts_dir is None:
            if artifacts_dir is None:
                raise ValueError("the request named no artifact directory: release() needs one")
            self.artifacts_dir = artifacts_dir
        secret_vars = dict(secret_vars or {})
        payload = json.dumps({**config_vars, **secret_vars}, sort_keys=True).encode()
        if len(payload) > select.PIPE_BUF:
            raise ValueError(f"the config's extra-vars exceed {select.PIPE_BUF} bytes")
        self.tracker.add_secrets(secret_vars.values())  # before ansible-playbook can read them
        self.config_vars = dict(config_vars)
        with self._lock:
            if self._keeper is not None and not self._cancel.is_set():
                os.write(self._keeper, payload)  # into the pipe's buffer: does not wait for the reader

    def _feed(self) -> None:
        """Return once ansible-playbook has read what release() wrote (or is gone), with the keeper closed: its read
        of the pipe ends there."""
        while True:
            with self._lock:
                if self._keeper is None:
                    return
                if _unread(self._keeper) == 0 or self._thread is None or not self._thread.is_alive():
                    os.close(self._keeper)
                    self._keeper = None
                    return
            time.sleep(0.005)

    def wait(self) -> PlayResult:
        """Wait for the released run to end, move its artifact directory into place; return the result.

        Raise execute.ToolFailed if ansible-runner is not installed, or what kept the run from starting or ending.
        """
        try:
            if self._error is not None:
                raise self._error
            if self.config_vars is None:
                raise RuntimeError("PlaybookRun.wait() before release()")
            self._feed()
            assert self._thread is not None
            self._thread.join()
            if self._raised is not None:
                raise self._raised
        finally:
            self._finish(keep=self._error is None)
        return self._result()

    def cancel(self) -> None:
        """Stop a run that was not released; return once ansible-playbook is gone (it ran no task) and the run's
        files are removed (its artifacts too)."""
        self._cancel.set()
        self._close_keeper()  # a child past its open reads end-of-file and stops; one before it is killed
        self._finish(keep=False)

    def _finish(self, *, keep: bool) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            if self._thread is not None and self._thread.is_alive():  # (only when stopped early)
                self._cancel.set()
                self._close_keeper()
                self._thread.join()
            self._close_keeper()
            self._patches.close()
            for sig, handler in self._saved_signals.items():
                signal.signal(sig, handler)
            if keep:
                try:
                    self._keep_artifacts()
                except OSError as exc:  # the run happened: its result and events are kept, with a warning
                    self.warnings.append(f"artifacts not kept in {self.artifacts_dir}: {exc}")
        finally:
            if self._private is not None:
                shutil.rmtree(self._private, ignore_errors=True)
            for fd in self._held:  # no task of the run is left: another run may start
                os.close(fd)
            self._held.clear()

    def _keep_artifacts(self) -> None:
        """Write what went through the pipe next to the run's artifacts; move a staged run into place, then keep
        only the newest ``keep_runs`` runs there (``rotate_runs``: failures are warnings)."""
        assert self.artifacts_dir is not None
        final = self.artifacts_dir / self.req.run_id
        run_dir = final if self._staging is None else self._staging / self.req.run_id
        if not run_dir.is_dir():
            return
        if self.config_vars is not None:
            fd = os.open(run_dir / CONFIG_VARS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.config_vars, f, sort_keys=True)
        if self._staging is not None:
            self.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.move(run_dir, final)  # a rename on one file system, else a copy
        os.utime(final)  # the newest of the directory, for the rotation
        self.warnings += rotate_runs(self.artifacts_dir, self.req.keep_runs, current=self.req.run_id)

    def _result(self) -> PlayResult:
        status, rc = self._runner.status, self._runner.rc
        duration = (self.ended or time.monotonic()) - self.started
        tracker = self.tracker
        hosts = tracker.final if tracker.final is not None else tracker.hosts
        if status in ("timeout", "canceled"):
            # rc is ansible-runner's 254 for both, not ansible-playbook's: say what happened instead, and record none
            rc = None
            outcome = execute.Outcome.FAILURE
            meaning = f"timed out after {self.req.timeout} s" if status == "timeout" else "interrupted"
            meaning += "; " + self._stop_text()
        elif rc is None:
            outcome, meaning = execute.Outcome.FAILURE, f"ansible-runner ended {status} without an exit code"
        else:
            outcome, meaning = execute.interpret_exit_code("ansible-playbook", rc)
            if rc == 127:
                meaning = "ansible-playbook not found (install citydc[play] in this environment)"
            elif rc == 4:  # ansible-core's HOST_UNREACHABLE and PARSER_ERROR share 4
                meaning = ("one or more hosts unreachable" if any(c["unreachable"] for c in hosts.values())
                           else "a playbook, inventory or variables file could not be parsed")
            if outcome is not execute.Outcome.SUCCESS and tracker.errors:
                meaning += f": {tracker.errors[0]}"
            elif outcome is execute.Outcome.SUCCESS and not hosts:
                # ansible-playbook exits 0 when every play matched no host (an empty group): it did nothing
                outcome, meaning = execute.Outcome.FAILURE, NO_HOST_MATCHED
        assert self.artifacts_dir is not None
        # a module may return a diff outside diff mode: shown only when the run was asked for them (--diff)
        changed = [t if self.req.diff else {k: v for k, v in t.items() if k != "diff"} for t in tracker.changed]
        return PlayResult(status=status, rc=rc, outcome=outcome, meaning=meaning, duration_seconds=duration,
                          hosts=hosts, changed_tasks=changed, stats_data=tracker.stats_data,
                          artifact_dir=self.artifacts_dir / self.req.run_id, failures=list(tracker.failures),
                          messages=list(tracker.messages), warnings=list(self.warnings))

    def _stop_text(self) -> str:
        if self.left_running:
            return (f"processes {', '.join(map(str, self.left_running))} of the run would not stop: check them "
                    "and the hosts")
        return "ansible-playbook and any task in flight were stopped"


def start_playbook(req: PlayRequest, tracker: Tracker) -> PlaybookRun:
    """Given a request (its artifact directory may be left to ``release``) and a tracker, start the run:
    ansible-playbook starts and waits, before any play, for ``release`` (or ``cancel``).

    Never raises for the run itself: what keeps it from starting (ansible-runner not installed, a bad argument)
    is raised by ``wait``, so the caller records the run as before."""
    run = PlaybookRun(req, tracker)
    try:
        run._start()
    except Exception as exc:
        run._error = exc
    return run


def run_playbook(req: PlayRequest, tracker: Tracker, config_vars: Mapping[str, Any] | None = None) -> PlayResult:
    """Given a request with its artifact directory and a tracker, run the playbook; return the result.

    Raise execute.ToolFailed if ansible-runner is not installed.
    """
    run = start_playbook(req, tracker)
    run.release(config_vars or {})
    return run.wait()

"""Backup job actions: run (backup locally, then copy off-site), check, prune, drill, init and status.

Each action works step by step; a step's result is recorded in the job's state, turned into an
ECS event and returned, and a failing step never hides another's result: an unreachable off-site
repository fails the copy step only, and the next run's copy catches up (restic copies every
snapshot of the job the destination lacks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citydc import atomicfile, execute
from citydc.backup import events, locks, restic, state
from citydc.backup.restic import Outcome, RepoAccess, Restic, Status
from citydc.config.models import BackupJob
from citydc.secrets import SecretUnavailable

__all__ = ["JobRunner", "StepResult", "worst"]

REPOS = ("local", "offsite")
# A time this far ahead of this host's clock is still "now" (clocks of two sites drift a little); further
# ahead is clock skew: a snapshot or success in the future must not count as fresh nor as the latest.
SKEW_TOLERANCE_SECONDS = 300.0


@dataclass
class StepResult:
    step: str
    repo: str
    status: str  # success | partial | failure
    duration_seconds: float
    exit_code: int | None = None
    error: str = ""
    snapshot_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def worst(results: Sequence[StepResult]) -> str:
    """Given step results, return the overall status: failure, else partial, else success."""
    statuses = {r.status for r in results}
    return "failure" if "failure" in statuses else "partial" if "partial" in statuses else "success"


def sha256_file(path: Path | bytes, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def mtime_ns(text: str) -> int | None:
    """Given restic's RFC 3339 node time (nanoseconds), return nanoseconds since the epoch, or None."""
    try:
        whole = locks.parse_time(text)
    except ValueError:
        return None
    frac = text.split(".", 1)[1] if "." in text else "0"
    digits = "".join(ch for ch in frac if ch.isdigit())[:9].ljust(9, "0")
    return int(whole.replace(microsecond=0).timestamp()) * 1_000_000_000 + int(digits)


def restore_reason(errors: Sequence[str], meaning: str) -> str:
    """Given restic restore's error lines and its exit code's meaning, return one line for a person:
    the first file restic could not restore with restic's own message, then the remaining lines.

    restic 0.14 says ``ignoring error for /path: <message>`` per file and ends with ``Fatal: There
    were N errors``; the first file is what an operator looks at first.
    """
    per_file = [e[len("ignoring error for "):] for e in errors if e.startswith("ignoring error for ")]
    if per_file:
        more = f" (and {len(per_file) - 1} more file(s))" if len(per_file) > 1 else ""
        return f"{per_file[0]}{more}"
    return "; ".join(errors[-3:]) or meaning


def latest_snapshot(snaps: Sequence[restic.Snapshot]) -> tuple[restic.Snapshot, datetime]:
    """Given snapshots, return the latest and its time. restic writes each snapshot's time in the zone
    of the host that made it (``+14:00``, ``-11:00``), so the texts do not sort; the parsed times do.
    Raise ValueError naming a time that is not RFC 3339."""
    timed = [(locks.parse_time(s.time), s) for s in snaps]
    taken, snap = max(timed, key=lambda pair: pair[0])
    return snap, taken


def covers_sources(snap: restic.Snapshot, sources: Sequence[Path | str]) -> list[str]:
    """Given a snapshot and the job's sources, return the sources the snapshot does not hold (a run that
    missed a source still makes a snapshot of the others; it is no snapshot of a successful run)."""
    paths = {os.path.normpath(p) for p in snap.paths}
    return [str(s) for s in sources if os.path.normpath(os.path.abspath(str(s))) not in paths]


def drill_candidate(snaps: Sequence[restic.Snapshot], sources: Sequence[Path | str],
                    now: float) -> tuple[restic.Snapshot | None, datetime | None, list[str], str]:
    """Given the job's snapshots, its sources and the time now, return (snapshot, its time, notes, why none):
    the newest snapshot that holds every source and is not dated in the future (clock skew). ``notes`` name
    the newer snapshots passed over (future-dated ones); ``why none`` says why there is no candidate.
    Raise ValueError naming a time that is not RFC 3339."""
    timed = sorted(((locks.parse_time(s.time), s) for s in snaps), key=lambda pair: pair[0], reverse=True)
    future = [(t, s) for t, s in timed if t.timestamp() > now + SKEW_TOLERANCE_SECONDS]
    notes = [f"clock skew: snapshot {s.short_id} is dated {t.isoformat()}, "
             f"{(t.timestamp() - now) / 3600:.1f} h in the future; not drilled (forget it or fix the clock "
             f"that made it)" for t, s in future]
    incomplete = 0
    for taken, snap in timed:
        if taken.timestamp() > now + SKEW_TOLERANCE_SECONDS:
            continue
        if covers_sources(snap, sources):
            incomplete += 1
            continue
        return snap, taken, notes, ""
    why = (f"no snapshot holds every source of the job ({incomplete} snapshot(s) of runs that missed a source)"
           if incomplete else "every snapshot of the job is dated in the future (clock skew)")
    return None, None, notes, why


EVIDENCE_FIELDS = ("snapshot_time", "mode", "files_in_snapshot", "files_expected", "verified_files", "verified_bytes",
                   "matched_source_files", "restic_verified_files", "unverifiable_names", "unverifiable", "smoke",
                   "clock_skew")


def sweep_scratch(root: Path, prefix: str) -> list[Path]:
    """Remove the scratch directories ``<prefix><pid>-*`` under ``root`` whose drill process is gone (a
    SIGKILLed drill leaves its restored copy of the data behind); return the removed ones."""
    removed = []
    for path in root.glob(f"{prefix}*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not locks.pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def nothing_verified(snapshot: str, details: dict[str, Any]) -> str:
    """Given a drill that verified no file, return why, for the partial result."""
    if details.get("unverifiable_names"):
        return (f"no file verified: the {details['unverifiable_names']} file(s) of snapshot {snapshot} have names "
                f"restic cannot tell apart (not UTF-8)")
    return f"snapshot {snapshot} is empty: no file to restore and verify (are the job's sources empty?)"


def freshness(last_success: float | None, now: float, max_age_seconds: float) -> str:
    """Given a repository's last success (the off-site one's: its newest snapshot's time), return
    ``fresh``, ``stale`` (older than the job's max age), ``never``, or ``skew`` (in the future by more
    than SKEW_TOLERANCE_SECONDS: a clock was wrong, and the time proves nothing about freshness)."""
    if last_success is None:
        return "never"
    if last_success > now + SKEW_TOLERANCE_SECONDS:
        return "skew"
    return "stale" if now - last_success > max_age_seconds else "fresh"


def newest_snapshot_time(snaps: Sequence[restic.Snapshot], now: float) -> float | None:
    """Given snapshots, return the time (epoch seconds) of the newest one not dated in the future (clock skew, see
    SKEW_TOLERANCE_SECONDS), or None if there is none (or a time is not RFC 3339)."""
    try:
        times = [locks.parse_time(s.time).timestamp() for s in snaps]
    except ValueError:
        return None
    return max((t for t in times if t <= now + SKEW_TOLERANCE_SECONDS), default=None)


def stale_reason(fresh: str, kind: str, last_success: float | None, now: float, max_age_hours: float) -> str:
    """Given a freshness verdict, return its reason for the status row ('' when fresh)."""
    what = "successful backup" if kind == "local" else "snapshot copied off-site"
    if fresh == "never":
        return f"never: no {what} yet"
    if fresh == "skew" and last_success is not None:
        return (f"clock skew: newest {what} is {(last_success - now) / 3600:.1f} h in the future; "
                f"it does not count as fresh (fix the clock, forget the future-dated snapshot)")
    if fresh == "stale" and last_success is not None:
        return f"stale: newest {what} is {(now - last_success) / 3600:.1f} h old (max_age_hours {max_age_hours:g})"
    return ""


# What a drill leaves free on its scratch filesystem at least: the larger of these (other services on the backup
# host, restic's own temporary files).
DRILL_FREE_BYTES = 256 * 1024 * 1024
DRILL_FREE_FRACTION = 0.05


def space_shortfall(root: Path, need: int) -> str:
    """Given the drill's scratch directory and the bytes it restores, return why the filesystem cannot take them
    and keep DRILL_FREE_BYTES / DRILL_FREE_FRACTION free, or "" when it can. A drill that fills the disk would
    fail anyway, after taking the space every other service on the host needs."""
    usage = shutil.disk_usage(root)
    keep = max(DRILL_FREE_BYTES, int(usage.total * DRILL_FREE_FRACTION))
    if need + keep <= usage.free:
        return ""
    return (f"not enough space to drill: the restore needs {human_bytes(need)} in {root}, which has "
            f"{human_bytes(usage.free)} free, and {human_bytes(keep)} must stay free; free space there or drill a "
            f"sample (drill_sample_files)")


def human_bytes(n: int) -> str:
    """Given a byte count, return it for people (binary units: 1.5 GiB)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


class RestoredNames:
    """Finds a restored file by its path in ``ls --json``, where each byte of a name that is not UTF-8 is
    U+FFFD: such paths are looked up among the restored files' real names (bytes) written the same way."""

    def __init__(self, scratch: Path):
        self.root = os.fsencode(scratch)
        self._lossy: dict[str, list[bytes]] | None = None

    def find(self, path: str) -> list[bytes]:
        """Given a snapshot path, return the restored file(s) it may name (none, one, or several alike)."""
        if restic.LOST_BYTE not in path:
            return [self.root + os.fsencode(path)]
        if self._lossy is None:
            self._lossy = {}
            for directory, _dirs, files in os.walk(self.root):
                for name in files:
                    raw = os.path.join(directory, name)
                    self._lossy.setdefault(restic.lossy_name(raw[len(self.root):]), []).append(raw)
        return self._lossy.get(path, [])


def reason(entry: dict[str, Any] | None, what: str) -> str:
    """Given a recorded step or drill entry, return ``what: error`` when it failed or was partial, else ''."""
    if not entry or entry.get("status") in (None, "success"):
        return ""
    error = entry.get("error") or entry.get("first_failure") or "no reason recorded"
    return f"{what} {entry['status']}: {error}"


@dataclass
class JobRunner:
    """Runs the steps of one configured job and records each one (state, event)."""

    job: BackupJob
    restic: Restic
    state_dir: Path
    emit: Callable[[list[dict]], None]
    lock_stale_seconds: float = 3600
    host: str = field(default_factory=socket.gethostname)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    on_status: Callable[[Status], None] | None = None
    on_step: Callable[[str, str], None] | None = None
    emitted: list[dict] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    ssh: str = "ssh"  # tools.ssh: the program restic runs for sftp: repositories

    # -- plumbing --------------------------------------------------------------------------------

    def repo(self, kind: str):
        return self.job.local_repo if kind == "local" else self.job.offsite_repo

    def repos(self, only: str | None = None) -> list[str]:
        kinds = [k for k in REPOS if self.repo(k) is not None]
        return [k for k in kinds if only in (None, k)]

    def access(self, kind: str) -> RepoAccess:
        repo = self.repo(kind)
        if repo is None:
            raise ValueError(f"job {self.job.name} has no {kind} repository")
        return dataclasses.replace(restic.repo_access(repo, ssh=self.ssh, name=kind), scrub=self._password_vars())

    def _password_vars(self) -> tuple[str, ...]:
        """Return the environment variables the job's ``env:`` password references name."""
        return tuple(r.password.target for r in (self.job.local_repo, self.job.offsite_repo)
                     if r is not None and r.password.scheme == "env")

    def _child_secrets(self) -> tuple[str, ...]:
        """Return the job's repository passwords (and REST URL passwords) that resolve: masked in what a
        pre-command or smoke command prints, which citydc records."""
        out: tuple[str, ...] = ()
        for kind in self.repos():
            try:
                out += self.access(kind).secrets
            except SecretUnavailable:
                continue
        return out

    def _child_run(self, tool: str, argv: Sequence[str], timeout: float) -> execute.Result:
        """Run a pre-command or smoke command: the job's password variables set empty in its environment
        (it has no use for them), its output masked of every repository password."""
        return execute.run(tool, argv, env={name: "" for name in self._password_vars()},
                           secrets=self._child_secrets(), timeout=timeout)

    def _emit(self, evs: list[dict]) -> None:
        self.emitted.extend(evs)
        self.emit(evs)

    def _start(self, step: str, kind: str) -> float:
        if self.on_step is not None:
            self.on_step(step, kind)
        repo = self.repo(kind)
        if step in ("backup", "copy"):
            self._emit([events.step_start(step=step, job=self.job.name, repo=kind, url=repo.url, site=self.job.site,
                                          run_id=self.run_id, host=self.host)])
        return time.monotonic()

    def _finish(self, result: StepResult, started_wall: float,
                merge: Callable[[dict[str, Any]], None] | None = None) -> StepResult:
        """Given a step's result, merge it into the job's current state, emit its event and return it.

        Only this step's own fields are written (``merge`` adds step-specific ones), under the job's
        state lock, so a command finishing at the same time on the same job keeps its result too.
        """
        repo = self.repo(result.repo)

        def record(st: dict[str, Any]) -> None:
            entry = st["steps"].setdefault(state.step_key(result.repo, result.step), {})
            entry.update(last_attempt=started_wall, status=result.status, duration_seconds=result.duration_seconds,
                         exit_code=result.exit_code, error=result.error, snapshot_id=result.snapshot_id)
            if result.ok:
                entry["last_success"] = self._fresh_as_of(result, started_wall, entry.get("last_success"))
            if result.step == "copy":
                entry["clock_skew"] = result.details.get("clock_skew") or None
            if result.step == "backup":
                entry["bytes_added"] = result.details.get("bytes_added")
                if result.snapshot_id and result.details.get("bytes_processed") is not None:
                    # restic's own summary: the size of the snapshot just made, free to record (no scan).
                    st["repos"].setdefault(result.repo, {}).update(
                        latest_snapshot_bytes=result.details["bytes_processed"],
                        latest_snapshot_id=result.snapshot_id, latest_snapshot_time=started_wall)
            if result.step == "drill":
                st["drill"][result.repo] = {k: result.details.get(k, 0) for k in
                                            ("verified_files", "verified_bytes", "failed_files")}
                st["drill"][result.repo].update(status=result.status, time=started_wall, error=result.error,
                                                first_failure=(result.details.get("failures") or [None])[0])
            if "snapshots" in result.details:
                st["repos"].setdefault(result.repo, {}).update(snapshots=result.details["snapshots"],
                                                               snapshots_time=time.time())
            added = (1 if result.step == "backup" and result.snapshot_id else
                     len(result.details.get("snapshots_copied") or []) if result.step == "copy" else 0)
            info = st["repos"].get(result.repo, {})
            if added and info.get("snapshots") is not None:
                # A count (prune, status) plus the snapshots made or copied since: no extra restic start.
                info.update(snapshots=info["snapshots"] + added, snapshots_time=time.time())
            if merge is not None:
                merge(st)

        state.update(self.state_dir, self.job.name, record)
        details = {k: v for k, v in result.details.items() if k not in ("cycle", "manifest")}
        self._emit([events.step_end(step=result.step, job=self.job.name, repo=result.repo, url=repo.url,
                                    site=self.job.site, run_id=self.run_id, host=self.host, status=result.status,
                                    duration_seconds=result.duration_seconds, exit_code=result.exit_code,
                                    error=result.error or None, snapshot_id=result.snapshot_id, extra=details)])
        return result

    def _recorded_if_stopped(self, step: str, kind: str, body: Callable[[], StepResult]) -> StepResult:
        """Run a step's body; when citydc is stopped meanwhile (Ctrl-C, or the SIGTERM of ``kill`` or a service
        manager's stop timeout: KeyboardInterrupt), record the step as failed, then let the interrupt go on.
        Otherwise the state, status and metrics keep showing the previous attempt's success as the last result,
        and the step's start event has no end."""
        wall, started = time.time(), time.monotonic()
        try:
            return body()
        except KeyboardInterrupt:
            self._finish(StepResult(step, kind, "failure", time.monotonic() - started, None,
                                    "interrupted: citydc was stopped (SIGINT/SIGTERM) before the step ended"), wall)
            raise

    @staticmethod
    def _fresh_as_of(result: StepResult, started_wall: float, before: float | None) -> float | None:
        """Given a successful step, return its new ``last_success``: when it started, but for the copy
        the time of the newest job snapshot now off-site. A copy succeeds after a failed backup too (it
        catches up on older snapshots), and must not make the off-site repository look fresh then; a
        copy that went through no snapshot keeps the time it had."""
        if result.step != "copy":
            return started_wall
        newest = result.details.get("newest_snapshot_time")
        return before if newest is None else newest

    def _clear_locks(self, kind: str, access: RepoAccess, force: bool = False) -> list[str]:
        """Remove stale locks of a repository; emit an event per removed lock; return notes on kept ones.

        Asking a remote repository for its locks costs a restic start (key derivation, a round
        trip), so without ``force`` only a local repository's ``locks/`` folder is looked at; a
        remote stale lock is handled when it gets in the way (see ``_locked``).
        """
        directory = locks.local_path(access.url)
        if not force and (directory is None or not any((directory / "locks").glob("*"))):
            return []
        report = locks.clear_stale(self.restic, access, self.lock_stale_seconds)
        repo = self.repo(kind)
        evs = [events.lock_removed(job=self.job.name, repo=kind, url=repo.url, site=self.job.site, host=self.host,
                                   lock_id=lk.id, lock_host=lk.hostname, lock_pid=lk.pid, lock_time=lk.time,
                                   age_seconds=age, exclusive=lk.exclusive)
               for lk, age in report.removed]
        if evs:
            self._emit(evs)
        return locks.describe(report)

    def _locked(self, kind: str, access: RepoAccess, stderr: str) -> bool:
        """Given a failed step's stderr, clear stale locks if a lock was in the way; return True if any went."""
        return self._lock_holders(kind, access, stderr)[0]

    def _lock_holders(self, kind: str, access: RepoAccess, stderr: str) -> tuple[bool, list[str]]:
        """Given a failed step's stderr, clear stale locks if a lock was in the way; return whether any went and
        a line per lock kept (a live process's, or one too young to tell)."""
        if "repository is already locked" not in stderr and "repository locked" not in stderr:
            return False, []
        before = len(self.emitted)
        kept = self._clear_locks(kind, access, force=True)
        return len(self.emitted) > before, kept

    def _job_snapshots(self, access: RepoAccess) -> list[restic.Snapshot] | None:
        """Return the job's snapshots in a repository, or None if restic could not list them."""
        res = self.restic.run(restic.snapshots_argv(self.restic.binary, access, tags=[restic.job_tag(self.job.name)]),
                              access, timeout=600)
        return restic.parse_snapshots(res.stdout) if res.ok else None

    def _repository_id(self, access: RepoAccess) -> str | None:
        """Return a repository's restic id (``cat config``: a key derivation), or None if it cannot be read."""
        try:
            res = self.restic.run((*restic.base_argv(self.restic.binary, access), "cat", "config"), access,
                                  timeout=300)
        except execute.ToolFailed:
            return None
        return restic.parse_config(res.stdout) if res.ok else None

    # -- init --------------------------------------------------------------------------------------

    def init(self) -> list[StepResult]:
        """Create the repositories that do not exist yet (off-site with the local chunker parameters)."""
        out = []
        local_id = ""  # the local repository's id, full (cat config) or short (init prints 10 digits)
        for kind in self.repos():
            started = time.monotonic()
            access = self.access(kind)
            probe = self.restic.run((*restic.base_argv(self.restic.binary, access), "cat", "config"), access,
                                    timeout=300)
            if probe.ok:
                repo_id = restic.parse_config(probe.stdout) or ""
                # The probe already read the id: an off-site URL leading back to the local repository costs nothing.
                same = kind == "offsite" and bool(repo_id and local_id) and repo_id.startswith(local_id)
                out.append(StepResult("init", kind, "failure" if same else "success", time.monotonic() - started, 0,
                                      self._same_repository_error(repo_id) if same else "",
                                      details={"created": False, "repository_id": repo_id or None}))
                local_id = repo_id if kind == "local" else local_id
                continue
            unopened = restic.classify_failure(probe.masked_stderr())
            if unopened in ("wrong password", "repository unreachable"):
                # A repository is there (its keys refused the password) or could not be reached: restic init would
                # only say "config file already exists", which reads as if that file were the thing to remove.
                out.append(StepResult("init", kind, "failure", time.monotonic() - started, probe.rc,
                                      f"not created: cannot open the repository at this URL: {unopened}",
                                      details={"created": False, "repository_id": None}))
                continue
            chunker = self.access("local") if kind == "offsite" else None
            res = self.restic.run(restic.init_argv(self.restic.binary, access, chunker), access, source=chunker,
                                  timeout=600)
            status = "success" if res.ok else "failure"
            created_id = restic.parse_init(res.stdout) if res.ok else None
            local_id = (created_id or "") if kind == "local" else local_id
            out.append(StepResult("init", kind, status, time.monotonic() - started, res.rc,
                                  "" if res.ok else restic.classify_failure(res.masked_stderr()),
                                  details={"created": res.ok, "repository_id": created_id}))
        return out

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> list[StepResult]:
        """Back up to the local repository, then copy the job's snapshots off-site. Raise state.JobBusy
        if another run of the job is in progress (it would copy the same new snapshots off-site again)."""
        with state.run_locked(self.state_dir, self.job.name):
            return self._run()

    def _run(self) -> list[StepResult]:
        results = [self._recorded_if_stopped("backup", "local", self._backup)]
        if self.job.offsite_repo is not None:
            # The copy reads the local repository: when the backup could not even open it, the copy
            # would fail the same way, and restic's copy does not say which repository it failed to open.
            unopened = restic.open_failure(results[0].error) if results[0].status == "failure" else None
            results.append(self._copy_skipped(unopened) if unopened else
                           self._recorded_if_stopped("copy", "offsite", self._copy))
        return results

    def _copy_skipped(self, reason: str) -> StepResult:
        wall = time.time()
        started = self._start("copy", "offsite")
        return self._finish(StepResult("copy", "offsite", "failure", time.monotonic() - started, None,
                                       f"not copied: cannot open the source (local) repository: {reason} "
                                       f"(see the backup step)"), wall)

    def _pre_commands(self) -> str:
        for argv in self.job.pre_commands:
            try:
                res = self._child_run("pre-command", argv, timeout=3600)
            except (execute.ToolFailed, execute.SecretInArgv) as exc:
                return str(exc)
            if not res.ok:
                return f"pre-command {argv[0]} exited {res.rc}: {res.masked_stderr().strip()[-300:]}"
        return ""

    def _backup(self) -> StepResult:
        wall = time.time()
        started = self._start("backup", "local")
        pre_error = self._pre_commands()
        if pre_error:
            return self._finish(StepResult("backup", "local", "failure", time.monotonic() - started, None,
                                           f"not backed up: {pre_error}"), wall)
        access = self.access("local")
        kept = self._clear_locks("local", access)
        # Checked up front as well: restic 0.14 only warns about a missing source and exits 0.
        missing_now = [str(s) for s in self.job.sources if not Path(s).exists() and not Path(s).is_symlink()]
        # restic stores a source that is a symbolic link as the link alone and exits 0 (it never follows it): the
        # data it points to is not backed up, yet the backup, the drill (of the other sources) and status look fine.
        linked = [f"{s} -> {os.readlink(s)}" for s in self.job.sources if Path(s).is_symlink()]
        argv = restic.backup_argv(self.restic.binary, access, self.job.sources, excludes=self.job.excludes,
                                  tags=restic.tagged(self.job.tags, self.job.name), host=self.host)
        out = self.restic.backup(argv, access, self.on_status)
        if out.outcome is Outcome.FAILURE and out.summary is None and self._locked("local", access, out.error):
            out = self.restic.backup(argv, access, self.on_status)
        missing = sorted(set(out.missing_sources) | set(missing_now))
        if missing and out.outcome is not Outcome.FAILURE:
            out = restic.judge_backup(out.rc, out.summary, out.read_errors, missing, "")
        if linked:
            note = (f"source is a symbolic link, restic backs up the link only, not what it points to: "
                    f"{', '.join(linked)} (list the link's target in sources)")
            failed = out.outcome is Outcome.FAILURE and out.error
            out = dataclasses.replace(out, outcome=Outcome.FAILURE, error=f"{out.error}; {note}" if failed else note)
        summary = out.summary
        details: dict[str, Any] = {
            "files_new": summary.files_new if summary else None,
            "files_changed": summary.files_changed if summary else None,
            "bytes_added": summary.data_added if summary else None,
            "bytes_processed": summary.total_bytes_processed if summary else None,
            "unreadable_files": [e.item for e in out.read_errors],
            "missing_sources": missing,
            "linked_sources": linked,
            "locks_kept": kept,
        }
        return self._finish(StepResult("backup", "local", out.outcome.value, time.monotonic() - started, out.rc,
                                       out.error, summary.snapshot_id if summary else None, details), wall)

    def _copy(self) -> StepResult:
        wall = time.time()
        started = self._start("copy", "offsite")
        src, dst = self.access("local"), self.access("offsite")
        kept = self._clear_locks("offsite", dst)
        argv = restic.copy_argv(self.restic.binary, dst, src, tags=[restic.job_tag(self.job.name)],
                                limit_upload_kib=self.job.offsite_limit_kib)
        holders: dict[str, list[str]] = {}
        try:
            res = self.restic.run(argv, dst, source=src)
            for attempt in range(2):
                # copy locks the source (local) and the destination: restic's words do not say which one is
                # locked, so both are looked at; stale locks go and the copy is tried once more.
                if res.ok:
                    break
                gone = False
                for kind, access in (("local", src), ("offsite", dst)):
                    removed, notes = self._lock_holders(kind, access, res.stderr)
                    gone |= removed
                    holders[kind] = notes
                if not gone or attempt:
                    break
                res = self.restic.run(argv, dst, source=src)
        except execute.ToolFailed as exc:
            return self._finish(StepResult("copy", "offsite", "failure", time.monotonic() - started, None,
                                           str(exc)), wall)
        copied, skipped = restic.parse_copy(res.stdout)
        details: dict[str, Any] = {"snapshots_copied": copied, "snapshots_already_there": len(skipped),
                                   "locks_kept": kept}
        if res.ok:
            # Every snapshot of the job in the local repository was either copied or already there. (Not the
            # off-site count, which may hold more: _finish adds the copied ones to the recorded count.)
            went_through = len(copied) + len(skipped)
            if not copied:  # rare (a backup made no snapshot), so its two key derivations are affordable
                repo_id = self._repository_id(src)
                if repo_id is not None and repo_id == self._repository_id(dst):
                    return self._finish(StepResult("copy", "offsite", "failure", time.monotonic() - started, res.rc,
                                                   self._same_repository_error(repo_id), details=details), wall)
            details["newest_snapshot_time"] = self._newest_offsite(res.stdout, went_through, dst, details)
            return self._finish(StepResult("copy", "offsite", "success", time.monotonic() - started, res.rc,
                                           snapshot_id=copied[-1] if copied else None, details=details), wall)
        error = f"{res.meaning}: {self._copy_blame(src, restic.classify_failure(res.masked_stderr()))}"
        held = [f"the {kind} repository holds {note}" for kind, notes in holders.items() for note in notes]
        if held:
            details["locks_kept"] = kept + held
            error += ": " + "; ".join(held)
        return self._finish(StepResult("copy", "offsite", "failure", time.monotonic() - started, res.rc, error,
                                       details=details), wall)

    def _same_repository_error(self, repo_id: str | None) -> str:
        return (f"offsite_repo is the local repository (both have restic repository id {(repo_id or '?')[:10]}): "
                f"nothing leaves the site; point job {self.job.name}'s offsite_repo.url at a repository on the "
                f"other site")

    def _newest_offsite(self, copy_output: str, snapshots: int, dst: RepoAccess,
                        details: dict[str, Any]) -> float | None:
        """Given a successful copy's output, return the time (epoch seconds) of the newest job snapshot now in
        the off-site repository: the newest source snapshot the copy went through (each was copied or already
        there). Should restic's output no longer give the times, the off-site repository is asked.

        A snapshot dated in the future (a clock was ahead) is left out, and ``details["clock_skew"]`` says so:
        it would keep the off-site repository "fresh" until that date whether copies arrive or not."""
        times = restic.parse_copy_times(copy_output)
        if not times and snapshots:
            try:
                listed = self._job_snapshots(dst) or []
                times = [locks.parse_time(s.time) for s in listed]
            except (execute.ToolFailed, ValueError, restic.ResticError):
                return None  # last_success stays as it was: an alert rather than a false freshness
        now = time.time()
        future = [t for t in times if t.timestamp() > now + SKEW_TOLERANCE_SECONDS]
        if future:
            newest = max(future)
            details["clock_skew"] = (f"clock skew: {len(future)} snapshot(s) dated in the future, the newest "
                                     f"{newest.isoformat()} ({(newest.timestamp() - now) / 3600:.1f} h ahead); "
                                     f"not counted as the newest off-site")
        times = [t for t in times if t not in future]
        return max(times).timestamp() if times else None

    def _copy_blame(self, src: RepoAccess, reason: str) -> str:
        """Given the local repository and why a copy failed, return the reason naming the repository
        restic could not open: copy opens the source first and says the same ("wrong password") for
        either, so the source is opened alone (``cat config``) to tell them apart."""
        if restic.open_failure(reason) is None:
            return reason
        try:
            probe = self.restic.run((*restic.base_argv(self.restic.binary, src), "cat", "config"), src, timeout=300)
        except execute.ToolFailed:
            return reason
        if probe.ok:
            return f"cannot open the destination (offsite) repository: {reason}"
        return f"cannot open the source (local) repository: {restic.classify_failure(probe.masked_stderr())}"

    # -- check -------------------------------------------------------------------------------------

    def check(self, only: str | None = None) -> list[StepResult]:
        """Check structure and read the next data subset n/N of each repository (N = check_read_data_days)."""
        return [self._recorded_if_stopped("check", kind, lambda k=kind: self._check(k)) for kind in self.repos(only)]

    def _check(self, kind: str) -> StepResult:
        wall = time.time()
        started = self._start("check", kind)
        access = self.access(kind)
        kept = self._clear_locks(kind, access, force=True)
        total = self.job.check_read_data_days
        # Read without the lock: restic's exclusive lock stops a second check of this repository, and
        # the result is merged into the then-current cycle (advance_check_cycle), not this copy.
        n = state.next_check_subset(state.load(self.state_dir, self.job.name)["check_cycle"].get(kind), total)
        res = self.restic.run(restic.check_argv(self.restic.binary, access, (n, total)), access)
        report = restic.parse_check(res.stdout, res.masked_stderr(), res.rc)
        details = {"subset": f"{n}/{total}", "packs_read": report.packs_read, "packs_total": report.packs_total,
                   "errors": list(report.errors[:20]), "locks_kept": kept}

        def merge(st: dict[str, Any]) -> None:
            new = state.advance_check_cycle(st["check_cycle"].get(kind), n, total, clean=report.clean, now=wall)
            st["check_cycle"][kind] = new
            details.update(cycle=new, cycle_read=len(new["read"]))

        error = "" if report.clean else (restic.classify_failure(res.masked_stderr()) or "check failed")
        first = report.errors[0].removeprefix("Fatal: ").strip() if report.errors else ""
        if error and first and first not in error:
            error = f"{error}: {first}"  # the first damaged pack or blob, restic's own words
        return self._finish(StepResult("check", kind, "success" if report.clean else "failure",
                                       time.monotonic() - started, res.rc, error, details=details), wall, merge)

    # -- prune -------------------------------------------------------------------------------------

    def prune(self, only: str | None = None) -> list[StepResult]:
        """Forget the job's snapshots outside the retention policy and prune unreferenced data."""
        results: list[StepResult] = []
        for kind in self.repos(only):
            if kind == "offsite" and results and results[0].repo == "local" and not results[0].ok:
                # The next run's copy would bring back every snapshot this prune forgets off-site and the
                # local one kept: the off-site repository is pruned only after the local one was.
                wall = time.time()
                started = self._start("prune", kind)
                results.append(self._finish(StepResult(
                    "prune", kind, "failure", time.monotonic() - started, None,
                    "not pruned: the local prune failed (the next copy would bring back what an off-site prune "
                    "forgets)"), wall))
                continue
            results.append(self._recorded_if_stopped("prune", kind, lambda k=kind: self._prune(k)))
        return results

    def _prune(self, kind: str) -> StepResult:
        wall = time.time()
        started = self._start("prune", kind)
        access = self.access(kind)
        kept = self._clear_locks(kind, access, force=True)
        argv = restic.forget_argv(self.restic.binary, access, self.job.retention,
                                  tags=[restic.job_tag(self.job.name)])
        res = self.restic.run(argv, access)
        details: dict[str, Any] = {"locks_kept": kept}
        try:
            details["snapshots_kept"], details["snapshots_removed"] = restic.parse_forget(res.stdout)
        except restic.ResticError as exc:
            if res.ok:
                return self._finish(StepResult("prune", kind, "failure", time.monotonic() - started, res.rc,
                                               str(exc), details=details), wall)
        groups = restic.parse_forget_groups(res.stdout)
        if len(groups) > 1:
            # Each group keeps its own keep_* (a host renamed, or the job's tags changed, starts a new group): a group
            # that gets no new snapshot keeps its last ones for ever. Said on every prune, or nobody notices.
            details["groups"] = groups
        if res.ok and self.job.retention.applies:
            # A forget that applied no policy lists no snapshot at all: its 0 is no count (the config
            # refuses such a policy; a hand-made job may still have one).
            details["snapshots"] = details.get("snapshots_kept")
        error = "" if res.ok else f"{res.meaning}: {restic.classify_failure(res.masked_stderr())}"
        return self._finish(StepResult("prune", kind, "success" if res.ok else "failure",
                                       time.monotonic() - started, res.rc, error, details=details), wall)

    # -- drill -------------------------------------------------------------------------------------

    def drill(self, kind: str = "local", scratch_root: Path | None = None) -> StepResult:
        """Restore the job's latest snapshot of a successful run and verify it (``_drill``); a drill stopped by a
        signal is recorded as failed."""
        return self._recorded_if_stopped("drill", kind, lambda: self._drill(kind, scratch_root))

    def _drill(self, kind: str = "local", scratch_root: Path | None = None) -> StepResult:
        """Restore the job's latest snapshot (or a random sample of its files) and verify every file.

        Verification: restic's ``restore --verify`` re-reads each restored file against the
        snapshot's content hashes; then each expected file must exist with the snapshot's size, its
        SHA-256 is recorded as evidence, and where the live source file still has the snapshot's
        size and mtime, the SHA-256 must equal the source's.
        """
        wall = time.time()
        started = self._start("drill", kind)
        access = self.access(kind)
        kept = self._clear_locks(kind, access)
        details: dict[str, Any] = {"locks_kept": kept, "verified_files": 0, "verified_bytes": 0, "failed_files": 0}

        def fail(error: str, rc: int | None = None) -> StepResult:
            return self._finish(StepResult("drill", kind, "failure", time.monotonic() - started, rc, error,
                                           snapshot_id=details.get("snapshot"), details=details), wall)

        try:
            snaps_res = self.restic.run(restic.snapshots_argv(self.restic.binary, access,
                                                              tags=[restic.job_tag(self.job.name)]), access)
        except (OSError, execute.ToolFailed) as exc:
            return fail(f"drill could not run: {exc}")
        if not snaps_res.ok:
            return fail(f"cannot list snapshots: {restic.classify_failure(snaps_res.masked_stderr())}", snaps_res.rc)
        snaps = restic.parse_snapshots(snaps_res.stdout)
        if not snaps:
            return fail("no snapshot of this job in the repository")
        try:
            snap, taken, notes, why = drill_candidate(snaps, self.job.sources, wall)
        except ValueError as exc:
            return fail(f"cannot tell the latest snapshot: {exc}")
        if notes:
            details["clock_skew"] = notes
        if snap is None or taken is None:
            return fail(f"no snapshot to drill: {why}")
        details.update(snapshot=snap.short_id, snapshot_time=taken.isoformat())
        root = scratch_root or self.state_dir / "drill"
        scratch: Path | None = None
        try:
            ls = self.restic.run(restic.ls_argv(self.restic.binary, access, snap.id), access)
            if not ls.ok:
                return fail(f"cannot list snapshot {snap.short_id}: {restic.classify_failure(ls.masked_stderr())}",
                            ls.rc)
            files = [n for n in restic.parse_ls(ls.stdout) if n.type == "file"]
            sample = self.job.drill_sample_files
            chosen = self.rng.sample(files, sample) if 0 < sample < len(files) else files
            details.update(mode="sample" if len(chosen) < len(files) else "full", files_in_snapshot=len(files),
                           files_expected=len(chosen))
            root.mkdir(parents=True, exist_ok=True)
            sweep_scratch(root, f"{self.job.name}-{kind}-")
            short = space_shortfall(root, sum(n.size for n in chosen))
            if short:
                return fail(short)
            scratch = Path(tempfile.mkdtemp(prefix=f"{self.job.name}-{kind}-{os.getpid()}-", dir=root))
            # A sample goes in batches of --include arguments (restic 0.14 has no --include-file), each far
            # below ARG_MAX, into the same scratch directory.
            batches = restic.include_batches([n.path for n in chosen]) if details["mode"] == "sample" else [[]]
            res = None
            errors: list[str] = []
            restic_verified = 0
            for batch in batches:
                res = self.restic.run(restic.restore_argv(self.restic.binary, access, snap.id, scratch, batch),
                                      access)
                report = restic.parse_restore(res.stdout, res.masked_stderr())
                errors += report.errors
                restic_verified += report.verified_files or 0
                if not res.ok:
                    break
            assert res is not None
            details["restic_verified_files"] = restic_verified
            if len(batches) > 1:
                details["restore_batches"] = len(batches)
            failures, manifest = self._verify(chosen, scratch, details)
            details["failed_files"] = len(failures) if res.ok else max(len(failures), 1)
            details["failures"] = failures[:20]
            if not res.ok:
                return fail(f"restore failed: {restore_reason(errors, res.meaning)}", res.rc)
            if failures:
                return fail(f"{len(failures)} file(s) failed verification, first: {failures[0]}", res.rc)
            smoke_error = self._smoke(scratch)
            if smoke_error:
                return fail(smoke_error, res.rc)
            details["smoke"] = "passed" if self.job.drill_smoke_command else "none configured"
            if not details["verified_files"]:
                # "drill success" reads as "we restored data": with no file verified it cannot say that.
                return self._finish(StepResult("drill", kind, "partial", time.monotonic() - started, res.rc,
                                               nothing_verified(snap.short_id, details), snap.short_id, details),
                                    wall)
            self._save_evidence(kind, snap.id, manifest, wall, details)
            if notes:  # restored and verified, but a future-dated snapshot is in the way: an operator must look
                return self._finish(StepResult("drill", kind, "partial", time.monotonic() - started, res.rc,
                                               f"snapshot {snap.short_id} verified, but {notes[0]}",
                                               snap.short_id, details), wall)
            return self._finish(StepResult("drill", kind, "success", time.monotonic() - started, res.rc,
                                           snapshot_id=snap.short_id, details=details), wall)
        except (OSError, execute.ToolFailed, restic.ResticError) as exc:
            # restic could not be started (argv too long, no space for the scratch directory) or timed out:
            # a drill that could not run is a failed drill, recorded like any other (state, event, metric).
            return fail(f"drill could not run: {exc}")
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _verify(self, chosen: Sequence[restic.Node], scratch: Path,
                details: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        failures: list[str] = []
        unverifiable: list[str] = []
        manifest: dict[str, str] = {}
        matched_source = 0
        names = RestoredNames(scratch)
        for node in chosen:
            found = names.find(node.path)
            if len(found) > 1:  # several names not UTF-8 that restic writes alike: which is which is unknown
                unverifiable.append(node.path)
                continue
            restored = found[0] if found else None
            try:
                size = os.stat(restored).st_size if restored is not None else -1
            except OSError:
                size = -1
            if size < 0:
                failures.append(f"{node.path}: not restored")
                continue
            if size != node.size:
                failures.append(f"{node.path}: size {size}, snapshot says {node.size}")
                continue
            digest = sha256_file(restored)
            manifest[node.path] = digest
            source = restored[len(names.root):]  # the restore puts each file at the target + its own path
            try:
                st = os.stat(source)
            except OSError:
                st = None
            # Unchanged: the size, mtime and ctime the snapshot recorded (a rewrite that kept size and mtime,
            # as cp -p, rsync -t or tar leave it, still moves the ctime, which restic itself looks at too).
            if st is not None and st.st_size == node.size and st.st_mtime_ns == mtime_ns(node.mtime) and \
                    (not node.ctime or st.st_ctime_ns == mtime_ns(node.ctime)):
                if sha256_file(source) != digest:
                    failures.append(f"{node.path}: SHA-256 differs from the source file (same size, mtime and "
                                    f"ctime as in the snapshot)")
                    continue
                matched_source += 1
            details["verified_files"] += 1
            details["verified_bytes"] += size
        details["matched_source_files"] = matched_source
        details["unverifiable_names"] = len(unverifiable)
        if unverifiable:
            details["unverifiable"] = unverifiable[:20]
        return failures, manifest

    def _smoke(self, scratch: Path) -> str:
        if not self.job.drill_smoke_command:
            return ""
        argv = [a.replace("{restore_dir}", str(scratch)) for a in self.job.drill_smoke_command]
        try:
            res = self._child_run("drill-smoke", argv, timeout=1800)
        except (execute.ToolFailed, execute.SecretInArgv) as exc:
            return f"smoke command: {exc}"
        return "" if res.ok else f"smoke command exited {res.rc}: {res.masked_stderr().strip()[-300:]}"

    def _save_evidence(self, kind: str, snapshot: str, manifest: dict[str, str], wall: float,
                       details: dict[str, Any]) -> None:
        """Write the drill's evidence, one self-contained record (atomically): when, where, which snapshot,
        full or sample, the counts, and the SHA-256 of every verified file."""
        directory = self.state_dir / "evidence"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(wall, UTC).strftime("%Y%m%dT%H%M%SZ")
        path = directory / f"{self.job.name}-{kind}-{stamp}.json"
        record = {"job": self.job.name, "repo": kind, "repository": events.redact_url(self.repo(kind).url),
                  "snapshot": snapshot, "run_id": self.run_id, "host": self.host,
                  "time": datetime.fromtimestamp(wall, UTC).isoformat(), "sha256": manifest,
                  **{k: details.get(k) for k in EVIDENCE_FIELDS if details.get(k) is not None}}
        atomicfile.write(path, json.dumps(record, indent=1, sort_keys=True))

    # -- status ------------------------------------------------------------------------------------

    def status(self, live: bool = True, now: float | None = None) -> list[dict[str, Any]]:
        """Return one row per repository: last success/attempt, age, snapshots, size, last drill.

        With ``live``, ask each repository for its snapshot count and size (``restic stats``, a full
        scan) without holding the state lock, then merge only those figures into the current state,
        so a run or check that finished meanwhile keeps its result.
        """
        now = now or time.time()
        measured: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        # The job's snapshots each repository holds now, as listed for the count: the recorded last success says
        # nothing about snapshots forgotten since, or a repository replaced by an empty one.
        listed: dict[str, list[restic.Snapshot]] = {}
        if live:
            for kind in self.repos():
                access = self.access(kind)
                asked = time.time()
                snaps = self._job_snapshots(access)
                stats = self.restic.run(restic.stats_argv(self.restic.binary, access), access, timeout=600)
                if snaps is None or not stats.ok:
                    errors[kind] = restic.classify_failure(stats.masked_stderr())
                else:
                    listed[kind] = snaps
                    measured[kind] = {"snapshots": len(snaps), "snapshots_time": asked, "size_time": time.time(),
                                      "size_bytes": restic.parse_stats(stats.stdout).get("total_size")}

        def merge(st: dict[str, Any]) -> None:
            for kind, info in measured.items():
                repo = st["repos"].setdefault(kind, {})
                if repo.get("snapshots_time", 0) > info["snapshots_time"]:
                    # a run or prune counted after this scan began: its count is the newer one
                    info = {k: v for k, v in info.items() if not k.startswith("snapshots")}
                repo.update(info)

        st = (state.update(self.state_dir, self.job.name, merge) if live
              else state.load(self.state_dir, self.job.name))
        rows = []
        for kind in self.repos():
            step = "backup" if kind == "local" else "copy"
            entry = st["steps"].get(state.step_key(kind, step), {})
            repo_info = st["repos"].get(kind, {})
            last_success = entry.get("last_success")
            check = st["steps"].get(state.step_key(kind, "check"))
            drill = st["drill"].get(kind)
            gone = ""
            if kind in listed and not listed[kind]:
                # restic lists no snapshot of the job: whatever success was recorded, there is nothing to restore.
                if last_success is not None:
                    gone = (f"never: the repository holds no snapshot of the job (the last success recorded, "
                            f"{datetime.fromtimestamp(last_success, UTC).isoformat()}, is gone: forgotten, or "
                            f"the repository was replaced)")
                last_success = None
            elif kind == "offsite" and listed.get(kind):
                # off-site freshness is the newest job snapshot there (as the copy records it), now as listed
                last_success = newest_snapshot_time(listed[kind], now) or last_success
            fresh = freshness(last_success, now, self.job.max_age_hours * 3600)
            skew_note = entry.get("clock_skew") or ""
            # One line a person reads first: what failed and why (live scan, freshness, last step, drill, check).
            reasons = [r for r in (f"status scan: {errors[kind]}" if errors.get(kind) else "",
                                   gone or stale_reason(fresh, kind, last_success, now, self.job.max_age_hours),
                                   skew_note if fresh != "skew" else "", reason(entry, step),
                                   reason(drill, "drill"), reason(check, "check")) if r]
            rows.append({"job": self.job.name, "repo": kind, "step": step, "status": entry.get("status"),
                         "last_attempt": entry.get("last_attempt"), "last_success": last_success,
                         # never negative: a time in the future is clock skew (freshness "skew"), not an age
                         "age_seconds": None if last_success is None or fresh == "skew"
                         else round(max(0.0, now - last_success), 1),
                         "freshness": fresh, "max_age_seconds": self.job.max_age_hours * 3600,
                         "snapshots": repo_info.get("snapshots"), "size_bytes": repo_info.get("size_bytes"),
                         "size_time": repo_info.get("size_time"),
                         "latest_snapshot_bytes": repo_info.get("latest_snapshot_bytes"),
                         "latest_snapshot_time": repo_info.get("latest_snapshot_time"),
                         "last_drill": drill, "last_check": None if check is None else {
                             k: check.get(k) for k in ("status", "last_attempt", "last_success", "error")},
                         "error": errors.get(kind, ""), "reason": "; ".join(reasons)})
        return rows

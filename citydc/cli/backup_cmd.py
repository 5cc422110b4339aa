"""``citydc backup``: run, check, prune, drill, init and status of the restic backup jobs.

Exit codes: 0 every step succeeded; 1 a step failed or was only partial (some files unreadable), or
(status) a repository is stale or never backed up; 2 the config, the job name, a password reference
or a job's state file is wrong.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from citydc import execute
from citydc.backup import locks, metrics, restic, state
from citydc.backup.jobs import JobRunner, StepResult, human_bytes, worst
from citydc.cli import timefmt
from citydc.cli.backup_configs_cmd import configs_group
from citydc.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    err,
    examples,
    fail,
    load_config,
    out,
    print_json,
    show_times,
    wide_option,
)
from citydc.cli.table import Column, failures_first, print_table, status_style
from citydc.config.loader import LoadedConfig
from citydc.secrets import SecretUnavailable

__all__ = ["backup_group"]

REPO_CHOICE = click.Choice(["local", "offsite"])


def _emitter(loaded: LoadedConfig) -> Callable[[list[dict]], None]:
    # The one call site of the security log for backups.
    from citydc.seclog import emit_configured

    return lambda evs: emit_configured(loaded, evs)


def _job(loaded: LoadedConfig, name: str):
    for job in loaded.config.backup.jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in loaded.config.backup.jobs) or "none configured"
    fail(f"unknown backup job {name!r} (known: {known})", EXIT_CONFIG)


def _runner(ctx: click.Context, name: str, **kwargs: Any) -> tuple[LoadedConfig, JobRunner]:
    loaded = load_config(ctx)
    cfg = loaded.config
    job = _job(loaded, name)
    state_dir = loaded.resolve(cfg.backup.state_dir)
    runner = restic.Restic(binary=cfg.tools.restic, cache_dir=state_dir / "cache")
    for field in ("local_repo", "offsite_repo"):
        repo = getattr(job, field)
        try:  # a password reference that resolves to nothing is a config error, found before anything runs
            if repo is not None:
                restic.repo_access(repo)
        except SecretUnavailable as exc:
            fail(f"job {name}: {field} password: {exc}", EXIT_CONFIG)
    _check_state(loaded, name, state_dir)
    try:
        runner.version()
    except (restic.ResticError, OSError, execute.ToolFailed) as exc:
        fail(str(exc), EXIT_FAILED, hint="install restic 0.14 or newer, or set tools.restic in citydc.yaml")
    return loaded, JobRunner(job, runner, state_dir, _emitter(loaded), cfg.backup.lock_stale_seconds,
                             ssh=cfg.tools.ssh, **kwargs)


def _check_state(loaded: LoadedConfig, name: str, state_dir: Path) -> None:
    """End with one line (exit 2) if job ``name``'s state file cannot be read: found before restic runs,
    not when a snapshot made meanwhile is to be recorded (and its off-site copy would be left undone)."""
    try:
        state.load(state_dir, name)
    except state.StateDamaged as exc:
        fail(f"job {name}: state: {exc}", EXIT_CONFIG)
    except OSError as exc:
        fail(f"job {name}: {_os_error(loaded, name, exc)}", _exit_code(exc))


def _path_field(loaded: LoadedConfig, name: str | None, path: str | None) -> str:
    """Given a job name and a path an OSError named, return the config field the path comes from, else ''."""
    if not path:
        return ""
    cfg = loaded.config.backup
    fields = [(loaded.resolve(cfg.state_dir), "backup.state_dir")]
    if cfg.textfile_dir is not None:
        fields.append((loaded.resolve(cfg.textfile_dir), "backup.textfile_dir"))
    for i, job in enumerate(cfg.jobs):
        for kind in ("local_repo", "offsite_repo"):
            repo = getattr(job, kind)
            directory = locks.local_path(repo.url) if repo is not None and job.name == name else None
            if directory is not None:
                fields.append((loaded.resolve(directory), f"backup.jobs[{i}].{kind}.url"))
    target = Path(path)
    for directory, field in fields:
        if target == directory or directory in target.parents:
            return field
    return ""


def _os_error(loaded: LoadedConfig, name: str | None, exc: OSError) -> str:
    """Given an OSError from a command on job ``name``, return one line naming the path, the reason
    and the config field the path comes from (no traceback, no secret: OSError holds paths only)."""
    field = _path_field(loaded, name, exc.filename)
    where = f" ({field})" if field else ""
    return f"cannot use {exc.filename or 'a file'}: {exc.strerror or exc}{where}"


def _exit_code(exc: OSError) -> int:
    # A path that is missing, not permitted or read-only is the setup's to fix (exit 2); anything
    # else (a full disk, an I/O error) is a failed job (exit 1).
    return EXIT_CONFIG if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EROFS) \
        else EXIT_FAILED


def _write_metrics(loaded: LoadedConfig) -> None:
    cfg = loaded.config.backup
    if cfg.textfile_dir is None:
        return
    sites = {j.name: j.site for j in cfg.jobs}
    state_dir = loaded.resolve(cfg.state_dir)
    try:
        with state.metrics_locked(state_dir):
            metrics.write(loaded.resolve(cfg.textfile_dir), state.load_all(state_dir), sites)
    except state.StateLocked as exc:
        err.print(f"[yellow]metrics not rewritten:[/] {escape(str(exc))}")  # the next command writes them
    except OSError as exc:  # the job's own result stands; the metrics are the next command's to write
        err.print(f"[yellow]metrics not rewritten:[/] {escape(_os_error(loaded, None, exc))}")


def _human_bytes(n: int | None) -> str:
    return "-" if n is None else human_bytes(n)


_STYLE = {"success": "green", "partial": "yellow", "failure": "bold red"}

RUN_COLUMNS = (Column("step"), Column("repo"), Column("status", style=status_style), Column("snapshot"),
               Column("new files", right=True), Column("added", right=True), Column("duration", right=True),
               Column("detail", text=True))


def step_detail(r: StepResult) -> str:
    """Given a step's result, return its one-line detail: the reason when it failed or was partial."""
    d = r.details
    if not r.ok:
        return r.error or f"{r.status} (exit code {r.exit_code})"
    if r.step == "drill":
        return (f"{d.get('verified_files')} files, {_human_bytes(d.get('verified_bytes'))} verified, snapshot "
                f"{d.get('snapshot')} of {d.get('snapshot_time')}{_unverifiable(d)}")
    if r.step == "check":
        return f"read subset {d.get('subset')}"
    if r.step == "prune" and d.get("groups"):
        return (f"{d['snapshots_removed']} forgotten, {d['snapshots_kept']} kept in {len(d['groups'])} retention "
                f"groups (host [tags]: {'; '.join(d['groups'])}); a group without new snapshots keeps its last ones "
                f"for ever: forget an old host's or old tags' snapshots by hand")
    if r.step == "copy":
        return (f"{len(d.get('snapshots_copied') or [])} snapshot(s) copied, newest off-site from "
                f"{timefmt.show(d.get('newest_snapshot_time'), 'none')}")
    return ""


def _unverifiable(details: dict[str, Any]) -> str:
    n = details.get("unverifiable_names")
    return f"; {n} file(s) with names restic cannot tell apart not verified" if n else ""


def run_rows(results: Sequence[StepResult]) -> list[list[str]]:
    """Given step results, return the rows of the run table, failures first."""
    rows = [[r.step, r.repo, r.status, r.snapshot_id or "-",
             str(r.details["files_new"]) if r.details.get("files_new") is not None else "-",
             _human_bytes(r.details.get("bytes_added")) if r.details.get("bytes_added") is not None else "-",
             f"{r.duration_seconds:.1f} s", step_detail(r)] for r in results]
    return failures_first(rows, 2)


def _report(job: str, results: Sequence[StepResult], runner: JobRunner, as_json: bool, wide: bool = False) -> int:
    overall = worst(results)
    if as_json:
        print_json({"job": job, "status": overall, "run_id": runner.run_id,
                    "steps": [r.to_json() for r in results], "events": runner.emitted})
    else:
        print_table(out, RUN_COLUMNS, run_rows(results), title=f"backup job {job}", wide=wide)
        for r in results:
            for path in r.details.get("unreadable_files") or []:
                err.print(f"[yellow]unreadable:[/] {escape(path)}")
            for failure in (r.details.get("failures") or [])[1:]:
                err.print(f"[red]{r.step} ({r.repo}):[/] {escape(failure)}")
            for note in r.details.get("locks_kept") or []:
                err.print(f"[dim]lock kept: {escape(note)}[/]")
            if r.ok and r.details.get("groups"):  # the table may cut the detail to fit 80 columns
                err.print(f"[yellow]{escape(r.step)} ({escape(r.repo)}):[/] {escape(step_detail(r))}")
        if overall != "success":
            first = next(r for r in results if r.status == overall)
            err.print(f"[{_STYLE[overall]}]job {escape(job)}: {overall.upper()}[/]: "
                      f"{escape(first.step)} ({escape(first.repo)}): {escape(step_detail(first))}")
    return EXIT_OK if overall == "success" else EXIT_FAILED


@contextmanager
def _progress(enabled: bool):
    """Yield (on_status, on_step) callbacks driving a Rich progress bar from restic's status lines."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                        console=err, transient=True, disable=not (enabled and err.is_terminal))
    task = progress.add_task("backup", total=None)

    def on_status(st: restic.Status) -> None:
        progress.update(task, total=st.total_bytes or None, completed=st.bytes_done)

    def on_step(step: str, repo: str) -> None:
        progress.update(task, description=f"{step} ({repo})", total=None, completed=0)

    with progress:
        yield on_status, on_step


def _act(ctx: click.Context, name: str, as_json: bool, action: Callable[[JobRunner], list[StepResult]],
         wide: bool = False) -> None:
    with _progress(not as_json) as (on_status, on_step):
        loaded, runner = _runner(ctx, name, on_status=on_status, on_step=on_step)
        try:
            results = action(runner)
        except SecretUnavailable as exc:
            fail(f"job {name}: repository password: {exc}", EXIT_CONFIG)
        except restic.PasswordInArgv as exc:
            fail(f"job {name}: {exc}", EXIT_CONFIG)
        except OSError as exc:
            fail(f"job {name}: {_os_error(loaded, name, exc)}", _exit_code(exc))
        except state.JobBusy as exc:
            fail(str(exc), EXIT_FAILED, hint="wait for it to end (ps -p PID) and run again if needed")
        except state.StateLocked as exc:
            fail(str(exc), EXIT_FAILED, hint="the lock is held only while a command records a result; "
                                             "a long wait means that command hangs (look at it with ps -p PID)")
        except state.StateDamaged as exc:  # damaged while restic ran (checked before it started)
            fail(f"job {name}: state: {exc}", EXIT_CONFIG)
        except execute.ToolFailed as exc:  # restic timed out (or vanished): no step result to show
            fail(f"job {name}: {exc}", EXIT_FAILED)
        finally:
            _write_metrics(loaded)
    ctx.exit(_report(name, results, runner, as_json, wide))


@click.group("backup", epilog=examples("citydc backup run siwei-ldap", "citydc backup status --offline"))
def backup_group() -> None:
    """restic backup jobs: backup, off-site copy, retention, checks and restore drills.

    Exit codes: 0 every step succeeded; 1 a step failed or was partial (the reason is on its row), or
    (status) a repository is stale or never backed up; 2 the config, the job name, a password
    reference or a state file is wrong.
    """


def _complete_jobs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a JOB argument: the job names of the config in use (none if it cannot be read)."""
    from citydc.cli.output import config_path
    from citydc.config.loader import load

    try:
        loaded = load(config_path(ctx.find_root().params.get("config_path")))
    except (Exception, SystemExit):  # completion must never print an error into the shell
        return []
    return [j.name for j in loaded.config.backup.jobs if j.name.startswith(incomplete)]


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result (and its events) as JSON.")


@backup_group.command("init", epilog=examples("citydc backup init siwei-ldap"))
@click.argument("job", shell_complete=_complete_jobs)
@json_option
@wide_option
@click.pass_context
def init_cmd(ctx: click.Context, job: str, as_json: bool, wide: bool) -> None:
    """Create JOB's repositories that do not exist yet (off-site with the local chunker parameters)."""
    _act(ctx, job, as_json, lambda r: r.init(), wide)


@backup_group.command("run", epilog=examples("citydc backup run siwei-ldap", "citydc backup run siwei-ldap --json"))
@click.argument("job", shell_complete=_complete_jobs)
@json_option
@wide_option
@click.pass_context
def run_cmd(ctx: click.Context, job: str, as_json: bool, wide: bool) -> None:
    """Back JOB up to its local repository, then copy its snapshots to the off-site repository.

    A second run of JOB while one is going is refused (exit 1, naming the running one's PID)."""
    _act(ctx, job, as_json, lambda r: r.run(), wide)


@backup_group.command("check", epilog=examples("citydc backup check siwei-ldap", "citydc backup check siwei-ldap "
                                                                                  "--repo offsite"))
@click.argument("job", shell_complete=_complete_jobs)
@click.option("--repo", type=REPO_CHOICE, help="Only this repository (default: both).")
@json_option
@wide_option
@click.pass_context
def check_cmd(ctx: click.Context, job: str, repo: str | None, as_json: bool, wide: bool) -> None:
    """Check structure and read the next rotating data subset (every pack within check_read_data_days runs)."""
    _act(ctx, job, as_json, lambda r: r.check(repo), wide)


@backup_group.command("prune", epilog=examples("citydc backup prune siwei-ldap --repo local"))
@click.argument("job", shell_complete=_complete_jobs)
@click.option("--repo", type=REPO_CHOICE, help="Only this repository (default: both).")
@json_option
@wide_option
@click.pass_context
def prune_cmd(ctx: click.Context, job: str, repo: str | None, as_json: bool, wide: bool) -> None:
    """Forget JOB's snapshots outside its retention policy (grouped by host and the job's tags) and prune unreferenced
    data. Without --repo, the off-site repository is pruned only after the local prune succeeded."""
    _act(ctx, job, as_json, lambda r: r.prune(repo), wide)


@backup_group.command("drill", epilog=examples("citydc backup drill siwei-ldap", "citydc backup drill siwei-ldap "
                                                                                  "--repo offsite"))
@click.argument("job", shell_complete=_complete_jobs)
@click.option("--repo", type=REPO_CHOICE, default="local", show_default=True, help="Repository to restore from.")
@json_option
@wide_option
@click.pass_context
def drill_cmd(ctx: click.Context, job: str, repo: str, as_json: bool, wide: bool) -> None:
    """Restore JOB's latest snapshot of a successful run (or a random sample of its files) into scratch
    space and verify the content of every regular file.

    Snapshots lacking one of the job's sources, or dated in the future (clock skew, which makes the
    drill partial), are passed over."""
    if repo == "offsite" and _job(load_config(ctx), job).offsite_repo is None:
        fail(f"job {job} has no offsite_repo to drill", EXIT_CONFIG)
    _act(ctx, job, as_json, lambda r: [r.drill(repo)], wide)


def _status_style(value: str) -> str | None:
    """Given a status cell, return its style: a stale or never backed-up repository is as red as a failure."""
    return "bold red" if value in NOT_FRESH else status_style(value)


NOT_FRESH = ("stale", "never", "skew")
STATUS_COLUMNS = (Column("job"), Column("repo"), Column("last", style=_status_style), Column("last success"),
                  Column("age", right=True, drop=2), Column("snapshots", right=True, drop=4),
                  Column("repo size", right=True, drop=3), Column("last snapshot", right=True, drop=5),
                  Column("last drill", style=status_style, drop=1), Column("drilled", drop=6),
                  Column("reason", text=True))


def _recorded_rows(loaded: LoadedConfig, name: str) -> list[dict[str, Any]]:
    """Given a job name, return its status rows from its state file alone (``status --offline``).

    No password is resolved and restic is not run: the state file holds everything shown. A state
    that cannot be read gives the job one row per repository with the reason, so the other jobs
    are still shown.
    """
    cfg = loaded.config
    job = _job(loaded, name)
    runner = JobRunner(job, restic.Restic(binary=cfg.tools.restic), loaded.resolve(cfg.backup.state_dir),
                       emit=lambda _events: None)
    try:
        return runner.status(live=False)
    except OSError as exc:
        reason = f"state not readable: {_os_error(loaded, name, exc)}"
    except ValueError as exc:  # state.load names the file and how to recover
        reason = f"state not readable: {exc}"
    return [{"job": name, "repo": kind, "step": "backup" if kind == "local" else "copy", "status": None,
             "last_attempt": None, "last_success": None, "age_seconds": None, "snapshots": None,
             "size_bytes": None, "size_time": None, "latest_snapshot_bytes": None, "latest_snapshot_time": None,
             "last_drill": None, "last_check": None, "error": reason, "reason": reason} for kind in runner.repos()]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def status_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Given ``JobRunner.status`` rows, return the status table's rows, failures first.

    The "last" cell is the worst of the last backup/copy, drill and check, so a failed drill
    sorts first and is red even after a clean backup; then ``never`` or ``stale`` when the repository
    has no successful backup (off-site: no snapshot) within the job's max_age_hours. The reason cell
    says which and why.
    """
    table = []
    for r in rows:
        drill = r.get("last_drill") or {}
        check = r.get("last_check") or {}
        statuses = [s for s in (r["status"], drill.get("status"), check.get("status")) if s]
        overall = "failure" if r["error"] or "failure" in statuses else (
            r["freshness"] if r.get("freshness") in NOT_FRESH else
            "partial" if "partial" in statuses else (r["status"] or "-"))
        table.append([r["job"], r["repo"], overall, timefmt.show(r["last_success"]), _age(r["age_seconds"]),
                      str(r["snapshots"]) if r["snapshots"] is not None else "-", _human_bytes(r["size_bytes"]),
                      _human_bytes(r["latest_snapshot_bytes"]), drill.get("status") or "never",
                      timefmt.show(drill.get("time"), "-"), r.get("reason") or r["error"]])
    # Stale and never-backed-up rows before the fresh ones (failures_first keeps that order among equals).
    return failures_first(sorted(table, key=lambda row: row[2] not in NOT_FRESH), 2)


@backup_group.command("status", epilog=examples("citydc backup status", "citydc backup status siwei-ldap --offline "
                                                                       "--utc"))
@click.argument("jobs", nargs=-1, shell_complete=_complete_jobs)
@click.option("--offline", is_flag=True,
              help="Only the recorded state; do not ask the repositories (needs no password and no restic).")
@json_option
@wide_option
@timefmt.utc_show_option
@click.pass_context
def status_cmd(ctx: click.Context, jobs: tuple[str, ...], offline: bool, as_json: bool, wide: bool,
               utc: bool) -> None:
    """Per job and repository: last result, last success, age, snapshots, size, last drill, and the reason
    of the last failure (backup, copy, drill or check).

    A repository whose newest successful backup (off-site: the newest snapshot copied there) is older
    than the job's max_age_hours (default 26) is "stale", one with none is "never", one whose last
    success lies in the future is "skew" (a clock was ahead).

    Exit 1 if any of them failed, was partial, stale, skewed or never backed up."""
    loaded = load_config(ctx)
    show_times(loaded, utc)
    names = list(jobs) or [j.name for j in loaded.config.backup.jobs]
    rows: list[dict[str, Any]] = []
    for name in names:
        if offline:
            rows += _recorded_rows(loaded, name)
            continue
        _, runner = _runner(ctx, name)
        try:
            rows += runner.status(live=True)
        except SecretUnavailable as exc:
            fail(f"job {name}: repository password: {exc}", EXIT_CONFIG)
        except restic.PasswordInArgv as exc:
            fail(f"job {name}: {exc}", EXIT_CONFIG)
        except state.StateLocked as exc:
            fail(str(exc), EXIT_FAILED)
        except state.StateDamaged as exc:
            fail(f"job {name}: state: {exc}", EXIT_CONFIG)
        except execute.ToolFailed as exc:
            fail(f"job {name}: {exc}", EXIT_FAILED)
        except OSError as exc:
            fail(f"job {name}: {_os_error(loaded, name, exc)}", _exit_code(exc))
    if not offline:  # offline reads the state and changes nothing, so the metrics rendered from it stand
        _write_metrics(loaded)
    table = status_rows(rows)
    if as_json:
        print_json(rows)
    else:
        print_table(out, STATUS_COLUMNS, table, title=f"backup status (times in {timefmt.zone_name()})", wide=wide)
        # The reason in full, one line each: the table may have cut it to fit 80 columns.
        for row in table:
            if row[2] not in ("success", "-"):
                err.print(f"[{_STYLE.get(row[2], 'bold red')}]{escape(row[0])} {escape(row[1])}:[/] "
                          f"{escape(row[-1] or row[2])}")
    ctx.exit(EXIT_FAILED if any(row[2] not in ("success", "-") for row in table) else EXIT_OK)

backup_group.add_command(configs_group)  # citydc backup configs (device configs in git; netmiko loads when run)

"""``citydc backup``: run, check, prune, drill, init and status of the restic backup jobs.

Exit codes: 0 every step succeeded; 1 a step failed or was only partial (some files unreadable);
2 the config, the job name or a password reference is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from citydc.backup import metrics, restic, state
from citydc.backup.jobs import JobRunner, StepResult, worst
from citydc.cli.output import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, err, fail, load_config, out, print_json
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
    try:  # a password reference that resolves to nothing is a config error, found before anything runs
        for repo in (job.local_repo, job.offsite_repo):
            if repo is not None:
                restic.repo_access(repo)
    except SecretUnavailable as exc:
        fail(f"job {name}: repository password: {exc}", EXIT_CONFIG)
    try:
        runner.version()
    except (restic.ResticError, OSError) as exc:
        fail(str(exc), EXIT_FAILED, hint="install restic 0.14 or newer, or set tools.restic in citydc.yaml")
    return loaded, JobRunner(job, runner, state_dir, _emitter(loaded), cfg.backup.lock_stale_seconds,
                             ssh=cfg.tools.ssh, **kwargs)


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


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


_STYLE = {"success": "green", "partial": "yellow", "failure": "bold red"}


def _report(job: str, results: Sequence[StepResult], runner: JobRunner, as_json: bool) -> int:
    overall = worst(results)
    if as_json:
        print_json({"job": job, "status": overall, "run_id": runner.run_id,
                    "steps": [r.to_json() for r in results], "events": runner.emitted})
    else:
        table = Table(title=f"backup job {job}")
        for col in ("step", "repo", "status", "snapshot", "new files", "added", "duration", "detail"):
            table.add_column(col)
        for r in results:
            d = r.details
            detail = r.error or ""
            if r.step == "drill" and r.ok:
                detail = f"{d.get('verified_files')} files, {_human_bytes(d.get('verified_bytes'))} verified"
            if r.step == "check" and r.ok:
                detail = f"read subset {d.get('subset')}"
            table.add_row(r.step, r.repo, f"[{_STYLE[r.status]}]{r.status}[/]", r.snapshot_id or "-",
                          str(d.get("files_new") if d.get("files_new") is not None else "-"),
                          _human_bytes(d.get("bytes_added")), f"{r.duration_seconds:.1f} s", escape(detail))
        out.print(table)
        for r in results:
            for path in r.details.get("unreadable_files") or []:
                err.print(f"[yellow]unreadable:[/] {escape(path)}")
            for note in r.details.get("locks_kept") or []:
                err.print(f"[dim]lock kept: {escape(note)}[/]")
        if overall != "success":
            err.print(f"[{_STYLE[overall]}]job {escape(job)}: {overall.upper()}[/]")
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


def _act(ctx: click.Context, name: str, as_json: bool, action: Callable[[JobRunner], list[StepResult]]) -> None:
    with _progress(not as_json) as (on_status, on_step):
        loaded, runner = _runner(ctx, name, on_status=on_status, on_step=on_step)
        try:
            results = action(runner)
        except SecretUnavailable as exc:
            fail(f"job {name}: repository password: {exc}", EXIT_CONFIG)
        except state.StateLocked as exc:
            fail(str(exc), EXIT_FAILED, hint="the lock is held only while a command records a result; "
                                             "a long wait means that command hangs (look at it with ps -p PID)")
        finally:
            _write_metrics(loaded)
    ctx.exit(_report(name, results, runner, as_json))


@click.group("backup")
def backup_group() -> None:
    """restic backup jobs: backup, off-site copy, retention, checks and restore drills."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result (and its events) as JSON.")


@backup_group.command("init")
@click.argument("job")
@json_option
@click.pass_context
def init_cmd(ctx: click.Context, job: str, as_json: bool) -> None:
    """Create JOB's repositories that do not exist yet (off-site with the local chunker parameters)."""
    _act(ctx, job, as_json, lambda r: r.init())


@backup_group.command("run")
@click.argument("job")
@json_option
@click.pass_context
def run_cmd(ctx: click.Context, job: str, as_json: bool) -> None:
    """Back JOB up to its local repository, then copy its snapshots to the off-site repository."""
    _act(ctx, job, as_json, lambda r: r.run())


@backup_group.command("check")
@click.argument("job")
@click.option("--repo", type=REPO_CHOICE, help="Only this repository (default: both).")
@json_option
@click.pass_context
def check_cmd(ctx: click.Context, job: str, repo: str | None, as_json: bool) -> None:
    """Check structure and read the next rotating data subset (every pack within check_read_data_days runs)."""
    _act(ctx, job, as_json, lambda r: r.check(repo))


@backup_group.command("prune")
@click.argument("job")
@click.option("--repo", type=REPO_CHOICE, help="Only this repository (default: both).")
@json_option
@click.pass_context
def prune_cmd(ctx: click.Context, job: str, repo: str | None, as_json: bool) -> None:
    """Forget JOB's snapshots outside its retention policy and prune unreferenced data."""
    _act(ctx, job, as_json, lambda r: r.prune(repo))


@backup_group.command("drill")
@click.argument("job")
@click.option("--repo", type=REPO_CHOICE, default="local", show_default=True, help="Repository to restore from.")
@json_option
@click.pass_context
def drill_cmd(ctx: click.Context, job: str, repo: str, as_json: bool) -> None:
    """Restore JOB's latest snapshot (or a random sample) into scratch space and verify every file."""
    if repo == "offsite" and _job(load_config(ctx), job).offsite_repo is None:
        fail(f"job {job} has no offsite_repo to drill", EXIT_CONFIG)
    _act(ctx, job, as_json, lambda r: [r.drill(repo)])


@backup_group.command("status")
@click.argument("jobs", nargs=-1)
@click.option("--offline", is_flag=True, help="Only the recorded state; do not ask the repositories.")
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, jobs: tuple[str, ...], offline: bool, as_json: bool) -> None:
    """Per job and repository: last success, last attempt, age, snapshots, size, last drill."""
    loaded = load_config(ctx)
    names = list(jobs) or [j.name for j in loaded.config.backup.jobs]
    rows: list[dict[str, Any]] = []
    for name in names:
        _, runner = _runner(ctx, name)
        try:
            rows += runner.status(live=not offline)
        except SecretUnavailable as exc:
            fail(f"job {name}: repository password: {exc}", EXIT_CONFIG)
        except state.StateLocked as exc:
            fail(str(exc), EXIT_FAILED)
    _write_metrics(loaded)
    if as_json:
        print_json(rows)
    else:
        table = Table(title="backup status")
        for col in ("job", "repo", "last", "last success", "age", "snapshots", "repo size (measured)",
                    "last snapshot size", "last drill", "error"):
            table.add_column(col)
        def when(t: float | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "never"

        for r in rows:
            drill = r["last_drill"] or {}
            table.add_row(r["job"], r["repo"], r["status"] or "-", when(r["last_success"]),
                          "-" if r["age_seconds"] is None else f"{r['age_seconds'] / 3600:.1f} h",
                          str(r["snapshots"] if r["snapshots"] is not None else "-"),
                          _human_bytes(r["size_bytes"]) + (f" ({when(r['size_time'])})" if r["size_time"] else ""),
                          _human_bytes(r["latest_snapshot_bytes"]),
                          f"{drill.get('status', '-')} ({drill.get('verified_files', 0)} files)" if drill else "never",
                          escape(r["error"]))
        out.print(table)
    ctx.exit(EXIT_FAILED if any(r["error"] or r["status"] not in ("success", None) for r in rows) else EXIT_OK)

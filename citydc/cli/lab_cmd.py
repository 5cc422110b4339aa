"""``citydc lab``: start, stop and list the real services the demo and the tests use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from citydc.cli.output import err, examples, fail, out, print_json, progress, wide_option
from citydc.cli.table import Column, failures_first, print_table, status_style
from citydc.lab import registry
from citydc.lab.base import LabContext, LabError


def lab_context() -> LabContext:
    return LabContext(log=lambda msg: err.print(f"[dim]lab: {escape(msg)}[/]"))


STATUS_COLUMNS = (Column("service"), Column("state", style=status_style), Column("pids"), Column("endpoints"))


def status_rows(statuses: list[registry.ServiceStatus]) -> list[list[str]]:
    """Given service statuses, return the lab table's rows, stopped services first."""
    rows = [[st.name, "running" if st.running else "stopped", " ".join(map(str, st.pids)),
             "\n".join(f"{k}: {v}" for k, v in st.endpoints.items())] for st in statuses]
    return failures_first(rows, 1)


def print_status(statuses: list[registry.ServiceStatus], wide: bool = False) -> None:
    print_table(out, STATUS_COLUMNS, status_rows(statuses), title="citydc lab", wide=wide)


def tree_bytes(roots: Sequence[Path], budget_files: int = 200_000) -> int | None:
    """Given folders, return the bytes of the files under them (missing folders count 0); None when
    there are more than ``budget_files`` files (too costly to measure once a second)."""
    total = files = 0
    stack = [r for r in roots if r.is_dir()]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # a folder removed or unreadable meanwhile
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                    files += 1
            except OSError:
                continue
            if files > budget_files:
                return None
    return total


@contextmanager
def _fetched(roots: Sequence[Path], show: Callable[[str], None]) -> Iterator[None]:
    """While the body runs, call ``show`` every second with how much the download folders grew (mvn's
    local repository, the lab's cache): a first Elasticsearch start fetches hundreds of MB."""
    start = tree_bytes(roots)
    stop = threading.Event()

    def watch() -> None:
        while start is not None and not stop.wait(1.0):
            now = tree_bytes(roots)
            if now is None:
                return
            if now - start > 1 << 20:
                show(f"{(now - start) / (1 << 20):.1f} MiB fetched")

    thread = threading.Thread(target=watch, name="citydc-lab-fetched", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def start_services(ctx: LabContext, services: Sequence[str]) -> list[registry.ServiceStatus]:
    """Start SERVICES one by one; on a terminal show which one is starting, the lab's last message and
    how much it fetched so far (a first Elasticsearch start downloads hundreds of MB through mvn), quiet
    when piped. Return their statuses."""
    chosen = [svc.name for svc in registry.select(services)]
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[fetched]}"), TimeElapsedColumn()) as bar:
        task = bar.add_task("starting the lab", total=len(chosen), fetched="")
        live = bar.live.is_started
        if live:
            # The lab's messages become the bar's description (the bar stays on one line).
            ctx = replace(ctx, log=lambda msg: bar.update(task, description=f"lab: {msg}"[:60]))
        for name in chosen:
            bar.update(task, description=f"starting {name}")
            if live:
                with _fetched([ctx.cache, Path.home() / ".m2" / "repository"],
                              lambda text: bar.update(task, fetched=text)):
                    registry.up(ctx, [name])
            else:
                registry.up(ctx, [name])
            bar.update(task, advance=1, fetched="")
    return registry.status(ctx, services)


@click.group("lab", epilog=examples("citydc lab up snmpd", "citydc lab status"))
def lab_group() -> None:
    """Run the lab's real services on loopback (snmpd, Elasticsearch, ...) and write their config."""


@lab_group.command("up", epilog=examples("citydc lab up", "citydc lab up snmpd sftp"))
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@wide_option
def up(services: tuple[str, ...], as_json: bool, wide: bool) -> None:
    """Install what is missing and start SERVICES (all when none given); wait until ready."""
    ctx = lab_context()
    try:
        statuses = start_services(ctx, services)
    except registry.UnknownService as exc:
        fail(str(exc), code=2)
    except LabError as exc:
        fail(str(exc), hint="`citydc lab status` shows what runs; `citydc lab down` stops it")
    print_json([s.to_json() for s in statuses]) if as_json else print_status(statuses, wide)


@lab_group.command("down", epilog=examples("citydc lab down", "citydc lab down elasticsearch"))
@click.argument("services", nargs=-1)
def down(services: tuple[str, ...]) -> None:
    """Stop SERVICES (all when none given): exactly the processes the lab started."""
    try:
        stopped = registry.down(lab_context(), services)
    except LabError as exc:
        fail(str(exc), code=2)
    for name, count in stopped.items():
        err.print(f"{name}: stopped {count} process(es)")


@lab_group.command("status", epilog=examples("citydc lab status", "citydc lab status sftp --json"))
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@wide_option
def status(services: tuple[str, ...], as_json: bool, wide: bool) -> None:
    """Show which lab services run, their PIDs and endpoints."""
    try:
        statuses = registry.status(replace(lab_context(), read_only=True), services)
    except LabError as exc:
        fail(str(exc), code=2)
    print_json([s.to_json() for s in statuses]) if as_json else print_status(statuses, wide)


@lab_group.command("config", epilog=examples("citydc lab config", "citydc lab config -o -"))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of <lab dir>/citydc.yaml; '-' prints it.")
def config(output: Path | None) -> None:
    """Write the lab's citydc.yaml: its loopback devices and ports, paths under $CITYDC_LAB_DIR.

    Prints the path written. Load the file after `citydc lab up sftp`, which writes the
    ssh_config its off-site repositories name.
    """
    from citydc.lab.config import lab_config_text, write_lab_config

    ctx = lab_context()
    if output is not None and str(output) == "-":
        click.echo(lab_config_text(ctx.root.absolute()), nl=False)
        return
    try:
        path = write_lab_config(ctx, output)
    except OSError as exc:
        fail(f"cannot write the lab config: {exc.strerror}: {exc.filename}", code=1)
    click.echo(str(path))

"""``citydc lab``: start, stop and list the real services the demo and the tests use."""

from __future__ import annotations

from collections.abc import Sequence
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


def start_services(ctx: LabContext, services: Sequence[str]) -> list[registry.ServiceStatus]:
    """Start SERVICES one by one; on a terminal show which one is starting and the lab's last message
    (a first Elasticsearch start downloads hundreds of MB), quiet when piped. Return their statuses."""
    chosen = [svc.name for svc in registry.select(services)]
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("starting the lab", total=len(chosen))
        if bar.live.is_started:
            # The lab's messages become the bar's description (the bar stays on one line).
            ctx = replace(ctx, log=lambda msg: bar.update(task, description=f"lab: {msg}"[:70]))
        for name in chosen:
            bar.update(task, description=f"starting {name}")
            registry.up(ctx, [name])
            bar.advance(task)
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
        statuses = registry.status(lab_context(), services)
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

"""``citydc lab``: start, stop and list the real services the demo and the tests use."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from citydc.cli.output import err, fail, out, print_json
from citydc.lab import registry
from citydc.lab.base import LabContext, LabError


def lab_context() -> LabContext:
    return LabContext(log=lambda msg: err.print(f"[dim]lab: {msg}[/]"))


def status_table(statuses: list[registry.ServiceStatus]) -> Table:
    table = Table(title="citydc lab")
    for col in ("service", "state", "pids"):
        table.add_column(col, no_wrap=True)
    table.add_column("endpoints", overflow="fold")
    for st in statuses:
        state = "[green]running[/]" if st.running else "[dim]stopped[/]"
        endpoints = "\n".join(f"{k}: {v}" for k, v in st.endpoints.items())
        table.add_row(st.name, state, " ".join(map(str, st.pids)), endpoints)
    return table


@click.group("lab")
def lab_group() -> None:
    """Run the lab's real services on loopback (snmpd, Elasticsearch, ...) and write their config."""


@lab_group.command("up")
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def up(services: tuple[str, ...], as_json: bool) -> None:
    """Install what is missing and start SERVICES (all when none given); wait until ready."""
    ctx = lab_context()
    try:
        with err.status("starting lab services…"):
            statuses = registry.up(ctx, services)
    except registry.UnknownService as exc:
        fail(str(exc), code=2)
    except LabError as exc:
        fail(str(exc), hint="`citydc lab status` shows what runs; `citydc lab down` stops it")
    print_json([s.to_json() for s in statuses]) if as_json else out.print(status_table(statuses))


@lab_group.command("down")
@click.argument("services", nargs=-1)
def down(services: tuple[str, ...]) -> None:
    """Stop SERVICES (all when none given): exactly the processes the lab started."""
    try:
        stopped = registry.down(lab_context(), services)
    except LabError as exc:
        fail(str(exc), code=2)
    for name, count in stopped.items():
        err.print(f"{name}: stopped {count} process(es)")


@lab_group.command("status")
@click.argument("services", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def status(services: tuple[str, ...], as_json: bool) -> None:
    """Show which lab services run, their PIDs and endpoints."""
    try:
        statuses = registry.status(lab_context(), services)
    except LabError as exc:
        fail(str(exc), code=2)
    print_json([s.to_json() for s in statuses]) if as_json else out.print(status_table(statuses))


@lab_group.command("config")
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

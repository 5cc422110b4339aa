"""``citydc demo``: bring the lab up and run one operations cycle of what exists."""

from __future__ import annotations

import os

import click
from rich.table import Table

from citydc.cli.lab_cmd import lab_context, status_table
from citydc.cli.output import err, fail, out, print_json
from citydc.config import sample
from citydc.config.loader import ConfigInvalid, load
from citydc.lab import ports, registry
from citydc.lab.base import LabError
from citydc.seclog.demo import record_demo_started


@click.command("demo")
@click.option("--services", default="", help="Comma-separated lab services to start (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(services: str, as_json: bool) -> None:
    """Start the lab, validate the example config and run one cycle; print where everything listens."""
    for name, value in ports.LAB_ENV.items():
        os.environ.setdefault(name, value)  # the lab's own credentials, referenced by the example
    names = [s for s in services.split(",") if s]
    steps: list[dict] = []
    ctx = lab_context()
    try:
        with err.status("starting the lab…"):
            statuses = registry.up(ctx, names)
        steps.append({"step": "lab up", "ok": True, "detail": f"{len(statuses)} service(s)"})
    except LabError as exc:
        fail(str(exc))
    try:
        loaded = load(sample.EXAMPLE_PATH)
        steps.append({"step": "config check", "ok": True, "detail": str(sample.EXAMPLE_PATH)})
    except ConfigInvalid as exc:
        fail(f"the example config is invalid: {exc}")
    steps.append(record_demo_started(loaded, [s.name for s in statuses]))
    del loaded
    if as_json:
        print_json({"steps": steps, "services": [s.to_json() for s in statuses]})
        return
    table = Table(title="citydc demo: one operations cycle")
    for col in ("step", "result", "detail"):
        table.add_column(col)
    for s in steps:
        table.add_row(s["step"], "[green]ok[/]" if s["ok"] else "[red]failed[/]", s["detail"])
    out.print(table)
    out.print(status_table(statuses))
    out.print("Stop the lab with [bold]citydc lab down[/].")

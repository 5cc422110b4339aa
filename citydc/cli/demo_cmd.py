"""``citydc demo``: bring the lab up and run one operations cycle of what exists."""

from __future__ import annotations

import os
import time

import click
from rich.markup import escape
from rich.table import Table

from citydc.cli.lab_cmd import lab_context, status_table
from citydc.cli.output import EXIT_FAILED, EXIT_OK, err, fail, out, print_json
from citydc.config.loader import ConfigInvalid, load
from citydc.lab import ports, registry
from citydc.lab.base import LabError
from citydc.lab.config import write_lab_config
from citydc.lab.demo import cycle
from citydc.lab.demo.netflow import netflow_step
from citydc.lab.demo.record import record_captures
from citydc.lab.demo.seclog_event import record_demo_started


@click.command("demo")
@click.option("--services", default=",".join(cycle.DEMO_SERVICES), show_default=True,
              help="Comma-separated lab services to start.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def demo(ctx: click.Context, services: str, as_json: bool) -> None:
    """Start the lab and run one operations cycle on the lab's config (SQLite security log).

    The cycle: validate the config, record demo-started, poll every device through the SNMP
    exporter, record the lab softflowd's NetFlow v5/v9/IPFIX exports, replay them to the NetFlow
    collector and check its records and bytes against nfdump's, back up each site locally and
    off-site to the other site and drill a restore, then ship the security log and verify its
    hash chains. Ends with where every service listens.
    """
    for name, value in ports.LAB_ENV.items():
        os.environ.setdefault(name, value)  # the lab's own credentials, referenced by the example
    names = [s for s in services.split(",") if s]
    lab = lab_context()
    started = time.monotonic()
    steps: list[cycle.Step] = []
    try:
        with err.status("starting the lab…"):
            statuses = registry.up(lab, names)
    except LabError as exc:
        fail(str(exc), hint="`citydc lab status` shows what runs; `citydc lab down` stops it")
    steps.append(cycle.Step("lab up", True, f"{len(statuses)} service(s) in {cycle.elapsed(started)}"))
    try:  # written after lab up: the sftp service writes the ssh_config the config names
        config_path = write_lab_config(lab)
        loaded = load(config_path)
    except OSError as exc:
        fail(f"cannot write the lab config: {exc}")
    except ConfigInvalid as exc:
        fail(f"the lab config is invalid: {exc}")
    steps.append(cycle.Step("config check", True, str(config_path)))
    first = record_demo_started(loaded, [s.name for s in statuses])
    steps.append(cycle.Step(first["step"], first["ok"], first["detail"]))
    cycle.prepare_data(lab.root)
    with err.status("polling every device through the SNMP exporter…"):
        steps.append(cycle.snmp_step(loaded, lab))
    with err.status("recording softflowd's exports and nfdump's totals…") as status:
        try:
            captures = record_captures(lab, lambda msg: status.update(msg + "…"))
        except LabError as exc:
            steps.append(cycle.Step("netflow", False, str(exc)))
        else:
            status.update("replaying the recorded exports to the NetFlow collector…")
            steps.append(netflow_step(loaded, lab, captures))
    with err.status("backups…") as status:
        steps += cycle.backup_steps(loaded, lambda msg: status.update(msg + "…"))
    with err.status("shipping and verifying the security log…"):
        steps += cycle.security_log_steps(loaded)
    ok = all(s.ok for s in steps)
    if as_json:
        print_json({"ok": ok, "steps": [s.to_json() for s in steps], "services": [s.to_json() for s in statuses]})
        ctx.exit(EXIT_OK if ok else EXIT_FAILED)
    summary = Table(title=f"citydc demo: one operations cycle ({cycle.elapsed(started)})")
    for col in ("step", "result", "detail"):
        summary.add_column(col, overflow="fold")
    for s in steps:
        summary.add_row(s.step, "[green]ok[/]" if s.ok else "[red]FAILED[/]", s.detail)
    out.print(summary)
    snmp = next((s for s in steps if s.step == "snmp"), None)
    if snmp and snmp.rows:
        table = Table(title="SNMP: one scrape per device (GET /snmp?target=…)")
        for col in ("device", "site", "address", "up", "interfaces", "varbinds", "errors"):
            table.add_column(col)
        for r in snmp.rows:
            table.add_row(r["device"], r["site"], r["address"], "[green]1[/]" if r["up"] else "[red]0[/]",
                          str(r["interfaces"]), str(r["varbinds"]), r["reason"])
        out.print(table)
    netflow = next((s for s in steps if s.step == "netflow"), None)
    if netflow and netflow.rows:
        out.print(_netflow_table(netflow.rows))
    out.print(status_table(statuses))
    out.print(f"Security log: [bold]citydc -c {escape(str(config_path))} log search --since 1h[/]. "
              "Stop the lab with [bold]citydc lab down[/].")
    ctx.exit(EXIT_OK if ok else EXIT_FAILED)


def _netflow_table(rows: list[dict]) -> Table:
    table = Table(title="NetFlow: softflowd exports recorded now, replayed to citydc collect netflow, vs nfdump")
    # Addresses, sites and numbers are never cut short on a narrow terminal; the top lines fold.
    for col, width in (("exporter", 9), ("site", 8), ("format", 6), ("records", 7), ("bytes", 9), ("nfdump", 6),
                       ("top protocol", None), ("top agency", None)):
        table.add_column(col, justify="right" if col in ("records", "bytes") else "left", no_wrap=width is not None,
                         min_width=width, overflow="fold")
    for r in rows:
        same = "[green]=[/]" if r["ok"] else f"[red]≠ {r['nfdump_records']}, {r['nfdump_bytes']:,}[/]"
        table.add_row(r["exporter"], r["site"], r["version"], str(r["records"]), f"{r['bytes']:,}", same,
                      r["top_protocol"], r["top_agency"])
    return table

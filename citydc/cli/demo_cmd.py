"""``citydc demo``: bring the lab up and run one operations cycle of what exists."""

from __future__ import annotations

import os
import time

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from citydc.cli.lab_cmd import lab_context, print_status, start_services
from citydc.cli.output import EXIT_FAILED, EXIT_OK, examples, fail, out, print_json, progress
from citydc.cli.table import Column, failures_first, print_table, status_style
from citydc.config.loader import ConfigInvalid, load
from citydc.lab import ports
from citydc.lab.base import LabError
from citydc.lab.config import write_lab_config
from citydc.lab.demo import cycle
from citydc.lab.demo.netflow import netflow_step
from citydc.lab.demo.record import record_captures
from citydc.lab.demo.seclog_event import record_demo_started


@click.command("demo", epilog=examples("citydc demo", "citydc demo --services snmpd,sftp --json"))
@click.option("--services", default=",".join(cycle.DEMO_SERVICES), show_default=True,
              help="Comma-separated lab services to start.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def demo(ctx: click.Context, services: str, as_json: bool) -> None:
    """Start the lab and run one operations cycle on the lab's config (SQLite security log).

    The cycle: write and validate the lab's config, record demo-started, poll every device
    through the SNMP exporter, record the lab softflowd's NetFlow v5/v9/IPFIX exports, replay them
    to the NetFlow collector and check its records and bytes against nfdump's, back up each site
    locally and off-site to the other site and drill a restore, then ship the security log and
    verify its hash chains. Ends with where every service listens.
    """
    for name, value in ports.LAB_ENV.items():
        os.environ.setdefault(name, value)  # the lab's own credentials, referenced by the example
    names = [s for s in services.split(",") if s]
    lab = lab_context()
    started = time.monotonic()
    steps: list[cycle.Step] = []
    try:
        statuses = start_services(lab, names)  # its own bar, service by service
    except LabError as exc:
        fail(str(exc), hint="`citydc lab status` shows what runs; `citydc lab down` stops it")
    # Step by step on a terminal (a bar over the phases, each finished step printed above it); quiet when piped.
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  enabled=not as_json) as bar:
        phase = bar.add_task("writing and checking the lab's config", total=5)

        def done(*new: cycle.Step, next_phase: str = "") -> None:
            steps.extend(new)
            if bar.live.is_started:
                for s in new:
                    bar.console.print(f"{'[green]ok[/]' if s.ok else '[bold red]FAILED[/]'} {escape(s.step)}: "
                                      f"{escape(s.detail)}", soft_wrap=True)
            bar.update(phase, advance=1, description=next_phase)

        try:  # written after lab up: the sftp service writes the ssh_config the config names
            config_path = write_lab_config(lab)
            loaded = load(config_path)
        except OSError as exc:
            fail(f"cannot write the lab config: {exc}")
        except ConfigInvalid as exc:
            fail(f"the lab config is invalid: {exc}")
        done(cycle.Step("lab up", True, f"{len(statuses)} service(s) in {cycle.elapsed(started)}"),
             cycle.Step("config check", True, str(config_path)), next_phase="recording demo-started")
        first = record_demo_started(loaded, [s.name for s in statuses])
        cycle.prepare_data(lab.root)
        done(cycle.Step(first["step"], first["ok"], first["detail"]),
             next_phase="polling every device through the SNMP exporter")
        done(cycle.snmp_step(loaded, lab), next_phase="recording softflowd's exports and nfdump's totals")
        try:
            captures = record_captures(lab, lambda msg: bar.update(phase, description=msg))
        except LabError as exc:
            done(cycle.Step("netflow", False, str(exc)), next_phase="backups")
        else:
            bar.update(phase, description="replaying the recorded exports to the NetFlow collector")
            done(netflow_step(loaded, lab, captures), next_phase="backups")
        done(*cycle.backup_steps(loaded, lambda msg: bar.update(phase, description=msg)),
             next_phase="shipping and verifying the security log")
        done(*cycle.security_log_steps(loaded))
    ok = all(s.ok for s in steps)
    if as_json:
        print_json({"ok": ok, "steps": [s.to_json() for s in steps], "services": [s.to_json() for s in statuses]})
        ctx.exit(EXIT_OK if ok else EXIT_FAILED)
    # Failed steps first, each with its reason in the detail column.
    summary = failures_first([[s.step, "ok" if s.ok else "FAILED", s.detail] for s in steps], 1)
    print_table(out, SUMMARY_COLUMNS, summary, title=f"citydc demo: one operations cycle ({cycle.elapsed(started)})")
    snmp = next((s for s in steps if s.step == "snmp"), None)
    if snmp and snmp.rows:
        print_table(out, SNMP_COLUMNS, snmp_rows(snmp.rows), title="SNMP: one scrape per device (GET /snmp?target=…)")
    netflow = next((s for s in steps if s.step == "netflow"), None)
    if netflow and netflow.rows:
        print_table(out, NETFLOW_COLUMNS, netflow_rows(netflow.rows),
                    title="NetFlow: softflowd exports recorded now, replayed to citydc collect netflow, vs nfdump")
    print_status(statuses)
    out.print(f"Security log: [bold]citydc -c {escape(str(config_path))} log search --since 1h[/]. "
              "Stop the lab with [bold]citydc lab down[/].")
    ctx.exit(EXIT_OK if ok else EXIT_FAILED)


SUMMARY_COLUMNS = (Column("step"), Column("result", style=status_style), Column("detail", text=True))
SNMP_COLUMNS = (Column("device"), Column("site"), Column("address"), Column("up", style=lambda v: status_style(
    "up" if v == "1" else "down")), Column("interfaces", right=True), Column("varbinds", right=True),
    Column("reason", text=True))
NETFLOW_COLUMNS = (Column("exporter"), Column("site"), Column("format"), Column("records", right=True),
                   Column("bytes", right=True), Column("nfdump", style=status_style), Column("top protocol", drop=1),
                   Column("top agency", text=True))


def snmp_rows(rows: list[dict]) -> list[list[str]]:
    """Given the SNMP step's per-device rows, return the table's rows, devices that are down first."""
    table = [[r["device"], r["site"], r["address"], "1" if r["up"] else "0", str(r["interfaces"]),
              str(r["varbinds"]), r["reason"]] for r in rows]
    return sorted(table, key=lambda row: row[3] == "1")


def netflow_rows(rows: list[dict]) -> list[list[str]]:
    """Given the NetFlow step's per-exporter rows, return the table's rows, mismatches with nfdump first."""
    table = [[r["exporter"], r["site"], r["version"], str(r["records"]), f"{r['bytes']:,}",
              "=" if r["ok"] else f"≠ {r['nfdump_records']}, {r['nfdump_bytes']:,}", r["top_protocol"],
              r["top_agency"]] for r in rows]
    return sorted(table, key=lambda row: row[5] == "=")

"""``citydc backup configs``: device config backup to git, change detection, ``diff``.

Exit codes: 0 every device was backed up; 1 a device failed (its reason is on its row);
2 the config, a device or site name, or a secret reference is wrong.
"""

from __future__ import annotations

import click
from rich.markup import escape

from citydc.cli.output import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, err, examples, fail, load_config, out, print_json
from citydc.cli.table import Column, failures_first, print_table, status_style

__all__ = ["configs_group"]

COLUMNS = (Column("device"), Column("site"), Column("status", style=status_style), Column("+/-", right=True),
           Column("unsaved", drop=2), Column("drift", drop=3), Column("time", right=True, drop=1),
           Column("detail", text=True))


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def rows(results) -> list[list[str]]:
    """Given device results, return the table rows, failures first."""
    table = []
    for r in results:
        if not r.ok:
            detail = f"{r.reason}: {r.error}"
        elif r.status == "new":
            detail = "first backup"
        else:
            detail = ", ".join(r.sections)
        table.append([r.device, r.site, r.status, f"+{r.added} -{r.removed}" if r.ok else "-",
                      _yes_no(r.unsaved), _yes_no(r.drift), f"{r.seconds:.1f} s", detail])
    return failures_first(table, 2)


@click.group("configs", invoke_without_command=True,
             epilog=examples("citydc backup configs", "citydc backup configs --site siwei --json",
                             "citydc backup configs diff sw-siwei-core1"))
@click.option("--site", help="Only the devices of this site.")
@click.option("--device", help="Only this device.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-device results as JSON.")
@click.option("--wide", is_flag=True, help="Keep every column, however wide the table gets.")
@click.pass_context
def configs_group(ctx: click.Context, site: str | None, device: str | None, as_json: bool, wide: bool) -> None:
    """Fetch the running (and startup) config of every device with a login over SSH (netmiko), store
    them masked in a git repository, one commit per changed device, and report changes, unsaved
    changes and drift as security events. Host keys are pinned: a changed key fails the device.

    Exit codes: 0 every device was backed up; 1 a device failed; 2 a config or usage error.
    """
    if ctx.invoked_subcommand is not None:
        return
    from importlib.util import find_spec

    from citydc.backup import configs

    if find_spec("netmiko") is None:
        fail("netmiko is not installed", EXIT_CONFIG, hint="pip install 'citydc[configs]'")
    from citydc.seclog import emit_configured

    loaded = load_config(ctx)
    cfg = loaded.config
    try:
        selected = configs.targets(cfg, site=site, device=device)
    except configs.ConfigsError as exc:
        fail(str(exc), EXIT_CONFIG)
    if not selected:
        fail("no device to back up: give devices a login (devices[].login) and a netmiko_device_type", EXIT_CONFIG)
    textfile = loaded.resolve(cfg.backup.textfile_dir) if cfg.backup.textfile_dir else None
    try:
        result = configs.run(cfg, selected, emit=lambda evs: emit_configured(loaded, evs), textfile_dir=textfile)
    except (configs.GitFailed, OSError) as exc:
        fail(f"configs repository {cfg.backup.configs.repo_dir}: {exc}", EXIT_FAILED)
    if as_json:
        print_json(result.to_json())
    else:
        title = f"device configs ({len(result.results)} devices, {result.seconds:.1f} s)"
        print_table(out, COLUMNS, rows(result.results), title=title, wide=wide)
        for r in result.failed:
            err.print(f"[bold red]{escape(r.device)}:[/] {escape(r.reason)}: {escape(r.error)}")
    ctx.exit(EXIT_FAILED if result.failed else EXIT_OK)


@configs_group.command("diff", epilog=examples("citydc backup configs diff sw-siwei-core1",
                                                "citydc backup configs diff sw-siwei-core1 HEAD~3"))
@click.argument("device")
@click.argument("rev", required=False)
@click.pass_context
def diff_cmd(ctx: click.Context, device: str, rev: str | None) -> None:
    """Show DEVICE's stored config as a masked unified diff: its last change, or from REV (a commit or
    tag of the configs repository) to the current file."""
    from citydc.backup import configs

    loaded = load_config(ctx)
    try:
        text = configs.masked_diff(loaded.config, device, rev)
    except (configs.ConfigsError, configs.GitFailed) as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(text, nl=False)
    ctx.exit(EXIT_OK)

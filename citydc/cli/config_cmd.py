"""``citydc config``: check, show, sample and schema."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from citydc import files
from citydc.cli.output import config_path, err, examples, out, print_json, report_invalid
from citydc.cli.table import Column, print_table
from citydc.config import sample
from citydc.config.loader import ConfigInvalid, load, secret_refs


@click.group("config", epilog=examples("citydc config check citydc.yaml", "citydc config sample > citydc.yaml"))
def config_group() -> None:
    """Validate and inspect citydc.yaml."""


def _file_or_default(ctx: click.Context, file: str | None) -> str:
    """Given the FILE argument (or None), return the config file to read: FILE, else the global one."""
    return str(config_path(file or (ctx.find_root().obj or {}).get("config_path")))


@config_group.command("check", epilog=examples("citydc config check /etc/citydc/citydc.yaml", "citydc config check"))
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def check(ctx: click.Context, file: str | None, as_json: bool) -> None:
    """Validate FILE; report every error with its path and line; exit 2 if any.

    Without FILE, check the config every other command uses: --config, then $CITYDC_CONFIG,
    ./citydc.yaml, /etc/citydc/citydc.yaml."""
    file = _file_or_default(ctx, file)
    try:
        loaded = load(file)
    except ConfigInvalid as exc:
        report_invalid(exc, as_json)
    cfg = loaded.config
    warnings = [f"{path}: secret file {problem}" for path, ref in secret_refs(cfg)
                if (problem := ref.file_problem()) is not None]
    # The config names devices, addresses and where every secret lives: its owner's (and group's) only.
    if (problem := files.exposed(Path(file), group_read=True)) is not None:
        warnings.insert(0, f"{problem}; chmod 600 (or 640 with a dedicated group)")
    summary = {"file": file, "valid": True, "warnings": warnings, "sites": [s.id for s in cfg.sites],
               "devices": len(cfg.devices),
               "snmp_auth_profiles": len(cfg.snmp_auth), "backup_jobs": len(cfg.backup.jobs),
               "ldap_sources": len(cfg.ldap), "sso_sources": len(cfg.sso),
               "netflow_listeners": len(cfg.netflow.listeners), "security_log": cfg.security_log.sink.kind,
               "timezone": cfg.timezone}
    if as_json:
        print_json(summary)
        return
    rows = [[key.replace("_", " "), ", ".join(value) if isinstance(value, list) else str(value)]
            for key, value in summary.items() if key not in ("file", "valid", "warnings")]
    print_table(out, (Column("setting"), Column("value")), rows, title=f"{file}: valid")
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


@config_group.command("show", epilog=examples("citydc config show citydc.yaml", "citydc config show"))
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def show(ctx: click.Context, file: str | None) -> None:
    """Print FILE as validated, defaults filled in (secrets stay references).

    Without FILE, show the config every other command uses: --config, then $CITYDC_CONFIG,
    ./citydc.yaml, /etc/citydc/citydc.yaml."""
    file = _file_or_default(ctx, file)
    try:
        loaded = load(file)
    except ConfigInvalid as exc:
        report_invalid(exc)
    print_json(_without_url_passwords(loaded.config.model_dump(mode="json")))


def _without_url_passwords(value):
    """Given the dumped config, return it with the password of any URL's userinfo replaced by ***: the loader
    refuses them everywhere but in restic REST repository URLs (restic 0.14 has no other way to them)."""
    from citydc.backup.events import redact_url

    if isinstance(value, dict):
        return {k: _without_url_passwords(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_url_passwords(v) for v in value]
    return redact_url(value) if isinstance(value, str) and "@" in value and "://" in value else value


@config_group.command("sample", epilog=examples("citydc config sample > citydc.yaml"))
@click.option("--check", "check_only", is_flag=True,
              help="Exit 1 if the committed citydc/config/sample.yaml differs from what the models generate.")
def sample_cmd(check_only: bool) -> None:
    """Print the reference citydc.yaml of a two-site data centre: every section and option, with its
    default and a comment, generated from the models. It names files that must exist before `config check`
    passes (ssh_config, tls/city-ca.pem, secrets/backup_ed25519; its header says which fields): install
    them or edit those fields. The lab's own config: `citydc lab config`."""
    text = sample.reference_text()
    if check_only:
        same = sample.SAMPLE_PATH.read_text(encoding="utf-8") == text
        click.echo(f"{sample.SAMPLE_PATH}: {'up to date' if same else 'STALE, regenerate it'}")
        sys.exit(0 if same else 1)
    click.echo(text, nl=False)


@config_group.command("schema", epilog=examples("citydc config schema > citydc.schema.json"))
def schema() -> None:
    """Print the JSON Schema of citydc.yaml."""
    click.echo(sample.json_schema(), nl=False)

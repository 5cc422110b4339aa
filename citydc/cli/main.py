"""The root ``citydc`` command: global options and the group of each concern."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from typing import NoReturn

import click

from citydc import __version__, files
from citydc.cli import output
from citydc.cli.output import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED

# Each concern's commands load only when used: a backup run at 2 a.m. should not pay for
# importing the SNMP and NetFlow stacks. (name -> ("module:attribute", one-line help))
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("citydc.cli.config_cmd:config_group", "Validate and inspect citydc.yaml."),
    "lab": ("citydc.cli.lab_cmd:lab_group", "Run the lab's real services on loopback."),
    "collect": ("citydc.cli.collect_cmd:collect_group", "SNMP and NetFlow/IPFIX collectors for Prometheus."),
    "backup": ("citydc.cli.backup_cmd:backup_group", "restic jobs: off-site copy, checks, prune, restore drills."),
    "log": ("citydc.cli.log_cmd:log_group", "The security log: ship, search, stats, verify, saved questions."),
    "audit": ("citydc.cli.audit_cmd:audit_group", "LDAP and Keycloak audits, authentication-log audit, run diffs."),
    "alerts": ("citydc.cli.alerts_cmd:alerts_group", "Alertmanager config and the notification webhook."),
    "noc": ("citydc.cli.noc_cmd:noc_group", "The NOC wall page: alerts, site status, link utilisation."),
    "report": ("citydc.cli.report_cmd:report_group", "Monthly 95th-percentile bandwidth report from Prometheus."),
    "demo": ("citydc.cli.demo_cmd:demo", "Start the lab and run one operations cycle; show where all listens."),
    "play": ("citydc.cli.play_cmd:play_group", "Ansible playbooks for the load-balancer and virtualization tiers."),
}
PLANNED: dict[str, tuple[str, str]] = {
}
# Libraries whose warnings repeat what citydc reports itself: only their errors show without -v.
QUIET_LOGGERS = ("elastic_transport", "elasticsearch")


def _planned(name: str, summary: str, issue: str) -> click.Group:
    @click.group(name, help=f"{summary}\n\nNot built yet: arrives with {issue}.", short_help=summary)
    def group() -> None:
        pass

    return group


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; the help list needs no import."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*LAZY_COMMANDS, *PLANNED])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in PLANNED:
            return _planned(name, *PLANNED[name])
        if name not in LAZY_COMMANDS:
            return None
        module, _, attr = LAZY_COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, LAZY_COMMANDS[name][1] if name in LAZY_COMMANDS else PLANNED[name][0] + " (planned)")
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


ROOT_EPILOG = """\b
Shell completion (add to ~/.bashrc or ~/.zshrc):
  eval "$(_CITYDC_COMPLETE=bash_source citydc)"   # bash
  eval "$(_CITYDC_COMPLETE=zsh_source citydc)"    # zsh

\b
Examples:
  citydc config check citydc.yaml
  citydc backup status"""


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=ROOT_EPILOG)
@click.version_option(__version__, prog_name="citydc")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="CITYDC_CONFIG",
              help="citydc.yaml to use (default: $CITYDC_CONFIG, ./citydc.yaml, /etc/citydc/citydc.yaml).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """citydc: operations toolkit of the Siwei (四維) and Fengshan (鳳山) data centre.

    Exit codes: 0 ok, 1 findings or a failed job, 2 usage or config error, 130 interrupted,
    141 the reader of the output went away.
    """
    gc.enable()  # main() paused the cyclic collector while the command's modules were imported
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # The Elasticsearch client warns at each failed attempt ("Node ... has failed for 3 times in a row");
        # citydc's own error says what failed and after how many attempts in one line. Shown with -v.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def main() -> None:
    # Before anything is written: events, state, evidence and flow output are the owner's only
    # (docs/security.md; files.group relaxes it to 027 once the config is read).
    files.set_umask()
    # A write to stdout that fails (a reader gone away, a full disk, stdout closed) is told apart from a failing
    # file of the command, and reported by _run() as such.
    output.guard_stdout()
    # No pydantic plugin sees what citydc validates (the config, the webhook's alerts, the reviewed files),
    # as no ansible-runner plugin sees a run (citydc/play/runner.py). It also spares every command
    # pydantic's scan of every installed distribution's entry points when the first model is built
    # (about 0.015 s, profiled with this venv's 100 distributions).
    # Set for the child processes too, which is harmless: none of them is a pydantic program of ours.
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    # Importing a command's modules (pydantic models, ldap3, …) makes hundreds of thousands of objects that
    # the cyclic collector walks again and again: about 0.15 s of CPU of `citydc audit ldap`, measured.
    # Paused until the command is resolved and imported; the root callback turns it back on.
    gc.disable()
    sys.exit(_run())


def _run() -> int:
    """Run the command line; return the exit code. Click's standalone mode would end Ctrl-C with "Aborted!"
    and exit 1 (a failed job) and a closed pipe with exit 1: here every way a command ends is mapped."""
    try:
        try:
            code = cli.main(prog_name="citydc", standalone_mode=False)  # ctx.exit(n) returns n
        finally:
            sys.stdout.flush()  # a write that fails does so here, where it is reported, not in the teardown
    except click.Abort as exc:  # what click makes of Ctrl-C (and of an end of input at a prompt)
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted()
        output.err.print("Aborted!")
        return EXIT_FAILED
    except KeyboardInterrupt:  # outside click's own handling: while parsing, or as the command ends
        _interrupted()
    except click.ClickException as exc:  # usage errors: the usage line and the message, exit 2
        exc.show()
        return exc.exit_code
    except output.OutputError as exc:
        output.output_failed(exc)
    except Exception as exc:
        # A damaged spool state file stops any command that records events (backup run, play run, the
        # audits) the same way: its message names the file and how to recover, no traceback. (Imported
        # here, once a command has failed: not on every start.)
        from rich.markup import escape

        from citydc.seclog.chain import SpoolDamaged

        if not isinstance(exc, SpoolDamaged):
            raise
        output.err.print(f"[bold red]error:[/] the security log cannot record events: {escape(str(exc))}")
        return EXIT_FAILED
    return code if type(code) is int else 0  # a command's return value is not an exit code


def _interrupted() -> NoReturn:
    # Commands that stop cleanly on SIGINT (log ship --follow, alerts webhook, collect netflow, play run's
    # cancel) install their own handler or catch KeyboardInterrupt themselves, and end as they choose.
    output.err.print("interrupted")
    sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["EXIT_CONFIG", "cli", "main"]

"""The root ``citydc`` command: global options and the group of each concern."""

from __future__ import annotations

import logging
import sys

import click

from citydc import __version__
from citydc.cli.backup_cmd import backup_group
from citydc.cli.collect_cmd import collect_group
from citydc.cli.config_cmd import config_group
from citydc.cli.demo_cmd import demo
from citydc.cli.lab_cmd import lab_group
from citydc.cli.log_cmd import log_group
from citydc.cli.output import EXIT_CONFIG, err


def _planned(name: str, summary: str, issue: str) -> click.Group:
    @click.group(name, help=f"{summary}\n\nNot built yet: arrives with {issue}.")
    def group() -> None:
        pass

    return group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="citydc")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="CITYDC_CONFIG",
              help="citydc.yaml to use (default: $CITYDC_CONFIG, ./citydc.yaml, /etc/citydc/citydc.yaml).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """citydc: operations toolkit of the Siwei (四維) and Fengshan (鳳山) data centre.

    Exit codes: 0 ok, 1 findings or a failed job, 2 usage or config error.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


cli.add_command(config_group)
cli.add_command(lab_group)
cli.add_command(collect_group)
cli.add_command(_planned("play", "Ansible playbooks for the virtualization and load-balancer tiers.",
                         "the playbooks issue"))
cli.add_command(backup_group)
cli.add_command(_planned("audit", "LDAP and SSO audits of weak, stale and risky accounts and logins.",
                         "the SSO audit issue"))
cli.add_command(log_group)
cli.add_command(_planned("noc", "Alert rules, Alertmanager routing and the NOC page.", "the alerts issue"))
cli.add_command(_planned("report", "Reports for auditors and the NOC.", "the reports issue"))
cli.add_command(demo)


def main() -> None:
    try:
        cli.main(prog_name="citydc", standalone_mode=True)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["EXIT_CONFIG", "cli", "main"]

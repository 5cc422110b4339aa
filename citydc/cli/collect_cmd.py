"""``citydc collect``: the long-running collectors (SNMP exporter, NetFlow/IPFIX collector).

Each collector adds its own subcommand from its own module; this file only holds the group.
"""

from __future__ import annotations

import click

from citydc.cli.output import examples

__all__ = ["collect_group"]


@click.group("collect", epilog=examples("citydc collect snmp", "citydc collect netflow --site siwei"))
def collect_group() -> None:
    """SNMP and NetFlow/IPFIX collectors exporting bandwidth to Prometheus."""


from citydc.cli.collect_netflow import netflow  # noqa: E402 - subcommands attach after the group exists

collect_group.add_command(netflow)

from citydc.cli.collect_snmp import snmp, snmp_targets  # noqa: E402 - subcommands attach after the group exists

collect_group.add_command(snmp)
collect_group.add_command(snmp_targets)

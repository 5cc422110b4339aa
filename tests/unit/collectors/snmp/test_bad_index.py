"""A row whose index is not one ifIndex (a broken agent) is skipped and counted, never fails the poll.

IF-MIB's ifTable and ifXTable are indexed by one integer. An agent answering ``ifName.2.7`` used to put
the tuple ``(2, 7)`` among the integer ifIndexes, and sorting them failed the whole poll with the reason
``internal`` and a traceback in the log at every scrape.
"""

import asyncio
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.modules import BUILTIN_MODULES
from citydc.collectors.snmp.poller import walk_columns

IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)


def with_a_two_part_index(table):
    table = dict(table)
    table[(*IFX, 1, 2, 7)] = rfc1902.OctetString(b"Gi0/2.7")
    table[(*IFX, 6, 2, 7)] = rfc1902.Counter64(77)
    return table


def test_walk_skips_the_row_counts_it_and_reads_the_rows_after_it(agent_cls, make_table):
    agent = agent_cls(with_a_two_part_index(make_table(3)))
    res = asyncio.run(walk_columns(agent, {"ifName": (*IFX, 1)}, 2, time.monotonic() + 10))
    assert res.columns["ifName"] == {1: b"Gi0/1", 2: b"Gi0/2", 3: b"Gi0/3"}
    assert res.errors["bad_index"] == 1


def test_poll_exports_the_other_interfaces(agent_cls, make_table):
    agent = agent_cls(with_a_two_part_index(make_table(3)))
    result = asyncio.run(poll_target(agent, BUILTIN_MODULES["if_mib"], TargetState(), time.monotonic() + 10, 300))
    assert result.up, result.message
    assert [row.index for row in result.rows] == [1, 2, 3]
    assert result.errors["bad_index"] >= 2  # ifName.2.7 and ifHCInOctets.2.7

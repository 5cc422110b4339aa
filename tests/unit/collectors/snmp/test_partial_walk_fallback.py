"""A partial walk must not swap an interface's 64-bit counter for its 32-bit one (collector._counter_column).

When one request of a walk is lost (both tries) after data arrived, the walk keeps what it read and the
64-bit cells of the last interfaces are missing. Exporting their 32-bit values in place of the 64-bit
ones drops the counter (a reset to Prometheus) and the next full poll jumps back up: ``increase()`` then
counts the whole 64-bit value again, a false spike of terabytes. Those interfaces are holes for that
poll instead; an interface that never had a 64-bit value still falls back to 32 bits.
"""

import asyncio
import time

from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.modules import BUILTIN_MODULES
from citydc.collectors.snmp.poller import PollError

IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
INTERFACES = 30


def lossy_agent(agent_cls, table):
    """The fake agent, losing the requests whose numbers (1-based, over its life) are in ``lost``."""

    class Lossy(agent_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.lost: set[int] = set()

        def _check(self, request):
            self.requests.append(request)
            if len(self.requests) in self.lost:
                raise PollError("timeout", "request lost")

    return Lossy(table, max_varbinds=100)


def poll(agent, state):
    return asyncio.run(poll_target(agent, BUILTIN_MODULES["if_mib"], state, time.monotonic() + 10, 300.0))


def received(result):
    return {row.index: row.counters.get("receive_bytes") for row in result.rows}


def test_a_lost_request_leaves_holes_not_32bit_values_and_no_spike_after(agent_cls, make_table):
    agent = lossy_agent(agent_cls, make_table(INTERFACES, in_octets=50_000_000))
    state = TargetState()
    full = received(poll(agent, state))
    assert full[INTERFACES] == 50_000_000 * INTERFACES * 10  # the 64-bit column (10x the 32-bit one here)

    agent.lost = {len(agent.requests) + 2}  # the second request of the next poll's walk
    partial = poll(agent, state)
    assert partial.up and partial.errors["timeout"] == 1
    values = received(partial)
    assert all(values[i] in (full[i], None) for i in values), "a 32-bit value replaced a 64-bit one"
    assert None in values.values() and partial.errors["hole"] > 0
    assert not state.fallbacks, "a partial walk made every later poll walk the 32-bit columns"

    agent.lost = set()
    assert received(poll(agent, state)) == full


def test_an_interface_without_64bit_counters_still_falls_back(agent_cls, make_table):
    table = make_table(3, in_octets=1000)
    del table[(*IFX, 6, 2)]  # ifHCInOctets.2: this interface only has ifInOctets
    agent = lossy_agent(agent_cls, table)
    state = TargetState()
    assert received(poll(agent, state)) == {1: 10_000, 2: 2000, 3: 30_000}
    assert received(poll(agent, state)) == {1: 10_000, 2: 2000, 3: 30_000}
    assert "ifInOctets" in state.fallbacks


def test_a_lost_fallback_walk_keeps_what_the_main_walk_read(agent_cls, make_table):
    # A 32-bit-only device: its octets come from the fallback walk, after the main walk answered.
    agent = lossy_agent(agent_cls, make_table(3, hc=False, in_octets=1000))
    agent.lost = {3}  # 1: GET sysUpTime/ifNumber, 2: the main walk, 3: the fallback walk's first request
    state = TargetState()
    first = poll(agent, state)
    assert first.up and first.errors["timeout"] == 1 and first.requests == 3
    assert {row.index: row.oper_status for row in first.rows} == {1: 1, 2: 2, 3: 1}
    assert received(first) == {1: None, 2: None, 3: None}
    assert received(poll(agent, state)) == {1: 1000, 2: 2000, 3: 3000}  # tried again, then remembered
    assert "ifInOctets" in state.fallbacks

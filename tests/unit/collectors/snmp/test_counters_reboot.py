"""A reboot between two polls whose new sysUpTime is above the last one (citydc.collectors.snmp.counters).

A device in a crash loop, or one polled again only after it came back from a reboot, can answer an
uptime above the one of the last poll although it restarted meanwhile. Its uptime is then shorter than
the time since that poll. Treating its lower 32-bit counters as wraps would add up to 4 GB of traffic
that never happened; they must restart from the device's own value, counted as one reboot.
"""

import asyncio
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.counters import TargetCounters
from citydc.collectors.snmp.modules import BUILTIN_MODULES

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def test_uptime_shorter_than_the_time_since_the_last_poll_is_a_reboot():
    c = TargetCounters()
    c.observe_uptime(6_000, now=0.0)  # up for 60 s
    c.update("ifInOctets", 1, 3_000_000_000, 32)
    assert c.observe_uptime(9_000, now=300.0)  # up for 90 s, 300 s later: booted after the last poll
    assert c.update("ifInOctets", 1, 50_000, 32) == 50_000  # restarted, not wrapped
    assert c.resets["reboot"] == 1 and c.wraps == 0


def test_uptime_that_advanced_with_the_clock_across_a_long_gap_is_no_reboot():
    c = TargetCounters()
    c.observe_uptime(6_000, now=0.0)
    assert not c.observe_uptime(6_000 + 3_600 * 100, now=3_600.0)  # an hour of downtime of the exporter
    assert not c.resets


def test_an_agent_whose_uptime_stands_still_never_reboots():
    c = TargetCounters()
    for k in range(5):
        assert not c.observe_uptime(0, now=k * 600.0)  # some agents answer 0 forever
    c2 = TargetCounters()
    for k in range(5):
        assert not c2.observe_uptime(122, now=k * 600.0)
    assert not c.resets and not c2.resets


def test_a_poll_after_such_a_reboot_exports_the_device_value(agent_cls, make_table):
    now = [0.0]
    state = TargetState()
    table = make_table(1, hc=False, uptime=6_000)
    table[(*IF, 10, 1)] = rfc1902.Counter32(4_000_000_000)
    agent = agent_cls(table)
    module = BUILTIN_MODULES["if_mib"]

    def poll():
        return asyncio.run(poll_target(agent, module, state, time.monotonic() + 10, 300.0, clock=lambda: now[0]))

    assert poll().rows[0].counters["receive_bytes"] == 4_000_000_000
    now[0] = 300.0
    agent.table[UPTIME] = rfc1902.TimeTicks(9_000)
    agent.table[(*IF, 10, 1)] = rfc1902.Counter32(70_000)
    result = poll()
    assert result.rebooted
    assert result.rows[0].counters["receive_bytes"] == 70_000
    assert state.counters.resets["reboot"] == 1 and state.counters.wraps == 0

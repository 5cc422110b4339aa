"""A table that never ends, and a poll that runs out of its budget (findings-2 #16): what was read is
exported and flagged, and a failed poll still reports the requests and varbinds it cost."""

import asyncio
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp import poller
from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.modules import BUILTIN_MODULES

UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


class EndlessAgent:
    """Answers every GETBULK correctly, but each column's OIDs keep increasing: the table never ends."""

    def __init__(self, delay: float = 0.0):
        self.requests = 0
        self.delay = delay

    async def get_bulk(self, scalars, columns, max_repetitions):
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        out = [((*o, 0), rfc1902.TimeTicks(1000)) for o in scalars]
        current = list(columns)
        for _ in range(max_repetitions):
            for j, o in enumerate(current):
                col = o[:11] if o[:10] == (1, 3, 6, 1, 2, 1, 31, 1, 1, 1) else o[:10]
                index = o[len(col)] + 1 if len(o) > len(col) else 1
                current[j] = (*col, index)
                out.append((current[j], rfc1902.Counter64(index)))
        return out

    async def get(self, oids):
        self.requests += 1
        return [(o, rfc1902.TimeTicks(1000) if o == UPTIME else rfc1902.Integer(7)) for o in oids]


def run(agent, budget: float, module=BUILTIN_MODULES["if_mib_bytes"]):
    return asyncio.run(poll_target(agent, module, TargetState(), time.monotonic() + budget, 300.0))


def test_an_endless_table_stops_at_the_row_limit_and_exports_those_rows(monkeypatch):
    monkeypatch.setattr(poller, "MAX_ROWS", 300)
    agent = EndlessAgent()
    result = run(agent, budget=60.0)
    assert result.up
    assert result.errors["too_many_rows"] >= 1
    assert result.interfaces == 300
    assert result.requests == agent.requests and result.varbinds > 300


def test_a_poll_out_of_budget_after_answers_exports_what_it_read(monkeypatch):
    # The agent answers, slowly: the budget ends the walk, not a silent device.
    agent = EndlessAgent(delay=0.05)
    result = run(agent, budget=0.5)
    assert result.up and result.interfaces > 0
    assert result.errors["budget_exhausted"] == 1 and "timeout" not in result.errors
    assert result.requests == agent.requests


class SilentAfter(EndlessAgent):
    """Answers ``answered`` requests, then times out."""

    def __init__(self, answered: int):
        super().__init__()
        self.answered = answered

    async def get_bulk(self, scalars, columns, max_repetitions):
        if self.requests >= self.answered:
            self.requests += 1
            raise poller.PollError("timeout", "no SNMP response before timeout")
        return await super().get_bulk(scalars, columns, max_repetitions)

    async def get(self, oids):
        if self.requests >= self.answered:
            self.requests += 1
            raise poller.PollError("timeout", "no SNMP response before timeout")
        return await super().get(oids)


def test_a_timed_out_poll_counts_its_requests_and_varbinds():
    # ifNumber answered, then the first GETBULK of the walk times out: the poll is down, but not silent.
    agent = SilentAfter(answered=1)
    result = run(agent, budget=10.0)
    assert not result.up and result.reason == "timeout"
    assert result.requests == 2 and result.varbinds == 2


def test_a_dead_device_counts_the_request_it_sent():
    result = run(SilentAfter(answered=0), budget=10.0)
    assert not result.up and result.requests == 1 and result.varbinds == 0

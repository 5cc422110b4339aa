"""Fixtures for the SNMP collector unit tests: a fake agent at the Session boundary (GETNEXT/GETBULK semantics)."""

from __future__ import annotations

import bisect

import pytest
from pysnmp.proto import rfc1902, rfc1905

from citydc.collectors.snmp.poller import PollError

IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


class FakeAgent:
    """Answers like an agent; ``fail_after`` requests raise ``PollError(fail_reason)``."""

    def __init__(self, table: dict[tuple[int, ...], object], fail_after: int | None = None,
                 fail_reason: str = "timeout", max_varbinds: int = 1000):
        self.table = dict(table)
        self.fail_after, self.fail_reason = fail_after, fail_reason
        self.max_varbinds = max_varbinds
        self.requests: list[tuple] = []

    def _keys(self) -> list[tuple[int, ...]]:
        return sorted(self.table)

    def _next(self, oid: tuple[int, ...]) -> tuple[tuple[int, ...], object]:
        keys = self._keys()
        i = bisect.bisect_right(keys, oid)
        if i >= len(keys):
            return oid, rfc1905.endOfMibView
        return keys[i], self.table[keys[i]]

    def _check(self, request: tuple) -> None:
        self.requests.append(request)
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            raise PollError(self.fail_reason, f"fake {self.fail_reason}")

    async def get_bulk(self, scalars, columns, max_repetitions):
        self._check(("bulk", tuple(scalars), tuple(columns), max_repetitions))
        out = [self._next(o) for o in scalars]
        current = list(columns)
        for _ in range(max_repetitions):
            for j, o in enumerate(current):
                nxt = self._next(o)
                out.append(nxt)
                current[j] = nxt[0]
            if len(out) >= self.max_varbinds:
                break
        return out[:max(self.max_varbinds, len(scalars) + len(columns))]

    async def get(self, oids):
        self._check(("get", tuple(oids)))
        return [(o, self.table.get(o, rfc1905.noSuchInstance)) for o in oids]


def switch_table(n: int = 3, *, hc: bool = True, uptime: int = 1000, in_octets: int = 100,
                 aliases: dict[int, bytes] | None = None, skip: set[tuple[str, int]] = frozenset()) -> dict:
    """Return a small IF-MIB table: interfaces 1..n with names, aliases, counters."""
    t: dict[tuple[int, ...], object] = {UPTIME: rfc1902.TimeTicks(uptime)}
    for i in range(1, n + 1):
        cells = {
            (*IF, 2, i): rfc1902.OctetString(f"GigabitEthernet0/{i}"),
            (*IF, 5, i): rfc1902.Gauge32(1_000_000_000),
            (*IF, 7, i): rfc1902.Integer(1), (*IF, 8, i): rfc1902.Integer(1 if i % 2 else 2),
            (*IF, 10, i): rfc1902.Counter32(in_octets * i), (*IF, 16, i): rfc1902.Counter32(2 * in_octets * i),
            (*IF, 13, i): rfc1902.Counter32(0), (*IF, 14, i): rfc1902.Counter32(i),
            (*IF, 19, i): rfc1902.Counter32(0), (*IF, 20, i): rfc1902.Counter32(0),
            (*IFX, 1, i): rfc1902.OctetString(f"Gi0/{i}"),
            (*IFX, 15, i): rfc1902.Gauge32(1000),
            (*IFX, 18, i): rfc1902.OctetString((aliases or {}).get(i, f"port {i}".encode())),
            (*IFX, 19, i): rfc1902.TimeTicks(0),
        }
        if hc:
            for col in range(6, 14):
                cells[(*IFX, col, i)] = rfc1902.Counter64(in_octets * i * (10 if col in (6, 10) else 1))
        for (col_name, idx) in skip:
            if idx == i:
                cells = {k: v for k, v in cells.items() if k[:-1] != col_name}
        t.update(cells)
    return t


@pytest.fixture
def agent_cls() -> type[FakeAgent]:
    return FakeAgent


@pytest.fixture
def make_table():
    return switch_table

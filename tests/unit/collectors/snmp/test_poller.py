"""GETBULK multi-column walks, GETs, value conversion and error reasons (citydc.collectors.snmp.poller)."""

import asyncio
import time

import pytest
from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
from pysnmp.proto import rfc1902, rfc1905

from citydc.collectors.snmp.poller import (
    PollError,
    auth_data,
    get_columns,
    parse_address,
    rows_to_ask,
    to_python,
    walk_columns,
)
from citydc.config.models import SnmpV2c, SnmpV3

IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def run(coro):
    return asyncio.run(coro)


def deadline(seconds: float = 10) -> float:
    return time.monotonic() + seconds


def test_walk_reads_several_columns_together_and_stops_at_each_column_end(agent_cls, make_table):
    agent = agent_cls(make_table(5))
    cols = {"ifName": (*IFX, 1), "ifHCInOctets": (*IFX, 6)}
    res = run(walk_columns(agent, cols, 2, deadline(), scalars=(UPTIME,)))
    assert res.columns["ifName"] == {i: f"Gi0/{i}".encode() for i in range(1, 6)}
    assert res.columns["ifHCInOctets"] == {i: 1000 * i for i in range(1, 6)}
    assert res.scalars[UPTIME] == 1000
    # 5 rows at 2 per request: 3 requests, each carrying both columns
    assert len(agent.requests) == 3
    assert agent.requests[0][1] == (UPTIME[:-1],)  # non-repeater asks for the parent (GETNEXT semantics)
    assert all(len(r[2]) == 2 for r in agent.requests[:2])


def test_walk_with_holes_keeps_what_exists(agent_cls, make_table):
    table = make_table(4, skip={((*IFX, 6), 2), ((*IFX, 6), 3)})
    res = run(walk_columns(agent_cls(table), {"ifHCInOctets": (*IFX, 6)}, 10, deadline()))
    assert sorted(res.columns["ifHCInOctets"]) == [1, 4]


def test_walk_of_a_missing_column_is_empty_not_an_error(agent_cls, make_table):
    res = run(walk_columns(agent_cls(make_table(3, hc=False)), {"ifHCInOctets": (*IFX, 6)}, 10, deadline()))
    assert res.columns["ifHCInOctets"] == {}
    assert not res.errors


def test_walk_at_end_of_mib_view_stops(agent_cls):
    table = {(*IFX, 18, 1): rfc1902.OctetString(b"last")}
    res = run(walk_columns(agent_cls(table), {"ifAlias": (*IFX, 18)}, 10, deadline()))
    assert res.columns["ifAlias"] == {1: b"last"}


def test_first_request_timeout_raises_with_reason(agent_cls, make_table):
    with pytest.raises(PollError) as exc:
        run(walk_columns(agent_cls(make_table(3), fail_after=0), {"ifName": (*IFX, 1)}, 1, deadline()))
    assert exc.value.reason == "timeout"


def test_auth_failure_raises_with_reason(agent_cls, make_table):
    with pytest.raises(PollError) as exc:
        run(walk_columns(agent_cls(make_table(3), fail_after=0, fail_reason="auth"), {"ifName": (*IFX, 1)}, 1,
                         deadline()))
    assert exc.value.reason == "auth"


def test_timeout_after_some_data_is_partial_with_error_count(agent_cls, make_table):
    res = run(walk_columns(agent_cls(make_table(6), fail_after=1), {"ifName": (*IFX, 1)}, 2, deadline()))
    assert res.columns["ifName"] == {1: b"Gi0/1", 2: b"Gi0/2"}
    assert res.errors["timeout"] == 1


def test_truncated_response_with_no_rows_ends_the_walk(agent_cls, make_table):
    class Empty(agent_cls):
        async def get_bulk(self, scalars, columns, max_repetitions):
            self.requests.append(1)
            return []

    res = run(walk_columns(Empty(make_table(3)), {"ifName": (*IFX, 1)}, 5, deadline()))
    assert res.errors["truncated"] == 1 and res.columns["ifName"] == {}


def test_agent_returning_non_increasing_oids_cannot_loop(agent_cls, make_table):
    class Stuck(agent_cls):
        async def get_bulk(self, scalars, columns, max_repetitions):
            self.requests.append(1)
            return [((*IFX, 1, 1), rfc1902.OctetString(b"x"))]

    agent = Stuck(make_table(3))
    res = run(walk_columns(agent, {"ifName": (*IFX, 1)}, 5, deadline()))
    assert res.errors["oid_not_increasing"] == 1
    assert len(agent.requests) == 2


def test_walk_respects_its_deadline(agent_cls, make_table):
    with pytest.raises(PollError) as exc:
        run(walk_columns(agent_cls(make_table(3)), {"ifName": (*IFX, 1)}, 1, time.monotonic() - 1))
    assert exc.value.reason == "timeout"


def test_get_columns_counts_no_such_instance(agent_cls, make_table):
    res = run(get_columns(agent_cls(make_table(3)), {"ifHCInOctets": (*IFX, 6)}, [1, 3, 9], deadline()))
    assert res.columns["ifHCInOctets"] == {1: 1000, 3: 3000}
    assert res.errors["no_such"] == 1


def test_to_python_handles_snmp_types():
    assert to_python(rfc1902.Counter64(2**64 - 1)) == 2**64 - 1
    assert to_python(rfc1902.Counter32(7)) == 7
    assert to_python(rfc1902.OctetString(b"\xff\xfeab")) == b"\xff\xfeab"
    assert to_python(rfc1905.noSuchObject) is None
    assert to_python(rfc1905.noSuchInstance) is None
    assert to_python(rfc1905.endOfMibView) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.1", ("10.0.0.1", 161)), ("10.0.0.1:1161", ("10.0.0.1", 1161)),
    ("sw1.example", ("sw1.example", 161)), ("[::1]:1161", ("::1", 1161)), ("::1", ("::1", 161)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("bad", ["", ":161", "h:0", "h:99999", "h:x"])
def test_parse_address_rejects(bad):
    with pytest.raises(ValueError):
        parse_address(bad)


def test_auth_data_resolves_secrets_from_environment():
    v2 = auth_data(SnmpV2c(community="env:COMM"), {"COMM": "s3cret"})
    assert isinstance(v2, CommunityData) and v2.message_processing_model == 1
    assert v2.communityName == "s3cret"
    v3 = auth_data(SnmpV3(username="u", auth_protocol="SHA512", auth_key="env:A", priv_protocol="AES256",
                          priv_key="env:P"), {"A": "authkey123", "P": "privkey123"})
    assert isinstance(v3, UsmUserData)
    assert v3.userName == "u" and v3.authentication_key == "authkey123" and v3.privacy_key == "privkey123"
    assert v3.security_level == "authPriv"


def test_known_indexes_ask_for_the_rows_left_and_one_more_to_see_the_end(agent_cls, make_table):
    agent = agent_cls(make_table(7))
    cols = {"ifName": (*IFX, 1), "ifHCInOctets": (*IFX, 6)}
    res = run(walk_columns(agent, cols, 25, deadline(), known_indexes=list(range(1, 8))))
    assert len(res.columns["ifName"]) == 7 and len(res.columns["ifHCInOctets"]) == 7
    assert [r[3] for r in agent.requests] == [8]  # one request: 7 rows and the end of each column
    assert res.varbinds == 16


@pytest.mark.parametrize(("rows", "hint", "requests"), [
    (30, 30, [25, 6]),        # a right ifNumber: the second request reads one row past the end
    (42, 33, [25, 9, 25]),    # ifNumber 33 for 42 rows (HPE ProCurve 6120XG): walked on to the end
    (61, 143, [25, 25, 25]),  # ifNumber 143 for 61 rows (Juniper MX960): stops at the real end
    (25, 25, [25, 1]),        # max-repetitions ends exactly at the hint: one row to see the end
])
def test_ifnumber_is_a_hint_every_column_is_walked_to_its_end(agent_cls, make_table, rows, hint, requests):
    agent = agent_cls(make_table(rows))
    res = run(walk_columns(agent, {"ifName": (*IFX, 1), "ifAlias": (*IFX, 18)}, 25, deadline(), row_hint=hint))
    assert sorted(res.columns["ifName"]) == sorted(res.columns["ifAlias"]) == list(range(1, rows + 1))
    assert [r[3] for r in agent.requests] == requests


@pytest.mark.parametrize("known", [[1, 2, 3], [1, 2], [2, 3, 4, 5, 6]])
def test_rows_past_the_known_ones_are_walked_too(agent_cls, make_table, known):
    agent = agent_cls(make_table(9))
    res = run(walk_columns(agent, {"ifName": (*IFX, 1), "ifHCInOctets": (*IFX, 6)}, 25, deadline(),
                           known_indexes=known))
    assert sorted(res.columns["ifName"]) == sorted(res.columns["ifHCInOctets"]) == list(range(1, 10))


def test_rows_to_ask():
    assert rows_to_ask(7, 25) == 8 and rows_to_ask(30, 25) == 25
    assert rows_to_ask(0, 25) == 1  # exactly the expected rows read: one more shows the end
    assert rows_to_ask(-1, 25) == 25  # more rows than expected: their number is unknown

"""The fast v2c session over a real loopback UDP socket (citydc.collectors.snmp.v2c).

The responder at the other end decodes our requests with pysnmp/pyasn1 and answers with
messages pysnmp encodes, from the same fake agent the walk tests use; so a walk over the fast
session must read exactly what the walk over the fake agent reads. Faults (lost, stale,
truncated, garbage answers, error-status) are injected at the socket.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from citydc.collectors.snmp.poller import PollError, walk_columns
from citydc.collectors.snmp.v2c import V2cSession

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
COMMUNITY = "unit-test-community"


class Responder(asyncio.DatagramProtocol):
    """A v2c agent on 127.0.0.1 built from pysnmp's codec; ``script`` holds per-request faults."""

    def __init__(self, agent, script=()):
        self.agent = agent
        self.script = list(script)  # per request: "drop", "stale", "garbage", "truncate", "toobig" or None
        self.requests: list[tuple[int, str, bytes]] = []
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
        pdu = V2C.apiMessage.get_pdu(msg)
        rid = int(V2C.apiPDU.get_request_id(pdu))
        community = bytes(V2C.apiMessage.get_community(msg))
        kind = "bulk" if pdu.isSameTypeWith(V2C.GetBulkRequestPDU()) else "get"
        self.requests.append((rid, kind, community))
        fault = self.script.pop(0) if self.script else None
        if fault == "drop":
            return
        task = asyncio.ensure_future(self._answer(pdu, rid, kind, fault, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, pdu, rid, kind, fault, addr):
        oids = [tuple(o) for o, _ in V2C.apiPDU.get_varbinds(pdu)]
        if kind == "bulk":
            nr = int(V2C.apiBulkPDU.get_non_repeaters(pdu))
            varbinds = await self.agent.get_bulk(oids[:nr], oids[nr:], int(V2C.apiBulkPDU.get_max_repetitions(pdu)))
        else:
            varbinds = await self.agent.get(oids)
        out = self._encode(rid, varbinds, 1 if fault == "toobig" else 0)
        if fault == "stale":
            self.transport.sendto(self._encode(rid - 1, varbinds[:1], 0), addr)
        if fault == "garbage":
            out = b"\x30\x03\x02\x01\x07"
        if fault == "truncate":
            out = out[:len(out) // 2]
        self.transport.sendto(out, addr)

    @staticmethod
    def _encode(rid, varbinds, status):
        resp = V2C.GetResponsePDU()
        V2C.apiPDU.set_defaults(resp)
        V2C.apiPDU.set_request_id(resp, rid)
        V2C.apiPDU.set_error_status(resp, status)
        V2C.apiPDU.set_error_index(resp, 1 if status else 0)
        V2C.apiPDU.set_varbinds(resp, varbinds)
        msg = V2C.Message()
        V2C.apiMessage.set_defaults(msg)
        V2C.apiMessage.set_community(msg, COMMUNITY)
        V2C.apiMessage.set_pdu(msg, resp)
        return encoder.encode(msg)


def with_session(agent, body, script=(), timeout=0.3, retries=1):
    """Run ``body(session, responder)`` against a Responder on a loopback port; return its result."""
    async def main():
        loop = asyncio.get_running_loop()
        responder = Responder(agent, script)
        transport, _ = await loop.create_datagram_endpoint(lambda: responder, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        session = await V2cSession.open(COMMUNITY, "127.0.0.1", port, timeout, retries)
        try:
            return await asyncio.wait_for(body(session, responder), 10)
        finally:
            session.close()
            transport.close()

    return asyncio.run(main())


def test_walk_over_udp_reads_exactly_what_the_fake_agent_holds(agent_cls, make_table):
    cols = {"ifName": (*IFX, 1), "ifHCInOctets": (*IFX, 6), "ifAlias": (*IFX, 18)}
    table = make_table(30)
    direct = asyncio.run(walk_columns(agent_cls(table), cols, 7, time.monotonic() + 10, scalars=(UPTIME,)))

    async def body(session, responder):
        return await walk_columns(session, cols, 7, time.monotonic() + 10, scalars=(UPTIME,)), responder

    via_udp, responder = with_session(agent_cls(table), body)
    assert via_udp.columns == direct.columns and via_udp.scalars == direct.scalars
    assert len(via_udp.columns["ifName"]) == 30 and via_udp.scalars[UPTIME] == 1000
    assert (via_udp.varbinds, via_udp.requests, via_udp.errors) == (direct.varbinds, direct.requests, direct.errors)
    assert {c for _, _, c in responder.requests} == {COMMUNITY.encode()}


def test_get_returns_no_such_instance_as_a_counted_hole(agent_cls, make_table):
    from citydc.collectors.snmp.poller import get_columns

    async def body(session, _):
        return await get_columns(session, {"ifHCInOctets": (*IFX, 6)}, [1, 3, 9], time.monotonic() + 10)

    res = with_session(agent_cls(make_table(3)), body)
    assert res.columns["ifHCInOctets"] == {1: 1000, 3: 3000} and res.errors["no_such"] == 1


def test_lost_request_is_resent_with_the_same_request_id(agent_cls, make_table):
    async def body(session, responder):
        return await session.get([UPTIME]), responder

    varbinds, responder = with_session(agent_cls(make_table(1)), body, script=["drop"])
    assert varbinds == [(UPTIME, 1000)]
    assert len(responder.requests) == 2 and responder.requests[0][0] == responder.requests[1][0]


def test_stale_answer_with_another_request_id_is_ignored(agent_cls, make_table):
    async def body(session, _):
        return await session.get([UPTIME, (*IFX, 1, 1)])

    assert with_session(agent_cls(make_table(1)), body, script=["stale"]) == [(UPTIME, 1000), ((*IFX, 1, 1), b"Gi0/1")]


@pytest.mark.parametrize(("fault", "reason"), [("garbage", "decode"), ("truncate", "truncated")])
def test_malformed_answer_fails_at_once_with_a_reason(agent_cls, make_table, fault, reason):
    # The retry would be answered correctly: a session that skipped the bad packet and waited for its
    # timeout would resend and succeed. Failing with the decoder's reason after exactly one request
    # proves it failed on the bad packet itself. (How long that takes is measured by bench/snmp.py.)
    async def body(session, responder):
        with pytest.raises(PollError) as exc:
            await session.get([UPTIME])
        return exc.value, len(responder.requests)

    error, requests = with_session(agent_cls(make_table(1)), body, script=[fault], timeout=2.0, retries=1)
    assert error.reason == reason and "malformed SNMP response" in str(error)
    assert requests == 1


def test_malformed_answer_after_data_keeps_what_was_read(agent_cls, make_table):
    async def body(session, _):
        return await walk_columns(session, {"ifName": (*IFX, 1)}, 2, time.monotonic() + 10)

    res = with_session(agent_cls(make_table(6)), body, script=[None, "truncate"])
    assert res.columns["ifName"] == {1: b"Gi0/1", 2: b"Gi0/2"} and res.errors["truncated"] == 1


def test_error_status_names_toobig_and_the_walk_halves_repetitions(agent_cls, make_table):
    async def body(session, responder):
        return await walk_columns(session, {"ifName": (*IFX, 1)}, 8, time.monotonic() + 10), responder

    res, responder = with_session(agent_cls(make_table(4)), body, script=["toobig"])
    assert len(res.columns["ifName"]) == 4 and len(responder.requests) >= 2

    async def direct(session, _):
        with pytest.raises(PollError) as exc:
            await session.get([UPTIME])
        return exc.value

    error = with_session(agent_cls(make_table(1)), direct, script=["toobig"])
    assert error.reason == "error_status" and "tooBig at varbind 1" in str(error)


def test_silent_agent_times_out_after_every_try_and_never_shows_the_community(agent_cls, make_table):
    # Each try waits ``timeout`` before the next: bench/snmp.py reports the time the three tries take.
    async def body(session, responder):
        with pytest.raises(PollError) as exc:
            await session.get([UPTIME])
        return exc.value, responder, repr(session)

    error, responder, text = with_session(agent_cls(make_table(1)), body, script=["drop"] * 3, timeout=0.2,
                                          retries=2)
    assert error.reason == "timeout" and len(responder.requests) == 3
    assert len({rid for rid, _, _ in responder.requests}) == 1  # every try resends the same request-id
    assert COMMUNITY not in str(error) and COMMUNITY not in text


def test_unresolvable_host_is_a_resolve_error():
    # The resolver is the loop's getaddrinfo; this loop's fails as a DNS miss would (no query leaves the machine).
    async def no_such_host(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    loop = asyncio.new_event_loop()
    loop.getaddrinfo = no_such_host
    try:
        with pytest.raises(PollError) as exc:
            loop.run_until_complete(V2cSession.open(COMMUNITY, "sw-unknown.example", 161, 0.1, 0))
    finally:
        loop.close()
    assert exc.value.reason == "resolve" and "sw-unknown.example" in str(exc.value)
    assert COMMUNITY not in str(exc.value)

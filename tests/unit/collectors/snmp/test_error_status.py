"""An agent's error-status names the OID it refused, on both paths (v2c.py, poller.Session).

A device answering genErr for one cell of one column fails the poll: the message (logged with the
device) must say which OID, so the engineer can leave that column out of the module.
"""

from __future__ import annotations

import asyncio

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1905

from citydc.collectors.snmp.poller import PollError, Session, error_status_message
from citydc.collectors.snmp.v2c import V2cSession

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
COMMUNITY = "unit-test-community"
UPTIME_PARENT = (1, 3, 6, 1, 2, 1, 1, 3)
HC_IN = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
HC_OUT = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
GEN_ERR = 5


class GenErrAgent(asyncio.DatagramProtocol):
    """Answers every request with genErr at the error-index it is given (1-based, as on the wire)."""

    def __init__(self, error_index: int):
        self.error_index = error_index

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
        pdu = V2C.apiMessage.get_pdu(msg)
        resp = V2C.GetResponsePDU()
        V2C.apiPDU.set_defaults(resp)
        V2C.apiPDU.set_request_id(resp, V2C.apiPDU.get_request_id(pdu))
        V2C.apiPDU.set_error_status(resp, GEN_ERR)
        V2C.apiPDU.set_error_index(resp, self.error_index)
        V2C.apiPDU.set_varbinds(resp, [(o, rfc1905.unSpecified) for o, _ in V2C.apiPDU.get_varbinds(pdu)])
        out = V2C.Message()
        V2C.apiMessage.set_defaults(out)
        V2C.apiMessage.set_community(out, COMMUNITY)
        V2C.apiMessage.set_pdu(out, resp)
        self.transport.sendto(encoder.encode(out), addr)


def fast_v2c_error(error_index: int) -> PollError:
    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: GenErrAgent(error_index),
                                                           local_addr=("127.0.0.1", 0))
        session = await V2cSession.open(COMMUNITY, "127.0.0.1", transport.get_extra_info("sockname")[1], 2.0, 0)
        try:
            with pytest.raises(PollError) as exc:
                await session.get_bulk([UPTIME_PARENT], [HC_IN, HC_OUT], 3)
            return exc.value
        finally:
            session.close()
            transport.close()

    return asyncio.run(main())


def test_message_names_the_oid_at_the_error_index():
    oids = [UPTIME_PARENT, HC_IN, HC_OUT]
    expected = "agent answered genErr at varbind 2 (asked for 1.3.6.1.2.1.31.1.1.1.6)"
    assert error_status_message("genErr", 2, oids) == expected


def test_message_without_a_varbind_names_none():
    # tooBig carries error-index 0; an index past the request is the agent's mistake, not a crash here.
    assert error_status_message("tooBig", 0, [HC_IN]) == "agent answered tooBig at varbind 0"
    assert error_status_message("genErr", 9, [HC_IN]) == "agent answered genErr at varbind 9"


def test_fast_v2c_path_names_the_refused_oid_and_never_the_community():
    error = fast_v2c_error(3)
    assert error.reason == "error_status"
    assert str(error) == "agent answered genErr at varbind 3 (asked for 1.3.6.1.2.1.31.1.1.1.10)"
    assert COMMUNITY not in str(error)


def test_pysnmp_path_names_the_refused_oid():
    async def answer():
        return None, rfc1905.errorStatus.clone(GEN_ERR), 2, []

    async def main():
        session = Session(None, None, None)
        with pytest.raises(PollError) as exc:
            await session._request(answer(), [UPTIME_PARENT, HC_IN])
        return exc.value

    error = asyncio.run(main())
    assert error.reason == "error_status"
    assert str(error) == "agent answered genErr at varbind 2 (asked for 1.3.6.1.2.1.31.1.1.1.6)"

"""The fast SNMPv2c session: GET and GETBULK over one connected asyncio UDP socket, decoded by ``ber``.

It offers the same two calls as ``poller.Session`` (``get_bulk``, ``get``), so the walk logic does
not know which path it runs on; values come back as plain Python values (see ``ber``) instead of
pyasn1 objects. One socket per poll, connected to the agent: the kernel drops datagrams from any
other address, and every poll has its own receive buffer. Each request waits ``timeout`` seconds
per try and is resent ``retries`` times with the same request-id, so a late answer to an earlier
try still counts; an answer with another request-id (a stale reply) is ignored. A malformed
answer fails the request at once with ``PollError`` reason ``truncated`` or ``decode``.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Sequence

from citydc.collectors.snmp import ber
from citydc.collectors.snmp.poller import PollError, error_status_message

__all__ = ["PATH", "V2cSession"]

PATH = "fast_v2c"  # the value of the exporter's ``path`` label for polls on this session


class _TryTimedOut(Exception):
    """One try of a request got no answer within its timeout."""


class _Protocol(asyncio.DatagramProtocol):
    """Hands the answer to the one request in flight (a walk sends its requests one after another)."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None
        self.request_id = 0
        self.stale = 0  # answers to requests already answered or abandoned

    def datagram_received(self, data: bytes, addr: object) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.stale += 1
            return
        try:
            response = ber.decode_response(data)
        except ber.BerError as exc:
            waiter.set_exception(PollError(exc.reason, f"malformed SNMP response: {exc}"))
            return
        if response.request_id != self.request_id:
            self.stale += 1
            return
        waiter.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on the connected socket: keep waiting, a dead device is a timeout
        # (as with pysnmp), and the agent may still answer a retry.
        pass


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(_TryTimedOut())


class V2cSession:
    """One v2c agent reached with one community; close() when the poll is done."""

    path = PATH

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol, community: bytes,
                 timeout: float, retries: int):
        self._transport = transport
        self._protocol = protocol
        self._community = community  # never logged: no __repr__ shows it, errors never quote a packet
        self.timeout = timeout
        self.retries = retries
        # Unpredictable start: with the connected socket, an off-path spoofer must also guess it.
        self._next_id = secrets.randbelow(ber.INT32_MAX)

    def __repr__(self) -> str:
        return f"V2cSession(timeout={self.timeout}, retries={self.retries})"

    @classmethod
    async def open(cls, community: str, host: str, port: int, timeout: float, retries: int) -> V2cSession:
        """Given the revealed community and the agent's address, return a session.

        Raise PollError('resolve') if the host name does not resolve or no socket can reach it.
        """
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(_Protocol, remote_addr=(host, port))
        except (OSError, socket.gaierror) as exc:
            raise PollError("resolve", f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
        return cls(transport, protocol, community.encode(), timeout, retries)

    def close(self) -> None:
        self._transport.close()

    def _request_id(self) -> int:
        self._next_id = self._next_id % ber.INT32_MAX + 1
        return self._next_id

    async def _exchange(self, request_id: int, packet: bytes, oids: Sequence[tuple[int, ...]]
                        ) -> list[tuple[tuple[int, ...], object]]:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        for _ in range(self.retries + 1):
            waiter = loop.create_future()
            protocol.waiter, protocol.request_id = waiter, request_id
            self._transport.sendto(packet)
            timer = loop.call_later(self.timeout, _expire, waiter)
            try:
                response = await waiter
            except _TryTimedOut:
                continue
            finally:
                timer.cancel()
                protocol.waiter = None
            if response.error_status:
                raise PollError("error_status", error_status_message(response.error_name, response.error_index,
                                                                     oids))
            return response.varbinds
        raise PollError("timeout", "no SNMP response before timeout (down, filtered or wrong community)")

    async def get_bulk(self, scalars: Sequence[tuple[int, ...]], columns: Sequence[tuple[int, ...]],
                       max_repetitions: int) -> list[tuple[tuple[int, ...], object]]:
        """Given non-repeater OIDs and repeated OIDs, return the GETBULK response varbinds in order.

        Raise PollError (timeout, error_status, truncated, decode) if the agent gives no usable answer.
        """
        rid = self._request_id()
        oids = (*scalars, *columns)
        return await self._exchange(rid, ber.encode_get_bulk(self._community, rid, len(scalars), max_repetitions,
                                                             oids), oids)

    async def get(self, oids: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], object]]:
        """Given OIDs, return the GET response varbinds. Raise PollError as get_bulk does."""
        rid = self._request_id()
        return await self._exchange(rid, ber.encode_get(self._community, rid, oids), oids)

"""The receive stage: a UDP socket with a large receive buffer, drained without blocking, and
the kernel's drop count for that socket (from /proc/net/udp, read only when metrics are scraped).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = ["drain", "kernel_drops", "open_socket", "receive_buffer"]

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_DATAGRAM = 65535


def open_socket(address: str, port: int, receive_buffer_bytes: int) -> socket.socket:
    """Given an address, a port and the wanted SO_RCVBUF, return a bound non-blocking UDP socket.

    As root, SO_RCVBUFFORCE goes past net.core.rmem_max; otherwise the kernel caps the buffer
    at rmem_max (receive_buffer() tells what was granted). Raise OSError if the bind fails.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer_bytes)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def receive_buffer(sock: socket.socket) -> int:
    """Return the receive buffer the kernel granted (it reports twice the requested size)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def drain(sock: socket.socket, handle: Callable[[bytes, str], None], limit: int = 512) -> int:
    """Given a non-blocking socket and handle(datagram, exporter address), pass it up to
    ``limit`` waiting datagrams; return how many."""
    recv = sock.recvfrom
    n = 0
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while n < limit:
            data, addr = recv(MAX_DATAGRAM)
            handle(data, addr[0])
            n += 1
    return n


def kernel_drops(sock: socket.socket, proc_root: Path = Path("/proc")) -> int | None:
    """Given a socket, return the datagrams the kernel dropped for it (receive buffer full),
    from the ``drops`` column of /proc/net/udp or udp6; None if the socket is not listed."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for name in ("udp", "udp6"):
        try:
            lines = (proc_root / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] == inode:
                return int(fields[-1])
    return None

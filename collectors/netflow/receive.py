"""The receive stage: a UDP socket with a large receive buffer, read without blocking, and
the kernel's drop count for that socket (from /proc/net/udp, read only when metrics are scraped).

The hot path uses ``BatchReceiver``: many datagrams per system call (Linux ``recvmmsg``) into one
preallocated buffer of fixed-size slots, so the decoder can read all their headers and records in
bulk instead of a Python step per datagram. The call and its bookkeeping (lengths, exporter
addresses) run in the compiled extension when it is built (with v5 at 500k records/s, this
bookkeeping in numpy and ctypes was about 0.01 of the collector's 0.077 CPU s per million records),
else through ctypes, else (non-Linux) as a recvfrom loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from citydc.collectors.netflow import _fastflow
except ImportError:  # built without a C compiler: recvmmsg through ctypes
    _fastflow = None

__all__ = ["BatchReceiver", "Received", "kernel_drops", "open_socket", "receive_buffer"]

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


@dataclass
class Received:
    """Datagrams of one receive call: datagram i is ``buf[i * slot : i * slot + lengths[i]]``;
    its exporter address is ``exporters[exporter_index[i]]``."""

    buf: np.ndarray              # flat uint8, at least n * slot bytes
    slot: int
    lengths: np.ndarray          # int64, one per datagram
    exporter_index: np.ndarray   # intp, one per datagram
    exporters: list[str]

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def of(cls, datagrams: list[tuple[bytes, str]]) -> Received:
        """Given (datagram, exporter address) pairs, return them as one Received (for tests and feed())."""
        slot = max([len(d) for d, _ in datagrams] + [0]) + 32  # headroom: header views may read past short data
        buf = np.zeros(max(len(datagrams), 1) * slot, np.uint8)
        names: dict[str, int] = {}
        index = []
        for i, (data, address) in enumerate(datagrams):
            buf[i * slot:i * slot + len(data)] = np.frombuffer(data, np.uint8)
            index.append(names.setdefault(address, len(names)))
        return cls(buf, slot, np.array([len(d) for d, _ in datagrams], np.int64), np.array(index, np.intp),
                   list(names))


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.c_void_p),
                ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p),
                ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MSG_DONTWAIT = 0x40
_NAME_LEN = 28  # sizeof(struct sockaddr_in6), enough for either family


def _recvmmsg() -> Callable | None:
    # None where libc has no recvmmsg (non-Linux): BatchReceiver then loops over recvfrom_into.
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class BatchReceiver:
    """Given a non-blocking UDP socket, receive up to ``slots`` datagrams per call into a
    preallocated buffer.

    Each datagram lands in a compact ``slot_bytes`` slot (2 KiB: any MTU-sized export), so a
    batch's headers and records sit close together in memory; the kernel writes the rest of a
    longer datagram (up to 64 KiB) into a per-slot overflow area that is only touched when used.
    A batch holding such a datagram is reassembled (copied) before decoding. Memory is fixed:
    slots * 64 KiB at most.
    """

    def __init__(self, sock: socket.socket, slots: int = 256, slot_bytes: int = 2048,
                 use_recvmmsg: bool = True, compiled: bool = True) -> None:
        self.sock = sock
        self.slots = slots
        self.slot = slot_bytes
        # +1 slot of headroom: the decoder's header views may read a few bytes past the last datagram.
        self.buf = np.zeros((slots + 1) * slot_bytes, np.uint8)
        self.family = sock.family
        self._addresses: dict[bytes, str] = {}
        self._spill = spill = MAX_DATAGRAM + 1 - slot_bytes
        self._compiled = use_recvmmsg and compiled and hasattr(_fastflow, "recv")
        self._fn = _recvmmsg() if use_recvmmsg and not self._compiled else None
        if self._compiled or self._fn is not None:
            self._overflow = np.zeros(slots * spill, np.uint8)  # calloc: untouched pages cost nothing
        if self._compiled:
            self._scratch = np.zeros(slots * _fastflow.RECV_SCRATCH, np.uint8)
        if self._fn is not None:
            self._names = np.zeros(slots * _NAME_LEN, np.uint8)
            self._iov = (_IOVec * (2 * slots))()
            self._msgs = (_MMsgHdr * slots)()
            base, extra, names = self.buf.ctypes.data, self._overflow.ctypes.data, self._names.ctypes.data
            for i in range(slots):
                self._iov[2 * i].iov_base, self._iov[2 * i].iov_len = base + i * slot_bytes, slot_bytes
                self._iov[2 * i + 1].iov_base, self._iov[2 * i + 1].iov_len = extra + i * spill, spill
                hdr = self._msgs[i].msg_hdr
                hdr.msg_name, hdr.msg_namelen = names + i * _NAME_LEN, _NAME_LEN
                hdr.msg_iov, hdr.msg_iovlen = ctypes.addressof(self._iov[2 * i]), 2
            # numpy views of the fields the kernel writes, so a whole batch is read in a few operations
            raw = np.frombuffer(self._msgs, np.uint8).reshape(slots, ctypes.sizeof(_MMsgHdr))
            self._namelen = raw[:, _MMsgHdr.msg_hdr.offset + _MsgHdr.msg_namelen.offset:][:, :4].view(np.uint32)
            self._msg_len = raw[:, _MMsgHdr.msg_len.offset:][:, :4].view(np.uint32)

    def receive(self) -> Received | None:
        """Return the datagrams waiting on the socket (up to ``slots``), or None if there are none.

        Raise OSError on a socket error other than 'nothing waiting'.
        """
        if self._compiled:
            got = _fastflow.recv(self.sock.fileno(), self.buf, self.slot, self.slots, self._overflow, self._spill,
                                 self._scratch)
            if got is None:
                return None
            lengths, index, keys, longest = got
            batch = Received(self.buf, self.slot, np.frombuffer(lengths, np.int64), np.frombuffer(index, np.intp),
                             [self._address(k) for k in keys])
            return self._reassemble(batch) if longest > self.slot else batch
        if self._fn is None:
            return self._receive_loop()
        self._namelen[:] = _NAME_LEN
        n = self._fn(self.sock.fileno(), ctypes.addressof(self._msgs), self.slots, _MSG_DONTWAIT, None)
        if n <= 0:
            err = ctypes.get_errno()
            if n == 0 or err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return None
            raise OSError(err, os.strerror(err))
        lengths = self._msg_len[:n, 0].astype(np.int64)
        names = self._names[:n * _NAME_LEN].reshape(n, _NAME_LEN)
        if self.family == socket.AF_INET:
            keys = names[:, 4:8].copy().view(np.uint32)[:, 0]
        else:
            keys = names[:, 8:24].copy().view(np.dtype((np.void, 16)))[:, 0]
        if (keys == keys[0]).all():  # the common case: one exporter per batch
            index, uniq = np.zeros(n, np.intp), keys[:1]
        else:
            uniq, index = np.unique(keys, return_inverse=True)
        batch = Received(self.buf, self.slot, lengths, index.reshape(-1), [self._address(k.tobytes()) for k in uniq])
        if int(lengths.max()) > self.slot:
            return self._reassemble(batch)
        return batch

    def _reassemble(self, batch: Received) -> Received:
        # Rare: some datagram overflowed its slot. Copy every datagram of the batch out whole.
        out = []
        for i, length in enumerate(batch.lengths.tolist()):
            head = self.buf[i * self.slot:i * self.slot + min(length, self.slot)].tobytes()
            tail = self._overflow[i * self._spill:i * self._spill + max(0, length - self.slot)].tobytes()
            out.append((head + tail, batch.exporters[int(batch.exporter_index[i])]))
        return Received.of(out)

    def _address(self, raw: bytes) -> str:
        text = self._addresses.get(raw)
        if text is None:
            if len(self._addresses) > 4096:  # bounded: spoofed sources must not grow memory
                self._addresses.clear()
            family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
            text = self._addresses[raw] = socket.inet_ntop(family, raw)
        return text

    def _receive_loop(self) -> Received | None:
        # Without recvmmsg (non-Linux): one recvfrom per datagram, then the same batch decoding.
        got: list[tuple[bytes, str]] = []
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while len(got) < self.slots:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
                got.append((data, addr[0]))
        return Received.of(got) if got else None

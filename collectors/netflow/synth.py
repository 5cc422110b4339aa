"""Build NetFlow v5 / v9 / IPFIX export datagrams from known flows, for tests and the benchmark.

The layouts follow softflowd's IPv4 template (1024), so what this writes is what the lab's
real exporter sends; a v9 options template announcing a sampling interval is available too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["TEMPLATE_V4", "Flows", "ipfix_message", "ipfix_set", "options_v9", "random_flows", "v5_datagrams",
           "v9_datagrams"]

# softflowd's IPv4 template: (element id, length)
TEMPLATE_V4 = ((8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4), (10, 4), (14, 4), (61, 1), (136, 1),
               (7, 2), (11, 2), (4, 1), (6, 1), (60, 1), (5, 1))
_V4_DTYPE = np.dtype([("src", ">u4"), ("dst", ">u4"), ("first", ">u4"), ("last", ">u4"), ("bytes", ">u4"),
                      ("packets", ">u4"), ("in_if", ">u4"), ("out_if", ">u4"), ("dir", "u1"), ("reason", "u1"),
                      ("sport", ">u2"), ("dport", ">u2"), ("proto", "u1"), ("flags", "u1"), ("ipver", "u1"),
                      ("tos", "u1")])
_V5_DTYPE = np.dtype([("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("in_if", ">u2"), ("out_if", ">u2"),
                      ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"), ("sport", ">u2"),
                      ("dport", ">u2"), ("pad1", "u1"), ("flags", "u1"), ("proto", "u1"), ("tos", "u1"),
                      ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2")])


@dataclass
class Flows:
    """IPv4 flows as columns (numpy arrays of equal length)."""

    src: np.ndarray
    dst: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    proto: np.ndarray
    bytes: np.ndarray
    packets: np.ndarray
    in_if: np.ndarray
    out_if: np.ndarray

    def __len__(self) -> int:
        return len(self.src)


def random_flows(n: int, seed: int = 0, hosts: int = 5000) -> Flows:
    """Given a count and a seed, return n IPv4 flows among ``hosts`` hosts of 10.0.0.0/8 with a
    skewed (Zipf-like) host popularity, common service ports and 2 interfaces."""
    rng = np.random.default_rng(seed)
    host_ids = np.minimum(rng.zipf(1.3, size=(2, n)), hosts).astype(np.uint32)
    packets = rng.integers(1, 200, n, dtype=np.uint32)
    return Flows(
        src=np.uint32(0x0A000000) + host_ids[0], dst=np.uint32(0x0A000000) + host_ids[1] * np.uint32(7),
        sport=rng.integers(1024, 65535, n, dtype=np.uint16),
        dport=rng.choice(np.array([53, 80, 443, 22, 389, 123, 8080, 5432], np.uint16), n),
        proto=rng.choice(np.array([6, 6, 17, 1], np.uint8), n), bytes=packets * rng.integers(40, 1500, n,
                                                                                            dtype=np.uint32),
        packets=packets, in_if=rng.integers(1, 3, n, dtype=np.uint32), out_if=rng.integers(3, 5, n, dtype=np.uint32),
    )


def _fill(dtype: np.dtype, flows: Flows) -> np.ndarray:
    rec = np.zeros(len(flows), dtype)
    for name in ("src", "dst", "sport", "dport", "proto", "bytes", "packets", "in_if", "out_if"):
        rec[name] = getattr(flows, name)
    return rec


def v5_datagrams(flows: Flows, per_datagram: int = 30, sampling: int = 0) -> list[bytes]:
    """Given flows, return v5 datagrams of up to ``per_datagram`` records (sampling interval in the header)."""
    rec = _fill(_V5_DTYPE, flows).tobytes()
    out = []
    for seq, start in enumerate(range(0, len(flows), per_datagram)):
        count = min(per_datagram, len(flows) - start)
        header = struct.pack("!HHIIIIBBH", 5, count, 1000, 1_700_000_000, 0, seq * per_datagram, 0, 0,
                             (1 << 14 | sampling) if sampling else 0)
        out.append(header + rec[start * 48:(start + count) * 48])
    return out


def ipfix_set(set_id: int, body: bytes) -> bytes:
    """Given a set id and the set's body, return the IPFIX set (its 4-byte header, then the body)."""
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def ipfix_message(*sets: bytes, domain: int = 7, seq: int = 0) -> bytes:
    """Given IPFIX sets, return one IPFIX message carrying them."""
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, seq, domain) + body


def _template_set(version: int, template_id: int) -> bytes:
    body = struct.pack("!HH", template_id, len(TEMPLATE_V4)) + b"".join(struct.pack("!HH", *f) for f in TEMPLATE_V4)
    return struct.pack("!HH", 0 if version == 9 else 2, 4 + len(body)) + body


def options_v9(template_id: int, sampling: int) -> bytes:
    """Return a v9 options template flowset plus its data flowset announcing ``sampling``
    (scope: system; option: SAMPLING_INTERVAL, 4 bytes), as softflowd sends them."""
    tmpl = struct.pack("!HHHHHHH", template_id, 4, 4, 1, 4, 34, 4) + b"\0\0"
    data = struct.pack("!II", 0, sampling)
    return (struct.pack("!HH", 1, 4 + len(tmpl)) + tmpl
            + struct.pack("!HH", template_id, 4 + len(data)) + data)


def v9_datagrams(flows: Flows, version: int = 9, per_datagram: int = 30, template_every: int = 20,
                 template_id: int = 1024, domain: int = 0, prefix: bytes = b"") -> list[bytes]:
    """Given flows, return v9 (version 9) or IPFIX (version 10) datagrams carrying softflowd's IPv4
    template every ``template_every`` datagrams and ``per_datagram`` records each. ``prefix``
    (extra sets, e.g. options_v9) goes into the first datagram after the template."""
    rec = _fill(_V4_DTYPE, flows).tobytes()
    size = _V4_DTYPE.itemsize
    out = []
    for seq, start in enumerate(range(0, len(flows), per_datagram)):
        count = min(per_datagram, len(flows) - start)
        sets = _template_set(version, template_id) if seq % template_every == 0 else b""
        if seq == 0:
            sets += prefix
        sets += struct.pack("!HH", template_id, 4 + count * size) + rec[start * size:(start + count) * size]
        if version == 9:
            header = struct.pack("!HHIIII", 9, count, 1000, 1_700_000_000, seq, domain)
        else:
            header = struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_000, seq * per_datagram, domain)
        out.append(header + sets)
    return out

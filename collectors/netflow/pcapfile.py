"""Read the UDP payloads of a classic pcap file (Ethernet, IPv4/IPv6), e.g. a capture of
export datagrams, so they can be fed to the decoder or replayed to another collector.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

__all__ = ["PcapError", "udp_payloads"]

_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, 0x8100


class PcapError(ValueError):
    """The file is not a classic Ethernet pcap, or a record runs past its end."""


def udp_payloads(path: Path) -> list[tuple[str, int, bytes]]:
    """Given a pcap path, return [(source address, source port, UDP payload)] in file order.

    Non-UDP packets are skipped. Raise PcapError if the magic number, the link type or a
    record length is wrong (naming the offset).
    """
    data = path.read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: {len(data)} bytes, shorter than a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise PcapError(f"{path}: magic {magic.hex()} is not a classic pcap (pcapng is not read)")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        raise PcapError(f"{path}: link type {linktype}, expected 1 (Ethernet)")
    out = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        frame = data[pos + 16:pos + 16 + incl]
        if len(frame) != incl:
            raise PcapError(f"{path}: record at offset {pos} claims {incl} bytes past the end of the file")
        pos += 16 + incl
        udp = _udp(frame)
        if udp is not None:
            out.append(udp)
    return out


def _udp(frame: bytes) -> tuple[str, int, bytes] | None:
    ethertype = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
    off = 14
    if ethertype == _ETH_VLAN and len(frame) >= 18:
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        off = 18
    if ethertype == _ETH_IPV4 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 17:
            return None
        src = str(ipaddress.IPv4Address(frame[off + 12:off + 16]))
        off += ihl
    elif ethertype == _ETH_IPV6 and len(frame) >= off + 40:
        if frame[off + 6] != 17:
            return None
        src = str(ipaddress.IPv6Address(frame[off + 8:off + 24]))
        off += 40
    else:
        return None
    if len(frame) < off + 8:
        return None
    sport, _, length = struct.unpack_from("!HHH", frame, off)
    return src, sport, frame[off + 8:off + length]

"""NetFlow captures made by the lab at run time: softflowd's real exports and nfdump's totals.

The demo does not ship captures: it records what the lab's own softflowd instances (v5, v9,
IPFIX, in the namespace ``citydc-nf``) export for traffic it sends across their veth, then asks
nfdump what those exact datagrams hold (replayed to ``nfcapd``, read back with ``nfdump -I``).
Those totals are the expected result when the same datagrams are replayed to
``citydc collect netflow``: the reference is a different implementation, computed on this
machine, from this run's datagrams.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from citydc import execute
from citydc.lab import nfdump, ports, processes
from citydc.lab.base import LabContext, LabError
from citydc.lab.softflowd import HOST_ADDRESS, NS_ADDRESS, SERVICES, Softflowd, expire_all_argv

__all__ = ["Capture", "carries_template", "from_template_on", "nfcapd_totals", "record_captures"]

FORMATS = {"v5": SERVICES[0], "v9": SERVICES[1], "ipfix": SERVICES[2]}
MAX_ROUNDS = 30  # bounded: softflowd resends v9/IPFIX templates every 16 datagrams
MAX_SECONDS = 90.0


@dataclass(frozen=True)
class Capture:
    """One format's export datagrams and what nfdump decoded from them."""

    fmt: str
    payloads: tuple[bytes, ...]
    flows: int
    bytes: int


def carries_template(datagram: bytes) -> bool:
    """Given a v9 or IPFIX export datagram, return whether it holds a (options) template set.

    Sets are walked by their own length fields (softflowd's v9 header count does not count them).
    A v5 datagram has no templates: False. A malformed set list ends the walk: False so far.
    """
    if len(datagram) < 4:
        return False
    version = struct.unpack_from("!H", datagram)[0]
    if version == 9:
        offset, template_ids = 20, (0, 1)
    elif version == 10:
        offset, template_ids = 16, (2, 3)
    else:
        return False
    while offset + 4 <= len(datagram):
        set_id, length = struct.unpack_from("!HH", datagram, offset)
        if set_id in template_ids:
            return True
        if length < 4:
            return False
        offset += length
    return False


def from_template_on(datagrams: list[bytes]) -> list[bytes]:
    """Given export datagrams in order, return them from the first that carries a template.

    nfcapd drops data sets whose template it has not seen, while citydc holds them until the
    template comes: starting both at a template datagram makes the comparison fair. v5 datagrams
    are returned unchanged.
    """
    if datagrams and struct.unpack_from("!H", datagrams[0])[0] == 5:
        return list(datagrams)
    for i, d in enumerate(datagrams):
        if carries_template(d):
            return list(datagrams[i:])
    return []


def _send_traffic(round_no: int) -> None:
    # A mix of flows each round: UDP to a few services (DNS, syslog, HTTPS-like) and TCP connection
    # attempts that the namespace answers with a reset. Bounded: a few dozen datagrams.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST_ADDRESS, 0))
        for dport, size, count in ((53, 80, 3), (514, 200, 5), (443, 1200, 8), (7000 + round_no % 10, 500, 4)):
            for _ in range(count):
                udp.sendto(b"c" * size, (NS_ADDRESS, dport))
    for dport in (22, 80, 8443):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.settimeout(0.5)
            tcp.bind((HOST_ADDRESS, 0))
            with contextlib.suppress(OSError):  # refused (RST): the flow is what softflowd accounts
                tcp.connect((NS_ADDRESS, dport))


def _drain(sock: socket.socket, into: list[bytes], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            into.append(sock.recv(65535))
        except BlockingIOError:
            time.sleep(0.02)


def record_captures(ctx: LabContext, log: Callable[[str], None] = lambda _msg: None,
                    work_dir: Path | None = None) -> dict[str, Capture]:
    """Given a lab whose softflowd-v5/-v9/-ipfix services run, return format -> Capture recorded now.

    Raise LabError naming the format if softflowd exported nothing usable within the bounds, or
    if nfdump could not read the datagrams back.
    """
    work_dir = work_dir or ctx.service_dir("demo") / "netflow-capture"
    socks: dict[str, socket.socket] = {}
    got: dict[str, list[bytes]] = {fmt: [] for fmt in FORMATS}
    try:
        for fmt, svc in FORMATS.items():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            try:
                sock.bind((HOST_ADDRESS, svc.port))
            except OSError as exc:
                sock.close()
                raise LabError(f"cannot listen for {svc.name}'s exports on {HOST_ADDRESS}:{svc.port}: {exc}") from None
            sock.setblocking(False)
            socks[fmt] = sock
        deadline = time.monotonic() + MAX_SECONDS
        for round_no in range(MAX_ROUNDS):
            _send_traffic(round_no)
            for svc in FORMATS.values():
                _expire(svc, ctx)
            for fmt, sock in socks.items():
                _drain(sock, got[fmt], 0.4)
            usable = {fmt: from_template_on(d) for fmt, d in got.items()}
            # Two rounds past the first template, so data follows the template in every format.
            if (round_no >= 2 and all(len(u) >= 2 for u in usable.values())) or time.monotonic() > deadline:
                break
    finally:
        for sock in socks.values():
            sock.close()
    out = {}
    for i, fmt in enumerate(FORMATS):
        usable = from_template_on(got[fmt])
        if not usable:
            raise LabError(f"softflowd-{fmt} exported {len(got[fmt])} datagram(s) and none with a template "
                           f"within {MAX_ROUNDS} rounds; see {FORMATS[fmt].log_path(ctx)}")
        log(f"recorded {len(usable)} {fmt} datagrams; asking nfdump for their totals")
        fmt_dir = work_dir / fmt
        totals = nfcapd_totals(usable, ports.NFCAPD + i, fmt_dir)
        out[fmt] = Capture(fmt, tuple(usable), totals["flows"], totals["bytes"])
    return out


def _expire(svc: Softflowd, ctx: LabContext) -> None:
    res = execute.run("softflowctl", expire_all_argv(svc.ctl(ctx)), timeout=10)
    if not res.ok:
        raise LabError(f"softflowctl expire-all for {svc.name} failed: {res.stderr.strip()}")


def nfcapd_totals(datagrams: list[bytes] | tuple[bytes, ...], port: int, flow_dir: Path) -> dict[str, int]:
    """Given export datagrams, replay them to a fresh nfcapd on 127.0.0.1:port writing into flow_dir
    (emptied first), stop it, and return nfdump's {'flows', 'bytes', 'packets'}. Raise LabError if
    nfcapd or nfdump fails."""
    if flow_dir.exists():
        for old in flow_dir.iterdir():
            old.unlink()
    flow_dir.mkdir(parents=True, exist_ok=True)
    proc = processes.spawn(nfdump.nfcapd_argv(ports.HOST, port, flow_dir), log_path=flow_dir.parent / "nfcapd.log")
    rec = processes.record(proc.pid, "nfcapd")
    try:
        _wait_bound(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:  # bounded: one capture
                s.sendto(d, (ports.HOST, port))
                time.sleep(0.001)  # nfcapd reads one datagram per recvfrom; no burst beyond its buffer
        time.sleep(0.5)
    finally:
        processes.stop([rec])  # SIGTERM: nfcapd writes its file and exits
        with contextlib.suppress(Exception):  # processes.stop may have reaped it already
            proc.wait(timeout=10)
    res = execute.run("nfdump", nfdump.nfdump_stats_argv(flow_dir), timeout=60)
    if not res.ok:
        raise LabError(f"nfdump could not read {flow_dir}: {res.stderr.strip()[-300:]}")
    try:
        return nfdump.parse_nfdump_stats(res.stdout)
    except ValueError as exc:
        raise LabError(str(exc)) from None


def _wait_bound(port: int, timeout: float = 10.0) -> None:
    # nfcapd binds right after start; a datagram sent before would be lost. Poll /proc/net/udp for
    # the port instead of sleeping a fixed time.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in _bound_udp_ports():
            return
        time.sleep(0.05)
    raise LabError(f"nfcapd did not bind udp {ports.HOST}:{port} within {timeout:.0f} s")


def _bound_udp_ports() -> set[int]:
    # /proc/net/udp: "sl local_address rem_address ..." with local_address as HEXIP:HEXPORT.
    found = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and ":" in fields[1]:
            found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found

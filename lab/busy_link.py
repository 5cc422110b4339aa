"""A real link the lab can drive over its utilisation threshold: a veth pair into a network namespace
the lab creates, watched by the lab's net-snmp ``snmpd`` like any host interface.

Topology: host ``cdnoc0`` 10.99.80.1/24 <-veth-> ``cdnoc1`` 10.99.80.2/24 in namespace ``citydc-noc``
(MTU 65000 on both ends, so a few hundred large datagrams a second make tens of Mb/s without a busy
CPU). The service ``busy-link`` creates them and runs a UDP sink in the namespace on ``SINK_PORT``
(the traffic draws no ICMP replies); ``drive()`` sends bounded traffic from the host end, which
``snmpd`` counts in ``cdnoc0``'s ifHCOutOctets (direction ``out`` of the recording rules).

A veth reports 10 Gb/s (ifHighSpeed 10000), so the lab Prometheus evaluates ``LinkUtilisationHigh``
at lab scale for this interface only (lab/prometheus.py: ``LAB_LINK_THRESHOLD`` over
``LAB_LINK_WINDOW`` for ``LAB_LINK_FOR``); the production rule in alerts/ stays as it is.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from citydc import execute
from citydc.lab import processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries

__all__ = ["HOST_ADDRESS", "HOST_IF", "NAMESPACE", "NS_ADDRESS", "SINK_PORT", "BusyLink", "drive",
           "netns_setup_argvs"]

NAMESPACE = "citydc-noc"
HOST_IF, NS_IF = "cdnoc0", "cdnoc1"
HOST_ADDRESS, NS_ADDRESS = "10.99.80.1", "10.99.80.2"
MTU = 65000
SINK_PORT = 7480
DATAGRAM = 60000  # payload bytes: one datagram per frame at MTU 65000

# The sink: receives and drops datagrams until it is stopped.
SINK = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    s.recv(65535)
"""


def netns_setup_argvs() -> list[tuple[str, ...]]:
    """Return the ip(8) commands that create the namespace and the veth pair."""
    return [
        ("ip", "netns", "add", NAMESPACE),
        ("ip", "link", "add", HOST_IF, "mtu", str(MTU), "type", "veth", "peer", "name", NS_IF, "mtu", str(MTU),
         "netns", NAMESPACE),
        ("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", HOST_IF),
        ("ip", "link", "set", HOST_IF, "up"),
        ("ip", "-n", NAMESPACE, "addr", "add", f"{NS_ADDRESS}/24", "dev", NS_IF),
        ("ip", "-n", NAMESPACE, "link", "set", NS_IF, "up"),
        ("ip", "-n", NAMESPACE, "link", "set", "lo", "up"),
    ]


def _remove_netns() -> None:
    execute.run("ip", ("ip", "netns", "delete", NAMESPACE), timeout=10)
    # The kernel tears a deleted namespace down asynchronously: the host end of the veth can outlive it
    # for a moment (lab/softflowd.py). Remove it and wait until it is gone.
    execute.run("ip", ("ip", "link", "delete", HOST_IF), timeout=10)
    deadline = time.monotonic() + 10
    while execute.run("ip", ("ip", "link", "show", HOST_IF), timeout=10).ok and time.monotonic() < deadline:
        time.sleep(0.1)


def ensure_netns() -> None:
    """Create the namespace and the veth pair unless they exist. Raise LabError if ip fails."""
    if execute.run("ip", ("ip", "-n", NAMESPACE, "link", "show", NS_IF), timeout=10).ok:
        return
    _remove_netns()  # a half-made one
    for argv in netns_setup_argvs():
        res = execute.run("ip", argv, timeout=10)
        if not res.ok:
            raise LabError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


def drive(bits_per_second: float, seconds: float, stop: threading.Event | None = None) -> int:
    """Send UDP datagrams from the host end to the sink at about ``bits_per_second`` (payload) for at most
    ``seconds``, or until ``stop`` is set; return the number of payload bytes sent.

    Bounded in time and so in count: at most ``seconds * bits_per_second / 8`` bytes.
    """
    per_second = max(1.0, bits_per_second / 8 / DATAGRAM)
    limit = int(per_second * seconds) + 1
    payload = b"\0" * DATAGRAM
    sent, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST_ADDRESS, 0))
        for i in range(limit):
            if stop is not None and stop.is_set():
                break
            due = start + i / per_second  # paced: the i-th datagram leaves at its time
            now = time.monotonic()
            if now - start > seconds:
                break
            if due > now:
                time.sleep(due - now)
            with contextlib.suppress(OSError):  # a full queue drops this one; the pacing goes on
                sent += s.sendto(payload, (NS_ADDRESS, SINK_PORT))
    return sent


def _udp_bound(pid: int, port: int) -> bool:
    # /proc/PID/net/udp lists the sockets of the process's own network namespace.
    try:
        return f":{port:04X} " in Path(f"/proc/{pid}/net/udp").read_text()
    except OSError:
        return False


class BusyLink(Service):
    name = "busy-link"
    description = f"veth {HOST_IF} into netns {NAMESPACE}, with a UDP sink: a link the tests drive over threshold"
    ready_timeout = 20.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({"ip": "iproute2"}, ctx)
        ensure_netns()

    def start(self, ctx: LabContext) -> subprocess.Popen:
        argv = ("ip", "netns", "exec", NAMESPACE, sys.executable, "-c", SINK, NS_ADDRESS, str(SINK_PORT))
        return processes.spawn(argv, log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        recs = self.records(ctx)
        return bool(recs) and any(_udp_bound(r.pid, SINK_PORT) for r in recs)

    def down(self, ctx: LabContext) -> int:
        """Stop the sink; remove the namespace (and its veth) once nothing runs in it."""
        stopped = super().down(ctx)
        pids = execute.run("ip", ("ip", "netns", "pids", NAMESPACE), timeout=10)
        if pids.ok and not pids.stdout.strip():
            _remove_netns()
        return stopped

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"link": f"{HOST_IF} {HOST_ADDRESS} -> {NAMESPACE}/{NS_IF} {NS_ADDRESS}",
                "sink": f"udp://{NS_ADDRESS}:{SINK_PORT}"}

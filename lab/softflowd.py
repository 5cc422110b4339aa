"""softflowd (Debian) in a private network namespace, exporting NetFlow v5, v9 and IPFIX of
the traffic that crosses a veth pair, to the host end of that pair.

Topology: host ``cdnf0`` 10.99.78.1/24 <-veth-> ``cdnf1`` 10.99.78.2/24 in namespace
``citydc-nf``. Three softflowd instances capture on ``cdnf1`` (one per export version) and
export to 10.99.78.1 on ports.NETFLOW_V5/V9/IPFIX, where a test's collector listens. Traffic a
test sends from 10.99.78.1 to 10.99.78.2 is what they account. softflowd runs with an
LD_PRELOAD shim (built with gcc at install time) that turns on libpcap immediate mode.
"""

from __future__ import annotations

import subprocess
import time
from importlib import resources
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries

__all__ = ["HOST_ADDRESS", "NAMESPACE", "NS_ADDRESS", "SERVICES", "Softflowd", "expire_all_argv",
           "softflowd_argv"]

NAMESPACE = "citydc-nf"
HOST_IF, NS_IF = "cdnf0", "cdnf1"
HOST_ADDRESS, NS_ADDRESS = "10.99.78.1", "10.99.78.2"
# Export promptly in tests (PLATFORM.md §7); softflowctl expire-all forces it at once.
TIMEOUTS = ("tcp=10", "tcp.rst=5", "tcp.fin=5", "udp=5", "icmp=5", "general=5", "maxlife=60", "expint=5")


def netns_setup_argvs() -> list[tuple[str, ...]]:
    """Return the ip(8) commands that create the namespace and the veth pair."""
    return [
        ("ip", "netns", "add", NAMESPACE),
        ("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF, "netns", NAMESPACE),
        ("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", HOST_IF),
        ("ip", "link", "set", HOST_IF, "up"),
        ("ip", "-n", NAMESPACE, "addr", "add", f"{NS_ADDRESS}/24", "dev", NS_IF),
        ("ip", "-n", NAMESPACE, "link", "set", NS_IF, "up"),
        ("ip", "-n", NAMESPACE, "link", "set", "lo", "up"),
    ]


def softflowd_argv(version: int, port: int, ctl: Path, pidfile: Path) -> tuple[str, ...]:
    """Given the export version (5, 9, 10) and the collector port, return the argv that runs
    softflowd inside the namespace in the foreground."""
    timeouts = [a for t in TIMEOUTS for a in ("-t", t)]
    return ("ip", "netns", "exec", NAMESPACE, "softflowd", "-d", "-i", NS_IF, "-n", f"{HOST_ADDRESS}:{port}",
            "-v", str(version), *(("-6",) if version != 5 else ()), "-c", str(ctl), "-p", str(pidfile),
            *timeouts, f"not (udp and portrange {ports.NETFLOW_V5}-{ports.NETFLOW_IPFIX})")


def expire_all_argv(ctl: Path) -> tuple[str, ...]:
    """Return the softflowctl argv that makes softflowd export every flow now."""
    return ("ip", "netns", "exec", NAMESPACE, "softflowctl", "-c", str(ctl), "expire-all")


def ensure_netns() -> None:
    """Create the namespace and veth pair unless they exist. Raise LabError if ip fails."""
    if execute.run("ip", ("ip", "-n", NAMESPACE, "link", "show", NS_IF), timeout=10).ok:
        return
    execute.run("ip", ("ip", "netns", "delete", NAMESPACE), timeout=10)  # a half-made one
    # The kernel tears a deleted namespace down asynchronously: the host end of its veth pair can outlive
    # it for a moment, and creating the pair again then fails with "File exists". Remove it and wait.
    execute.run("ip", ("ip", "link", "delete", HOST_IF), timeout=10)
    deadline = time.monotonic() + 10
    while execute.run("ip", ("ip", "link", "show", HOST_IF), timeout=10).ok and time.monotonic() < deadline:
        time.sleep(0.1)
    for argv in netns_setup_argvs():
        res = execute.run("ip", argv, timeout=10)
        if not res.ok:
            raise LabError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


def build_shim(ctx: LabContext) -> Path:
    """Compile the immediate-mode shim once; return the .so path. Raise LabError if gcc fails."""
    out = ctx.service_dir("softflowd") / "pcap_immediate.so"
    if out.exists():
        return out
    src = ctx.service_dir("softflowd") / "pcap_immediate.c"
    src.write_text(resources.files("citydc.lab").joinpath("lab-data/pcap_immediate.c").read_text())
    res = execute.run("gcc", ("gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(src), "-ldl", "-lpcap"),
                      timeout=120)
    if not res.ok:
        raise LabError(f"building the pcap immediate-mode shim failed: {res.stderr.strip()[-400:]}")
    return out


class Softflowd(Service):
    """One softflowd instance exporting one version (see module doc)."""

    ready_timeout = 20.0

    def __init__(self, version: int, port: int, label: str) -> None:
        self.version, self.port = version, port
        self.name = f"softflowd-{label}"
        self.description = f"softflowd in netns {NAMESPACE} exporting {label} to {HOST_ADDRESS}:{port}"

    def ctl(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "softflowd.ctl"

    def install(self, ctx: LabContext) -> None:
        need_binaries({"softflowd": "softflowd", "softflowctl": "softflowd", "gcc": "gcc", "ip": "iproute2",
                       "/usr/include/pcap/pcap.h": "libpcap-dev"}, ctx)
        build_shim(ctx)
        ensure_netns()

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        self.ctl(ctx).unlink(missing_ok=True)
        argv = softflowd_argv(self.version, self.port, self.ctl(ctx), d / "softflowd.pid")
        return processes.spawn(argv, log_path=self.log_path(ctx), env={"LD_PRELOAD": str(build_shim(ctx))})

    def ready(self, ctx: LabContext) -> bool:
        res = execute.run("softflowctl", ("ip", "netns", "exec", NAMESPACE, "softflowctl", "-c",
                                          str(self.ctl(ctx)), "statistics"), timeout=10)
        return res.ok

    def down(self, ctx: LabContext) -> int:
        """Stop this softflowd; remove the namespace (and its veth) once nothing runs in it."""
        stopped = super().down(ctx)
        pids = execute.run("ip", ("ip", "netns", "pids", NAMESPACE), timeout=10)
        if pids.ok and not pids.stdout.strip():
            execute.run("ip", ("ip", "netns", "delete", NAMESPACE), timeout=10)
        return stopped

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"exports_to": f"udp://{HOST_ADDRESS}:{self.port}", "observes": f"{NAMESPACE}/{NS_IF}",
                "control": str(self.ctl(ctx))}


SERVICES = (Softflowd(5, ports.NETFLOW_V5, "v5"), Softflowd(9, ports.NETFLOW_V9, "v9"),
            Softflowd(10, ports.NETFLOW_IPFIX, "ipfix"))

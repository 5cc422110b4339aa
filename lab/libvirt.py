"""libvirtd (Debian 9.0) with its test driver behind a private unix socket: the lab's hypervisor.

``test:///default`` keeps its state per client process, so VMs defined by one Ansible task are gone
in the next (PLATFORM.md §5). The lab therefore runs ``libvirtd`` with its own config (socket
directory in the service directory, no auth on the unix socket, log to a file) and clients use
``test+unix:///default?socket=<dir>/libvirt-sock``. The daemon's test driver forgets its domains
when the last connection closes, so the lab's process is a small keeper: it starts libvirtd as its
child, holds one connection open for the life of the service and stops libvirtd when stopped.

Run as ``python -m citydc.lab.libvirt SERVICE_DIR``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from citydc.lab import processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries

__all__ = ["Libvirt", "libvirtd_config", "uri"]

LIBVIRTD = "/usr/sbin/libvirtd"


def uri(d: Path) -> str:
    """Given the service directory, return the libvirt URI of the lab's test driver."""
    return f"test+unix:///default?socket={d / 'run' / 'libvirt-sock'}"


def libvirtd_config(d: Path) -> str:
    """Given the service directory, return libvirtd.conf: private socket dir, no unix auth, file log."""
    return "\n".join([
        f'unix_sock_dir = "{d / "run"}"',
        'unix_sock_group = "root"',
        'unix_sock_ro_perms = "0700"',
        'unix_sock_rw_perms = "0700"',
        'auth_unix_ro = "none"',
        'auth_unix_rw = "none"',
        f'log_outputs = "3:file:{d / "libvirtd.log"}"',
        "",
    ])


def _keep(d: Path) -> None:
    """Start libvirtd, hold one connection to the test driver open, stop libvirtd on SIGTERM."""
    import libvirt  # the binding (extra play-libvirt); imported only in the keeper

    (d / "run").mkdir(exist_ok=True)
    (d / "libvirtd.conf").write_text(libvirtd_config(d))
    daemon = subprocess.Popen([LIBVIRTD, "-f", str(d / "libvirtd.conf"), "-p", str(d / "libvirtd.pid")],
                              stdin=subprocess.DEVNULL)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    conn = None
    deadline = time.monotonic() + 60
    while conn is None and time.monotonic() < deadline and daemon.poll() is None:
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open(uri(d))
        if conn is None:
            time.sleep(0.2)
    if conn is None:
        daemon.terminate()
        sys.exit("libvirtd did not accept a connection")
    (d / "ready").write_text(uri(d))
    while not stopping and daemon.poll() is None:
        time.sleep(0.2)
    (d / "ready").unlink(missing_ok=True)
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
    if daemon.poll() is None:
        daemon.terminate()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()


class Libvirt(Service):
    name = "libvirt"
    description = "libvirtd with the test driver on a private unix socket (test+unix://)"
    ready_timeout = 60.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({LIBVIRTD: "libvirt-daemon-system", "virsh": "libvirt-clients"}, ctx)
        try:
            import libvirt  # noqa: F401
        except ImportError:
            raise LabError("the libvirt Python binding is missing: pip install -e '.[play-libvirt]' "
                           "(builds libvirt-python against Debian's libvirt-dev; needs pkg-config)") from None

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        d.chmod(0o700)
        (d / "ready").unlink(missing_ok=True)
        return processes.spawn([sys.executable, "-m", "citydc.lab.libvirt", str(d)], log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        return (ctx.service_dir(self.name) / "ready").exists()

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"uri": uri(ctx.service_dir(self.name))}


if __name__ == "__main__":  # pragma: no cover - the lab's keeper process
    _keep(Path(sys.argv[1]))

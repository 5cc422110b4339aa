"""The lab's network devices for config backup (issue 14): simulated network-OS boxes and OpenSSH hosts.

- ``netdevices``: five fakenos devices (three ``cisco_ios``, two ``arista_eos``) on loopback ports from
  ``ports.NETDEVICES``, in one process (``lab/netdevices_run.py``). Each starts in user mode and needs
  ``enable`` with its secret before ``show running-config`` / ``show startup-config`` answer; the
  answers are the files ``running.cfg`` / ``startup.cfg`` in ``<lab>/netdevices/<name>/``, so a test
  changes a device's configuration by writing them (``write_config``), and its host key by replacing
  ``host_rsa`` (``rekey``).
- ``netdevices-bench``: fifty such devices for ``bench/configs.py``.
- ``linux-dev1``, ``linux-dev2``: real OpenSSH ``sshd`` on loopback (``ports.LINUX_DEVICES``), each with its
  own host key and authorized key, logged in to by key as netmiko's ``linux`` devices.

The configs carry planted secrets (``planted_secrets``) that a backup must never store, log or emit.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries
from citydc.lab.sftp import SSHD, keygen_argv

__all__ = ["BENCH", "DEVICES", "LINUX", "LabDevice", "LinuxDevice", "NetDevices", "planted_secrets",
           "rekey", "render_config", "write_config"]

USERNAME = "netops"
PASSWORD_ENV = "CITYDC_DEVICE_PASSWORD"  # noqa: S105 - the name of a variable
ENABLE_ENV = "CITYDC_DEVICE_ENABLE"


@dataclass(frozen=True)
class LabDevice:
    name: str
    platform: str
    port: int
    site: str


DEVICES = (
    LabDevice("lab-ios-1", "cisco_ios", ports.NETDEVICES + 1, "siwei"),
    LabDevice("lab-ios-2", "cisco_ios", ports.NETDEVICES + 2, "fengshan"),
    LabDevice("lab-ios-3", "cisco_ios", ports.NETDEVICES + 3, "siwei"),
    LabDevice("lab-eos-1", "arista_eos", ports.NETDEVICES + 4, "siwei"),
    LabDevice("lab-eos-2", "arista_eos", ports.NETDEVICES + 5, "fengshan"),
)
BENCH = tuple(LabDevice(f"bench-{'ios' if k % 2 else 'eos'}-{k:02d}", "cisco_ios" if k % 2 else "arista_eos",
                        ports.NETDEVICES_BENCH + k, "siwei" if k % 2 else "fengshan") for k in range(50))
LINUX = (LabDevice("lab-linux-1", "linux", ports.LINUX_DEVICES + 1, "siwei"),
         LabDevice("lab-linux-2", "linux", ports.LINUX_DEVICES + 2, "fengshan"))


def planted_secrets(name: str) -> dict[str, str]:
    """Given a device name, return the secrets planted in its config, by kind (unique per device)."""
    tag = name.replace("-", "")
    return {
        "enable": f"$1$mERr$PLANTEDen{tag}",
        "user_hash": f"$9$PLANTEDuser{tag}",
        "community": f"PLANTED-{tag}-comm",
        "tacacs": f"PLANTED{tag}tac",
        "radius": f"PLANTED-{tag}-rad",
        "psk": f"PLANTED-{tag}-psk",
    }


_IOS = """\
Building configuration...

Current configuration : 1834 bytes
!
! Last configuration change at {now} by netops
! NVRAM config last updated at {now} by netops
!
version 15.2
service timestamps debug datetime msec
hostname NAME
!
enable secret 5 S_enable
!
username netops privilege 15 secret 9 S_user_hash
!
interface GigabitEthernet0/1
 description uplink-core
 ip address 10.10.1.1 255.255.255.0
!
interface GigabitEthernet0/2
 description access
 shutdown
!
snmp-server community S_community RO
tacacs-server host 10.10.0.5 key 7 S_tacacs
radius-server key S_radius
crypto isakmp key S_psk address 203.0.113.1
ntp clock-period {ticks}
ntp server 10.10.0.6
!
end
"""

_EOS = """\
! Command: show running-config
! device: NAME (vEOS-lab, EOS-4.30.1F)
! Startup-config last modified at {now} by netops
! Uptime: {uptime}
!
hostname NAME
!
username netops privilege 15 role network-admin secret sha512 S_user_hash
enable password sha512 S_enable
!
snmp-server community S_community ro
tacacs-server host 10.10.0.5 key 7 S_tacacs
radius-server host 10.10.0.7 key 7 S_radius
!
interface Ethernet1
   description uplink-core
   no switchport
   ip address 10.20.1.1/24
!
interface Ethernet2
   description access
   shutdown
!
ip routing
!
end
"""


def render_config(dev: LabDevice, extra: str = "") -> str:
    """Given a lab device, return its initial config text (planted secrets, volatile lines), with
    ``extra`` lines added before ``end``."""
    text = (_IOS if dev.platform == "cisco_ios" else _EOS).replace("NAME", dev.name)
    for kind, value in planted_secrets(dev.name).items():
        text = text.replace(f"S_{kind}", value)
    if extra:
        text = text.replace("\nend\n", f"\n{extra.rstrip()}\n!\nend\n")
    return text


class NetDevices(Service):
    """fakenos devices in one process; ``devices`` names them and their ports."""

    ready_timeout = 30.0

    def __init__(self, name: str, devices: tuple[LabDevice, ...], description: str):
        self.name = name
        self.devices = devices
        self.description = description

    def device_dir(self, ctx: LabContext, dev: LabDevice) -> Path:
        path = ctx.service_dir(self.name) / dev.name
        path.mkdir(exist_ok=True)
        return path

    def install(self, ctx: LabContext) -> None:
        if find_spec("fakenos") is None:
            raise LabError("the fakenos package is missing: pip install -e '.[configs]' (the Makefile does)")
        need_binaries({"ssh-keygen": "openssh-client"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        spec = []
        for dev in self.devices:
            dd = self.device_dir(ctx, dev)
            if not (dd / "host_rsa").exists():
                _rsa_key(dd / "host_rsa")
            for kind in ("running", "startup"):
                if not (dd / f"{kind}.cfg").exists():
                    (dd / f"{kind}.cfg").write_text(render_config(dev))
            spec.append({"name": dev.name, "platform": dev.platform, "port": dev.port, "username": USERNAME,
                         "password": ports.LAB_ENV[PASSWORD_ENV], "enable_secret": ports.LAB_ENV[ENABLE_ENV],
                         "dir": str(dd)})
        spec_path = d / "spec.json"
        spec_path.write_text(json.dumps({"devices": spec}, indent=1))
        spec_path.chmod(0o600)
        return processes.spawn([sys.executable, "-m", "citydc.lab.netdevices_run", str(spec_path)],
                               log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        return all(_ssh_banner(dev.port) for dev in self.devices)

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        first, last = self.devices[0].port, self.devices[-1].port
        return {"ssh": f"{ports.HOST}:{first}-{last}", "devices": str(ctx.service_dir(self.name))}


def _rsa_key(path: Path) -> None:
    # fakenos reads RSA keys in PEM form (paramiko.RSAKey.from_private_key_file).
    res = execute.run("ssh-keygen", ("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "",
                                     "-C", "citydc-lab-device", "-f", str(path)), timeout=30)
    if not res.ok:
        raise LabError(f"ssh-keygen failed: {res.stderr.strip()}")


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection((ports.HOST, port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def write_config(ctx: LabContext, service: NetDevices, name: str, *, running: str | None = None,
                 startup: str | None = None) -> None:
    """Replace a lab device's running and/or startup config (what its next ``show`` answers)."""
    dev = next(d for d in service.devices if d.name == name)
    dd = service.device_dir(ctx, dev)
    for kind, text in (("running", running), ("startup", startup)):
        if text is not None:
            tmp = dd / f".{kind}.tmp"
            tmp.write_text(text)
            tmp.replace(dd / f"{kind}.cfg")


def rekey(ctx: LabContext, service: NetDevices, name: str) -> None:
    """Give a lab device a new host key (its next connection presents it): a replaced or spoofed box."""
    dev = next(d for d in service.devices if d.name == name)
    dd = service.device_dir(ctx, dev)
    new = dd / "host_rsa.new"
    for p in (new, new.with_suffix(".new.pub")):
        p.unlink(missing_ok=True)
    _rsa_key(new)
    new.replace(dd / "host_rsa")


class LinuxDevice(Service):
    """OpenSSH sshd on one loopback port, a ``linux`` device for netmiko (key login, a shell)."""
    record_children = False  # sshd: only the listener is the service; its children are per connection

    ready_timeout = 20.0

    def __init__(self, dev: LabDevice, name: str):
        self.dev = dev
        self.name = name
        self.description = f"OpenSSH sshd on {ports.HOST}:{dev.port} (linux device {dev.name})"

    @staticmethod
    def user() -> str:
        return "root" if os.geteuid() == 0 else getpass.getuser()

    def config_file(self, ctx: LabContext) -> Path:
        """The file the device's backup reads (``config_commands.running: cat FILE``)."""
        return ctx.service_dir(self.name) / "etc-nftables.conf"

    def client_key(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "client_ed25519"

    def install(self, ctx: LabContext) -> None:
        need_binaries({SSHD: "openssh-server", "ssh-keygen": "openssh-client"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        for key in ("host_ed25519", "client_ed25519"):
            if not (d / key).exists():
                res = execute.run("ssh-keygen", keygen_argv(d / key), timeout=30)
                if not res.ok:
                    raise LabError(f"ssh-keygen failed: {res.stderr.strip()}")
        (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
        (d / "authorized_keys").chmod(0o644)  # read by sshd as the login user; the lab's umask is 077
        if not self.config_file(ctx).exists():
            self.config_file(ctx).write_text(
                "#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n  chain input {\n"
                "    type filter hook input priority 0; policy drop;\n    tcp dport 22 accept\n  }\n}\n")
        (d / "sshd_config").write_text("\n".join([
            f"Port {self.dev.port}", f"ListenAddress {ports.HOST}", f"HostKey {d / 'host_ed25519'}",
            f"PidFile {d / 'sshd.pid'}", f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"AllowUsers {self.user()}", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no", "X11Forwarding no",
            "AllowTcpForwarding no", "PrintMotd no", "PrintLastLog no", ""]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        return processes.spawn([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        if not _ssh_banner(self.dev.port):
            return False
        # Ready once the per-connection child of that probe is gone too: the lab records sshd's
        # descendants when it is ready, and a child that exits right after would read as "stopped".
        try:
            pid = int((ctx.service_dir(self.name) / "sshd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return not processes.descendants(pid)

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"ssh": f"{ports.HOST}:{self.dev.port}", "user": self.user(),
                "key_file": str(self.client_key(ctx)), "config_file": str(self.config_file(ctx))}


SERVICES: tuple[Service, ...] = (
    NetDevices("netdevices", DEVICES, "fakenos cisco_ios/arista_eos devices with enable (config backup)"),
    NetDevices("netdevices-bench", BENCH, "50 fakenos devices for bench/configs.py"),
    *(LinuxDevice(dev, f"linux-dev{k}") for k, dev in enumerate(LINUX, 1)),
)

"""net-snmp ``snmpd`` on a loopback port with a lab-only config (Debian package ``snmpd``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, Service, need_binaries

SNMPD = "/usr/sbin/snmpd"
SYS_NAME = "lab-snmpd"
NO_MIBS = {"MIBS": ""}


def snmpd_conf(community: str, port: int) -> str:
    """Given the read community and port, return the lab's snmpd.conf."""
    return "\n".join([
        f"agentAddress udp:{ports.HOST}:{port}",
        f"rocommunity {community} 127.0.0.1",
        "sysLocation Siwei lab",
        "sysContact noc@city.example",
        f"sysName {SYS_NAME}",
        "sysServices 72",
        "",
    ])


def client_conf_dir(community: str, directory: Path) -> Path:
    """Write a net-snmp client snmp.conf holding the community; return its directory.

    net-snmp tools read it through SNMPCONFPATH, so the community never appears in argv.
    """
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "snmp.conf"
    conf.write_text(f"defVersion 2c\ndefCommunity {community}\n")
    conf.chmod(0o600)
    return directory


def snmpget_argv(target: str, *oids: str, binary: str = "snmpget") -> tuple[str, ...]:
    """Return snmpget argv with numeric output; auth comes from SNMPCONFPATH."""
    return (binary, "-On", "-t", "1", "-r", "1", target, *oids)


class Snmpd(Service):
    name = "snmpd"
    description = "net-snmp snmpd (SNMP v2c agent of this host)"
    ready_timeout = 20.0

    def __init__(self, name: str = "snmpd", port: int = ports.SNMPD) -> None:
        # Another instance (own name, directory and port) is for tests that stop their snmpd.
        self.name, self.port = name, port

    def install(self, ctx: LabContext) -> None:
        need_binaries({SNMPD: "snmpd", "snmpget": "snmp", "snmpbulkwalk": "snmp"}, ctx)

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        conf = d / "snmpd.conf"
        conf.write_text(snmpd_conf(ports.LAB_ENV["CITYDC_SNMP_COMMUNITY"], self.port))
        conf.chmod(0o600)
        # -C: read only our config; -f: foreground, so the PID we record is snmpd's own;
        # -I -smux: no SMUX listener on the privileged port 199.
        argv = [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(d / "snmpd-agent.log"),
                "-I", "-smux"]
        # MIBS empty: Debian ships no MIB files (they are non-free); numeric OIDs need none.
        return processes.spawn(argv, log_path=self.log_path(ctx), env=NO_MIBS)

    def ready(self, ctx: LabContext) -> bool:
        confdir = client_conf_dir(ports.LAB_ENV["CITYDC_SNMP_COMMUNITY"], ctx.service_dir(self.name) / "client")
        res = execute.run("snmpget", snmpget_argv(f"{ports.HOST}:{self.port}", "1.3.6.1.2.1.1.5.0"),
                          env={"SNMPCONFPATH": str(confdir), **NO_MIBS}, timeout=10)
        return res.ok and SYS_NAME in res.stdout

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"snmp": f"udp://{ports.HOST}:{self.port}"}

"""snmpsim (PyPI ``snmpsim`` 1.2.2) serving recorded and generated devices on loopback.

Five services, so a test can restart ("reboot") or load one without touching the others:

* ``snmpsim``: the full responder. The recordings of real devices (package data in
  ``lab-data/snmp/``, with their licences and ``sources.json``), one per loopback address 127.0.1.k
  (v2c community = file name), and the v3 core switches on 127.0.2.k (SNMPv3 context name =
  device name), all on port SNMPSIM.
* ``snmpsim-switches``: generated 48-port access switches of both sites, one UDP port each,
  including a 32-bit-only device.
* ``snmpsim-slow``: a switch whose first answer of every poll takes 8 s.
* ``snmpsim-reboot``: a switch whose counters start at 0; ``reboot()`` restarts it.
* ``snmpsim-fleet``: 190 small switches on consecutive ports (load tests); the next 10 ports
  are left closed, so they behave as dead devices.

snmpsim runs from its own venv (it pins pysnmp and needs pysmi and cryptography, which would
otherwise mix with the project's venv); ``docs/snmp.md`` (Lab) lists its quirks.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, apt_install
from citydc.lab.snmpd import client_conf_dir, snmpget_argv
from citydc.lab.snmpsim_data import SwitchSpec, records
from citydc.lab.snmpsim_quirks import QUIRKS

__all__ = ["FLEET_DEAD", "LabDevice", "bulkwalk_argv", "lab_config", "lab_devices", "lab_snmp_auth", "lab_snmp_env",
           "parse_bulkwalk", "recording", "v3_client_conf_dir", "venv_python"]

SNMPSIM_REQUIREMENTS = ("snmpsim==1.2.2", "pysmi>=1.5,<2", "pysnmp>=7.1,<8", "cryptography>=43")
FILES = Path(__file__).with_name("lab-data")
RECORDINGS = "lab-data/snmp"  # inside the citydc.lab package: recordings, LICENSE-*.txt, sources.json
COMMUNITY_ENV = "CITYDC_SNMP_COMMUNITY"
FLEET_SIZE, FLEET_DEAD = 190, 10


def recording(name: str) -> str:
    """Given a recording's name (file name without ``.snmprec``), return its text from the package data.

    Raise LabError if the installed package does not carry it (a wheel built without its package data).
    """
    try:
        return resources.files("citydc.lab").joinpath(f"{RECORDINGS}/{name}.snmprec").read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise LabError(f"the SNMP recording {RECORDINGS}/{name}.snmprec is missing from the citydc.lab "
                       "package data") from None


@dataclass(frozen=True)
class LabDevice:
    name: str
    address: str
    site: str
    role: str
    auth: str  # profile name in lab_snmp_auth()
    spec: SwitchSpec | None = None


RECORDED = ("cisco-c3750", "brocade-icx6430-24", "dlink-des3038", "brocade-ds-5100b", "paloalto-pa-5000",
            "vyatta-unknown", *(q.name for q in QUIRKS))  # QUIRKS: ifNumber.0 below and above the real row count
SWITCHES = (SwitchSpec("sw-siwei-acc1", 1), SwitchSpec("sw-siwei-acc2", 2), SwitchSpec("sw-fengshan-acc1", 3),
            SwitchSpec("sw-fengshan-acc2", 4), SwitchSpec("sw-fengshan-old1", 5, hc=False))
V3_SWITCHES = (SwitchSpec("sw-siwei-core1", 6, access_ports=8), SwitchSpec("sw-fengshan-core1", 7, access_ports=8))
SLOW = SwitchSpec("sw-fengshan-slow", 8, access_ports=8, slow_ms=8000)
# Gi1/0/2 has only 32-bit counters and wraps 25 s after every (re)start at 25 MB/s.
REBOOT = SwitchSpec("sw-siwei-reboot", 9, access_ports=8, zero_start=True, wrap32=(10102, 25_000_000.0, 25.0))


def _site(name: str) -> str:
    return "fengshan" if "fengshan" in name else "siwei"


def fleet_specs() -> list[SwitchSpec]:
    return [SwitchSpec(f"fleet-{k:03d}", 100 + k, access_ports=4, uplinks=1) for k in range(FLEET_SIZE)]


def lab_devices(fleet: bool = False) -> list[LabDevice]:
    """Return every simulated device with its address, site and auth profile (for configs and tests)."""
    h = ports.HOST
    out = [LabDevice(f"rec-{n}", f"127.0.1.{k + 1}:{ports.SNMPSIM}", "siwei", "access", f"rec-{n}")
           for k, n in enumerate(RECORDED)]
    out += [LabDevice(s.name, f"127.0.2.{k + 1}:{ports.SNMPSIM}", _site(s.name), "core", f"v3-{s.name}", s)
            for k, s in enumerate(V3_SWITCHES)]
    out += [LabDevice(s.name, f"{h}:{ports.SNMPSIM_SWITCHES + k}", _site(s.name), "access", "lab-v2c", s)
            for k, s in enumerate(SWITCHES)]
    out.append(LabDevice(SLOW.name, f"{h}:{ports.SNMPSIM_SLOW}", "fengshan", "access", "lab-v2c", SLOW))
    out.append(LabDevice(REBOOT.name, f"{h}:{ports.SNMPSIM_REBOOT}", "siwei", "access", "lab-v2c", REBOOT))
    if fleet:
        specs = fleet_specs()
        out += [LabDevice(s.name, f"{h}:{ports.SNMPSIM_FLEET + k}", ("siwei", "fengshan")[k % 2], "access",
                          "lab-v2c", s) for k, s in enumerate(specs)]
        out += [LabDevice(f"dead-{k:02d}", f"{h}:{ports.SNMPSIM_FLEET + FLEET_SIZE + k}", "siwei", "access",
                          "lab-v2c") for k in range(FLEET_DEAD)]
    return out


def lab_snmp_auth() -> dict[str, dict]:
    """Return the auth profiles (config dicts, secrets by env: reference) the lab devices need."""
    out: dict[str, dict] = {"lab-v2c": {"version": "2c", "community": f"env:{COMMUNITY_ENV}"}}
    for n in RECORDED:  # community = recording's file name (not a secret; still given by reference)
        out[f"rec-{n}"] = {"version": "2c", "community": f"env:CITYDC_SNMP_REC_{n.upper().replace('-', '_')}"}
    for k, s in enumerate(V3_SWITCHES):
        user, auth, priv = ("citydc", "SHA256", "AES") if k == 0 else ("citydc256", "SHA512", "AES256")
        out[f"v3-{s.name}"] = {"version": "3", "username": user, "auth_protocol": auth,
                               "auth_key": "env:CITYDC_SNMP_V3_AUTH", "priv_protocol": priv,
                               "priv_key": "env:CITYDC_SNMP_V3_PRIV", "context_name": s.name}
    return out


def lab_snmp_env() -> dict[str, str]:
    """Return the environment the lab's auth profiles reference."""
    env = {k: ports.LAB_ENV[k] for k in (COMMUNITY_ENV, "CITYDC_SNMP_V3_AUTH", "CITYDC_SNMP_V3_PRIV")}
    env.update({f"CITYDC_SNMP_REC_{n.upper().replace('-', '_')}": n for n in RECORDED})
    return env


def venv_dir(ctx: LabContext) -> Path:
    return ctx.cache / "snmpsim-venv"


def venv_python(ctx: LabContext) -> Path:
    return venv_dir(ctx) / "bin" / "python"


def install_snmpsim(ctx: LabContext) -> None:
    """Make the snmpsim venv (Debian python3 with gdbm, which snmpsim's index needs to be fast)."""
    py = venv_python(ctx)
    if py.exists() and execute.run("python", (str(py), "-c", "import snmpsim, pysmi, cryptography"),
                                   timeout=60).ok:
        return
    if not Path("/usr/bin/python3").exists() or not execute.run(
            "python", ("/usr/bin/python3", "-c", "import ensurepip, dbm.gnu"), timeout=30).ok:
        apt_install(["python3", "python3-venv", "python3-gdbm"], ctx)
    ctx.log("creating the snmpsim venv")
    ctx.cache_dir(venv_dir(ctx).name)  # the cache's root made the lab's way, open to its unprivileged user
    res = execute.run("python", ("/usr/bin/python3", "-m", "venv", "--clear", str(venv_dir(ctx))), timeout=300)
    if res.ok:
        res = execute.run("pip", (str(py), "-m", "pip", "install", "-q", *SNMPSIM_REQUIREMENTS), timeout=600)
    if not res.ok:
        raise LabError(f"installing snmpsim failed: {res.masked_stderr()[-500:]}")


def _write_lite_data(root: Path, specs: list[SwitchSpec], community: str) -> Path:
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    (data / community).mkdir(parents=True)
    for k, spec in enumerate(specs):
        (data / community / f"1.3.6.1.6.1.1.{k}.snmprec").write_text(records(spec))
    return data


class _Snmpsim(Service):
    ready_timeout = 120.0

    def install(self, ctx: LabContext) -> None:
        install_snmpsim(ctx)

    def _probe(self, ctx: LabContext, address: str, community: str) -> bool:
        confdir = client_conf_dir(community, ctx.service_dir(self.name) / "client")
        res = execute.run("snmpget", snmpget_argv(address, "1.3.6.1.2.1.1.5.0"),
                          env={"SNMPCONFPATH": str(confdir), "MIBS": ""}, timeout=10)
        return res.ok and "STRING" in res.stdout


class _LiteSnmpsim(_Snmpsim):
    """One snmpsim lite responder serving ``specs()`` on consecutive ports from ``base_port``."""

    base_port = 0

    def specs(self) -> list[SwitchSpec]:
        raise NotImplementedError

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        community = ports.LAB_ENV[COMMUNITY_ENV]
        data = _write_lite_data(d, self.specs(), community)
        cache = d / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        endpoints = [f"--agent-udpv4-endpoint={ports.HOST}:{self.base_port + k}" for k in range(len(self.specs()))]
        argv = [str(venv_python(ctx)), str(FILES / "snmpsim_lite.py"), "--v2c-arch", "--logging-method=null",
                f"--data-dir={data}", f"--cache-dir={cache}", "--max-var-binds=512", *endpoints]
        return processes.spawn(argv, log_path=self.log_path(ctx), env={"SNMPSIM_ALLOW_ROOT": "true"})

    def ready(self, ctx: LabContext) -> bool:
        return self._probe(ctx, f"{ports.HOST}:{self.base_port}", ports.LAB_ENV[COMMUNITY_ENV])

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        n = len(self.specs())
        return {"snmp": f"udp://{ports.HOST}:{self.base_port}" + (f"-{self.base_port + n - 1}" if n > 1 else "")}


class SnmpsimSwitches(_LiteSnmpsim):
    name = "snmpsim-switches"
    description = "snmpsim: generated 48-port switches of both sites (one UDP port each)"
    base_port = ports.SNMPSIM_SWITCHES

    def specs(self) -> list[SwitchSpec]:
        return list(SWITCHES)


class SnmpsimSlow(_LiteSnmpsim):
    name = "snmpsim-slow"
    description = "snmpsim: a switch answering its first request of each poll after 8 s"
    base_port = ports.SNMPSIM_SLOW

    def specs(self) -> list[SwitchSpec]:
        return [SLOW]

    def ready(self, ctx: LabContext) -> bool:
        return self._probe(ctx, f"{ports.HOST}:{self.base_port}", ports.LAB_ENV[COMMUNITY_ENV])


class SnmpsimReboot(_LiteSnmpsim):
    name = "snmpsim-reboot"
    description = "snmpsim: a switch that reboots on demand (restart = sysUpTime and counters from 0)"
    base_port = ports.SNMPSIM_REBOOT

    def specs(self) -> list[SwitchSpec]:
        return [REBOOT]

    def reboot(self, ctx: LabContext) -> None:
        """Restart the simulated switch: a reboot as its pollers see it."""
        self.down(ctx)
        self.up(ctx)


class SnmpsimFleet(_LiteSnmpsim):
    name = "snmpsim-fleet"
    description = f"snmpsim: {FLEET_SIZE} small switches for load tests ({FLEET_DEAD} more ports left dead)"
    base_port = ports.SNMPSIM_FLEET
    ready_timeout = 300.0

    def specs(self) -> list[SwitchSpec]:
        return fleet_specs()


class Snmpsim(_Snmpsim):
    name = "snmpsim"
    description = "snmpsim: recordings of real devices (v2c) and v3 core switches"

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        data = d / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        for n in RECORDED:
            (data / f"{n}.snmprec").write_text(recording(n))
        for spec in V3_SWITCHES:
            (data / f"{spec.name}.snmprec").write_text(records(spec))
        cache = d / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        endpoints = [f"--agent-udpv4-endpoint=127.0.1.{k + 1}:{ports.SNMPSIM}" for k in range(len(RECORDED))]
        endpoints += [f"--agent-udpv4-endpoint=127.0.2.{k + 1}:{ports.SNMPSIM}" for k in range(len(V3_SWITCHES))]
        argv = [str(venv_python(ctx)), str(FILES / "snmpsim_full.py"), f"--data-dir={data}",
                f"--cache-dir={cache}", "--logging-method=null", "--max-var-binds=512", *endpoints]
        env = {"SNMPSIM_ALLOW_ROOT": "true", **{k: ports.LAB_ENV[k] for k in ("CITYDC_SNMP_V3_AUTH",
                                                                              "CITYDC_SNMP_V3_PRIV")}}
        return processes.spawn(argv, log_path=self.log_path(ctx), env=env)

    def ready(self, ctx: LabContext) -> bool:
        return self._probe(ctx, f"127.0.1.1:{ports.SNMPSIM}", RECORDED[0])

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"snmp": f"udp://127.0.1.1-{len(RECORDED)}:{ports.SNMPSIM} (community = recording), "
                        f"udp://127.0.2.1-{len(V3_SWITCHES)}:{ports.SNMPSIM} (v3)"}


SERVICES = (Snmpsim(), SnmpsimSwitches(), SnmpsimSlow(), SnmpsimReboot(), SnmpsimFleet())


def lab_config(fleet: bool = False, **snmp: object) -> dict:
    """Return a citydc.yaml document (as a dict) with both sites and every simulated device.

    ``snmp`` sets fields of the ``snmp:`` section (e.g. timeout_seconds). Secrets are env: references
    to ``lab_snmp_env()``.
    """
    return {
        "sites": [{"id": "siwei", "name": "四維 Siwei"}, {"id": "fengshan", "name": "鳳山 Fengshan"}],
        "snmp_auth": lab_snmp_auth(),
        "devices": [{"name": d.name, "address": d.address, "site": d.site, "role": d.role, "snmp_auth": d.auth}
                    for d in lab_devices(fleet)],
        "snmp": dict(snmp),
    }


NET_SNMP_AUTH = {"SHA256": "SHA-256", "SHA512": "SHA-512"}
NET_SNMP_PRIV = {"AES": "AES", "AES256": "AES-256"}


def v3_client_conf_dir(profile: dict, directory: Path, environ: dict[str, str]) -> Path:
    """Given a lab v3 auth profile (``lab_snmp_auth()`` entry), write a net-snmp client snmp.conf with
    its user, protocols, keys and context; return its directory.

    net-snmp tools read it through SNMPCONFPATH, so the keys never appear in argv.
    """
    def secret(ref: str) -> str:
        return environ[ref.removeprefix("env:")]

    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "snmp.conf"
    conf.write_text("defVersion 3\n"
                    f"defSecurityName {profile['username']}\n"
                    "defSecurityLevel authPriv\n"
                    f"defAuthType {NET_SNMP_AUTH[profile['auth_protocol']]}\n"
                    f"defAuthPassphrase {secret(profile['auth_key'])}\n"
                    f"defPrivType {NET_SNMP_PRIV[profile['priv_protocol']]}\n"
                    f"defPrivPassphrase {secret(profile['priv_key'])}\n"
                    f"defContext {profile.get('context_name', '')}\n")
    conf.chmod(0o600)
    return directory


def bulkwalk_argv(target: str, oid: str, max_repetitions: int = 25, binary: str = "snmpbulkwalk") -> tuple[str, ...]:
    """Return net-snmp snmpbulkwalk argv: numeric OIDs, enums and ticks, strings as hex; auth from SNMPCONFPATH."""
    return (binary, "-On", "-Oe", "-Ot", "-OU", "-Ox", f"-Cr{max_repetitions}", "-t", "2", "-r", "1", target, oid)


def parse_bulkwalk(stdout: str) -> dict[tuple[int, ...], int | bytes]:
    """Given output of ``bulkwalk_argv``, return {oid: int or bytes}. Raise ValueError on a line it cannot read."""
    out: dict[tuple[int, ...], int | bytes] = {}
    lines: list[tuple[int, str]] = []
    for n, line in enumerate(stdout.splitlines(), 1):
        # net-snmp wraps Hex-STRING values after 16 bytes: continuation lines hold only hex pairs.
        if lines and not line.startswith(".") and "Hex-STRING" in lines[-1][1] and all(
                len(t) == 2 for t in line.split()):
            lines[-1] = (lines[-1][0], f"{lines[-1][1]} {line}")
        else:
            lines.append((n, line))
    for n, line in lines:
        if not line.strip():
            continue
        oid_text, sep, rest = line.partition(" = ")
        if not sep or not oid_text.startswith("."):
            raise ValueError(f"line {n}: expected '.OID = TYPE: VALUE', got {line!r}")
        oid = tuple(int(x) for x in oid_text[1:].split("."))
        kind, _, value = rest.partition(": ")
        if rest == '""':
            out[oid] = b""
        elif kind == "Hex-STRING":
            out[oid] = bytes.fromhex(value.replace(" ", ""))
        elif kind == "STRING":
            out[oid] = value.strip('"').encode()
        elif kind in ("INTEGER", "Counter32", "Counter64", "Gauge32", "Timeticks"):
            out[oid] = int(value)
        elif "No Such" in rest or "No more variables" in rest:
            continue
        else:
            raise ValueError(f"line {n}: unexpected type {kind!r}")
    return out

"""Generated recordings of two agents whose ``ifNumber.0`` disagrees with their own ifTable.

Real agents do this: an HPE ProCurve 6120XG reports ``ifNumber.0 = 33`` while its ifTable has 42
rows (ports plus VLAN and loopback interfaces), and a Juniper MX960 reports 143 for 61 rows.
A poller that trusts ifNumber as the row count drops interfaces on the first and reads past
the end on the second. The two ``.snmprec`` files here have those shapes, with fixed values (no
snmpsim variation), so every exported value can be compared exactly with ``snmpbulkwalk``.

They are generated (the interface lists below are made up in the style of those devices, not
recorded), written into the package data next to the real recordings, and committed; a unit test
checks that the committed files equal this module's output. Regenerate with::

    python -m citydc.lab.snmpsim_quirks lab/lab-data/snmp

Standard library only; deterministic.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QUIRKS", "Quirk", "main", "quirk_records"]

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
GIGA = 1_000_000_000
SATURATED = 4294967295


@dataclass(frozen=True)
class Iface:
    index: int
    name: str
    descr: str
    if_type: int  # IANAifType: 6 ethernetCsmacd, 24 softwareLoopback, 53 propVirtual, 131 tunnel
    mbps: int
    alias: str = ""
    admin: int = 1
    oper: int = 1
    hc: bool = True  # False: this row has no ifHC* cells (32-bit counters only)


@dataclass(frozen=True)
class Quirk:
    name: str  # the file name without .snmprec (and the lab's community for it)
    sys_descr: str
    sys_object_id: str
    uptime_ticks: int
    if_number: int  # what the agent claims in ifNumber.0
    interfaces: tuple[Iface, ...]


def _procurve() -> Quirk:
    # 24 10GbE ports (ifIndex = port number), 17 VLAN interfaces (4096 + VLAN id) and a loopback:
    # 42 rows. The agent counts 33 in ifNumber.0.
    ports = [Iface(p, str(p), str(p), 6, 10_000, alias=f"blade bay {p}" if p <= 16 else
                   ("uplink to core" if p in (17, 18) else ""), oper=1 if p <= 18 or p == 21 else 2)
             for p in range(1, 25)]
    vlans = [1, 10, 20, 30, 40, 50, 60, 100, 110, 120, 200, 210, 300, 400, 500, 999, 4000]
    svis = [Iface(4096 + v, "DEFAULT_VLAN" if v == 1 else f"VLAN{v}", "DEFAULT_VLAN" if v == 1 else f"VLAN{v}", 53,
                  10_000, alias="" if v % 3 else f"vlan {v}", oper=1 if v != 999 else 2, hc=False)
            for v in vlans]
    loop = [Iface(4353, "lo0", "HP ProCurve Switch software loopback interface", 24, 10_000, hc=False)]
    return Quirk("hpe-procurve-6120xg", "HP J9085A ProCurve 6120XG Blade Switch, revision Z.14.52",
                 "1.3.6.1.4.1.11.2.3.7.11.86", 1_723_311_455, 33, tuple(ports + svis + loop))


def _mx960() -> Quirk:
    # Internal interfaces at low ifIndexes, physical ports and their logical units above 500:
    # 61 rows in ifTable; the agent claims 143 in ifNumber.0.
    internal = [(1, "fxp0"), (2, "fxp1"), (4, "lsi"), (5, "dsc"), (6, "lo0"), (7, "tap"), (8, "gre"), (9, "ipip"),
                (10, "pime"), (11, "pimd"), (12, "mtun"), (13, "fxp0.0"), (14, "fxp1.0"), (16, "lo0.0"),
                (21, "lo0.16384"), (22, "lo0.16385"), (248, "esi"), (249, "vtep"), (250, "jsrv"), (251, "jsrv.1"),
                (252, "irb"), (253, "em0")]
    out = [Iface(i, n, n, 24 if n.startswith("lo0") else (6 if n.startswith(("fxp", "em")) else 53),
                 1000 if n.startswith(("fxp", "em")) else 0, oper=2 if n in ("fxp1", "fxp1.0") else 1)
           for i, n in internal]
    index = 500
    for fpc in (0, 1, 2):
        for port in range(8):
            speed = 100_000 if fpc == 2 and port < 4 else 10_000
            kind = "et" if speed == 100_000 else "xe"
            name = f"{kind}-{fpc}/0/{port}"
            up = (fpc + port) % 3 != 2
            out.append(Iface(index, name, name, 6, speed, alias=f"to pe-{fpc}{port} (AS6{fpc}{port})" if up else "",
                             oper=1 if up else 2))
            if up and len(out) < 61:
                out.append(Iface(index + 1000, f"{name}.0", f"{name}.0", 53, speed, alias=""))
            index += 1
    return Quirk("juniper-mx960", "Juniper Networks, Inc. mx960 internet router, kernel JUNOS 21.4R3-S5.4",
                 "1.3.6.1.4.1.2636.1.1.1.2.29", 2_965_204_017, 143, tuple(sorted(out[:61], key=lambda f: f.index)))


QUIRKS: tuple[Quirk, ...] = (_procurve(), _mx960())


def quirk_records(q: Quirk) -> str:
    """Given a quirk device, return its ``.snmprec`` text (sorted by OID, as snmpsim requires)."""
    rng = random.Random(q.name)  # noqa: S311 - made-up counter values, not security
    lines: list[tuple[tuple[int, ...], str]] = []

    def add(oid: str, tag: int, value: object) -> None:
        lines.append((tuple(int(x) for x in oid.split(".")), f"{oid}|{tag}|{value}"))

    add("1.3.6.1.2.1.1.1.0", 4, q.sys_descr)
    add("1.3.6.1.2.1.1.2.0", 6, q.sys_object_id)
    add("1.3.6.1.2.1.1.3.0", 67, q.uptime_ticks)
    add("1.3.6.1.2.1.1.5.0", 4, q.name)
    add("1.3.6.1.2.1.2.1.0", 2, q.if_number)
    for f in q.interfaces:
        i = f.index
        busy = f.oper == 1
        in_octets = rng.randint(10**9, 2**52) if busy else rng.randint(0, 10**6)
        out_octets = rng.randint(10**9, 2**52) if busy else rng.randint(0, 10**6)
        packets = [rng.randint(0, 2**40) if busy else 0 for _ in range(6)]  # in/out x ucast/mcast/bcast
        add(f"{IF}.1.{i}", 2, i)
        add(f"{IF}.2.{i}", 4, f.descr)
        add(f"{IF}.3.{i}", 2, f.if_type)
        add(f"{IF}.4.{i}", 2, 9192 if f.if_type == 6 else 1500)
        add(f"{IF}.5.{i}", 66, min(f.mbps * 1_000_000, SATURATED))
        add(f"{IF}.7.{i}", 2, f.admin)
        add(f"{IF}.8.{i}", 2, f.oper)
        add(f"{IF}.9.{i}", 67, rng.randint(0, q.uptime_ticks))
        add(f"{IF}.10.{i}", 65, in_octets % 2**32)
        add(f"{IF}.11.{i}", 65, packets[0] % 2**32)
        add(f"{IF}.13.{i}", 65, rng.randint(0, 5000) if busy else 0)
        add(f"{IF}.14.{i}", 65, rng.randint(0, 500) if busy else 0)
        add(f"{IF}.16.{i}", 65, out_octets % 2**32)
        add(f"{IF}.17.{i}", 65, packets[3] % 2**32)
        add(f"{IF}.19.{i}", 65, rng.randint(0, 5000) if busy else 0)
        add(f"{IF}.20.{i}", 65, rng.randint(0, 50) if busy else 0)
        add(f"{IFX}.1.{i}", 4, f.name)
        for col, value in ((2, packets[1]), (3, packets[2]), (4, packets[4]), (5, packets[5])):
            add(f"{IFX}.{col}.{i}", 65, value % 2**32)
        if f.hc:
            for col, value in ((6, in_octets), (7, packets[0]), (8, packets[1]), (9, packets[2]), (10, out_octets),
                               (11, packets[3]), (12, packets[4]), (13, packets[5])):
                add(f"{IFX}.{col}.{i}", 70, value)
        add(f"{IFX}.15.{i}", 66, f.mbps)
        add(f"{IFX}.18.{i}", 4, f.alias)
        add(f"{IFX}.19.{i}", 67, 0)
    lines.sort()
    return "".join(text + "\n" for _, text in lines)


def main(argv: list[str] | None = None) -> int:
    """Write every quirk device's ``.snmprec`` into the folder given (argv[0]); return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m citydc.lab.snmpsim_quirks FOLDER   (e.g. lab/lab-data/snmp)", file=sys.stderr)
        return 2
    for q in QUIRKS:
        path = Path(args[0]) / f"{q.name}.snmprec"
        path.write_text(quirk_records(q))
        print(f"wrote {path} ({len(q.interfaces)} ifTable rows, ifNumber.0 = {q.if_number})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

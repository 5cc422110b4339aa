"""Generated ``.snmprec`` data for the lab's simulated switches (served by snmpsim).

A switch has Vlan1, 48 access ports Gi1/0/1-48 (ifIndex 10101-10148), 4 uplinks Te1/1/1-4
(10601-10604, 10G so ifSpeed saturates) and mgmt0 (14501): 54 interfaces. Counters grow with
snmpsim's ``numeric`` variation (value = initial + rate x seconds since the simulator started),
so restarting the simulator is a reboot. Variants: no 64-bit counters, a slow first answer,
all counters starting at 0 (a clean reboot), one 32-bit port that wraps a known time after start.
Deterministic for a given seed; standard library only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["SwitchSpec", "records"]

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


@dataclass(frozen=True)
class SwitchSpec:
    name: str
    seed: int = 1
    access_ports: int = 48
    uplinks: int = 4
    hc: bool = True  # False: a 32-bit-only device (ifXTable without the ifHC* columns)
    slow_ms: int = 0  # delay of the answer holding sysUpTime.0 (the first request of every poll)
    zero_start: bool = False  # counters start at 0, like a real device after a reboot
    wrap32: tuple[int, float, float] | None = None  # (ifIndex, bytes/s, wrap after s) on a 32-bit-only port
    static: bool = False  # fixed values (no variation): exact comparisons with net-snmp tools


def _interfaces(spec: SwitchSpec, rng: random.Random) -> list[dict]:
    out = [dict(idx=1, descr="Vlan1", name="Vl1", type=53, mbps=1000, admin=1, oper=1, alias="mgmt vlan", util=0.001)]
    for p in range(1, spec.access_ports + 1):
        admin, oper = (2, 2) if p == spec.access_ports - 1 else (1, 2 if rng.random() < 0.25 else 1)
        alias = "" if rng.random() < 0.3 else f"desk {rng.randint(1, 9)}-{p:02d}"
        out.append(dict(idx=10100 + p, descr=f"GigabitEthernet1/0/{p}", name=f"Gi1/0/{p}", type=6, mbps=1000,
                        admin=admin, oper=oper, alias=alias, util=rng.uniform(0.0005, 0.2)))
    for u in range(1, spec.uplinks + 1):
        out.append(dict(idx=10600 + u, descr=f"TenGigabitEthernet1/1/{u}", name=f"Te1/1/{u}", type=6, mbps=10000,
                        admin=1, oper=1 if u <= 2 else 2, alias=f'uplink to "core-{u}" po1' if u <= 2 else "",
                        util=rng.uniform(0.05, 0.6)))
    out.append(dict(idx=14501, descr="mgmt0", name="mgmt0", type=6, mbps=100, admin=1, oper=1, alias="oob",
                    util=0.0005))
    return out


def records(spec: SwitchSpec) -> str:
    """Given a switch spec, return its .snmprec text (sorted by OID, as snmpsim requires)."""
    rng = random.Random(f"{spec.name}/{spec.seed}")  # noqa: S311 - simulated data, not security
    lines: list[tuple[tuple[int, ...], str]] = []

    def add(oid: str, tag: str | int, value: object) -> None:
        lines.append((tuple(int(x) for x in oid.split(".")), f"{oid}|{tag}|{value}"))

    def counter(oid: str, bits: int, rate: float, initial: int) -> None:
        tag = 65 if bits == 32 else 70
        initial = 0 if spec.zero_start else initial % (1 << bits)
        if spec.static or rate <= 0:
            add(oid, tag, initial)
        else:
            add(oid, f"{tag}:numeric", f"rate={rate:.6f},initial={initial}" + (",wrap=1" if bits == 32 else ""))

    add("1.3.6.1.2.1.1.1.0", 4, f"citydc lab switch {spec.name}")
    add("1.3.6.1.2.1.1.2.0", 6, "1.3.6.1.4.1.9.1.2134")
    uptime_initial = 0 if spec.zero_start else rng.randint(0, 10**8)
    if spec.slow_ms:
        add(SYS_UPTIME, "67:delay", f"value={uptime_initial},wait={spec.slow_ms}")
    elif spec.static:
        add(SYS_UPTIME, 67, uptime_initial)
    else:
        add(SYS_UPTIME, "67:numeric", f"rate=100,initial={uptime_initial}")
    add("1.3.6.1.2.1.1.5.0", 4, spec.name)
    ifs = _interfaces(spec, rng)
    add("1.3.6.1.2.1.2.1.0", 2, len(ifs))
    for it in ifs:
        i, up = it["idx"], it["oper"] == 1
        in_bps = it["mbps"] * 1e6 / 8 * it["util"] if up else 0.0
        out_bps = in_bps * rng.uniform(0.3, 1.5)
        pkt = rng.uniform(300, 1200)
        in_init, out_init = rng.randint(0, 2**40), rng.randint(0, 2**40)
        wrap_here = spec.wrap32 is not None and spec.wrap32[0] == i
        add(f"{IF}.1.{i}", 2, i)
        add(f"{IF}.2.{i}", 4, it["descr"])
        add(f"{IF}.3.{i}", 2, it["type"])
        add(f"{IF}.5.{i}", 66, min(it["mbps"] * 1_000_000, 4294967295))
        add(f"{IF}.7.{i}", 2, it["admin"])
        add(f"{IF}.8.{i}", 2, it["oper"])
        if wrap_here:
            _, rate, after = spec.wrap32  # type: ignore[misc]
            # Not zeroed by zero_start: this port exists to wrap a known time after every start.
            add(f"{IF}.10.{i}", "65:numeric", f"rate={rate:.6f},initial={(1 << 32) - int(rate * after)},wrap=1")
        else:
            counter(f"{IF}.10.{i}", 32, in_bps, in_init)
        counter(f"{IF}.11.{i}", 32, in_bps / pkt, in_init // 700)
        counter(f"{IF}.13.{i}", 32, 0.05 if up and rng.random() < 0.2 else 0, rng.randint(0, 5000) if up else 0)
        counter(f"{IF}.14.{i}", 32, 0.01 if up and rng.random() < 0.1 else 0, rng.randint(0, 500) if up else 0)
        counter(f"{IF}.16.{i}", 32, out_bps, out_init)
        counter(f"{IF}.17.{i}", 32, out_bps / pkt, out_init // 700)
        counter(f"{IF}.19.{i}", 32, 0.1 if up and rng.random() < 0.2 else 0, rng.randint(0, 5000) if up else 0)
        counter(f"{IF}.20.{i}", 32, 0.005 if up and rng.random() < 0.1 else 0, rng.randint(0, 500) if up else 0)
        add(f"{IFX}.1.{i}", 4, it["name"])
        counter(f"{IFX}.2.{i}", 32, in_bps / pkt / 100, in_init // 90000)
        counter(f"{IFX}.3.{i}", 32, in_bps / pkt / 100, in_init // 80000)
        counter(f"{IFX}.4.{i}", 32, out_bps / pkt / 100, out_init // 90000)
        counter(f"{IFX}.5.{i}", 32, out_bps / pkt / 100, out_init // 80000)
        if spec.hc and not wrap_here:
            counter(f"{IFX}.6.{i}", 64, in_bps, in_init)
            counter(f"{IFX}.7.{i}", 64, in_bps / pkt, in_init // 700)
            counter(f"{IFX}.8.{i}", 64, in_bps / pkt / 100, in_init // 90000)
            counter(f"{IFX}.9.{i}", 64, in_bps / pkt / 100, in_init // 80000)
            counter(f"{IFX}.10.{i}", 64, out_bps, out_init)
            counter(f"{IFX}.11.{i}", 64, out_bps / pkt, out_init // 700)
            counter(f"{IFX}.12.{i}", 64, out_bps / pkt / 100, out_init // 90000)
            counter(f"{IFX}.13.{i}", 64, out_bps / pkt / 100, out_init // 80000)
        add(f"{IFX}.15.{i}", 66, it["mbps"])
        add(f"{IFX}.18.{i}", 4, it["alias"])
        add(f"{IFX}.19.{i}", 67, 0)
    lines.sort()
    return "".join(text + "\n" for _, text in lines)


def rate_of(spec: SwitchSpec, if_index: int, column: str) -> float | None:
    """Given a spec, an ifIndex and ``ifHCInOctets``/``ifInOctets``, return its growth in bytes/s (tests)."""
    oid = {"ifHCInOctets": f"{IFX}.6.{if_index}", "ifInOctets": f"{IF}.10.{if_index}"}[column]
    for line in records(spec).splitlines():
        o, tag, value = line.split("|", 2)
        if o == oid:
            if ":numeric" not in tag:
                return 0.0
            return float(dict(kv.split("=") for kv in value.split(","))["rate"])
    return None

"""SNMP modules as data: the IF-MIB columns a module walks, and how columns become metrics.

A module is a list of column names (``citydc.yaml`` ``snmp.modules``, plus the built-in ``if_mib``).
Everything else is derived here: which columns are static (cached between scrapes), which
32-bit column backs up a 64-bit one, and which metric family each column feeds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from citydc.config.models import SnmpInterfaceFilter, SnmpModule

__all__ = ["BUILTIN_MODULES", "COLUMNS", "FAMILIES", "SYS_UPTIME", "Column", "Family", "Module", "build_modules",
           "interface_name", "label_text"]

IF_TABLE = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_TABLE = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)

Kind = Literal["counter32", "counter64", "gauge", "enum", "string", "timeticks"]


@dataclass(frozen=True)
class Column:
    name: str
    oid: tuple[int, ...]
    kind: Kind
    static: bool = False  # changes rarely: cached for snmp.static_refresh_seconds


def _cols() -> dict[str, Column]:
    spec = [
        (IF_TABLE, 2, "ifDescr", "string", True), (IF_TABLE, 3, "ifType", "enum", True),
        (IF_TABLE, 4, "ifMtu", "gauge", True), (IF_TABLE, 5, "ifSpeed", "gauge", True),
        (IF_TABLE, 6, "ifPhysAddress", "string", True), (IF_TABLE, 7, "ifAdminStatus", "enum", False),
        (IF_TABLE, 8, "ifOperStatus", "enum", False), (IF_TABLE, 9, "ifLastChange", "timeticks", False),
        (IF_TABLE, 10, "ifInOctets", "counter32", False), (IF_TABLE, 11, "ifInUcastPkts", "counter32", False),
        (IF_TABLE, 13, "ifInDiscards", "counter32", False), (IF_TABLE, 14, "ifInErrors", "counter32", False),
        (IF_TABLE, 16, "ifOutOctets", "counter32", False), (IF_TABLE, 17, "ifOutUcastPkts", "counter32", False),
        (IF_TABLE, 19, "ifOutDiscards", "counter32", False), (IF_TABLE, 20, "ifOutErrors", "counter32", False),
        (IFX_TABLE, 1, "ifName", "string", True),
        (IFX_TABLE, 2, "ifInMulticastPkts", "counter32", False),
        (IFX_TABLE, 3, "ifInBroadcastPkts", "counter32", False),
        (IFX_TABLE, 4, "ifOutMulticastPkts", "counter32", False),
        (IFX_TABLE, 5, "ifOutBroadcastPkts", "counter32", False),
        (IFX_TABLE, 6, "ifHCInOctets", "counter64", False), (IFX_TABLE, 7, "ifHCInUcastPkts", "counter64", False),
        (IFX_TABLE, 8, "ifHCInMulticastPkts", "counter64", False),
        (IFX_TABLE, 9, "ifHCInBroadcastPkts", "counter64", False),
        (IFX_TABLE, 10, "ifHCOutOctets", "counter64", False), (IFX_TABLE, 11, "ifHCOutUcastPkts", "counter64", False),
        (IFX_TABLE, 12, "ifHCOutMulticastPkts", "counter64", False),
        (IFX_TABLE, 13, "ifHCOutBroadcastPkts", "counter64", False),
        (IFX_TABLE, 15, "ifHighSpeed", "gauge", True), (IFX_TABLE, 18, "ifAlias", "string", True),
        (IFX_TABLE, 19, "ifCounterDiscontinuityTime", "timeticks", False),
    ]
    return {name: Column(name, (*table, n), kind, static) for table, n, name, kind, static in spec}


COLUMNS: dict[str, Column] = _cols()


@dataclass(frozen=True)
class Family:
    """One interface counter: ``key`` names it in a poll's interface rows (the exposition maps it to a
    metric); its value comes from ``column``, or from the 32-bit ``fallback`` where ``column`` has none."""

    key: str
    column: str
    fallback: str | None = None


def _families() -> list[Family]:
    out = [Family("receive_bytes", "ifHCInOctets", "ifInOctets"),
           Family("transmit_bytes", "ifHCOutOctets", "ifOutOctets")]
    for direction, d in (("receive", "In"), ("transmit", "Out")):
        for cast, c, fb in (("unicast", "Ucast", f"if{d}UcastPkts"), ("multicast", "Multicast", f"if{d}MulticastPkts"),
                            ("broadcast", "Broadcast", f"if{d}BroadcastPkts")):
            out.append(Family(f"{direction}_packets_{cast}", f"ifHC{d}{c}Pkts", fb))
        out.append(Family(f"{direction}_errors", f"if{d}Errors"))
        out.append(Family(f"{direction}_discards", f"if{d}Discards"))
    return out


FAMILIES: list[Family] = _families()
FALLBACK_OF: dict[str, str] = {f.column: f.fallback for f in FAMILIES if f.fallback}
LABEL_COLUMNS = ("ifName", "ifAlias")  # always walked: every interface metric carries them


def label_text(value: object) -> str:
    """Given an SNMP string value, return it as label text: invalid UTF-8 repaired, NUL bytes dropped, never fatal."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").replace("\x00", "")
    return "" if value is None else str(value)


def interface_name(columns: Mapping[str, Mapping[int, object]], index: int) -> str:
    """Given the columns read and an ifIndex, return the interface's ifName label: ifName, else ifDescr,
    else the ifIndex. The interface filter matches this same text, so a pattern written from the
    labels Prometheus shows selects those interfaces."""
    return (label_text(columns.get("ifName", {}).get(index)) or label_text(columns.get("ifDescr", {}).get(index))
            or str(index))


@dataclass(frozen=True)
class Module:
    """A module ready to poll: its columns split into static and dynamic, and its interface filter."""

    name: str
    columns: tuple[str, ...]
    max_repetitions: int = 25
    filter: SnmpInterfaceFilter = field(default_factory=SnmpInterfaceFilter)

    @property
    def static_columns(self) -> tuple[str, ...]:
        wanted = dict.fromkeys((*LABEL_COLUMNS, *(c for c in self.columns if COLUMNS[c].static)))
        return tuple(wanted)

    @property
    def dynamic_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if not COLUMNS[c].static)

    @property
    def has_filter(self) -> bool:
        f = self.filter
        return bool(f.alias_required or f.name_pattern or f.if_types)

    def keep(self, static: Mapping[str, Mapping[int, object]], index: int) -> bool:
        """Given the static columns and an ifIndex, return True if the filter keeps that interface."""
        f = self.filter
        # The texts exported as labels, not the raw bytes: an alias of NUL bytes is exported empty, and
        # a name padded with NULs, or taken from ifDescr, is exported as the pattern's author sees it.
        if f.alias_required and not label_text(static.get("ifAlias", {}).get(index)):
            return False
        if f.name_pattern and not re.search(f.name_pattern, interface_name(static, index)):
            return False
        return not (f.if_types and static.get("ifType", {}).get(index) not in f.if_types)


IF_MIB_COLUMNS = (
    "ifName", "ifAlias", "ifDescr", "ifSpeed", "ifHighSpeed", "ifAdminStatus", "ifOperStatus",
    "ifHCInOctets", "ifHCOutOctets", "ifHCInUcastPkts", "ifHCOutUcastPkts", "ifHCInMulticastPkts",
    "ifHCOutMulticastPkts", "ifHCInBroadcastPkts", "ifHCOutBroadcastPkts",
    "ifInErrors", "ifOutErrors", "ifInDiscards", "ifOutDiscards", "ifCounterDiscontinuityTime",
)

BUILTIN_MODULES: dict[str, Module] = {
    "if_mib": Module("if_mib", IF_MIB_COLUMNS),
    # Bytes and status only: the cheap module for large fleets.
    "if_mib_bytes": Module("if_mib_bytes", ("ifName", "ifAlias", "ifHighSpeed", "ifSpeed", "ifOperStatus",
                                            "ifHCInOctets", "ifHCOutOctets")),
}


def build_modules(configured: Mapping[str, SnmpModule]) -> dict[str, Module]:
    """Given ``snmp.modules`` from the config, return the built-in modules updated with them.

    Raise ValueError if a name_pattern is not a valid regular expression.
    """
    out = dict(BUILTIN_MODULES)
    for name, spec in configured.items():
        if spec.filter.name_pattern:
            try:
                re.compile(spec.filter.name_pattern)
            except re.error as exc:
                raise ValueError(f"snmp.modules.{name}.filter.name_pattern: invalid regular expression: "
                                 f"{exc}") from None
        out[name] = Module(name, tuple(dict.fromkeys(spec.columns)), spec.max_repetitions, spec.filter)
    return out

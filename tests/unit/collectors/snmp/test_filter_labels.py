"""The interface filter decides on the texts the interfaces are exported with (ifName and ifAlias labels).

A pattern is written from the labels Prometheus shows; an agent padding ifName with NUL bytes, or one
without ifXTable (the label then is ifDescr), must not make the filter see another name than the label.
"""

import asyncio
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.modules import build_modules
from citydc.config.models import SnmpModule

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)


def module(columns=("ifHCInOctets", "ifDescr"), **filter_spec):
    return build_modules({"m": SnmpModule(columns=list(columns), filter=filter_spec)})["m"]


def exported(agent, mod):
    result = asyncio.run(poll_target(agent, mod, TargetState(), time.monotonic() + 10, 300.0))
    assert result.up
    return {row.index: (row.name, row.alias) for row in result.rows}


def test_name_pattern_matches_a_name_padded_with_nul_bytes_as_its_label_shows_it():
    assert module(name_pattern="^Gi0/1$").keep({"ifName": {1: b"Gi0/1\x00\x00"}}, 1)


def test_name_pattern_matches_ifdescr_when_the_agent_has_no_ifname():
    assert module(name_pattern="^eth1$").keep({"ifName": {}, "ifDescr": {1: b"eth1"}}, 1)
    assert module(name_pattern="^eth1$").keep({"ifName": {1: b""}, "ifDescr": {1: b"eth1"}}, 1)


def test_alias_required_drops_an_alias_of_nul_bytes_exported_empty():
    assert not module(alias_required=True).keep({"ifAlias": {1: b"\x00\x00"}}, 1)
    assert module(alias_required=True).keep({"ifAlias": {1: b"up\x00link"}}, 1)


def test_a_poll_exports_the_nul_padded_interface_the_pattern_names(agent_cls, make_table):
    table = make_table(4)
    table[(*IFX, 1, 1)] = rfc1902.OctetString(b"Gi0/1\x00\x00")
    assert exported(agent_cls(table), module(name_pattern="^Gi0/1$")) == {1: ("Gi0/1", "port 1")}


def test_a_poll_of_an_agent_without_ifxtable_filters_on_ifdescr(agent_cls, make_table):
    table = {oid: value for oid, value in make_table(4, hc=False).items() if oid[:len(IFX)] != IFX}
    rows = exported(agent_cls(table), module(("ifInOctets", "ifDescr"), name_pattern="/[12]$"))
    assert rows == {1: ("GigabitEthernet0/1", ""), 2: ("GigabitEthernet0/2", "")}

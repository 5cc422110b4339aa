"""One poll turned into samples: labels, fallbacks, filters, repairs, errors (citydc.collectors.snmp.collector)."""

import asyncio
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.exposition import interface_samples
from citydc.collectors.snmp.modules import BUILTIN_MODULES, build_modules
from citydc.config.models import SnmpModule

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def poll(agent, module=BUILTIN_MODULES["if_mib"], state=None, refresh=300.0, clock=time.monotonic):
    state = state or TargetState()
    return asyncio.run(poll_target(agent, module, state, time.monotonic() + 10, refresh, clock)), state


def samples(result):
    """The poll's interface rows as the exporter exposes them (exposition.interface_samples)."""
    return interface_samples(result.rows, "siwei", "sw1")


def values(result, metric, **labels):
    return {dict(s.labels)["ifIndex"]: s.value for s in samples(result)
            if s.metric == metric and all(dict(s.labels).get(k) == v for k, v in labels.items())}


def test_samples_carry_site_device_and_interface_labels(agent_cls, make_table):
    result, _ = poll(agent_cls(make_table(3)))
    assert result.up and result.interfaces == 3
    rx = [s for s in samples(result) if s.metric == "citydc_snmp_if_receive_bytes"]
    assert dict(rx[0].labels) == {"site": "siwei", "device": "sw1", "ifName": "Gi0/1", "ifAlias": "port 1",
                                  "ifIndex": "1"}
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 1000, "2": 2000, "3": 3000}
    assert values(result, "citydc_snmp_if_receive_packets", cast="multicast") == {"1": 100, "2": 200, "3": 300}
    assert values(result, "citydc_snmp_if_oper_status") == {"1": 1, "2": 2, "3": 1}
    assert values(result, "citydc_snmp_if_speed_bits_per_second") == {"1": 1e9, "2": 1e9, "3": 1e9}
    assert result.uptime_seconds == 10.0


def test_32bit_only_device_falls_back_and_remembers(agent_cls, make_table):
    agent = agent_cls(make_table(2, hc=False))
    result, state = poll(agent)
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 100, "2": 200}
    assert "ifInOctets" in state.fallbacks
    first_round = len(agent.requests)
    poll(agent, state=state)
    assert len(agent.requests) - first_round < first_round  # second poll: no separate fallback walk


def test_invalid_utf8_in_alias_is_repaired(agent_cls, make_table):
    result, _ = poll(agent_cls(make_table(1, aliases={1: b"caf\xe9 \xff uplink"})))
    alias = dict(samples(result)[0].labels)["ifAlias"]
    assert alias == "caf\ufffd \ufffd uplink"


def test_speed_uses_high_speed_when_if_speed_saturates(agent_cls, make_table):
    table = make_table(1)
    table[(*IF, 5, 1)] = rfc1902.Gauge32(4294967295)
    table[(*IFX, 15, 1)] = rfc1902.Gauge32(10000)
    result, _ = poll(agent_cls(table))
    assert values(result, "citydc_snmp_if_speed_bits_per_second") == {"1": 10e9}


def test_holes_are_counted_and_other_interfaces_exported(agent_cls, make_table):
    table = make_table(3)
    del table[(*IF, 8, 2)]  # ifOperStatus.2 missing
    result, _ = poll(agent_cls(table))
    assert result.up and result.errors["hole"] == 1
    assert values(result, "citydc_snmp_if_oper_status") == {"1": 1, "3": 1}


def test_dead_device_is_down_with_reason(agent_cls, make_table):
    result, _ = poll(agent_cls(make_table(2), fail_after=0))
    assert not result.up and result.reason == "timeout" and result.rows == []


def test_filter_gets_only_selected_interfaces_with_get(agent_cls, make_table):
    table = make_table(6, aliases={1: b"uplink", 2: b"", 3: b"", 4: b"", 5: b"", 6: b""})
    module = build_modules({"a": SnmpModule(columns=["ifHCInOctets"], filter={"alias_required": True})})["a"]
    agent = agent_cls(table)
    result, _ = poll(agent, module)
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 1000}
    # static walk, then GETs: the counter column was never walked
    assert all((*IFX, 6) not in r[2] for r in agent.requests if r[0] == "bulk")
    assert any(r[0] == "get" and (*IFX, 6, 1) in r[1] for r in agent.requests)


def test_static_columns_are_cached_until_refresh(agent_cls, make_table):
    agent = agent_cls(make_table(2))
    _, state = poll(agent)
    agent.table[(*IFX, 18, 1)] = rfc1902.OctetString(b"renamed")
    result, _ = poll(agent, state=state)
    assert dict(samples(result)[0].labels)["ifAlias"] == "port 1"  # cached
    result, _ = poll(agent, state=state, refresh=0)
    assert dict(samples(result)[0].labels)["ifAlias"] == "renamed"


def test_wrap_between_polls_is_carried_and_reboot_resets(agent_cls, make_table):
    now = [100.0]
    agent = agent_cls(make_table(1, hc=False, uptime=10_000))
    agent.table[(*IF, 10, 1)] = rfc1902.Counter32(2**32 - 50)
    _, state = poll(agent, clock=lambda: now[0])
    now[0] += 10
    agent.table[(*IF, 10, 1)] = rfc1902.Counter32(25)
    agent.table[UPTIME] = rfc1902.TimeTicks(11_000)
    result, _ = poll(agent, state=state, clock=lambda: now[0])
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 2**32 + 25}
    now[0] += 10
    agent.table[(*IF, 10, 1)] = rfc1902.Counter32(7)
    agent.table[UPTIME] = rfc1902.TimeTicks(500)
    result, _ = poll(agent, state=state, clock=lambda: now[0])
    assert result.rebooted
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 7}
    assert state.counters.resets["reboot"] == 1 and state.counters.wraps == 1


IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)


def test_ifnumber_below_the_row_count_drops_no_interface(agent_cls, make_table):
    table = make_table(42)
    table[IF_NUMBER] = rfc1902.Integer(33)  # what an HPE ProCurve 6120XG says for its 42 rows
    agent = agent_cls(table)
    for module in (BUILTIN_MODULES["if_mib"], _uplinks_module()):
        state = TargetState()
        for _ in range(2):  # the refresh, then the cached path
            result, state = poll(agent, module, state)
            assert result.up and result.interfaces == 42
            assert set(values(result, "citydc_snmp_if_receive_bytes")) == {str(i) for i in range(1, 43)}


def _uplinks_module():
    return build_modules({"all": SnmpModule(columns=["ifHCInOctets", "ifOperStatus"],
                                            filter={"name_pattern": "^Gi"})})["all"]


def test_a_new_interface_after_the_cached_ones_is_exported(agent_cls, make_table):
    agent = agent_cls(make_table(3))
    _, state = poll(agent)
    agent.table.update({k: v for k, v in make_table(4).items() if k[-1] == 4 and k != UPTIME})
    result, state = poll(agent, state=state)
    assert set(values(result, "citydc_snmp_if_receive_bytes")) == {"1", "2", "3", "4"}
    assert state.static_at == float("-inf")  # its name is read at the next poll
    result, _ = poll(agent, state=state)
    assert {dict(s.labels)["ifName"] for s in samples(result) if s.metric == "citydc_snmp_if_receive_bytes"} == {
        "Gi0/1", "Gi0/2", "Gi0/3", "Gi0/4"}


def test_a_filtered_poll_probes_past_the_last_known_interface(agent_cls, make_table):
    module = build_modules({"te": SnmpModule(columns=["ifHCInOctets"], filter={"name_pattern": "^Gi0/1$"})})["te"]
    agent = agent_cls(make_table(6))
    _, state = poll(agent, module)
    result, state = poll(agent, module, state)
    assert values(result, "citydc_snmp_if_receive_bytes") == {"1": 1000}
    assert state.static_at > float("-inf")  # nothing new: the cache stays
    agent.table.update({k: v for k, v in make_table(7).items() if k[-1] == 7 and k != UPTIME})
    _, state = poll(agent, module, state)
    assert state.static_at == float("-inf")

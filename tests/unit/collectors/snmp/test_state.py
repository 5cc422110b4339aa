"""Counter state saved by one exporter process and resumed by the next (citydc.collectors.snmp.state)."""

import asyncio
import json
import logging
import time

from pysnmp.proto import rfc1902

from citydc.collectors.snmp import state as state_file
from citydc.collectors.snmp.collector import TargetState, poll_target
from citydc.collectors.snmp.exporter import Exporter
from citydc.collectors.snmp.modules import BUILTIN_MODULES
from citydc.config.models import Config

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IN_OCTETS = (*IF, 10, 1)
KEY = ("10.0.0.5", 161, "if_mib", "v2c")
WALL = 1_700_000_000.0


def poll(agent, state, now):
    coro = poll_target(agent, BUILTIN_MODULES["if_mib"], state, time.monotonic() + 10, 300.0,
                       lambda: now)
    return asyncio.run(coro)


def rx(result):
    return {str(row.index): row.counters["receive_bytes"] for row in result.rows if "receive_bytes" in row.counters}


def set_device(agent, in_octets, uptime_ticks):
    agent.table[IN_OCTETS] = rfc1902.Counter32(in_octets)
    agent.table[UPTIME] = rfc1902.TimeTicks(uptime_ticks)


def restart(state, saved_mono, saved_wall, load_mono, load_wall, max_age=3600.0):
    """Save ``state`` as the old process would (its clocks), load it as a new process would (its clocks)."""
    doc = json.loads(json.dumps(state_file.dump({KEY: state}, saved_mono, saved_wall)))
    resumes, problems = state_file.parse(doc, "test.json", load_mono, load_wall, max_age)
    assert problems == []
    return TargetState(resume=resumes[KEY])


def wrapped_device(agent_cls, make_table):
    """A 32-bit-only device polled at monotonic 100 and 110: its counter wrapped once in between."""
    agent = agent_cls(make_table(1, hc=False, uptime=10_000))
    state = TargetState()
    set_device(agent, 2**32 - 50, 10_000)
    poll(agent, state, 100.0)
    set_device(agent, 25, 11_000)
    assert rx(poll(agent, state, 110.0)) == {"1": 2**32 + 25}
    return agent, state


def test_round_trip_keeps_counters_and_moves_times_from_one_monotonic_clock_to_another(agent_cls, make_table):
    _, state = wrapped_device(agent_cls, make_table)
    # Old process: monotonic 110 is wall WALL. New process, started 60 s later: its monotonic clock reads 5.
    new = restart(state, 110.0, WALL, 5.0, WALL + 60)
    saved = new.resume.counters
    assert sorted(saved.slots()) == sorted(state.counters.slots())
    assert ("ifInOctets", 1, 25, 2**32) in saved.slots()
    assert saved.discontinuities() == {1: 0}  # ifCounterDiscontinuityTime read
    assert saved.uptime_ticks == 11_000 and saved.wraps == 1
    assert saved.uptime_seen_at == 5.0 - 60  # 60 s before the new process's "now"
    assert new.resume.last_poll_at == 5.0 - 60


def test_carry_continues_across_a_restart(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)
    new = restart(state, 110.0, WALL, 3.0, WALL + 18)
    set_device(agent, 1000, 11_000 + 20 * 100)  # polled 20 s after the save; the device kept running
    result = poll(agent, new, 5.0)
    assert result.resume_outcome == "restored"
    assert rx(result) == {"1": 2**32 + 1000}
    assert new.counters.wraps == 1 and not new.counters.resets


def test_wrap_during_the_downtime_is_carried(agent_cls, make_table):
    agent = agent_cls(make_table(1, hc=False, uptime=10_000))
    state = TargetState()
    set_device(agent, 2**32 - 100, 10_000)
    poll(agent, state, 100.0)
    new = restart(state, 100.0, WALL, 0.0, WALL + 30)
    set_device(agent, 50, 10_000 + 30 * 100)
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "restored"
    assert rx(result) == {"1": 2**32 + 50}
    assert new.counters.wraps == 1


def test_decrease_too_large_for_the_line_rate_over_the_downtime_is_a_reset(agent_cls, make_table):
    agent = agent_cls(make_table(1, hc=False, uptime=10_000))
    agent.table[(*IF, 5, 1)] = rfc1902.Gauge32(10_000_000)  # 10 Mbit/s: 30 s carry at most ~57 MB
    state = TargetState()
    set_device(agent, 3_000_000_000, 10_000)
    poll(agent, state, 100.0)
    new = restart(state, 100.0, WALL, 0.0, WALL + 30)
    set_device(agent, 50, 10_000 + 30 * 100)
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "restored"
    assert rx(result) == {"1": 50}
    assert new.counters.resets["backwards"] == 1 and new.counters.wraps == 0


def test_reboot_during_the_downtime_is_one_counted_reset(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)
    new = restart(state, 110.0, WALL, 0.0, WALL + 30)
    set_device(agent, 7, 800)  # sysUpTime 8 s: it rebooted while the exporter was down
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "reboot"
    assert rx(result) == {"1": 7}
    assert new.counters.resets["reboot"] == 1


def test_reboot_early_in_a_long_downtime_is_seen_though_sysuptime_is_higher_than_saved(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)  # saved sysUpTime 110 s
    new = restart(state, 110.0, WALL, 0.0, WALL + 600)
    set_device(agent, 7, 550 * 100)  # 550 s > 110 s, but 710 s were expected: it restarted 550 s ago
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "reboot"
    assert rx(result) == {"1": 7}


def test_stale_state_is_dropped(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)
    new = restart(state, 110.0, WALL, 0.0, WALL + 7200, max_age=3600)
    set_device(agent, 1000, 11_000 + 7200 * 100)
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "stale"
    assert rx(result) == {"1": 1000}
    assert not new.counters.resets


def test_wall_clock_stepped_back_during_the_downtime_drops_the_state(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)
    # 300 s really passed (sysUpTime says so) but the wall clock only shows 100 s.
    new = restart(state, 110.0, WALL, 0.0, WALL + 100)
    set_device(agent, 1000, 11_000 + 300 * 100)
    result = poll(agent, new, 0.0)
    assert result.resume_outcome == "clock"
    assert rx(result) == {"1": 1000}


def test_outcome_is_reported_once_and_a_down_first_poll_keeps_the_state_waiting(agent_cls, make_table):
    agent, state = wrapped_device(agent_cls, make_table)
    new = restart(state, 110.0, WALL, 0.0, WALL + 10)
    dead = agent_cls(make_table(1, hc=False), fail_after=0)
    assert not poll(dead, new, 0.0).up
    assert new.resume is not None  # still waiting: a second restart now would keep it
    assert ["ifInOctets", 1, 25, 2**32] in state_file.dump({KEY: new}, 0.0, WALL + 10)["targets"][0]["counters"]
    set_device(agent, 1000, 11_000 + 12 * 100)
    assert poll(agent, new, 2.0).resume_outcome == "restored"
    set_device(agent, 2000, 11_000 + 13 * 100)
    second = poll(agent, new, 3.0)
    assert second.resume_outcome is None and rx(second) == {"1": 2**32 + 2000}


def test_targets_not_polled_for_a_day_are_not_saved(agent_cls, make_table):
    _, state = wrapped_device(agent_cls, make_table)
    assert state_file.dump({KEY: state}, 110.0 + 3600, WALL)["targets"]
    assert state_file.dump({KEY: state}, 110.0 + 25 * 3600, WALL)["targets"] == []
    assert state_file.dump({KEY: TargetState()}, 110.0, WALL)["targets"] == []  # never polled


def test_corrupted_file_is_a_warning_naming_it_and_a_fresh_start(tmp_path, caplog):
    path = tmp_path / "counters.json"
    path.write_text('{"version": 1, "targets": [')
    with caplog.at_level(logging.WARNING):
        assert state_file.load(path, 0.0, WALL, 3600) == ({}, 1)
    assert str(path) in caplog.text
    path.write_text(json.dumps({"version": 99, "targets": []}))
    assert state_file.load(path, 0.0, WALL, 3600) == ({}, 1)
    assert "version 99" in caplog.text
    assert state_file.load(tmp_path / "missing.json", 0.0, WALL, 3600) == ({}, 0)


def test_a_bad_entry_is_skipped_naming_its_field_and_the_others_kept(agent_cls, make_table, tmp_path, caplog):
    _, state = wrapped_device(agent_cls, make_table)
    doc = state_file.dump({KEY: state, ("10.0.0.6", 161, "if_mib", "v2c"): state}, 110.0, WALL)
    doc["targets"][1]["counters"][0][2] = -5
    path = tmp_path / "counters.json"
    state_file.write_atomic(path, doc)
    with caplog.at_level(logging.WARNING):
        resumes, problems = state_file.load(path, 0.0, WALL, 3600)
    assert list(resumes) == [KEY] and problems == 1
    assert f"{path}: targets[1].counters[0]" in caplog.text


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "sub" / "counters.json"
    state_file.write_atomic(path, {"version": 1, "targets": []})
    state_file.write_atomic(path, {"version": 1, "targets": [], "saved_at": 1.0})
    assert json.loads(path.read_text())["saved_at"] == 1.0
    assert [p.name for p in path.parent.iterdir()] == ["counters.json"]


def test_exporter_saves_at_stop_and_the_next_one_loads_and_counts_problems(tmp_path, agent_cls, make_table):
    cfg = Config.model_validate({"sites": [{"id": "siwei", "name": "Siwei"}]})
    path = tmp_path / "counters.json"
    # The states were polled at monotonic 100 and 110: the exporters' clock must be the same clock, not this
    # host's (on a host up for more than a day, time.monotonic() would make them a day old and not saved).
    first = Exporter(cfg, state_path=path, clock=lambda: 120.0)
    _, first.states[KEY] = wrapped_device(agent_cls, make_table)
    first.start()
    first.stop()
    assert json.loads(path.read_text())["targets"][0]["host"] == "10.0.0.5"
    second = Exporter(cfg, state_path=path, clock=lambda: 130.0)
    second.load_state()
    assert second.states[KEY].resume is not None
    path.write_text("not json")
    third = Exporter(cfg, state_path=path, clock=lambda: 130.0)
    third.load_state()
    assert third.states == {}
    assert third.registry.get_sample_value("citydc_snmp_counter_state_load_problems_total") == 1


def test_unwritable_state_dir_is_counted_and_not_fatal(tmp_path, agent_cls, make_table, caplog):
    cfg = Config.model_validate({"sites": [{"id": "siwei", "name": "Siwei"}]})
    (tmp_path / "file").write_text("")
    exp = Exporter(cfg, state_path=tmp_path / "file" / "counters.json")  # its directory is a file
    _, exp.states[KEY] = wrapped_device(agent_cls, make_table)
    with caplog.at_level(logging.WARNING):
        assert exp.save_state() is False
    assert "cannot write SNMP counter state" in caplog.text
    assert exp.registry.get_sample_value("citydc_snmp_counter_state_writes_total", {"outcome": "error"}) == 1

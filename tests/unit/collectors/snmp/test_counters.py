"""Counter carry, wrap, reboot and discontinuity logic (citydc.collectors.snmp.counters)."""

from citydc.collectors.snmp.counters import TargetCounters


def test_first_value_is_exported_as_read():
    c = TargetCounters()
    assert c.update("ifInOctets", 1, 123456, 32) == 123456


def test_32bit_wrap_is_carried_into_a_monotonic_value():
    c = TargetCounters()
    c.update("ifInOctets", 1, 2**32 - 1000, 32)
    assert c.update("ifInOctets", 1, 500, 32) == 2**32 + 500
    assert c.update("ifInOctets", 1, 9000, 32) == 2**32 + 9000
    assert c.wraps == 1
    assert not c.resets


def test_64bit_wrap_near_top_is_a_wrap_but_far_drop_is_flagged_backwards():
    c = TargetCounters()
    c.update("ifHCInOctets", 1, 2**64 - 10, 64)
    assert c.update("ifHCInOctets", 1, 5, 64) == 2**64 + 5
    c.update("ifHCOutOctets", 1, 10**12, 64)
    assert c.update("ifHCOutOctets", 1, 7, 64) == 7  # a "clear counters": exported as a reset
    assert c.resets["backwards"] == 1
    assert c.wraps == 1


def test_32bit_drop_larger_than_line_rate_allows_is_a_reset_not_a_wrap():
    c = TargetCounters()
    c.update("ifInOctets", 1, 3_000_000_000, 32)
    assert c.update("ifInOctets", 1, 10, 32, max_delta=1_000_000) == 10
    assert c.resets["backwards"] == 1 and c.wraps == 0


def test_reboot_drops_carry_and_counts_once():
    c = TargetCounters()
    assert not c.observe_uptime(500_000, now=0.0)
    c.update("ifInOctets", 1, 2**32 - 10, 32)
    c.update("ifInOctets", 1, 20, 32)
    assert c.observe_uptime(300, now=30.0)  # sysUpTime went back: reboot
    assert c.update("ifInOctets", 1, 40, 32) == 40  # carry gone: the device's own value
    assert c.resets["reboot"] == 1


def test_uptime_increasing_is_not_a_reboot():
    c = TargetCounters()
    c.observe_uptime(1000, now=0.0)
    assert not c.observe_uptime(4000, now=30.0)
    assert not c.resets


def test_sysuptime_own_32bit_wrap_is_not_a_reboot():
    c = TargetCounters()
    c.observe_uptime(2**32 - 1000, now=0.0)
    assert not c.observe_uptime(2000, now=30.0)  # 3000 ticks later, across 2^32
    assert c.resets["reboot"] == 0


def test_discontinuity_time_change_resets_only_that_interface():
    c = TargetCounters()
    assert not c.observe_discontinuity(1, 0)
    assert not c.observe_discontinuity(2, 0)
    c.update("ifInOctets", 1, 2**32 - 5, 32)
    c.update("ifInOctets", 1, 5, 32)
    c.update("ifInOctets", 2, 2**32 - 5, 32)
    c.update("ifInOctets", 2, 5, 32)
    assert c.observe_discontinuity(1, 777)
    assert not c.observe_discontinuity(2, 0)
    assert c.update("ifInOctets", 1, 6, 32) == 6
    assert c.update("ifInOctets", 2, 6, 32) == 2**32 + 6
    assert c.resets["discontinuity"] == 1


def saved_after_wrap(uptime_ticks: int, at: float) -> TargetCounters:
    saved = TargetCounters()
    saved.observe_uptime(uptime_ticks, now=at)
    saved.update("ifInOctets", 1, 2**32 - 10, 32)
    saved.update("ifInOctets", 1, 20, 32)
    return saved


def test_resume_across_sysuptime_own_wrap_keeps_the_carry():
    saved = saved_after_wrap(2**32 - 1000, at=0.0)
    c = TargetCounters()
    assert c.resume(saved, 2000, now=30.0, max_age=3600) == "restored"  # 3000 ticks later, across 2^32
    assert not c.observe_uptime(2000, now=30.0)
    assert c.update("ifInOctets", 1, 30, 32) == 2**32 + 30


def test_resume_does_not_share_slots_with_the_saved_state():
    saved = saved_after_wrap(1000, at=0.0)
    c = TargetCounters()
    assert c.resume(saved, 1000 + 500, now=5.0, max_age=3600) == "restored"
    c.update("ifInOctets", 1, 5, 32)  # a second wrap in the live state only
    assert saved.slots() == [("ifInOctets", 1, 20, 2**32)]


def test_resume_without_sysuptime_starts_afresh():
    c = TargetCounters()
    assert c.resume(saved_after_wrap(1000, at=0.0), None, now=5.0, max_age=3600) == "no_uptime"
    assert c.update("ifInOctets", 1, 30, 32) == 30


def test_a_discontinuity_drops_the_slots_of_columns_first_seen_after_an_earlier_one():
    c = TargetCounters()
    c.observe_discontinuity(1, 0)
    c.update("ifInOctets", 1, 2**32 - 5, 32)
    c.update("ifInOctets", 1, 5, 32)
    assert c.observe_discontinuity(1, 100)  # the columns are known from here on
    c.update("ifHCOutOctets", 1, 2**64 - 5, 64)  # a column first seen after that
    c.update("ifHCOutOctets", 1, 5, 64)
    c.update("ifHCOutOctets", 2, 2**64 - 5, 64)
    c.update("ifHCOutOctets", 2, 5, 64)
    assert c.observe_discontinuity(1, 200)
    assert c.update("ifHCOutOctets", 1, 6, 64) == 6  # its carry went with the reset
    assert c.update("ifHCOutOctets", 2, 6, 64) == 2**64 + 6  # the other interface's stays


def test_a_value_a_little_below_the_last_is_a_glitch_exported_as_the_last():
    """Agents summing line cards at different moments answer a few bytes less now and then: exported lower, the
    series would read as a reset to Prometheus, and rate() would count the whole counter (here 1 TB) as traffic."""
    c = TargetCounters()
    c.update("ifHCInOctets", 1, 10**12, 64)
    assert c.update("ifHCInOctets", 1, 10**12 - 5000, 64) == 10**12  # the last value, again
    assert c.update("ifHCInOctets", 1, 10**12 - 10, 64) == 10**12  # still below it: still held
    assert c.update("ifHCInOctets", 1, 10**12 + 700, 64) == 10**12 + 700  # past it: the device's value
    assert c.glitches == 2 and not c.resets and c.wraps == 0
    c.update("ifInOctets", 1, 3_000_000_000, 32)
    assert c.update("ifInOctets", 1, 2_999_999_000, 32, max_delta=1_000_000) == 3_000_000_000
    assert c.glitches == 3 and not c.resets and c.wraps == 0


def test_a_drop_of_more_than_a_percent_is_still_a_reset_and_a_possible_whole_turn_a_wrap():
    c = TargetCounters()
    c.update("ifHCOutOctets", 1, 10**12, 64)
    assert c.update("ifHCOutOctets", 1, 10**12 * 98 // 100, 64) == 10**12 * 98 // 100  # 2 % less: a reset
    assert c.resets["backwards"] == 1 and c.glitches == 0
    # a 32-bit counter on a link fast enough to turn it almost once between polls: a wrap, not a glitch
    c.update("ifInOctets", 2, 4_290_000_000, 32)
    assert c.update("ifInOctets", 2, 4_280_000_000, 32, max_delta=5_000_000_000) == 2**32 + 4_280_000_000
    assert c.wraps == 1 and c.glitches == 0


def test_glitches_are_exported_with_the_target():
    from citydc.collectors.snmp.collector import ScrapeResult
    from citydc.collectors.snmp.exposition import render

    c = TargetCounters()
    c.update("ifHCInOctets", 1, 10**9, 64)
    c.update("ifHCInOctets", 1, 10**9 - 1, 64)
    text = render(ScrapeResult(True), "siwei", "sw1", c).decode()
    assert 'citydc_snmp_counter_glitches_total{device="sw1",site="siwei"} 1.0' in text

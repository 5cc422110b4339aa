"""Counter correctness across scrapes, the part snmp_exporter leaves to ``rate()``.

Per target we keep the last raw value of every counter, a carry, the last sysUpTime and each
interface's ifCounterDiscontinuityTime:

* a counter that goes down with no reboot is a wrap: 2^32 (or 2^64) is added to its carry, so
  the exported value keeps rising and ``rate()`` never sees a false reset;
* sysUpTime going backwards (a reboot) or a changed ifCounterDiscontinuityTime drops the carry:
  the exported value falls back to the device's own value, which ``rate()`` treats as the reset it
  is, and ``citydc_snmp_counter_resets_total{reason=...}`` counts it;
* a decrease that cannot be a wrap (a 64-bit counter far from 2^64, or a 32-bit jump larger than
  the line could carry) is flagged as ``reason="backwards"`` and also treated as a reset.

The first value seen is exported as read, so exported values equal what the device answers until
the first wrap. All times come from the caller (monotonic seconds), so the logic is testable.

An exporter restart need not lose the carries: ``resume`` adopts the state a previous process saved
(``state.py`` moved its wall-clock times onto this process's monotonic clock) when the device's own
sysUpTime confirms it did not restart meanwhile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["RESUME_OUTCOMES", "TICKS_PER_SECOND", "TargetCounters"]

TICKS_PER_SECOND = 100
UPTIME_MODULUS = 2**32  # sysUpTime is TimeTicks, itself a 32-bit value that wraps after 497 days
# sysUpTime and the host's clock both count real seconds: across a restart they may disagree only by the
# poll's own duration (sysUpTime is read during the walk, the time is taken after it) and clock slew
# (NTP slews at most 500 ppm). A device reboot shows as at least its boot time missing.
RESUME_SLACK_SECONDS = 10.0
RESUME_SLACK_RATIO = 0.001
RESUME_OUTCOMES = ("restored", "stale", "reboot", "clock", "no_uptime")


# A counter value below the last one by at most 1/GLITCH_DIVISOR of it is a glitch (counters.update).
GLITCH_DIVISOR = 100


@dataclass
class _Slot:
    raw: int
    carry: int = 0


@dataclass
class TargetCounters:
    """Counter state of one target (one device polled with one module)."""

    uptime_ticks: int | None = None
    uptime_seen_at: float | None = None
    wraps: int = 0
    resets: Counter = field(default_factory=Counter)
    # ifIndex -> column -> slot: a discontinuity of one interface drops its slots in one step
    _slots: dict[int, dict[str, _Slot]] = field(default_factory=dict)
    _discontinuity: dict[int, int] = field(default_factory=dict)
    glitches: int = 0  # values a little below the last one, the last one exported again (update)

    def observe_uptime(self, ticks: int | None, now: float) -> bool:
        """Given sysUpTime (ticks) read at ``now``, return True if the device rebooted since last time.

        A decrease is a reboot unless the expected uptime crossed 2^32 ticks (sysUpTime's own wrap); so is
        an uptime shorter than the time since the last poll (the device booted after that poll).
        """
        if ticks is None:
            return False
        previous, previous_at = self.uptime_ticks, self.uptime_seen_at
        self.uptime_ticks, self.uptime_seen_at = ticks, now
        if previous is None or previous_at is None or ticks == previous:
            return False  # an agent whose sysUpTime stands still (some answer 0 forever) tells nothing
        elapsed_ticks = (now - previous_at) * TICKS_PER_SECOND
        slack = 10 * TICKS_PER_SECOND + elapsed_ticks * 0.05
        if ticks > previous:
            # An uptime shorter than the time since the last poll means the device booted after it, even
            # though the uptime is above the last one (a crash loop, polls missed while it was down):
            # its counters restarted too, and a 32-bit one lower than before must not pass for a wrap.
            if ticks + slack >= elapsed_ticks:
                return False
        else:
            expected = previous + elapsed_ticks
            if expected >= UPTIME_MODULUS and abs((expected - UPTIME_MODULUS) - ticks) <= slack:
                return False
        self.resets["reboot"] += 1
        self._slots.clear()  # every counter restarted: drop every carry
        self._discontinuity.clear()
        return True

    def resume(self, saved: TargetCounters, ticks: int | None, now: float, max_age: float) -> str:
        """Given the state a previous exporter process saved (times on this process's monotonic clock),
        this poll's sysUpTime and ``now``, adopt the saved carries when it is safe; return the outcome.

        Outcomes: ``restored`` (sysUpTime advanced by the time that passed: carries continue),
        ``stale`` (saved more than ``max_age`` seconds ago, or in the future), ``reboot`` (sysUpTime is
        behind: the device restarted meanwhile, counted as a reboot reset), ``clock`` (sysUpTime is ahead
        of the clock: the wall clock was stepped, nothing can be trusted), ``no_uptime`` (nothing to check
        with). Anything but ``restored`` starts afresh: the first value is exported as read.
        Call it on a fresh TargetCounters, before ``observe_uptime``.
        """
        if ticks is None or saved.uptime_ticks is None or saved.uptime_seen_at is None:
            return "no_uptime"
        age = now - saved.uptime_seen_at
        if age < 0 or age > max_age:
            return "stale"
        self.wraps, self.resets = saved.wraps, Counter(saved.resets)
        expected = saved.uptime_ticks + age * TICKS_PER_SECOND
        # Fold into [-2^31, 2^31) ticks so sysUpTime's own 497-day wrap is no drift.
        drift = (ticks - expected + UPTIME_MODULUS // 2) % UPTIME_MODULUS - UPTIME_MODULUS // 2
        slack = (RESUME_SLACK_SECONDS + age * RESUME_SLACK_RATIO) * TICKS_PER_SECOND
        if drift < -slack:
            self.resets["reboot"] += 1
            return "reboot"
        if drift > slack:
            return "clock"
        self.uptime_ticks, self.uptime_seen_at = saved.uptime_ticks, saved.uptime_seen_at
        self._slots = {i: {column: _Slot(slot.raw, slot.carry) for column, slot in row.items()}
                       for i, row in saved._slots.items()}
        self._discontinuity = dict(saved._discontinuity)
        return "restored"

    def slots(self) -> list[tuple[str, int, int, int]]:
        """Return every counter's (column, ifIndex, last raw value, carry), for saving."""
        return [(column, if_index, slot.raw, slot.carry) for if_index, row in self._slots.items()
                for column, slot in row.items()]

    def discontinuities(self) -> dict[int, int]:
        """Return the last ifCounterDiscontinuityTime of each interface, for saving."""
        return dict(self._discontinuity)

    @classmethod
    def from_saved(cls, uptime_ticks: int | None, uptime_seen_at: float | None, wraps: int,
                   resets: dict[str, int], slots: list[tuple[str, int, int, int]],
                   discontinuity: dict[int, int]) -> TargetCounters:
        """Given what ``slots``/``discontinuities`` and the public fields returned, return the TargetCounters."""
        by_index: dict[int, dict[str, _Slot]] = {}
        for column, i, raw, carry in slots:
            by_index.setdefault(i, {})[column] = _Slot(raw, carry)
        return cls(uptime_ticks, uptime_seen_at, wraps, Counter(resets), by_index, dict(discontinuity))

    def observe_discontinuity(self, if_index: int, ticks: int) -> bool:
        """Given an interface's ifCounterDiscontinuityTime, return True if it changed (counters reset)."""
        previous = self._discontinuity.get(if_index)
        self._discontinuity[if_index] = ticks
        if previous is None or previous == ticks:
            return False
        self.resets["discontinuity"] += 1
        self._slots.pop(if_index, None)
        return True

    def has_value(self, column: str, if_index: int) -> bool:
        """Given a column and an ifIndex, return True if a value of that counter is kept (seen since the
        interface's last reset)."""
        return column in self._slots.get(if_index, {})

    def update(self, column: str, if_index: int, raw: int, bits: int, max_delta: float | None = None) -> int:
        """Given a counter's raw value, return the value to export (raw plus carried wraps).

        ``bits`` is 32 or 64; ``max_delta`` (optional) is the most the counter can have grown since
        the last scrape (e.g. line rate x elapsed): a "wrap" that would need more is a reset.
        """
        row = self._slots.get(if_index)
        if row is None:
            row = self._slots[if_index] = {}
        slot = row.get(column)
        if slot is None:
            row[column] = _Slot(raw)
            return raw
        if raw < slot.raw and slot.raw - raw <= slot.raw // GLITCH_DIVISOR and not (
                bits == 32 and max_delta is not None and max_delta >= (1 << 32) - (slot.raw - raw)):
            # A little below the last value: a glitch of the agent (line cards summed at different moments),
            # not a reset (a cleared counter starts again near 0) nor a wrap (which starts again far below,
            # unless the line rate allows a 32-bit counter almost a whole turn in one poll: then a wrap).
            # Exported as it was: exporting the lower value would make rate() take it for a reset and count
            # the whole counter as new traffic, terabytes in one step. Kept below until the counter passes it.
            self.glitches += 1
            return slot.raw + slot.carry
        if raw < slot.raw:
            modulus = 1 << bits
            wrapped_delta = raw + modulus - slot.raw
            plausible = wrapped_delta < (1 << 63) if bits == 64 else True
            if max_delta is not None and wrapped_delta > max_delta:
                plausible = False
            if plausible:
                slot.carry += modulus
                self.wraps += 1
            else:
                self.resets["backwards"] += 1
                slot.carry = 0
        slot.raw = raw
        return raw + slot.carry

"""The poll engine's core: poll one device with one module and return structured interface rows.

Flow: static columns (ifName, ifAlias, speeds; cached per target for ``static_refresh_seconds``)
→ interface filter → dynamic columns (counters, status), walked for all interfaces or fetched
with GET for the filtered few → 32-bit fallback columns where a 64-bit one had no value →
counter carry/reset logic (``counters.py``) → one ``InterfaceRow`` per interface (ifIndex, name,
alias, counters by family key, status, speed). A failure anywhere gives ``up=False`` and a reason;
partial data gives error counts. Turning rows into Prometheus samples is ``exposition.py``'s job;
other consumers (the NetFlow SNMP feed) read the rows directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from citydc.collectors.snmp.counters import TICKS_PER_SECOND, TargetCounters
from citydc.collectors.snmp.modules import (
    COLUMNS,
    FALLBACK_OF,
    FAMILIES,
    IF_NUMBER,
    SYS_UPTIME,
    Family,
    Module,
    interface_name,
    label_text,
)
from citydc.collectors.snmp.poller import (
    PARTIAL_REASONS,
    PollError,
    Session,
    WalkResult,
    get_columns,
    to_python,
    walk_columns,
)

__all__ = ["InterfaceRow", "Resume", "ScrapeResult", "TargetState", "poll_target"]

SPEED_SATURATED = 4294967295  # ifSpeed tops out here; ifHighSpeed (Mbit/s) holds the real speed


@dataclass(frozen=True)
class InterfaceRow:
    """One interface as one poll saw it. ``counters``: Family.key (modules.FAMILIES) -> value to export
    (raw plus carried wraps), only for counters the device answered; a status or speed the module does
    not read, or the device did not answer, is None."""

    index: int
    name: str  # ifName, else ifDescr, else the ifIndex
    alias: str
    counters: dict[str, int]
    oper_status: int | None = None
    admin_status: int | None = None
    speed_bps: float | None = None


@dataclass
class Resume:
    """Counter state a previous exporter process saved, times already on this process's monotonic clock."""

    counters: TargetCounters
    last_poll_at: float | None
    max_age: float  # older than this at the first poll after the restart: dropped


@dataclass
class TargetState:
    """What survives between scrapes of one target: counter state and the static-column cache."""

    counters: TargetCounters = field(default_factory=TargetCounters)
    static: dict[str, dict[int, object]] | None = None
    static_at: float = float("-inf")
    fallbacks: set[str] = field(default_factory=set)  # 32-bit columns this device needs
    last_poll_at: float | None = None
    resume: Resume | None = None  # saved state waiting for the first successful poll to check it
    resume_outcome: str | None = None  # what that check decided (counters.RESUME_OUTCOMES), reported once


@dataclass
class ScrapeResult:
    up: bool
    reason: str = ""
    message: str = ""
    duration_seconds: float = 0.0
    varbinds: int = 0
    requests: int = 0
    errors: Counter = field(default_factory=Counter)
    rows: list[InterfaceRow] = field(default_factory=list)
    uptime_seconds: float | None = None
    rebooted: bool = False
    resume_outcome: str | None = None  # set on the first poll after a restart that had saved state

    @property
    def interfaces(self) -> int:
        """The number of interfaces this poll exported."""
        return len(self.rows)


def _merge(into: WalkResult, other: WalkResult) -> None:
    for name, cells in other.columns.items():
        into.columns.setdefault(name, {}).update(cells)
    into.scalars.update(other.scalars)
    into.varbinds += other.varbinds
    into.requests += other.requests
    into.errors.update(other.errors)


async def _get(session: Session, oids: list[tuple[int, ...]], data: WalkResult) -> None:
    # A GET of scalars, counted in the poll's requests and varbinds (also when it fails).
    data.requests += 1
    answer = await session.get(oids)
    data.varbinds += len(answer)
    for oid, value in answer:
        data.scalars[oid] = to_python(value)


async def _read(session: Session, module: Module, state: TargetState, now: float, deadline: float,
                static_refresh: float, data: WalkResult | None = None) -> tuple[WalkResult, list[int]]:
    """Given a session and module (and the poll's WalkResult to fill), return the cells read and the
    ifIndexes to export."""
    oids = {n: COLUMNS[n].oid for n in (*module.static_columns, *module.dynamic_columns, *state.fallbacks)}
    static_names = [n for n in module.static_columns]
    dynamic_names = [n for n in (*module.dynamic_columns, *sorted(state.fallbacks)) if n not in static_names]
    refresh = state.static is None or now - state.static_at >= static_refresh
    data = WalkResult() if data is None else data
    rows = None
    if refresh:
        # ifNumber first, as a hint only: real agents disagree with their own ifTable (an HPE ProCurve
        # 6120XG says 33 for 42 rows, a Juniper MX960 143 for 61), so every column is walked to its
        # end; the hint sizes the requests so that a right one reads one row past the end, not
        # max-repetitions rows.
        await _get(session, [SYS_UPTIME, IF_NUMBER], data)
        rows = data.scalars.get(IF_NUMBER)
        rows = rows if isinstance(rows, int) and 0 < rows < 100_000 else None
    if refresh and not module.has_filter:
        # One walk for everything: the fewest round trips when nothing needs deciding first.
        _merge(data, await walk_columns(session, {n: oids[n] for n in (*static_names, *dynamic_names)},
                                        module.max_repetitions, deadline, row_hint=rows))
        static = {n: data.columns.get(n, {}) for n in static_names}
        indexes = sorted(set().union(*(data.columns.get(n, {}) for n in (*static_names, *dynamic_names))))
        return data, _remember_static(state, static, now, indexes)
    if refresh:
        _merge(data, await walk_columns(session, {n: oids[n] for n in static_names}, module.max_repetitions,
                                        deadline, row_hint=rows))
        _remember_static(state, {n: data.columns.get(n, {}) for n in static_names}, now, None)
    assert state.static is not None
    for name, cells in state.static.items():
        data.columns.setdefault(name, cells)
    known = sorted(set().union(*state.static.values()))
    selected = [i for i in known if module.keep(state.static, i)] if module.has_filter else known
    dyn = {n: oids[n] for n in dynamic_names}
    if data.varbinds and (data.errors["budget_exhausted"] or time.monotonic() > deadline):
        # The static walk spent the budget: export what it read rather than fail on the next request.
        data.errors["budget_exhausted"] = max(data.errors["budget_exhausted"], 1)
        return data, selected
    if module.has_filter and len(selected) * 2 < len(known):
        # Few interfaces wanted: GET exactly their counters instead of walking every port.
        if SYS_UPTIME not in data.scalars:
            await _get(session, [SYS_UPTIME], data)
        if selected and dyn:
            _merge(data, await get_columns(session, dyn, selected, deadline))
        if known and not refresh:  # a refresh just walked the static columns to their end
            await _probe_past(session, state, data, COLUMNS[static_names[0]].oid, known[-1])
        return data, selected
    if dyn:
        _merge(data, await walk_columns(session, dyn, module.max_repetitions, deadline,
                                        scalars=() if SYS_UPTIME in data.scalars else (SYS_UPTIME,),
                                        known_indexes=known))
    seen = set().union(*(data.columns.get(n, {}) for n in dynamic_names)) if dynamic_names else set()
    if seen - set(known):
        state.static_at = float("-inf")  # a new interface appeared: refresh its name next time
    if module.has_filter:
        return data, selected
    return data, sorted(set(known) | seen)


async def _probe_past(session: Session, state: TargetState, data: WalkResult, column: tuple[int, ...],
                      last_known: int) -> None:
    """Ask for the row after the last known ifIndex (one GETBULK of one varbind); if the agent has one,
    the cached interface list is out of date: refresh the static columns at the next poll."""
    data.requests += 1
    try:
        answer = await session.get_bulk([], [(*column, last_known)], 1)
    except PollError as exc:  # the counters were read: a failed probe makes the poll partial, not down
        data.errors[exc.reason] += 1
        return
    data.varbinds += len(answer)
    if answer and answer[0][0][:len(column)] == column and len(answer[0][0]) > len(column) \
            and to_python(answer[0][1]) is not None:
        state.static_at = float("-inf")


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _remember_static(state: TargetState, static: dict[str, dict[int, object]], now: float,
                     indexes: list[int] | None) -> list[int]:
    state.static, state.static_at = static, now
    return indexes if indexes is not None else sorted(set().union(*static.values()))


async def _fallbacks(session: Session, module: Module, state: TargetState, data: WalkResult,
                     indexes: list[int], deadline: float) -> None:
    """Walk the 32-bit columns for 64-bit columns that had no value on some interface."""
    needed = {}
    for column in module.dynamic_columns:
        fallback = FALLBACK_OF.get(column)
        if fallback and fallback not in data.columns and fallback not in module.columns:
            cells = data.columns.get(column, {})
            # Only interfaces that never answered the 64-bit column need the 32-bit one (_counter_column):
            # a 64-bit cell missing from a partial walk must not add the fallback walk to every poll.
            if any(i not in cells and not state.counters.has_value(column, i) for i in indexes):
                needed[fallback] = COLUMNS[fallback].oid
    if needed and data.varbinds and (data.errors["budget_exhausted"] or time.monotonic() > deadline):
        data.errors["budget_exhausted"] = max(data.errors["budget_exhausted"], 1)  # what was read is exported
    elif needed:
        try:
            _merge(data, await walk_columns(session, needed, module.max_repetitions, deadline, known_indexes=indexes))
        except PollError as exc:
            if not data.varbinds or exc.reason not in PARTIAL_REASONS:
                raise
            # The device answered the main walk: export what it read, as a walk does when a later request
            # of its own fails; the fallback columns are tried again at the next poll.
            data.requests += exc.requests
            data.varbinds += exc.varbinds
            data.errors[exc.reason] += 1
            return
        state.fallbacks |= set(needed)


def poll_rows(module: Module, state: TargetState, data: WalkResult, indexes: list[int], now: float
              ) -> tuple[list[InterfaceRow], Counter, bool, float | None]:
    """Given the cells read, return (interface rows, holes and other errors, rebooted, uptime seconds)."""
    errors: Counter = Counter()
    uptime = _int(data.scalars.get(SYS_UPTIME))
    counters = state.counters
    if state.resume is not None:
        saved, state.resume = state.resume, None
        state.resume_outcome = counters.resume(saved.counters, uptime, now, saved.max_age)
        if state.resume_outcome == "restored":
            # The line-rate check of a wrap during the downtime needs the time since the saved poll.
            state.last_poll_at = saved.last_poll_at
    rebooted = counters.observe_uptime(uptime, now)
    if rebooted:
        state.static_at = float("-inf")  # interfaces may have been renumbered: re-read names next time
    elapsed = None if state.last_poll_at is None else max(now - state.last_poll_at, 0.001)
    cols = data.columns
    aliases = cols.get("ifAlias", {})
    discontinuity = cols.get("ifCounterDiscontinuityTime", {})
    statuses = [c for c in ("ifOperStatus", "ifAdminStatus") if c in module.columns]
    rows: list[InterfaceRow] = []
    for i in indexes:
        if i in discontinuity and not rebooted:
            counters.observe_discontinuity(i, int(discontinuity[i]))
        speed = _speed(cols, i)
        values: dict[str, int] = {}
        for fam in FAMILIES:
            column = _counter_column(fam, cols, i, counters)
            if column is None:
                if fam.column in module.columns or (fam.fallback and fam.fallback in module.columns):
                    errors["hole"] += 1
                continue
            raw = _int(cols[column][i])
            if raw is None:
                errors["bad_value"] += 1
                continue
            bits = 64 if COLUMNS[column].kind == "counter64" else 32
            max_delta = None
            if bits == 32 and speed and elapsed and column.endswith("Octets"):
                max_delta = speed / 8 * elapsed * 1.5 + 1_000_000  # a wrap needing more than line rate is a reset
            values[fam.key] = counters.update(column, i, raw, bits, max_delta)
        status = {}
        for column in statuses:
            status[column] = _int(cols.get(column, {}).get(i))
            if status[column] is None:
                errors["hole"] += 1
        rows.append(InterfaceRow(i, interface_name(cols, i), label_text(aliases.get(i)), values,
                                 status.get("ifOperStatus"), status.get("ifAdminStatus"), speed))
    state.last_poll_at = now
    return rows, errors, rebooted, None if uptime is None else uptime / TICKS_PER_SECOND


def _counter_column(fam: Family, cols: dict[str, dict[int, object]], i: int, counters: TargetCounters) -> str | None:
    """Given a counter family, the cells read, an ifIndex and the target's counters, return the column whose
    value this poll exports for that interface, or None (a hole).

    The 32-bit fallback only stands in for a 64-bit column the interface has never answered: when a
    partial walk (a lost request, the budget spent) misses the 64-bit cell of an interface that has one,
    its 32-bit value in its place would drop the exported counter (a reset to Prometheus) and the next
    full poll would jump back up, a false spike of the whole 64-bit count.
    """
    if i in cols.get(fam.column, {}):
        return fam.column
    if fam.fallback and i in cols.get(fam.fallback, {}) and not counters.has_value(fam.column, i):
        return fam.fallback
    return None


def _speed(cols: dict[str, dict[int, object]], i: int) -> float | None:
    low, high = _int(cols.get("ifSpeed", {}).get(i)), _int(cols.get("ifHighSpeed", {}).get(i))
    if low is not None and (low < SPEED_SATURATED or high is None):
        return float(low)
    return None if high is None else high * 1e6


async def poll_target(session: Session, module: Module, state: TargetState, deadline: float, static_refresh: float,
                      clock: Callable[[], float] = time.monotonic) -> ScrapeResult:
    """Given a session, module and the target's state, poll it and return the ScrapeResult (interface rows).

    Never raises for device problems: those become ``up=False`` with a reason.
    """
    started = clock()
    data = WalkResult()  # filled as the poll goes, so a failed poll still reports its requests
    try:
        data, indexes = await _read(session, module, state, started, deadline, static_refresh, data)
        await _fallbacks(session, module, state, data, indexes, deadline)
    except PollError as exc:
        return ScrapeResult(False, exc.reason, str(exc), clock() - started, data.varbinds + exc.varbinds,
                            data.requests + exc.requests, errors=Counter({exc.reason: 1}))
    if not data.varbinds and not indexes:
        return ScrapeResult(False, "empty", "the agent returned no IF-MIB data", clock() - started,
                            errors=Counter({"empty": 1}))
    rows, errors, rebooted, uptime = poll_rows(module, state, data, indexes, clock())
    errors.update(data.errors)
    outcome, state.resume_outcome = state.resume_outcome, None
    return ScrapeResult(True, "", "", clock() - started, data.varbinds, data.requests, errors, rows, uptime,
                        rebooted, outcome)

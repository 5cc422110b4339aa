"""Counter state on disk, so 32-bit wrap carries survive an exporter restart.

One JSON file per exporter process (named after its listen address): one atomic write per interval
whatever the number of targets, one consistent snapshot, and no files of removed devices left behind.
The exporter keeps times on the monotonic clock, which means nothing to the next process: the file
holds wall-clock times, converted on the way out and back in. Whether the saved carries may be
continued is decided at the target's first poll (``TargetCounters.resume``), by checking the
device's sysUpTime against the wall time that passed.

Format (version 1)::

    {"version": 1, "saved_at": WALL, "targets": [
        {"host": "10.0.0.5", "port": 161, "module": "if_mib", "auth": "v2c",
         "last_poll_at": WALL, "uptime_ticks": 123, "uptime_seen_at": WALL, "wraps": 1,
         "resets": {"reboot": 1}, "counters": [["ifInOctets", 3, RAW, CARRY], ...],
         "discontinuity": [[3, TICKS], ...]}, ...]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from citydc import atomicfile
from citydc.collectors.snmp.collector import Resume, TargetState
from citydc.collectors.snmp.counters import TargetCounters

__all__ = ["VERSION", "StateError", "dump", "load", "parse", "write_atomic"]

VERSION = 1
KEEP_SECONDS = 24 * 3600  # targets not polled for a day are not saved: removed devices fall out

log = logging.getLogger(__name__)


class StateError(ValueError):
    """The state file or one of its entries is not what this module writes; the message says where."""


def _wall(mono: float | None, mono_now: float, wall_now: float) -> float | None:
    return None if mono is None else wall_now - (mono_now - mono)


def _mono(wall: float | None, mono_now: float, wall_now: float) -> float | None:
    return None if wall is None else mono_now - (wall_now - wall)


def dump(states: Mapping[tuple, TargetState], mono_now: float, wall_now: float,
         keep_seconds: float = KEEP_SECONDS) -> dict:
    """Given the exporter's target states keyed (host, port, module, auth) and both clocks now, return the
    JSON document to save. Targets not polled for ``keep_seconds`` are left out; a target whose saved state
    still waits for its first poll after a restart keeps that saved state (a second restart loses nothing).
    """
    targets = []
    for (host, port, module, auth), state in states.items():
        counters, last_poll_at = state.counters, state.last_poll_at
        if state.resume is not None:
            counters, last_poll_at = state.resume.counters, state.resume.last_poll_at
        if last_poll_at is None or mono_now - last_poll_at > keep_seconds:
            continue
        targets.append({
            "host": host, "port": port, "module": module, "auth": auth,
            "last_poll_at": _wall(last_poll_at, mono_now, wall_now),
            "uptime_ticks": counters.uptime_ticks,
            "uptime_seen_at": _wall(counters.uptime_seen_at, mono_now, wall_now),
            "wraps": counters.wraps, "resets": dict(counters.resets),
            "counters": [list(s) for s in counters.slots()],
            "discontinuity": [[i, t] for i, t in counters.discontinuities().items()],
        })
    return {"version": VERSION, "saved_at": wall_now, "targets": targets}


def _int(entry: Mapping, name: str, where: str, optional: bool = False) -> int | None:
    value = entry.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StateError(f"{where}: {name!r} is {value!r}, expected a non-negative integer")
    return value


def _time(entry: Mapping, name: str, where: str, optional: bool = False) -> float | None:
    value = entry.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise StateError(f"{where}: {name!r} is {value!r}, expected a wall-clock time in seconds")
    return float(value)


def _entry(entry: object, where: str, mono_now: float, wall_now: float, max_age: float) -> tuple[tuple, Resume]:
    """Given one target of the file, return its key and Resume. Raise StateError naming the bad field."""
    if not isinstance(entry, Mapping):
        raise StateError(f"{where}: expected an object, got {type(entry).__name__}")
    for name in ("host", "module", "auth"):
        if not isinstance(entry.get(name), str):
            raise StateError(f"{where}: {name!r} is {entry.get(name)!r}, expected a string")
    port = _int(entry, "port", where)
    slots = []
    for j, slot in enumerate(entry.get("counters") if isinstance(entry.get("counters"), list) else [None]):
        if not (isinstance(slot, list) and len(slot) == 4 and isinstance(slot[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in slot[1:])):
            raise StateError(f"{where}.counters[{j}]: {slot!r}, expected [column, ifIndex, raw, carry]")
        slots.append(tuple(slot))
    discontinuity = {}
    raw_disc = entry.get("discontinuity", [])
    for j, pair in enumerate(raw_disc if isinstance(raw_disc, list) else [None]):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) and v >= 0 for v in pair)):
            raise StateError(f"{where}.discontinuity[{j}]: {pair!r}, expected [ifIndex, ticks]")
        discontinuity[pair[0]] = pair[1]
    resets = entry.get("resets", {})
    if not (isinstance(resets, Mapping) and all(isinstance(k, str) and isinstance(v, int) and v >= 0
                                                for k, v in resets.items())):
        raise StateError(f"{where}: 'resets' is {resets!r}, expected {{reason: count}}")
    counters = TargetCounters.from_saved(
        _int(entry, "uptime_ticks", where, optional=True),
        _mono(_time(entry, "uptime_seen_at", where, optional=True), mono_now, wall_now),
        _int(entry, "wraps", where) or 0, dict(resets), slots, discontinuity)
    last_poll_at = _mono(_time(entry, "last_poll_at", where), mono_now, wall_now)
    return (entry["host"], port, entry["module"], entry["auth"]), Resume(counters, last_poll_at, max_age)


def parse(doc: object, source: str, mono_now: float, wall_now: float, max_age: float) -> tuple[dict, list[str]]:
    """Given a loaded state document, return ({key: Resume}, problems). A bad entry is a problem (skipped,
    the others kept). Raise StateError if the document as a whole is not a state file of this version."""
    if not isinstance(doc, Mapping) or doc.get("version") != VERSION or not isinstance(doc.get("targets"), list):
        found = doc.get("version") if isinstance(doc, Mapping) else type(doc).__name__
        raise StateError(f"{source}: expected {{\"version\": {VERSION}, \"targets\": [...]}}, found version {found!r}")
    resumes, problems = {}, []
    for n, entry in enumerate(doc["targets"]):
        try:
            key, resume = _entry(entry, f"{source}: targets[{n}]", mono_now, wall_now, max_age)
        except StateError as exc:
            problems.append(str(exc))
            continue
        resumes[key] = resume
    return resumes, problems


def load(path: Path, mono_now: float, wall_now: float, max_age: float) -> tuple[dict, int]:
    """Given the state file, return ({key: Resume}, problems logged). A missing file is a fresh start; an
    unreadable or corrupted one is logged as a warning naming the file and ignored, never fatal."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, 0
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("ignoring SNMP counter state %s: %s (starting without saved carries)", path, exc)
        return {}, 1
    try:
        resumes, problems = parse(doc, str(path), mono_now, wall_now, max_age)
    except StateError as exc:
        log.warning("ignoring SNMP counter state: %s (starting without saved carries)", exc)
        return {}, 1
    for problem in problems:
        log.warning("ignoring an entry of the SNMP counter state: %s", problem)
    return resumes, len(problems)


def write_atomic(path: Path, doc: dict) -> None:
    """Write the document to ``path`` so a reader (or a crash) only ever sees the old or the new file:
    temporary file in the same directory, fsync, rename, fsync of the directory. Raise OSError."""
    atomicfile.write(path, json.dumps(doc, separators=(",", ":")))

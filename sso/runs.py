"""Saved audit runs (one JSON file per run, 0600) and the night-to-night comparison.

``<state_dir>/<source>/runs/<UTC time>-<run id>.json`` holds the run's full result, so
``citydc audit diff`` can show what appeared, what was fixed and how the posture score moved
without asking the directory again.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from citydc import atomicfile

__all__ = ["RunDiff", "comparable", "diff", "list_runs", "load_run", "order_problem", "runs_dir", "save_run"]


def runs_dir(state_dir: Path, source: str) -> Path:
    return state_dir / source / "runs"


def save_run(state_dir: Path, result: dict[str, Any]) -> Path:
    """Given the state directory and a run's JSON, write it (0600, directories 0700); return its path.

    The name holds the run's start to the microsecond (``20261207T161244.349123Z-<run id>.json``): two runs
    started in one second (a cron run and a manual one) are still told apart by when they started."""
    started = _parse_time(result.get("started"))
    if started is not None:
        stamp = started.strftime("%Y%m%dT%H%M%S.%f")
    else:
        stamp = str(result["started"])[:19].replace("-", "").replace(":", "")
    path = runs_dir(state_dir, result["source"]) / f"{stamp}Z-{result['run_id'][:12]}.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return atomicfile.write(path, json.dumps(result, ensure_ascii=False, indent=1), mode=0o600)


_NAME = re.compile(r"(\d{8}T\d{6})(?:\.(\d{6}))?Z-")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def list_runs(state_dir: Path, source: str) -> list[Path]:
    """Return the saved runs of a source, oldest first: by the start the run recorded, then, for runs that
    started in the same microsecond (or files named before the microseconds were: one second), by when the
    file was written (its modification time, in nanoseconds), then by name."""
    d = runs_dir(state_dir, source)
    if not d.is_dir():
        return []

    def key(p: Path) -> tuple[str, str, int, str]:
        m = _NAME.match(p.name)
        if m is None:
            return ("", "", 0, p.name)  # not named by save_run: first, so the last two are citydc's
        try:
            mtime = p.stat().st_mtime_ns
        except OSError:
            mtime = 0
        return (m.group(1), m.group(2) or "", mtime, p.name)

    paths = sorted(d.glob("*.json"), key=key)
    # Files named with the second only (before microseconds were in the name) that share their second are put
    # in the order of the start their JSON recorded (read only for such ties).
    return _order_same_second(paths)


def _order_same_second(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    i = 0
    while i < len(paths):
        m = _NAME.match(paths[i].name)
        j = i + 1
        if m is not None:
            while j < len(paths) and (n := _NAME.match(paths[j].name)) is not None and n.group(1) == m.group(1):
                j += 1
        group = paths[i:j]
        if len(group) > 1 and any(_NAME.match(p.name).group(2) is None for p in group):  # type: ignore[union-attr]
            group = sorted(group, key=_recorded_start)
        out += group
        i = j
    return out


def _recorded_start(p: Path) -> tuple[int, str]:
    try:
        t = _parse_time(json.loads(p.read_text(encoding="utf-8")).get("started"))
    except (OSError, ValueError, AttributeError, RecursionError):
        t = None
    return (1, "") if t is None else (0, t.isoformat())


def load_run(path: Path) -> dict[str, Any]:
    """Given a run file, return its JSON. Raise ValueError naming the file if it is not a run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable audit run: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path}: not an audit run: nested too deeply") from None
    if not isinstance(data, dict) or not {"findings", "score", "source"} <= data.keys():
        raise ValueError(f"{path}: not an audit run (no findings/score/source)")
    problem = _shape_problem(data)
    if problem is not None:
        raise ValueError(f"{path}: not an audit run: {problem}")
    return data


# What ``diff`` and ``citydc audit diff`` read of each finding: a damaged or hand-edited run file must be refused
# with the field named, not end in a traceback halfway through the comparison.
_FINDING_FIELDS = ("rule", "subject", "severity", "message")
# Lists of findings a run may hold besides the active ones (absent in a run of an older citydc: empty).
_OPTIONAL_LISTS = ("accepted", "expired_acceptances", "uncovered_acceptances")


def _shape_problem(data: dict[str, Any]) -> str | None:
    """Given a run file's JSON object, return what is wrong with the fields a diff reads (None: nothing)."""
    if not isinstance(data["source"], str):
        return f"source: expected a string, got {_kind(data['source'])}"
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return f"score: expected a number, got {_kind(score) if not isinstance(score, float) else score}"
    if not 0 <= score <= 100:
        return f"score: expected 0-100, got {score}"
    if "started" in data and data["started"] is not None and not isinstance(data["started"], str):
        return f"started: expected a string, got {_kind(data['started'])}"
    for name in ("findings", *_OPTIONAL_LISTS):
        if name not in data and name != "findings":
            continue
        if not isinstance(data[name], list):
            return f"{name}: expected a list, got {_kind(data[name])}"
        for i, f in enumerate(data[name]):
            if not isinstance(f, dict):
                return f"{name}[{i}]: expected an object, got {_kind(f)}"
            for fname in _FINDING_FIELDS:
                if fname not in f:
                    return f"{name}[{i}].{fname} missing"
                if not isinstance(f[fname], str):
                    return f"{name}[{i}].{fname}: expected a string, got {_kind(f[fname])}"
            accounts = (f.get("evidence") or {}).get("accounts") if isinstance(f.get("evidence"), dict) else None
            if accounts is not None and not (isinstance(accounts, list) and all(isinstance(a, str) for a in accounts)):
                return f"{name}[{i}].evidence.accounts: expected a list of strings"
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def comparable(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Given two loaded runs, return why comparing them means nothing (None: same source and audit).

    Findings of another source would all read as "new" and "resolved": refused rather than reported."""
    kinds = (old.get("kind", "ldap"), new.get("kind", "ldap"))
    if (old["source"], kinds[0]) != (new["source"], kinds[1]):
        return (f"the runs are of different sources ({kinds[0]} source {old['source']}, "
                f"{kinds[1]} source {new['source']}): compare two runs of one source")
    return None


def order_problem(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Given two loaded runs, return why OLD is not the earlier one (None: it is, or a start is unknown)."""
    a, b = _parse_time(old.get("started")), _parse_time(new.get("started"))
    if a is not None and b is not None and a > b:
        return (f"the first run (started {old['started']}) is newer than the second (started {new['started']}): "
                "give the older run first")
    return None


Key = tuple[str, str]


def _keyed(findings: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {(f["rule"], f["subject"]): f for f in findings}


def _accounts(f: dict[str, Any]) -> list[str]:
    ev = f.get("evidence")
    acc = ev.get("accounts") if isinstance(ev, dict) else None
    return list(acc) if isinstance(acc, list) else []


@dataclass(frozen=True)
class RunDiff:
    """What changed between two runs of one source, by rule id and subject:

    ``appeared``: active now, neither active nor accepted before; ``resolved``: active or accepted before, not
    found now; ``accepted``: active before, accepted now (the risk is still there: not resolved);
    ``acceptance_ended``: accepted before, active now (the acceptance expired, was removed, or no longer covers
    the finding's accounts); ``changed``: active in both, with accounts that were not in the set before (a third
    account sharing a uid). The finding dicts are the new run's, except in ``resolved``."""

    old: dict[str, Any]
    new: dict[str, Any]
    appeared: list[dict[str, Any]]
    resolved: list[dict[str, Any]]
    accepted: list[dict[str, Any]] = field(default_factory=list)
    acceptance_ended: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score_change(self) -> int:
        return int(self.new["score"]) - int(self.old["score"])

    @property
    def regressed(self) -> bool:
        """True when a finding appeared, came back from an acceptance or grew, or the score dropped (exit 1).
        A risk newly accepted is not one: the finding is still there, shown as accepted."""
        return bool(self.appeared or self.acceptance_ended or self.changed) or self.score_change < 0

    def to_json(self) -> dict[str, Any]:
        return {"old": {"run_id": self.old.get("run_id"), "started": self.old.get("started"),
                        "score": self.old["score"]},
                "new": {"run_id": self.new.get("run_id"), "started": self.new.get("started"),
                        "score": self.new["score"]},
                "score_change": self.score_change, "appeared": self.appeared, "resolved": self.resolved,
                "accepted": self.accepted, "acceptance_ended": self.acceptance_ended, "changed": self.changed,
                "regressed": self.regressed}


def diff(old: dict[str, Any], new: dict[str, Any]) -> RunDiff:
    """Given two runs, return what appeared, was resolved, was accepted, lost its acceptance or grew.

    A run of an older citydc without ``accepted`` counts as one without acceptances."""
    old_active, new_active = _keyed(old["findings"]), _keyed(new["findings"])
    old_acc, new_acc = _keyed(old.get("accepted") or []), _keyed(new.get("accepted") or [])
    appeared = [f for k, f in new_active.items() if k not in old_active and k not in old_acc]
    ended = [f for k, f in new_active.items() if k not in old_active and k in old_acc]
    accepted = [f for k, f in new_acc.items() if k not in old_acc]
    resolved = [f for k, f in {**old_acc, **old_active}.items() if k not in new_active and k not in new_acc]
    changed = []
    for k, f in new_active.items():
        before = old_active.get(k)
        if before is not None:
            grown = set(_accounts(f)) - set(_accounts(before))
            if grown and _accounts(before):
                changed.append({**f, "added_accounts": sorted(grown)})
    return RunDiff(old, new, appeared, resolved, accepted, ended, changed)

"""Saved audit runs (one JSON file per run, 0600) and the night-to-night comparison.

``<state_dir>/<source>/runs/<UTC time>-<run id>.json`` holds the run's full result, so
``citydc audit diff`` can show what appeared, what was fixed and how the posture score moved
without asking the directory again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citydc import atomicfile

__all__ = ["RunDiff", "comparable", "diff", "list_runs", "load_run", "runs_dir", "save_run"]


def runs_dir(state_dir: Path, source: str) -> Path:
    return state_dir / source / "runs"


def save_run(state_dir: Path, result: dict[str, Any]) -> Path:
    """Given the state directory and a run's JSON, write it (0600, directories 0700); return its path."""
    stamp = result["started"][:19].replace("-", "").replace(":", "")
    path = runs_dir(state_dir, result["source"]) / f"{stamp}Z-{result['run_id'][:12]}.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return atomicfile.write(path, json.dumps(result, ensure_ascii=False, indent=1), mode=0o600)


def list_runs(state_dir: Path, source: str) -> list[Path]:
    """Return the saved runs of a source, oldest first."""
    d = runs_dir(state_dir, source)
    return sorted(d.glob("*.json")) if d.is_dir() else []


def load_run(path: Path) -> dict[str, Any]:
    """Given a run file, return its JSON. Raise ValueError naming the file if it is not a run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable audit run: {exc}") from None
    if not isinstance(data, dict) or not {"findings", "score", "source"} <= data.keys():
        raise ValueError(f"{path}: not an audit run (no findings/score/source)")
    problem = _shape_problem(data)
    if problem is not None:
        raise ValueError(f"{path}: not an audit run: {problem}")
    return data


# What ``diff`` and ``citydc audit diff`` read of each finding: a damaged or hand-edited run file must be refused
# with the field named, not end in a traceback halfway through the comparison.
_FINDING_FIELDS = ("rule", "subject", "severity", "message")


def _shape_problem(data: dict[str, Any]) -> str | None:
    """Given a run file's JSON object, return what is wrong with the fields a diff reads (None: nothing)."""
    if not isinstance(data["source"], str):
        return f"source: expected a string, got {_kind(data['source'])}"
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return f"score: expected a number, got {_kind(score) if not isinstance(score, float) else score}"
    if not isinstance(data["findings"], list):
        return f"findings: expected a list, got {_kind(data['findings'])}"
    for i, f in enumerate(data["findings"]):
        if not isinstance(f, dict):
            return f"findings[{i}]: expected an object, got {_kind(f)}"
        for name in _FINDING_FIELDS:
            if name not in f:
                return f"findings[{i}].{name} missing"
            if not isinstance(f[name], str):
                return f"findings[{i}].{name}: expected a string, got {_kind(f[name])}"
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


@dataclass(frozen=True)
class RunDiff:
    old: dict[str, Any]
    new: dict[str, Any]
    appeared: list[dict[str, Any]]
    resolved: list[dict[str, Any]]

    @property
    def score_change(self) -> int:
        return int(self.new["score"]) - int(self.old["score"])

    def to_json(self) -> dict[str, Any]:
        return {"old": {"run_id": self.old.get("run_id"), "started": self.old.get("started"),
                        "score": self.old["score"]},
                "new": {"run_id": self.new.get("run_id"), "started": self.new.get("started"),
                        "score": self.new["score"]},
                "score_change": self.score_change, "appeared": self.appeared, "resolved": self.resolved}


def diff(old: dict[str, Any], new: dict[str, Any]) -> RunDiff:
    """Given two runs, return the findings that appeared and those resolved (by rule id and subject)."""
    def keyed(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f["rule"], f["subject"]): f for f in run["findings"]}

    a, b = keyed(old), keyed(new)
    return RunDiff(old, new, [b[k] for k in b if k not in a], [a[k] for k in a if k not in b])

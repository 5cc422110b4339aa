"""Saved audit runs (one JSON file per run, 0600) and the night-to-night comparison.

``<state_dir>/<source>/runs/<UTC time>-<run id>.json`` holds the run's full result, so
``citydc audit diff`` can show what appeared, what was fixed and how the posture score moved
without asking the directory again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citydc import atomicfile

__all__ = ["RunDiff", "diff", "list_runs", "load_run", "runs_dir", "save_run"]


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
    return data


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

"""What the backup jobs remember between runs: last attempt and success per step and repository,
repository counts, the check cycle's progress and the last drill's evidence.

One JSON file per job under ``backup.state_dir``, replaced atomically (temp file, fsync, rename),
so a killed run leaves either the old state or the new one, never half of each.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["load", "load_all", "save", "step_key"]


def step_key(repo: str, step: str) -> str:
    return f"{repo}/{step}"


def _path(state_dir: Path, job: str) -> Path:
    return state_dir / f"{job}.json"


def load(state_dir: Path, job: str) -> dict[str, Any]:
    """Given the state directory and a job name, return its state (empty when none was saved yet).

    Raise ValueError naming the file if it is not valid JSON (never silently start over).
    """
    path = _path(state_dir, job)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"job": job, "steps": {}, "repos": {}, "check_cycle": {}, "drill": {}}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); move it away to start a new state") from None
    for key in ("steps", "repos", "check_cycle", "drill"):
        data.setdefault(key, {})
    return data


def load_all(state_dir: Path) -> list[dict[str, Any]]:
    """Return the state of every job that has one, skipping unreadable files."""
    out = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            out.append(load(state_dir, path.stem))
        except ValueError:
            continue
    return out


def save(state_dir: Path, job: str, data: dict[str, Any]) -> None:
    """Write a job's state atomically (0600)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=f".{job}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, _path(state_dir, job))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

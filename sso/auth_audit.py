"""One pass of the authentication-log audit over one source: new binds → events and detections → state.

The saved state (``authlog.json``, 0600) holds the log position, the parser's open connections and
the detector's windows, so the next run continues exactly where this one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from citydc import atomicfile
from citydc.config.models import LdapSource
from citydc.sso import events
from citydc.sso.authlog import LogPosition, StatsParser, read_binds
from citydc.sso.detect import Detector

__all__ = ["BATCH", "run_auth"]

BATCH = 5000  # events emitted (and position saved) together


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def run_auth(src: LdapSource, log: Path, state_path: Path, emit: Callable[[Sequence[dict]], Any],
             privileged: Iterable[str], *, from_start: bool = False) -> dict[str, Any]:
    """Given a source, its stats log, the state file, an emit function and the privileged DNs, read the new
    binds, emit their events and detections, save the state; return the run's report. Raise OSError if the
    log cannot be read (the state is saved up to what was read)."""
    st = {} if from_start else _load(state_path)
    try:
        pos = LogPosition(**(st.get("position") or {}))
    except TypeError:
        pos = LogPosition()
    parser = StatsParser.from_json(st.get("parser") or {})
    detector = Detector(src.auth, privileged)
    detector.load(st.get("detector") or {})
    counts = {"binds": 0, "success": 0, "failure": 0}
    found: list[dict[str, Any]] = []
    pending: list[dict] = []

    def save() -> None:
        # Events first, then the position: after a crash in between, the lines are read again and their
        # events (deterministic ids) are stored once.
        if pending:
            emit(list(pending))
            pending.clear()
        state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomicfile.write(state_path, json.dumps({"position": pos.to_json(), "parser": parser.to_json(),
                                                 "detector": detector.to_json()}), mode=0o600)

    try:
        for b in read_binds(log, pos, parser):
            counts["binds"] += 1
            counts["success" if b.success else "failure"] += 1
            pending.append(events.bind_event(
                user=b.dn, source_ip=b.source_ip, success=b.success, code=b.code, when=b.when, site=src.site,
                source=src.name, id_key=f"{src.name}:{pos.inode}:{b.conn}:{b.op}:{b.when.timestamp()}",
                conn=b.conn, op=b.op, method=b.method, tls=b.tls))
            for d in detector.feed(b):
                found.append(d.to_json())
                pending.append(events.detection_event(
                    action=d.action, message=d.message, site=src.site, source=src.name, when=d.when,
                    id_key=f"{src.name}:{d.id_key}", users=d.users, source_ip=d.source_ip, severity=d.severity,
                    details=d.details))
            if len(pending) >= BATCH:
                save()
    finally:
        detector.finish()
        save()
    return {"source": src.name, "log": str(log), **counts, "skipped_lines": parser.skipped,
            "log_restarted": pos.restarted, "detections": found}

"""`citydc log saved failed-logins --until T` asks about the 24 hours before T.

The question's own look-back (24 hours before now) was kept with a given --until: any T more than a day ago
was refused, "--since (yesterday) must be before --until (T)", naming a --since the auditor never gave, and a
T within the day cut the window instead of moving it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citydc.seclog import emit, make_event

CITYDC = str(Path(sys.executable).with_name("citydc"))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = """\
sites:
  - {id: siwei, name: "Siwei"}
security_log:
  spool_dir: var/spool
  sink: {kind: sqlite, path: var/seclog.db}
"""


def _citydc(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"}, check=False)


def test_an_until_alone_moves_the_look_back_to_end_there(tmp_path):
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    # Failed logins 30 h, 20 h and 1 h before T0, and one after it.
    events = [make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                         type=["start"], outcome="failure", message="login failed", site="siwei", id_key=f"f{h}",
                         user=f"u{h}", timestamp=T0 - timedelta(hours=h)) for h in (30, 20, 1, -2)]
    emit(events, spool_dir=tmp_path / "var" / "spool")
    assert _citydc(cfg, "log", "ship").returncode == 0
    proc = _citydc(cfg, "log", "saved", "failed-logins", "--until", "2026-03-01T12:00Z", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"user.name": "u1", "count": 1}, {"user.name": "u20", "count": 1}]
    # The same as the explicit window.
    explicit = _citydc(cfg, "log", "saved", "failed-logins", "--since", "2026-02-28T12:00Z", "--until",
                       "2026-03-01T12:00Z", "--json")
    assert json.loads(explicit.stdout) == json.loads(proc.stdout)

"""`citydc log verify` never cries wolf, on the embedded store, through the real command.

The two false alarms of issue 18, as a new user meets them (the public ``emit()``, then
``citydc log ship`` and ``citydc log verify``): an event re-emitted after the spool's 8-day id
memory expired, and a spool re-created from scratch under the same writer name. Time moves
forward through the spool's ``clock`` parameter, never by waiting. Each test then removes a real
event from the same store and expects exit 1 naming it. The Elasticsearch twins are in
tests/lab/test_seclog_es.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from citydc.seclog import emit, make_event
from citydc.seclog.spool import Spool

CITYDC = str(Path(sys.executable).with_name("citydc"))
DAY = 86400.0
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

CONFIG = """\
sites:
  - {id: siwei, name: "Siwei"}
security_log:
  spool_dir: var/spool
  sink: {kind: sqlite, path: var/seclog.db}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def citydc(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, env=env, timeout=120)


def ship(cfg: Path) -> None:
    proc = citydc(cfg, "log", "ship")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def verify(cfg: Path) -> tuple[int, dict, str]:
    """Run verify twice (JSON and text); return (exit code, the JSON answer, the text output)."""
    as_json = citydc(cfg, "log", "verify", "--json")
    text = citydc(cfg, "log", "verify")
    assert as_json.returncode == text.returncode, as_json.stderr + text.stderr
    return text.returncode, json.loads(as_json.stdout), text.stdout + text.stderr


def login(key: str, minute: int = 0) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {key}", site="siwei", id_key=key,
                      user="alice", timestamp=T0.replace(minute=minute))


def delete_row(cfg: Path, table: str, **where: object) -> None:
    conn = sqlite3.connect(cfg.parent / "var" / "seclog.db")
    try:
        clause = " AND ".join(f"{k} = ?" for k in where)
        assert conn.execute(f"DELETE FROM {table} WHERE {clause}", tuple(where.values())).rowcount == 1  # noqa: S608
        conn.commit()
    finally:
        conn.close()


def test_an_event_re_emitted_after_the_id_memory_expired_is_no_false_alarm(cfg):
    spool_dir = cfg.parent / "var" / "spool"
    now = time.time()
    a, b = login("A", 1), login("B", 2)
    assert emit(a, spool_dir=spool_dir, clock=lambda: now) == 1
    ship(cfg)
    assert verify(cfg)[0] == 0
    nine_days_later = now + 9 * DAY
    assert emit(b, spool_dir=spool_dir, clock=lambda: nine_days_later) == 1
    # The spool forgot A's id (8 days): A is chained again, as seq 4 (1 spool-created, 2 A, 3 B).
    assert emit(a, spool_dir=spool_dir, clock=lambda: nine_days_later) == 1
    assert Spool(spool_dir).emitted_heads()[Spool(spool_dir).writer].seq == 4
    ship(cfg)
    code, report, text = verify(cfg)
    assert code == 0, text
    assert report["ok"] and report["findings"] == [] and report["events"] == 4
    assert [(n["kind"], n["seq"], n["event_id"]) for n in report["notices"]] == [("re-emitted", 4, a["event"]["id"])]
    assert "OK: 4 event(s)" in text and f"re-emitted: writer {Spool(spool_dir).writer}" in text
    # Searches still show A once.
    found = citydc(cfg, "log", "search", "--json", "--user", "alice")
    assert sorted(e["message"] for e in json.loads(found.stdout)) == ["login A", "login B"]
    # A real deletion in the same store is still named: B (seq 3) ...
    delete_row(cfg, "events", id=b["event"]["id"])
    code, report, text = verify(cfg)
    assert code == 1 and [(f["problem"], f["seq"]) for f in report["findings"]] == [("removed", 3)], text
    assert "removed: writer" in text and "seq 3 missing" in text


def test_deleting_the_kept_re_emitted_position_is_a_removal(cfg):
    spool_dir = cfg.parent / "var" / "spool"
    now = time.time()
    a = login("A", 1)
    emit(a, spool_dir=spool_dir, clock=lambda: now)
    emit(login("B", 2), spool_dir=spool_dir, clock=lambda: now + 9 * DAY)  # its append forgets A's id
    assert emit([a, login("C", 3)], spool_dir=spool_dir, clock=lambda: now + 9 * DAY) == 2
    ship(cfg)
    assert verify(cfg)[0] == 0
    delete_row(cfg, "reemitted", seq=4)  # the chain position of the re-emitted A
    code, report, text = verify(cfg)
    assert code == 1 and [(f["problem"], f["seq"]) for f in report["findings"]] == [("removed", 4)], text


def test_a_spool_re_created_from_scratch_is_a_new_incarnation_not_an_insertion(cfg):
    spool_dir = cfg.parent / "var" / "spool"
    now = time.time()
    first = [login(f"old-{i}", i) for i in range(3)]
    emit(first, spool_dir=spool_dir, clock=lambda: now)
    old = Spool(spool_dir).incarnation()
    ship(cfg)
    assert verify(cfg)[0] == 0
    shutil.rmtree(spool_dir)  # the disk was replaced: same host, same spool directory, same writer name
    emit([login(f"new-{i}", 10 + i) for i in range(2)], spool_dir=spool_dir, clock=lambda: now + DAY)
    new = Spool(spool_dir).incarnation()
    assert new["id"] != old["id"] and new["id"] > old["id"]
    ship(cfg)
    code, report, text = verify(cfg)
    assert code == 0, text
    assert report["findings"] == [] and report["events"] == 4 + 3
    [notice] = report["notices"]
    writer = Spool(spool_dir).writer
    assert (notice["kind"], notice["writer"], notice["incarnation"], notice["seq"]) == \
        ("new-incarnation", writer, new["id"], 1)
    started = datetime.fromtimestamp(now + DAY, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"started at {started}" in notice["message"]
    assert f"the previous chain (incarnation {old['id']}) ended at seq 4 (event.id {first[-1]['event']['id']}" \
        in notice["message"]
    assert f"new-incarnation: writer {writer} incarnation {new['id']}" in text and "OK: 7 event(s)" in text
    # Each incarnation opened with its spool-created event, searchable like any other.
    created = json.loads(citydc(cfg, "log", "search", "--json", "--action", "spool-created").stdout)
    assert sorted(e["citydc"]["seclog"]["incarnation"] for e in created) == [old["id"], new["id"]]
    # A real deletion in the old incarnation is still named, with the incarnation.
    delete_row(cfg, "events", id=first[1]["event"]["id"])
    code, report, text = verify(cfg)
    assert code == 1, text
    assert [(f["problem"], f["incarnation"], f["seq"]) for f in report["findings"]] == [("removed", old["id"], 3)]
    assert f"removed: writer {writer} incarnation {old['id']} seq 3" in text


def test_a_spool_of_todays_format_keeps_its_chain_after_the_upgrade(cfg):
    """A spool written before incarnations (committed sample: 4 events, 2 shipped) continues its chain."""
    sample = Path(__file__).parent / "data" / "spool-v1-before-incarnations"
    spool_dir = cfg.parent / "var" / "spool"
    shutil.copytree(sample / "spool", spool_dir)
    shutil.copy(sample / "seclog.db", cfg.parent / "var" / "seclog.db")
    writer = json.loads((sample / "writer.json").read_text())["writer"]
    assert verify(cfg)[0] == 0  # the old store and spool, verified by the new code
    assert emit(login("after-upgrade"), spool_dir=spool_dir, writer=writer) == 1
    ship(cfg)
    code, report, text = verify(cfg)
    assert code == 0 and report["notices"] == [] and report["events"] == 5, text
    lines = [json.loads(x) for seg in sorted(spool_dir.glob("seg-*")) for x in seg.read_text().splitlines()]
    assert [e["citydc"]["chain"]["seq"] for e in lines][-1] == 5
    assert all("incarnation" not in e["citydc"]["chain"] for e in lines)  # no new chain, no spool-created
    delete_row(cfg, "events", seq=2)
    code, report, _ = verify(cfg)
    assert code == 1 and [(f["problem"], f["seq"]) for f in report["findings"]] == [("removed", 2)]

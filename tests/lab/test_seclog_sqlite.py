"""The security log end to end on the embedded store: real files, the real ``citydc`` command.

SQLite is embedded, so "lab" here means: events emitted into a spool on disk, shipped by
``citydc log ship`` running as its own process (and killed with SIGKILL), then checked through
``citydc log search`` / ``verify`` and by reading the database directly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.config.loader import load
from citydc.seclog import EventInvalid, emit, make_event
from citydc.seclog.chain import link
from citydc.seclog.emit import spool_for
from citydc.seclog.store_sqlite import SqliteStore

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SECRET = "restic-pw-ZX81-never-in-a-log"

CONFIG = """\
sites:
  - {id: siwei, name: "四維 Siwei"}
  - {id: fengshan, name: "鳳山 Fengshan"}
backup:
  jobs:
    - name: ldap-siwei
      site: siwei
      sources: [/var/lib/ldap]
      local_repo: {url: /srv/restic/siwei, password: "env:CITYDC_TEST_RESTIC_PW", site: siwei}
security_log:
  spool_dir: var/spool
  sink: {kind: sqlite, path: var/seclog.db}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def citydc(cfg: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYDC_TEST_RESTIC_PW": SECRET, "COLUMNS": "200"}
    proc = subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, env=env, timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def login_events(n: int, tag: str) -> list[dict]:
    users = ("alice", "bob", "carol", "dave")
    return [make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                       type=["start"], outcome="failure" if i % 6 == 0 else "success",
                       message=f"login of {users[i % 4]} through gateway {i % 3}",
                       site="siwei" if i % 2 else "fengshan",
                       id_key=f"{tag}-{i}", user=users[i % 4], source_ip=f"10.10.{i % 8}.{i % 200 + 1}")
            for i in range(n)]


def stored_ids(cfg: Path) -> list[str]:
    conn = sqlite3.connect(cfg.parent / "var" / "seclog.db")
    try:
        # The test's own events: not the spool-created event that opens a new spool's chain.
        return [row[0] for row in conn.execute("SELECT id FROM events WHERE action != 'spool-created'")]
    finally:
        conn.close()


def stored_count(cfg: Path) -> int:
    db = cfg.parent / "var" / "seclog.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM events WHERE action != 'spool-created'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the shipper has not created the table yet
    finally:
        conn.close()


def test_shipper_killed_with_sigkill_repeatedly_delivers_exactly_once(cfg):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    spool_dir = cfg.parent / "var" / "spool"
    events = login_events(24_000, "kill")
    for i in range(0, 12_000, 500):
        emit(events[i:i + 500], spool_dir=spool_dir)
    killed_mid_delivery = 0
    emitted = 12_000
    deadline = time.monotonic() + 240
    for round_no in range(6):
        before = stored_count(cfg)
        proc = subprocess.Popen([CITYDC, "-c", str(cfg), "log", "ship", "--batch-size", "300"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Kill only once delivery is under way, at a random moment inside it.
            while stored_count(cfg) <= before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.04))  # a round of 3,000 events takes about 0.1 s to deliver
            at_kill = stored_count(cfg)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        if proc.returncode == -signal.SIGKILL and 0 < at_kill < emitted:
            killed_mid_delivery += 1
        if round_no < 4:  # more events keep arriving between the crashes
            emit(events[emitted:emitted + 3000], spool_dir=spool_dir)
            emitted += 3000
    assert emitted == len(events)
    assert killed_mid_delivery >= 4, f"seed {seed}: only {killed_mid_delivery} kills landed mid-delivery"
    result = citydc(cfg, "log", "ship")
    assert "delivered" in result.stderr
    ids = stored_ids(cfg)
    assert len(ids) == len(events), f"seed {seed}"
    assert sorted(ids) == sorted(e["event"]["id"] for e in events)
    # Every event, and the spool-created event that opened the spool's chain.
    assert json.loads(citydc(cfg, "log", "verify", "--json").stdout) == {
        "ok": True, "events": 24_001, "spool_checked": True, "findings": [], "notices": []}
    ndjson = citydc(cfg, "log", "search", "--ndjson", "--user", "alice").stdout.splitlines()
    assert len(ndjson) == 6000  # streamed, no cap
    assert spool_for(load(cfg)).backlog() == (0, 0)


def _ship_20(cfg: Path) -> list[dict]:
    """Spool 19 events into a new spool, ship them: a chain of 20 with the spool-created event."""
    events = login_events(19, "tamper")
    emit(events, spool_dir=cfg.parent / "var" / "spool")
    citydc(cfg, "log", "ship")
    assert citydc(cfg, "log", "verify").stdout.startswith("OK: 20 event(s)")
    return events


def _raw(cfg: Path) -> sqlite3.Connection:
    return sqlite3.connect(cfg.parent / "var" / "seclog.db", isolation_level=None)


def _doc(conn: sqlite3.Connection, seq: int) -> dict:
    return json.loads(conn.execute("SELECT doc FROM events WHERE seq = ?", (seq,)).fetchone()[0])


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "delete-last"])
def test_verify_finds_a_row_tampered_with_in_sqlite(cfg, tamper):
    _ship_20(cfg)
    conn = _raw(cfg)
    if tamper == "edit":
        doc = _doc(conn, 8)
        doc["user"]["name"] = "nobody"
        conn.execute("UPDATE events SET doc = ?, user_name = 'nobody' WHERE seq = 8", (json.dumps(doc),))
        expected = "changed: writer {w} seq 8"
    elif tamper == "delete":
        conn.execute("DELETE FROM events WHERE seq = 8")
        expected = "removed: writer {w} seq 8: seq 8 missing"
    elif tamper == "delete-last":
        conn.execute("DELETE FROM events WHERE seq = 20")
        expected = "removed: writer {w} seq 20: the store ends at seq 19, but seq 20 was delivered"
    else:
        # A forger who knows the scheme appends a perfectly chained row; the chain-head file finds it.
        last = _doc(conn, 20)
        chain = last["citydc"]["chain"]
        forged = link(login_events(1, "forged")[0], chain["writer"], 21, last["event"]["hash"], chain["incarnation"])
        forger = SqliteStore(cfg.parent / "var" / "seclog.db")  # consistent columns, through the store's own code
        assert forger.put([forged]) == 1
        forger.close()
        expected = "inserted: writer {w} seq 21"
    first = _doc(conn, 1)["citydc"]["chain"]
    writer = f"{first['writer']} incarnation {first['incarnation']}"
    conn.close()
    result = citydc(cfg, "log", "verify", check=1)
    assert expected.format(w=writer) in result.stderr


def test_corrupted_spool_line_is_reported_and_its_neighbours_delivered(cfg):
    spool_dir = cfg.parent / "var" / "spool"
    events = login_events(5, "corrupt")
    emit(events, spool_dir=spool_dir)
    seg = sorted(spool_dir.glob("seg-*.jsonl"))[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"@timestamp": "2026-\xff\n'
    seg.write_bytes(b"".join(lines))
    result = citydc(cfg, "log", "ship", check=1)  # damaged audit data is a finding: exit 1
    assert result.stderr.count(f"{seg}:3: skipped corrupted spool line") == 1  # said once
    assert "error: skipped 1 corrupted spool line(s)" in result.stderr
    # Line 1 is the spool-created event: line 3 is events[1].
    assert sorted(stored_ids(cfg)) == sorted(e["event"]["id"] for i, e in enumerate(events) if i != 1)
    # The lost line is a hole in the chain, and verify says so rather than hiding it.
    assert "removed" in citydc(cfg, "log", "verify", check=1).stderr


def test_no_secret_reaches_any_event(cfg, monkeypatch):
    monkeypatch.setenv("CITYDC_TEST_RESTIC_PW", SECRET)
    loaded = load(cfg)
    job = loaded.config.backup.jobs[0]
    spool_dir = loaded.resolve(loaded.config.security_log.spool_dir)
    # The secret object itself is refused, and nothing of that batch is written.
    with pytest.raises(EventInvalid, match=r"citydc\.backup\.password: a secret reference never goes"):
        emit(make_event(action="backup-run", dataset="citydc.backup", kind="event", category=["process"],
                        type=["end"], outcome="success", message="backup done", site="siwei", id_key="snap-0",
                        details={"job": job.name, "password": job.local_repo.password}), spool_dir=spool_dir)
    assert not list(spool_dir.glob("seg-*"))
    # The repository described as configured carries the reference, never the value.
    emit(make_event(action="backup-run", dataset="citydc.backup", kind="event", category=["process"], type=["end"],
                    outcome="success", message=f"backup of {job.name} done", site="siwei", id_key="snap-1",
                    details={"job": job.name, "repository": job.local_repo.model_dump(mode="json")}),
         spool_dir=spool_dir)
    citydc(cfg, "log", "ship")
    out = citydc(cfg, "log", "search", "--ndjson").stdout
    backup_runs = [json.loads(x) for x in out.splitlines() if '"backup-run"' in x]  # and the spool-created event
    assert len(backup_runs) == 1 and len(out.splitlines()) == 2
    assert backup_runs[0]["citydc"]["backup"]["repository"]["password"] == "env:CITYDC_TEST_RESTIC_PW"
    for path in (cfg.parent / "var").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out


def test_cli_errors_are_usage_errors(cfg):
    assert "--since: expected a relative time" in citydc(cfg, "log", "search", "--since", "soon", check=2).stderr
    assert "unknown saved question" in citydc(cfg, "log", "saved", "nope", check=2).stderr
    assert "stale-backups" in citydc(cfg, "log", "saved").stdout
    # Nothing was shipped yet: no store at the configured path, which a reading command never creates.
    assert "no security-log store at" in citydc(cfg, "log", "saved", "stale-backups", check=2).stderr
    citydc(cfg, "log", "ship")
    stale = json.loads(citydc(cfg, "log", "saved", "stale-backups", "--json", check=1).stdout)
    assert stale == [{"job": "ldap-siwei", "last_success": None}]


def test_follow_ships_new_events_and_stops_cleanly_on_sigterm(cfg):
    prom = cfg.parent / "seclog.prom"
    env = {**os.environ, "CITYDC_TEST_RESTIC_PW": SECRET}
    proc = subprocess.Popen([CITYDC, "-c", str(cfg), "log", "ship", "--follow", "--poll", "0.1", "--site", "siwei",
                             "--textfile", str(prom)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        events = login_events(300, "follow")
        for i in range(0, 300, 100):
            emit(events[i:i + 100], spool_dir=cfg.parent / "var" / "spool")
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while stored_count(cfg) < 300 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert sorted(stored_ids(cfg)) == sorted(e["event"]["id"] for e in events)
    text = prom.read_text()
    assert 'citydc_seclog_spool_backlog_events{site="siwei"} 0.0' in text
    delivered = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("citydc_seclog_events_delivered_total{"))
    assert delivered == 300 + 1  # and the spool-created event that opened the new spool's chain


def test_verify_on_a_host_without_the_spool_walks_the_store_and_says_what_it_cannot_check(cfg, tmp_path):
    _ship_20(cfg)
    # An auditor's host: the same store (copied), the same config, no spool directory.
    auditor = tmp_path / "auditor"
    (auditor / "var").mkdir(parents=True)
    for f in (cfg.parent / "var").glob("seclog.db*"):
        (auditor / "var" / f.name).write_bytes(f.read_bytes())
    (auditor / "citydc.yaml").write_text(CONFIG, encoding="utf-8")
    result = citydc(auditor / "citydc.yaml", "log", "verify")
    assert "OK: 20 event(s)" in result.stdout
    assert f"no spool at {auditor / 'var' / 'spool'} on this host" in " ".join(result.stderr.split())
    assert not (auditor / "var" / "spool").exists()  # verify never creates it
    report = json.loads(citydc(auditor / "citydc.yaml", "log", "verify", "--json").stdout)
    assert report == {"ok": True, "events": 20, "spool_checked": False, "findings": [], "notices": []}
    # What it cannot see without the spool: the last event deleted goes unnoticed there, not at home.
    conn = _raw(auditor / "citydc.yaml")
    conn.execute("DELETE FROM events WHERE seq = 20")
    conn.commit()
    conn.close()
    assert json.loads(citydc(auditor / "citydc.yaml", "log", "verify", "--json").stdout)["ok"] is True
    assert json.loads(citydc(cfg, "log", "verify", "--json").stdout)["spool_checked"] is True

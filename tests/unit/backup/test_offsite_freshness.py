"""Freshness means "the newest snapshot is there": the off-site copy's last success is the time of the newest
job snapshot off-site (not when a copy last exited 0), a copy into the local repository itself fails, and
``backup status`` calls a repository without a recent success stale or never. Real restic, local repositories."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from citydc.backup import locks, state
from citydc.cli.backup_cmd import status_rows
from citydc.config.models import BACKUP_MAX_AGE_HOURS

CITYDC = str(Path(sys.executable).with_name("citydc"))
ALERTS = Path(__file__).parents[3] / "alerts" / "backup.rules.yml"


def newest_snapshot_time(job, repo: str) -> float:
    snaps = json.loads(job.restic(repo, "snapshots", "--json").stdout)
    return max(locks.parse_time(s["time"]).timestamp() for s in snaps)


def test_a_copy_after_a_failed_backup_leaves_the_offsite_last_success_at_its_newest_snapshot(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert [r.status for r in job.runner().run()] == ["success", "success"]
    first = state.load(job.root / "state", "j1")["steps"]["offsite/copy"]["last_success"]
    assert abs(first - newest_snapshot_time(job, "offsite")) < 0.001
    time.sleep(1.5)
    job.settings["pre_commands"] = [["false"]]  # the backup fails before restic runs; the copy still does
    backup, copy = job.runner().run()
    assert (backup.status, copy.status, copy.details["snapshots_copied"]) == ("failure", "success", [])
    entry = state.load(job.root / "state", "j1")["steps"]["offsite/copy"]
    assert entry["last_attempt"] > first + 1 and entry["last_success"] == first
    offsite = next(r for r in job.runner().status(live=False) if r["repo"] == "offsite")
    assert offsite["age_seconds"] >= 1.5


def test_a_copy_into_the_local_repository_itself_fails_naming_both_and_the_id(restic_job):
    job = restic_job(init=False)
    job.settings["offsite_repo"] = job.repo("offsite", url=str(job.root / "local"))
    local, offsite = job.runner().init()
    assert local.ok and offsite.status == "failure" and "offsite_repo is the local repository" in offsite.error
    (job.src / "a.txt").write_text("a\n")
    backup, copy = job.runner().run()
    assert backup.ok and copy.status == "failure"
    assert re.search(r"both have restic repository id [0-9a-f]{10}\): nothing leaves the site", copy.error)
    assert "job j1's offsite_repo.url" in copy.error
    assert "last_success" not in state.load(job.root / "state", "j1")["steps"]["offsite/copy"]


def test_status_is_stale_past_the_max_age_and_never_without_a_success(restic_job):
    job = restic_job(max_age_hours=2)
    (job.src / "a.txt").write_text("a\n")
    job.settings["offsite_repo"] = None
    job.runner().run()
    rows = job.runner().status(live=False, now=time.time() + 3 * 3600)
    assert [(r["repo"], r["freshness"]) for r in rows] == [("local", "stale")]
    assert rows[0]["reason"].startswith("stale: newest successful backup is 3.0 h old (max_age_hours 2)")
    assert [row[2] for row in status_rows(rows)] == ["stale"]
    assert job.runner().status(live=False)[0]["freshness"] == "fresh"
    (job.root / "state" / "j1.json").unlink()
    never = job.runner().status(live=False)
    assert never[0]["freshness"] == "never" and [row[2] for row in status_rows(never)] == ["never"]


def test_status_of_a_job_never_backed_up_exits_1(restic_job, tmp_path):
    job = restic_job()
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "backup": {"state_dir": str(tmp_path / "state"),
                   "jobs": [{"name": "j1", "site": "siwei", "sources": [str(job.src)],
                             "local_repo": job.repo("local"), "offsite_repo": job.repo("offsite")}]},
        "security_log": {"spool_dir": str(tmp_path / "spool")}}))
    config.chmod(0o600)
    proc = subprocess.run([CITYDC, "-c", str(config), "backup", "status", "--offline", "--json"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert {r["freshness"] for r in json.loads(proc.stdout)} == {"never"}


def test_the_default_max_age_is_the_backup_alerts_threshold():
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    expr = next(r["expr"] for r in rules if r["alert"] == "BackupNotSucceeded")
    hours = re.search(r"> (\d+) \* 3600", expr)
    assert hours and float(hours[1]) == BACKUP_MAX_AGE_HOURS

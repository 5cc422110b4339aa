"""Backup events are valid ECS documents of the project's mapping and never carry a secret."""

from __future__ import annotations

import json

from citydc.backup import events
from citydc.seclog import validate_event


def test_backup_run_start_and_end():
    start = events.step_start(step="backup", job="j", repo="local", url="/r", site="siwei", run_id="r1", host="h")
    end = events.step_end(step="backup", job="j", repo="local", url="/r", site="siwei", run_id="r1", host="h",
                          status="partial", duration_seconds=1.5, exit_code=3, error="unreadable source files: /x",
                          snapshot_id="abcd1234", extra={"unreadable_files": ["/x"], "bytes_added": 10})
    for doc in (start, end):
        validate_event(doc)
        assert doc["event"]["action"] == "backup-run" and doc["event"]["category"] == ["process"]
    assert start["event"]["type"] == ["start"] and end["event"]["type"] == ["end"]
    assert end["event"]["outcome"] == "failure"  # partial did not protect everything
    assert end["citydc"]["backup"]["status"] == "partial"
    assert end["citydc"]["backup"]["snapshot_id"] == "abcd1234"
    assert end["event"]["duration"] == 1_500_000_000
    assert start["event"]["id"] != end["event"]["id"]
    # the same run identity gives the same id: a retried emit is stored once
    again = events.step_start(step="backup", job="j", repo="local", url="/r", site="siwei", run_id="r1", host="h")
    assert again["event"]["id"] == start["event"]["id"]


def test_drill_and_check_mapping():
    drill = events.step_end(step="drill", job="j", repo="offsite", url="/r", site="siwei", run_id="r", host="h",
                            status="failure", duration_seconds=0, error="restore failed")
    assert drill["event"]["category"] == ["process", "file"] and drill["event"]["type"] == ["end", "access"]
    assert drill["event"]["action"] == "restore-drill" and drill["error"]["message"] == "restore failed"
    check = events.step_end(step="check", job="j", repo="local", url="/r", site="siwei", run_id="r", host="h",
                            status="success", duration_seconds=0)
    assert check["event"]["action"] == "repo-check" and check["event"]["outcome"] == "success"


def test_lock_removed_is_configuration_deletion():
    doc = events.lock_removed(job="j", repo="local", url="/r", site="siwei", host="h", lock_id="ab" * 32,
                              lock_host="h", lock_pid=7, lock_time="2026-01-01T00:00:00Z", age_seconds=90,
                              exclusive=False)
    validate_event(doc)
    assert doc["event"]["category"] == ["configuration"] and doc["event"]["type"] == ["deletion"]
    assert doc["event"]["action"] == "backup-lock-removed"
    assert doc["citydc"]["backup"]["lock_pid"] == 7


def test_url_credentials_are_redacted():
    url = "rest:https://backup:hunter2@fengshan.example:8000/siwei"
    assert events.redact_url(url) == "rest:https://backup:***@fengshan.example:8000/siwei"
    doc = events.step_start(step="copy", job="j", repo="offsite", url=url, site="siwei", run_id="r", host="h")
    assert "hunter2" not in json.dumps(doc)
    assert events.redact_url("sftp:citydc@127.0.0.1:/r") == "sftp:citydc@127.0.0.1:/r"


def test_long_file_lists_are_bounded():
    doc = events.step_end(step="backup", job="j", repo="local", url="/r", site="siwei", run_id="r", host="h",
                          status="partial", duration_seconds=0,
                          extra={"unreadable_files": [f"/f{i}" for i in range(50)]})
    assert len(doc["citydc"]["backup"]["unreadable_files"]) == 20
    assert doc["citydc"]["backup"]["unreadable_files_count"] == 50

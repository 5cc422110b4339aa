"""The stale-lock policy: older than the threshold AND same host AND process gone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citydc.backup import locks
from citydc.backup.restic import Lock, parse_lock

NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


def lock(age_s: float, host: str = "vm", pid: int = 4242) -> Lock:
    when = (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return Lock("ab" * 32, when, False, host, pid, "root")


def dead(pid: int) -> bool:
    return False


def alive(pid: int) -> bool:
    return True


@pytest.mark.parametrize(("lk", "pid_alive", "stale", "why"), [
    (lock(7200), dead, True, "is gone"),
    (lock(10), dead, False, "only 10 s old"),
    (lock(7200), alive, False, "still running"),
    (lock(7200, host="other"), dead, False, "made on host other"),
])
def test_policy(lk, pid_alive, stale, why):
    verdict, reason = locks.is_stale(lk, now=NOW, hostname="vm", threshold_seconds=3600, alive=pid_alive)
    assert verdict is stale and why in reason


def test_restic_unlock_is_looser_than_the_policy():
    # restic removes any lock older than 30 min, even one of a live process on another host.
    old_foreign = lock(3 * 3600, host="other")
    assert locks.restic_would_remove(old_foreign, now=NOW, hostname="vm", alive=alive)
    assert not locks.is_stale(old_foreign, now=NOW, hostname="vm", threshold_seconds=3600, alive=alive)[0]


def test_lock_time_with_nanoseconds_and_offsets():
    assert locks.parse_time("2026-11-26T05:40:43.621707906Z") == datetime(2026, 11, 26, 5, 40, 43, 621707, UTC)
    assert locks.parse_time("2026-11-26T13:40:43+08:00") == datetime(2026, 11, 26, 5, 40, 43, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected RFC 3339"):
        locks.parse_time("yesterday")


def test_recorded_lock_of_a_killed_run_is_stale_once_old_enough():
    fx = json.loads((Path(__file__).parent / "fixtures" / "cat_lock.json").read_text())
    lk = parse_lock("e3", fx["stdout"])
    later = locks.parse_time(lk.time) + timedelta(hours=2)
    assert locks.is_stale(lk, now=later, hostname=lk.hostname, threshold_seconds=3600, alive=dead)[0]
    assert not locks.is_stale(lk, now=later, hostname=lk.hostname, threshold_seconds=3 * 3600, alive=dead)[0]


def test_local_path_detection():
    assert locks.local_path("/srv/restic") == Path("/srv/restic")
    assert locks.local_path("local:/srv/r") == Path("/srv/r")
    assert locks.local_path("sftp:u@h:/srv/r") is None
    assert locks.local_path("rest:https://h/") is None


def test_pid_alive_treats_zombies_as_gone(tmp_path):
    import os

    me = os.getpid()
    (tmp_path / str(me)).mkdir()
    (tmp_path / str(me) / "stat").write_text(f"{me} (restic (x)) Z 1 1 1 0 -1")
    assert not locks.pid_alive(me, proc_root=tmp_path)
    (tmp_path / str(me) / "stat").write_text(f"{me} (restic) S 1 1 1 0 -1")
    assert locks.pid_alive(me, proc_root=tmp_path)
    assert locks.pid_alive(me)  # the real /proc

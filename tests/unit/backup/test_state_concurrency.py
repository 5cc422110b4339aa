"""Two citydc commands on the same job at once: each merges only its own fields into the state file.

The commands run in separate processes (as cron and an operator would) against a fake restic
(the unit boundary); the interleavings that lost results before the per-job state lock are forced
with marker files, every wait bounded.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from citydc import execute
from citydc.backup import restic, state
from citydc.backup.jobs import JobRunner
from citydc.backup.restic import BackupOutcome, BackupSummary, RepoAccess, Status
from citydc.config.models import BackupJob

FIXTURES = Path(__file__).parent / "fixtures"
CTX = multiprocessing.get_context("fork")
WAIT = 10.0  # upper bound of every wait on another process


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def wait_for(cond: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@dataclass
class FakeRestic:
    """Answers restic commands with output recorded from restic 0.14; ``stats`` can wait for a marker."""

    binary: str = "restic"
    stats_started: Path | None = None
    stats_release: Path | None = None

    def run(self, argv: Sequence[str], access: RepoAccess, *, source: RepoAccess | None = None,
            timeout: float | None = None) -> execute.Result:
        if argv[-3:-1] == ("list", "locks"):
            rec = {"rc": 0, "stdout": "", "stderr": ""}  # no lock in the way
        elif "check" in argv:
            rec = fixture("check_ok")
        elif "stats" in argv:
            if self.stats_started is not None:
                self.stats_started.touch()
                assert wait_for(self.stats_release.exists)  # a scan that takes a while
            rec = fixture("stats_raw")
        elif "snapshots" in argv:
            rec = fixture("snapshots")
        else:
            raise AssertionError(f"unexpected restic command {argv}")
        outcome, meaning = execute.interpret_exit_code("restic", rec["rc"])
        return execute.Result("restic", tuple(argv), rec["rc"], rec["stdout"], rec["stderr"], 0.01, outcome, meaning)

    def backup(self, argv: Sequence[str], access: RepoAccess,
               on_status: Callable[[Status], None] | None = None) -> BackupOutcome:
        summary = BackupSummary("6ba583b2", files_new=1, data_added=106944, total_bytes_processed=27767721)
        return restic.judge_backup(0, summary, [], [], "")


@pytest.fixture
def job(tmp_path, monkeypatch) -> BackupJob:
    monkeypatch.setenv("CITYDC_UNIT_RESTIC_PW", "unit-pw")
    (tmp_path / "src").mkdir()
    return BackupJob.model_validate({
        "name": "j1", "site": "siwei", "sources": [str(tmp_path / "src")], "check_read_data_days": 3,
        "local_repo": {"url": str(tmp_path / "repo"), "password": "env:CITYDC_UNIT_RESTIC_PW", "site": "siwei"},
    })


def runner(job: BackupJob, state_dir: Path, fake: FakeRestic | None = None) -> JobRunner:
    return JobRunner(job, fake or FakeRestic(), state_dir, lambda evs: None)


def in_child(target: Callable[[], None]) -> multiprocessing.Process:
    def main() -> None:
        try:
            target()
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
        os._exit(0)

    proc = CTX.Process(target=main)
    proc.start()
    return proc


def join(*procs: multiprocessing.Process) -> None:
    for proc in procs:
        proc.join(WAIT * 2)
        alive = proc.is_alive()
        if alive:
            proc.kill()
        assert not alive and proc.exitcode == 0, f"child {proc.pid} failed (exit {proc.exitcode})"


def test_status_scan_does_not_write_back_a_stale_copy_over_a_check(job, tmp_path):
    # `status` reads the state, then asks restic for the repository size (a full scan, minutes on a
    # big repository). A `check` finishing meanwhile must still be in the state afterwards.
    state_dir = tmp_path / "state"
    started, release = tmp_path / "stats-started", tmp_path / "stats-release"
    status = in_child(lambda: runner(job, state_dir, FakeRestic(stats_started=started, stats_release=release))
                      .status(live=True))
    try:
        assert wait_for(started.exists)
        (result,) = runner(job, state_dir).check("local")
        assert result.ok
    finally:
        release.touch()
        join(status)
    st = state.load(state_dir, "j1")
    assert st["steps"]["local/check"]["status"] == "success"
    assert st["check_cycle"]["local"]["next"] == 2 and st["check_cycle"]["local"]["read"] == [1]
    assert st["repos"]["local"]["size_bytes"] == 25223696  # and the status scan's own result is kept too


def race_a_run_against_a_check(job: BackupJob, tmp_path: Path, *, lock: bool) -> dict:
    """Run `run` and `check` on one job in two processes, the run paused inside its state update (after its
    load, before its save) until the check either found the lock taken or saved its own result; return the
    state afterwards. No timing decides the interleaving: each step waits for the other's marker."""
    state_dir = tmp_path / "state"
    state_file, loaded, check_waiting = state_dir / "j1.json", tmp_path / "run-loaded", tmp_path / "check-waiting"

    def run() -> None:
        state.TEST_HOOKS.lock = lock

        def inside(name: str) -> None:
            state.TEST_HOOKS.inside = None  # only the first update: the backup's result
            loaded.touch()
            assert wait_for(lambda: check_waiting.exists() or "local/check" in state_file.read_text())

        state.TEST_HOOKS.inside = inside
        (result,) = runner(job, state_dir).run()
        assert result.ok

    def check() -> None:
        state.TEST_HOOKS.lock = lock
        state.TEST_HOOKS.waiting = lambda path: check_waiting.touch()
        (result,) = runner(job, state_dir).check("local")
        assert result.ok

    state_dir.mkdir()
    state.save(state_dir, "j1", state.load(state_dir, "j1"))  # the file exists, so the run's wait can read it
    proc = in_child(run)  # the hooks are set in the children only: they were forked already
    try:
        assert wait_for(loaded.exists)
        checker = in_child(check)
    finally:
        join(proc)
    join(checker)
    return state.load(state_dir, "j1")


def test_a_run_and_a_check_finishing_together_both_keep_their_result(job, tmp_path):
    # The run has read the state to record its result; the check finishes meanwhile. With the per-job
    # lock the check waits (its waiting hook fired), then merges into the run's saved state.
    st = race_a_run_against_a_check(job, tmp_path, lock=True)
    assert (tmp_path / "check-waiting").exists()  # the check really met the run inside the critical section
    assert st["steps"]["local/backup"]["snapshot_id"] == "6ba583b2"
    assert st["steps"]["local/check"]["status"] == "success"
    assert st["check_cycle"]["local"]["read"] == [1]


def test_without_the_lock_the_same_interleaving_loses_the_checks_result(job, tmp_path):
    # The negative control, run every time: the same injection with the lock left out. The check saves
    # while the run holds its stale copy; the run's save then drops the check's result.
    st = race_a_run_against_a_check(job, tmp_path, lock=False)
    assert not (tmp_path / "check-waiting").exists()
    assert st["steps"]["local/backup"]["snapshot_id"] == "6ba583b2"
    assert "local/check" not in st["steps"]  # the lost update the lock prevents
    assert "local" not in st["check_cycle"]


def hold_lock(state_dir: Path, held: Path, release: Path, die: bool = False) -> Callable[[], None]:
    def main() -> None:
        with state.locked(state_dir, "j1"):
            held.touch()
            if die:
                os._exit(0)  # killed while holding it: the kernel releases a flock with its holder
            assert wait_for(release.exists)
    return main


def test_a_held_lock_gives_a_bounded_wait_and_an_error_naming_the_job(tmp_path):
    state_dir, held, release = tmp_path / "state", tmp_path / "held", tmp_path / "release"
    proc = in_child(hold_lock(state_dir, held, release))
    try:
        assert wait_for(held.exists)
        started = time.monotonic()
        with pytest.raises(state.StateLocked, match=rf"backup job j1: state lock .*j1\.lock .*pid {proc.pid}\b"):
            state.update(state_dir, "j1", lambda st: st["steps"].update(x={}), timeout=0.3)
        assert time.monotonic() - started < WAIT  # bounded: gave up instead of hanging
        assert not (state_dir / "j1.json").exists()  # nothing written
    finally:
        release.touch()
        join(proc)
    assert "x" in state.update(state_dir, "j1", lambda st: st["steps"].update(x={}), timeout=WAIT)["steps"]


def test_a_holder_that_dies_releases_the_lock(tmp_path):
    state_dir, held = tmp_path / "state", tmp_path / "held"
    proc = in_child(hold_lock(state_dir, held, tmp_path / "never", die=True))
    join(proc)
    assert held.exists()
    state.update(state_dir, "j1", lambda st: st["repos"].update(local={"snapshots": 1}), timeout=WAIT)
    assert state.load(state_dir, "j1")["repos"]["local"] == {"snapshots": 1}


def bump(state_dir: Path, field: str, times: int) -> Callable[[], None]:
    def main() -> None:
        for _ in range(times):
            def add(st: dict) -> None:
                st["repos"].setdefault("counts", {})
                st["repos"]["counts"][field] = st["repos"]["counts"].get(field, 0) + 1
            state.update(state_dir, "j1", add, timeout=WAIT)
    return main


def test_updates_from_several_processes_are_all_kept(tmp_path):
    # Each process increments its own counter and a shared one; a lost update shows as a short count.
    state_dir = tmp_path / "state"
    procs = [in_child(bump(state_dir, f"p{i}", 25)) for i in range(3)]
    join(*procs)
    counts = state.load(state_dir, "j1")["repos"]["counts"]
    assert counts == {"p0": 25, "p1": 25, "p2": 25}
    assert not list(state_dir.glob(".j1.*.tmp"))  # no temp file left behind


@pytest.mark.parametrize(("current", "subset", "clean", "expected"), [
    (None, 1, True, {"total": 3, "next": 2, "read": [1], "cycle_started": 9.0}),
    (None, 1, False, {"total": 3, "next": 1, "read": [], "cycle_started": 9.0}),
    # another check moved past subset 2 meanwhile: its progress stays, ours is added
    ({"total": 3, "next": 3, "read": [2], "cycle_started": 1.0}, 2, True,
     {"total": 3, "next": 3, "read": [2], "cycle_started": 1.0}),
    ({"total": 3, "next": 1, "read": [2, 3], "cycle_started": 1.0}, 1, True,
     {"total": 3, "next": 2, "read": [], "cycle_started": 9.0, "last_full_cycle": 9.0}),
    # check_read_data_days changed from 5 to 3: a new cycle
    ({"total": 5, "next": 4, "read": [1, 2, 3], "cycle_started": 1.0}, 1, True,
     {"total": 3, "next": 2, "read": [1], "cycle_started": 9.0}),
])
def test_advance_check_cycle(current, subset, clean, expected):
    assert state.advance_check_cycle(current, subset, 3, clean=clean, now=9.0) == expected


def test_next_check_subset():
    assert state.next_check_subset(None, 3) == 1
    assert state.next_check_subset({"total": 3, "next": 3}, 3) == 3
    assert state.next_check_subset({"total": 5, "next": 4}, 3) == 1


def test_run_records_the_snapshot_size_from_restics_summary_and_status_keeps_it(job, tmp_path):
    state_dir = tmp_path / "state"
    runner(job, state_dir).run()
    repo = state.load(state_dir, "j1")["repos"]["local"]
    assert repo["latest_snapshot_bytes"] == 27767721 and repo["latest_snapshot_id"] == "6ba583b2"
    (row,) = runner(job, state_dir).status(live=True)
    assert row["latest_snapshot_bytes"] == 27767721
    assert row["size_bytes"] == 25223696 and row["size_time"] >= repo["latest_snapshot_time"]
    assert row["status"] == "success"


def test_status_keeps_a_snapshot_count_recorded_after_its_scan_began(job, tmp_path):
    state_dir = tmp_path / "state"
    started, release = tmp_path / "stats-started", tmp_path / "stats-release"
    status = in_child(lambda: runner(job, state_dir, FakeRestic(stats_started=started, stats_release=release))
                      .status(live=True))
    try:
        assert wait_for(started.exists)
        # A prune finishing during the scan records its own, newer count.
        state.update(state_dir, "j1", lambda st: st["repos"].setdefault("local", {}).update(
            snapshots=1, snapshots_time=time.time()))
    finally:
        release.touch()
        join(status)
    repo = state.load(state_dir, "j1")["repos"]["local"]
    assert repo["snapshots"] == 1
    assert repo["size_bytes"] == 25223696  # the scan's size is still merged

"""Findings of the backup sysadmin's exploratory test (2026-12-07), each on real restic with local repositories
in tmp_path: clock skew, drills of failed runs' snapshots, sample drills past ARG_MAX, secrets in child output and
environment, concurrent runs, the check_read_data_days bound, snapshot counts, prune order, evidence, a changed
source with the same size and mtime, and scratch left by a killed drill."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from citydc.backup import jobs, restic, state
from citydc.config import ConfigInvalid, load_text

FUTURE = "2099-06-01 03:00:00"


def job_snapshot(job, repo: str, path: Path, *extra: str) -> None:
    """Make a snapshot with the job's tag by hand (a cron run of another day, or a clock that was ahead)."""
    job.restic(repo, "backup", "-q", "--tag", restic.job_tag("j1"), "--host", "vm", *extra, str(path))


def real_count(job, repo: str) -> int:
    return len(json.loads(job.restic(repo, "snapshots", "--json", "--tag", restic.job_tag("j1")).stdout))


# -- 1: clock skew ----------------------------------------------------------------------------------


def test_a_last_success_in_the_future_is_clock_skew_not_fresh_and_has_no_negative_age(restic_job):
    job = restic_job()
    job.settings["offsite_repo"] = None
    (job.src / "a.txt").write_text("a\n")
    assert job.runner().run()[0].ok
    now = time.time()
    assert jobs.freshness(now + 48 * 3600, now, 26 * 3600) == "skew"
    assert jobs.freshness(now + 60, now, 26 * 3600) == "fresh"  # within the tolerance
    state.update(job.root / "state", "j1", lambda st: st["steps"]["local/backup"].update(last_success=now + 48 * 3600))
    (row,) = job.runner().status(live=False, now=now)
    assert row["freshness"] == "skew" and row["age_seconds"] is None
    assert row["reason"].startswith("clock skew: newest successful backup is 48.0 h in the future")


def test_a_future_dated_snapshot_neither_makes_the_offsite_fresh_nor_is_drilled(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    job_snapshot(job, "local", job.src, "--time", FUTURE)
    backup, copy = job.runner().run()
    assert backup.ok and copy.ok
    assert copy.details["clock_skew"].startswith("clock skew: 1 snapshot(s) dated in the future, the newest 2099-06")
    entry = state.load(job.root / "state", "j1")["steps"]["offsite/copy"]
    assert entry["last_success"] <= time.time()
    offsite = next(r for r in job.runner().status(live=False) if r["repo"] == "offsite")
    assert offsite["freshness"] == "fresh" and offsite["age_seconds"] >= 0
    assert "clock skew: 1 snapshot(s)" in offsite["reason"]
    drill = job.runner().drill()
    assert drill.status == "partial" and drill.snapshot_id == backup.snapshot_id
    assert drill.details["verified_files"] == 1
    assert "clock skew: snapshot" in drill.error and "in the future; not drilled" in drill.error


# -- 2 and 6: a failed run's snapshot, retention by the job's tag ------------------------------------------


def test_the_drill_skips_a_snapshot_missing_a_source_and_retention_ages_it_out(restic_job):
    job = restic_job(init=False)
    other = job.root / "src2"
    other.mkdir()
    (other / "b.txt").write_text("b\n")
    (job.src / "a.txt").write_text("a\n")
    job.settings.update(sources=[str(job.src), str(other)], offsite_repo=None, retention={"keep_daily": 1})
    assert job.runner().init()[0].ok
    good = job.runner().run()[0]
    other.rename(job.root / "src2.moved")
    failed = job.runner().run()[0]
    assert good.ok and failed.status == "failure" and failed.snapshot_id
    drill = job.runner().drill()
    assert drill.ok and drill.snapshot_id == good.snapshot_id, drill.error
    (job.root / "src2.moved").rename(other)
    assert job.runner().run()[0].ok
    (prune,) = job.runner().prune()
    # One group for the job (--group-by host,tags): keep_daily 1 keeps one snapshot, not one per paths group.
    assert prune.ok and (prune.details["snapshots_kept"], prune.details["snapshots_removed"]) == (1, 2)


def test_a_drill_with_only_snapshots_missing_a_source_fails_saying_so(restic_job):
    job = restic_job()
    job.settings.update(sources=[str(job.src), str(job.root / "gone")], offsite_repo=None)
    (job.src / "a.txt").write_text("a\n")
    assert job.runner().run()[0].status == "failure"
    drill = job.runner().drill()
    assert drill.status == "failure" and drill.error.startswith("no snapshot to drill: no snapshot holds every source")


# -- 3: sample drills past ARG_MAX; a drill that cannot run is recorded ----------------------------------


def test_a_sample_drill_of_many_long_paths_restores_in_batches(restic_job):
    job = restic_job(drill_sample_files=2400)
    job.settings["offsite_repo"] = None
    deep = job.src
    for n in range(5):
        deep = deep / (f"d{n}" + "x" * 200)
    deep.mkdir(parents=True)
    for n in range(2500):
        (deep / f"f{n:05d}").write_text(f"{n}\n")
    # 2400 --include arguments of ~1 KiB each: 2.4 MiB, over Linux's ARG_MAX (2 MiB) in one argv.
    assert job.runner().run()[0].ok
    drill = job.runner(rng=random.Random(1)).drill()
    assert drill.ok, drill.error
    assert drill.details["verified_files"] == 2400 and drill.details["restore_batches"] > 1


def test_a_drill_that_cannot_start_restic_is_a_recorded_failure(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert job.runner().run()[0].ok
    runner = job.runner()
    real = runner.restic.run

    def too_long(argv, access, **kwargs):
        if "restore" in argv:
            raise OSError(7, "Argument list too long", "restic")
        return real(argv, access, **kwargs)

    runner.restic.run = too_long  # type: ignore[method-assign]
    emitted: list[dict] = []
    runner.emit = emitted.extend
    drill = runner.drill()
    assert drill.status == "failure" and "drill could not run" in drill.error
    assert "Argument list too long" in drill.error
    assert state.load(job.root / "state", "j1")["drill"]["local"]["status"] == "failure"
    assert [e["event"]["outcome"] for e in emitted if e["event"]["action"] == "restore-drill"] == ["failure"]


# -- 5: secrets in child output and environment -------------------------------------------------------


def test_pre_and_smoke_commands_get_no_password_variable_and_their_output_is_masked(restic_job, monkeypatch):
    env_pw = "Offsite-env-pw-98765"
    monkeypatch.setenv("CITYDC_UNIT_OFFPW", env_pw)
    job = restic_job(init=False)
    job.settings["offsite_repo"] = {**job.repo("offsite"), "password": "env:CITYDC_UNIT_OFFPW"}
    assert all(r.ok for r in job.runner().init())
    pw_file = job.root / "pw"
    leak = ["sh", "-c", f'echo "env=[$CITYDC_UNIT_OFFPW] file=$(cat {pw_file})" >&2; exit 3']
    job.settings["pre_commands"] = [leak]
    backup, _copy = job.runner().run()
    assert backup.status == "failure" and "env=[]" in backup.error and "file=***" in backup.error
    job.settings.update(pre_commands=[], drill_smoke_command=leak)
    (job.src / "a.txt").write_text("a\n")
    assert job.runner().run()[0].ok
    drill = job.runner().drill()
    assert drill.status == "failure" and "env=[]" in drill.error and "file=***" in drill.error
    saved = (job.root / "state" / "j1.json").read_text()
    assert env_pw not in saved and "Unit-pw-7Qx2-restic" not in saved


def test_restic_gets_the_password_variables_set_empty():
    access = restic.RepoAccess("/r", env={"RESTIC_PASSWORD": "x"}, scrub=("OFFPW",))
    assert restic.Restic()._env(access) == {"RESTIC_PASSWORD": "x", "OFFPW": ""}


# -- 4: two runs of one job at once --------------------------------------------------------------------


def test_a_second_run_of_a_job_already_running_is_refused(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    with state.run_locked(job.root / "state", "j1"), pytest.raises(state.JobBusy,
                                                                   match=rf"job j1: a run is already in progress "
                                                                         rf"\(pid {os.getpid()}\)"):
        job.runner().run()
    assert real_count(job, "local") == 0
    assert [r.status for r in job.runner().run()] == ["success", "success"]  # the lock went with its holder


# -- 9: check_read_data_days ------------------------------------------------------------------------------


CONFIG = """\
sites: [{id: siwei, name: Siwei}]
backup:
  jobs:
    - name: s1
      site: siwei
      sources: [data]
      local_repo: {url: repos/local, password: 'env:PW', site: siwei}
      check_read_data_days: DAYS
"""


def test_check_read_data_days_over_256_is_a_config_error(tmp_path):
    with pytest.raises(ConfigInvalid) as exc:
        load_text(CONFIG.replace("DAYS", "365"), base_dir=tmp_path)
    assert [e.path for e in exc.value.errors] == ["backup.jobs[0].check_read_data_days"]
    load_text(CONFIG.replace("DAYS", "256"), base_dir=tmp_path)


def test_a_check_error_is_said_once(restic_job):
    job = restic_job()
    job.settings["offsite_repo"] = None
    runner = job.runner()
    runner.job = runner.job.model_copy(update={"check_read_data_days": 365})  # past the config's check
    (result,) = runner.check()
    assert result.status == "failure"
    assert result.error.count("must be at most 256") == 1, result.error


# -- 8: snapshot counts after a run ---------------------------------------------------------------------


def test_a_run_keeps_both_snapshot_counts_right(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert all(r.ok for r in job.runner().run())
    job_snapshot(job, "offsite", job.src)  # the off-site repository holds more than the local one
    job.runner().status(live=True)
    (job.src / "b.txt").write_text("b\n")
    assert all(r.ok for r in job.runner().run())
    repos = state.load(job.root / "state", "j1")["repos"]
    assert (repos["local"]["snapshots"], repos["offsite"]["snapshots"]) == (real_count(job, "local"),
                                                                            real_count(job, "offsite")) == (2, 3)


# -- 7: the off-site prune waits for the local one -----------------------------------------------------------


def test_a_failed_local_prune_leaves_the_offsite_unpruned(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert all(r.ok for r in job.runner().run())
    job.settings["local_repo"] = job.repo("local", url=str(job.root / "no-such-repo"))
    local, offsite = job.runner().prune()
    assert local.status == "failure" and offsite.status == "failure"
    assert offsite.error.startswith("not pruned: the local prune failed")
    assert job.runner().prune("offsite")[0].ok  # asked for by name, it runs


# -- 12, 10, 13: evidence, a rewritten source, scratch of a killed drill ------------------------------------


def test_drill_evidence_is_self_contained_and_a_rewrite_keeping_size_and_mtime_is_no_failure(restic_job):
    job = restic_job()
    plain = job.src / "plain.txt"
    plain.write_text("hello\n")
    (job.src / "b.txt").write_text("b\n")
    backup = job.runner().run()[0]
    st = plain.stat()
    plain.write_text("HELLO\n")  # same size
    os.utime(plain, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, as cp -p or rsync -t leave it
    leftover = job.root / "state" / "drill" / "j1-local-999999999-abc"
    leftover.mkdir(parents=True)
    (leftover / "restored.txt").write_text("sensitive\n")
    drill = job.runner().drill()
    assert drill.ok, drill.error
    assert drill.details["matched_source_files"] == 1  # b.txt; plain.txt changed (ctime), not a failure
    assert not leftover.exists()
    (path,) = (job.root / "state" / "evidence").glob("j1-local-*.json")
    evidence = json.loads(path.read_text())
    assert evidence["snapshot"].startswith(backup.snapshot_id) and evidence["mode"] == "full"
    assert {"time", "host", "snapshot_time", "files_in_snapshot", "files_expected", "verified_files",
            "matched_source_files", "repository", "smoke"} <= set(evidence)
    assert evidence["verified_files"] == 2 and set(evidence["sha256"]) == {str(plain), str(job.src / "b.txt")}


# -- a full drill that the scratch filesystem cannot hold ---------------------------------------------------------


def test_a_drill_the_scratch_filesystem_cannot_hold_is_refused_before_restoring(restic_job, monkeypatch):
    job = restic_job()
    job.settings["offsite_repo"] = None
    (job.src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    assert job.runner().run()[0].ok
    real = shutil.disk_usage
    total = 1024 * 1024 * 1024
    # The scratch filesystem as statvfs would give it: 1 GiB with 256 MiB + 2 MiB free (the snapshot needs 3 MiB).
    monkeypatch.setattr(jobs.shutil, "disk_usage", lambda path: SimpleNamespace(
        total=total, used=total - 258 * 1024 * 1024, free=258 * 1024 * 1024))
    restores = []
    runner = job.runner()
    original = runner.restic.run
    runner.restic.run = lambda argv, *a, **kw: (restores.append(argv) if "restore" in argv else None) or original(
        argv, *a, **kw)
    drill = runner.drill()
    assert drill.status == "failure"
    assert drill.error.startswith("not enough space to drill: the restore needs 3.0 MiB in ")
    assert "which has 258.0 MiB free, and 256.0 MiB must stay free" in drill.error
    assert restores == []  # refused before restic restored anything
    assert not any((job.root / "state" / "drill").iterdir())
    entry = state.load(job.root / "state", "j1")["steps"]["local/drill"]
    assert entry["status"] == "failure" and entry["error"] == drill.error  # recorded like any failed drill
    monkeypatch.setattr(jobs.shutil, "disk_usage", real)
    assert job.runner().drill().status == "success"  # with room, the same drill restores and verifies

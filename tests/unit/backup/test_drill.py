"""Restore drills on real restic: the latest snapshot by its time (not its text), file names that are not UTF-8
or hold glob characters verified in full and sample drills, and an empty snapshot not called a success."""

from __future__ import annotations

import os
import random

from citydc.backup import state

# Names restic's --include would read as patterns, and one that is not UTF-8 (ls --json writes it with U+FFFD).
HOSTILE = [b"bad\xff\xfename.txt", b"glob[1].txt", b"back\\slash.txt", b"st*ar.txt", b"q?x.txt"]


def test_the_drill_restores_the_latest_snapshot_by_time_across_utc_offsets(restic_job, monkeypatch):
    job = restic_job()
    (job.src / "a.txt").write_text("v1\n")
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # +14:00: this older snapshot's time sorts last as text
    first = job.runner().run()[0]
    (job.src / "new.txt").write_text("after the zone change\n")
    monkeypatch.setenv("TZ", "Pacific/Pago_Pago")  # -11:00
    second = job.runner().run()[0]
    assert first.ok and second.ok
    drill = job.runner().drill()
    assert drill.ok and drill.snapshot_id == second.snapshot_id, drill.error
    assert drill.details["files_in_snapshot"] == 2
    assert drill.details["snapshot_time"].endswith("-11:00")


def hostile_job(restic_job, **settings):
    job = restic_job(**settings)
    for name in HOSTILE:
        with open(os.path.join(os.fsencode(job.src), name), "wb") as fh:
            fh.write(name + b"\n")
    (job.src / "plain.txt").write_text("plain\n")
    assert job.runner().run()[0].ok
    return job


def test_a_full_drill_verifies_names_that_are_not_utf8(restic_job):
    drill = hostile_job(restic_job).runner().drill()
    assert drill.ok, drill.error
    assert (drill.details["verified_files"], drill.details["unverifiable_names"]) == (len(HOSTILE) + 1, 0)
    assert drill.details["matched_source_files"] == len(HOSTILE) + 1  # the raw name found the source too


def test_a_sample_drill_restores_names_with_glob_characters(restic_job):
    job = hostile_job(restic_job, drill_sample_files=len(HOSTILE))  # any sample holds 4 of the 5 hostile names
    for seed in range(3):
        drill = job.runner(rng=random.Random(seed)).drill()
        assert drill.ok and drill.details["mode"] == "sample", drill.details.get("failures")
        assert drill.details["verified_files"] == len(HOSTILE)


def test_a_drill_of_an_empty_snapshot_is_partial_saying_so(restic_job):
    job = restic_job()
    assert job.runner().run()[0].ok  # src is an empty directory
    drill = job.runner().drill()
    assert drill.status == "partial" and drill.details["verified_files"] == 0
    assert drill.error == f"snapshot {drill.snapshot_id} is empty: no file to restore and verify (are the job's " \
                          "sources empty?)"
    assert state.load(job.root / "state", "j1")["drill"]["local"]["status"] == "partial"
    assert not (job.root / "state" / "evidence").exists()  # no evidence of a restore that restored nothing

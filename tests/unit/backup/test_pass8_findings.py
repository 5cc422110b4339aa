"""Findings of the backup sysadmin's pass 8 (2026-12-08), each reproduced on real restic 0.14 (local repositories
in tmp_path; the off-site ones were on a private sshd for the SFTP back end): a source that is a symbolic link, a
job tag naming another job, an off-site server that refuses writes (a full disk), a step stopped by a signal, and
the live status of a repository that lost the job's snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from citydc.backup import restic, state
from citydc.config.models import BackupJob, Retention


def test_a_source_that_is_a_symlink_fails_the_backup_naming_its_target(restic_job):
    # restic 0.14 stores a source that is a symbolic link as the link alone (exit 0): the data it points to was
    # never backed up, and the backup, the drill (of the other sources) and status all said success.
    job = restic_job()
    job.settings["offsite_repo"] = None
    (job.src / "a.txt").write_text("a\n")
    target = job.root / "real"
    target.mkdir()
    (target / "data.txt").write_text("the data the operator meant to back up\n")
    link = job.root / "linked"
    link.symlink_to(target)
    job.settings["sources"] = [str(job.src), str(link)]
    (backup,) = job.runner().run()
    assert backup.status == "failure"
    assert backup.error == (f"source is a symbolic link, restic backs up the link only, not what it points to: "
                            f"{link} -> {target} (list the link's target in sources)")
    assert backup.details["linked_sources"] == [f"{link} -> {target}"]
    # what restic itself stored: the link, not the file behind it (the snapshot of the other source is kept)
    listed = job.restic("local", "ls", "--json", "latest").stdout.splitlines()
    paths = {json.loads(line).get("path") for line in listed[1:]}
    assert str(link) in paths and str(link / "data.txt") not in paths


def test_a_dangling_symlink_source_is_named_as_a_link_not_as_missing(restic_job):
    job = restic_job()
    job.settings["offsite_repo"] = None
    link = job.root / "dangling"
    os.symlink(job.root / "nowhere", link)
    job.settings["sources"] = [str(job.src), str(link)]
    (job.src / "a.txt").write_text("a\n")
    (backup,) = job.runner().run()
    assert backup.status == "failure"
    assert backup.details["missing_sources"] == []
    assert f"{link} -> {job.root / 'nowhere'}" in backup.error


def test_a_source_behind_a_symlinked_parent_is_backed_up_as_usual(restic_job):
    # only the last component matters: restic follows links in the parents of a source path
    job = restic_job()
    job.settings["offsite_repo"] = None
    (job.src / "a.txt").write_text("a\n")
    (job.root / "via").symlink_to(job.root)
    job.settings["sources"] = [str(Path(job.root / "via" / "src"))]
    (backup,) = job.runner().run()
    assert backup.ok, backup.error


# -- a job tag naming another job -----------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["citydc.job=j2", "x,citydc.job=j3", " citydc.job=j2"])
def test_a_tag_with_the_job_prefix_is_refused_by_the_config(tag):
    with pytest.raises(ValidationError, match=r"the tag prefix 'citydc\.job=' is reserved"):
        BackupJob.model_validate({"name": "j1", "site": "siwei", "sources": ["/srv"], "tags": ["ldap", tag],
                                  "local_repo": {"url": "/r", "password": "env:P", "site": "siwei"}})
    assert restic.job_tag("j1") == "citydc.job=j1"


@pytest.mark.parametrize("tag", ["citydc.jobs", "citydc.job", "ldap,nightly"])
def test_other_tags_are_taken(tag):
    job = BackupJob.model_validate({"name": "j1", "site": "siwei", "sources": ["/srv"], "tags": [tag],
                                    "local_repo": {"url": "/r", "password": "env:P", "site": "siwei"}})
    assert job.tags == [tag]


def test_a_job_tagging_its_snapshots_with_another_jobs_tag_is_refused_before_restic_runs(tmp_path):
    # Reproduced on real restic: j1 with tags [ldap, citydc.job=j2] in the repository j2 shares; `backup prune j2`
    # (keep_daily 1) then forgot j1's snapshot of that day, which j1's own policy (keep_daily 7) kept.
    import subprocess
    import sys

    pw = "Pass8-tags-pw-Zq81x"
    repo = tmp_path / "repo"
    subprocess.run(["restic", "-r", str(repo), "init"], env={**os.environ, "RESTIC_PASSWORD": pw},
                   capture_output=True, check=True, timeout=120)
    (tmp_path / "pw").write_text(pw + "\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a\n")
    local = {"url": str(repo), "password": f"file:{tmp_path / 'pw'}", "site": "siwei"}
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "backup": {"state_dir": str(tmp_path / "state"), "jobs": [
            {"name": "j1", "site": "siwei", "sources": [str(tmp_path / "src")], "local_repo": local,
             "tags": ["ldap", "citydc.job=j2"]},
            {"name": "j2", "site": "siwei", "sources": [str(tmp_path / "src")], "local_repo": local,
             "retention": {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}}]},
        "security_log": {"spool_dir": str(tmp_path / "spool")}}))
    config.chmod(0o600)
    proc = subprocess.run([str(Path(sys.executable).with_name("citydc")), "-c", str(config), "backup", "run", "j1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "backup.jobs[0].tags[1]" in proc.stderr and "the tag prefix 'citydc.job=' is reserved" in proc.stderr
    listed = subprocess.run(["restic", "-r", str(repo), "snapshots", "--json"], capture_output=True, text=True,
                            env={**os.environ, "RESTIC_PASSWORD": pw}, check=True, timeout=120)
    assert json.loads(listed.stdout) == []  # nothing was backed up under the wrong tag


# -- an off-site server with a full disk -----------------------------------------------------------------

# restic 0.14's copy to a 30 MiB tmpfs behind OpenSSH's internal-sftp (stderr's end, the stack trace shortened)
COPY_TO_FULL_SFTP = """\
Save(<data/346bbbf2a3>) returned error, retrying after 24.76915092s: Write: sftp: "Failure" (SSH_FX_FAILURE)
Save(<data/98fa99f0c7>) returned error, retrying after 16.565348898s: Write: sftp: "Failure" (SSH_FX_FAILURE)
sftp: "Failure" (SSH_FX_FAILURE)
Write
github.com/restic/restic/internal/backend/sftp.(*SFTP).Save
\tgithub.com/restic/restic/internal/backend/sftp/sftp.go:367
github.com/restic/restic/internal/backend/limiter.rateLimitedBackend.Save
\tgithub.com/restic/restic/internal/backend/limiter/limiter_backend.go:30
runtime.goexit
\truntime/asm_amd64.s:1594
"""


def test_a_copy_to_a_full_sftp_server_says_where_to_look():
    reason = restic.classify_failure(COPY_TO_FULL_SFTP)
    assert reason.startswith('sftp: "Failure" (SSH_FX_FAILURE) (the SFTP server refused a write without saying why: '
                             'a full disk or an exceeded quota on the server is the usual cause')
    assert restic.open_failure(f"fatal error: {reason}") is None  # not mistaken for a repository it cannot open


# -- citydc stopped while a step runs ------------------------------------------------------------------------


def stop_citydc(*_args, **_kwargs):
    raise KeyboardInterrupt  # what execute raises when citydc gets SIGINT, or SIGTERM while restic runs


@pytest.mark.parametrize("step", ["backup", "check", "drill"])
def test_a_step_stopped_by_a_signal_is_recorded_as_failed_not_left_at_the_last_success(restic_job, monkeypatch,
                                                                                        step):
    # Reproduced with `timeout -s INT 2 citydc backup run` of a 200 MB source: the state, status and metrics kept the
    # previous run's success as the last result, and the backup-run start event had no end.
    job = restic_job()
    job.settings["offsite_repo"] = None
    (job.src / "a.txt").write_text("a\n")
    assert all(r.ok for r in job.runner().run())
    if step == "drill":
        assert job.runner().drill().ok
    emitted: list[dict] = []
    runner = job.runner()
    runner.emit = emitted.extend
    monkeypatch.setattr(runner.restic, "backup" if step == "backup" else "run", stop_citydc)
    with pytest.raises(KeyboardInterrupt):
        {"backup": runner.run, "check": runner.check, "drill": runner.drill}[step]()
    entry = state.load(job.root / "state", "j1")["steps"][f"local/{step}"]
    assert entry["status"] == "failure"
    assert entry["error"] == "interrupted: citydc was stopped (SIGINT/SIGTERM) before the step ended"
    assert emitted[-1]["event"]["outcome"] == "failure"
    if step == "drill":
        assert state.load(job.root / "state", "j1")["drill"]["local"]["status"] == "failure"


# -- live status of a repository that lost the job's snapshots ---------------------------------------------


def forget_all(job, repo: str) -> None:
    # restic 0.14 wants a policy: keeping only a tag no snapshot has forgets every snapshot of the job
    job.restic(repo, "forget", "--tag", restic.job_tag("j1"), "--keep-tag", "no-such-tag")


def test_live_status_of_a_repository_without_the_jobs_snapshots_is_never_not_fresh(restic_job):
    # Reproduced on the SFTP off-site: every snapshot of job j2 forgotten there (by hand; a repository replaced by an
    # empty one is the same), `backup status j2` said "success, fresh" with 0 snapshots and exit 0.
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    assert all(r.ok for r in job.runner().run())
    forget_all(job, "offsite")
    local, offsite = job.runner().status(live=True)
    assert (local["freshness"], offsite["freshness"]) == ("fresh", "never")
    assert offsite["snapshots"] == 0 and offsite["last_success"] is None and offsite["age_seconds"] is None
    assert offsite["reason"].startswith("never: the repository holds no snapshot of the job (the last success "
                                        "recorded, ")
    forget_all(job, "local")
    local, _ = job.runner().status(live=True)
    assert local["freshness"] == "never" and local["reason"].startswith("never: the repository holds no snapshot")
    # --offline asks no repository: it shows what was recorded
    assert {r["freshness"] for r in job.runner().status(live=False)} == {"fresh"}


def test_live_status_judges_the_offsite_by_its_newest_snapshot_listed_now(restic_job):
    job = restic_job()
    (job.src / "a.txt").write_text("a\n")
    job.restic("local", "backup", "-q", "--tag", restic.job_tag("j1"), "--time", "2020-01-02 03:04:05", str(job.src))
    assert all(r.ok for r in job.runner().run())  # the copy brings both off-site
    newest = json.loads(job.restic("offsite", "snapshots", "--json", "--latest", "1").stdout)[-1]["id"]
    job.restic("offsite", "forget", newest)
    _, offsite = job.runner().status(live=True)
    assert offsite["freshness"] == "stale" and offsite["snapshots"] == 1
    assert offsite["last_success"] < 1_600_000_000  # the 2020 snapshot, all the off-site repository still holds


# -- init of an existing repository with the wrong password -------------------------------------------------


def test_init_with_the_wrong_password_names_the_password_not_the_config_file(restic_job):
    # restic init on an existing repository says only "config file already exists": read as the file to remove
    job = restic_job()
    (job.root / "pw").write_text("Not-the-password-4Kp\n")
    local, offsite = job.runner().init()
    for step in (local, offsite):
        assert step.status == "failure"
        assert step.error == "not created: cannot open the repository at this URL: wrong password"
    assert (job.root / "local" / "config").exists()


# -- retention groups -------------------------------------------------------------------------------------------


def test_a_prune_whose_snapshots_form_several_groups_says_so(restic_job):
    # Reproduced with `unshare -u` runs under two other host names: `prune` (keep_daily 1) kept one snapshot per
    # host, 4 in all, and said only "success"; a renamed host's group is kept for ever.
    from citydc.cli.backup_cmd import step_detail

    job = restic_job(retention={"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0})
    job.settings["offsite_repo"] = None
    (job.src / "a.txt").write_text("a\n")
    job.restic("local", "backup", "-q", "--tag", restic.job_tag("j1"), "--host", "bk-old-1", str(job.src))
    runner = job.runner(host="bk-new")
    assert runner.run()[0].ok
    assert runner.run()[0].ok
    (prune,) = runner.prune()
    assert prune.ok and prune.details["snapshots_removed"] == 1 and prune.details["snapshots_kept"] == 2
    assert sorted(prune.details["groups"]) == ["bk-new [citydc.job=j1]", "bk-old-1 [citydc.job=j1]"]
    assert step_detail(prune).startswith("1 forgotten, 2 kept in 2 retention groups (host [tags]: ")
    # one group: nothing to say
    job.restic("local", "forget", "--host", "bk-old-1", "--keep-tag", "no-such-tag")
    (prune,) = runner.prune()
    assert prune.ok and "groups" not in prune.details and step_detail(prune) == ""


# -- values restic refuses at every run, refused by the config instead ---------------------------------------


def test_a_keep_value_restic_cannot_read_is_refused_by_the_config():
    with pytest.raises(ValidationError, match="less than or equal to 9223372036854775807"):
        Retention.model_validate({"keep_daily": 99999999999999999999})
    assert Retention.model_validate({"keep_daily": 2**63 - 1}).keep_daily == 2**63 - 1


@pytest.mark.parametrize(("pattern", "message"), [
    ("[unclosed", "the [ at 1 has no closing ]"), ("*.tmp[", "the [ at 6 has no closing ]"),
    ("a[]b", "the character class at 2 is empty"), ("[]a]", "the character class at 1 is empty"),
    ("cache\\", "ends with a backslash"),
])
def test_an_exclude_pattern_restic_refuses_is_refused_by_the_config(pattern, message):
    # Each one refused by restic 0.14 on this machine (backup --exclude PATTERN: "invalid pattern(s)", exit 1).
    with pytest.raises(ValidationError, match=message.replace("[", "\\[").replace("]", "\\]")):
        BackupJob.model_validate({"name": "j1", "site": "siwei", "sources": ["/srv"], "excludes": [pattern],
                                  "local_repo": {"url": "/r", "password": "env:P", "site": "siwei"}})


@pytest.mark.parametrize("pattern", ["*.tmp", "/var/cache/**", "[abc]x", "[^a]", "a\\[b", "x?y"])
def test_patterns_restic_reads_are_taken(pattern, tmp_path):
    # Each one checked with the real restic on this machine: backup --exclude PATTERN exits 0.
    import subprocess

    (tmp_path / "src").mkdir()
    env = {**os.environ, "RESTIC_PASSWORD": "x"}
    subprocess.run(["restic", "-r", str(tmp_path / "r"), "init"], env=env, capture_output=True, check=True,
                   timeout=120)
    done = subprocess.run(["restic", "-r", str(tmp_path / "r"), "backup", "--exclude", pattern, str(tmp_path / "src")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    BackupJob.model_validate({"name": "j1", "site": "siwei", "sources": ["/srv"], "excludes": [pattern],
                              "local_repo": {"url": "/r", "password": "env:P", "site": "siwei"}})

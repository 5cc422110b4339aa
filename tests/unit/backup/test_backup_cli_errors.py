"""``citydc backup`` with the real restic and two local repositories: a password found in argv, a copy after a
wrong password and ``status --offline``. Each failure is one line naming the job and the repository (or the file),
never a traceback, and never blames the repository whose password is fine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CITYDC = str(Path(sys.executable).with_name("citydc"))
LOCAL_PW = "Local-pw-Q7v2-never-shown"
OFFSITE_PW = "repo"  # short, and a substring of the repositories' own paths


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> Path:
    """Two initialised repositories under a folder named ``repos`` (the off-site password occurs in its path)."""
    base = tmp_path_factory.mktemp("backup-cli") / "repos"
    for name, pw in (("local-repo", LOCAL_PW), ("offsite-repo", OFFSITE_PW)):
        subprocess.run(["restic", "-r", str(base / name), "init"], env={**os.environ, "RESTIC_PASSWORD": pw},
                       capture_output=True, check=True, timeout=120)
    return base


class Setup:
    def __init__(self, root: Path, repos: Path, **job):
        self.root = root
        (root / "src").mkdir()
        (root / "src" / "a.txt").write_text("data\n")
        self.secret("pw", LOCAL_PW)
        self.secret("pw2", OFFSITE_PW)
        self.config = root / "citydc.yaml"
        jobs = [{"name": "j1", "site": "siwei", "sources": [str(root / "src")],
                 "local_repo": {"url": str(repos / "local-repo"), "password": f"file:{root / 'pw'}", "site": "siwei"},
                 "offsite_repo": {"url": str(repos / "offsite-repo"), "password": f"file:{root / 'pw2'}",
                                  "site": "fengshan"}, **job}]
        self.write(jobs)

    def write(self, jobs: list[dict], **backup) -> None:
        self.config.write_text(json.dumps({
            "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
            "backup": {"state_dir": str(self.root / "state"), "jobs": jobs, **backup},
            "security_log": {"spool_dir": str(self.root / "spool")}}))
        self.config.chmod(0o600)

    def secret(self, name: str, value: str) -> None:
        (self.root / name).write_text(value + "\n")
        (self.root / name).chmod(0o600)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([CITYDC, "-c", str(self.config), "backup", *args], capture_output=True, text=True,
                              timeout=300, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert LOCAL_PW not in proc.stdout + proc.stderr
        return proc


def steps(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    return {s["step"]: s for s in json.loads(proc.stdout)["steps"]}


def test_a_short_password_inside_the_repository_path_is_no_refusal(tmp_path, repos):
    job = Setup(tmp_path, repos)
    run = job.cli("run", "j1", "--json")
    assert run.returncode == 0, run.stderr
    assert [s["status"] for s in steps(run).values()] == ["success", "success"]
    assert job.cli("status").returncode == 0


def test_a_password_in_argv_is_one_line_naming_job_and_repository_with_exit_2(tmp_path, repos):
    job = Setup(tmp_path, repos, tags=[LOCAL_PW])  # a tag is a whole argument of restic backup
    run = job.cli("run", "j1")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: job j1: refusing to run restic: the password of the local repository")
    assert "the whole argument" in lines[0]


def test_a_wrong_local_password_skips_the_copy_and_names_the_local_repository(tmp_path, repos):
    job = Setup(tmp_path, repos)
    job.secret("pw", "Wrong-local-pw")
    got = steps(job.cli("run", "j1", "--json"))
    assert got["backup"]["error"].endswith("wrong password")
    assert got["copy"]["status"] == "failure"
    assert "source (local) repository: wrong password" in got["copy"]["error"]
    assert "offsite" not in got["copy"]["error"].replace("(offsite)", "")


def test_a_wrong_offsite_password_is_blamed_on_the_destination(tmp_path, repos):
    job = Setup(tmp_path, repos)
    job.secret("pw2", "Wrong-offsite-pw")
    got = steps(job.cli("run", "j1", "--json"))
    assert got["backup"]["status"] == "success"
    assert "cannot open the destination (offsite) repository: wrong password" in got["copy"]["error"]


def test_a_copy_after_another_backup_failure_asks_the_source_which_side_failed(tmp_path, repos):
    # The backup fails before restic runs (a pre-command), so only the copy meets the wrong local password;
    # restic's copy says "wrong password" for either side, and the source is asked on its own.
    job = Setup(tmp_path, repos, pre_commands=[["false"]])
    job.secret("pw", "Wrong-local-pw")
    got = steps(job.cli("run", "j1", "--json"))
    assert got["backup"]["error"].startswith("not backed up: pre-command")
    assert "cannot open the source (local) repository: wrong password" in got["copy"]["error"]


def test_status_offline_needs_no_password_nor_restic_and_shows_every_job(tmp_path, repos):
    job = Setup(tmp_path, repos)
    assert job.cli("run", "j1").returncode == 0
    jobs = json.loads(job.config.read_text())["backup"]["jobs"]
    broken = {**jobs[0], "name": "j2"}
    (tmp_path / "state" / "j2.json").write_text("{half")
    job.write([jobs[0], broken])
    cfg = json.loads(job.config.read_text())
    cfg["tools"] = {"restic": str(tmp_path / "no-restic-here")}
    job.config.write_text(json.dumps(cfg))
    (tmp_path / "pw2").unlink()  # the off-site password cannot be resolved
    status = job.cli("status", "--offline", "--json")
    assert status.returncode == 1, status.stderr  # j2's unreadable state is a finding, not an abort
    rows = {(r["job"], r["repo"]): r for r in json.loads(status.stdout)}
    assert rows[("j1", "local")]["status"] == "success" and rows[("j1", "offsite")]["status"] == "success"
    assert "j2.json: not valid JSON" in rows[("j2", "local")]["reason"]
    assert rows[("j2", "offsite")]["error"] == rows[("j2", "local")]["error"]


def test_status_offline_of_a_state_file_that_cannot_be_opened_names_it_and_its_field(tmp_path, repos):
    job = Setup(tmp_path, repos)
    (tmp_path / "state" / "j1.json").mkdir(parents=True)  # an OSError even for root: a directory, not a file
    status = job.cli("status", "--offline", "--json")
    assert status.returncode == 1
    reasons = {r["reason"] for r in json.loads(status.stdout)}
    assert reasons == {f"state not readable: cannot use {tmp_path / 'state' / 'j1.json'}: Is a directory "
                       "(backup.state_dir)"}


def test_a_damaged_spool_chain_head_stops_the_run_with_one_line_naming_the_file(tmp_path, repos):
    job = Setup(tmp_path, repos)
    assert job.cli("run", "j1").returncode == 0  # the spool exists, with its chain head
    head = tmp_path / "spool" / "chain-head.json"
    head.write_text("garbage{")
    run = job.cli("run", "j1")
    assert run.returncode == 1
    assert run.stderr.startswith("error: the security log cannot record events: ") and str(head) in run.stderr
    assert "move it aside" in run.stderr


def local_snapshots(repos: Path) -> int:
    proc = subprocess.run(["restic", "-r", str(repos / "local-repo"), "snapshots", "--json"], capture_output=True,
                          text=True, env={**os.environ, "RESTIC_PASSWORD": LOCAL_PW}, timeout=120, check=True)
    return len(json.loads(proc.stdout))


@pytest.mark.parametrize("damage", ["{garbage", "[]"])
def test_a_damaged_state_file_stops_every_command_before_restic_with_one_line(tmp_path, repos, damage):
    job = Setup(tmp_path, repos)
    assert job.cli("run", "j1").returncode == 0
    state_file = tmp_path / "state" / "j1.json"
    state_file.write_text(damage)
    before = local_snapshots(repos)
    for args in (("run", "j1"), ("check", "j1"), ("prune", "j1"), ("drill", "j1"), ("status",)):
        proc = job.cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(f"error: job j1: state: {state_file}: ") and proc.stderr.count("\n") == 1
        assert "move it away to start a new state" in proc.stderr
        if args[0] == "run":  # refused before restic ran: no snapshot left without its off-site copy
            assert local_snapshots(repos) == before


def test_a_missing_restic_program_is_one_error_line(tmp_path, repos):
    job = Setup(tmp_path, repos)
    cfg = json.loads(job.config.read_text())
    job.config.write_text(json.dumps({**cfg, "tools": {"restic": str(tmp_path / "no-restic-here")}}))
    proc = job.cli("run", "j1")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: restic: program not found: {tmp_path / 'no-restic-here'}")


def test_restic_failing_to_start_inside_a_step_is_one_error_line(tmp_path, repos):
    # A restic that answers the version check and then is gone: the step's restic start raises ToolFailed,
    # as a restic timeout does.
    vanishing = tmp_path / "restic"
    vanishing.write_text('#!/bin/sh\n[ "$1" = version ] && rm -f "$0" && echo "restic 0.14.0 compiled with go" '
                         '&& exit 0\nexec restic "$@"\n')
    vanishing.chmod(0o700)
    job = Setup(tmp_path, repos)
    cfg = json.loads(job.config.read_text())
    job.config.write_text(json.dumps({**cfg, "tools": {"restic": str(vanishing)}}))
    proc = job.cli("check", "j1")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"error: job j1: restic: program not found: {vanishing} (install it or set tools.* in " \
                          "citydc.yaml)\n"


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_password_file_is_a_setup_error_before_restic_runs(tmp_path, repos, content):
    job = Setup(tmp_path, repos)
    (tmp_path / "pw2").write_text(content)
    proc = job.cli("run", "j1")
    assert proc.returncode == 2
    assert proc.stderr == f"error: job j1: offsite_repo password: file:{tmp_path / 'pw2'} is empty; restic needs a " \
                          "password\n"
    assert not (tmp_path / "state" / "j1.json").exists()

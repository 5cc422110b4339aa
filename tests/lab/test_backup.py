"""Backup jobs end to end: the real ``citydc backup`` command, the real restic 0.14 and an off-site repository
over SFTP to the lab's OpenSSH server. Each test has its own job and repositories; the data set (mixed small and
large files, ~21 MB) is shared read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD = "restic-lab-pw-Q7v2-never-shown"
UNREADABLE = "/proc/sys/vm/compact_memory"  # write-only: even root cannot read it


def make_data(root: Path, seed: int = 5) -> Path:
    rnd = random.Random(seed)
    (root / "small").mkdir(parents=True)
    for i in range(300):
        body = (f"{i} log line\n" * rnd.randint(10, 3000)) if i % 2 else rnd.randbytes(rnd.randint(1024, 32768)).hex()
        (root / "small" / f"f{i:03}.txt").write_text(body)
    for i in range(2):
        (root / f"big{i}.bin").write_bytes(rnd.randbytes(8 * 1024 * 1024))
    return root


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def sftp(lab_up) -> dict[str, str]:
    (status,) = lab_up("sftp")
    assert status.running
    return status.endpoints


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("backup-data") / "data")


class Job:
    """One job with its own config file, state, local repository and off-site repository over SFTP."""

    def __init__(self, base: Path, sftp: dict[str, str], sources: list[str], *, ssh_config: str | None = None,
                 lock_stale_seconds: int = 3600, drill_sample_files: int = 0, check_days: int = 3):
        self.name = f"j{uuid.uuid4().hex[:8]}"
        self.dir = base / self.name
        self.dir.mkdir(parents=True)
        self.local = self.dir / "local"
        remote_root = sftp["sftp"].split(":", 2)[2]
        self.offsite = Path(remote_root) / self.name
        self.config = self.dir / "citydc.yaml"
        self.ssh_config = ssh_config or sftp["ssh_config"]
        self.write(sources, lock_stale_seconds=lock_stale_seconds, drill_sample_files=drill_sample_files,
                   check_days=check_days)

    def write(self, sources: list[str], *, lock_stale_seconds: int = 3600, drill_sample_files: int = 0,
              check_days: int = 3, ssh_config: str | None = None) -> None:
        self.config.write_text(json.dumps({
            "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
            "backup": {
                "state_dir": str(self.dir / "state"), "textfile_dir": str(self.dir / "textfile"),
                "lock_stale_seconds": lock_stale_seconds,
                "jobs": [{
                    "name": self.name, "site": "siwei", "sources": sources, "tags": ["lab"],
                    "check_read_data_days": check_days, "drill_sample_files": drill_sample_files,
                    "retention": {"keep_daily": 2, "keep_weekly": 0, "keep_monthly": 0},
                    "local_repo": {"url": str(self.local), "password": "env:CITYDC_TEST_RESTIC_PW", "site": "siwei"},
                    "offsite_repo": {"url": f"sftp:citydc@127.0.0.1:{self.offsite}",
                                     "password": "env:CITYDC_TEST_RESTIC_PW", "site": "fengshan",
                                     "ssh_config": ssh_config or self.ssh_config},
                }],
            },
            "security_log": {"spool_dir": str(self.dir / "spool")},
        }))

    def argv(self, command: str, *args: str) -> list[str]:
        """Return the argv of ``citydc backup COMMAND [JOB] ARGS`` (every command but status takes the job)."""
        job = [] if command == "status" else [self.name]
        return [CITYDC, "-vv", "-c", str(self.config), "backup", command, *job, *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CITYDC_TEST_RESTIC_PW": PASSWORD}

    def cli(self, *args: str, as_json: bool = True) -> tuple[int, dict, str]:
        """Run ``citydc backup ARGS``; return (exit code, parsed JSON, stderr). Password never in any output."""
        proc = subprocess.run([*self.argv(*args), *(["--json"] if as_json else [])], env=self.env(),
                              capture_output=True, text=True, timeout=600, check=False)
        assert PASSWORD not in proc.stdout and PASSWORD not in proc.stderr
        return proc.returncode, json.loads(proc.stdout) if as_json and proc.stdout.strip() else {}, proc.stderr

    def metrics(self) -> dict[tuple, float]:
        text = (self.dir / "textfile" / "citydc_backup.prom").read_text()
        assert PASSWORD not in text
        return {(s.name, *sorted(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def metric(self, name: str, **labels: str) -> float:
        full = {"job": self.name, "site": "siwei", **labels}
        return self.metrics()[(name, *sorted(full.items()))]

    def spool_text(self) -> str:
        return "".join(p.read_bytes().decode("utf-8", "replace") for p in (self.dir / "spool").rglob("*")
                       if p.is_file())

    def restic(self, repo: str, *args: str) -> subprocess.CompletedProcess:
        """Bare restic against one of the job's repositories (test-side checks only)."""
        url = str(self.local) if repo == "local" else f"sftp:citydc@127.0.0.1:{self.offsite}"
        opts = [] if repo == "local" else ["-o", f"sftp.command=ssh -F {self.ssh_config} citydc@127.0.0.1 -s sftp"]
        return subprocess.run(["restic", "-r", url, *opts, *args], capture_output=True, text=True, check=False,
                              env={**os.environ, "RESTIC_PASSWORD": PASSWORD}, timeout=600)

    def cleanup(self) -> None:
        shutil.rmtree(self.offsite, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def make_job(tmp_path, sftp):
    jobs: list[Job] = []

    def make(sources: list[str], **kw) -> Job:
        job = Job(tmp_path, sftp, sources, **kw)
        jobs.append(job)
        rc, out, err = job.cli("init")
        assert rc == 0, err
        assert [s["status"] for s in out["steps"]] == ["success", "success"]
        return job

    yield make
    for job in jobs:
        job.cleanup()


def step(out: dict, name: str, repo: str) -> dict:
    return next(s for s in out["steps"] if s["step"] == name and s["repo"] == repo)


def actions(out: dict) -> list[tuple[str, str, str]]:
    return [(e["event"]["action"], e["event"]["type"][0], e["event"]["outcome"]) for e in out["events"]]


def test_run_copy_check_prune_drill(make_job, dataset):
    job = make_job([str(dataset)])
    size = tree_bytes(dataset)
    rc, out, err = job.cli("run")
    assert rc == 0, err
    assert out["status"] == "success"
    backup, copy = step(out, "backup", "local"), step(out, "copy", "offsite")
    assert backup["status"] == "success" and backup["exit_code"] == 0 and len(backup["snapshot_id"]) == 8
    assert backup["details"]["files_new"] == 302
    assert size * 0.95 <= backup["details"]["bytes_added"] <= size * 1.05
    assert copy["status"] == "success" and len(copy["details"]["snapshots_copied"]) == 1
    assert actions(out) == [("backup-run", "start", "unknown"), ("backup-run", "end", "success"),
                            ("backup-copy", "start", "unknown"), ("backup-copy", "end", "success")]
    assert out["events"][1]["citydc"]["backup"]["snapshot_id"] == backup["snapshot_id"]
    # restic itself agrees: one snapshot in each repository
    for repo in ("local", "offsite"):
        snaps = json.loads(job.restic(repo, "--json", "snapshots").stdout)
        assert len(snaps) == 1 and f"citydc.job={job.name}" in snaps[0]["tags"]

    # check rotates through the read-data subsets and records the cycle's progress
    rc, out, err = job.cli("check")
    assert rc == 0, err
    assert [(s["repo"], s["details"]["subset"]) for s in out["steps"]] == [("local", "1/3"), ("offsite", "1/3")]
    rc, out, _ = job.cli("check", "--repo", "offsite")
    assert rc == 0 and step(out, "check", "offsite")["details"]["subset"] == "2/3"
    assert job.metric("citydc_backup_check_cycle_progress_ratio", repo="offsite") == pytest.approx(2 / 3)
    assert job.metric("citydc_backup_check_cycle_progress_ratio", repo="local") == pytest.approx(1 / 3)
    assert {a for a, _, _ in actions(out)} == {"repo-check"}

    # drill from both sites: every file restored, hashed, and equal to the unchanged source
    for repo in ("local", "offsite"):
        rc, out, err = job.cli("drill", "--repo", repo)
        assert rc == 0, err
        d = step(out, "drill", repo)["details"]
        assert d["mode"] == "full" and d["verified_files"] == 302 and d["failed_files"] == 0
        assert d["matched_source_files"] == 302 and d["verified_bytes"] == size
        assert d["restic_verified_files"] == 302
        assert actions(out)[-1] == ("restore-drill", "end", "success")
        assert job.metric("citydc_backup_drill_verified_files", repo=repo) == 302
    evidence = sorted((job.dir / "state" / "evidence").glob("*.json"))
    manifest = json.loads(evidence[-1].read_text())["sha256"]
    sample = dataset / "big1.bin"
    assert manifest[str(sample)] == hashlib.sha256(sample.read_bytes()).hexdigest()

    # a second run, then prune with keep-daily 2 keeps both of today's... only the last of the day
    rc, out, _ = job.cli("run")
    assert rc == 0 and step(out, "backup", "local")["details"]["bytes_added"] < size * 0.01
    rc, out, err = job.cli("prune")
    assert rc == 0, err
    assert [s["details"]["snapshots_removed"] for s in out["steps"]] == [1, 1]
    assert len(json.loads(job.restic("offsite", "--json", "snapshots").stdout)) == 1

    rc, rows, _ = job.cli("status")
    assert rc == 0
    assert {(r["repo"], r["snapshots"], r["status"]) for r in rows} == {("local", 1, "success"),
                                                                       ("offsite", 1, "success")}
    assert all(r["size_bytes"] > size * 0.5 and r["last_drill"]["verified_files"] == 302 for r in rows)
    assert job.metric("citydc_backup_last_success_timestamp_seconds", repo="offsite", step="copy") > time.time() - 600
    assert job.metric("citydc_backup_snapshots", repo="local") == 1
    # every step's events went to the security-log spool
    spool = job.spool_text()
    assert spool.count('"restore-drill"') >= 2 and '"backup-copy"' in spool and PASSWORD not in spool


def test_five_percent_change_adds_roughly_only_the_change(make_job, dataset, tmp_path):
    data = tmp_path / "data5"
    shutil.copytree(dataset, data)
    job = make_job([str(data)])
    rc, out, _ = job.cli("run")
    assert rc == 0
    first = step(out, "backup", "local")["details"]["bytes_added"]
    rnd = random.Random(7)
    changed = 0
    for path in rnd.sample(sorted((data / "small").iterdir()), 15):  # 5% of the small files rewritten
        body = rnd.randbytes(16384)
        path.write_bytes(body)
        changed += len(body)
    with open(data / "big0.bin", "ab") as fh:  # and a big file grows
        body = rnd.randbytes(768 * 1024)
        fh.write(body)
        changed += len(body)
    assert 0.04 < changed / tree_bytes(data) < 0.06
    rc, out, _ = job.cli("run")
    assert rc == 0
    second = step(out, "backup", "local")["details"]
    assert second["files_changed"] == 16
    # restic chunks content-defined (~1 MiB average), so the grown file's last chunk is stored again
    assert changed <= second["bytes_added"] <= changed + 8 * 1024 * 1024
    assert second["bytes_added"] < first * 0.5
    assert job.metric("citydc_backup_last_added_bytes", repo="local") == second["bytes_added"]


def test_unreachable_offsite_fails_only_the_copy_and_the_next_run_catches_up(make_job, dataset, sftp):
    job = make_job([str(dataset)])
    broken = job.dir / "ssh_config_broken"
    broken.write_text(Path(sftp["ssh_config"]).read_text().replace("Port ", "Port 1 #"))
    job.write([str(dataset)], ssh_config=str(broken))
    rc, out, _ = job.cli("run")
    assert rc == 1 and out["status"] == "failure"
    assert step(out, "backup", "local")["status"] == "success"
    copy = step(out, "copy", "offsite")
    assert copy["status"] == "failure" and "unreachable" in copy["error"]
    assert actions(out)[-1] == ("backup-copy", "end", "failure")
    assert job.metric("citydc_backup_last_outcome", repo="offsite", step="copy", outcome="failure") == 1
    job.write([str(dataset)])
    rc, out, _ = job.cli("run")
    assert rc == 0
    assert len(step(out, "copy", "offsite")["details"]["snapshots_copied"]) == 2  # the missed one too


def test_missing_source_is_a_failure(make_job, dataset, tmp_path):
    missing = str(tmp_path / "not-there")
    job = make_job([str(dataset), missing])
    rc, out, err = job.cli("run")
    assert rc == 1
    backup = step(out, "backup", "local")
    assert backup["status"] == "failure" and backup["exit_code"] == 0  # restic 0.14 only warned
    assert backup["details"]["missing_sources"] == [missing] and missing in backup["error"]
    rc, _, err = job.cli("run", as_json=False)
    assert rc == 1 and "FAILURE" in err


def test_unreadable_file_is_partial_not_success(make_job, dataset):
    job = make_job([str(dataset), UNREADABLE])
    rc, out, _ = job.cli("run")
    assert rc == 1 and out["status"] == "partial"
    backup = step(out, "backup", "local")
    assert backup["status"] == "partial" and backup["exit_code"] == 3 and backup["snapshot_id"]
    assert backup["details"]["unreadable_files"] == [UNREADABLE]
    end = out["events"][1]
    assert end["event"]["outcome"] == "failure" and end["citydc"]["backup"]["status"] == "partial"
    assert job.metric("citydc_backup_last_outcome", repo="local", step="backup", outcome="partial") == 1
    assert "citydc_backup_last_success_timestamp_seconds" not in {k[0] for k in job.metrics()
                                                                    if ("step", "backup") in k}
    rc, _, err = job.cli("run", as_json=False)
    assert "unreadable:" in err and UNREADABLE in err and "PARTIAL" in err


def restic_children(root_pid: int) -> list[int]:
    """Return the PIDs of restic/ssh processes descending from root_pid."""
    from citydc.lab.processes import descendants

    out = []
    for pid in descendants(root_pid):
        try:
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if exe.endswith((b"restic", b"ssh")):
            out.append(pid)
    return out


def test_password_never_in_argv_logs_events_or_state(make_job, dataset):
    job = make_job([str(dataset)])
    proc = subprocess.Popen(job.argv("run", "--json"), env=job.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in restic_children(proc.pid):
            with contextlib.suppress(OSError):  # the process may end between listing and reading
                seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert len(seen) >= 2, "expected to catch the backup and copy processes"
    assert any(b"backup" in c for c in seen.values()) and any(b"copy" in c for c in seen.values())
    for cmdline in seen.values():
        assert PASSWORD.encode() not in cmdline
    assert "run restic:" in stderr  # -vv logged the commands, masked
    for text in (stdout, stderr, job.spool_text(), (job.dir / "textfile" / "citydc_backup.prom").read_text(),
                 *(p.read_text() for p in (job.dir / "state").glob("*.json"))):
        assert PASSWORD not in text


def test_sigkill_mid_backup_then_next_run_succeeds_and_the_stale_lock_is_removed(make_job, dataset, tmp_path):
    data = tmp_path / "killdata"
    shutil.copytree(dataset, data)
    (data / "huge.bin").write_bytes(random.Random(3).randbytes(96 * 1024 * 1024))
    job = make_job([str(data)])
    proc = subprocess.Popen(job.argv("run", "--json"), env=job.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    locks = job.local / "locks"
    deadline = time.monotonic() + 60
    # Mid-backup: the lock is written and the first data pack has landed.
    while time.monotonic() < deadline and not (any(locks.iterdir())
                                               and any(p.is_file() for p in (job.local / "data").rglob("*"))):
        assert proc.poll() is None, "the backup ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    lock_files = list(locks.iterdir())
    assert len(lock_files) == 1, "the killed restic left its lock"

    # The lock is younger than the 1 h threshold: check refuses to remove it and fails (restic is locked out).
    rc, out, _ = job.cli("check", "--repo", "local")
    assert rc == 1 and "locked" in step(out, "check", "local")["error"]
    assert any("only" in note for note in step(out, "check", "local")["details"]["locks_kept"])
    assert lock_files[0].exists()

    # With a short threshold the lock of the dead process is removed, as a security event.
    time.sleep(1.1)
    job.write([str(data)], lock_stale_seconds=1)
    rc, out, err = job.cli("run")
    assert rc == 0, err
    removed = [e for e in out["events"] if e["event"]["action"] == "backup-lock-removed"]
    assert len(removed) == 1
    assert removed[0]["event"]["category"] == ["configuration"] and removed[0]["event"]["type"] == ["deletion"]
    assert removed[0]["citydc"]["backup"]["lock_id"] == lock_files[0].name
    assert not lock_files[0].exists()
    rc, out, err = job.cli("check")
    assert rc == 0, err
    assert job.restic("local", "check").returncode == 0
    assert '"backup-lock-removed"' in job.spool_text()


def corrupt_largest_pack(repo: Path) -> Path:
    packs = [p for p in (repo / "data").rglob("*") if p.is_file()]
    victim = max(packs, key=lambda p: p.stat().st_size)
    blob = bytearray(victim.read_bytes())
    mid = len(blob) // 2
    blob[mid:mid + 64] = bytes(b ^ 0xFF for b in blob[mid:mid + 64])
    victim.chmod(0o600)
    victim.write_bytes(bytes(blob))
    return victim


def test_drill_of_a_corrupted_offsite_pack_fails_loudly(make_job, dataset):
    job = make_job([str(dataset)])
    rc, _, _ = job.cli("run")
    assert rc == 0
    corrupt_largest_pack(job.offsite)
    rc, out, _ = job.cli("drill", "--repo", "offsite")
    assert rc == 1 and out["status"] == "failure"
    drill = step(out, "drill", "offsite")
    assert drill["status"] == "failure" and "restore failed" in drill["error"]
    assert "ciphertext verification failed" in drill["error"]
    assert drill["details"]["failed_files"] >= 1
    end = out["events"][-1]
    assert end["event"]["action"] == "restore-drill" and end["event"]["outcome"] == "failure"
    assert "ciphertext verification failed" in end["error"]["message"]
    assert job.metric("citydc_backup_last_outcome", repo="offsite", step="drill", outcome="failure") == 1
    assert job.metric("citydc_backup_drill_failed_files", repo="offsite") >= 1
    rc, _, err = job.cli("drill", "--repo", "offsite", as_json=False)
    assert rc == 1 and "FAILURE" in err
    # `backup status` (no --json, as a person or a cron mail sees it) names the file and restic's error,
    # at 80 columns (the cron mail) and at 120
    first_file = drill["error"].removeprefix("restore failed: ").split(": ")[0]
    assert first_file.startswith(str(dataset))
    for columns in ("80", "120"):
        proc = subprocess.run([*job.argv("status", "--offline")], env={**job.env(), "COLUMNS": columns},
                              capture_output=True, text=True, timeout=120, check=False)
        person = proc.stdout + proc.stderr
        assert proc.returncode == 1, person
        assert f"{first_file}: ciphertext verification failed" in person, person
        assert "drill failure" in person and "offsite" in person
        assert PASSWORD not in person
    rc, rows, _ = job.cli("status", "--offline")
    assert rc == 1
    offsite = next(r for r in rows if r["repo"] == "offsite")
    assert offsite["last_drill"]["status"] == "failure" and first_file in offsite["reason"]
    # the local repository is untouched and still drills clean
    rc, out, _ = job.cli("drill", "--repo", "local")
    assert rc == 0


def test_drill_of_a_random_sample(make_job, dataset):
    job = make_job([str(dataset)], drill_sample_files=25)
    assert job.cli("run")[0] == 0
    rc, out, err = job.cli("drill", "--repo", "offsite")
    assert rc == 0, err
    d = step(out, "drill", "offsite")["details"]
    assert d["mode"] == "sample" and d["files_expected"] == 25 and d["verified_files"] == 25
    assert d["restic_verified_files"] == 25 and d["files_in_snapshot"] == 302


def test_concurrent_run_check_and_status_on_one_job_keep_every_result(make_job, tmp_path):
    # A cron `run`, an operator's `check` and a `status` scan of the same job at the same time: each
    # result each command reported must be in the state, `status --json` and the metrics afterwards.
    src = tmp_path / "concurrent-src"
    src.mkdir()
    rnd = random.Random(11)
    for i in range(40):
        (src / f"f{i:02}.bin").write_bytes(rnd.randbytes(16 * 1024))
    job = make_job([str(src)])
    rc, first, err = job.cli("run")
    assert rc == 0, err
    first_snapshot = step(first, "backup", "local")["snapshot_id"]
    assert first_snapshot
    (src / "new.bin").write_bytes(rnd.randbytes(256 * 1024))  # the concurrent run has something to add
    before = time.time()
    commands = {"run": ("run",), "check": ("check", "--repo", "local"), "status": ("status",)}
    procs = {name: subprocess.Popen([*job.argv(*args), "--json"], env=job.env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, args in commands.items()}
    outs, rcs = {}, {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert PASSWORD not in stdout + stderr
        assert "state lock" not in stderr, stderr
        outs[name], rcs[name] = json.loads(stdout), proc.returncode
    # Every exit code means what its command reported: 0 when all its steps succeeded, 1 when one failed;
    # and the only failure allowed is restic's own repository lock turning one of them away (a backup and
    # an exclusive check of the same repository), never a citydc error.
    for name in ("run", "check"):
        steps = outs[name]["steps"]
        assert steps and rcs[name] == (0 if all(s["status"] == "success" for s in steps) else 1), (name, rcs, steps)
        for s in steps:
            assert s["status"] == "success" or "locked" in s["error"], (name, s)
    rows = outs["status"]
    # status exits 1 when a row has a reason: a failed scan, backup or copy, or (recorded meanwhile) a
    # check that restic's lock turned away
    assert rcs["status"] == (1 if any(r["reason"] for r in rows) else 0), (rcs, rows)
    assert all(not r["reason"] or "locked" in r["reason"] for r in rows), rows
    assert all(not r["error"] or "locked" in r["error"] for r in rows), rows
    reported = {"local/backup": step(outs["run"], "backup", "local"),
                "offsite/copy": step(outs["run"], "copy", "offsite"),
                "local/check": step(outs["check"], "check", "local")}
    st = json.loads((job.dir / "state" / f"{job.name}.json").read_text())
    for key, res in reported.items():
        entry = st["steps"][key]
        assert entry["last_attempt"] >= before, key
        assert (entry["status"], entry["exit_code"], entry["snapshot_id"]) == (
            res["status"], res["exit_code"], res["snapshot_id"]), key
    check = reported["local/check"]
    assert check["details"]["subset"] == "1/3"
    # restic's exclusive check lock may turn the other one away; whichever ran clean left its mark
    assert st["check_cycle"]["local"]["read"] == ([1] if check["status"] == "success" else [])
    backup = reported["local/backup"]
    if backup["status"] == "success":
        assert st["repos"]["local"]["latest_snapshot_bytes"] == backup["details"]["bytes_processed"] > 256 * 1024
        assert st["repos"]["local"]["latest_snapshot_id"] == backup["snapshot_id"]
    else:  # turned away by the check's lock: the first run's snapshot is still the latest one recorded
        assert st["repos"]["local"]["latest_snapshot_id"] == first_snapshot and not backup["snapshot_id"]
    # the metrics file was rendered last by whichever command finished last, from the full state
    for key in reported:
        repo, name = key.split("/")
        assert job.metric("citydc_backup_last_attempt_timestamp_seconds", repo=repo, step=name) >= before, key

    rc, rows, _ = job.cli("status", "--offline")
    local = next(r for r in rows if r["repo"] == "local")
    offsite = next(r for r in rows if r["repo"] == "offsite")
    assert (local["status"], local["last_attempt"]) == (backup["status"], st["steps"]["local/backup"]["last_attempt"])
    assert offsite["status"] == reported["offsite/copy"]["status"]
    # the live status scan's figures were merged in as well, never a stale copy over the others; a scan
    # turned away by a restic lock (asserted above) recorded no size of its own
    scanned = not any(r["error"] for r in outs["status"])
    assert (local["size_bytes"] > 0 and local["size_time"] >= before) if scanned else (local["size_time"] or 0) < before
    print({name: [s["status"] for s in out["steps"]] if "steps" in out else [r["error"] for r in out]
           for name, out in outs.items()})

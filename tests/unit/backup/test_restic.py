"""restic argv builders and parsers, the parsers run on output recorded from the real restic 0.14 (fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citydc.backup import restic
from citydc.backup.restic import BackupSummary, ReadError, RepoAccess, Status
from citydc.config.models import Repository, Retention
from citydc.execute import Outcome
from citydc.secrets import SecretRef

FIXTURES = Path(__file__).parent / "fixtures"
LOCAL = RepoAccess("/srv/restic/siwei", (), {"RESTIC_PASSWORD": "pw"}, ("pw",))
SFTP = RepoAccess("sftp:citydc@127.0.0.1:/r", ("sftp.command=ssh -F /lab/ssh_config citydc@127.0.0.1 -s sftp",),
                  {"RESTIC_PASSWORD_FILE": "/etc/citydc/pw"}, ("pw2",))


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_fixtures_come_from_restic_0_14():
    assert restic.parse_version(fixture("backup_first")["version"]) == (0, 14, 0)


# -- argv ------------------------------------------------------------------------------------------

def test_backup_argv():
    argv = restic.backup_argv("restic", LOCAL, [Path("/data/a"), "/data/b"], excludes=["*.tmp"],
                              tags=["ldap", "citydc.job=x"], host="h1")
    assert argv == ("restic", "-r", "/srv/restic/siwei", "--json", "backup", "--exclude", "*.tmp",
                    "--tag", "ldap", "--tag", "citydc.job=x", "--host", "h1", "/data/a", "/data/b")


def test_copy_argv_keeps_source_password_out_of_argv():
    argv = restic.copy_argv("restic", SFTP, LOCAL, tags=["citydc.job=x"], limit_upload_kib=512)
    assert argv == ("restic", "-r", "sftp:citydc@127.0.0.1:/r", "-o",
                    "sftp.command=ssh -F /lab/ssh_config citydc@127.0.0.1 -s sftp", "--limit-upload", "512",
                    "copy", "--from-repo", "/srv/restic/siwei", "--tag", "citydc.job=x")
    assert LOCAL.from_env() == {"RESTIC_FROM_PASSWORD": "pw"}
    assert SFTP.from_env() == {"RESTIC_FROM_PASSWORD_FILE": "/etc/citydc/pw"}


def test_init_argv_copies_chunker_params_for_offsite():
    assert restic.init_argv("restic", SFTP, LOCAL)[-4:] == ("init", "--copy-chunker-params", "--from-repo",
                                                            "/srv/restic/siwei")
    assert restic.init_argv("restic", LOCAL) == ("restic", "-r", "/srv/restic/siwei", "init")


def test_check_argv_subset_and_bounds():
    assert restic.check_argv("restic", LOCAL, (3, 30)) == ("restic", "-r", "/srv/restic/siwei", "check",
                                                           "--read-data-subset=3/30")
    with pytest.raises(ValueError, match="1 <= n <= N"):
        restic.check_argv("restic", LOCAL, (31, 30))


def test_forget_restore_and_lock_argv():
    assert restic.forget_argv("restic", LOCAL, Retention(keep_daily=1, keep_weekly=2, keep_monthly=3),
                              tags=["citydc.job=x"]) == (
        "restic", "-r", "/srv/restic/siwei", "--json", "forget", "--group-by", "host,tags", "--keep-daily", "1",
        "--keep-weekly", "2", "--keep-monthly", "3", "--tag", "citydc.job=x", "--prune")
    assert restic.restore_argv("restic", LOCAL, "abc", Path("/s"), ["/d/f"]) == (
        "restic", "-r", "/srv/restic/siwei", "restore", "abc", "--target", "/s", "--verify", "--include", "/d/f")
    assert restic.cat_lock_argv("restic", LOCAL, "ff") == ("restic", "-r", "/srv/restic/siwei", "--no-lock",
                                                           "cat", "lock", "ff")


def test_sftp_command_from_url_and_ssh_config():
    assert restic.sftp_command("sftp:citydc@127.0.0.1:/srv/r", Path("/lab/ssh config")) == (
        "ssh -F '/lab/ssh config' citydc@127.0.0.1 -s sftp")
    assert restic.sftp_command("sftp://u@host:2222//srv/r", Path("/c")) == "ssh -F /c -p 2222 u@host -s sftp"
    with pytest.raises(ValueError, match="only for sftp"):
        restic.sftp_command("/local/path", Path("/c"))


def test_repo_access_password_by_env_or_file(tmp_path):
    env_repo = Repository(url="/r", password=SecretRef.parse("env:RPW"), site="siwei")
    acc = restic.repo_access(env_repo, {"RPW": "s3cret"})
    assert acc.env == {"RESTIC_PASSWORD": "s3cret"} and acc.secrets == ("s3cret",)
    assert "s3cret" not in repr(acc)
    pw = tmp_path / "pw"
    pw.write_text("filepw\n")
    file_repo = Repository(url="sftp:u@h:/r", password=SecretRef.parse(f"file:{pw}"), site="siwei",
                           ssh_config=tmp_path / "cfg")
    acc = restic.repo_access(file_repo, {})
    assert acc.env == {"RESTIC_PASSWORD_FILE": str(pw)}
    assert acc.options == (f"sftp.command=ssh -F {tmp_path / 'cfg'} u@h -s sftp",)
    assert all("filepw" not in a for a in restic.backup_argv("restic", acc, ["/x"]))


def test_password_file_wins_over_inherited_env():
    env = restic.Restic(cache_dir=Path("/c"))._env(SFTP)
    assert env == {"RESTIC_PASSWORD_FILE": "/etc/citydc/pw", "RESTIC_PASSWORD": "", "RESTIC_CACHE_DIR": "/c"}


# -- parsers on recorded output ---------------------------------------------------------------------

def parse_backup_fixture(name: str):
    fx = fixture(name)
    parsed = [restic.parse_backup_line(line) for line in fx["stdout"].splitlines()]
    summary = next(p for p in parsed if isinstance(p, BackupSummary))
    errors, missing, _ = restic.parse_backup_stderr(fx["stderr"])
    return fx, parsed, summary, restic.judge_backup(fx["rc"], summary, errors, missing, fx["stderr"])


def test_backup_first_is_success_with_summary():
    _, parsed, summary, judged = parse_backup_fixture("backup_first")
    assert judged.outcome is Outcome.SUCCESS
    assert summary.files_new == 301 and summary.data_added > 24 * 1024 * 1024
    assert any(isinstance(p, Status) for p in parsed)
    assert summary.snapshot_id in fixture("snapshots")["stdout"]


def test_backup_second_adds_little():
    _, _, first, _ = parse_backup_fixture("backup_first")
    _, _, second, judged = parse_backup_fixture("backup_second")
    assert judged.outcome is Outcome.SUCCESS
    assert second.files_changed == 1 and second.data_added < first.data_added / 100


def test_missing_source_is_failure_although_restic_exits_0():
    fx, _, _, judged = parse_backup_fixture("backup_missing_source")
    assert fx["rc"] == 0
    assert judged.outcome is Outcome.FAILURE
    assert judged.missing_sources == ("/work/does-not-exist",)
    assert "/work/does-not-exist" in judged.error


def test_unreadable_file_is_partial_with_the_file_named():
    fx, _, summary, judged = parse_backup_fixture("backup_unreadable")
    assert fx["rc"] == 3
    assert judged.outcome is Outcome.PARTIAL and summary.snapshot_id
    assert judged.read_errors == (ReadError("/proc/sys/vm/compact_memory", "open", 13, "archival"),)


@pytest.mark.parametrize(("rc", "summary", "expected"), [
    (0, None, Outcome.FAILURE),  # no summary: nothing proves a snapshot
    (3, None, Outcome.FAILURE),
    (42, BackupSummary("abc"), Outcome.FAILURE),  # unknown exit code
    (12, None, Outcome.FAILURE),
    (None, BackupSummary("abc"), Outcome.FAILURE),
    (0, BackupSummary("abc"), Outcome.SUCCESS),
])
def test_judge_backup_table(rc, summary, expected):
    assert restic.judge_backup(rc, summary, [], [], "").outcome is expected


def test_backup_line_ignores_unknown_keys_and_types_and_rejects_garbage():
    line = '{"message_type":"summary","snapshot_id":"ab","data_added":5,"data_added_packed":3,"backup_end":"x"}'
    assert restic.parse_backup_line(line) == BackupSummary("ab", data_added=5)
    assert restic.parse_backup_line('{"message_type":"verbose_status","action":"new"}') is None
    with pytest.raises(restic.ResticError, match="expected a JSON line"):
        restic.parse_backup_line("Warning: something")
    with pytest.raises(restic.ResticError, match="without snapshot_id"):
        restic.parse_backup_line('{"message_type":"summary"}')


def test_failures_are_classified():
    assert restic.classify_failure(fixture("wrong_password")["stderr"]) == "wrong password"
    assert restic.classify_failure(fixture("no_repo")["stderr"]) == "no repository"
    assert restic.classify_failure(fixture("copy_unreachable")["stderr"]) == "repository unreachable"
    assert restic.classify_failure(fixture("check_locked")["stderr"]) == "repository locked"


def test_snapshots_stats_forget():
    snaps = restic.parse_snapshots(fixture("snapshots")["stdout"])
    assert len(snaps) == 4 and all(len(s.id) == 64 for s in snaps)
    assert ("t1",) in {s.tags for s in snaps}
    stats = restic.parse_stats(fixture("stats_raw")["stdout"])
    assert stats["snapshots_count"] == 4 and stats["total_size"] > 0
    kept, removed = restic.parse_forget(fixture("forget_prune")["stdout"])
    assert (kept, removed) == (4, 0)  # grouped by host and paths: every group keeps its last 2


def test_copy_text():
    copied, skipped = restic.parse_copy(fixture("copy")["stdout"])
    assert len(copied) == 4 and skipped == []
    copied, skipped = restic.parse_copy(fixture("copy_again")["stdout"])
    assert copied == [] and len(skipped) == 4
    copied, _ = restic.parse_copy(fixture("copy_sftp")["stdout"])
    assert len(copied) == 4


def test_init_text():
    repo_id = restic.parse_init(fixture("init_sftp")["stdout"])
    assert len(repo_id) == 10 and f"created restic repository {repo_id} at sftp:" in fixture("init_sftp")["stdout"]
    with pytest.raises(restic.ResticError, match="created restic repository"):
        restic.parse_init("")


def test_check_text():
    ok = fixture("check_ok")
    report = restic.parse_check(ok["stdout"], ok["stderr"], ok["rc"])
    assert report.clean and 1 <= report.packs_read < report.packs_total
    assert f"{report.packs_read} data packs (out of total {report.packs_total} packs in 3 groups)" in ok["stdout"]
    bad = fixture("check_corrupt")
    report = restic.parse_check(bad["stdout"], bad["stderr"], bad["rc"])
    assert not report.clean
    assert any("Pack ID does not match" in e for e in report.errors)
    # exit 0 without the "no errors" line is not clean either
    assert not restic.parse_check("check snapshots", "", 0).clean


def test_restore_text():
    bad = fixture("restore_corrupt")
    report = restic.parse_restore(bad["stdout"], bad["stderr"])
    assert bad["rc"] == 1 and any("ciphertext verification failed" in e for e in report.errors)
    assert restic.parse_restore("finished verifying 2 files in r3 (took 21ms)\n", "").verified_files == 2


def test_ls_and_lock():
    nodes = restic.parse_ls(fixture("ls_json")["stdout"])
    files = [n for n in nodes if n.type == "file"]
    assert len(files) == 301 and max(n.size for n in files) == 24 * 1024 * 1024
    fx = fixture("cat_lock")
    lock = restic.parse_lock("e3", fx["stdout"])
    assert lock.pid > 0 and lock.hostname and not lock.exclusive
    with pytest.raises(restic.ResticError, match="time, hostname, pid"):
        restic.parse_lock("e3", '{"time": "x"}')


def test_version_gate():
    assert restic.parse_version("restic 0.17.3 compiled with go1.23") == (0, 17, 3)
    with pytest.raises(restic.ResticError, match=r"expected 'restic X\.Y\.Z'"):
        restic.parse_version("rustic 1")

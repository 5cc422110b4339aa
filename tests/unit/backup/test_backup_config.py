"""Backup job settings refused at load: an off-site repository that is the local one written again, and a
retention policy that keeps nothing; and prune records no snapshot count from a forget that applied no policy."""

from __future__ import annotations

import pytest

from citydc.backup import state
from citydc.config import ConfigInvalid, load_text
from citydc.config.models import Retention

CONFIG = """\
sites:
  - {{id: siwei, name: Siwei}}
  - {{id: fengshan, name: Fengshan}}
backup:
  jobs:
    - name: s1
      site: siwei
      sources: [data]
      local_repo: {{url: '{local}', password: 'env:PW', site: siwei}}
      offsite_repo: {{url: '{offsite}', password: 'env:PW', site: fengshan}}
      retention: {retention}
"""
KEEP = "{keep_daily: 7}"


def errors_of(tmp_path, local: str, offsite: str, retention: str = KEEP) -> dict[str, str]:
    try:
        load_text(CONFIG.format(local=local, offsite=offsite, retention=retention), base_dir=tmp_path)
    except ConfigInvalid as exc:
        return {e.path: e.message for e in exc.errors}
    return {}


@pytest.mark.parametrize(("local", "offsite"), [
    ("repos/locals", "./repos/../repos/locals"),
    ("repos/locals", "local:repos/locals/"),
    ("/srv/restic/a", "/srv/restic//a"),
    ("sftp:u@h:/srv/r", "sftp:u@h:/srv/r/"),
])
def test_an_offsite_repository_that_is_the_local_one_is_a_config_error_naming_job_and_field(tmp_path, local,
                                                                                             offsite):
    errors = errors_of(tmp_path, local, offsite)
    # The URL is not repeated: a REST URL may hold a password (test_config_load_findings masks it).
    assert errors == {"backup.jobs[0].offsite_repo.url": 'job "s1": the same repository as local_repo.url; '
                                                         "expected a repository on the other site"}


def test_different_repositories_are_fine(tmp_path):
    assert errors_of(tmp_path, "repos/local", "repos/off") == {}
    assert errors_of(tmp_path, "sftp:u@h:/srv/r", "sftp:u@other:/srv/r") == {}


def test_a_retention_keeping_nothing_is_a_config_error(tmp_path):
    errors = errors_of(tmp_path, "repos/local", "repos/off", "{keep_daily: 0, keep_weekly: 0, keep_monthly: 0}")
    assert errors == {"backup.jobs[0].retention": "keep_daily, keep_weekly and keep_monthly are all 0, which is no "
                                                  "policy (restic would keep every snapshot); set at least one of "
                                                  "them to 1 or more"}
    assert errors_of(tmp_path, "repos/local", "repos/off", "{keep_daily: 0, keep_weekly: 0, keep_monthly: 1}") == {}


def test_prune_with_no_policy_applied_records_no_snapshot_count(restic_job):
    job = restic_job(init=True)
    (job.src / "a.txt").write_text("a\n")
    job.settings["offsite_repo"] = None
    assert job.runner().run()[0].ok
    runner = job.runner()
    # A job built past the config's check (the loader refuses it): restic applies no policy and lists nothing.
    runner.job = runner.job.model_copy(update={"retention": Retention.model_construct(
        keep_daily=0, keep_weekly=0, keep_monthly=0)})
    (result,) = runner.prune()
    assert result.ok and "snapshots" not in result.details
    assert "snapshots" not in state.load(job.root / "state", "j1")["repos"]["local"]  # no "0 snapshots" recorded

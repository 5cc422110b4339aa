"""A REST repository URL with a password in it (restic 0.14's only way to a REST server's basic auth) goes to
restic in the environment, never in argv; restic itself is shown to take the repository and copy's source that
way (two local repositories, handed over as a password-holding URL would be)."""

from __future__ import annotations

import dataclasses

from citydc.backup import restic
from citydc.backup.restic import Restic
from citydc.config.models import Repository
from citydc.secrets import SecretRef

URL = "rest:https://citydc:Rest-pw-8Kq2@backup.fengshan.example:8000/siwei"


def test_a_rest_url_password_is_a_secret_and_the_url_leaves_argv():
    repo = Repository(url=URL, password=SecretRef.parse("env:RPW"), site="fengshan")
    access = restic.repo_access(repo, {"RPW": "repo-pw"})
    assert access.url_in_env and access.env["RESTIC_REPOSITORY"] == URL
    assert "Rest-pw-8Kq2" in access.secrets  # execute refuses it anywhere in argv
    source = restic.repo_access(Repository(url=URL.replace("/siwei", "/src"), password=SecretRef.parse("env:RPW"),
                                           site="siwei"), {"RPW": "repo-pw"})
    for argv in (restic.snapshots_argv("restic", access), restic.copy_argv("restic", access, source),
                 restic.init_argv("restic", access, source)):
        assert not any("Rest-pw-8Kq2" in a for a in argv), argv
        assert "-r" not in argv and "--from-repo" not in argv
    assert source.from_env()["RESTIC_FROM_REPOSITORY"] == URL.replace("/siwei", "/src")
    plain = restic.repo_access(Repository(url="rest:https://backup.example:8000/siwei",
                                          password=SecretRef.parse("env:RPW"), site="fengshan"), {"RPW": "repo-pw"})
    assert not plain.url_in_env and restic.base_argv("restic", plain)[1:3] == ("-r", plain.url)


def test_restic_takes_repository_and_copy_source_from_the_environment(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("data\n")
    runner = Restic(binary="restic", cache_dir=tmp_path / "cache")

    def in_env(name: str) -> restic.RepoAccess:  # a local repository handed over as a URL with a password would be
        url = str(tmp_path / name)
        return dataclasses.replace(restic.RepoAccess(url, (), {"RESTIC_PASSWORD": f"pw-{name}"}, (f"pw-{name}",),
                                                     name), env={"RESTIC_PASSWORD": f"pw-{name}",
                                                                 "RESTIC_REPOSITORY": url}, url_in_env=True)

    local, offsite = in_env("local"), in_env("offsite")
    assert runner.run(restic.init_argv("restic", local), local).ok
    assert runner.run(restic.init_argv("restic", offsite, local), offsite, source=local).ok
    assert runner.backup(restic.backup_argv("restic", local, [tmp_path / "src"]), local).outcome == "success"
    copied = runner.run(restic.copy_argv("restic", offsite, local), offsite, source=local)
    assert copied.ok, copied.stderr
    listed = runner.run(restic.snapshots_argv("restic", offsite), offsite)
    assert listed.ok and '"paths"' in listed.stdout and str(tmp_path / "src") in listed.stdout


def test_config_show_masks_the_password_of_a_rest_url(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
        "backup": {"jobs": [{"name": "j1", "site": "siwei", "sources": ["/srv/data"],
                             "local_repo": {"url": "/srv/restic/j1", "password": "env:A", "site": "siwei"},
                             "offsite_repo": {"url": URL, "password": "env:B", "site": "fengshan"}}]}}))
    proc = subprocess.run([str(Path(sys.executable).with_name("citydc")), "config", "show", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Rest-pw-8Kq2" not in proc.stdout
    assert "rest:https://citydc:***@backup.fengshan.example:8000/siwei" in proc.stdout

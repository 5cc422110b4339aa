"""A backup job on real restic with local repositories in tmp_path, driven through JobRunner (no CLI start)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from citydc.backup import restic
from citydc.backup.jobs import JobRunner
from citydc.config.models import BackupJob

PASSWORD = "Unit-pw-7Qx2-restic"


@dataclass
class ResticJob:
    """A job ``j1`` backing up ``root/src`` to ``root/local`` (and ``root/offsite`` unless left out)."""

    root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.src = self.root / "src"
        self.src.mkdir(exist_ok=True)
        pw = self.root / "pw"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)

    def repo(self, name: str, url: str | None = None) -> dict[str, Any]:
        site = "siwei" if name == "local" else "fengshan"
        return {"url": url or str(self.root / name), "password": f"file:{self.root / 'pw'}", "site": site}

    @property
    def job(self) -> BackupJob:
        return BackupJob.model_validate({"name": "j1", "site": "siwei", "sources": [str(self.src)],
                                         "local_repo": self.repo("local"), "offsite_repo": self.repo("offsite"),
                                         **self.settings})

    def runner(self, **kwargs: Any) -> JobRunner:
        return JobRunner(self.job, restic.Restic(cache_dir=self.root / "cache"), self.root / "state",
                         emit=lambda _events: None, **kwargs)

    def restic(self, repo: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run restic on ``root/<repo>`` directly (set-up and inspection)."""
        return subprocess.run(["restic", "-r", str(self.root / repo), *args], capture_output=True, text=True,
                              timeout=120, check=True, env={**os.environ, "RESTIC_PASSWORD": PASSWORD,
                                                            "RESTIC_CACHE_DIR": str(self.root / "cache"),
                                                            **(env or {})})


@pytest.fixture
def restic_job(tmp_path: Path) -> Callable[..., ResticJob]:
    """Return a factory of ResticJob (job settings as keyword arguments); ``init`` creates its repositories."""
    if shutil.which("restic") is None:  # `make setup` installs it (lab/apt-packages.txt): fail, never skip
        pytest.fail("needs the restic binary: run `make setup`")

    def make(init: bool = True, **settings: Any) -> ResticJob:
        job = ResticJob(tmp_path, settings)
        if init:
            assert all(r.ok for r in job.runner().init())
        return job

    return make

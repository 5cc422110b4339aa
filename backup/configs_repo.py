"""The git repository of device configs and the known_hosts file the runs maintain.

Git runs through ``citydc.execute`` (the one place that starts processes), with the repository's
own identity (``-c user.name=citydc``) so nothing depends on a global git config. One file per
device: ``<site>/<device>.cfg``; one commit per changed device.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from citydc import atomicfile, execute

__all__ = ["ConfigRepo", "GitFailed", "KnownHosts"]

_IDENTITY = ("-c", "user.name=citydc", "-c", "user.email=citydc@localhost", "-c", "commit.gpgsign=false")
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitFailed(RuntimeError):
    """A git command failed; the message is git's own first line."""


class ConfigRepo:
    """Given the repository directory, run the few git commands the backup needs."""

    def __init__(self, path: Path, *, private: bool = False, git: str = "git"):
        self.path = path
        self.private = private
        self.git = git

    def _run(self, *args: str, check: bool = True, input_text: str | None = None) -> execute.Result:
        res = execute.run("git", (self.git, *_IDENTITY, "-C", str(self.path), *args), env=_ENV, timeout=120,
                          input_text=input_text)
        if check and not res.ok:
            first = (res.stderr.strip() or res.stdout.strip() or f"exit code {res.rc}").splitlines()[0]
            raise GitFailed(f"git {args[0]}: {first}")
        return res

    def ensure(self) -> None:
        """Create the repository if missing; with ``private``, enforce mode 0700 on its directory."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.private:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode != 0o700:
                os.chmod(self.path, 0o700)
        if not (self.path / ".git").exists():
            self._run("init", "-q", "-b", "main")

    def file_for(self, site: str, device: str) -> str:
        return f"{site}/{device}.cfg"

    def read(self, relpath: str) -> str | None:
        """Return the working copy of a device file (the last stored config), or None."""
        try:
            return (self.path / relpath).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def commit_file(self, relpath: str, text: str, message: str) -> str:
        """Write one device file and commit it alone; return the commit id."""
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        atomicfile.write(target, text, mode=0o600 if self.private else 0o640)
        self._run("add", "--", relpath)
        self._run("commit", "-q", "--no-verify", "-F", "-", "--", relpath, input_text=message)
        return self._run("rev-parse", "HEAD").stdout.strip()

    def show(self, rev: str, relpath: str) -> str | None:
        """Return the file at a revision (commit, tag), or None if it is not there."""
        res = self._run("show", f"{rev}:{relpath}", check=False)
        return res.stdout if res.ok else None

    def log(self, relpath: str, limit: int = 2) -> list[str]:
        """Return the last commits touching a file, newest first."""
        res = self._run("log", f"-n{limit}", "--format=%H", "--", relpath, check=False)
        return res.stdout.split() if res.ok else []

    def head(self) -> str | None:
        res = self._run("rev-parse", "-q", "--verify", "HEAD", check=False)
        return res.stdout.strip() or None


class KnownHosts:
    """Host keys pinned by the runs: OpenSSH known_hosts lines ``name type base64`` (mode 0600)."""

    def __init__(self, path: Path):
        self.path = path
        self.keys: dict[str, list[tuple[str, str]]] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                for name in parts[0].split(","):
                    self.keys.setdefault(name, []).append((parts[1], parts[2]))

    def get(self, name: str) -> list[tuple[str, str]]:
        return list(self.keys.get(name, []))

    def pin(self, entries: Iterable[tuple[str, tuple[str, str]]]) -> int:
        """Add newly seen keys (name, (type, base64)) and rewrite the file; return how many were new."""
        new = 0
        for name, key in entries:
            if key not in self.keys.get(name, []):
                self.keys.setdefault(name, []).append(key)
                new += 1
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines = [f"{name} {t} {b}" for name in sorted(self.keys) for t, b in self.keys[name]]
            atomicfile.write(self.path, "\n".join(lines) + "\n", mode=0o600)
        return new

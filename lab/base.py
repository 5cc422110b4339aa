"""The lab's service framework: what a service is, where it keeps its state, how it installs.

Each service installs what it lacks (Debian packages, PyPI, the Java package repository),
starts its real program on 127.0.0.1 with its own data directory and port, waits until the
program answers, and records the PIDs it started so that ``down`` stops exactly those.

It also records who started it (``owner.json``: the checkout's path and a digest of the service's
code, which writes its config). A service running under another owner (another checkout, or an
older version of this code) is restarted rather than reused, and a program answering on a
service's endpoint without this lab's records (another checkout's lab under another
CITYDC_LAB_DIR) is an error naming it, never silently taken for this lab's.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citydc import execute
from citydc.lab import processes
from citydc.lab.processes import ProcessRecord

__all__ = ["LabContext", "LabError", "Service", "apt_install", "wait_until"]

DEFAULT_LAB_DIR = Path(os.environ.get("CITYDC_LAB_DIR", "/tmp/citydc-lab"))
# Downloads are cached outside the repository. As root the cache is system-wide, because the
# unprivileged lab user must be able to read it (root's home is not traversable).
DEFAULT_CACHE_DIR = Path(os.environ.get(
    "CITYDC_CACHE_DIR", "/var/cache/citydc" if os.geteuid() == 0 else Path.home() / ".cache" / "citydc"))


class LabError(RuntimeError):
    """A lab service could not be installed or started; the message says what to do."""


@dataclass
class LabContext:
    root: Path = DEFAULT_LAB_DIR
    cache: Path = DEFAULT_CACHE_DIR
    log: Callable[[str], None] = field(default=lambda msg: None)
    # A context that only looks (``citydc lab status``): its service directories are named, never made, so
    # asking about the lab leaves no trace; a service never started simply has no records there.
    read_only: bool = False

    def service_dir(self, name: str) -> Path:
        path = self.root / name
        if not self.read_only:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def cache_dir(self, name: str) -> Path:
        """Given a download's name, return its directory in the cache, made if absent, with it and the cache's
        root open to everyone (r-x): the lab's unprivileged user runs programs from the cache (Elasticsearch),
        and a directory made under citydc's umask (077, ``citydc lab up``) would be root's alone, so a later
        service could not start (EACCES). A root left that way by an earlier version is opened here too.

        Raise LabError if a directory is not open and cannot be opened (another user's)."""
        path = self.cache / name
        path.mkdir(parents=True, exist_ok=True)
        for d in (self.cache, path):
            mode = d.stat().st_mode & 0o7777
            if mode & 0o555 != 0o555:
                try:
                    d.chmod(mode | 0o555)
                except OSError as exc:
                    raise LabError(f"cache directory {d} is not readable by the lab's unprivileged user and "
                                   f"cannot be opened ({exc.strerror}): make it mode 0755, or set "
                                   "CITYDC_CACHE_DIR to a directory of your own") from None
        return path


class Service:
    """A real program the lab runs. Subclasses set ``name`` and implement the four steps."""

    name: str = ""
    description: str = ""

    def install(self, ctx: LabContext) -> None:
        """Make sure the program is present; install it if it is not."""

    def start(self, ctx: LabContext) -> subprocess.Popen:
        raise NotImplementedError

    def ready(self, ctx: LabContext) -> bool:
        raise NotImplementedError

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {}

    ready_timeout: float = 60.0
    # Whether the started process's children are part of the service (the Elasticsearch launcher's JVM)
    # or short-lived per-connection workers (sshd's), which would make a healthy service look stopped
    # once a readiness probe's child exits after being recorded.
    record_children: bool = True

    # -- state kept by the framework ---------------------------------------------------------

    def pid_file(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "pids.json"

    def records(self, ctx: LabContext) -> list[ProcessRecord]:
        return processes.load(self.pid_file(ctx))

    def running(self, ctx: LabContext) -> bool:
        recs = self.records(ctx)
        return bool(recs) and all(processes.alive(r) for r in recs)

    def owner_file(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "owner.json"

    def fingerprint(self) -> dict[str, str]:
        """Return who this code is: the checkout it runs from and a digest of the service's code (its class's
        module, which also writes the service's config, and the lab framework)."""
        files = sorted({inspect.getsourcefile(type(self)) or "", __file__, processes.__file__} - {""})
        digest = hashlib.sha256()
        for name in files:
            digest.update(Path(name).read_bytes())
        return {"service": self.name, "checkout": str(Path(__file__).resolve().parent.parent),
                "code": digest.hexdigest()[:16]}

    def owner(self, ctx: LabContext) -> dict | None:
        """Return the owner record of the running service ({} if unreadable, None if absent)."""
        try:
            return json.loads(self.owner_file(ctx).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def answers(self, ctx: LabContext) -> bool:
        """Return True if something answers as this service would (``ready``), whoever started it."""
        try:
            return bool(self.ready(ctx))
        except Exception:  # not answering, or not even set up here
            return False

    def up(self, ctx: LabContext) -> None:
        """Install, start, wait until ready, record PIDs and owner. Idempotent when already running and
        started by this very code; restarted when another checkout or version started it.

        Raise LabError if it cannot start, or if something this lab did not start answers in its place.
        """
        if self.running(ctx):
            recorded, mine = self.owner(ctx), self.fingerprint()
            if recorded == mine and self.ready(ctx):
                return
            if recorded != mine:
                ctx.log(f"{self.name}: running, but started by {recorded or 'an unrecorded lab'}; "
                        f"restarting it with {mine['checkout']} (code {mine['code']})")
        self.down(ctx)
        if self.answers(ctx):
            endpoints = ", ".join(f"{k} {v}" for k, v in self.endpoints(ctx).items()) or "its port"
            raise LabError(f"{self.name}: something already answers at {endpoints}, but this lab ({ctx.root}) "
                           "did not start it: another checkout's lab, or one with another CITYDC_LAB_DIR. Stop it "
                           "there (`CITYDC_LAB_DIR=... citydc lab down`), then try again")
        try:
            self.install(ctx)
            proc = self.start(ctx)
        except OSError as exc:
            raise LabError(f"{self.name} could not be started: {exc}") from None
        recs = [processes.record(proc.pid, self.name)]
        processes.save(self.pid_file(ctx), recs)
        try:
            wait_until(lambda: self._ready_or_dead(ctx, proc), self.ready_timeout,
                       f"{self.name} did not become ready")
        except LabError:
            processes.stop(recs)
            raise LabError(f"{self.name} did not become ready within {self.ready_timeout:.0f} s; "
                           f"see {self.log_path(ctx)}") from None
        # Record the children too (e.g. the Elasticsearch launcher's server JVM).
        if self.record_children:
            recs += processes.record_living(processes.descendants(proc.pid), self.name)
        processes.save(self.pid_file(ctx), recs)
        self.owner_file(ctx).write_text(json.dumps(self.fingerprint(), sort_keys=True))

    def _ready_or_dead(self, ctx: LabContext, proc: subprocess.Popen) -> bool:
        if proc.poll() is not None:
            raise LabError(f"{self.name} exited with code {proc.returncode} while starting; "
                           f"see {self.log_path(ctx)}")
        return self.ready(ctx)

    def down(self, ctx: LabContext) -> int:
        """Stop the recorded processes; return how many were running."""
        recs = self.records(ctx)
        stopped = processes.stop(list(reversed(recs)))
        self.pid_file(ctx).unlink(missing_ok=True)
        self.owner_file(ctx).unlink(missing_ok=True)
        return len(stopped)

    def log_path(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / f"{self.name}.log"


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except LabError:
            raise
        except Exception:  # noqa: S110 - a service that is still starting may refuse or reset
            pass
        time.sleep(interval)
    raise LabError(f"{what} within {timeout:.0f} s")


_apt_updated = False


def apt_install(packages: list[str], ctx: LabContext, *, no_recommends: bool = True) -> None:
    """Install Debian packages (updating the package lists once per process)."""
    global _apt_updated
    if shutil.which("apt-get") is None:
        raise LabError(f"missing {', '.join(packages)} and apt-get is not available; install them by hand")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    ctx.log(f"apt-get install {' '.join(packages)}")
    if not _apt_updated:
        execute.run("apt-get", ["apt-get", "update", "-qq"], env=env, timeout=600)
        _apt_updated = True
    argv = ["apt-get", "install", "-y", "-qq"] + (["--no-install-recommends"] if no_recommends else []) + packages
    res = execute.run("apt-get", argv, env=env, timeout=1800)
    if not res.ok:
        raise LabError(f"apt-get install {' '.join(packages)} failed: {res.stderr.strip()[-500:]}")


def need_binaries(binaries: dict[str, str], ctx: LabContext) -> None:
    """Given {binary: debian package}, install the packages of the binaries not on PATH."""
    missing = sorted({pkg for binary, pkg in binaries.items()
                      if shutil.which(binary) is None and not Path(binary).exists()})
    if missing:
        apt_install(missing, ctx)


def install_maven_zip(ctx: LabContext, cache_name: str, artifact: str, zip_name: str, installed: Path) -> None:
    """Given a cache directory's name, a Maven ``group:artifact:version:zip``, the zip's file name and a file
    the unpacked archive holds, unpack the archive into the cache unless that file is there; the zip is
    fetched with ``mvn dependency:copy`` (installed from Debian if needed) only when it is not cached."""
    dest = ctx.cache_dir(cache_name)  # first: it also opens a cache an earlier run left root-only
    if installed.exists():
        return
    zip_path = dest / zip_name
    if not zip_path.exists():
        need_binaries({"mvn": "maven"}, ctx)
        ctx.log(f"fetching {artifact} with mvn")
        res = execute.run("mvn", ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
                                  f"-DoutputDirectory={dest}"], timeout=1200)
        if not res.ok or not zip_path.exists():
            raise LabError(f"mvn could not fetch {artifact}: {(res.stdout + res.stderr)[-800:]}")
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            zf.extract(info, dest)
            # zipfile does not restore modes; the archive keeps them in external_attr. Everything stays
            # readable: the lab's unprivileged user runs it.
            mode = (info.external_attr >> 16) & 0o777
            (dest / info.filename).chmod((mode or (0o755 if info.is_dir() else 0o644)) | 0o444)

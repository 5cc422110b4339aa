"""restic: argv builders (pure), output parsers (pure) and the one wrapper that runs it through citydc.execute.

Handles restic 0.14.0 (Debian 12) and newer. In 0.14 only backup, snapshots, diff, forget (first
line), stats, ls and version print JSON; init, copy, check, restore, prune and unlock print text,
so those are parsed from text and their exit code is the signal. Unknown JSON keys are ignored.
Passwords reach restic through its environment (RESTIC_PASSWORD / RESTIC_PASSWORD_FILE and the
RESTIC_FROM_* pair for copy), never argv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from citydc import execute
from citydc.config.models import JOB_TAG_PREFIX, Repository, Retention
from citydc.execute import Outcome
from citydc.secrets import SecretUnavailable

__all__ = [
    "MIN_VERSION",
    "OPEN_FAILURES",
    "BackupOutcome",
    "BackupSummary",
    "PasswordInArgv",
    "ReadError",
    "RepoAccess",
    "Restic",
    "ResticError",
    "Snapshot",
    "Status",
    "open_failure",
    "parse_version",
]

MIN_VERSION = (0, 14, 0)
TOOL = "restic"


class ResticError(RuntimeError):
    """restic output that breaks the format this module expects; names the command and the line."""


class PasswordInArgv(ValueError):
    """restic was not started: a repository's password would have appeared in its argv. Names the
    repository (local or offsite) and how the value occurs, never the value."""


# -- repository access ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoAccess:
    """How to reach one repository: its URL, ``-o`` options and the environment holding its password."""

    url: str
    options: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    name: str = ""  # "local" or "offsite": which repository a message is about
    # The URL holds a password (rest:https://user:password@host/): it goes to restic in the environment
    # (RESTIC_REPOSITORY / RESTIC_FROM_REPOSITORY), never in argv, where every user of the host could read it.
    url_in_env: bool = False
    # Environment variables named by the job's ``env:`` password references: restic gets the password as
    # RESTIC_PASSWORD[_FILE], so these are set empty in its environment (and in ssh's, which it starts).
    scrub: tuple[str, ...] = field(default=(), repr=False)

    def label(self) -> str:
        """Return how messages name this repository: ``the local repository`` (or just ``the repository``)."""
        return f"the {self.name} repository" if self.name else "the repository"

    def from_env(self) -> dict[str, str]:
        """Return this repository's environment renamed for ``copy``'s source side (RESTIC_FROM_*)."""
        names = {"RESTIC_PASSWORD": "RESTIC_FROM_PASSWORD", "RESTIC_PASSWORD_FILE": "RESTIC_FROM_PASSWORD_FILE",
                 "RESTIC_REPOSITORY": "RESTIC_FROM_REPOSITORY"}
        return {names[k]: v for k, v in self.env.items() if k in names}


def sftp_command(url: str, ssh_config: Path, ssh: str = "ssh") -> str:
    """Given an ``sftp:`` repository URL, an ssh client config and the ssh program (``tools.ssh``),
    return restic's ``sftp.command``.

    Raise ValueError if the URL is not an sftp URL with a host.
    """
    if url.startswith("sftp://"):
        parts = urlsplit(url)
        user, host, port = parts.username, parts.hostname, parts.port
    elif url.startswith("sftp:"):
        hostpart = url[len("sftp:"):].split(":", 1)[0]
        user, _, host = hostpart.rpartition("@")
        port = None
    else:
        raise ValueError(f"ssh_config is only for sftp: repositories, got {url!r}")
    if not host:
        raise ValueError(f"expected sftp:user@host:/path, got {url!r}")
    argv = [ssh, "-F", str(ssh_config)]
    if port:
        argv += ["-p", str(port)]
    argv += [f"{user}@{host}" if user else host, "-s", "sftp"]
    return shlex.join(argv)


def repo_access(repo: Repository, environ: Mapping[str, str] | None = None, *, ssh: str = "ssh",
                name: str = "") -> RepoAccess:
    """Given a configured repository (and ``tools.ssh``), return its RepoAccess. Raise SecretUnavailable
    if the password is unset or empty.

    A ``file:`` password is handed over as RESTIC_PASSWORD_FILE (restic reads the file itself);
    an ``env:`` password as RESTIC_PASSWORD in the child's environment, which only the same user
    can read, unlike argv.
    """
    value = repo.password.reveal(dict(environ) if environ is not None else None)
    if not value:  # restic says only "an empty password is not a password", after it started
        raise SecretUnavailable(f"{repo.password.reference} is empty; restic needs a password")
    path = repo.password.file_path()
    env = {"RESTIC_PASSWORD_FILE": str(path)} if path else {"RESTIC_PASSWORD": value}
    options = (f"sftp.command={sftp_command(repo.url, repo.ssh_config, ssh)}",) if repo.ssh_config else ()
    secrets: tuple[str, ...] = (value,)
    url_password = rest_url_password(repo.url)
    if url_password:
        env["RESTIC_REPOSITORY"] = repo.url
        secrets += (url_password,)
    return RepoAccess(repo.url, options, env, secrets, name, url_in_env=bool(url_password))


def rest_url_password(url: str) -> str | None:
    """Given a repository URL, return the password of a ``rest:http(s)://user:password@host/`` URL (restic
    0.14's only way to a REST server's basic auth), else None."""
    if not url.startswith("rest:"):
        return None
    try:
        return urlsplit(url[len("rest:"):]).password or None
    except ValueError:
        return None


# -- argv builders ----------------------------------------------------------------------------------


def base_argv(binary: str, access: RepoAccess, *, json_output: bool = False) -> tuple[str, ...]:
    """Return ``restic -r URL [-o OPT]... [--json]`` (without ``-r URL`` when the URL goes in the environment)."""
    out: list[str] = [binary] if access.url_in_env else [binary, "-r", access.url]
    for opt in access.options:
        out += ["-o", opt]
    return (*out, "--json") if json_output else tuple(out)


def backup_argv(binary: str, access: RepoAccess, sources: Sequence[Path | str], *, excludes: Sequence[str] = (),
                tags: Sequence[str] = (), host: str | None = None) -> tuple[str, ...]:
    """Return the argv of ``restic backup --json`` for the sources, excludes and tags."""
    out = [*base_argv(binary, access, json_output=True), "backup"]
    for pattern in excludes:
        out += ["--exclude", pattern]
    for tag in tags:
        out += ["--tag", tag]
    if host:
        out += ["--host", host]
    return (*out, *(str(s) for s in sources))


def init_argv(binary: str, access: RepoAccess, copy_chunker_from: RepoAccess | None = None) -> tuple[str, ...]:
    """Return ``restic init``; an off-site repo takes the local repo's chunker parameters so copies deduplicate."""
    out = [*base_argv(binary, access), "init"]
    if copy_chunker_from is not None:
        out += ["--copy-chunker-params"]
        if not copy_chunker_from.url_in_env:  # else RESTIC_FROM_REPOSITORY (RepoAccess.from_env)
            out += ["--from-repo", copy_chunker_from.url]
    return tuple(out)


def copy_argv(binary: str, dest: RepoAccess, source: RepoAccess, *, tags: Sequence[str] = (),
              limit_upload_kib: int | None = None) -> tuple[str, ...]:
    """Return ``restic -r DEST copy --from-repo SOURCE``; the source password goes in RESTIC_FROM_*."""
    out = list(base_argv(binary, dest))
    if limit_upload_kib:
        out += ["--limit-upload", str(limit_upload_kib)]
    out += ["copy"] if source.url_in_env else ["copy", "--from-repo", source.url]
    if tags:
        out += ["--tag", ",".join(tags)]
    return tuple(out)


def check_argv(binary: str, access: RepoAccess, subset: tuple[int, int] | None = None) -> tuple[str, ...]:
    """Return ``restic check``, reading data group ``n/N`` when ``subset`` is given."""
    out = [*base_argv(binary, access), "check"]
    if subset is not None:
        n, total = subset
        if not 1 <= n <= total:
            raise ValueError(f"read-data subset must be 1 <= n <= N, got {n}/{total}")
        out.append(f"--read-data-subset={n}/{total}")
    return tuple(out)


def forget_argv(binary: str, access: RepoAccess, retention: Retention, *, tags: Sequence[str] = (),
                prune: bool = True) -> tuple[str, ...]:
    """Return ``restic forget --json`` with the retention policy (and ``--prune``), limited to ``tags``."""
    # Grouped by host and the job's tags, not restic's default host+paths: a snapshot of changed sources or of
    # a run that missed a source is in the job's group and ages out with it. The host stays in the grouping: two
    # hosts running a job of the same name into one repository must not age out each other's snapshots.
    out = [*base_argv(binary, access, json_output=True), "forget", "--group-by", "host,tags",
           "--keep-daily", str(retention.keep_daily), "--keep-weekly", str(retention.keep_weekly),
           "--keep-monthly", str(retention.keep_monthly)]
    if tags:
        out += ["--tag", ",".join(tags)]
    if prune:
        out.append("--prune")
    return tuple(out)


def snapshots_argv(binary: str, access: RepoAccess, *, tags: Sequence[str] = (),
                   latest: int | None = None) -> tuple[str, ...]:
    out = [*base_argv(binary, access, json_output=True), "snapshots"]
    if tags:
        out += ["--tag", ",".join(tags)]
    if latest:
        out += ["--latest", str(latest)]
    return tuple(out)


def stats_argv(binary: str, access: RepoAccess) -> tuple[str, ...]:
    return (*base_argv(binary, access, json_output=True), "stats", "--mode", "raw-data")


def ls_argv(binary: str, access: RepoAccess, snapshot: str) -> tuple[str, ...]:
    return (*base_argv(binary, access, json_output=True), "ls", snapshot)


def restore_argv(binary: str, access: RepoAccess, snapshot: str, target: Path,
                 includes: Sequence[str] = ()) -> tuple[str, ...]:
    """Return ``restic restore SNAPSHOT --target DIR --verify`` (restic re-reads and checks every file),
    restoring only the files at the paths ``includes`` (as ``ls --json`` gives them) when any are given."""
    out = [*base_argv(binary, access), "restore", snapshot, "--target", str(target), "--verify"]
    for path in includes:
        out += ["--include", literal_pattern(path)]
    return tuple(out)


ARG_BUDGET = 128 * 1024  # bytes of --include arguments per restore: far below ARG_MAX (2 MiB on Linux)


def include_batches(paths: Sequence[str], budget: int = ARG_BUDGET) -> list[list[str]]:
    """Given the paths of a sample, return them in batches whose ``--include`` arguments stay within
    ``budget`` bytes each (at least one path per batch), so no restore's argv reaches ARG_MAX."""
    batches: list[list[str]] = []
    size = 0
    for path in paths:
        cost = len(os.fsencode(literal_pattern(path))) + len("--include") + 2
        if not batches or (size + cost > budget and batches[-1]):
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += cost
    return batches


def literal_pattern(path: str) -> str:
    """Given a snapshot path as ``ls --json`` gives it, return the ``--include`` pattern matching just it.

    restic reads an include as a glob (Go's filepath.Match per path element), so ``*``, ``?``, ``[``
    and ``\\`` are escaped. ``ls --json`` writes each byte of a name that is not UTF-8 as U+FFFD,
    which matches no name; ``?`` matches exactly one such byte (one invalid rune to Go), so the file
    is still the one restored.
    """
    escaped = re.sub(r"([*?\[\\])", r"\\\1", path)
    return escaped.replace(LOST_BYTE, "?")


def list_locks_argv(binary: str, access: RepoAccess) -> tuple[str, ...]:
    return (*base_argv(binary, access), "list", "locks", "--no-lock")


def cat_lock_argv(binary: str, access: RepoAccess, lock_id: str) -> tuple[str, ...]:
    return (*base_argv(binary, access), "--no-lock", "cat", "lock", lock_id)


def unlock_argv(binary: str, access: RepoAccess) -> tuple[str, ...]:
    return (*base_argv(binary, access), "unlock")


def version_argv(binary: str) -> tuple[str, ...]:
    return (binary, "version")


# -- parsers ---------------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    """Given ``restic version`` output, return (major, minor, patch). Raise ResticError if absent."""
    m = re.search(r"restic (\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ResticError(f"restic version: expected 'restic X.Y.Z', got {text.strip()[:80]!r}")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True)
class Status:
    """A ``backup --json`` status line (keys are omitempty: missing means 0)."""

    percent_done: float = 0.0
    total_files: int = 0
    files_done: int = 0
    total_bytes: int = 0
    bytes_done: int = 0
    seconds_elapsed: int = 0


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    data_added: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    total_duration: float = 0.0


@dataclass(frozen=True)
class ReadError:
    """A source item restic could not read (0.14: JSON on stderr; newer: JSON on stdout)."""

    item: str
    op: str
    errno: int | None
    during: str


def _pick(cls: type, data: Mapping) -> dict:
    # Ignore keys this version does not know; restic adds fields over time.
    return {k: data[k] for k in cls.__dataclass_fields__ if k in data}


def parse_backup_line(line: str, where: str = "backup") -> Status | BackupSummary | ReadError | None:
    """Given one line of ``backup --json`` output, return its Status, BackupSummary or ReadError.

    Return None for blank lines and message types this module does not use (e.g. ``verbose_status``).
    Raise ResticError if a line is not JSON or a summary lacks its snapshot id.
    """
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        raise ResticError(f"{where}: expected a JSON line, got {line[:120]!r}") from None
    if not isinstance(data, dict):
        raise ResticError(f"{where}: expected a JSON object, got {line[:120]!r}")
    kind = data.get("message_type")
    if kind == "status":
        return Status(**_pick(Status, data))
    if kind == "summary":
        if not data.get("snapshot_id"):
            raise ResticError(f"{where}: summary without snapshot_id: {line[:200]!r}")
        return BackupSummary(**_pick(BackupSummary, data))
    if kind == "error":
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        errno = err.get("Err") if isinstance(err.get("Err"), int) else None
        return ReadError(str(data.get("item", err.get("Path", ""))), str(err.get("Op", "")), errno,
                         str(data.get("during", "")))
    return None


_MISSING = re.compile(r"^(?P<path>.+) does not exist, skipping$")


def parse_backup_stderr(text: str) -> tuple[list[ReadError], list[str], list[str]]:
    """Given ``backup --json`` stderr, return (read errors, missing source paths, other lines).

    0.14 reports a missing source only as ``PATH does not exist, skipping`` with exit 0.
    """
    errors: list[ReadError] = []
    missing: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                parsed = parse_backup_line(line, "backup stderr")
            except ResticError:
                other.append(line)
                continue
            if isinstance(parsed, ReadError):
                errors.append(parsed)
                continue
        m = _MISSING.match(line.strip())
        if m:
            missing.append(m["path"])
        elif line.strip():
            other.append(line.strip())
    return errors, missing, other


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str
    paths: tuple[str, ...]
    hostname: str
    tags: tuple[str, ...]


def parse_snapshots(text: str) -> list[Snapshot]:
    """Given ``snapshots --json`` output, return the snapshots. Raise ResticError if it is not a JSON array."""
    try:
        data = json.loads(text or "[]")
    except ValueError:
        raise ResticError(f"snapshots: expected a JSON array, got {text.strip()[:120]!r}") from None
    if not isinstance(data, list):
        raise ResticError("snapshots: expected a JSON array")
    return [Snapshot(str(d["id"]), str(d.get("short_id", d["id"][:8])), str(d.get("time", "")),
                     tuple(d.get("paths") or ()), str(d.get("hostname", "")), tuple(d.get("tags") or ()))
            for d in data if isinstance(d, dict) and "id" in d]


def parse_stats(text: str) -> dict[str, int]:
    """Given ``stats --json --mode raw-data`` output, return its integer fields (total_size, ...)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ResticError(f"stats: expected a JSON object, got {text.strip()[:120]!r}") from None
    return {k: int(v) for k, v in data.items() if isinstance(v, int | float)}


def parse_forget(text: str) -> tuple[int, int]:
    """Given ``forget --json [--prune]`` stdout, return (kept, removed) snapshot counts.

    0.14 prints one JSON line and then plain-text prune output on the same stream, so only the
    first line is JSON.
    """
    first = text.lstrip().split("\n", 1)[0] if text.strip() else "[]"
    try:
        groups = json.loads(first)
    except ValueError:
        raise ResticError(f"forget: expected a JSON array on the first line, got {first[:120]!r}") from None
    kept = sum(len(g.get("keep") or []) for g in groups if isinstance(g, dict))
    removed = sum(len(g.get("remove") or []) for g in groups if isinstance(g, dict))
    return kept, removed


def parse_forget_groups(text: str) -> list[str]:
    """Given ``forget --json`` stdout, return one ``host [tags]`` per group restic applied the policy in (forget
    counts days, weeks and months within each group). Not JSON: no groups."""
    first = text.lstrip().split("\n", 1)[0] if text.strip() else "[]"
    try:
        groups = json.loads(first)
    except ValueError:
        return []
    return [f"{g.get('host') or '?'} [{','.join(g.get('tags') or [])}]" for g in groups if isinstance(g, dict)]


_COPIED = re.compile(r"^snapshot (?P<dst>[0-9a-f]{8,64}) saved$")
_SKIPPED = re.compile(r"^skipping source snapshot (?P<src>[0-9a-f]{8,64}), was already copied to snapshot "
                      r"(?P<dst>[0-9a-f]{8,64})$")


def parse_copy(text: str) -> tuple[list[str], list[str]]:
    """Given ``copy`` text output, return (new destination snapshot ids, skipped source snapshot ids)."""
    copied, skipped = [], []
    for line in text.splitlines():
        line = line.strip()
        if m := _COPIED.match(line):
            copied.append(m["dst"])
        elif m := _SKIPPED.match(line):
            skipped.append(m["src"])
    return copied, skipped


_SOURCE = re.compile(r"^snapshot [0-9a-f]{8,64} of \[.*\] at (?P<day>\d{4}-\d\d-\d\d) (?P<clock>\d\d:\d\d:\d\d)"
                     r"(?P<frac>\.\d+)? (?P<zone>[+-]\d\d)(?P<minutes>\d\d)\b")


def parse_copy_times(text: str) -> list[datetime]:
    """Given ``copy`` text output, return the time of every source snapshot it went through, copied or
    already there (``snapshot ID of [PATHS] at 2026-12-07 21:18:17.13 +0800 CST)``, Go's time format)."""
    return [datetime.fromisoformat(f"{m['day']}T{m['clock']}{(m['frac'] or '')[:7]}{m['zone']}:{m['minutes']}")
            for line in text.splitlines() if (m := _SOURCE.match(line.strip()))]


def parse_config(text: str) -> str | None:
    """Given ``cat config`` output, return the repository's id (None if the output has none)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return str(data["id"]) if isinstance(data, dict) and data.get("id") else None


_CREATED = re.compile(r"created restic repository (?P<id>[0-9a-f]+) at ")


def parse_init(text: str) -> str:
    """Given ``init`` output, return the new repository's id. Raise ResticError if it is not there."""
    m = _CREATED.search(text)
    if not m:
        raise ResticError(f"init: expected 'created restic repository <id>', got {text.strip()[:120]!r}")
    return m["id"]


_GROUP = re.compile(r"read group #(?P<n>\d+) of (?P<packs>\d+) data packs \(out of total (?P<total>\d+) packs "
                    r"in (?P<groups>\d+) groups\)")


@dataclass(frozen=True)
class CheckReport:
    clean: bool
    packs_read: int | None
    packs_total: int | None
    errors: tuple[str, ...]


def parse_check(stdout: str, stderr: str, rc: int) -> CheckReport:
    """Given ``check`` text output and exit code, return the report; clean only with rc 0 and 'no errors'."""
    m = _GROUP.search(stdout)
    noise = ("using temporary cache", "create exclusive lock", "load indexes", "check all packs")
    errors = tuple(line.strip() for line in stderr.splitlines()
                   if line.strip() and not line.strip().startswith(noise))
    clean = rc == 0 and "no errors were found" in stdout
    return CheckReport(clean, int(m["packs"]) if m else None, int(m["total"]) if m else None, errors)


_VERIFIED = re.compile(r"finished verifying (?P<n>\d+) files in ")


@dataclass(frozen=True)
class RestoreReport:
    verified_files: int | None
    errors: tuple[str, ...]


def parse_restore(stdout: str, stderr: str) -> RestoreReport:
    """Given ``restore --verify`` text output, return files verified by restic and the error lines."""
    m = _VERIFIED.search(stdout)
    errors = tuple(line.strip() for line in stderr.splitlines() if line.strip())
    return RestoreReport(int(m["n"]) if m else None, errors)


LOST_BYTE = "\ufffd"  # what restic's JSON output writes for each byte of a name that is not UTF-8


def lossy_name(raw: bytes) -> str:
    """Given a file name's bytes, return it as restic's JSON output writes it: each byte that is not part
    of valid UTF-8 becomes one U+FFFD (Go's encoding/json), unlike Python's ``errors="replace"``,
    which may replace a run of bytes with one."""
    out: list[str] = []
    while raw:
        try:
            out.append(raw.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out += [raw[:exc.start].decode("utf-8"), LOST_BYTE]
            raw = raw[exc.start + 1:]
    return "".join(out)


@dataclass(frozen=True)
class Node:
    path: str
    type: str
    size: int
    mtime: str
    ctime: str = ""


def parse_ls(text: str) -> list[Node]:
    """Given ``ls --json`` output (a snapshot line, then one node per line), return the nodes."""
    nodes = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise ResticError(f"ls: line {n}: expected JSON, got {line[:120]!r}") from None
        if data.get("struct_type") == "node":
            nodes.append(Node(str(data["path"]), str(data.get("type", "")), int(data.get("size") or 0),
                              str(data.get("mtime", "")), str(data.get("ctime", ""))))
    return nodes


@dataclass(frozen=True)
class Lock:
    id: str
    time: str
    exclusive: bool
    hostname: str
    pid: int
    username: str = ""


def parse_lock(lock_id: str, text: str) -> Lock:
    """Given a lock id and ``cat lock`` JSON, return the Lock. Raise ResticError on missing fields."""
    try:
        data = json.loads(text)
        return Lock(lock_id, str(data["time"]), bool(data.get("exclusive", False)), str(data["hostname"]),
                    int(data["pid"]), str(data.get("username", "")))
    except (ValueError, KeyError, TypeError):
        raise ResticError(f"cat lock {lock_id[:8]}: expected JSON with time, hostname, pid") from None


# Markers of classify_failure, in order, compared in lower case. The network ones come before "no
# repository": restic 0.14 adds "Is there a repository at the following location?" to any failure to
# open a repository, a refused connection or an unknown host included, and "no repository" would send
# the operator to `backup init` instead of the network or the server.
_FAILURE_MARKERS = (
    ("wrong password", "wrong password or no key found"),
    ("repository unreachable", "unable to start the sftp session"),
    ("repository unreachable", "connection refused"),
    ("repository unreachable", "no such host"),
    ("repository unreachable", "i/o timeout"),
    ("repository unreachable", "no route to host"),
    ("repository unreachable", "network is unreachable"),
    ("no repository", "is there a repository at the following location?"),
    ("no repository", "unable to open config file"),
    ("repository locked", "repository is already locked"),
    ("repository contains errors", "repository contains errors"),
)
_FRAME = re.compile(r"^\t\S+:\d+")  # a Go stack frame's file:line, under its function's line


def classify_failure(stderr: str) -> str:
    """Given restic's stderr after a failure, return a short reason (for people and events)."""
    lowered = stderr.lower()
    for reason, marker in _FAILURE_MARKERS:
        if marker in lowered:
            return reason
    fatal = [line for line in stderr.splitlines() if line.startswith("Fatal:")]
    reason = fatal[-1][len("Fatal: "):].strip() if fatal else error_before_trace(stderr)
    if "(SSH_FX_FAILURE)" in reason:
        # OpenSSH's sftp-server answers a write to a full disk (or past a quota) with the generic SSH_FX_FAILURE,
        # so restic's words alone do not point the operator at the server's free space.
        reason += (" (the SFTP server refused a write without saying why: a full disk or an exceeded quota on the "
                   "server is the usual cause; look at its free space)")
    return reason


def error_before_trace(stderr: str) -> str:
    """Given stderr without a ``Fatal:`` line, return its last line, or, when a Go stack trace follows
    the error (restic 0.14 prints one for ``write …: file too large``), the error line before the trace:
    the last line there naming a cause (``…: …``), else the last one."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    start = next((i - 1 for i, line in enumerate(lines) if _FRAME.match(line)), len(lines))
    start = min(start, next((i for i, line in enumerate(lines) if line.startswith("goroutine ")), len(lines)))
    before = [line.strip() for line in lines[:max(start, 0)]] or [line.strip() for line in lines[-1:]]
    return next((line for line in reversed(before) if ": " in line), before[-1] if before else "failed")


# classify_failure's reasons that mean restic could not open a repository at all. restic 0.14's
# ``copy`` opens the source (--from-repo) first, then the destination, and says the same thing for
# either ("Fatal: wrong password or no key found", exit 1): its output does not say which one failed.
OPEN_FAILURES = ("wrong password", "no repository", "repository unreachable")


def open_failure(error: str) -> str | None:
    """Given a step's error (``meaning: reason``, the reason from classify_failure), return the reason
    when it says restic could not open the repository (one of OPEN_FAILURES), else None."""
    reason = error.rsplit(": ", 1)[-1].strip()
    return reason if reason in OPEN_FAILURES else None


@contextmanager
def _refusal_named(*accesses: RepoAccess | None) -> Iterator[None]:
    """Turn execute's SecretInArgv into PasswordInArgv naming whose password it was (local or offsite)."""
    try:
        yield
    except execute.SecretInArgv as exc:
        owners = [a for a in accesses if a is not None for _ in a.secrets]
        whose = owners[exc.index].label() if exc.index < len(owners) else "a repository"
        raise PasswordInArgv(f"refusing to run restic: the password of {whose} appears in its argv "
                             f"({exc.where}, argument {exc.argument}); passwords go to restic by environment or "
                             f"file only, so change the password or the argument it collides with") from None


# -- the runner --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupOutcome:
    """What one ``restic backup`` achieved, judged honestly."""

    outcome: Outcome
    rc: int | None
    summary: BackupSummary | None
    read_errors: tuple[ReadError, ...]
    missing_sources: tuple[str, ...]
    error: str


def judge_backup(rc: int | None, summary: BackupSummary | None, read_errors: Sequence[ReadError],
                 missing: Sequence[str], stderr: str) -> BackupOutcome:
    """Given what a backup printed and its exit code, return the outcome.

    Success needs exit 0 AND a summary with a snapshot id AND no missing source. Exit 3 with a
    summary is partial. Anything else, including an unknown exit code, is a failure.
    """
    errs, miss = tuple(read_errors), tuple(missing)
    if rc is None:
        return BackupOutcome(Outcome.FAILURE, rc, summary, errs, miss, "restic did not finish")
    outcome, meaning = execute.interpret_exit_code(TOOL, rc)
    if outcome is Outcome.FAILURE:
        return BackupOutcome(outcome, rc, summary, errs, miss, f"{meaning}: {classify_failure(stderr)}")
    if summary is None:
        return BackupOutcome(Outcome.FAILURE, rc, None, errs, miss, "restic printed no summary")
    if miss:
        return BackupOutcome(Outcome.FAILURE, rc, summary, errs, miss,
                             f"source does not exist: {', '.join(miss)}")
    if outcome is Outcome.PARTIAL or errs:
        items = ", ".join(e.item for e in errs) or "see restic output"
        return BackupOutcome(Outcome.PARTIAL, rc, summary, errs, miss, f"unreadable source files: {items}")
    return BackupOutcome(Outcome.SUCCESS, rc, summary, errs, miss, "")


@dataclass
class Restic:
    """Runs restic through citydc.execute with a repository's environment and a cache directory."""

    binary: str = "restic"
    cache_dir: Path | None = None
    timeout: float = 6 * 3600

    def _env(self, *accesses: RepoAccess, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env: dict[str, str] = {}
        for a in accesses:
            env.update(a.env)
        if self.cache_dir is not None:
            env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
        # restic prefers RESTIC_PASSWORD over the file: one left in the caller's environment must
        # not override this repository's password file.
        if "RESTIC_PASSWORD_FILE" in env:
            env.setdefault("RESTIC_PASSWORD", "")
        for a in accesses:
            for name in a.scrub:
                env.setdefault(name, "")
        return {**env, **(extra or {})}

    def run(self, argv: Sequence[str], access: RepoAccess, *, source: RepoAccess | None = None,
            timeout: float | None = None) -> execute.Result:
        """Run a restic argv for ``access`` (and ``source`` for copy); return the execute.Result."""
        extra = source.from_env() if source is not None else None
        secrets = access.secrets + (source.secrets if source else ())
        with _refusal_named(access, source):
            return execute.run(TOOL, argv, env=self._env(access, extra=extra), secrets=secrets,
                               timeout=timeout or self.timeout)

    def backup(self, argv: Sequence[str], access: RepoAccess,
               on_status: Callable[[Status], None] | None = None) -> BackupOutcome:
        """Run ``backup --json``, calling ``on_status`` per status line; return the judged outcome."""
        done = execute.Streamed()
        summary: BackupSummary | None = None
        errors: list[ReadError] = []
        lines = execute.stream_lines(TOOL, argv, done, env=self._env(access), secrets=access.secrets,
                                     timeout=self.timeout)
        try:
            with _refusal_named(access):  # the generator checks argv when the first line is asked for
                for line in lines:
                    try:
                        parsed = parse_backup_line(line)
                    except ResticError:
                        continue  # a stray text line (newer versions print some) is not a result
                    if isinstance(parsed, Status) and on_status is not None:
                        on_status(parsed)
                    elif isinstance(parsed, BackupSummary):
                        summary = parsed
                    elif isinstance(parsed, ReadError):
                        errors.append(parsed)
        except execute.ToolFailed as exc:
            return BackupOutcome(Outcome.FAILURE, None, summary, tuple(errors), (), str(exc))
        stderr_errors, missing, _ = parse_backup_stderr(done.stderr)
        return judge_backup(done.rc, summary, [*errors, *stderr_errors], missing, done.stderr)

    def version(self) -> tuple[int, int, int]:
        """Return the installed restic version. Raise ResticError if it is older than MIN_VERSION."""
        res = execute.run(TOOL, version_argv(self.binary), timeout=30)
        found = parse_version(res.stdout)
        if found < MIN_VERSION:
            want = ".".join(map(str, MIN_VERSION))
            raise ResticError(f"restic {'.'.join(map(str, found))} is too old; citydc needs {want} or newer")
        return found


def tagged(tags: Iterable[str], job: str) -> tuple[str, ...]:
    """Given a job's tags and name, return the snapshot tags: the job's own plus ``citydc.job=<name>``."""
    return (*tags, job_tag(job))


def job_tag(job: str) -> str:
    return f"{JOB_TAG_PREFIX}{job}"  # citydc.config.models refuses configured tags with this prefix

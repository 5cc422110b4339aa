"""The one place where citydc runs external programs.

Callers build argv in pure functions (unit-tested as tuples) and hand it here with the tool's
name. This module logs the command with every known secret masked, passes secrets only
through the environment or files, enforces a timeout, and interprets the exit code through
the tool's table: an exit code the table does not know is a failure, never a success.

The one other place that starts processes is ansible-runner (``citydc.play.runner``): it starts
``ansible-playbook`` itself, with an allow-listed environment and secrets in a removed 0600 file;
its exit status is read through the ``ansible-playbook`` table here.

A program is never just killed while it may still clean up: on a timeout, an interrupt (Ctrl-C) or a
consumer that stops reading, it gets SIGINT, as from a terminal, and ``STOP_GRACE_SECONDS`` to end
(restic removes its repository lock then; Python's own ``subprocess.run`` kills it 0.25 s after an
interrupt, leaving the lock for ``lock_stale_seconds``); only then SIGKILL. While a program runs on the
main thread (``run``, ``stream_lines``), SIGTERM to citydc is an interrupt as well (where nothing else
handles SIGTERM), so a ``kill PID`` of citydc stops the program the same way instead of leaving it
running unwatched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote

__all__ = [
    "EXIT_CODES",
    "Outcome",
    "Result",
    "SecretInArgv",
    "ToolFailed",
    "interpret_exit_code",
    "mask",
    "run",
    "secret_in_argument",
    "stream_chunks",
    "stream_lines",
]

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0  # a stopped program's time to clean up after SIGINT (restic: remove its lock)


class Outcome(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILURE = "failure"


# Per-tool exit-code tables: code -> (outcome, meaning). Unknown codes are failures.
EXIT_CODES: dict[str, dict[int, tuple[Outcome, str]]] = {
    # restic doc/075_scripting.rst
    "restic": {
        0: (Outcome.SUCCESS, "success"),
        1: (Outcome.FAILURE, "fatal error"),
        3: (Outcome.PARTIAL, "some source files could not be read"),
        10: (Outcome.FAILURE, "repository does not exist"),
        11: (Outcome.FAILURE, "failed to lock repository"),
        12: (Outcome.FAILURE, "wrong password"),
        130: (Outcome.FAILURE, "cancelled"),
    },
    "snmpget": {0: (Outcome.SUCCESS, "success"), 1: (Outcome.FAILURE, "error or timeout")},
    "haproxy": {0: (Outcome.SUCCESS, "valid"), 1: (Outcome.FAILURE, "invalid configuration")},
    "promtool": {0: (Outcome.SUCCESS, "success"), 1: (Outcome.FAILURE, "check failed")},
    "amtool": {0: (Outcome.SUCCESS, "success"), 1: (Outcome.FAILURE, "check failed")},
    # ansible-core 2.19 (ansible.errors.ExitCode, cli/__init__.py cli_executor): 1 is any AnsibleError (no
    # hosts matched, a missing playbook); 4 is both HOST_UNREACHABLE and PARSER_ERROR, which citydc.play.runner
    # tells apart by whether a host was unreachable; 8 and 255 never leave PlaybookExecutor.run.
    "ansible-playbook": {
        0: (Outcome.SUCCESS, "success"),
        1: (Outcome.FAILURE, "Ansible stopped with an error"),
        2: (Outcome.FAILURE, "one or more hosts failed"),
        4: (Outcome.FAILURE, "one or more hosts unreachable, or a playbook, inventory or variables file could "
                             "not be parsed"),
        5: (Outcome.FAILURE, "invalid options or extra-vars"),
        99: (Outcome.FAILURE, "interrupted"),
        250: (Outcome.FAILURE, "unexpected error inside Ansible (its traceback is in the run's events)"),
    },
}
DEFAULT_EXIT_CODES = {0: (Outcome.SUCCESS, "success")}


def interpret_exit_code(tool: str, rc: int) -> tuple[Outcome, str]:
    """Given a tool name and its exit code, return (outcome, meaning); unknown codes are failures."""
    if rc < 0:
        return Outcome.FAILURE, f"killed by signal {-rc}"
    table = EXIT_CODES.get(tool, DEFAULT_EXIT_CODES)
    return table.get(rc, (Outcome.FAILURE, f"unknown exit code {rc}"))


def mask(text: str, secrets: Sequence[str]) -> str:
    """Given text and secret values, return the text with each value replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Result:
    tool: str
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration_seconds: float
    outcome: Outcome
    meaning: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def masked_stderr(self) -> str:
        return mask(self.stderr, self.secrets)


class ToolFailed(RuntimeError):
    """A tool could not be started or timed out; the message never holds secret values."""


class SecretInArgv(ValueError):
    """A secret value would have gone into argv, so the program was not started. ``index`` is the
    secret's position in the ``secrets`` given (the caller knows whose it is), ``where`` says how it
    occurs and ``argument`` in which argument. Neither the message nor the attributes hold the value."""

    def __init__(self, index: int, where: str, argument: int):
        super().__init__(f"refusing to run: a secret value appears in argv ({where}, argument {argument}); "
                         "secrets go by environment or file")
        self.index, self.where, self.argument = index, where, argument


# From this length on a secret is refused anywhere inside an argument. A shorter one is refused only
# where a program takes a secret: the whole argument, an option's value, a URL's userinfo, a word of a
# command string. Short, human-chosen values (``repo``, a site or host name, a number) occur inside
# paths, tags and host names by coincidence, and refusing them stopped backups for nothing; a value of
# 12 characters or more turning up inside a path by chance is implausible (generated ones are longer).
MIN_SUBSTRING_SECRET = 12
# Where a value is *put* in an argument: after "=" (--password=S, -o key=S), after ":" (user:S@host)
# or after a space (a word of "sftp.command=ssh ... S"), and ending the argument or followed by a
# separator ("@", ":", ",", ";", "&", a space).
_PUT_BEFORE = "=: \t"
_PUT_AFTER = "@:,;& \t"
_USERINFO = re.compile(r"//([^/?#@\s]*)@")


def secret_in_argument(arg: str, secret: str) -> str | None:
    """Given one argument and one secret value, return how the value occurs in it (for the message),
    or None when it does not occur in a way that hands it to the program."""
    if not secret:
        return None
    if arg == secret:
        return "the whole argument"
    if len(secret) >= MIN_SUBSTRING_SECRET and secret in arg:
        return "inside the argument"
    for userinfo in _USERINFO.findall(arg):
        if secret in {part for raw in userinfo.split(":", 1) for part in (raw, unquote(raw))}:
            return "in a URL's user:password"
    start = arg.find(secret)
    while start != -1:
        end = start + len(secret)
        if start > 0 and arg[start - 1] in _PUT_BEFORE and (end == len(arg) or arg[end] in _PUT_AFTER):
            return "as a value after '=', ':' or a space"
        start = arg.find(secret, start + 1)
    return None


def _check_argv(tool: str, argv: Sequence[str], secrets: Sequence[str]) -> None:
    """Raise ToolFailed if argv names no program, SecretInArgv if a secret value occurs in an argument
    (see ``secret_in_argument``).

    Secrets go through the environment or files: every user can read an argv in /proc, and it ends up
    in process listings and audit logs.
    """
    if not argv or not argv[0]:  # Popen would raise IndexError, or PermissionError for the empty program
        raise ToolFailed(f"{tool}: no program to run (an empty command)")
    for n, arg in enumerate(argv):
        for index, secret in enumerate(secrets):
            where = secret_in_argument(arg, secret)
            if where is not None:
                raise SecretInArgv(index, where, n)


def run(
    tool: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = 600,
    input_text: str | None = None,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Given a tool name and argv, run it and return its Result.

    ``env`` is added to the current environment. ``secrets`` are values that must never
    be shown: they are masked in logs and refused if they appear in argv. Raise ToolFailed if
    the program is missing or times out. ``pass_fds``: descriptors the program inherits (a secret handed
    over through a pipe, ``/dev/fd/N``, never a named file that a SIGTERM or SIGKILL would leave behind).
    """
    argv = tuple(str(a) for a in argv)
    _check_argv(tool, argv, secrets)
    full_env = {**os.environ, **(env or {})}
    log.debug("run %s: %s", tool, mask(shlex.join(argv), secrets))
    started = time.monotonic()
    with _terminate_interrupts():
        try:
            proc = subprocess.Popen(argv, env=full_env, stdin=None if input_text is None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                    errors="replace", pass_fds=tuple(pass_fds))
        except FileNotFoundError:
            raise ToolFailed(f"{tool}: program not found: {argv[0]} (install it or set tools.* in citydc.yaml)") \
                from None
        with proc:
            try:
                stdout, stderr = proc.communicate(input_text, timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise ToolFailed(f"{tool}: timed out after {timeout} s: {mask(shlex.join(argv), secrets)}") from None
            except BaseException:  # an interrupt: the program ends first, cleaning up as it can
                _stop(proc)
                raise
    outcome, meaning = interpret_exit_code(tool, proc.returncode)
    return Result(tool, argv, proc.returncode, stdout, stderr, time.monotonic() - started,
                  outcome, meaning, tuple(s for s in secrets if s))


def _stop(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """Given a started program, return once it has ended: if it still runs, send SIGINT (what Ctrl-C
    sends; restic then removes its lock) and wait up to ``grace`` seconds, then SIGKILL. A second
    interrupt while waiting kills it at once (and goes on up)."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_interrupts() -> Iterator[None]:
    """While a program runs, make SIGTERM to citydc raise KeyboardInterrupt, so the program is stopped by
    ``_stop`` (not left running, or, in a process group, killed mid-write). Only on the main thread (the only
    one that may set handlers) and only where SIGTERM has its default action: a command's own handler stays."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Streamed:
    """Filled in by stream_lines once the process has ended."""

    rc: int | None = None
    stderr: str = ""
    outcome: Outcome | None = None
    meaning: str = ""


def stream_lines(
    tool: str,
    argv: Sequence[str],
    done: Streamed,
    *,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
) -> Iterator[str]:
    """Given argv, yield stdout lines as they come; fill ``done`` when the process ends.

    For tools with progress output (``restic --json``). The process is stopped (``_stop``: SIGINT, then
    SIGKILL after ``STOP_GRACE_SECONDS``) if the consumer stops early or ``timeout`` passes.
    """
    argv = tuple(str(a) for a in argv)
    _check_argv(tool, argv, secrets)
    log.debug("stream %s: %s", tool, mask(shlex.join(argv), secrets))
    deadline = None if timeout is None else time.monotonic() + timeout
    with _terminate_interrupts():
        yield from _stream_lines(tool, argv, done, env, secrets, timeout, deadline)


def _stream_lines(tool: str, argv: tuple[str, ...], done: Streamed, env: Mapping[str, str] | None,
                  secrets: Sequence[str], timeout: float | None, deadline: float | None) -> Iterator[str]:
    try:
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace")
    except FileNotFoundError:
        raise ToolFailed(f"{tool}: program not found: {argv[0]}") from None
    # stderr is drained by a thread so a chatty tool never blocks on a full pipe.
    stderr_chunks: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    try:
        for line in proc.stdout:
            if deadline is not None and time.monotonic() > deadline:
                raise ToolFailed(f"{tool}: timed out after {timeout} s")
            yield line.rstrip("\n")
        proc.wait()
        drain.join(timeout=10)
        done.stderr = mask("".join(stderr_chunks), secrets)
        done.rc = proc.returncode
        done.outcome, done.meaning = interpret_exit_code(tool, proc.returncode)
    finally:
        _stop(proc)


def stream_chunks(
    tool: str,
    argv: Sequence[str],
    done: Streamed,
    *,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    timeout: float | None = None,
    size: int = 1 << 20,
    pass_fds: Sequence[int] = (),
) -> Iterator[bytes]:
    """Given argv, yield stdout as raw byte chunks (up to ``size``) as they come; fill ``done`` at the end.

    For bulk output parsed in blocks (``ldapsearch`` LDIF of 100k entries), where a Python-level
    iteration per line would cost more than the tool itself. Stopped like ``stream_lines``. ``pass_fds``:
    as for ``run``.
    """
    argv = tuple(str(a) for a in argv)
    _check_argv(tool, argv, secrets)
    log.debug("stream %s: %s", tool, mask(shlex.join(argv), secrets))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0, pass_fds=tuple(pass_fds))
    except FileNotFoundError:
        raise ToolFailed(f"{tool}: program not found: {argv[0]}") from None
    stderr_chunks: list[bytes] = []
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    fd = proc.stdout.fileno()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)  # fewer, larger reads; the tool blocks less often
    try:
        while chunk := os.read(fd, size):
            if deadline is not None and time.monotonic() > deadline:
                raise ToolFailed(f"{tool}: timed out after {timeout} s")
            yield chunk
        proc.wait()
        drain.join(timeout=10)
        done.stderr = mask(b"".join(stderr_chunks).decode("utf-8", "replace"), secrets)
        done.rc = proc.returncode
        done.outcome, done.meaning = interpret_exit_code(tool, proc.returncode)
    finally:
        _stop(proc)

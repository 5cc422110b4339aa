"""Terminal output shared by every command: results on stdout, messages on stderr.

Exit codes mean the same everywhere: 0 ok, 1 findings or a failed job, 2 usage or config error;
130 interrupted and 141 a reader gone away (main() maps them, see EXIT_INTERRUPTED).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from citydc import files

if TYPE_CHECKING:  # the config models take a noticeable share of every command's start: loaded when used
    from rich.console import Console

    from citydc.config.loader import ConfigInvalid, LoadedConfig

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "OutputError", "err",
           "examples", "fail", "fail_write", "guard_stdout", "load_config", "out", "output_failed", "print_json",
           "progress", "show_times", "visible", "wide_option"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# What a shell reports for a process ended by that signal: Ctrl-C (130) is neither a failed job nor a usage
# error, and a reader that went away (`| head`, 141) is what `cat` or `grep` report in the same pipeline.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

out: Console  # results (stdout) and messages (stderr): made on first use, by __getattr__ below
err: Console


def _consoles() -> tuple[Console, Console]:
    """Return (out, err), made on first use: importing Rich is a noticeable share of a command's start, and
    ``citydc play run`` starts ansible-playbook before it prints anything (docs/playbooks.md)."""
    made = globals()
    if "err" not in made:
        from rich.console import Console

        # emoji=False: Rich would turn ":100:" of "citydc.yaml:100: ..." into an emoji
        made["out"] = Console(highlight=False, soft_wrap=True, emoji=False)
        made["err"] = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    return made["out"], made["err"]


def __getattr__(name: str) -> Any:
    """``out`` (results, stdout) and ``err`` (messages, stderr): the Rich consoles, made when first imported."""
    if name == "out":
        return _consoles()[0]
    if name == "err":
        return _consoles()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """Given text, return it with Rich markup escaped; Rich is imported on first use (a command that never
    prints an error does not pay for it before its work starts)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# C0 and C1 control characters (ESC, BEL, CR, newline, tab included), DEL, and the Unicode line separators and
# bidirectional overrides: in text that came from a log, a directory or a server, each of them can move the
# cursor, clear the screen, retitle the window or reorder what an auditor reads.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """Given text from outside (a log line, a directory entry, a server's answer), return it with every control
    character shown as an escape (``\\x1b``, ``\\u202e``), so printing it cannot steer the terminal."""
    return _CONTROLS.sub(_escape_control, text) if _CONTROLS.search(text) else text


def _escape_control(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def examples(*lines: str) -> str:
    """Given example command lines, return a click epilog (the end of --help) showing them verbatim."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def wide_option(fn):
    """The --wide flag of every command that prints a table."""
    return click.option("--wide", is_flag=True, help="Keep every column, even those empty in every row.")(fn)


def show_times(loaded: LoadedConfig | None, utc: bool = False) -> None:
    """Given the loaded config (None: the default zone) and --utc, set the zone of every time shown."""
    from citydc.cli import timefmt

    timefmt.set_zone(None if loaded is None else loaded.config.timezone, utc)


def progress(*columns: Any, enabled: bool = True) -> Any:
    """Return a transient Rich progress display on stderr, shown only on a terminal (quiet when piped,
    mailed by cron or with ``enabled`` False); the columns default to description, bar, count, time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = columns or (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=_consoles()[1], transient=True,
                    disable=not (enabled and _consoles()[1].is_terminal))


def print_json(data: Any) -> None:
    click.echo(json_text(data))


def json_text(data: Any) -> str:
    """Given data, return ``json.dumps(data, indent=2, ensure_ascii=False, default=str)``.

    Plain data (dicts with string keys, lists, strings, integers, booleans, null: no float, whose text
    differs) is encoded by orjson, which gives those very characters (a unit test compares both) several
    times faster: ``citydc audit auth --json`` prints thousands of detections. Anything else, or what
    orjson refuses (an integer beyond 64 bits, a lone surrogate), goes through json as before.
    """
    if _plain(data):
        import orjson

        try:
            return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
        except (orjson.JSONEncodeError, TypeError):
            pass
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def _plain(data: Any) -> bool:
    todo = [data]
    while todo:
        value = todo.pop()
        kind = type(value)
        if kind is dict:
            if not all(type(k) is str for k in value):
                return False
            todo.extend(value.values())
        elif kind is list or kind is tuple:
            todo.extend(value)
        elif not (kind is str or kind is int or kind is bool or value is None):
            return False
    return True


class OutputError(Exception):
    """Writing the results to stdout failed: the reader went away (a closed pipe), the disk is full, or the
    command was started with stdout closed. Not an OSError, so that no ``except OSError`` around a command's
    own files takes it for theirs (nor click's, which would exit 1 on a closed pipe): main() reports it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = code
        self.reason = reason


class _StdoutRaw(io.RawIOBase):
    """File descriptor 1 under sys.stdout (None: the process started with it closed). A write that fails
    raises OutputError; once ``discarding``, writes go nowhere (what was buffered is dropped at exit)."""

    def __init__(self, fd: int | None) -> None:
        super().__init__()
        self.fd = fd
        self.discarding = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        if self.fd is None:
            raise OSError(errno.EBADF, "standard output is closed")
        return self.fd

    def isatty(self) -> bool:
        return self.fd is not None and os.isatty(self.fd)

    def write(self, data) -> int | None:
        if self.discarding:
            return memoryview(data).nbytes
        if self.fd is None:
            raise OutputError(errno.EBADF, "standard output is closed")
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return None  # a non-blocking stdout that is full: the buffer tries again
        except OSError as exc:
            raise OutputError(exc.errno, exc.strerror) from None


_stdout_raw: _StdoutRaw | None = None


def guard_stdout() -> None:
    """Put sys.stdout on a file descriptor 1 whose failed writes raise OutputError (see output_failed): a
    closed pipe, a full disk or a closed stdout is then told apart from a failing file of the command.
    Only the process's own stdout is replaced (a test that captured it keeps its capture)."""
    global _stdout_raw
    old = sys.stdout
    if old is not None and old is not sys.__stdout__:
        return
    try:
        os.fstat(1)
        raw = _StdoutRaw(1)
    except OSError:
        # Started with stdout closed (`>&-`): /dev/null holds descriptor 1, so that no file the command opens
        # (the database, a state file) gets it and receives what a library or a child process prints.
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 1:
            os.dup2(null, 1)
            os.close(null)
        raw = _StdoutRaw(None)
    if old is not None:
        old.flush()
    _stdout_raw = raw
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw), encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or "strict", newline="\n",
        line_buffering=bool(getattr(old, "line_buffering", False)),
        write_through=bool(getattr(old, "write_through", False)))


def output_failed(exc: OutputError) -> NoReturn:
    """Given the failed write to stdout, end the command: quietly with 141 when the reader went away (what
    `head` does on purpose), else one line and exit 1 (a full disk, a closed stdout: the results are lost)."""
    if _stdout_raw is not None:
        _stdout_raw.discarding = True  # the flush at the interpreter's exit must not fail (and print) again
    if exc.errno == errno.EPIPE:
        sys.exit(EXIT_BROKEN_PIPE)
    fail(f"cannot write output: {exc.reason}")


def fail_write(path: str | os.PathLike, exc: OSError, what: str) -> NoReturn:
    """Given a file the command was told to write (``what``: the option or field naming it) and why it could
    not, end with one line naming both: exit 2 when the path itself is wrong (a missing directory, no
    permission, a read-only file system), 1 when writing failed (a full disk, an I/O error)."""
    wrong_path = exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM,
                               errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP)
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EEXIST and exc.filename:  # creating its directory met a file of that name
        reason = f"{exc.filename} is not a directory"
    fail(f"{what}: cannot write {path}: {reason}", EXIT_CONFIG if wrong_path else EXIT_FAILED)


def fail(message: str, code: int = EXIT_FAILED, hint: str | None = None) -> NoReturn:
    err = _consoles()[1]
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]{escape(hint)}[/]")
    sys.exit(code)


def exit_now(code: int = 0) -> NoReturn:
    """Given an exit code, flush stdout, stderr and the log handlers and end the process at once.

    For long-running commands that have closed their own outputs: the interpreter's teardown
    (collecting every module and array) costs tens of milliseconds of CPU and does nothing the
    kernel does not do when the process ends."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken pipe: nothing left to flush
            stream.flush()
    os._exit(code)


SYSTEM_CONFIG = "/etc/citydc/citydc.yaml"  # the last place looked in (tests point it elsewhere)


def config_path(explicit: str | None) -> Path:
    """Return the config file: --config, then $CITYDC_CONFIG, then ./citydc.yaml, then SYSTEM_CONFIG."""
    for candidate in (explicit, os.environ.get("CITYDC_CONFIG"), "citydc.yaml", SYSTEM_CONFIG):
        if candidate and (explicit == candidate or Path(candidate).exists()):
            return Path(candidate)
    fail("no config file found", EXIT_CONFIG,
         "pass --config FILE, set CITYDC_CONFIG, or start from `citydc config sample > citydc.yaml`")


def report_invalid(exc: ConfigInvalid, as_json: bool = False) -> NoReturn:
    if as_json:
        print_json({"file": exc.filename, "valid": False,
                    "errors": [{"path": e.path, "line": e.line, "message": e.message} for e in exc.errors]})
    else:
        err = _consoles()[1]
        for e in exc.errors:
            err.print(f"[red]{escape(e.format(exc.filename))}[/]")
        err.print(f"[bold red]{len(exc.errors)} error(s)[/] in {escape(exc.filename)}; nothing was run.")
    sys.exit(EXIT_CONFIG)


def load_config(ctx: click.Context) -> LoadedConfig:
    """Load the config named on the command line (cached on the context); exit 2 if invalid."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "config" not in root.obj:
        from citydc.config.loader import ConfigInvalid, load

        try:
            root.obj["config"] = load(config_path(root.obj.get("config_path")))
        except ConfigInvalid as exc:
            report_invalid(exc)
        warning = files.apply_group(root.obj["config"].config.files.group)
        if warning is not None:
            _consoles()[1].print(f"[yellow]warning:[/] {escape(warning)}")
    return root.obj["config"]

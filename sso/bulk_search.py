"""The bulk read of the accounts by ``ldapsearch``, started before anything else of the audit.

Kept apart from directory.py (which imports ldap3) so that ``citydc audit ldap`` can start the
searches as soon as the config is loaded, and import ldap3, the rules and the rest while slapd and
ldapsearch already work (docs/ldap-audit.md, "Performance"). ``prepare`` loads the reviewed files
first (a bad baseline or accepted-risk file stops the run before any connection), then starts them.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citydc import execute
from citydc.config.models import LdapSource
from citydc.sso import files, ldif
from citydc.sso.model import ACCOUNT_ATTRIBUTES, Account

__all__ = ["BulkSearch", "DirectoryError", "Prepared", "ldapsearch_argv", "partition_filters", "prepare"]


class DirectoryError(RuntimeError):
    """The directory could not be reached, verified, bound or read. Never holds the password."""


def ldapsearch_argv(src: LdapSource, password_file: Path, base: str, flt: str, attrs: Sequence[str],
                    binary: str = "ldapsearch") -> tuple[str, ...]:
    """Given the source, the password file and the search, return the paged ldapsearch argv.

    -LLL: entries only; ldif-wrap=no: one line per value; -ZZ: StartTLS is mandatory.
    """
    argv = [binary, "-LLL", "-o", "ldif-wrap=no", "-x", "-H", src.url]
    if src.url.startswith("ldap://") and src.start_tls:
        argv.append("-ZZ")
    argv += ["-D", src.bind_dn, "-y", str(password_file), "-b", base, "-E", f"pr={src.page_size}/noprompt",
             "-l", str(int(src.timeout_seconds)), flt, *attrs]
    return tuple(argv)


# First characters of uid, split into the leading parts of a partitioned read; the last part is "none of these".
_UID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


def partition_filters(flt: str, parts: int) -> list[str]:
    """Given the account filter and a number of parts, return filters of disjoint parts covering it exactly.

    Part i < n-1 takes the uids starting with its share of 0-9a-z (substring matching of uid ignores case);
    the last part is the filter AND NOT any of those, so an account with no uid, or an odd first character,
    is read exactly once.
    """
    if parts <= 1:
        return [flt]
    step = len(_UID_CHARS) / parts
    groups = [_UID_CHARS[round(i * step):round((i + 1) * step)] for i in range(parts - 1)]
    anyof = ["(|" + "".join(f"(uid={c}*)" for c in g) + ")" for g in groups]
    return [f"(&{flt}{a})" for a in anyof] + [f"(&{flt}(!(|{''.join(anyof)})))"]


class BulkSearch:
    """The accounts read by ``ldapsearch``: ``bulk_searches`` paged searches in parallel, started at once.

    Each process's output is drained by a thread into a bounded queue (at most ``max_buffered`` blocks
    of about ``block_size`` bytes), so the searches run while the caller still binds, probes and reads the policies,
    and memory stays bounded when the caller is slower. ``blocks`` yields LDIF text cut at entry
    boundaries. Use as a context manager: leaving it kills what still runs and removes the password file.
    """

    def __init__(self, src: LdapSource, password: str, *, ca_file: Path | None = None,
                 ldapsearch: str = "ldapsearch", max_buffered: int = 32, block_size: int = 1 << 20) -> None:
        self.src, self._password, self.ldapsearch = src, password, ldapsearch
        self.ca_file = ca_file if ca_file is not None else src.ca_file
        self._queue: queue.Queue[tuple[int, bytes | BaseException | None]] = queue.Queue(max_buffered)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._done: list[execute.Streamed] = []
        self._pwfile: str | None = None
        self.block_size = block_size

    def __enter__(self) -> BulkSearch:
        return self.start()

    def start(self) -> BulkSearch:
        """Start the searches (once: a second call, as ``with`` on a started search, does nothing); return self."""
        if self._pwfile is not None:
            return self
        env = {"LDAPTLS_REQCERT": "demand"}
        if self.ca_file:
            env["LDAPTLS_CACERT"] = str(self.ca_file)
        fd, self._pwfile = tempfile.mkstemp(prefix="citydc-ldap-", suffix=".pw")  # 0600 by construction
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._password)  # -y uses the file's bytes as they are: no newline
        for i, flt in enumerate(partition_filters(self.src.account_filter, self.src.bulk_searches)):
            argv = ldapsearch_argv(self.src, Path(self._pwfile), self.src.base_dn, flt, ACCOUNT_ATTRIBUTES,
                                   self.ldapsearch)
            done = execute.Streamed()
            self._done.append(done)
            t = threading.Thread(target=self._pump, args=(i, argv, done, env), daemon=True,
                                 name=f"citydc-ldapsearch-{i}")
            t.start()
            self._threads.append(t)
        return self

    def _pump(self, i: int, argv: Sequence[str], done: execute.Streamed, env: dict[str, str]) -> None:
        chunks = execute.stream_chunks("ldapsearch", argv, done, env=env, secrets=[self._password])
        try:
            # ldapsearch writes a few KiB at a time; hand on large blocks, so the per-block work stays small.
            held: list[bytes] = []
            size = 0
            for chunk in chunks:
                held.append(chunk)
                size += len(chunk)
                if size >= self.block_size:
                    if not self._put(i, b"".join(held)):
                        return
                    held, size = [], 0
            if held and not self._put(i, b"".join(held)):
                return
            self._queue.put((i, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._queue.put((i, exc))
        finally:
            chunks.close()  # kills the process if it still runs

    def _put(self, i: int, data: bytes) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((i, data), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def blocks(self) -> Iterator[tuple[str, int]]:
        """Yield (LDIF text of whole entries, its first line number in its search's output). Raise DirectoryError."""
        rest = [b""] * len(self._threads)
        line = [1] * len(self._threads)
        running = len(self._threads)
        while running:
            i, chunk = self._queue.get()
            if isinstance(chunk, BaseException):
                if isinstance(chunk, execute.ToolFailed):
                    raise DirectoryError(str(chunk))
                raise chunk
            if chunk is None:
                running -= 1
                if rest[i].strip(b"\n"):
                    yield rest[i].decode("utf-8", "replace") + "\n\n", line[i]
                continue
            data = rest[i] + chunk if rest[i] else chunk
            cut = data.rfind(b"\n\n")
            if cut < 0:
                rest[i] = data
                continue
            done, rest[i] = data[:cut + 2], data[cut + 2:]
            yield done.decode("utf-8", "replace"), line[i]
            line[i] += done.count(b"\n")
        for t in self._threads:
            t.join(timeout=10)
        for done in self._done:
            if done.rc != 0:
                raise DirectoryError(f"ldapsearch failed ({done.meaning}): {done.stderr.strip()[-400:]}")

    def accounts(self) -> Iterator[Account]:
        """Yield every account (the careful way: each parsed and typed). Raise DirectoryError."""
        try:
            for text, line in self.blocks():
                for dn, attrs in ldif._entries(text, line):
                    yield Account.from_attrs(dn, attrs)
        except ldif.LdifError as exc:
            raise DirectoryError(f"ldapsearch output: {exc}") from None

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while True:  # unblock pumps waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for t in self._threads:
            t.join(timeout=10)
        if self._pwfile:
            Path(self._pwfile).unlink(missing_ok=True)




@dataclass
class Prepared:
    """What an audit needs before it connects: the reviewed files, and the bulk search already running
    (None with ``bulk_reader: ldap3``). ``close`` stops the search (run_audit does, when it ends)."""

    baseline: dict[str, list[str]] | None
    acceptances: list[files.Acceptance] = field(default_factory=list)
    bulk: BulkSearch | None = None

    def close(self) -> None:
        if self.bulk is not None:
            self.bulk.__exit__(None, None, None)


def prepare(src: LdapSource, password: str, resolve: Callable[[Path], Path] = lambda p: p) -> Prepared:
    """Given a source, its bind password and a path resolver, load the baseline and accepted-risk files, then
    start the bulk search (``bulk_reader: ldapsearch``); return them for ``run_audit``.

    Raise files.FileInvalid for a bad file (nothing started then), DirectoryError if ldapsearch cannot start.
    """
    baseline = files.load_baseline(resolve(src.baseline_file)) if src.baseline_file else None
    acceptances = files.load_accepted(resolve(src.accepted_risk_file)) if src.accepted_risk_file else []
    bulk = None
    if src.bulk_reader == "ldapsearch":
        bulk = BulkSearch(src, password, ca_file=resolve(src.ca_file) if src.ca_file else None).start()
    return Prepared(baseline, acceptances, bulk)

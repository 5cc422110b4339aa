"""The bulk read of the accounts by ``ldapsearch``, started before anything else of the audit.

Kept apart from directory.py (which imports ldap3) so that ``citydc audit ldap`` can start the
searches as soon as the config is loaded, and import ldap3, the rules and the rest while slapd and
ldapsearch already work (docs/ldap-audit.md, "Performance"). ``prepare`` loads the reviewed files
first (a bad baseline or accepted-risk file stops the run before any connection), then starts them.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citydc import execute
from citydc.config.models import LdapSource
from citydc.sso import files, ldif
from citydc.sso.model import ACCOUNT_ATTRIBUTES, Account

__all__ = ["NO_SUCH_OBJECT", "SIZE_LIMIT_EXCEEDED", "SIZE_LIMIT_HINT", "BulkSearch", "DirectoryError", "Prepared",
           "ldapsearch_argv", "ldapsearch_failure", "no_such_object", "partition", "password_pipe", "prepare"]


class DirectoryError(RuntimeError):
    """The directory could not be reached, verified, bound or read. Never holds the password."""


def password_pipe(password: str) -> tuple[int, Path]:
    """Given the bind password, return (the read end of a pipe holding it, the path ldapsearch's ``-y`` opens).

    The password never sits in a named file: a file in /tmp outlived a SIGTERM or SIGKILL of citydc (the
    kill of a systemd stop or a ``timeout``), password in clear. The caller hands the read end to one
    ldapsearch (``pass_fds``), which reads it to its end (``-y`` takes the bytes as they are: no newline),
    and closes it once that process has started or ended. Raise DirectoryError when it does not fit the
    pipe (64 KiB: no password is that long).
    """
    data = password.encode("utf-8")
    r, w = os.pipe()  # both ends close-on-exec: only the process given ``pass_fds=(r,)`` inherits it
    try:
        os.set_blocking(w, False)
        if data and os.write(w, data) != len(data):
            raise BlockingIOError
    except BlockingIOError:
        os.close(r)
        raise DirectoryError("the bind password does not fit a pipe (over 64 KiB)") from None
    finally:
        os.close(w)  # EOF after the password
    return r, Path(f"/dev/fd/{r}" if os.path.isdir("/dev/fd") else f"/proc/self/fd/{r}")


# ldapsearch exits with the LDAP result code of a search the server refused (RFC 4511 4.1.9).
NO_SUCH_OBJECT = 32
SIZE_LIMIT_EXCEEDED = 4
# What to do about it: slapd stops a paged search of more entries than its size limit (olcSizeLimit) unless the
# audit account's limits lift the total of a paged search; "Size limit exceeded (4)" alone does not say that.
SIZE_LIMIT_HINT = ("the directory has more entries than the audit account may read: give it "
                   "olcLimits: dn.exact=\"<bind_dn>\" size=unlimited size.prtotal=unlimited on the database")


def ldapsearch_failure(src: LdapSource, base: str, done: execute.Streamed | execute.Result,
                       what: str = "ldapsearch") -> str:
    """Given the source, the base of a failed search, its ended ldapsearch and what it was, return the
    one-line message. A base that does not exist (noSuchObject) says so, naming base_dn."""
    stderr = done.masked_stderr() if isinstance(done, execute.Result) else done.stderr
    if done.rc == NO_SUCH_OBJECT:
        return no_such_object(src, base, next((ln.split(":", 1)[1].strip() for ln in stderr.splitlines()
                                               if ln.lower().startswith("matched dn:")), ""))
    meaning = f"exit code {done.rc}" if done.meaning.startswith("unknown exit code") else done.meaning
    hint = f" ({SIZE_LIMIT_HINT})" if done.rc == SIZE_LIMIT_EXCEEDED else ""
    return f"{what} failed ({meaning}): {' '.join(stderr.split())[-400:]}{hint}"


def no_such_object(src: LdapSource, base: str, matched: str = "") -> str:
    """Given the source, the base of a search the server answered noSuchObject (32) and the matched DN it gave
    (the nearest entry that exists), return the message."""
    nearest = f" (the nearest entry that exists: {matched})" if matched else ""
    if files.dn_key(base) == files.dn_key(src.base_dn):
        return f"no such object: base_dn {base} does not exist{nearest}"
    return f"no such object: {base} (under base_dn {src.base_dn}) does not exist: removed during the read?"


def ldapsearch_argv(src: LdapSource, password_file: Path, base: str, flt: str, attrs: Sequence[str],
                    binary: str = "ldapsearch", scope: str = "sub") -> tuple[str, ...]:
    """Given the source, the password file and the search, return the paged ldapsearch argv.

    -LLL: entries only; ldif-wrap=no: one line per value; -ZZ: StartTLS is mandatory.
    """
    argv = [binary, "-LLL", "-o", "ldif-wrap=no", "-x", "-H", src.url]
    if src.url.startswith("ldap://") and src.start_tls:
        argv.append("-ZZ")
    argv += ["-D", src.bind_dn, "-y", str(password_file), "-b", base, "-s", scope, "-E",
             f"pr={src.page_size}/noprompt", "-l", str(int(src.timeout_seconds)), flt, *attrs]
    return tuple(argv)


def partition(base: str, children: Sequence[str]) -> list[tuple[str, str]]:
    """Given the base DN and the DNs of its children, return the (base, scope) searches that read its subtree.

    The base entry alone plus each child's whole subtree is exactly the base's subtree, each entry once
    (aliases are not followed: ldapsearch's default). With fewer than two children there is nothing to split.
    """
    if len(children) < 2:
        return [(base, "sub")]
    return [(base, "base"), *((child, "sub") for child in children)]


class BulkSearch:
    """The accounts read by ``ldapsearch``, started at once; with ``bulk_searches`` > 1, read as parallel
    searches over the base's subtrees.

    One paged search is a ping-pong: slapd builds a page while ldapsearch waits, then ldapsearch decrypts
    and writes it while slapd waits. Splitting the read by subtree (the base entry, then each child's
    subtree: ``partition``) keeps both busy; at most ``bulk_searches`` ldapsearch processes run at a time.
    The children are listed first (one small one-level search, in a thread, so ``start`` returns at once).
    Each process's output is drained by a thread into a bounded queue (at most ``max_buffered`` blocks
    of about ``block_size`` bytes), so the searches run while the caller still binds, probes and reads
    the policies, and memory stays bounded when the caller is slower. ``blocks`` yields LDIF text cut at
    entry boundaries. Use as a context manager: leaving it kills what still runs. Each ldapsearch reads the
    password from a pipe of its own (``password_pipe``): nothing holding it is left on disk, whatever ends
    citydc.
    """

    def __init__(self, src: LdapSource, password: str, *, ca_file: Path | None = None,
                 ldapsearch: str = "ldapsearch", max_buffered: int = 32, block_size: int = 1 << 20) -> None:
        self.src, self._password, self.ldapsearch = src, password, ldapsearch
        self.ca_file = ca_file if ca_file is not None else src.ca_file
        # (stream, data): stream -1 carries the number of searches (or the listing's error) before any data.
        self._queue: queue.Queue[tuple[int, bytes | int | BaseException | None]] = queue.Queue(max_buffered)
        self._stop = threading.Event()
        self._slots = threading.Semaphore(max(1, src.bulk_searches))
        self._planner: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._done: list[execute.Streamed] = []
        self._started = False
        # In each ldapsearch's environment: tells this read's processes from any other's (``_kill_searches``).
        self._marker = f"CITYDC_LDAP_READ={os.getpid()}-{uuid.uuid4().hex}"
        self._env: dict[str, str] = {}
        self.block_size = block_size
        self.searches: list[tuple[str, str]] = []  # (base, scope) of each search, once planned
        # Search references met (``# refldap://…`` comment lines of -LLL output): subtrees held by another server.
        # ldapsearch does not follow them (nor should it: it would bind there), so their accounts are not read.
        self.referrals: list[str] = []

    def __enter__(self) -> BulkSearch:
        return self.start()

    def start(self) -> BulkSearch:
        """Start the read (once: a second call, as ``with`` on a started search, does nothing); return self."""
        if self._started:
            return self
        self._started = True
        name, value = self._marker.split("=", 1)
        self._env = {"LDAPTLS_REQCERT": "demand", name: value}
        if self.ca_file:
            self._env["LDAPTLS_CACERT"] = str(self.ca_file)
        if self.src.bulk_searches <= 1:
            self._launch([(self.src.base_dn, "sub")])
        else:
            self._planner = threading.Thread(target=self._plan, daemon=True, name="citydc-ldapsearch-plan")
            self._planner.start()
        return self

    def _plan(self) -> None:
        try:
            searches = partition(self.src.base_dn, self._children())
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(-1, exc)
            return
        self._launch(searches)

    def _children(self) -> list[str]:
        """Return the DNs of the base's children (one-level search, no attributes). Raise ToolFailed."""
        fd, path = password_pipe(self._password)
        try:
            argv = ldapsearch_argv(self.src, path, self.src.base_dn, "(objectClass=*)", ["1.1"], self.ldapsearch,
                                   scope="one")
            res = execute.run("ldapsearch", argv, env=self._env, secrets=[self._password],
                              timeout=self.src.timeout_seconds + 5, pass_fds=(fd,))
        finally:
            os.close(fd)
        if not res.ok:
            raise execute.ToolFailed(ldapsearch_failure(self.src, self.src.base_dn, res,
                                                        f"ldapsearch (listing {self.src.base_dn})"))
        try:
            return [dn for dn, _ in ldif.parse(res.stdout.splitlines())]
        except ldif.LdifError as exc:
            raise execute.ToolFailed(f"ldapsearch (listing {self.src.base_dn}) output: {exc}") from None

    def _launch(self, searches: list[tuple[str, str]]) -> None:
        self.searches = searches
        if not self._put(-1, len(searches)):  # before any stream's data; False: the caller has left
            return
        for i, (base, scope) in enumerate(searches):
            done = execute.Streamed()
            self._done.append(done)
            t = threading.Thread(target=self._pump, args=(i, base, scope, done), daemon=True,
                                 name=f"citydc-ldapsearch-{i}")
            self._threads.append(t)
            t.start()

    def _pump(self, i: int, base: str, scope: str, done: execute.Streamed) -> None:
        with self._slots:
            if self._stop.is_set():
                return
            try:
                fd, path = password_pipe(self._password)
            except DirectoryError as exc:
                self._put(i, exc)
                return
            argv = ldapsearch_argv(self.src, path, base, self.src.account_filter, ACCOUNT_ATTRIBUTES,
                                   self.ldapsearch, scope=scope)
            chunks = execute.stream_chunks("ldapsearch", argv, done, env=self._env, secrets=[self._password],
                                           pass_fds=(fd,))
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
                self._put(i, None)
            except BaseException as exc:  # handed to the consumer, which raises it
                self._put(i, exc)
            finally:
                chunks.close()  # kills the process if it still runs
                os.close(fd)

    def _put(self, i: int, data: bytes | int | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((i, data), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def blocks(self) -> Iterator[tuple[str, int]]:
        """Yield (LDIF text of whole entries, its first line number in its search's output). Raise DirectoryError."""
        rest: list[bytes] = []
        line: list[int] = []
        running: int | None = None  # searches not yet ended; unknown until the plan arrives
        while running is None or running:
            i, chunk = self._queue.get()
            if isinstance(chunk, BaseException):
                if isinstance(chunk, execute.ToolFailed):
                    raise DirectoryError(str(chunk))
                raise chunk
            if i < 0:
                running = int(chunk)  # type: ignore[arg-type]
                rest, line = [b""] * running, [1] * running
                continue
            if chunk is None:
                running -= 1  # type: ignore[operator]
                if rest[i].strip(b"\n"):
                    self._references(rest[i])
                    yield rest[i].decode("utf-8", "replace") + "\n\n", line[i]
                continue
            assert isinstance(chunk, bytes)
            data = rest[i] + chunk if rest[i] else chunk
            cut = data.rfind(b"\n\n")
            if cut < 0:
                rest[i] = data
                continue
            done, rest[i] = data[:cut + 2], data[cut + 2:]
            self._references(done)
            yield done.decode("utf-8", "replace"), line[i]
            line[i] += done.count(b"\n")
        for t in self._threads:
            t.join(timeout=10)
        for (base, _), done in zip(self.searches, self._done, strict=True):
            if done.rc != 0:
                what = "ldapsearch" if len(self.searches) == 1 else f"ldapsearch (under {base})"
                raise DirectoryError(ldapsearch_failure(self.src, base, done, what))

    def _references(self, data: bytes) -> None:
        """Given LDIF of whole entries, add its search references to ``referrals`` (one C search when it has none)."""
        if b"# ref" in data:
            for ln in data.split(b"\n"):
                if ln.startswith(b"# ref"):
                    self.referrals.append(ln[5:].lstrip(b": ").decode("utf-8", "replace"))

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
        if any(t.is_alive() for t in self._threads):
            self._kill_searches()
        if self._planner is not None:
            self._planner.join(timeout=10)
        for t in list(self._threads):
            t.join(timeout=10)

    def _kill_searches(self) -> None:
        """Kill this read's ldapsearch processes that still run: their pumps wait on them (a server that stops
        answering, or trickles bytes, past the audit's deadline) and would let them outlive the command.
        They are the children of this process whose environment holds this read's marker."""
        if not self._started:
            return
        marker, me = os.fsencode(self._marker), os.getpid()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                parent = int((proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
                if parent == me and marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)  # its pump's stream reaps it
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile, or not ours to read


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

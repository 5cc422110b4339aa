"""The bind password reaches ldapsearch through a pipe (``-y /dev/fd/N``), never a named file: a SIGTERM of
citydc while ldapsearch runs (a systemd stop, ``timeout``) used to leave /tmp/citydc-ldap-*.pw holding it in
clear (findings-ldap item 2). A stand-in for ldapsearch at the process boundary checks what ``-y`` gives it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.config.models import LdapSource
from citydc.sso import bulk_search

PASSWORD = "pipe-Test-Bind-Pass-5519"

# Reads -y as ldapsearch does, says whether it was a regular file and held the password, prints one entry, then
# (with HOLD set) waits, as a search of a large directory does, so that citydc can be killed meanwhile.
FAKE = r"""#!/bin/sh
y=""
while [ $# -gt 0 ]; do
  case "$1" in -y) y="$2"; shift;; esac
  shift
done
kind=other; [ -f "$y" ] && kind=regular
got=no; [ "$(cat "$y")" = "$EXPECTED" ] && got=yes
echo "$y $kind $got" >> "$RECORD"
printf 'dn: uid=a1,dc=x\nuid: a1\n\n'
if [ -n "$HOLD" ]; then echo $$ > "$HOLD"; exec sleep 60; fi
"""


def src(**kw) -> LdapSource:
    base = dict(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=x", bind_password="env:PW",
                base_dn="dc=x", site="siwei")
    return LdapSource(**{**base, **kw})


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "ldapsearch"
    path.write_text(FAKE)
    path.chmod(0o755)
    monkeypatch.setenv("EXPECTED", PASSWORD)
    monkeypatch.setenv("RECORD", str(tmp_path / "record"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # where a temporary file of the password would be made
    return path


def _holding_password(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]


@pytest.mark.parametrize("searches", [1, 3])
def test_each_ldapsearch_reads_the_password_from_a_pipe_of_its_own(fake, tmp_path, searches):
    with bulk_search.BulkSearch(src(bulk_searches=searches), PASSWORD, ldapsearch=str(fake)) as bulk:
        assert [a.dn for a in bulk.accounts()]
    records = [line.split() for line in (tmp_path / "record").read_text().splitlines()]
    assert len(records) == (1 if searches == 1 else 2)  # the listing (it gives one child: no split), the read
    for path, kind, got in records:
        assert path.startswith(("/dev/fd/", "/proc/self/fd/")) and kind == "other" and got == "yes", records
    assert not any((tmp_path / "tmp").iterdir())


def _pipes() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # listdir's own descriptor, closed by now
            if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                out.add(fd)
    return out


def test_no_pipe_end_is_left_open(fake):
    before = _pipes()
    with bulk_search.BulkSearch(src(bulk_searches=2), PASSWORD, ldapsearch=str(fake)) as bulk:
        list(bulk.accounts())
    assert _pipes() <= before


def test_a_password_too_long_for_a_pipe_is_refused_without_hanging():
    with pytest.raises(bulk_search.DirectoryError, match="does not fit a pipe"):
        bulk_search.password_pipe("x" * (1 << 21))


CHILD = """
import sys
from citydc.config.models import LdapSource
from citydc.sso import bulk_search
src = LdapSource(name="city", url="ldap://127.0.0.1:13389", bind_dn="cn=auditor,dc=x", bind_password="env:PW",
                 base_dn="dc=x", site="siwei")
with bulk_search.BulkSearch(src, sys.argv[2], ldapsearch=sys.argv[1]) as bulk:
    for _ in bulk.blocks():
        print("block", flush=True)
"""


def test_sigterm_while_ldapsearch_runs_leaves_no_password_on_disk(fake, tmp_path, monkeypatch):
    hold = tmp_path / "hold.pid"
    monkeypatch.setenv("HOLD", str(hold))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(fake), PASSWORD], stdout=subprocess.DEVNULL)
    fake_pid = None
    try:
        deadline = time.monotonic() + 20  # until ldapsearch has read -y and holds on, as on a large directory
        while not hold.exists() or not hold.read_text().strip():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        fake_pid = int(hold.read_text())
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if fake_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(fake_pid, signal.SIGKILL)
    assert child.returncode == -signal.SIGTERM  # killed as systemd's stop kills it: no handler, no cleanup
    assert _holding_password(tmp_path / "tmp") == [] and list((tmp_path / "tmp").iterdir()) == []
    assert (tmp_path / "record").read_text().split()[1:] == ["other", "yes"]
    assert _holding_password(Path(os.environ.get("TMPDIR", "/tmp"))) == []


def test_leaving_the_read_early_kills_its_ldapsearch(fake, tmp_path, monkeypatch):
    """This read's processes are told by a marker in their environment (the password file's name was it)."""
    hold = tmp_path / "hold.pid"
    monkeypatch.setenv("HOLD", str(hold))
    started = time.monotonic()
    with bulk_search.BulkSearch(src(), PASSWORD, ldapsearch=str(fake)):
        while not hold.exists() or not hold.read_text().strip():
            assert time.monotonic() - started < 20
            time.sleep(0.05)
        pid = int(hold.read_text())
    assert time.monotonic() - started < 15
    with contextlib.suppress(FileNotFoundError):  # gone, or a zombie for an instant
        assert (Path("/proc") / str(pid) / "stat").read_text().split(") ", 1)[1][0] == "Z"

"""classify_failure on restic 0.14's own stderr: network errors are "repository unreachable" even though restic
adds its "Is there a repository" hint, and a Go stack trace does not hide the error before it."""

from __future__ import annotations

import pytest

from citydc.backup import restic

HINT = "Is there a repository at the following location?\nrest:http://127.0.0.1:12399/r1/\n"
OPEN = 'Fatal: unable to open config file: client.Head: Head "http://127.0.0.1:12399/r1/config": '

# restic 0.14 `copy` under `ulimit -f 2048` (recorded; the middle of the trace cut out)
FILE_TOO_LARGE = """\
write /tmp/restic-temp-pack-3192452740: file too large
Write
github.com/restic/restic/internal/pack.(*Packer).Add
\tgithub.com/restic/restic/internal/pack/pack.go:49
github.com/restic/restic/internal/repository.(*packerManager).SaveBlob
\tgithub.com/restic/restic/internal/repository/packer_manager.go:85
runtime.goexit
\truntime/asm_amd64.s:1594
"""


@pytest.mark.parametrize("cause", [
    "dial tcp 127.0.0.1:12399: connect: connection refused",
    "dial tcp: lookup backup.fengshan.example on 10.0.0.53:53: no such host",
    "dial tcp 10.20.0.5:8000: i/o timeout",
    "dial tcp 10.20.0.5:8000: connect: no route to host",
    "dial tcp 10.20.0.5:8000: connect: network is unreachable",
])
def test_a_network_error_is_unreachable_before_the_no_repository_hint(cause):
    assert restic.classify_failure(f"{OPEN}{cause}\n{HINT}") == "repository unreachable"


def test_a_missing_repository_is_still_no_repository():
    stderr = "Fatal: unable to open config file: stat /srv/r/config: no such file or directory\n" + HINT
    assert restic.classify_failure(stderr) == "no repository"


def test_a_stack_trace_gives_the_error_line_before_it():
    assert restic.classify_failure(FILE_TOO_LARGE) == "write /tmp/restic-temp-pack-3192452740: file too large"


def test_a_go_panic_gives_the_panic_line():
    stderr = ("panic: runtime error: index out of range [3]\n\ngoroutine 1 [running]:\nmain.main()\n"
              "\t/src/m.go:9 +0x1d\n")
    assert restic.classify_failure(stderr) == "panic: runtime error: index out of range [3]"


def test_without_a_trace_or_fatal_line_the_last_line_stays_the_reason():
    assert restic.classify_failure("reading a\nsomething odd happened\n") == "something odd happened"
    assert restic.classify_failure("") == "failed"

"""An overall deadline for the read of one source, however its server answers.

``timeout_seconds`` bounds each wait: a server that sends a few bytes now and then (a half-broken
middlebox, a hostile endpoint: a BER header announcing 2 GB, then ten bytes every half second) resets
it at every byte, and would hold a nightly audit forever. The deadline is a timer signal (SIGALRM) that
interrupts whatever the main thread waits on (a socket read of ldap3, the queue of the ldapsearch
pumps) with ``DeadlinePassed``; it derives from ``timeout_seconds`` (``DEADLINE_FACTOR`` times it).
Off the main thread, where no signal can be delivered, the deadline is not enforced.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["DEADLINE_FACTOR", "DeadlinePassed", "deadline", "deadline_seconds"]

# A healthy read is many requests of at most timeout_seconds each; 100k accounts take a few seconds
# (bench/ldap_audit.py). 60 requests' worth bounds the whole read: 30 min at the default 30 s.
DEADLINE_FACTOR = 60


class DeadlinePassed(BaseException):
    """The deadline passed. A BaseException, like KeyboardInterrupt: no ``except Exception`` of a library
    (ldap3 turns socket errors into its own) swallows or rewords it on its way out."""


def deadline_seconds(timeout_seconds: float) -> float:
    """Given a source's per-request timeout, return the deadline of its whole read."""
    return DEADLINE_FACTOR * timeout_seconds


@contextlib.contextmanager
def deadline(seconds: float, message: str) -> Iterator[None]:
    """Raise DeadlinePassed(message) in the main thread once ``seconds`` have passed inside the block.

    The timer fires once: cleanup run while the exception leaves the block is not interrupted again."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def passed(signum: int, frame: object) -> None:
        raise DeadlinePassed(message)

    previous = signal.signal(signal.SIGALRM, passed)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

"""Let other threads of the process run during long CPU-bound loops of the shipper.

The shipper reads (and prepares) the next batch in a helper thread while another thread waits
for the store. CPython hands the GIL to a waiting thread only after the switch interval (5 ms)
unless the running thread lets go; so without this, every wake-up of the thread talking to
Elasticsearch (request sent, answer received) waited up to 5 ms while the reader parsed, which
bench/seclog.py measured as idle time of Elasticsearch between bulk requests.
"""

from __future__ import annotations

import threading
import time

__all__ = ["EVERY", "let_others_run"]

EVERY = 32  # events between two yields: a fraction of a millisecond of work


def let_others_run(count: int) -> None:
    """Given a running count of items processed, release the GIL briefly every ``EVERY`` items.

    Only when the process has other threads: ``sleep(0)`` is the one call that reliably hands the
    GIL over (a zero-timeout ``select`` does not), but it gives up the CPU too, about 80 µs on the
    lab machine, which a lone thread (``citydc log verify``) should not pay.
    """
    if count % EVERY == EVERY - 1 and threading.active_count() > 1:
        time.sleep(0)

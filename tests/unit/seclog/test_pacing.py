"""Pacing releases the GIL every EVERY items, and only when another thread may be waiting."""

from __future__ import annotations

import threading

from citydc.seclog import pacing


def test_yields_every_n_items_only_beside_other_threads(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(pacing.time, "sleep", sleeps.append)
    # Other tests of the session may leave a daemon thread behind: count this process as a lone thread.
    lone = threading.active_count()
    monkeypatch.setattr(pacing.threading, "active_count", lambda: threading.enumerate().__len__() - lone + 1)
    for i in range(pacing.EVERY * 3):
        pacing.let_others_run(i)
    assert sleeps == []  # a lone thread keeps the CPU
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, args=(10,))
    helper.start()
    try:
        for i in range(pacing.EVERY * 3):
            pacing.let_others_run(i)
    finally:
        stop.set()
        helper.join()
    assert sleeps == [0, 0, 0]

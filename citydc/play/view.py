"""The live terminal view of a playbook run: the current task and per-host ok/changed/failed/unreachable.

Drawn on stderr with Rich ``Live`` only when stderr is a terminal (quiet under cron or when piped);
the runner's event thread only updates the tracker, Rich redraws at its own pace.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from citydc.play.runner import COUNTS, Tracker

__all__ = ["live_view", "render"]

_STYLE = {"changed": "yellow", "failed": "red", "unreachable": "red"}


def render(tracker: Tracker, playbook: str) -> Group:
    """Given the tracker, return the renderable: a header line and one row per host seen so far."""
    with tracker.lock:
        hosts = {h: dict(c) for h, c in tracker.hosts.items()}
        task, play = tracker.task, tracker.play
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("host")
    for name in COUNTS:
        table.add_column(name, justify="right")
    for host in sorted(hosts):
        counts = hosts[host]
        table.add_row(host, *(Text(str(counts[k]), style=_STYLE.get(k, "") if counts[k] else "dim") for k in COUNTS))
    head = Text.assemble((f"{playbook}", "bold"), f"  play: {play}  " if play else "  ", ("task: ", "dim"), task)
    return Group(head, table)


def live_view(console: Console, tracker: Tracker, playbook: str) -> AbstractContextManager:
    """Return a context manager that shows the live view while the run lasts (nothing when not a terminal)."""
    if not console.is_terminal:
        return nullcontext()

    class _Renderable:
        def __rich__(self) -> Group:
            return render(tracker, playbook)

    return Live(_Renderable(), console=console, refresh_per_second=4, transient=True)

"""The one table of every command: readable at 80 columns (a cron mail) and wider.

Rules (issue 16): words a person acts on (status, site, job, device, service names, times,
numbers) are never cut, wrapped or shortened; a column empty in every row is left out; the one
free-text column (message, error, detail) goes last, takes the width that remains and is cut with
an ellipsis on one line. When even the never-cut columns do not fit, the table becomes one block
of ``key: value`` lines per row, where nothing is cut. ``--wide`` keeps every column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Rich is imported when a table is printed: the columns are declared at import time
    from rich.console import Console
    from rich.text import Text

__all__ = ["FAILURE_WORDS", "Column", "failures_first", "print_table", "status_style"]

# Words a status cell may hold that mean "look at this row": sorted first and styled.
FAILURE_WORDS = ("failure", "failed", "error", "partial", "down", "stopped", "broken")
MIN_TEXT_WIDTH = 16  # below this a message says too little: show blocks instead
EMPTY = ("", "-")


def status_style(value: str) -> str | None:
    """Given a status word, return its Rich style: red for failures, yellow for partial, green for success."""
    word = value.split(" ", 1)[0].lower()
    if word in ("success", "ok", "running", "up", "intact", "="):
        return "green"
    if word == "partial":
        return "yellow"
    if word in FAILURE_WORDS:
        return "bold red"
    return None


@dataclass(frozen=True)
class Column:
    """A column: ``text=True`` marks the one free-text column (last, cut with an ellipsis)."""

    header: str
    text: bool = False
    right: bool = False
    style: Callable[[str], str | None] | None = None
    drop: int = 0  # > 0: left out (highest first) when the table is too wide; blocks and --wide keep it


def failures_first(rows: Iterable[Sequence[str]], index: int) -> list[Sequence[str]]:
    """Given rows and the index of their status cell, return them with failures (then partial) first.

    The sort is stable: rows of the same rank keep their order.
    """
    def rank(row: Sequence[str]) -> int:
        word = str(row[index]).split(" ", 1)[0].lower()
        return 0 if word in FAILURE_WORDS and word != "partial" else 1 if word == "partial" else 2

    return sorted(rows, key=rank)


def _width(value: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in value.split("\n")), default=0)


def _kept(columns: Sequence[Column], rows: list[list[str]], wide: bool) -> list[int]:
    keep = [i for i, _ in enumerate(columns) if wide or any(row[i] not in EMPTY for row in rows)]
    # free text last, whatever order the caller gave
    return [i for i in keep if not columns[i].text] + [i for i in keep if columns[i].text]


def _fits(columns: Sequence[Column], need: dict[int, int], order: list[int], width: int) -> int:
    """Return the width left for the free-text columns (negative when the table does not fit)."""
    overhead = 2 * (len(order) - 1)  # two spaces between columns, none at the edges
    room = width - overhead - sum(need[i] for i in order if not columns[i].text)
    texts = [i for i in order if columns[i].text]
    return room - sum(min(need[i], MIN_TEXT_WIDTH) for i in texts) if texts else room


def print_table(console: Console, columns: Sequence[Column], rows: Iterable[Sequence[object]], *,
                title: str | None = None, wide: bool = False) -> None:
    """Given columns and rows of cells (None shows as empty), print them to ``console`` as a table
    that fits its width, or as blocks of ``key: value`` lines when the never-cut columns do not fit.

    Raise ValueError if a row has a different number of cells than there are columns.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [["" if c is None else str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
        for i, col in enumerate(columns):
            if col.text:
                row[i] = " ".join(row[i].split())  # one line: a newline in a message would wrap the row
    if not cells:
        _print_title(console, title)
        console.print(Text("(none)", style="dim"))
        return
    order = _kept(columns, cells, wide)
    need = {i: max([_width(columns[i].header)] + [_width(r[i]) for r in cells]) for i in order}
    shown = list(order)
    if not wide:
        # Leave out the optional columns, least needed first, until the table fits.
        for i in sorted((i for i in order if columns[i].drop), key=lambda i: -columns[i].drop):
            if _fits(columns, need, shown, console.width) >= 0:
                break
            shown.remove(i)
    spare = _fits(columns, need, shown, console.width) if shown else -1
    if spare < 0:
        _print_blocks(console, columns, cells, order, title)
        return
    texts = [i for i in shown if columns[i].text]
    _print_title(console, title)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, padding=(0, 1))
    for i in shown:
        col = columns[i]
        if col.text:
            # Each text column gets its readable minimum plus an equal share of what is left.
            share = min(need[i], MIN_TEXT_WIDTH) + spare // len(texts)
            table.add_column(col.header, width=min(need[i], share), no_wrap=True, overflow="ellipsis")
        else:
            table.add_column(col.header, width=need[i], no_wrap=True, overflow="ignore",
                             justify="right" if col.right else "left")
    for row in cells:
        table.add_row(*(_cell(columns[i], row[i]) for i in shown))
    console.print(table)


def _print_title(console: Console, title: str | None) -> None:
    from rich.text import Text

    # Its own line(s), wrapped at the console's width: a table narrower than its title would fold it.
    if title:
        console.print(Text(title, style="italic"), soft_wrap=False, overflow="fold")


def _cell(col: Column, value: str) -> Text:
    from rich.text import Text

    style = col.style(value) if col.style and value else None
    return Text(value, style=style or "")


def _print_blocks(console: Console, columns: Sequence[Column], cells: list[list[str]], order: list[int],
                  title: str | None) -> None:
    from rich.text import Text

    _print_title(console, title)
    for n, row in enumerate(cells):
        if n:
            console.print()
        for i in order:
            if row[i] in EMPTY:
                continue
            style = (columns[i].style(row[i]) if columns[i].style else None) or ""
            first, *more = row[i].split("\n")
            line = Text()
            line.append(f"{columns[i].header}: ", style="bold")
            line.append(first, style=style)
            console.print(line, overflow="fold", soft_wrap=False)
            for extra in more:  # a multi-line value (endpoints): one indented line each
                console.print(Text(f"  {extra}", style=style), overflow="fold", soft_wrap=False)

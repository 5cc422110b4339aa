"""CSV for auditors: every CSV citydc writes goes through here, so a cell cannot act in a spreadsheet or terminal.

Values in these files come from outside (user names chosen by whoever tried to log in, log messages,
directory entries). Two rules, applied to every cell that is not a number:

- a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe
  (OWASP's rule against CSV/formula injection): spreadsheet programs read such a cell as a formula,
  and ``=HYPERLINK(...)`` or ``=cmd|...`` would act when the file is opened; with the apostrophe the
  cell is shown as the text it is;
- control characters (ESC, BEL, a newline, bidi overrides such as U+202E) are written as escapes
  (``\\x1b``, ``\\u202e``), as on the terminal (``citydc.cli.output.visible``), so a file printed to a
  terminal cannot steer it and a row stays one line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

from citydc.cli.output import visible

__all__ = ["CsvWriter", "csv_cell"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """Given a cell's value, return its text for a CSV file (None: empty): numbers as they are, any other
    value with control characters escaped and an apostrophe before a leading = + - @ tab or carriage return."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a number is no formula, and -3 must stay a number in the sheet
    text = str(value)
    escaped = visible(text)
    return "'" + escaped if text.startswith(_FORMULA_STARTS) else escaped


class CsvWriter:
    """``csv.writer`` whose every cell passes through ``csv_cell``."""

    def __init__(self, stream: TextIO, **fmtparams: Any):
        """Given the stream and ``csv.writer``'s format parameters (``lineterminator="\\n"``, ...)."""
        self._writer = csv.writer(stream, **fmtparams)

    def writeheader(self, names: Iterable[str]) -> None:
        """Given the column names (citydc's own, such as ``@timestamp``), write them as they are."""
        self._writer.writerow(names)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)

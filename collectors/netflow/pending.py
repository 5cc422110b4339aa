"""Decoded records waiting for the next flush: one reusable array ("arena") per
(site, exporter, version, template, sampling rate), filled in place by the batch gathers.

Reusing the arenas from flush to flush keeps the hot path from allocating (and the kernel from
zeroing) fresh memory for every batch. Memory is bounded: the decoder flushes once
``nbytes`` reaches its limit, and arenas grown past twice that limit in total are released.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from citydc.collectors.netflow import batch as batchmod
from citydc.collectors.netflow.decode import Template

__all__ = ["PendingRecords"]


@dataclass
class _Arena:
    template: Template
    rate: int
    items: np.ndarray  # capacity records, as opaque record-sized items (copies stay memcpy-like)
    fill: int = 0


class PendingRecords:
    """Given a byte limit, hold records per key until taken (see module doc)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._arenas: dict[Hashable, _Arena] = {}
        self.nbytes = 0

    def _room(self, key: Hashable, template: Template, rate: int, n: int) -> np.ndarray:
        # Return the n free items at the end of key's arena, growing it (doubling) if needed.
        arena = self._arenas.get(key)
        raw = np.dtype((np.void, template.dtype.itemsize))
        if arena is None or arena.template is not template:
            arena = self._arenas[key] = _Arena(template, rate, np.empty(max(n, 4096), raw))
        if arena.fill + n > len(arena.items):
            grown = np.empty(max(2 * len(arena.items), arena.fill + n), raw)
            grown[:arena.fill] = arena.items[:arena.fill]
            arena.items = grown
        out = arena.items[arena.fill:arena.fill + n]
        arena.fill += n
        self.nbytes += n * template.dtype.itemsize
        return out

    def add(self, key: Hashable, template: Template, rate: int, records: np.ndarray) -> None:
        """Given a key, its template and rate, and records of the template's dtype or plain
        record-sized items (any shape), copy them in."""
        # Copied as opaque items: a structured-dtype copy would go field by field (several times slower).
        room = self._room(key, template, rate, records.size)
        room.reshape(records.shape)[:] = records.view(room.dtype)

    def gather(self, key: Hashable, template: Template, rate: int, items: np.ndarray, offsets: np.ndarray) -> None:
        """Given a key, its template and rate, record-sized items and the offsets of the wanted
        ones, copy those items into the key's arena."""
        # Not np.take(out=...): it would first copy the whole (overlapping, non-contiguous) item view.
        self._room(key, template, rate, len(offsets))[:] = items[offsets]

    def runs(self, key: Hashable, template: Template, rate: int, buf: np.ndarray, starts: np.ndarray,
             counts: np.ndarray) -> None:
        """Given a key, its template and rate, a buffer and runs of records in it (start offsets
        and record counts, records of template.norm_len bytes), copy those records in."""
        offsets = batchmod.record_offsets(starts, counts, template.norm_len)
        self.gather(key, template, rate, batchmod.items(buf, template.norm_len), offsets)

    def grid(self, key: Hashable, template: Template, rate: int, buf: np.ndarray, first: int, stride: int, rows: int,
             per_row: int) -> None:
        """Given a key, its template and rate, a buffer and a grid (``rows`` rows ``stride`` bytes
        apart from offset ``first``, each of ``per_row`` consecutive records), copy the records in."""
        grid = np.ndarray((rows, per_row), np.dtype((np.void, template.norm_len)), buffer=buf, offset=first,
                          strides=(stride, template.norm_len))
        self.add(key, template, rate, grid)

    def take(self) -> list[tuple[Hashable, Template, int, np.ndarray]]:
        """Return (key, template, rate, records) of every non-empty arena and empty them.

        The records are views into the arenas: use (copy) them before the next add or gather.
        """
        out = [(key, a.template, a.rate, a.items[:a.fill].view(a.template.dtype))
               for key, a in self._arenas.items() if a.fill]
        capacity = 0
        for key in list(self._arenas):
            arena = self._arenas[key]
            if arena.fill == 0:  # unused for a whole flush period: release it
                del self._arenas[key]
                continue
            arena.fill = 0
            capacity += arena.items.nbytes
        if capacity > 2 * self.limit_bytes:
            self._arenas.clear()  # drops only our references; `out` keeps what the caller needs
        self.nbytes = 0
        return out

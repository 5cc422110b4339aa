"""The compiled fast path: decoded records go straight into aggregate sums, in C (_fastflow.c).

The numpy path copies every record into a pending arena, turns the arenas into columns at each
flush and aggregates the columns. Here the same calls (runs of records in the receive buffer,
the full-v5 grid, normalized records) go to one ``_fastflow.Acc`` per pending key instead,
which reads each record's fields where they lie and adds them to the sums in one pass; at flush
the decoder hands over ``Partial`` sums that Aggregator.add folds in exactly as it would have
folded the FlowBatch (same keys, same order, same flush points, same talker updates).

The extension is optional (a machine without a compiler installs without it): ``available()``
says whether it was built, and the collector then uses the numpy path.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from citydc.collectors.netflow import aggregate
from citydc.collectors.netflow import batch as batchmod
from citydc.collectors.netflow.decode import Template

if TYPE_CHECKING:
    from citydc.collectors.netflow.aggregate import AgencyTable, Aggregator
    from citydc.collectors.netflow.receive import Received

try:
    from citydc.collectors.netflow import _fastflow
except ImportError:  # built without a C compiler: the numpy path runs
    _fastflow = None

__all__ = ["COLUMNS", "DirectAggregates", "Partial", "available", "layout", "walk"]

# Column order of the C layout table (enum in _fastflow.c).
COLUMNS = ("bytes", "packets", "sampling", "src4", "dst4", "src6_hi", "src6_lo", "dst6_hi", "dst6_lo", "proto",
           "sport", "dport", "in_if", "out_if")

if _fastflow is not None:
    assert len(COLUMNS) == _fastflow.N_COLS
    _fastflow.set_tables(aggregate._PROTO_BASE.astype(np.int16).tobytes(),
                         aggregate._PORT_PROTO.astype(np.uint8).tobytes(), aggregate._SVC_INDEX.tobytes(),
                         len(aggregate._PROTO_NAMES) * aggregate._NSVC)


def walk(batch: Received) -> tuple[batchmod.Headers, batchmod.Sets]:
    """Given a batch, return its header facts and its v9/IPFIX sets, as batch.read_headers and
    batch.walk_sets would (same arrays, same defects), in one C pass; the Sets also carry each
    set's version, whether it is a (options) template set, and ``dup``: the template sets of a
    datagram that repeat, id for id and byte for byte, those of the previous datagram of the same
    source (exporter, version, domain) that had any. Raise ValueError if the batch does not fit its buffer."""
    assert _fastflow is not None
    n = len(batch)
    heads, sets, m = _fastflow.walk(batch.buf, batch.slot, np.ascontiguousarray(batch.lengths, np.int64),
                                    np.ascontiguousarray(batch.exporter_index, np.int64))
    h = np.frombuffer(heads, np.int64).reshape(5, n)
    c = np.frombuffer(sets, np.int64).reshape(7, m)
    return (batchmod.Headers(h[0], h[1], h[2], h[3], h[4], batch.exporter_index),
            batchmod.Sets(c[0], c[1], c[2], c[3], c[4], c[5].astype(bool), c[6].astype(bool)))


def available() -> bool:
    """Return whether the compiled extension was built and imports."""
    return _fastflow is not None


def layout(template: Template) -> bytes:
    """Given a compiled template, return its C layout: (offset, width) int32 per COLUMNS entry,
    width 0 for a column the record does not carry; the same column choices as
    decode.batch_from_records (``*_total`` when the delta counter is missing, ICMP type/code as
    the destination port)."""
    fields = template.dtype.fields or {}
    have = template.columns
    source = {name: name for name in COLUMNS}
    for name in ("bytes", "packets"):
        if name not in have and name + "_total" in have:
            source[name] = name + "_total"
    if "dport" not in have and "icmp" in have:
        source["dport"] = "icmp"
    out = []
    for name in COLUMNS:
        spec = fields.get(source[name])
        # Reduced-size integers are uint8 sub-arrays: their itemsize is the byte count, read big-endian alike.
        out += [spec[1], spec[0].itemsize] if spec is not None else [0, 0]
    return np.array(out, np.int32).tobytes()


@dataclass
class Partial:
    """Sums of the records of one pending key since the last flush (see _fastflow.Acc.take)."""

    site: str
    exporter: str
    version: int
    is6: bool
    table: AgencyTable | None
    records: int
    # Sums are float64, as the numpy path's np.bincount sums (see _fastflow.c).
    in_if: np.ndarray      # ENTRY (ifindex, bytes, packets) rows
    max_in: int
    out_if: np.ndarray
    max_out: int
    intervals: np.ndarray  # (interval, [to bytes, to packets, from bytes, from packets])
    agencies6: np.ndarray  # (agency, same four)
    protocols: np.ndarray  # (protocol/service key, [bytes, packets])
    talkers: np.ndarray    # ENTRY (talker key, bytes, 0) rows

    def __len__(self) -> int:
        return self.records


@dataclass
class _Entry:
    template: Template
    rate: int
    table: AgencyTable | None
    acc: object
    fill: int = 0
    done: list[tuple] = field(default_factory=list)  # sums taken early (agency table changed)


# (key, bytes, packets) entries of the C hash tables
ENTRY = np.dtype([("key", np.uint64), ("bytes", np.float64), ("packets", np.float64)])


def _rows(raw: bytes, width: int) -> np.ndarray:
    return np.frombuffer(raw, np.float64).reshape(-1, width)


class DirectAggregates:
    """Given the aggregator the sums are for and the decoder's byte limit, stand in for
    pending.PendingRecords: the same methods, the same byte accounting (so flushes happen at the
    same points), but records are summed on arrival instead of stored."""

    def __init__(self, aggregator: Aggregator, limit_bytes: int) -> None:
        if _fastflow is None:
            raise RuntimeError("the compiled NetFlow fast path (_fastflow) is not built")
        self.aggregator = aggregator
        self.limit_bytes = limit_bytes
        self._entries: dict[Hashable, _Entry] = {}
        self._layouts: dict[int, tuple[Template, bytes]] = {}
        self.nbytes = 0

    def _entry(self, key: Hashable, template: Template, rate: int, n: int) -> _Entry:
        entry = self._entries.get(key)
        table = self.aggregator.agency_table()
        if entry is None or entry.template is not template:
            entry = self._entries[key] = _Entry(template, rate, table, self._acc(template, rate, table))
        elif entry.table is not table:
            # Agencies were reassigned: what was summed so far stays with the table it was summed for.
            if entry.fill:
                entry.done.append((entry.table, entry.acc.take()))
            entry.table, entry.acc = table, self._acc(template, rate, table)
        entry.fill += n
        self.nbytes += n * template.norm_len
        return entry

    def _acc(self, template: Template, rate: int, table: AgencyTable | None) -> object:
        known = self._layouts.get(id(template))
        if known is None or known[0] is not template:
            if len(self._layouts) >= 4096:  # bounded like the template cache
                self._layouts.clear()
            known = self._layouts[id(template)] = (template, layout(template))
        agg = self.aggregator
        bounds, v6 = np.zeros(1, np.uint32), []
        if table is not None:
            bounds = table.bounds
            v6 = [(a, *prefix) for a, agency in enumerate(table.agencies) for prefix in agency.v6]
        return _fastflow.Acc(known[1], rate, "src6" in template.columns or "dst6" in template.columns,
                             int(agg._v4_mask), int(agg._v6_mask), np.ascontiguousarray(bounds, np.uint32).tobytes(),
                             np.array(v6, np.uint64).reshape(-1, 5).tobytes(),
                             len(table.agencies) if table is not None else 0)

    def add(self, key: Hashable, template: Template, rate: int, records: np.ndarray) -> None:
        """Given a key, its template and rate, and contiguous records of the template's dtype, sum them."""
        raw = np.ascontiguousarray(records).view(np.uint8).reshape(-1)
        n = records.size
        self._entry(key, template, rate, n).acc.add_runs(raw, np.zeros(1, np.int64).tobytes(),
                                                         np.array([n], np.int64).tobytes(), template.norm_len)

    def runs(self, key: Hashable, template: Template, rate: int, buf: np.ndarray, starts: np.ndarray,
             counts: np.ndarray) -> None:
        """As PendingRecords.runs: sum runs of records (start offsets and counts) of the buffer."""
        counts = np.ascontiguousarray(counts, np.int64)
        self._entry(key, template, rate, int(counts.sum())).acc.add_runs(
            buf, np.ascontiguousarray(starts, np.int64), counts, template.norm_len)

    def grid(self, key: Hashable, template: Template, rate: int, buf: np.ndarray, first: int, stride: int, rows: int,
             per_row: int) -> None:
        """As PendingRecords.grid: sum ``rows`` rows of ``per_row`` records."""
        self._entry(key, template, rate, rows * per_row).acc.add_grid(buf, first, stride, rows, per_row,
                                                                       template.norm_len)

    def v5_batch(self, batch: Received) -> tuple[int, int] | None:
        """Given a batch, return (records, header sampling interval) when every datagram is a
        well-formed v5 one with the same interval (the usual v5 batch), else None."""
        return _fastflow.v5_batch(batch.buf, batch.slot, batch.lengths)

    def add_v5(self, key: Hashable, template: Template, rate: int, batch: Received, records: int) -> None:
        """Given a key, the v5 template and rate, a batch v5_batch() accepted and its record count, sum its records."""
        self._entry(key, template, rate, records).acc.add_v5(batch.buf, batch.slot, batch.lengths)

    def take(self) -> list[Partial]:
        """Return the Partial sums of every key fed since the last take, in the order
        PendingRecords.take would return their records, and reset."""
        out = []
        for key in list(self._entries):
            entry = self._entries[key]
            if entry.fill == 0:  # unused for a whole flush period: release it, as PendingRecords does
                del self._entries[key]
                continue
            site, label, version = key[:3]  # type: ignore[index]
            is6 = "src6" in entry.template.columns or "dst6" in entry.template.columns
            for table, sums in [*entry.done, (entry.table, entry.acc.take())]:
                n, in_if, max_in, out_if, max_out, intervals, agencies6, protocols, talkers = sums
                out.append(Partial(site, label, version, is6, table, n, np.frombuffer(in_if, ENTRY), max_in,
                                   np.frombuffer(out_if, ENTRY), max_out, _rows(intervals, 4), _rows(agencies6, 4),
                                   _rows(protocols, 2), np.frombuffer(talkers, ENTRY)))
            entry.done.clear()
            entry.fill = 0
        self.nbytes = 0
        return [p for p in out if p.records]

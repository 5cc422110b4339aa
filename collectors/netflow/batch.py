"""Vectorised reading of a whole receive batch: every datagram's header, the walk over the
(flow)sets of all v9/IPFIX datagrams, and the gathering of records, each in a fixed number of
numpy operations per batch instead of Python steps per datagram.

The rules are those of v5.py, v9.py and ipfix.py (the same reasons for the same defects); only
template and options template sets, which are rare, are parsed in Python by the decoder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from citydc.collectors.netflow import ipfix, v5, v9
from citydc.collectors.netflow.receive import Received
from citydc.collectors.netflow.records import REASONS

__all__ = ["VERSION_KEYS", "Headers", "Sets", "groups", "items", "read_headers", "record_offsets", "split", "walk_sets"]

V5, V9, IPFIX, OTHER, NONE = 0, 1, 2, 3, 4
# vcode -> the version key of DecodeStats (NONE: too short to have a version, not counted)
VERSION_KEYS = {V5: "5", V9: "9", IPFIX: "10", OTHER: "other"}
_REASON = {name: i + 1 for i, name in enumerate(REASONS)}  # 0 = no error

# One view over every slot reads all header fields at once; fields of different versions overlap.
_HEADER = np.dtype({
    "names": ["version", "count", "ipfix_domain", "v9_domain", "v5_sampling"],
    "formats": [">u2", ">u2", ">u4", ">u4", ">u2"],
    "offsets": [0, 2, 12, 16, 22],
    "itemsize": v5.HEADER_LEN,
})
# Sets per datagram walked with numpy; a datagram with more (legal but unusual) sets is walked
# on in Python from there.
VECTOR_WALK = 16
_SET = struct.Struct("!HH")


@dataclass
class Headers:
    """Per-datagram header facts of one batch (arrays of the batch's length)."""

    vcode: np.ndarray      # V5, V9, IPFIX, OTHER or NONE
    count: np.ndarray      # v5 record count
    domain: np.ndarray     # v9 source id / IPFIX observation domain
    sampling: np.ndarray   # v5 header sampling field
    reason: np.ndarray     # 0, or 1 + index into REASONS of the datagram's defect
    exporter_index: np.ndarray

    def datagram_counts(self) -> dict[tuple[int, int], int]:
        """Return {(exporter index, vcode): datagrams}, datagrams too short for a version left out."""
        counted = self.vcode != NONE
        key = self.exporter_index[counted] * 8 + self.vcode[counted]
        sums = np.bincount(key)
        return {(int(k) // 8, int(k) % 8): int(sums[k]) for k in np.flatnonzero(sums)}

    def v5_rows(self) -> np.ndarray:
        """Return the indices of the well-formed v5 datagrams."""
        return np.flatnonzero((self.vcode == V5) & (self.reason == 0))

    def v5_rates(self, rows: np.ndarray, config: np.ndarray) -> np.ndarray:
        """Given v5 rows and the configured rate per exporter index, return each row's sampling rate:
        the header's interval (low 14 bits) when set, else the configured one."""
        interval = (self.sampling[rows] & 0x3FFF).astype(np.int64)
        return np.where(interval > 0, interval, config[self.exporter_index[rows]])

    def errors(self) -> list[tuple[int, int]]:
        """Return (index into REASONS, exporter index) for every datagram with a defect."""
        bad = np.flatnonzero(self.reason)
        return list(zip((self.reason[bad] - 1).tolist(), self.exporter_index[bad].tolist(), strict=True))


@dataclass
class Sets:
    """Every (flow)set found in the batch's v9/IPFIX datagrams, in datagram then wire order.

    ``start``/``stop`` are absolute offsets of the set body in the batch buffer."""

    dg: np.ndarray
    set_id: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    # From the compiled walk (fastpath.walk) only: 9 or 10 per set, whether it is a (options)
    # template set, and whether it repeats the previous template sets of its source (see there).
    version: np.ndarray | None = None
    special: np.ndarray | None = None
    dup: np.ndarray | None = None


def read_headers(batch: Received) -> Headers:
    """Given a batch, return its datagrams' header facts, each defect named as v5.parse_header,
    v9.parse_header and ipfix.parse_header name it."""
    n = len(batch)
    length = batch.lengths
    head = np.ndarray((n,), _HEADER, buffer=batch.buf, strides=(batch.slot,))
    version = head["version"].astype(np.int64)
    count = head["count"].astype(np.int64)
    vcode = np.select([version == 5, version == 9, version == 10], [V5, V9, IPFIX], OTHER)
    vcode[length < 2] = NONE
    reason = np.zeros(n, np.int64)
    reason[vcode == OTHER] = _REASON["unsupported_version"]
    is5, is9, is10 = vcode == V5, vcode == V9, vcode == IPFIX
    reason[is5 & ((count == 0) | (count > v5.MAX_COUNT) | (length != v5.HEADER_LEN + count * v5.RECORD_LEN))] = \
        _REASON["length_mismatch"]
    reason[is10 & (count != length)] = _REASON["length_mismatch"]
    short = (length < 2) | (is5 & (length < v5.HEADER_LEN)) | (is9 & (length < v9.HEADER_LEN)) | (
        is10 & (length < ipfix.HEADER_LEN))
    reason[short] = _REASON["truncated_header"]
    domain = np.where(is9, head["v9_domain"], head["ipfix_domain"]).astype(np.int64)
    return Headers(vcode, count, domain, head["v5_sampling"], reason, batch.exporter_index)


def walk_sets(batch: Received, heads: Headers) -> Sets:
    """Given a batch and its headers, return all sets of its well-formed v9/IPFIX datagrams.

    A set shorter than 4 bytes or running past its datagram marks that datagram 'bad_set'
    (in ``heads.reason``); the sets before it are kept, as in a walk by hand.
    """
    buf = batch.buf
    dg = np.flatnonzero(((heads.vcode == V9) | (heads.vcode == IPFIX)) & (heads.reason == 0))
    pos = np.where(heads.vcode[dg] == V9, v9.HEADER_LEN, ipfix.HEADER_LEN).astype(np.int64) + dg * batch.slot
    end = batch.lengths[dg] + dg * batch.slot
    found: list[tuple[np.ndarray, ...]] = []
    for step in range(VECTOR_WALK):
        alive = end - pos >= 4
        if not alive.all():
            dg, pos, end = dg[alive], pos[alive], end[alive]
        if len(dg) == 0:
            break
        set_id = buf[pos].astype(np.int64) << 8 | buf[pos + 1]
        length = buf[pos + 2].astype(np.int64) << 8 | buf[pos + 3]
        bad = (length < 4) | (pos + length > end)
        if bad.any():
            heads.reason[dg[bad]] = _REASON["bad_set"]
            good = ~bad
            dg, pos, end, set_id, length = dg[good], pos[good], end[good], set_id[good], length[good]
        found.append((dg, set_id, pos + 4, pos + length, np.full(len(dg), step)))
        pos = pos + length
    if len(dg):
        found += _walk_rest(buf, heads, dg, pos, end)
    if not found:
        empty = np.empty(0, np.int64)
        return Sets(empty, empty, empty, empty)
    cols = [np.concatenate(c) for c in zip(*found, strict=True)]
    order = np.lexsort((cols[4], cols[0]))
    return Sets(*(c[order] for c in cols[:4]))


def _walk_rest(buf: np.ndarray, heads: Headers, dgs: np.ndarray, positions: np.ndarray, ends: np.ndarray
               ) -> list[tuple[np.ndarray, ...]]:
    # Datagrams with more than VECTOR_WALK sets, walked on one set at a time (each step consumes
    # at least 4 bytes, so a datagram costs at most its length / 4 steps).
    rows: list[tuple[int, int, int, int, int]] = []
    mv = memoryview(buf)
    for dg, pos, end in zip(dgs.tolist(), positions.tolist(), ends.tolist(), strict=True):
        step = VECTOR_WALK
        while end - pos >= 4:
            set_id, length = _SET.unpack_from(mv, pos)
            if length < 4 or pos + length > end:
                heads.reason[dg] = _REASON["bad_set"]
                break
            rows.append((dg, set_id, pos + 4, pos + length, step))
            pos += length
            step += 1
    if not rows:
        return []
    return [tuple(np.array(c, np.int64) for c in zip(*rows, strict=True))]


def record_offsets(starts: np.ndarray, counts: np.ndarray, record_len: int) -> np.ndarray:
    """Given where runs of records start, how many each holds and the record length, return the
    offset of every record, in order."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first * record_len, counts) + np.arange(total) * record_len


def items(buf: np.ndarray, record_len: int) -> np.ndarray:
    """Given a buffer and a record length, return every byte offset of the buffer as the start of
    a record-sized item (a view), so one fancy index or np.take copies any set of records."""
    return np.ndarray((len(buf) - record_len + 1,), np.dtype((np.void, record_len)), buffer=buf, strides=(1,))


def groups(*columns: np.ndarray) -> Iterator[tuple[tuple[int, ...], np.ndarray | slice]]:
    """Given equal-length integer columns, yield (the distinct value tuple, its rows) for each
    distinct combination; rows are a slice when all rows share one combination (the usual case)."""
    firsts = tuple(int(c[0]) for c in columns)
    if all((c == f).all() for c, f in zip(columns, firsts, strict=True)):
        yield firsts, slice(None)
        return
    uniq, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for i, values in enumerate(uniq.tolist()):
        yield tuple(values), np.flatnonzero(inverse == i)


def split(batch: Received) -> list[Received]:
    """Given a batch, return one single-datagram batch per datagram (the crash guard's fallback)."""
    return [Received.of([(batch.buf[i * batch.slot:i * batch.slot + int(n)].tobytes(),
                          batch.exporters[int(batch.exporter_index[i])])])
            for i, n in enumerate(batch.lengths.tolist())]

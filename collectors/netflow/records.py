"""The data that flows between the stages: a columnar batch of flow records and the decode error.

A batch holds many records of one (site, exporter, version) as numpy columns, so aggregation
works on whole arrays instead of one Python object per flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COLUMNS", "REASONS", "FlowBatch", "Malformed", "concat", "empty_batch"]

# Bounded set of reasons a datagram or part of it is dropped (the label values of
# citydc_netflow_decode_errors_total); the decoder never invents others.
REASONS = (
    "truncated_header",      # shorter than the fixed header of its version
    "unsupported_version",   # not 5, 9 or 10
    "length_mismatch",       # IPFIX message length or v5 count disagrees with the datagram size
    "bad_set",               # a (flow)set length below 4 or past the end of the datagram
    "bad_template",          # absurd field count, zero or oversized record length, truncated template
    "bad_record",            # variable-length field running past its set
    "internal_error",        # a bug: caught by the crash guard, counted, the collector goes on
    # Appended, not inserted: _fastflow.c numbers the datagram reasons by their index here.
    "implausible_counter",   # a record whose scaled bytes or packets exceed decode.MAX_FLOW_COUNTER (per record)
    "reserved_set",          # a set id the protocol reserves (v9 2-255, IPFIX 0, 1, 4-255): skipped (per set)
)

# Column name -> dtype of the canonical batch. Addresses: IPv4 in src4/dst4, IPv6 as two
# 64-bit halves, so prefix matching is integer masking.
COLUMNS: dict[str, np.dtype] = {
    "bytes": np.dtype(np.uint64),
    "packets": np.dtype(np.uint64),
    "ip_version": np.dtype(np.uint8),
    "src4": np.dtype(np.uint32),
    "dst4": np.dtype(np.uint32),
    "src6_hi": np.dtype(np.uint64),
    "src6_lo": np.dtype(np.uint64),
    "dst6_hi": np.dtype(np.uint64),
    "dst6_lo": np.dtype(np.uint64),
    "proto": np.dtype(np.uint8),
    "sport": np.dtype(np.uint16),
    "dport": np.dtype(np.uint16),
    "in_if": np.dtype(np.uint32),
    "out_if": np.dtype(np.uint32),
}


class Malformed(Exception):
    """A datagram (or a set in it) cannot be decoded; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class FlowBatch:
    """Records of one (site, exporter, version): each column a numpy array of the same length.

    ``bytes`` and ``packets`` are already multiplied by the sampling rate.
    """

    site: str
    exporter: str
    version: int
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["bytes"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def empty_batch(site: str, exporter: str, version: int, n: int) -> FlowBatch:
    """Given a batch identity and a length, return a batch of zeroed columns."""
    return FlowBatch(site, exporter, version, {name: np.zeros(n, dtype) for name, dtype in COLUMNS.items()})


def concat(batches: list[FlowBatch]) -> FlowBatch:
    """Given batches of the same (site, exporter, version), return one batch holding all their records."""
    first = batches[0]
    if len(batches) == 1:
        return first
    return FlowBatch(first.site, first.exporter, first.version,
                     {name: np.concatenate([b.columns[name] for b in batches]) for name in COLUMNS})

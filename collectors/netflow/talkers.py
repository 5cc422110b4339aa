"""Top talkers in fixed memory: a mergeable Misra-Gries summary over a sliding window of panes.

Misra-Gries with ``k`` counters (Misra & Gries 1982), updated a whole batch at a time with the
merge step of Agarwal et al., "Mergeable Summaries" (PODS 2012): add the batch's exact per-key
sums to the counters, then subtract the (k+1)-th largest count from all and keep the positive
ones. Each kept count underestimates the key's true weight by at most ``error`` (the sum of the
subtracted values), and ``error <= N / (k + 1)`` where N is the total weight summarised; any key
whose true weight exceeds N / (k + 1) is guaranteed to be present.

The window is split into panes; each pane has its own summary, the oldest pane is dropped as
time moves on, and a report merges the live panes (merging keeps the same bound).
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["MisraGries", "SlidingTopN"]


class MisraGries:
    """Given ``k``, keep at most k (key, weight) counters; see the module docstring for the bound."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.keys = np.empty(0, np.uint64)
        self.counts = np.empty(0, np.float64)
        self.total = 0.0
        self.error = 0.0

    def update(self, keys: np.ndarray, weights: np.ndarray) -> None:
        """Given keys (uint64) and their weights, add them to the summary."""
        if len(keys) == 0:
            return
        self.total += float(weights.sum())
        self._merge(np.concatenate([self.keys, keys.astype(np.uint64)]),
                    np.concatenate([self.counts, weights.astype(np.float64)]))

    def merge(self, other: MisraGries) -> None:
        """Given another summary, fold it into this one (the bound adds up: error <= N / (k + 1))."""
        self.total += other.total
        self.error += other.error
        self._merge(np.concatenate([self.keys, other.keys]), np.concatenate([self.counts, other.counts]))

    def _merge(self, keys: np.ndarray, weights: np.ndarray) -> None:
        uniq, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, weights=weights)
        if len(uniq) > self.k:
            cut = len(counts) - (self.k + 1)
            threshold = float(np.partition(counts, cut)[cut])
            counts = counts - threshold
            keep = counts > 0
            uniq, counts = uniq[keep], counts[keep]
            self.error += threshold
        self.keys, self.counts = uniq, counts

    def top(self, n: int) -> list[tuple[int, float]]:
        """Return up to n (key, estimated weight) pairs, heaviest first."""
        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(int(self.keys[i]), float(self.counts[i])) for i in order]


class SlidingTopN:
    """Given k counters, a window and its pane count, keep Misra-Gries summaries per pane."""

    def __init__(self, k: int = 256, window_seconds: float = 300.0, panes: int = 5) -> None:
        self.k = k
        self.pane_seconds = window_seconds / panes
        self.panes: deque[tuple[float, MisraGries]] = deque(maxlen=panes)

    def update(self, keys: np.ndarray, weights: np.ndarray, now: float) -> None:
        """Given keys, weights and the time, add them to the current pane (opening one if due)."""
        if not self.panes or now - self.panes[-1][0] >= self.pane_seconds:
            self.panes.append((now, MisraGries(self.k)))
        self.panes[-1][1].update(keys, weights)

    def report(self, now: float) -> MisraGries:
        """Return one summary of the panes still inside the window at ``now``."""
        horizon = self.pane_seconds * (self.panes.maxlen or 1)
        merged = MisraGries(self.k)
        for start, pane in self.panes:
            if now - start < horizon:
                merged.merge(pane)
        return merged

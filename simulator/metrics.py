"""Latency histograms (HDR-style, log-linear buckets) and the run's measured figures."""

from __future__ import annotations

import numpy as np

SUB = 64  # buckets per power of two: ~1.1% relative error, like HDR with 2 significant digits


class Histogram:
    """Counts of values (µs) in log-linear buckets; mergeable, percentiles from buckets."""

    def __init__(self) -> None:
        self.counts = np.zeros(SUB * 40, np.int64)
        self.total = 0
        self.max = 0.0

    def record(self, values_us: np.ndarray) -> None:
        v = np.asarray(values_us, float)
        if not len(v):
            return
        idx = np.clip((np.log2(np.maximum(v, 0) + 1) * SUB).astype(np.int64), 0, len(self.counts) - 1)
        np.add.at(self.counts, idx, 1)
        self.total += len(v)
        self.max = max(self.max, float(v.max()))

    def percentile(self, p: float) -> float:
        if not self.total:
            return 0.0
        rank = max(1, int(np.ceil(p / 100 * self.total)))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(min(2 ** ((i + 1) / SUB) - 1, self.max))

    def summary_ms(self) -> dict[str, float]:
        return {
            "count": self.total,
            **{f"p{k:g}": round(self.percentile(k) / 1000, 3) for k in (50, 90, 99, 99.9)},
            "max": round(self.max / 1000, 3),
        }

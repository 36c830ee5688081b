"""Python's garbage collector in a long-lived region process.

A region process starts with about 10^6 long-lived objects (imports, the web app or actor
machinery, the recovered node), and under load it allocates a few hundred short-lived
containers per request or batch. CPython's defaults collect the young generation every
700 allocations and, now and then, walk every object in a full collection: in an HTTP
region a full collection stalled every request for hundreds of ms, and young collections
cost ~5% of a loaded gateway's CPU. The books themselves are numpy arrays, invisible to
the collector, so freezing what start-up built and collecting the young generation less
often loses nothing: the cycles a step creates are still found.
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two young-generation collections in a region process (CPython: 700)."""


def settle_after_start() -> None:
    """Once a region is recovered and serving: move what start-up built out of the
    collector's sight (`gc.freeze`) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


__all__ = ["GC_YOUNG_THRESHOLD", "settle_after_start"]

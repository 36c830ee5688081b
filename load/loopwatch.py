"""How long the event loop worked without a break: what a request may cost a region's lease.

A gateway's event loop also runs its region's heartbeats and timers, so one request that
holds it for longer than a fraction of the 1 s lease can make peers suspect the region and
fail it over. `LoopWatch` measures exactly that, and only that: a timer wakes every
`interval` seconds and observes how much CPU time the loop's own thread used since its last
wake-up (`time.thread_time`). A callback that computes for 200 ms shows as a 200 ms
stretch; a loop that merely waited — for the OS on a busy machine, or for the GIL while a
worker thread ran — shows as nothing, so the figure holds on a loaded 2-core box where
wall-clock latencies do not. Wall-clock lag (how late the timer fired) is kept beside it,
for operators. Both are histograms in `/metrics` (`load.metrics` serves them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Prometheus-style cumulative buckets, a count and a sum."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.max = max(self.max, value)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def above(self, bound: float) -> int:
        """Observations over `bound` (one of the buckets)."""
        return self.count - self.counts[self.buckets.index(bound)]


class LoopWatch:
    """Watches the running loop (start it inside the loop; `stop` it there)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.busy = Histogram()
        self.lag = Histogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        cpu, wall = time.thread_time(), time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now_cpu, now_wall = time.thread_time(), time.monotonic()
            self.busy.observe(now_cpu - cpu)
            self.lag.observe(max(0.0, now_wall - wall - self.interval))
            cpu, wall = now_cpu, now_wall

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


__all__ = ["BUCKETS", "Histogram", "LoopWatch"]

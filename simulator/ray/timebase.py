"""Wall time for Ray actors: the scenario clock every actor of a run agrees on.

Scenario time 0 is the run's `t0` (wall ns); `scale` is wall seconds per scenario
second (1.0 = real time; 0.5 runs twice as fast: latencies, node timers, timeouts and
the fault schedule all shrink, and the offered load per wall second doubles).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from simulator.clock import S

_WALL_BASE = time.time_ns() - time.monotonic_ns()


def wall_ns() -> int:
    """Wall-clock ns that never steps (monotonic, anchored to the epoch once per process).

    Every process computes the same anchor to within microseconds on one machine, and to
    within NTP's error across a cluster; leases only ever compare durations on one node.
    """
    return time.monotonic_ns() + _WALL_BASE


@dataclass(frozen=True)
class Timebase:
    """The scenario clock: scenario time 0 is wall `t0_ns`; `scale` wall s per scenario s."""

    t0_ns: int
    scale: float

    def now_ns(self) -> int:
        return int((wall_ns() - self.t0_ns) / self.scale)

    def now_s(self) -> float:
        return (wall_ns() - self.t0_ns) / self.scale / S

    def wall_of(self, scenario_s: float) -> int:
        return self.t0_ns + int(scenario_s * S * self.scale)

    async def sleep_until(self, scenario_s: float) -> None:
        delay = (self.wall_of(scenario_s) - wall_ns()) / S
        if delay > 0:
            await asyncio.sleep(delay)


async def swallow(ref: object) -> None:
    """Await a fire-and-forget actor call so its failure (a dead peer) is read, not logged."""
    with contextlib.suppress(Exception):
        await ref  # type: ignore[misc]


__all__ = ["Timebase", "swallow", "wall_ns"]

"""Where a load run's CPU went: each region process, Locust, and the machine as a whole.

A closed-loop load test measures its users as much as its servers: N users, each waiting
for its answer (latency R) and thinking (Z) before the next request, cannot make more than
N / (R + Z) requests/s (Little's law). Whether a figure says something about the gateways
depends on which bound held, so the run records both: the users' bound from the measured
latency, and how busy the CPUs were. A machine whose cores were nearly all busy was bound
by CPU; one process that kept its core busy — a region's process (one event loop, one
core) or Locust (its users share one core per process) — was the limit itself, however
idle the rest; otherwise the users (or a lock, or the WAN's round trips inside R) set the
pace.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

CPU_BOUND_AT = 0.9
"""Fraction of the machine's CPU time used by everything during the run above which the run
counts as bound by CPU."""
PROCESS_BOUND_AT = 0.8
"""Fraction of a core a single process used over the measured wall time above which that
process bounded the run: the wall time includes Locust's start and its users' stop, so a
process busy through all of the load shows a little below 1."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


@dataclass
class CpuMeter:
    """Started before the load and read after it: CPU seconds per region process (by pid,
    None if one restarted in between), of the waited-for children (Locust and its workers),
    and of the whole machine (every process on it, other users' included)."""

    regions: dict[str, int]
    _start: dict[str, float | None] = field(default_factory=dict)
    _children: float = 0.0
    _machine: Any = None
    _wall: float = 0.0

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = {name: _process_cpu(pid) for name, pid in self.regions.items()}
        self._children = _children_cpu()
        self._machine = psutil.cpu_times()

    def read(self, regions_now: dict[str, int]) -> dict[str, Any]:
        per_region: dict[str, float | None] = {}
        for name, pid in self.regions.items():
            now = _process_cpu(pid) if regions_now.get(name) == pid else None
            before = self._start.get(name)
            per_region[name] = None if now is None or before is None else round(now - before, 2)
        machine_now = psutil.cpu_times()
        busy = sum(getattr(machine_now, k) - getattr(self._machine, k) for k in ("user", "system", "nice", "irq",
                                                                                  "softirq", "steal"))
        idle = sum(getattr(machine_now, k) - getattr(self._machine, k) for k in ("idle", "iowait"))
        return {"regions": per_region, "locust": round(_children_cpu() - self._children, 2),
                "machine_busy_fraction": round(busy / (busy + idle), 3) if busy + idle > 0 else None,
                "cores": os.cpu_count(), "wall_s": round(time.monotonic() - self._wall, 2)}


def limits(users: int, avg_latency_ms: float | None, requests_per_s: float, cpu: dict[str, Any],
           acked: int, locust_processes: int = 1) -> dict[str, Any]:
    """What bounded the run. By Little's law the requests in flight on average were
    requests/s x latency; with `users` closed-loop users that is at most `users` (less their
    think time). A machine busy for `CPU_BOUND_AT` of its CPU time was bound by CPU (more
    users would only queue); else a process busy for `PROCESS_BOUND_AT` of a core (Locust:
    of each of its processes' cores) bounded it, and is named (more users would only wait
    in its one loop); otherwise the users did: more would have gone faster. Plus CPU
    seconds per 1,000 acknowledged transfers and the busy fraction of each process."""
    in_flight = requests_per_s * avg_latency_ms / 1000 if avg_latency_ms else None
    busy = cpu.get("machine_busy_fraction")
    wall = cpu.get("wall_s")
    seconds = {**{f"region {r}": v for r, v in cpu["regions"].items()}, "locust": cpu["locust"]}
    cores = {name: locust_processes if name == "locust" else 1 for name in seconds}
    process_busy = {name: round(s / wall / cores[name], 3) if s is not None and wall else None
                    for name, s in seconds.items()}
    busiest = max(process_busy, key=lambda name: process_busy[name] or 0.0)
    bound = ("cpu" if busy is not None and busy >= CPU_BOUND_AT
             else busiest if (process_busy[busiest] or 0.0) >= PROCESS_BOUND_AT else "users")
    per_k = {name: (round(1000 * s / acked, 3) if s is not None and acked else None) for name, s in seconds.items()}
    return {"users": users, "avg_latency_ms": avg_latency_ms,
            "in_flight_requests": round(in_flight, 1) if in_flight is not None else None,
            "machine_busy_fraction": busy, "process_busy_fraction": process_busy, "bound_by": bound,
            "cpu_s": cpu, "cpu_s_per_1000_acked": per_k}


__all__ = ["CPU_BOUND_AT", "PROCESS_BOUND_AT", "CpuMeter", "limits"]

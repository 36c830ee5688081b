"""Where a load run's CPU went: each region process, Locust, and the machine as a whole.

A closed-loop load test measures its users as much as its servers: N users, each waiting
for its answer (latency R) and thinking (Z) before the next request, cannot make more than
N / (R + Z) requests/s (Little's law). Whether a figure says something about the gateways
depends on which bound held, so the run records both: the users' bound from the measured
latency, and how busy the CPUs were. A machine whose cores were nearly all busy was bound
by CPU; otherwise the users (or a lock, or the WAN's round trips inside R) set the pace.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import Any

import psutil

CPU_BOUND_AT = 0.9
"""Fraction of the machine's CPU time used by everything during the run above which the run
counts as bound by CPU."""


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

    def start(self) -> None:
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
                "cores": os.cpu_count()}


def limits(users: int, avg_latency_ms: float | None, requests_per_s: float, cpu: dict[str, Any],
           acked: int) -> dict[str, Any]:
    """What bounded the run. By Little's law the requests in flight on average were
    requests/s x latency; with `users` closed-loop users that is at most `users` (less their
    think time). A machine busy for `CPU_BOUND_AT` of its CPU time was bound by CPU (more
    users would only queue); otherwise by its users: more would have gone faster. Plus CPU
    seconds per 1,000 acknowledged transfers for each process."""
    in_flight = requests_per_s * avg_latency_ms / 1000 if avg_latency_ms else None
    busy = cpu.get("machine_busy_fraction")
    per_k = {name: (round(1000 * s / acked, 3) if s is not None and acked else None)
             for name, s in {**{f"region {r}": v for r, v in cpu["regions"].items()}, "locust": cpu["locust"]}.items()}
    return {"users": users, "avg_latency_ms": avg_latency_ms,
            "in_flight_requests": round(in_flight, 1) if in_flight is not None else None,
            "machine_busy_fraction": busy, "bound_by": "cpu" if busy is not None and busy >= CPU_BOUND_AT else "users",
            "cpu_s": cpu, "cpu_s_per_1000_acked": per_k}


__all__ = ["CPU_BOUND_AT", "CpuMeter", "limits"]

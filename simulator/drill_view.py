"""What a drill shows while it runs: one snapshot per second, and the phase at a moment.

Both the paced replay of a deterministic run (`simulator.drill`) and the live view of a
Ray run (`simulator.ray.drill`) build the same snapshots from the same timeline, so the
live view and the final report cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.run_view import Event, RunView


@dataclass
class Snapshot:
    """What the drill display shows at one moment of (virtual or real) run time."""

    t: float
    horizon: float
    phase: str
    faults: list[str] = field(default_factory=list)
    throughput: dict[str, int] = field(default_factory=dict)  # acked writes in the last second, per region
    lag_ms: dict[str, float | None] | None = None  # None: the run does not record lag over time
    events: list[Event] = field(default_factory=list)  # events since the previous snapshot


ProgressFn = Callable[[Snapshot], None]


def phase_at(view: RunView, t: float) -> str:
    """The drill phase at time t, from the fault windows and the failover timeline."""
    if t > view.duration:
        return "quiesce: load stopped, replicas catching up"
    active = [w for w in view.windows if w.start <= t < w.end]
    outages = [w for w in active if w.outage]
    if outages:
        w = outages[0]
        seen = [e for e in view.events if w.start <= e.t <= t]
        promoted = [e for e in seen if e.event == "promoted"]
        resumed = [e for e in seen if e.event == "writes_resumed"]
        if resumed:
            return f"failed over: writes resumed ({w.label})"
        if promoted:
            return f"failing over: {promoted[-1].detail}"
        if any(e.event == "detected" for e in seen):
            return f"failure detected, promoting ({w.label})"
        return f"outage: {w.label}, detecting"
    if active:
        return "degraded: " + ", ".join(w.label for w in active)
    ended = [w for w in view.windows if w.end <= t and w.outage]
    if ended:
        last = ended[-1]
        rejoin = [e for e in view.events if e.event == "rejoined" and e.t >= last.end]
        if rejoin and t < rejoin[0].t:
            return f"recovering: {','.join(last.targets)} catching up"
    return "steady"


__all__ = ["ProgressFn", "Snapshot", "phase_at"]

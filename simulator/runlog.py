"""What a run records besides the client history: reports, faults, lag, money in transit,
the failover timeline. Both runtimes fill one `RunLog`; the checkers, metrics and reports
read it the same way whichever runtime wrote it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chaos import Fault

Reported = tuple[float, int, str, dict[str, Any]]
"""(scenario seconds, region, kind, detail): a node's `Report` effect."""


@dataclass
class RunLog:
    reports: list[Reported] = field(default_factory=list)
    faults: list[tuple[float, str, Fault]] = field(default_factory=list)  # (s, "start"/"end", fault)
    lag_ns: Any = field(default_factory=list)  # replication lag samples (a list or an int64 array)
    lag_at: list[tuple[int, int, int]] = field(default_factory=list)  # (scenario ns, receiving region, lag ns)
    transit: list[tuple[float, list[int | None]]] = field(default_factory=list)  # (s, per-region transit net)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # measured failover steps
    diverged: set[int] = field(default_factory=set)  # transfer ids of void (reported) entries
    events: int = 0  # runtime events handled (deterministic) or messages handled (Ray)
    wall_s: float = 0.0
    # deterministic runtime: virtual s past the quiesce until every replica settled (None: never,
    # within simulator.runtime.SETTLE_MAX_S; judged as it stood)
    settle_s: float | None = None


REPORT_EVENTS = {"promotion": "promoted", "ready": "writes_resumed", "divergence": "divergence"}
"""Node reports that are steps of the failover timeline, and the timeline's names for them."""


def report_event(t: float, region: str, kind: str, detail: dict[str, Any]) -> dict[str, Any] | None:
    """The timeline entry a node's report makes, if it makes one."""
    if kind not in REPORT_EVENTS:
        return None
    keep = {k: v for k, v in detail.items() if k in ("units", "version", "lost", "region")}
    return {"t": round(t, 4), "event": REPORT_EVENTS[kind], "region": region, "detail": json.dumps(keep, default=str)}


__all__ = ["REPORT_EVENTS", "Reported", "RunLog", "report_event"]

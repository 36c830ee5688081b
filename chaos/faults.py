"""Faults as data: what goes wrong, where, when and for how long.

A schedule is a list of `Fault(at, kind, target, duration, params)`, times in seconds of
virtual time. Any runtime applies them; this module only describes and validates them
(stdlib only, per the architecture's dependency order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# kind -> (how many target regions, allowed params with defaults)
FAULT_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "partition": ("1+", {}),  # the targets on one side, everyone else on the other
    "partition-partial": ("2", {}),  # only the link between two regions is cut
    "partition-oneway": ("2", {}),  # messages target[0] -> target[1] are dropped
    "partition-bridge": ("1", {}),  # two halves that only the bridge region connects
    "crash": ("1", {}),  # volatile state lost; restart at the end, recovery by replay
    "pause": ("1", {}),  # the region stops processing (GC, stalled VM) and resumes
    "latency": ("1+", {"extra_ms": 200.0}),  # every link of the targets slows down
    "loss": ("1+", {"p": 0.2}),
    "duplicate": ("1+", {"p": 0.2}),
    "reorder": ("1+", {"extra_ms": 30.0}),  # random extra delay, FIFO off on the links
    "clock-skew": ("1", {"offset_ms": 500.0, "drift_ppm": 5000.0}),
    "corrupt": ("1", {"records": 1}),  # stored records damaged; detected by checksum
}


class FaultError(ValueError):
    """A fault description that cannot be applied (unknown kind, target, param)."""


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: tuple[str, ...]
    duration: float
    params: dict[str, Any] = field(default_factory=dict)

    def end(self) -> float:
        return self.at + self.duration

    def param(self, name: str) -> Any:
        return self.params.get(name, FAULT_KINDS[self.kind][1][name])

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "fault": self.kind, "target": list(self.target), "duration": self.duration,
                **self.params}


def validate_fault(f: Fault, regions: list[str], where: str = "chaos") -> None:
    if f.kind not in FAULT_KINDS:
        raise FaultError(f"{where}.fault: unknown fault {f.kind!r} (expected one of {sorted(FAULT_KINDS)})")
    arity, allowed = FAULT_KINDS[f.kind]
    for name in f.params:
        if name not in allowed:
            raise FaultError(f"{where}.{name}: unknown parameter for {f.kind!r} (expected one of {sorted(allowed)})")
    for t in f.target:
        if t not in regions:
            raise FaultError(f"{where}.target: unknown region {t!r} (regions are {regions})")
    n = len(f.target)
    if (arity == "1" and n != 1) or (arity == "2" and n != 2) or (arity == "1+" and n < 1):
        raise FaultError(f"{where}.target: {f.kind!r} takes {arity} region(s), got {n}")
    if f.kind == "partition" and n >= len(regions):
        raise FaultError(f"{where}.target: a partition must leave at least one region on the other side")
    if f.at < 0 or f.duration <= 0:
        raise FaultError(f"{where}: 'at' must be >= 0 and 'duration' > 0, got at={f.at} duration={f.duration}")


def blocked_links(f: Fault, regions: list[str]) -> set[tuple[int, int]]:
    """Directed links (i, j) a partition-type fault cuts."""
    idx = {r: i for i, r in enumerate(regions)}
    n = len(regions)
    t = [idx[x] for x in f.target]
    cut: set[tuple[int, int]] = set()
    if f.kind == "partition":
        side = set(t)
        cut = {(i, j) for i in range(n) for j in range(n) if (i in side) != (j in side)}
    elif f.kind == "partition-partial":
        cut = {(t[0], t[1]), (t[1], t[0])}
    elif f.kind == "partition-oneway":
        cut = {(t[0], t[1])}
    elif f.kind == "partition-bridge":
        others = [i for i in range(n) if i != t[0]]
        left, right = set(others[: len(others) // 2]), set(others[len(others) // 2 :])
        cut = {(i, j) for i in left for j in right} | {(j, i) for i in left for j in right}
    return cut


def links_of(f: Fault, regions: list[str]) -> set[tuple[int, int]]:
    """Directed links a link-quality fault (latency, loss, …) applies to."""
    idx = {r: i for i, r in enumerate(regions)}
    t = {idx[x] for x in f.target}
    n = len(regions)
    return {(i, j) for i in range(n) for j in range(n) if i != j and (i in t or j in t)}

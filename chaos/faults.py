"""Faults as data: what goes wrong, where, when and for how long.

A schedule is a list of `Fault(at, kind, target, duration, params)`, times in seconds of
virtual time. Any runtime applies them; this module only describes and validates them
(stdlib only, per the architecture's dependency order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# kind -> (how many target regions, allowed params with defaults)
FAULT_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "partition": ("1+", {}),  # the targets on one side, everyone else on the other
    "partition-partial": ("2", {}),  # only the link between two regions is cut
    "partition-oneway": ("2", {}),  # messages target[0] -> target[1] are dropped
    "partition-bridge": ("1", {}),  # two halves that only the bridge region connects
    # volatile state lost; restart at the end, recovery by replay. `city` labels a crash that
    # is part of a city-loss (set by the expansion below, shown by reports; no runtime reads it)
    "crash": ("1", {"city": ""}),
    "pause": ("1", {}),  # the region stops processing (GC, stalled VM) and resumes
    "latency": ("1+", {"extra_ms": 200.0}),  # every link of the targets slows down
    "loss": ("1+", {"p": 0.2}),
    "duplicate": ("1+", {"p": 0.2}),
    "reorder": ("1+", {"extra_ms": 30.0}),  # random extra delay, FIFO off on the links
    "clock-skew": ("1", {"offset_ms": 500.0, "drift_ppm": 5000.0}),
    "corrupt": ("1", {"records": 1}),  # stored records damaged; detected by checksum
    # the region's whole machine is gone (power cut): every process on it, the region's and
    # anything else it hosts; its disk survives, and the node comes back when the fault ends.
    # A runtime without machines of its own (the deterministic one) applies it as a crash:
    # volatile state lost, recovery by replay of the store. `returns = false`: the machine
    # never comes back within the run (the region stays down to the end; its survivors carry
    # on without it); `duration` is then how long the drill calls it an outage in progress.
    "node-loss": ("1", {"returns": True}),
}


DOWN_FAULTS = ("crash", "node-loss")
"""Faults that take a region down (volatile state lost) until they end, when it restarts from its store."""

FAULT_TITLES: dict[str, str] = {"node-loss": "node lost"}
"""How drills and reports name a fault kind, where that differs from the kind itself."""


NOT_RESTORED = "node lost (not restored)"
"""What drills and reports call a node loss with `returns = false`."""


def fault_title(kind: str, params: Mapping[str, Any] | None = None) -> str:
    """What a drill or report calls a fault kind: `node lost` for `node-loss`, and `node lost
    (not restored)` for one whose `params` (a fault's, or its JSON form) say `returns = false`."""
    if kind == "node-loss" and params is not None and params.get("returns") is False:
        return NOT_RESTORED
    return FAULT_TITLES.get(kind, kind)


def stays_down(f: Fault) -> bool:
    """Whether the fault takes its region away for the rest of the run (a node loss with
    `returns = false`): no runtime restarts it, and the checkers do not expect it back."""
    return f.kind == "node-loss" and f.params.get("returns") is False


PROCESS_FAULTS = ("crash", "node-loss", "pause", "clock-skew", "corrupt")
"""Faults a runtime applies through the region's own process (kill it, hold it, change its
clock, damage its store and have it scrub): the others act on links between regions."""


def check_after_loss(faults: Sequence[Fault], where: Sequence[str] | None = None) -> None:
    """Refuse a schedule with a fault on a region at or after its node is lost for good.

    A region lost for good (`returns = false`) has no process from the loss on: a fault on
    its process (`PROCESS_FAULTS`) must be over before the loss, because its start or its end
    would act on a process that is gone: on Ray a call to an actor that can never start
    again (the controller waits for it for ever), in the deterministic runtime a restart or
    a clock change nobody runs, or damage to a disk nobody scrubs. A link fault that *starts*
    at or after the loss and names the region acts on nothing of it either way; both
    runtimes would apply it harmlessly (a down region's fence and link filters are skipped),
    but the drill would then report a partition, and an RTO, of a region that was already
    gone: it is refused too, and the same links among the survivors are a fault naming only
    them. A link fault that began before the loss (a cut, then the power) stays: it acted on
    a live region, and its end changes only the survivors' links. `where` names each fault
    (`chaos[3]`; by default its place in `faults`); the error names it, its kind, the region
    and the loss (FaultError)."""
    names = list(where) if where is not None else [f"chaos[{i}]" for i in range(len(faults))]
    losses: dict[str, int] = {}  # region -> index of its first loss for good
    for i, f in enumerate(faults):
        if stays_down(f):
            first = losses.get(f.target[0])
            if first is None or f.at < faults[first].at:
                losses[f.target[0]] = i
    for i, f in enumerate(faults):
        for region in f.target:
            k = losses.get(region)
            if k is None or k == i:
                continue
            loss = faults[k]
            lost = f"{region}'s node is lost for good at {loss.at:g} s ({names[k]}, returns = false)"
            kind = f.label if f.params.get("city") else repr(f.kind)  # a city-loss is a crash per datacentre
            if f.kind in PROCESS_FAULTS and f.end() >= loss.at:
                raise FaultError(
                    f"{names[i]}: {kind} on {region} from {f.at:g} s to {f.end():g} s acts on its process, "
                    f"but {lost}: no process of it is left to act on. A fault on a region lost for good must "
                    "end before the loss")
            if f.kind not in PROCESS_FAULTS and f.at >= loss.at:
                raise FaultError(
                    f"{names[i]}: {kind} from {f.at:g} s names {region}, but {lost}: a link fault cannot "
                    "act on a region that is gone. Name only surviving regions")


# A fault on a group of regions, expanded before any runtime sees it:
# kind -> the per-region fault kind it becomes (one per member, same start and duration).
GROUP_FAULTS: dict[str, str] = {
    "city-loss": "crash",  # every datacentre of a city at once (power, flood, fibre cut to the city)
}
PARAM_RANGES: dict[str, tuple[float, float]] = {"p": (0.0, 1.0), "extra_ms": (0.0, math.inf),
                                                "records": (1, 10_000)}


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

    @property
    def label(self) -> str:
        """What a report calls it: `city-loss beijing` for a crash that is part of one."""
        city = self.params.get("city")
        return f"city-loss {city}" if city else fault_title(self.kind, self.params)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "fault": self.kind, "target": list(self.target), "duration": self.duration,
                **self.params}


def validate_fault(f: Fault, regions: list[str], where: str = "chaos") -> None:
    if f.kind not in FAULT_KINDS:
        raise FaultError(f"{where}.fault: unknown fault {f.kind!r} "
                         f"(expected one of {sorted([*FAULT_KINDS, *GROUP_FAULTS])})")
    arity, allowed = FAULT_KINDS[f.kind]
    for name, value in f.params.items():
        if name not in allowed:
            raise FaultError(f"{where}.{name}: unknown parameter for {f.kind!r} (expected one of {sorted(allowed)})")
        default = allowed[name]
        if isinstance(default, bool):  # before int: a bool is an int to isinstance, and 1 is not `true`
            if type(value) is not bool:
                raise FaultError(f"{where}.{name}: expected true or false, got {value!r}")
            continue
        if isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, int):
            ok = type(value) is int
        else:
            ok = type(value) in (int, float) and math.isfinite(value)
        lo, hi = PARAM_RANGES.get(name, (-math.inf, math.inf))
        if not ok or (not isinstance(value, str) and not lo <= value <= hi):
            want = {str: "a string", int: "an integer"}.get(type(default), "a number")
            rng = f" in [{lo:g}, {hi:g}]" if name in PARAM_RANGES else ""
            raise FaultError(f"{where}.{name}: expected {want}{rng}, got {value!r}")
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


def expand_group(f: Fault, members: tuple[str, ...] | list[str], where: str = "chaos") -> list[Fault]:
    """A group fault (`city-loss`) as one fault per member region, same start and duration,
    each labelled with the group (params `city`), so the runtimes apply faults they know."""
    if f.kind not in GROUP_FAULTS:
        raise FaultError(f"{where}.fault: {f.kind!r} is not a group fault ({sorted(GROUP_FAULTS)})")
    if f.params:
        raise FaultError(f"{where}.{next(iter(f.params))}: {f.kind!r} takes no parameters")
    kind = GROUP_FAULTS[f.kind]
    return [Fault(f.at, kind, (m,), f.duration, {"city": f.target[0]}) for m in members]


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

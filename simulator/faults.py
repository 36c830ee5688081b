"""One fault dispatcher for every runtime: a fault's start and end become actions.

A fault schedule means the same thing whichever runtime applies it: a crash loses the
region's volatile state and restarts it from its store when the fault ends (a node loss
with `returns = false` never does: its region stays down to the end of the run), a pause holds
its inbox and timers, a clock-skew changes its clock's rate for the window, a corruption
damages stored records (then a scrub finds them), and link faults are handed to the
network layer. The dispatcher is sans-IO: `start`/`end` record the fault and its timeline
entries and return the actions, in order; the deterministic runtime carries them out on
the spot, the Ray controller with actor calls. Failure detection ("detected"), fencing
and rejoining are measured by the runtime and recorded here, so both timelines are
written by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos import DOWN_FAULTS, NOT_RESTORED, Fault, stays_down
from simulator.runlog import RunLog

OUTAGES = ("crash", "node-loss", "partition", "pause")
"""Faults whose region a peer's failure detector should come to suspect."""


@dataclass(frozen=True)
class Crash:
    """The region's volatile state is lost. `node`: its whole machine went with it (a
    `node-loss`): a runtime with machines switches the node off, one without kills the region."""

    region: int
    node: bool = False


@dataclass(frozen=True)
class Restart:
    """The fault is over: the region restarts from its store (`node`: once its machine is back on)."""

    region: int
    node: bool = False


@dataclass(frozen=True)
class Pause:
    region: int
    paused: bool
    until_s: float = 0.0  # when the pause ends (scenario s): a runtime may hold the inbox until then


@dataclass(frozen=True)
class ClockRate:
    region: int
    rate: float


@dataclass(frozen=True)
class Corrupt:
    region: int
    records: int


@dataclass(frozen=True)
class Fence:
    """A partitioned region stops writing when its lease runs out: the runtime reads when
    that is (the node's own clock) and calls `FaultDispatcher.fenced`."""

    region: int


@dataclass(frozen=True)
class LinkFaults:
    """The link faults in force changed: the network layer applies `active`."""

    active: tuple[Fault, ...]


Action = Crash | Restart | Pause | ClockRate | Corrupt | Fence | LinkFaults


class FaultDispatcher:
    """The schedule's faults as actions, with the run's fault log and timeline."""

    def __init__(self, regions: list[str], faults: list[Fault], log: RunLog) -> None:
        self.regions = regions
        self.faults = faults
        self.log = log
        self.active: list[Fault] = []
        self.watching: dict[int, float] = {}  # faulted region -> fault start (s), until suspected
        self.lost_nodes: set[int] = set()  # regions whose node an active outage took (they restart on a new one)
        self.gone: set[int] = set()  # regions whose node is lost for good (`returns = false`): never restarted

    def _timeline(self, t: float, event: str, region: str, **detail: object) -> None:
        self.log.timeline.append({"t": round(t, 4), "event": event, "region": region, **detail})

    def start(self, i: int, now_s: float) -> list[Action]:
        f = self.faults[i]
        self.active.append(f)
        self.log.faults.append((now_s, "start", f))
        name = f.target[0]
        r = self.regions.index(name)
        detail = {"returns": False} if stays_down(f) else {}
        self._timeline(now_s, "fault", name, fault=f.kind, target=list(f.target), end=round(f.end(), 4), **detail)
        if f.kind in OUTAGES:
            self.watching[r] = now_s
        actions: list[Action] = []
        if f.kind == "partition":
            actions.append(Fence(r))
        elif f.kind == "crash" and not self._down(r, but=f):
            self._timeline(now_s, "fenced", name, detail="process gone: a crashed home accepts no writes")
            actions.append(Crash(r))
        elif f.kind == "node-loss" and r not in self.gone:  # the machine goes even if its process was gone
            what = (f"{NOT_RESTORED}: the region's machine and every process on it are gone for the rest of "
                    "the run" if stays_down(f) else "node lost: the region's machine and every process on it are gone")
            self._timeline(now_s, "fenced", name, detail=f"{what}; a lost home accepts no writes")
            actions.append(Crash(r, node=True))
            self.lost_nodes.add(r)
            if stays_down(f):
                self.gone.add(r)
        elif f.kind == "pause":
            actions.append(Pause(r, True, f.end()))
        elif f.kind == "clock-skew":
            actions.append(ClockRate(r, 1 + f.param("drift_ppm") * 1e-6))
        elif f.kind == "corrupt":
            actions.append(Corrupt(r, int(f.param("records"))))
        actions.append(LinkFaults(tuple(self.active)))
        return actions

    def end(self, i: int, now_s: float) -> list[Action]:
        f = self.faults[i]
        if f not in self.active or stays_down(f):
            return []  # a node lost for good stays an active fault: nothing of it ends within the run
        self.active.remove(f)
        self.log.faults.append((now_s, "end", f))
        name = f.target[0]
        r = self.regions.index(name)
        self._timeline(now_s, "healed", name, detail=f"{f.kind} ended")
        actions: list[Action] = []
        if f.kind in DOWN_FAULTS:
            if not self._down(r):
                actions.append(Restart(r, node=r in self.lost_nodes))
                self.lost_nodes.discard(r)
        elif f.kind == "pause":
            actions.append(Pause(r, False))
        elif f.kind == "clock-skew":
            actions.append(ClockRate(r, 1.0))
        actions.append(LinkFaults(tuple(self.active)))
        return actions

    def _down(self, r: int, but: Fault | None = None) -> bool:
        """Whether another active crash or node loss keeps region `r` down. Overlapping
        outages of one region are one outage, their union: a process that is gone cannot crash
        again, and it comes back (on a new node if any of them took the node) when the last
        of them ends, not when the first does (a
        restart in the middle of an outage restarted a live node over a step it had in
        flight, and that region never stepped again: fuzz seed 454, quorum)."""
        return r in self.gone or any(a is not but and a.kind in DOWN_FAULTS and self.regions.index(a.target[0]) == r
                                     for a in self.active)

    def fenced(self, region: int, at_s: float) -> None:
        self._timeline(at_s, "fenced", self.regions[region], detail="write lease expired on the cut-off side")

    def detected(self, target: int, by: int, now_s: float) -> bool:
        """A live peer's failure detector suspects a faulted region: the first one counts."""
        since = self.watching.pop(target, None)
        if since is None:
            return False
        self._timeline(now_s, "detected", self.regions[by],
                       detail=f"{self.regions[target]} suspected {now_s - since:.3f} s after the fault")
        return True

    def rejoined(self, region: int, now_s: float) -> None:
        self._timeline(now_s, "rejoined", self.regions[region],
                       detail="caught up with the log heads its peers had at restart")


def lost_for_good(faults: list[Fault] | tuple[Fault, ...], regions: list[str]) -> set[int]:
    """The regions a run's schedule takes away for good (a node loss with `returns = false`):
    down at the end by design, so the checkers judge the survivors without them."""
    return {regions.index(f.target[0]) for f in faults if stays_down(f)}


__all__ = ["OUTAGES", "Action", "ClockRate", "Corrupt", "Crash", "Fence", "FaultDispatcher", "LinkFaults", "Pause",
           "Restart", "lost_for_good"]

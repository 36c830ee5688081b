"""A finished run, as every reader sees it: checkers, metrics, reports, output files.

Both runtimes end with a `RunResult`: the plan and the client history (one `OpState`
slot per planned operation), each region's final replica (or None if it was down), each
region's durable store, the run log and the network counters. The checkers never ask a
runtime anything else, so a verdict means the same whichever runtime earned it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from chaos import Fault
from replication.config import NodeConfig
from simulator.clients import OpState
from simulator.runlog import RunLog
from simulator.scenario import Scenario
from simulator.workload import Plan


class ReplicaView(Protocol):
    """What the checkers read of a region's final replica."""

    @property
    def engine(self) -> Any: ...  # `.accounts`, `.transfers` (engine rows)

    @property
    def anomalies(self) -> list[tuple[int, int, int, int]]: ...

    @property
    def heads(self) -> list[int]: ...


class StoreView(Protocol):
    """What the checkers read of a region's durable store."""

    records: list[Any]

    def verify_chain(self) -> tuple[bool, int | None]: ...


@dataclass
class EngineRows:
    """A finished replica's engine as the checkers read it: its account and transfer rows."""

    accounts: np.ndarray
    transfers: np.ndarray


@dataclass
class ReplicaSnapshot:
    """A finished region's replica taken out of its process (the Ray runtime's, or a test's)."""

    engine: EngineRows
    anomalies: list[tuple[int, int, int, int]]
    heads: list[int]
    status: dict[str, Any]


@dataclass(frozen=True)
class NetCounters:
    sent: int = 0
    dropped: int = 0
    bytes: int = 0


@dataclass
class RunResult:
    s: Scenario
    seed: int
    regions: list[str]
    plan: Plan
    ops: OpState
    nodes: list[Any]  # ReplicaView | None per region
    stores: list[Any]  # StoreView per region
    cfgs: list[NodeConfig]
    log: RunLog
    faults: list[Fault]
    end: int  # scenario ns at which the run (load + quiesce) ended
    net: NetCounters
    trace_digest: str
    ray: dict[str, Any] | None = None  # the Ray runtime's own figures (wall times, crashes, calls)
    fault_windows: list[tuple[float, float, Fault]] = field(init=False)

    def __post_init__(self) -> None:
        self.fault_windows = [(f.at, min(f.end(), self.s.duration), f) for f in self.faults]

    @property
    def R(self) -> int:  # noqa: N802 - the region count, as everywhere in the simulator
        return len(self.regions)

    def digest(self) -> str:
        """Deterministic runtime: the replay digest (same seed, same digest). Ray: a
        fingerprint of the history (real time is not reproducible)."""
        return self.trace_digest


__all__ = ["EngineRows", "NetCounters", "ReplicaSnapshot", "ReplicaView", "RunResult", "StoreView"]

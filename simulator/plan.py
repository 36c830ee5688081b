"""What a run will do, fixed by the scenario and the seed before anything runs.

The plan (every client operation: who, whom, how much, when, from where) and the fault
schedule (the scenario's own faults plus the nemesis' random ones) are drawn from one
generator seeded once, in one order; both runtimes call `plan_and_faults`, so a seed
means the same workload and the same faults on the deterministic runtime and on Ray.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from chaos import Fault, check_after_loss, random_schedule
from simulator.scenario import Scenario
from simulator.workload import Plan, make_plan


def plan_and_faults(scenario: Scenario, rng: np.random.Generator) -> tuple[Plan, list[Fault]]:
    """The plan, then the fault schedule, drawn from `rng` (which the deterministic
    runtime goes on using for its network)."""
    plan = make_plan(scenario, rng)
    faults = list(scenario.chaos)
    if scenario.random_faults:
        faults += random_schedule(rng, list(scenario.regions), scenario.duration, scenario.random_faults)
    n = len(scenario.chaos)
    kept = [(f, f"chaos[{i}]" if i < n else f"random fault {i - n}") for i, f in enumerate(faults)
            if f.at < scenario.duration]
    # A scenario built in code (not parsed), or with random faults, gets the refusal a
    # scenario file gets: no fault may act on a region after its node is lost for good.
    check_after_loss([f for f, _ in kept], [w for _, w in kept])
    faults = [f for f, _ in kept]
    return plan, faults


def client_batches(plan: Plan, region: int, window: float) -> tuple[np.ndarray, np.ndarray]:
    """`plan.batches[region]` for another window length (the plan's operations unchanged)."""
    ops = np.nonzero(plan.region == region)[0]
    if not len(ops):
        return np.zeros(0, np.int64), ops
    w = np.floor(plan.t[ops] / window).astype(np.int64)
    return np.nonzero(np.diff(w, prepend=-1))[0], ops


def submit_time(plan: Plan, first_op: int, window: float, duration: float) -> float:
    """When the batch whose first operation is `first_op` leaves its client: the end of
    the window the operation falls in (a client groups a window's operations)."""
    return float(min((np.floor(plan.t[first_op] / window) + 1) * window, duration))


def shortened(scenario: Scenario, duration: float, quiesce: float | None = None) -> Scenario:
    """The scenario squeezed into `duration` seconds of load: every fault and the spend-all
    probe keep their relative place (a crash at 30% of the run stays at 30%). The rate is
    unchanged. For tests and quick drills; `time_scale` is the other way to go faster."""
    k = duration / scenario.duration
    chaos = tuple(replace(f, at=round(f.at * k, 3), duration=round(f.duration * k, 3)) for f in scenario.chaos)
    w = scenario.workload
    spend = replace(w.spend_all, at=round(w.spend_all.at * k, 3))
    return replace(scenario, duration=duration, quiesce=scenario.quiesce if quiesce is None else quiesce,
                   chaos=chaos, workload=replace(w, spend_all=spend))


__all__ = ["client_batches", "plan_and_faults", "shortened", "submit_time"]

"""Faults as data, the random nemesis, and random fault schedules against the promises."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos import FAULT_KINDS, Fault, FaultError, blocked_links, random_schedule, validate_fault
from simulator.cli import fuzz_results
from simulator.run import run_scenario
from simulator.scenario import load_scenario

REGIONS = ["changchun", "beijing", "shanghai"]


def test_nemesis_is_deterministic_and_valid():
    a = random_schedule(np.random.default_rng(5), REGIONS, 10.0, 6)
    b = random_schedule(np.random.default_rng(5), REGIONS, 10.0, 6)
    assert a == b
    for f in a:
        validate_fault(f, REGIONS)
        assert 0 <= f.at < 10.0


def test_partition_shapes():
    full = blocked_links(Fault(0, "partition", ("changchun",), 1), REGIONS)
    assert full == {(0, 1), (1, 0), (0, 2), (2, 0)}
    assert blocked_links(Fault(0, "partition-oneway", ("beijing", "shanghai"), 1), REGIONS) == {(1, 2)}
    bridge = blocked_links(Fault(0, "partition-bridge", ("beijing",), 1), REGIONS)
    assert bridge == {(0, 2), (2, 0)}  # only Beijing talks to both sides


def test_bad_faults_are_named():
    with pytest.raises(FaultError, match="unknown fault"):
        validate_fault(Fault(0, "flood", ("beijing",), 1), REGIONS)
    with pytest.raises(FaultError, match="takes 2"):
        validate_fault(Fault(0, "partition-partial", ("beijing",), 1), REGIONS)


@pytest.mark.slow
def test_corrupted_record_is_detected_and_repaired_from_a_peer():
    s = load_scenario("clock-skew")
    s = replace(s, duration=10.0, quiesce=5.0, workload=replace(s.workload, rate=300))
    sim, res = run_scenario(s, 2)
    assert any(k == "corruption" for _, _, k, _ in sim.log.reports)
    assert res["invariants"]["audit_chain"]["ok"]
    assert res["violated"] == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["unit+semi-sync", "escrow"])
def test_small_fuzz_finds_no_violation(mode):  # type: ignore[no-untyped-def]
    jobs = [("fuzz", mode, seed, True) for seed in range(1, 11)]
    for seed, violated, _, firsts in fuzz_results(jobs, workers=2):
        assert violated == [], (seed, firsts, f"replay: geoledger simulate fuzz --seed {seed} --mode {mode}")


KINDS = sorted(FAULT_KINDS)
fault_st = st.builds(
    lambda kind, at, dur, t1, t2: (kind, round(at, 2), round(dur, 2), t1, t2),
    st.sampled_from(KINDS), st.floats(0.2, 4.0), st.floats(0.1, 3.0), st.sampled_from(REGIONS),
    st.sampled_from(REGIONS),
)


def _fault(kind: str, at: float, dur: float, t1: str, t2: str) -> Fault | None:
    arity = FAULT_KINDS[kind][0]
    if arity == "2":
        if t1 == t2:
            return None
        return Fault(at, kind, (t1, t2), dur)
    return Fault(at, kind, (t1,), dur)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fault_st, min_size=1, max_size=4), st.sampled_from(["unit+semi-sync", "escrow"]),
       st.integers(1, 10_000))
@pytest.mark.slow
def test_random_fault_schedules_keep_the_promises(faults, mode, seed):  # type: ignore[no-untyped-def]
    chaos = tuple(f for f in (_fault(*x) for x in faults) if f is not None)
    base = load_scenario("fuzz").with_mode(mode)
    s = replace(base, chaos=chaos, random_faults=0, duration=5.0, quiesce=7.0,
                workload=replace(base.workload, rate=150, customers=300))
    _, res = run_scenario(s, seed)
    assert res["violated"] == [], {k: res["invariants"][k]["first_violation"] for k in res["violated"]}


def test_overlapping_crashes_of_one_region_are_one_outage() -> None:
    """A process that is gone cannot crash again, and it comes back when the last crash
    ends: two overlapping crash faults give one Crash and one Restart, at the union's ends."""
    from simulator.faults import Crash, FaultDispatcher, Restart
    from simulator.runlog import RunLog

    faults = [Fault(1.0, "crash", ("beijing",), 2.3), Fault(1.3, "crash", ("beijing",), 0.9),
              Fault(1.5, "crash", ("shanghai",), 0.5)]
    d = FaultDispatcher(list(REGIONS), faults, RunLog())

    def outages(actions: list[object]) -> list[tuple[str, int]]:
        return [(type(a).__name__, a.region) for a in actions if isinstance(a, Crash | Restart)]

    beijing, shanghai = REGIONS.index("beijing"), REGIONS.index("shanghai")
    assert outages(d.start(0, 1.0)) == [("Crash", beijing)]
    assert outages(d.start(1, 1.3)) == []  # already down
    assert outages(d.start(2, 1.5)) == [("Crash", shanghai)]  # another region's crash is its own
    assert outages(d.end(1, 2.2)) == []  # the first crash still holds it down
    assert outages(d.end(2, 2.0)) == [("Restart", shanghai)]
    assert outages(d.end(0, 3.3)) == [("Restart", beijing)]


def test_a_node_lost_during_a_crash_comes_back_on_a_new_node_when_the_outage_ends() -> None:
    from simulator.faults import Crash, FaultDispatcher, Restart
    from simulator.runlog import RunLog

    faults = [Fault(1.0, "crash", ("beijing",), 3.0), Fault(1.5, "node-loss", ("beijing",), 1.0)]
    d = FaultDispatcher(list(REGIONS), faults, RunLog())
    beijing = REGIONS.index("beijing")
    assert [(type(a).__name__, a.node) for a in d.start(0, 1.0) if isinstance(a, Crash)] == [("Crash", False)]
    assert [(type(a).__name__, a.node) for a in d.start(1, 1.5) if isinstance(a, Crash)] == [("Crash", True)]
    assert [a for a in d.end(1, 2.5) if isinstance(a, Restart)] == []  # the crash still holds it down
    assert [(a.region, a.node) for a in d.end(0, 4.0) if isinstance(a, Restart)] == [(beijing, True)]


@pytest.mark.parametrize("mode", ["quorum", "unit+semi-sync"])
def test_a_region_crashed_twice_over_comes_back_and_keeps_the_promises(mode: str) -> None:
    """Fuzz seed 454 (quorum): a second crash inside the first restarted the region early,
    and the first crash's end then restarted the live node over a step it had scheduled;
    the region never stepped again and every acknowledged transfer after it was 'lost'."""
    base = load_scenario("fuzz").with_mode(mode)
    chaos = (Fault(1.0, "crash", ("beijing",), 2.3), Fault(1.3, "crash", ("beijing",), 0.9))
    s = replace(base, chaos=chaos, random_faults=0, duration=5.0, quiesce=5.0,
                workload=replace(base.workload, rate=200, customers=300))
    sim, res = run_scenario(s, 7)
    assert res["violated"] == [], {k: res["invariants"][k]["first_violation"] for k in res["violated"]}
    assert any(e["event"] == "rejoined" and e["region"] == "beijing" for e in sim.log.timeline)

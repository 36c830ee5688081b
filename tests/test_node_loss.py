"""`node-loss`: a region's whole machine gone, outside Ray.

The scenario loader takes it like any fault and refuses a bad one with a message naming
the problem; the deterministic runtime applies it as what it is without machines — a crash
(volatile state lost, recovery by replay), so a node-loss scenario runs in both runtimes
and gives the same figures as the crash; drills and reports call it "node lost". The Ray
side (a real node switched off) is `tests/test_ray_cluster.py`.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from chaos import DOWN_FAULTS, FAULT_KINDS, Fault, fault_title, random_schedule
from simulator.faults import Crash, FaultDispatcher, Restart
from simulator.runlog import RunLog
from simulator.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

BASE = 'name = "t"\n[regions]\nnames = ["changchun", "beijing", "shanghai"]\n'


def load_scenario_text(text: str) -> Scenario:
    return parse_scenario(tomllib.loads(text), "t")


def test_node_loss_loads_and_is_called_node_lost() -> None:
    s = load_scenario_text(BASE + '[[chaos]]\nat = 2.0\nfault = "node-loss"\ntarget = "beijing"\nduration = 3.0\n')
    (f,) = s.chaos
    assert (f.kind, f.target, f.at, f.duration, f.label) == ("node-loss", ("beijing",), 2.0, 3.0, "node lost")
    assert fault_title("node-loss") == "node lost" and fault_title("crash") == "crash"
    assert "node-loss" in DOWN_FAULTS and "node-loss" in FAULT_KINDS


@pytest.mark.parametrize("fault, message", [
    ('fault = "node-loss"\ntarget = ["beijing", "shanghai"]', r"chaos\[0\].target: 'node-loss' takes 1 region"),
    ('fault = "node-loss"\ntarget = "tokyo"', r"chaos\[0\].target: unknown region 'tokyo'"),
    ('fault = "node-loss"\ntarget = "beijing"\nback = false', r"chaos\[0\].back: unknown parameter for 'node-loss'"),
    ('fault = "node-loss"\ntarget = "beijing"\ncity = "beijing"', r"chaos\[0\].city: unknown parameter"),
    ('fault = "node_loss"\ntarget = "beijing"', r"chaos\[0\].fault: unknown fault 'node_loss'.*'node-loss'"),
])
def test_a_bad_node_loss_is_refused_naming_the_problem(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_text(BASE + f"[[chaos]]\nat = 2.0\nduration = 3.0\n{fault}\n")


@pytest.mark.parametrize("at, duration", [("-1.0", "3.0"), ("2.0", "0.0")])
def test_a_node_loss_needs_a_start_and_a_length(at: str, duration: str) -> None:
    with pytest.raises(ScenarioError, match=r"'at' must be >= 0 and 'duration' > 0"):
        load_scenario_text(BASE + f'[[chaos]]\nat = {at}\nduration = {duration}\nfault = "node-loss"\n'
                                  'target = "beijing"\n')


def test_the_dispatcher_turns_a_node_loss_into_a_crash_of_the_node_and_back() -> None:
    regions = ["changchun", "beijing", "shanghai"]
    log = RunLog()
    d = FaultDispatcher(regions, [Fault(1.0, "node-loss", ("beijing",), 2.0)], log)
    start = d.start(0, 1.0)
    assert Crash(1, node=True) in start
    assert 1 in d.watching, "a peer's failure detector should come to suspect the lost region"
    assert any(e["event"] == "fenced" and "node lost" in e["detail"] for e in log.timeline)
    assert Restart(1, node=True) in d.end(0, 3.0)


def test_the_random_nemesis_never_draws_a_node_loss() -> None:
    """A random schedule must run on any cluster (a node loss needs one whose nodes can be
    switched off); keeping the kinds as they were also keeps every seed's schedule."""
    import numpy as np

    drawn = {f.kind for seed in range(40)
             for f in random_schedule(np.random.default_rng(seed), ["a", "b", "c"], 20.0, 5)}
    assert "node-loss" not in drawn and "crash" in drawn


@pytest.mark.parametrize("mode", ["unit+semi-sync", pytest.param("quorum", marks=pytest.mark.slow)])
def test_the_deterministic_runtime_runs_a_node_loss_as_the_crash_it_is_there(mode: str) -> None:
    """Same seed, same plan: losing Beijing's node gives the figures losing Beijing's process
    gives (both lose volatile state and replay the store); every verdict holds, RPO 0."""
    from simulator.plan import shortened
    from simulator.run import run_scenario

    lost = shortened(load_scenario("node-loss"), 4.0, 2.0).with_mode(mode)
    lost = replace(lost, workload=replace(lost.workload, rate=150, customers=600))
    crash = replace(lost, chaos=tuple(replace(f, kind="crash") for f in lost.chaos))
    _, a = run_scenario(lost, 1)
    _, b = run_scenario(crash, 1)
    assert a["violated"] == [] and a["metrics"]["rpo"]["lost_acknowledged"] == 0
    assert [r["fault"] for r in a["metrics"]["rto"]] == ["node-loss"]
    assert a["metrics"]["rto"][0]["rto_s"] is not None
    assert [r["rto_s"] for r in a["metrics"]["rto"]] == [r["rto_s"] for r in b["metrics"]["rto"]]
    assert a["metrics"]["acked_transfers"] == b["metrics"]["acked_transfers"]
    assert a["final_digests"] == b["final_digests"]
    assert a["digest"] != b["digest"], "the trace names the fault it applied"


def test_reports_and_drills_call_it_node_lost() -> None:
    from simulator.decision import _fault_label
    from simulator.run_view import FaultWindow

    w = FaultWindow(2.0, 5.0, "node-loss", ("beijing",))
    assert w.label == "node lost beijing" and w.outage
    assert _fault_label({"fault": "node-loss", "target": ["beijing"]}) == "node lost beijing"

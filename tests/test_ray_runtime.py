"""The Ray runtime: the same scenarios and checkers on region actors, real crashes, real time.

One local Ray for the whole session (`ray_local`); scenarios are shortened (faults keep
their relative place) and run at a few hundred operations per second per region so the
file stays well under three minutes on a 2-core machine. Every promised invariant must
hold, exactly as on the deterministic runtime. The session fixture's teardown shuts Ray
down and fails the session if anything of it is left.
"""

from __future__ import annotations

import glob
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.ray

def _short(name: str, duration: float, quiesce: float, rate: float) -> Any:
    from simulator.plan import shortened
    from simulator.scenario import load_scenario

    s = shortened(load_scenario(name), duration, quiesce)
    return replace(s, workload=replace(s.workload, rate=rate))


def _run(state: dict[str, Any], scenario: Any, **kw: Any) -> tuple[Any, dict[str, Any]]:
    from simulator.ray import run_scenario_ray

    sim, res = run_scenario_ray(scenario, 1, **kw)
    state["pids"].update(res["ray"]["pids"])
    return sim, res


def _assert_promises_hold(res: dict[str, Any]) -> None:
    broken = {k: v["first_violation"] for k, v in res["invariants"].items() if v["promised"] and not v["ok"]}
    assert not broken, broken
    assert res["violated"] == []


def _keys(d: dict[str, Any]) -> set[str]:
    return set(d)


def test_baseline_on_ray_matches_the_output_contract(ray_local: dict[str, Any], tmp_path: Path) -> None:
    from simulator.run import run_scenario, write_outputs

    s = _short("baseline", 5.0, 3.0, 300)
    sim, res = _run(ray_local, s, time_scale=0.5)  # 8 scenario seconds in 4 wall seconds
    _assert_promises_hold(res)
    assert res["runtime"] == "ray"
    m = res["metrics"]
    hs = res["history_summary"]
    # every operation is accounted for (answered or timed out); how many are acknowledged at
    # a given offered rate is a capacity figure, measured by bench.ray_bench, not asserted here
    assert sum(hs["by_outcome"].values()) == hs["operations"] > 0
    assert m["acked_transfers"] > 0 and hs["by_outcome"].get("ok", 0) > 0
    assert m["replication_lag_ms"]["count"] > 0
    assert res["ray"]["time_scale"] == 0.5 and res["ray"]["wall_s"] > 0
    # same shape as the deterministic runtime's result, for the same scenario and seed
    _, det = run_scenario(s, 1)
    assert det["runtime"] == "deterministic"
    assert _keys(res) - {"ray"} == _keys(det)
    assert _keys(res["metrics"]) == _keys(det["metrics"])
    assert _keys(res["invariants"]) == _keys(det["invariants"])
    assert res["history_summary"]["operations"] == det["history_summary"]["operations"]  # the same plan
    write_outputs(sim, res, tmp_path)
    for f in ("result.json", "history.jsonl", "final_state.json"):
        assert (tmp_path / f).stat().st_size > 0


def test_region_outage_on_ray_kills_the_actor_and_recovers_from_sqlite(ray_local: dict[str, Any]) -> None:
    s = _short("region-outage", 8.0, 4.0, 300)  # Beijing killed at 2.4 s for 3.2 s
    _, res = _run(ray_local, s)
    _assert_promises_hold(res)
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    assert res["metrics"]["promotions"], "Beijing's units must move while it is down"
    rto = res["metrics"]["rto"][0]
    # writes resumed on Beijing's units before the run ended (how fast is bench.ray_bench's figure)
    assert rto["fault"] == "crash" and rto["rto_s"] is not None and 0 < rto["rto_s"] < s.duration - rto["at"]
    (crash,) = res["ray"]["crashes"]
    assert crash["region"] == "beijing"
    assert crash["new_pid"] != crash["old_pid"], "a real kill: a new process"
    assert crash["replayed_records"] > 0, "the restart replays its SQLite file"
    assert crash.get("caught_up_at") is not None, "and catches up from its peers"


def test_a_crash_shorter_than_rays_restart_still_brings_the_region_back(ray_local: dict[str, Any]) -> None:
    """The fault ends (0.2 s) long before Ray has the killed process back (a second or
    more): starting the new incarnation must wait for Ray, not fail as "actor unavailable"
    and leave the region dark for the rest of the run with the error lost in a log."""
    s = _short("region-outage", 6.0, 3.0, 300)
    s = replace(s, chaos=(replace(s.chaos[0], duration=0.2),))
    _, res = _run(ray_local, s)
    _assert_promises_hold(res)
    assert res["ray"]["controller_errors"] == []
    (crash,) = res["ray"]["crashes"]
    assert crash["new_pid"] != crash["old_pid"]
    assert crash["restart_at"] < crash["at"] + crash["process_back_wall_s"], "the fault ended first"
    assert crash.get("caught_up_at") is not None, "the region is back and caught up"


def test_quorum_on_ray_survives_killing_the_leaders_process(ray_local: dict[str, Any]) -> None:
    """The same scenario file under `quorum`: Changchun (the first Raft leader) is killed for
    real; the leader moves, nothing acknowledged is lost, and the new process rebuilds its
    Raft state (term, vote, log, commit marks) from its SQLite file before catching up."""
    s = _short("region-outage", 8.0, 4.0, 300).with_mode("quorum")
    s = replace(s, chaos=(replace(s.chaos[0], target=("changchun",)),))
    _, res = _run(ray_local, s)
    _assert_promises_hold(res)
    assert res["mode"] == "quorum"
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    rto = res["metrics"]["rto"][0]
    assert rto["rto_s"] is not None and 0 < rto["rto_s"] < s.duration - rto["at"], rto
    (crash,) = res["ray"]["crashes"]
    assert crash["region"] == "changchun" and crash["new_pid"] != crash["old_pid"]
    assert crash["replayed_records"] > 0, "the restart replays its Raft records"
    assert crash.get("caught_up_at") is not None
    assert len(set(res["final_digests"].values())) == 1


def test_partition_on_ray_no_double_spend_through_the_drill_runtime(ray_local: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    """Also the `simulator.drill` Runtime protocol: live snapshots each second, outputs on disk."""
    from simulator.ray import RayRuntime

    s = _short("partition", 8.0, 4.0, 300)  # Changchun cut off at 2 s for 3.2 s; spend-all at 3.2 s
    snapshots: list[Any] = []
    path = RayRuntime().run(s, 1, tmp_path, snapshots.append)
    res = json.loads(path.read_text())
    ray_local["pids"].update(res["ray"]["pids"])
    _assert_promises_hold(res)
    assert [snap.t for snap in snapshots] == [float(k) for k in range(1, 13)]
    events = [e.event for snap in snapshots for e in snap.events]
    assert {"fault", "detected", "promoted", "writes_resumed", "healed"} <= set(events), events
    assert any(snap.phase != "steady" for snap in snapshots)
    assert sum(sum(snap.throughput.values()) for snap in snapshots) > 0
    inv = res["invariants"]
    assert inv["no_overdraft"]["promised"] and inv["no_overdraft"]["ok"]
    assert res["metrics"]["network"]["dropped"] > 0, "the partition dropped messages"
    assert res["metrics"]["promotions"]


def test_every_message_duplicated_on_purpose_is_applied_once(ray_local: dict[str, Any]) -> None:
    """Also hostile clients on Ray: their attempts cross real actor links and the answers
    that must never be OK are not (the same `simulator.hostile` plan as the simulator's)."""
    from replication.outcomes import TIMEOUT, UNAVAILABLE
    from simulator.clients import OUT_FAIL, OUT_OK
    from simulator.scenario import ATTACKS

    s = _short("baseline", 4.0, 3.0, 200)
    s = replace(s, workload=replace(s.workload, hostile=replace(s.workload.hostile, share=0.1)))
    sim, res = _run(ray_local, s, duplicate=True)
    _assert_promises_hold(res)
    assert res["invariants"]["exactly_once"]["ok"]
    never_ok = {ATTACKS.index(a) + 1 for a in ("amount_extreme", "reserved_id", "bank_account", "account_u128")}
    hostile = sim.plan.attack > 0
    assert hostile.sum() > 10, "the plan carried hostile attempts"
    must_refuse = np.isin(sim.plan.attack, list(never_ok))
    assert not (must_refuse & (sim.ops.outcome == OUT_OK)).any(), "an attack that must fail was acknowledged"
    refused_by_rule = must_refuse & (sim.ops.outcome == OUT_FAIL) & ~np.isin(sim.ops.result, (UNAVAILABLE, TIMEOUT))
    assert refused_by_rule.sum() > 0, "the ledger's own rules (not a timeout) refused them"
    dup = res["ray"]["dup_client_replies"]
    # the second copy of a client batch reaches the node and is answered EXISTS, never a second OK
    assert dup["exists"] > 0
    assert res["metrics"]["network"]["messages"] > 0 and res["ray"]["duplicate"] is True


def test_a_failed_run_leaves_no_actors_or_store_files(ray_local: dict[str, Any]) -> None:
    import ray

    before = set(glob.glob(str(Path(tempfile.gettempdir()) / "geoledger-ray-*")))

    def boom(phase: str, done: float, total: float) -> None:
        if done > 0.5:
            raise RuntimeError("operator pressed ^C")

    from simulator.ray import run_scenario_ray

    with pytest.raises(RuntimeError, match="operator"):
        run_scenario_ray(_short("baseline", 3.0, 1.0, 100), 1, progress=boom)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        named = [a for a in ray.util.list_named_actors() if str(a).startswith("geoledger-")]
        if not named:
            break
        time.sleep(0.2)
    assert not named, named
    assert set(glob.glob(str(Path(tempfile.gettempdir()) / "geoledger-ray-*"))) <= before

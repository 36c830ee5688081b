"""Ray on a real multi-node cluster: one Ray node per region, joined by address, and a
region's whole node lost (every process on it killed at once) and brought back.

The cluster is `simulator.ray.cluster.LocalCluster` on this machine (a control node for the
controller and the clients, plus a node per region advertising `region_<name>`), driven
from a process of its own (`tests/support/ray_cluster.py`: this session may already have
its own Ray). Two short runs of `node-loss` (Beijing's node off at 2.4 s for 3.2 s), one per
kind of RPO-0 design (`unit+semi-sync`, `quorum`): every promised invariant holds, nothing
acknowledged is lost, writes on Beijing's accounts resume (RTO measured), each region's
actor runs on its own node, and the lost region comes back only on its new node. Then three
shorter runs of `node-lost-for-good` (Beijing's node off for good, `returns = false`): in
`quorum` and in `unit+semi-sync`, pinned as always, the survivors keep every promise and Ray
cannot bring the region back anywhere; in `unit+semi-sync` with the region pinning turned
off (test-only), Ray puts the region actors where it likes (measured: all on one node), and
the placement check and the verdicts report what that cost. The store of a region lost for good is audited from the
disk its node left (and a damaged entry written there after the loss fails that audit). The
cluster is started once for the five runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.ray import RAY_HOW, _ray_importable
from tests.support.realparts import require

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ["changchun", "beijing", "shanghai"]
MODES = ["unit+semi-sync", "quorum"]
LOST_PINNED, LOST_UNPINNED, LOST_SEMI = 2, 3, 4  # the runs of node-lost-for-good
PINNED_LOST = {"quorum": LOST_PINNED, "unit+semi-sync": LOST_SEMI}
NODE_LOSS_S = 10.0


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require("Ray", _ray_importable(), RAY_HOW)
    d = tmp_path_factory.mktemp("ray-cluster")
    # node-loss runs 10 s: on a loaded CI machine the first acknowledged write on Beijing's
    # accounts once came more than 5.6 s after the loss (no RTO in an 8 s run); it is measured
    # to the end of the workload
    spec = {"regions": REGIONS, "runs": [{"scenario": "node-loss", "mode": m, "duration": NODE_LOSS_S,
                                          "quiesce": 4.0, "rate": 200} for m in MODES]
            + [{"scenario": "node-lost-for-good", "mode": "quorum", "duration": 5.0, "quiesce": 2.0, "rate": 200,
                "damage_lost_store": True},
               # the unpinned run may end with regions down (it did when Ray packed them onto
               # Beijing's node): short, and no long wait for replicas that will not settle
               {"scenario": "node-lost-for-good", "mode": "unit+semi-sync", "duration": 4.0, "quiesce": 1.0,
                "rate": 200, "pin": False, "settle_s": 2.0},
               # pinned, the promotion on the synchronous copy (the bench's other design)
               {"scenario": "node-lost-for-good", "mode": "unit+semi-sync", "duration": 5.0, "quiesce": 1.5,
                "rate": 200}]}
    (d / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "tests.support.ray_cluster", str(d / "spec.json"),
                           str(d / "out.json")], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((d / "out.json").read_text())  # type: ignore[no-any-return]


def _promises_hold(res: dict[str, Any]) -> None:
    broken = {k: v["first_violation"] for k, v in res["invariants"].items() if v["promised"] and not v["ok"]}
    assert not broken, broken
    assert res["violated"] == []


@pytest.mark.parametrize("k", range(len(MODES)), ids=MODES)
def test_a_lost_node_costs_nothing_acknowledged_and_writes_resume(cluster_runs: dict[str, Any], k: int) -> None:
    res = cluster_runs["runs"][k]["result"]
    assert res["mode"] == MODES[k] and res["ray"]["controller_errors"] == []
    _promises_hold(res)
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    (rto,) = res["metrics"]["rto"]
    assert rto["fault"] == "node-loss" and rto["target"] == ["beijing"]
    assert rto["rto_s"] is not None and 0 < rto["rto_s"] < NODE_LOSS_S - rto["at"], rto
    assert any(e["event"] == "fenced" and "node lost" in e.get("detail", "") for e in res["metrics"]["series"]
               ["timeline"]), "the drill timeline says the node was lost"


@pytest.mark.parametrize("k", range(len(MODES)), ids=MODES)
def test_the_whole_node_goes_and_the_region_comes_back_only_on_its_own_node(cluster_runs: dict[str, Any],
                                                                            k: int) -> None:
    run = cluster_runs["runs"][k]
    ray = run["result"]["ray"]
    (lost,) = ray["crashes"]
    assert lost["region"] == "beijing" and lost["fault"] == "node-loss"
    assert lost["power_off"]["ok"] and lost["power_off"]["killed_pids"] >= 2, "raylet and the region's worker"
    assert lost["power_on"]["ok"]
    assert lost["new_pid"] != lost["old_pid"]
    # Ray restarted the actor on the node that came back (the only one with region_beijing)
    assert lost["new_node"] == lost["power_on"]["node_id"] == run["nodes_after"]["beijing"]
    assert lost["new_node"] != lost["power_off"]["node_id"]
    assert lost["replayed_records"] > 0, "the new process replays the store the node's disk kept"
    assert lost.get("caught_up_at") is not None
    assert [p["op"] for p in ray["power"]] == ["off", "on"]


def test_each_region_runs_on_its_own_node_and_the_clients_on_the_control_node(cluster_runs: dict[str, Any]) -> None:
    before = cluster_runs["nodes_before"]
    assert len(set(before.values())) == len(REGIONS)
    for k, run in enumerate(cluster_runs["runs"]):
        ray = run["result"]["ray"]
        assert ray["pinned_by_resource"] == (k != LOST_UNPINNED) and ray["control_node"] and ray["address"]
        at_launch = run["nodes_at_start"]
        assert None not in at_launch.values() and len(set(at_launch.values())) == len(REGIONS)
        if k == LOST_UNPINNED:
            continue  # unpinned: where Ray put them is the subject of its own test below
        assert ray["placement"]["regions"] == at_launch
        assert ray["placement"]["check"] == {"checked": True, "held": True, "off_own_node": {}}
        region_nodes = set(at_launch.values())
        assert not set(ray["placement"]["clients"].values()) & region_nodes, "clients outlive a region's node"
        assert ray["placement"]["controller"] not in region_nodes
        assert run["nodes_after"]["changchun"] == before["changchun"]
        assert run["nodes_after"]["shanghai"] == before["shanghai"]


def test_the_cluster_leaves_no_process_or_file_behind(cluster_runs: dict[str, Any]) -> None:
    import psutil

    alive = [p for p in set(cluster_runs["pids"])
             if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    assert not Path(cluster_runs["temp_dir"]).exists()


def test_a_node_loss_without_a_power_switch_is_refused_before_anything_starts() -> None:
    """Joining a cluster by address with no way to switch its nodes off: a clear error."""
    from simulator.plan import shortened
    from simulator.ray import run_scenario_ray
    from simulator.scenario import load_scenario

    s = shortened(load_scenario("node-loss"), 4.0, 1.0)
    with pytest.raises(ValueError, match="node-loss fault on Ray needs a power switch"):
        run_scenario_ray(s, 1, address="127.0.0.1:1")


@pytest.mark.parametrize("mode", PINNED_LOST)
def test_a_node_lost_for_good_stays_off_and_the_survivors_keep_every_promise(cluster_runs: dict[str, Any],
                                                                             mode: str) -> None:
    run = cluster_runs["runs"][PINNED_LOST[mode]]
    res = run["result"]
    ray = res["ray"]
    assert res["scenario"]["name"] == "node-lost-for-good" and res["mode"] == mode and ray["controller_errors"] == []
    _promises_hold(res)
    assert res["invariants"]["convergence"]["ok"], "the survivors converge without the lost region"
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    (rto,) = res["metrics"]["rto"]
    assert rto["rto_s"] is not None and rto["rto_s"] > 0, rto
    assert any(e["event"] == "fenced" and "node lost (not restored)" in e.get("detail", "")
               for e in res["metrics"]["series"]["timeline"])
    assert ray["lost_for_good"] == ["beijing"]
    assert [p["op"] for p in ray["power"]] == ["off"], "switched off, never on"
    assert run["nodes_after"]["beijing"] is None
    (lost,) = ray["crashes"]
    assert lost["returns"] is False and lost["power_off"]["ok"] and "power_on" not in lost
    assert "restart_at" not in lost and "caught_up_at" not in lost, "nobody starts the region again"


def test_the_store_of_a_region_lost_for_good_is_audited_from_the_disk_its_node_left(
        cluster_runs: dict[str, Any]) -> None:
    """Its actor is gone with its node, so the driver reads its SQLite file (read-only, as an
    operator reads a dead server's disk) and `audit_chain` verifies it like any store. Then,
    with a damaged entry written into that file after the loss, the same read fails the
    audit at that record; with the audit off (the lost region's store left empty, as before)
    the damage goes unseen."""
    run = cluster_runs["runs"][LOST_PINNED]
    res = run["result"]
    (name, audit), = res["ray"]["lost_store_audit"].items()
    assert name == "beijing" and audit["store"].endswith("/stores/region-1-beijing.db"), audit
    assert audit["ok"] and audit["first_bad_record"] is None and audit["problem"] is None, audit
    assert audit["records"] > 0, "the records Beijing's node wrote before it went"
    assert res["invariants"]["audit_chain"]["ok"]
    damaged = run["damaged"]
    assert 0 < damaged["record"] < audit["records"] and damaged["entries"] > 0
    found = damaged["audit_chain"]
    assert found is not None and found["region"] == "beijing" and found["record"] == damaged["record"], found
    assert found["problem"] == "hash chain or checksum"
    assert damaged["audit_off"] is None, "without the audit the damaged disk passes"


@pytest.mark.parametrize("mode", PINNED_LOST)
def test_pinned_a_region_lost_for_good_is_not_restarted_anywhere(cluster_runs: dict[str, Any], mode: str) -> None:
    """Its actor needs `region_beijing`, and no live node has it: Ray keeps it pending."""
    ray = cluster_runs["runs"][PINNED_LOST[mode]]["result"]["ray"]
    (lost,) = ray["crashes"]
    assert "new_pid" not in lost and "new_node" not in lost
    assert ray["placement"]["check"] == {"checked": True, "held": True, "off_own_node": {}}


def test_unpinned_the_placement_check_and_the_verdicts_report_where_ray_put_the_regions(
        cluster_runs: dict[str, Any]) -> None:
    """Pinning off (test-only): Ray places the region actors with no constraint. Whatever it
    chose, the placement check agrees with where each region really ran (at launch, and
    where Ray restarted Beijing's); a region that shared Beijing's node went down with it and
    is reported down at the end (the verdict fails, as it must); and if Beijing's actor was
    not on Beijing's node, cutting that node's power did not touch its process."""
    run = cluster_runs["runs"][LOST_UNPINNED]
    res, ray = run["result"], run["result"]["ray"]
    assert not ray["pinned_by_resource"] and ray["controller_errors"] == []
    own = run["nodes_at_start"]
    placed = ray["placement"]["regions"]
    (lost,) = ray["crashes"]
    assert lost["power_off"]["ok"] and lost["power_off"]["node_id"] == own["beijing"]
    expected = {r: n for r, n in placed.items() if n != own[r]}
    if lost.get("new_node") is not None and lost["new_node"] != own["beijing"]:
        expected["beijing"] = lost["new_node"]
    assert ray["placement"]["check"] == {"checked": True, "held": not expected, "off_own_node": expected}
    sharers = [r for r in ("changchun", "shanghai") if placed[r] == own["beijing"]]
    if sharers:  # they lost their process with Beijing's node, and nobody restarts them
        first = res["invariants"]["conservation"]["first_violation"]
        assert first is not None and first["problem"] == "region down at the end" and first["region"] in sharers
    if placed["beijing"] != own["beijing"]:
        assert "new_pid" not in lost, "the process survived the loss of a node it was not on"

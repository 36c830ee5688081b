"""Runs scenarios on a real multi-node Ray cluster on this machine, by address, in a process
of its own: `python -m tests.support.ray_cluster SPEC.json OUT.json`.

A process of its own because the test session may already have a Ray initialised (the
`ray_local` fixture lives until the session ends), and a driver joins one cluster. The
cluster is `simulator.ray.cluster.LocalCluster`: a control node plus one node per region,
each advertising `region_<name>`. SPEC: `{"regions": [...], "runs": [{"scenario", "mode",
"duration", "quiesce", "rate", "time_scale", "faults": [[at, kind, target, duration], ...],
"pin": true, "settle_s": 15, "damage_lost_store": false}]}` (`pin` false:
`run_scenario_ray(pin_regions=False)`, test-only; `damage_lost_store`: keep the stores, and
after the run damage the store of the region lost for good and audit it again: `damaged`).
OUT: per run the result dict and the region nodes' ids at its start and after it (None: off, a node lost for
good; it is switched back on before the next run, which needs the whole cluster); the nodes'
ids at the start; every process the cluster started (to check none is left once this
process exits).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any


def _scenario(run: dict[str, Any], regions: list[str]) -> Any:
    from chaos import Fault
    from simulator.plan import shortened
    from simulator.scenario import load_scenario

    s = shortened(load_scenario(run["scenario"]), run["duration"], run["quiesce"]).with_mode(run["mode"])
    if list(s.regions) != regions:
        raise ValueError(f"{run['scenario']} runs on {list(s.regions)}, the cluster has nodes for {regions}")
    s = replace(s, workload=replace(s.workload, rate=run["rate"]))
    if "faults" in run:
        s = replace(s, chaos=tuple(Fault(float(at), kind, (target,), float(d))
                                   for at, kind, target, d in run["faults"]))
    return s


def _cluster_pids(cluster: Any) -> list[int]:
    out = []
    for node in cluster.cluster.list_all_nodes():
        for procs in node.all_processes.values():
            out += [p.process.pid for p in procs if p.process is not None]
    return out


def _damage_lost_store(sim: Any) -> dict[str, Any]:
    """After a run that lost a node for good (its stores kept): write a damaged entry into the
    lost region's store (bit rot under the entry's checksum), then judge the run's
    `audit_chain` again with that store read as the driver reads it (`region.audit`), and
    with the audit turned off (an empty store for the lost region, what the driver handed
    the checkers before). The node is still off: the store's writer is gone with it."""
    from region.audit import read_for_audit
    from region.sqlite import SqliteRegionStore
    from region.store import MemoryRegionStore
    from simulator.checkers import audit_chain

    (lost,) = sim.ray["lost_for_good"]
    r = sim.regions.index(lost)
    path = sim.ray["lost_store_audit"][lost]["store"]
    store = SqliteRegionStore(path)
    entries = store.entry_indices()
    k = entries[len(entries) // 2]
    store.corrupt(k)
    store.close()
    t_end = sim.end / 1e9
    stores = list(sim.stores)
    stores[r] = read_for_audit(path)
    found = audit_chain(replace(sim, stores=stores), t_end)
    stores[r] = MemoryRegionStore()
    off = audit_chain(replace(sim, stores=stores), t_end)
    return {"record": k, "entries": len(entries), "audit_chain": found, "audit_off": off}


def main(spec_path: str, out_path: str) -> None:
    from simulator.ray import run_scenario_ray
    from simulator.ray.cluster import local_cluster
    from simulator.ray.driver import SETTLE_S

    spec = json.loads(Path(spec_path).read_text())
    regions = spec["regions"]
    out: dict[str, Any] = {"runs": [], "pids": []}
    with local_cluster(regions) as cluster:
        out["temp_dir"] = cluster.temp_dir
        out["nodes_before"] = {r: cluster.node_id(r) for r in regions}
        out["pids"] += _cluster_pids(cluster)
        for k, run in enumerate(spec["runs"]):
            print(f"run {run['scenario']} {run['mode']} on {cluster.address}", file=sys.stderr, flush=True)
            at_start = {r: cluster.node_id(r) for r in regions}
            damage = run.get("damage_lost_store", False)
            sim, res = run_scenario_ray(_scenario(run, regions), 1, address=cluster.address, power=cluster,
                                        time_scale=run.get("time_scale", 1.0), pin_regions=run.get("pin", True),
                                        settle_s=run.get("settle_s", SETTLE_S),
                                        out_dir=Path(spec_path).parent / f"run-{k}" if damage else None)
            out["pids"] += _cluster_pids(cluster) + res["ray"]["pids"]
            out["runs"].append({"result": res, "nodes_at_start": at_start,
                                "nodes_after": {r: cluster.node_id(r) for r in regions},
                                **({"damaged": _damage_lost_store(sim)} if damage else {})})
            for r in regions:
                if cluster.node_id(r) is None:  # lost for good in that run: the next one needs it
                    cluster.power_on(r)
                    out["pids"] += _cluster_pids(cluster)
    Path(out_path).write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

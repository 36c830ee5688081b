"""Node-loss benchmark: RTO when a region's whole Ray node is lost, per RPO-0 design.

One `LocalCluster` on this machine (a control node plus one Ray node per region), joined by
address; `node-loss` (Beijing's node switched off for 8 s at 6 s of 20, shortened with
`--duration`) runs once per design. Per design: every promised invariant held or not,
acknowledged transfers lost (RPO), RTO (fault start to the first acknowledged write on
Beijing's accounts, scenario seconds, from the client histories), and the wall-clock parts
of the outage: the power cut, the node back, the actor back on it, replay, caught up.

    python -m bench.node_loss_bench [--modes unit+semi-sync,quorum] [--duration 12] [--rate 300] [--out FILE]
                                    [--scenario node-lost-for-good]

`--scenario node-lost-for-good`: the node is switched off and never on (`returns = false`):
the same columns, with no node or actor back (`restored` false) and the survivors judged.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

RPO0_MODES = ("unit+semi-sync", "quorum", "quorum+region", "quorum+ledger")


def row(mode: str, res: dict[str, Any]) -> dict[str, Any]:
    (rto,) = res["metrics"]["rto"]
    (lost,) = res["ray"]["crashes"]
    return {"mode": mode, "violated": res["violated"], "lost_acknowledged": res["metrics"]["rpo"]["lost_acknowledged"],
            "rto_s": rto["rto_s"], "acked": res["metrics"]["acked_transfers"],
            "killed_pids": lost.get("power_off", {}).get("killed_pids"),
            "node_on_wall_s": lost.get("power_on", {}).get("on_wall_s"),
            "actor_back_wall_s": lost.get("process_back_wall_s"), "replay_s": lost.get("replay_s"),
            "down_wall_s": lost.get("down_wall_s"), "caught_up": lost.get("caught_up_at") is not None,
            "on_the_new_node": lost.get("new_node") == lost["power_on"].get("node_id") if "power_on" in lost else None,
            "restored": "power_on" in lost, "placement_held": res["ray"]["placement"]["check"]["held"],
            "lost_store_audit": {region: "ok" if a["ok"] else f"BAD at record {a['first_bad_record']}"
                                 for region, a in res["ray"].get("lost_store_audit", {}).items()} or None,
            "errors": res["ray"]["controller_errors"]}


def main() -> None:
    from simulator.plan import shortened
    from simulator.ray import run_scenario_ray
    from simulator.ray.cluster import local_cluster
    from simulator.scenario import load_scenario

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default=",".join(RPO0_MODES))
    p.add_argument("--duration", type=float, default=12.0)
    p.add_argument("--rate", type=float, default=300.0, help="transfers/s per region")
    p.add_argument("--out", default=None, help="default bench/results/<scenario with _>.json")
    p.add_argument("--scenario", default="node-loss", choices=["node-loss", "node-lost-for-good"])
    a = p.parse_args()
    base = shortened(load_scenario(a.scenario), a.duration, 5.0)
    base = replace(base, workload=replace(base.workload, rate=a.rate))
    rows = []
    with local_cluster(base.regions) as cluster:
        for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
            _, res = run_scenario_ray(base.with_mode(mode), 1, address=cluster.address, power=cluster)
            rows.append(row(mode, res))
            print(json.dumps(rows[-1]), flush=True)
            for region in base.regions:  # lost for good in that run: the next design needs the node
                if cluster.node_id(region) is None:
                    cluster.power_on(region)
    out = Path(a.out or f"bench/results/{a.scenario.replace('-', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scenario": base.to_json(), "rows": rows}, indent=2))
    cols = list(rows[0]) if rows else []
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()

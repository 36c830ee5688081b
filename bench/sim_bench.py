"""Simulator benchmark: simulated transfers per wall second and the virtual-to-wall ratio.

Default: about a million transfers across 3 regions (Changchun, Beijing, Shanghai) in
`unit+semi-sync`, with a chaos schedule (a region crash and a partition). Prints a JSON
line and writes it to --out.

    python -m bench.sim_bench [--transfers 1000000] [--mode unit+semi-sync] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from chaos import Fault
from simulator.checkers import check_all
from simulator.runtime import Simulation
from simulator.scenario import load_scenario


def run(transfers: int, mode: str, seed: int = 1, check: bool = True) -> dict:
    base = load_scenario("baseline").with_mode(mode)
    duration = 20.0
    rate = transfers / duration / len(base.regions)  # ops per region per second
    mix = replace(base.workload.mix, read=0.0)
    s = replace(
        base, name="sim-bench", duration=duration, quiesce=5.0,
        workload=replace(base.workload, rate=rate, customers=30_000, units_per_region=8, batch_ms=10.0, mix=mix),
        chaos=(Fault(6.0, "crash", ("beijing",), 4.0), Fault(12.0, "partition", ("shanghai",), 3.0)),
    )
    t0 = time.perf_counter()
    simulation = Simulation(s, seed)
    t_plan = time.perf_counter() - t0
    sim = simulation.run().result()
    t_run = time.perf_counter() - t0
    verdicts = check_all(sim) if check else {}
    t_all = time.perf_counter() - t0
    virtual = sim.end / 1e9
    n_transfers = int((sim.plan.kind != 4).sum())
    acked = int(((sim.ops.outcome == 1) & (sim.plan.kind != 4)).sum())
    return {
        "mode": mode, "seed": seed, "transfers": n_transfers, "acked": acked, "events": sim.log.events,
        "virtual_s": virtual, "plan_s": round(t_plan, 2), "simulate_s": round(t_run, 2),
        "check_s": round(t_all - t_run, 2), "wall_s": round(t_all, 2),
        "transfers_per_wall_s": round(n_transfers / t_run),
        "virtual_to_wall": round(virtual / t_run, 3),
        "violated": [k for k, v in verdicts.items() if v["promised"] and not v["ok"]],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transfers", type=int, default=1_000_000)
    p.add_argument("--mode", default="unit+semi-sync")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--out", default="bench/results/sim.json")
    a = p.parse_args()
    result = run(a.transfers, a.mode, a.seed, not a.no_check)
    print(json.dumps(result))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

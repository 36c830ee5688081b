"""Simulator benchmark: simulated transfers per wall second, the virtual-to-wall ratio, and
the peak memory of the run.

Default: about a million transfers across 3 regions (Changchun, Beijing, Shanghai) in
`unit+semi-sync`, with a chaos schedule (a region crash and a partition). Prints a JSON
line and writes it to --out.

`--large` adds the large topology next to it: 8 regions x 1,000 units x 1,000,000
customers (`LARGE`), each row in a fresh process of its own so its peak RSS is its own,
run twice to show the large one is deterministic (the same trace digest), and prints a
table with the ratio of the large row to the 3-region row.

    python -m bench.sim_bench [--transfers 1000000] [--mode unit+semi-sync] [--out FILE]
    python -m bench.sim_bench --large [--large-transfers 100000] [--out bench/results/sim_large.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chaos import Fault
from simulator.checkers import check_all
from simulator.runtime import Simulation
from simulator.scenario import CITIES, Scenario, load_scenario


@dataclass(frozen=True)
class Topology:
    """How big the simulated bank is: regions (the first N built-in cities), units, customers."""

    regions: int = 3
    units: int = 24
    customers: int = 30_000

    def __post_init__(self) -> None:
        if not 1 <= self.regions <= len(CITIES) or self.units % self.regions:
            raise ValueError(f"regions must be 1..{len(CITIES)} and units a multiple of them, got {self}")


SMALL = Topology()
LARGE = Topology(regions=8, units=1_000, customers=1_000_000)
LARGE_TRANSFERS = 100_000


def scenario(transfers: int, mode: str, topo: Topology = SMALL) -> Scenario:
    """The bench's scenario: `transfers` over 20 virtual seconds, a crash and a partition."""
    base = load_scenario("baseline").with_mode(mode)
    names = tuple(CITIES)[: topo.regions]
    duration = 20.0
    rate = transfers / duration / topo.regions  # ops per region per second
    mix = replace(base.workload.mix, read=0.0)
    return replace(
        base, name="sim-bench", duration=duration, quiesce=5.0, regions=names, rtt_ms=(), cities=(),
        workload=replace(base.workload, rate=rate, customers=topo.customers,
                         units_per_region=topo.units // topo.regions, batch_ms=10.0, mix=mix),
        chaos=(Fault(6.0, "crash", (names[1 % topo.regions],), 4.0), Fault(12.0, "partition", (names[-1],), 3.0)),
    )


def run(transfers: int, mode: str, seed: int = 1, check: bool = True, topo: Topology = SMALL) -> dict[str, Any]:
    s = scenario(transfers, mode, topo)
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
        "mode": mode, "seed": seed, "regions": topo.regions, "units": topo.units, "customers": topo.customers,
        "transfers": n_transfers, "acked": acked, "events": sim.log.events,
        "virtual_s": virtual, "plan_s": round(t_plan, 2), "simulate_s": round(t_run, 2),
        "check_s": round(t_all - t_run, 2), "wall_s": round(t_all, 2),
        "transfers_per_wall_s": round(n_transfers / t_run),
        "virtual_to_wall": round(virtual / t_run, 3),
        "peak_rss_mb": peak_rss_mb(), "digest": sim.digest(),
        "violated": [k for k, v in verdicts.items() if v["promised"] and not v["ok"]],
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _row(kwargs: dict[str, Any]) -> dict[str, Any]:
    return run(**kwargs)


def run_alone(**kwargs: Any) -> dict[str, Any]:
    """`run` in a fresh process (spawned, nothing inherited), so its peak RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_row, (kwargs,))  # type: ignore[no-any-return]


def compare(transfers: int, large_transfers: int, mode: str, seed: int, check: bool) -> dict[str, Any]:
    """The 3-region row and the large row (twice: same digest = deterministic), with ratios."""
    small = run_alone(transfers=transfers, mode=mode, seed=seed, check=check, topo=SMALL)
    large = run_alone(transfers=large_transfers, mode=mode, seed=seed, check=check, topo=LARGE)
    again = run_alone(transfers=large_transfers, mode=mode, seed=seed, check=False, topo=LARGE)
    return {"rows": [small, large], "large_deterministic": again["digest"] == large["digest"],
            "large_vs_small": {"wall": round(large["wall_s"] / small["wall_s"], 2),
                               "peak_rss": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
                               "transfers_per_wall_s": round(large["transfers_per_wall_s"]
                                                             / small["transfers_per_wall_s"], 3)}}


def table(result: dict[str, Any]) -> str:
    cols = ("regions", "units", "customers", "transfers", "plan_s", "simulate_s", "check_s", "wall_s",
            "transfers_per_wall_s", "peak_rss_mb", "violated")
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(str(r[c]) for c in cols) for r in result["rows"]]
    lines.append(f"large / 3-region: {result['large_vs_small']}; "
                 f"large run twice, same digest: {result['large_deterministic']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transfers", type=int, default=1_000_000)
    p.add_argument("--mode", default="unit+semi-sync")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--large", action="store_true", help="also 8 regions x 1,000 units x 1,000,000 customers")
    p.add_argument("--large-transfers", type=int, default=LARGE_TRANSFERS)
    p.add_argument("--out", default=None, help="default bench/results/sim.json (sim_large.json with --large)")
    a = p.parse_args()
    out = Path(a.out or ("bench/results/sim_large.json" if a.large else "bench/results/sim.json"))
    if a.large:
        result = compare(a.transfers, a.large_transfers, a.mode, a.seed, not a.no_check)
        print(table(result))
    else:
        result = run(a.transfers, a.mode, a.seed, not a.no_check)
        print(json.dumps(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

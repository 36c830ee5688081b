"""Capacity benchmark: what one transfer costs in messages, bytes, CPU and store, per design.

For each design, `baseline` (three regions, transfers only, no faults) runs on the
deterministic runtime at `--rate` transfers/s per region; from the run:

* `messages_per_transfer`, `wire_bytes_per_transfer` — every peer message the regions sent
  (the simulator's network counters: encoded sizes), per acknowledged transfer. Batching
  depends on the load (a commit ships what arrived since the last), so these are figures
  *at this rate*: a busier region ships bigger, fewer messages.
* `cpu_ms_per_1000` — process CPU of the whole simulation (every region's replica core,
  engine and store, plus the simulator's own clients and network model) per 1,000
  acknowledged transfers, divided by the number of regions: an upper bound on one region
  process's CPU per 1,000 transfers the system commits.
* `store_bytes_per_transfer` — region 0's records written to an SQLite region store (the
  file Ray's region actors write), file size per acknowledged transfer.

Then, per design, what one region needs at 10k, 100k and 1M transfers/s system-wide
(`needs`): cores, peer egress (MB/s), store writes (MB/s) and store growth (GB/day),
straight lines from the figures above. `docs/capacity.md` explains them.

    python -m bench.capacity_bench [--rate 1000] [--modes unit+semi-sync,quorum] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from replication.config import DESIGN_LABELS

MODES = ("async", "unit+async", "unit+semi-sync", "escrow", "quorum", "quorum+region", "quorum+ledger")
TARGETS = (10_000, 100_000, 1_000_000)
DAY_S = 86_400


def scenario(mode: str, rate: float, duration: float) -> Any:
    from simulator.plan import shortened
    from simulator.scenario import load_scenario

    s = shortened(load_scenario("baseline").with_mode(mode), duration, 3.0)
    return replace(s, workload=replace(s.workload, rate=rate, mix=replace(s.workload.mix, read=0.0)))


def store_bytes(records: list[Any]) -> int:
    """Size of an SQLite region store holding `records` (WAL checkpointed at close)."""
    from region.sqlite import SqliteRegionStore

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "region.db"
        store = SqliteRegionStore(path, fsync=False)
        for rec in records:
            store.append(rec.payload)
        store.flush()
        store.close()
        return sum(p.stat().st_size for p in Path(d).iterdir() if p.name.startswith("region.db")
                   and not p.name.endswith(".lock"))


def measure(mode: str, rate: float, duration: float, seed: int = 1) -> dict[str, Any]:
    from simulator.runtime import Simulation

    s = scenario(mode, rate, duration)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sim = Simulation(s, seed).run().result()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    transfers = sim.plan.kind != 4
    acked = int(((sim.ops.outcome == 1) & transfers).sum())
    r = len(sim.regions)
    size = store_bytes(list(sim.stores[0].records))
    return {"mode": mode, "regions": r, "rate_per_region": rate, "acked": acked,
            "messages_per_transfer": round(sim.net.sent / acked, 3),
            "wire_bytes_per_transfer": round(sim.net.bytes / acked, 1),
            "cpu_ms_per_1000": round(cpu * 1e6 / acked / r, 2),
            "store_bytes_per_transfer": round(size / acked, 1),
            "sim_wall_s": round(wall, 2)}


def needs(row: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One region's share at each target rate (system-wide transfers/s), from the row."""
    r = row["regions"]
    out = {}
    for tps in TARGETS:
        out[str(tps)] = {
            "cores": round(row["cpu_ms_per_1000"] * tps / 1000 / 1000, 2),
            "egress_mb_s": round(row["wire_bytes_per_transfer"] * tps / r / 1e6, 2),
            "store_write_mb_s": round(row["store_bytes_per_transfer"] * tps / 1e6, 2),
            "store_gb_day": round(row["store_bytes_per_transfer"] * tps * DAY_S / 1e9, 1),
        }
    return out


def table(rows: list[dict[str, Any]]) -> str:
    cols = ("mode", "messages_per_transfer", "wire_bytes_per_transfer", "cpu_ms_per_1000", "store_bytes_per_transfer")
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(str(r[c]) for c in cols) for r in rows]
    lines += ["", "mode | transfers/s | cores | egress MB/s | store MB/s | store GB/day",
              "--- | --- | --- | --- | --- | ---"]
    for r in rows:
        for tps, n in r["needs"].items():
            lines.append(f"{r['mode']} | {int(tps):,} | {n['cores']} | {n['egress_mb_s']} | {n['store_write_mb_s']} | "
                         f"{n['store_gb_day']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="transfers/s per region (default %(default)s)")
    p.add_argument("--duration", type=float, default=6.0, help="load seconds (virtual)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", default="bench/results/capacity.json")
    a = p.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in DESIGN_LABELS]
    if bad:
        p.error(f"unknown design(s) {bad}: expected some of {', '.join(DESIGN_LABELS)}")
    rows = []
    for m in modes:
        row = measure(m, a.rate, a.duration)
        row["needs"] = needs(row)
        rows.append(row)
    print(table(rows))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rate_per_region": a.rate, "duration_s": a.duration, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

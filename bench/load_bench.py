"""HTTP load benchmark: acknowledged transfers/s and latency through the region gateways,
with group commit on and off in the same run (Locust on the same 2-core machine).

Configurations: three regions (unit+semi-sync over the default WAN latencies) and one
region (no WAN), each with group commit on and off. The ratios compare on/off within the
run. p99 is the slowest transfer endpoint's over the whole run, ramp-up included; "steady
p99" is the same once the ramp-up has left Locust's 10 s percentile window. Run:
`python -m bench.load_bench [--quick]`; prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from load.runner import LoadOptions, run_load

CONFIGS = (("three_regions_group_commit_on", 3, True), ("three_regions_group_commit_off", 3, False),
           ("one_region_group_commit_on", 1, True), ("one_region_group_commit_off", 1, False))
FIELDS = ("acked_per_s", "p50_ms", "p99_ms", "p99_steady_ms", "requests_per_s", "failures", "verdict")


def measure(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"users": 30 if quick else 120, "duration_s": 8 if quick else 30}
    for key, regions, group_commit in CONFIGS:
        with tempfile.TemporaryDirectory(prefix="geoledger-loadbench-") as tmp:
            result = run_load(LoadOptions(
                users=out["users"], spawn_rate=60, duration=out["duration_s"], customers=1200,
                regions=regions, out=Path(tmp), base_port=8600, group_commit=group_commit,
            ))
        out[key] = {k: result[k] for k in FIELDS}
    for prefix in ("three_regions", "one_region"):
        off = out[f"{prefix}_group_commit_off"]["acked_per_s"]
        out[f"{prefix}_ratio_on_over_off"] = out[f"{prefix}_group_commit_on"]["acked_per_s"] / off if off else None
    return out


def table(result: dict[str, Any]) -> str:
    lines = [f"{'configuration':34} {'acked/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'steady p99':>10} "
             f"{'failures':>9}  verdict"]
    for key, _, _ in CONFIGS:
        r = result[key]
        steady = "—" if r["p99_steady_ms"] is None else f"{r['p99_steady_ms']:.0f}"
        lines.append(f"{key:34} {r['acked_per_s']:9.1f} {r['p50_ms']:7.0f} {r['p99_ms']:7.0f} {steady:>10} "
                     f"{r['failures']:9d}  {r['verdict']}")
    for prefix in ("three_regions", "one_region"):
        ratio = result[f"{prefix}_ratio_on_over_off"]
        lines.append(f"{prefix}: group commit on/off = {ratio:.2f}x" if ratio else f"{prefix}: no ratio")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 users for 8 s per configuration")
    parser.add_argument("--out", default="bench/results/load.json")
    args = parser.parse_args()
    result = measure(args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

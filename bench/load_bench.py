"""HTTP load benchmark: acknowledged transfers/s and p99 through the region gateways,
with group commit on and off in the same run (Locust on the same machine).

Run: `python -m bench.load_bench [--quick]`; writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from load.runner import LoadOptions, run_load


def measure(quick: bool) -> dict[str, Any]:
    """Three regions (unit+semi-sync) with group commit on and off, then one region (no WAN)."""
    out: dict[str, Any] = {}
    for key, regions, group_commit in (("group_commit_on", 3, True), ("group_commit_off", 3, False),
                                       ("one_region_group_commit_on", 1, True)):
        with tempfile.TemporaryDirectory(prefix="geoledger-loadbench-") as tmp:
            result = run_load(LoadOptions(
                users=20 if quick else 60, spawn_rate=20, duration=8 if quick else 30, customers=1200,
                regions=regions, out=Path(tmp), base_port=8600, group_commit=group_commit,
            ))
        out[key] = {k: result[k] for k in ("acked_per_s", "p50_ms", "p99_ms", "requests_per_s", "failures", "verdict")}
    off = out["group_commit_off"]["acked_per_s"]
    out["ratio_on_over_off"] = out["group_commit_on"]["acked_per_s"] / off if off else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/load.json")
    args = parser.parse_args()
    result = measure(args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

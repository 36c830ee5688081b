"""HTTP load benchmark: acknowledged transfers/s and latency through the region gateways,
with group commit on and off in the same run (Locust on the same 2-core machine).

Configurations: three regions (unit+semi-sync over the default WAN latencies) and one
region (no WAN), each with group commit on and off, and one region with an extra HTTP
worker (`serve --workers 2`: its CPU per transfer beside the single process's). The ratios
compare on/off within the run. p99 is the slowest transfer endpoint's over the whole run, ramp-up included; "steady
p99" is the same once the ramp-up has left Locust's 10 s percentile window.

Beside them, the machine's ceiling (`bench.http_ceiling`): the same users, spawn rate,
duration and wait time against an endpoint that does nothing, served by the gateways'
server stack, with one Locust process (as the configurations run) and with two. A
configuration's requests/s is read against it: no server code on these cores beats it.

Each configuration also says what limited it (`load.cpu`): the requests in flight by
Little's law (requests/s x mean latency) against the users, how busy the machine's CPUs
were (bound by CPU from 90%), and CPU seconds per 1,000 acknowledged transfers of each
region process and of Locust. Run: `python -m bench.load_bench [--quick] [--users N]`;
prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench import http_ceiling
from bench.publish import publish
from load.runner import LoadOptions, run_load

CONFIGS = (("three_regions_group_commit_on", 3, True, 1), ("three_regions_group_commit_off", 3, False, 1),
           ("one_region_group_commit_on", 1, True, 1), ("one_region_group_commit_off", 1, False, 1),
           ("one_region_two_workers", 1, True, 2))
"""(name, regions, group commit, HTTP processes per region)."""
CEILINGS = (("ceiling_no_op_one_locust", 1), ("ceiling_no_op_two_locusts", 2))
"""(name, Locust processes) of the no-op endpoint's runs."""
FIELDS = ("acked_per_s", "p50_ms", "p99_ms", "p99_steady_ms", "requests_per_s", "failures", "verdict", "limits")


def measure(quick: bool, users: int | None = None, only: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"users": users or (30 if quick else 400), "duration_s": 8 if quick else 30,
                           "command": "python -m bench.load_bench" + (" --quick" if quick else "")
                           + (f" --users {users}" if users else "") + (f" --only {only}" if only else "")}
    out["spawn_rate"] = max(60, out["users"] // 2)
    for key, regions, group_commit, workers in CONFIGS:
        if only and not key.startswith(only):
            continue
        with tempfile.TemporaryDirectory(prefix="geoledger-loadbench-") as tmp:
            result = run_load(LoadOptions(
                users=out["users"], spawn_rate=out["spawn_rate"], duration=out["duration_s"], customers=1200,
                regions=regions, out=Path(tmp), base_port=0, group_commit=group_commit, workers=workers,
            ))
        out[key] = {k: result[k] for k in FIELDS}
    if not only:
        for key, processes in CEILINGS:
            out[key] = http_ceiling.measure(out["users"], out["spawn_rate"], out["duration_s"], processes)
    for prefix in ("three_regions", "one_region"):
        on, off = out.get(f"{prefix}_group_commit_on"), out.get(f"{prefix}_group_commit_off")
        if on and off and off["acked_per_s"]:
            out[f"{prefix}_ratio_on_over_off"] = round(on["acked_per_s"] / off["acked_per_s"], 2)
    return out


def _row(key: str, r: dict[str, Any], regions: str, tail: str) -> str:
    lim = r["limits"]
    acked = "—" if r.get("acked_per_s") is None else f"{r['acked_per_s']:.0f}"
    steady = "—" if r["p99_steady_ms"] is None else f"{r['p99_steady_ms']:.0f}"
    busy = "—" if lim["machine_busy_fraction"] is None else f"{lim['machine_busy_fraction']:.0%}"
    locust = lim["cpu_s_per_1000_acked"]["locust"]
    return (f"{key:31} {acked:>8} {r['requests_per_s']:7.0f} {r['p50_ms'] or 0:5.0f} "
            f"{r['p99_ms'] or 0:5.0f} {steady:>6} {r['failures']:5d} {lim['users']:5d} "
            f"{lim['in_flight_requests'] or 0:9.1f} {busy:>8} {lim['bound_by']:>16} {regions:>24} "
            f"{'—' if locust is None else f'{locust:.2f}':>6}  {tail}")


def table(result: dict[str, Any]) -> str:
    lines = [f"{'configuration':31} {'acked/s':>8} {'req/s':>7} {'p50':>5} {'p99':>5} {'steady':>6} {'fail':>5} "
             f"{'users':>5} {'in flight':>9} {'CPU busy':>8} {'bound by':>16} {'CPU s/1k acked: regions':>24} "
             f"{'locust':>6}  verdict"]
    for key, _, _, _ in CONFIGS:
        if key in result:
            per_k = result[key]["limits"]["cpu_s_per_1000_acked"]
            regions = ",".join("—" if v is None else f"{v:.2f}" for k, v in per_k.items() if k.startswith("region "))
            lines.append(_row(key, result[key], regions, result[key]["verdict"]))
    for key, processes in CEILINGS:
        if key in result:
            server = result[key]["limits"]["cpu_s_per_1000_acked"]["region noop"]
            lines.append(_row(key, result[key], f"no-op server {server:.2f}",
                              f"({processes} Locust process{'es' if processes > 1 else ''})"))
    ceiling = result.get(CEILINGS[0][0])
    if ceiling and ceiling["requests_per_s"]:
        shares = ", ".join(f"{key} {result[key]['requests_per_s'] / ceiling['requests_per_s']:.0%}"
                           for key, *_ in CONFIGS if key in result)
        lines.append(f"req/s as a share of the no-op ceiling with one Locust process: {shares}")
    for prefix in ("three_regions", "one_region"):
        ratio = result.get(f"{prefix}_ratio_on_over_off")
        if ratio:
            lines.append(f"{prefix}: group commit on/off = {ratio:.2f}x")
    lines.append("p50/p99/steady in ms; in flight = req/s x mean latency (Little's law); CPU s per 1,000 acked "
                 "transfers (requests, for the no-op) per region process and for Locust")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 users for 8 s per configuration")
    parser.add_argument("--users", type=int, default=None, help="Locust users (default: 400; 30 with --quick)")
    parser.add_argument("--only", choices=("three_regions", "one_region"), default=None,
                        help="run only these configurations")
    parser.add_argument("--out", default="bench/results/load.json")
    args = parser.parse_args()
    result = measure(args.quick, args.users, args.only)
    publish(result, args.out, table(result))


if __name__ == "__main__":
    main()

"""`geoledger report`, `geoledger compare` and `geoledger drill`.

`register(subparsers)` is called by `geoledger.cli`. Exit codes, as for `simulate`:
0 success (report written; compare: no mode broke a promise; drill: passed), 1 a promised
invariant was violated (compare, drill) or an SLO was missed (drill), 2 bad input — a
missing or malformed file, an unknown scenario, mode or runtime — with a one-line message
saying what to fix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console


def _error(what: str, e: object) -> int:
    """One unwrapped line on stderr (so it greps and pastes whole), exit code 2."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[red]{what} error:[/red] {e}")
    return 2


def register(subparsers: Any) -> None:
    rep = subparsers.add_parser(
        "report",
        help="render a run's result.json as a self-contained HTML report",
        description="Reads RESULT (a result.json, or the run directory holding it; history.jsonl and "
                    "final_state.json beside it are used when present) and writes one HTML file that opens "
                    "offline: verdict, SLOs, invariants, per-region figures and plots.",
    )
    rep.add_argument("result", metavar="RESULT", help="result.json or a run directory")
    rep.add_argument("-o", "--out", default=None, help="HTML file to write (default: report.html beside RESULT)")
    rep.set_defaults(func=cmd_report)

    cmp = subparsers.add_parser(
        "compare",
        help="run one scenario under several replication modes and compare them in one report",
        description="Runs SCENARIO once per mode with the same seed (same workload, same faults) and writes "
                    "DIR/compare.html, DIR/compare.json and DIR/<mode>/ (result.json, history.jsonl, "
                    "final_state.json, report.html).",
    )
    cmp.add_argument("scenario", metavar="SCENARIO", help="scenario name (scenarios/NAME.toml) or path")
    cmp.add_argument("--modes", default="async,unit,escrow",
                     help="comma-separated modes: async, unit, unit+async, unit+semi-sync, escrow, quorum, "
                          "quorum+region, quorum+ledger (default: %(default)s)")
    cmp.add_argument("--seed", type=int, default=None, help="PRNG seed (default: the scenario's)")
    cmp.add_argument("--out", default=None, help="output directory (default: runs/compare-SCENARIO-SEED)")
    cmp.add_argument("--jobs", type=int, default=1, help="modes run in parallel processes (default: %(default)s)")
    cmp.set_defaults(func=cmd_compare)

    from simulator.drill import RUNTIMES

    dr = subparsers.add_parser(
        "drill",
        help="rehearse a failover: live progress, runbook timeline, RTO/RPO against the SLOs, pass/fail",
        description="Runs SCENARIO, shows its progress, prints a runbook-style timeline and the measured "
                    "RTO/RPO against the scenario's [slo]. Exit 1 on an SLO miss or a violated invariant.",
    )
    dr.add_argument("scenario", metavar="SCENARIO", help="scenario name (scenarios/NAME.toml) or path")
    dr.add_argument("--seed", type=int, default=None, help="PRNG seed (default: the scenario's)")
    dr.add_argument("--mode", default=None, help="replication mode (default: the scenario's)")
    dr.add_argument("--runtime", choices=sorted(RUNTIMES), default="ray",
                    help="what drives the nodes: real Ray actors and wall-clock RTO, or the deterministic "
                         "simulator (default: %(default)s; RAY_ADDRESS joins a cluster)")
    dr.add_argument("--out", default=None, help="run directory (default: runs/drill-SCENARIO-MODE-SEED)")
    dr.add_argument("--junit", default=None, metavar="FILE", help="also write JUnit XML for CI")
    dr.add_argument("--pace", type=float, default=None,
                    help="wall seconds over which a non-live runtime's timeline is replayed "
                         "(default: 3 on a terminal, 0 otherwise)")
    dr.set_defaults(func=cmd_drill)


def cmd_report(args: argparse.Namespace) -> int:
    from simulator.report import write_report
    from simulator.run_view import ReportError

    try:
        path = write_report(args.result, args.out)
    except ReportError as e:
        return _error("report", e)
    Console().print(f"written: {path}", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from simulator.compare import parse_modes, run_modes, write_compare
    from simulator.run_view import ReportError

    console = Console()
    try:
        modes = parse_modes(args.modes, args.scenario)
    except ReportError as e:
        return _error("compare", e)
    if args.jobs < 1:
        return _error("compare", "--jobs: must be >= 1")
    from simulator.scenario import load_scenario

    name = Path(args.scenario).stem
    seed = load_scenario(args.scenario).seed if args.seed is None else args.seed  # parse_modes loaded it already
    out = Path(args.out or f"runs/compare-{name}-{seed}")
    try:
        with console.status(f"comparing {', '.join(modes)} on {name}") as status:
            seed, runs = run_modes(args.scenario, modes, seed, out, args.jobs,
                                   on_done=lambda m: status.update(f"comparing on {name}: {m} done"))
            html_path, json_path = write_compare(runs, seed, out)
    except ReportError as e:
        return _error("compare", e)
    from simulator.compare import figures

    for r in runs:
        f = figures(r.view)
        console.print(f"{r.label}: p99 {f['latency_ms']['p99']} ms, {f['acked_per_s']} acked writes/s, "
                      f"RPO {f['rpo_lost']} lost, violated: {', '.join(f['violated']) or 'none'}"
                      + (f" (not promised: {', '.join(f['violated_not_promised'])})"
                         if f["violated_not_promised"] else ""), soft_wrap=True, highlight=False)
    summary = json.loads(json_path.read_text())["summary"]
    for line in summary:
        console.print(f"  • {line}", soft_wrap=True, highlight=False)
    console.print(f"written: {html_path}, {json_path}, and {out}/<mode>/ for {', '.join(modes)}", soft_wrap=True,
                  highlight=False)
    return 1 if any(r.view.result["violated"] for r in runs) else 0


def cmd_drill(args: argparse.Namespace) -> int:
    from simulator.drill import drill

    return drill(args.scenario, seed=args.seed, mode=args.mode, runtime=args.runtime, out=args.out,
                 junit=args.junit, pace=args.pace)

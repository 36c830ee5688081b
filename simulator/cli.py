"""`geoledger simulate` and `geoledger fuzz`: thin wrappers over `simulator.run`.

`register(subparsers)` is called by `geoledger.cli`. Exit codes: 0 when every invariant
the mode promises holds, 1 when one is violated, 2 on a bad scenario or argument.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from replication.config import DESIGN_LABELS

MODE_CHOICES = DESIGN_LABELS


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="run a scenario (deterministic simulator, or Ray actors) and check every invariant",
        description="Runs SCENARIO (a name under scenarios/ or a TOML path), prints a verdict table and "
                    "writes result.json, history.jsonl and final_state.json to --out.",
    )
    sim.add_argument("scenario", nargs="?", default="baseline", help="scenario name or path (default: %(default)s)")
    sim.add_argument("--seed", type=int, default=None, help="PRNG seed (default: the scenario's)")
    sim.add_argument("--mode", choices=MODE_CHOICES, default=None,
                     help="replication mode; unit takes +async or +semi-sync shipping, quorum takes +unit "
                          "(a Raft log per unit, the default) or +ledger (one log) (default: the scenario's)")
    sim.add_argument("--out", default=None, help="output directory (default: runs/SCENARIO-MODE-SEED)")
    sim.add_argument("--runtime", choices=("deterministic", "ray"), default="deterministic",
                     help="deterministic (virtual clock, same seed = same digest) or ray (one actor per region, "
                          "real processes and kills; default: %(default)s)")
    sim.add_argument("--address", default=None,
                     help="with --runtime ray: join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    sim.add_argument("--time-scale", type=float, default=1.0,
                     help="with --runtime ray: wall seconds per scenario second (default: %(default)s)")
    sim.add_argument("--store", default=None, metavar="URL",
                     help="with --runtime ray: each region's durable store: 'sqlite' (default, a file per "
                          "region) or a Cassandra URL such as cassandra://127.0.0.1:9042/geoledger?dc=dc1&rf=1 "
                          "(a keyspace <keyspace>_<region> per region)")
    sim.add_argument("--check-invariants", action="store_true",
                     help="deterministic runtime: check every node's internal invariants after every step "
                          "(a debug flag: slower; stops at the first broken one and names it)")
    sim.set_defaults(func=cmd_simulate)

    fuzz = subparsers.add_parser(
        "fuzz",
        help="run the fuzz scenario with a random nemesis for many seeds",
        description="One random fault schedule per seed over scenarios/fuzz.toml; prints every failure "
                    "with the command that replays it.",
    )
    fuzz.add_argument("--seeds", type=int, default=100, help="how many seeds (default: %(default)s)")
    fuzz.add_argument("--start", type=int, default=1, help="first seed (default: %(default)s)")
    fuzz.add_argument("--mode", choices=MODE_CHOICES, default="unit+semi-sync", help="(default: %(default)s)")
    fuzz.add_argument("--jobs", type=int, default=1, help="worker processes (default: %(default)s)")
    fuzz.add_argument("--scenario", default="fuzz",
                      help="base scenario (default: %(default)s; fuzz-checkpoints: the same over stores compacted "
                           "by checkpoints and Raft snapshots)")
    fuzz.add_argument("--check-invariants", action="store_true",
                      help="also check every node's internal invariants after every step (Raft logs, "
                           "per-origin heads, credit legs owed, conservation, one leader per term); "
                           "slower, stops a seed at the first broken one")
    fuzz.set_defaults(func=cmd_fuzz)

    sw = subparsers.add_parser(
        "sweep",
        help="what-if: run a scenario over a grid of parameter values x modes x seeds, one page of answers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Runs SCENARIO once per point of the grid (every combination of the --param values), per mode and per "
            "seed, on the deterministic runtime, in parallel with --jobs, and writes DIR/sweep.json (one row per "
            "run: parameters, mode, seed, every invariant, RTO, RPO, p50/p99 per region, throughput, availability, "
            "declined and UNAVAILABLE counts) and DIR/sweep.html (which designs meet the scenario's SLOs, where, "
            "at what cost, and each metric plotted against each parameter).", 100),
        epilog="examples:\n"
               "  geoledger sweep region-outage --param node.suspect_ms=200,400,800 --modes unit+semi-sync,quorum "
               "--seeds 3\n"
               "  geoledger sweep partition --param regions.rtt_ms.beijing-shanghai=17,40,80 --modes "
               "unit+semi-sync,escrow\n"
               "  geoledger sweep two-cities-three-dcs --param chaos[0].duration=2,8 --modes quorum --jobs 2\n\n"
               "KEY is any scenario key as a TOML path (see scenarios/README.md): node.suspect_ms, node.lease_ms,\n"
               "workload.rate, workload.mix.cross_region, chaos[0].duration, regions.rtt_ms[0][1] (a round trip:\n"
               "[1][0] is set too), regions.rtt_ms.CITY-CITY. Values are TOML literals (200, 0.5, \"x\", [2,2,1]).\n"
               "Every point is checked by the scenario loader before anything runs; a bad key or value exits 2.\n"
               "Exit 1 when a run broke an invariant its mode promises.",
    )
    sw.add_argument("scenario", metavar="SCENARIO", help="scenario name (scenarios/NAME.toml) or path")
    sw.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a scenario key and the values to try; repeat for a grid (every combination)")
    sw.add_argument("--modes", default=None,
                    help="comma-separated designs: async, unit+async, unit+semi-sync, escrow, quorum, quorum+region, "
                         "quorum+ledger (default: the scenario's own mode)")
    sw.add_argument("--seeds", type=int, default=3,
                    help="seeds per point: the spread in the plots (default: %(default)s)")
    sw.add_argument("--start", type=int, default=1, help="first seed (default: %(default)s)")
    sw.add_argument("--jobs", type=int, default=1, help="worker processes (default: %(default)s)")
    sw.add_argument("--out", default=None, help="output directory (default: runs/sweep-SCENARIO)")
    sw.add_argument("--force", action="store_true",
                    help="run a grid of more than 10,000 runs (refused otherwise: that is hours of CPU)")
    sw.set_defaults(func=cmd_sweep)


def _load(name: str, mode: str | None) -> Any:
    from simulator.scenario import load_scenario

    return load_scenario(name).with_mode(mode)


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.run import run_scenario, write_outputs
    from simulator.scenario import ScenarioError

    console = Console()
    try:
        scenario = _load(args.scenario, args.mode)
    except ScenarioError as e:
        console.print(f"[red]scenario error:[/red] {e}")
        return 2
    seed = scenario.seed if args.seed is None else args.seed
    mode = scenario.mode_label
    out = Path(args.out or f"runs/{scenario.name}-{mode}-{seed}")
    if args.time_scale <= 0:
        console.print("[red]error:[/red] --time-scale must be > 0")
        return 2
    if args.check_invariants and args.runtime != "deterministic":
        console.print("[red]error:[/red] --check-invariants: only the deterministic runtime steps nodes "
                      "where every step can be checked")
        return 2
    store = getattr(args, "store", None)
    if store is not None:
        if args.runtime != "ray":
            console.print("[red]error:[/red] --store is only meaningful with --runtime ray "
                          "(the deterministic runtime keeps its stores in memory)")
            return 2
        from ledger.errors import StoreURLError
        from simulator.ray import check_store

        try:
            check_store(store)
        except StoreURLError as e:
            console.print(f"[red]error:[/red] --store: {e}")
            return 2
    with console.status(f"simulating {scenario.name} ({mode}, seed {seed}, {args.runtime} runtime)"):
        if args.runtime == "ray":
            from simulator.ray import run_scenario_ray

            sim: Any
            sim, result = run_scenario_ray(scenario, seed, address=args.address, time_scale=args.time_scale,
                                           store=store)
        else:
            from replication.config import InvariantViolation

            try:
                sim, result = run_scenario(scenario, seed, check_invariants=args.check_invariants)
            except InvariantViolation as e:
                console.print(f"[red]node invariant broken:[/red] {e}")
                return 1
        write_outputs(sim, result, out)
    from simulator.report import write_report

    report = write_report(out)
    print_verdicts(console, result)
    console.print(f"written: {out}/result.json, history.jsonl, final_state.json, {report}")
    return 1 if result["violated"] else 0


def print_verdicts(console: Console, result: dict[str, Any]) -> None:
    table = Table(title=f"{result['scenario']['name']} — {result['mode']} — seed {result['seed']}")
    table.add_column("invariant")
    table.add_column("promised")
    table.add_column("verdict")
    table.add_column("first counter-example", overflow="fold")
    for name, v in result["invariants"].items():
        verdict = "[green]holds[/green]" if v["ok"] else ("[red]VIOLATED[/red]" if v["promised"]
                                                           else "[yellow]violated (not promised)[/yellow]")
        fv = v["first_violation"]
        table.add_row(name, "yes" if v["promised"] else "no", verdict, _short(fv) if fv else "")
    console.print(table)
    m = result["metrics"]
    figures = Table(title="figures")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    figures.add_row("acked transfers/s", f"{m['acked_per_s']:,}")
    figures.add_row("latency p50 / p99 (ms)", f"{m['latency_ms']['p50']} / {m['latency_ms']['p99']}")
    figures.add_row("replication lag p99 (ms)", str(m["replication_lag_ms"]["p99"]))
    av = m["availability"]
    figures.add_row("availability in / out of faults", f"{av['inside_faults']} / {av['outside_faults']}")
    for r in m["rto"]:
        figures.add_row(f"RTO {r['fault']} {','.join(r['target'])} @{r['at']}s", f"{r['rto_s']} s")
    rpo = m["rpo"]
    figures.add_row("RPO (acked transfers lost)", f"{rpo['lost_acknowledged']}"
                    + (f" over {rpo['window_s']} s" if rpo.get("window_s") is not None else ""))
    figures.add_row("virtual / wall", f"{m['sim']['virtual_s']} s / {m['sim']['wall_s']} s "
                                      f"(x{m['sim']['virtual_to_wall']})")
    figures.add_row("digest", result["digest"][:16])
    console.print(figures)


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from simulator.sweep import SweepError, build_grid, run_grid, save_rows, sweep_data, write_sweep

    console = Console()
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if args.jobs < 1:
        err.print("[red]sweep error:[/red] --jobs: must be >= 1")
        return 2
    try:
        modes = args.modes
        if modes is None:
            from simulator.scenario import ScenarioError

            try:
                modes = _load(args.scenario, None).mode_label
            except ScenarioError as e:
                raise SweepError(f"scenario error: {e}") from None
        grid = build_grid(args.scenario, args.param, modes, args.seeds, args.start, args.force)
    except SweepError as e:
        err.print(f"[red]sweep error:[/red] {e}")
        return 2
    out = Path(args.out or f"runs/sweep-{grid.name}")
    try:  # before hours of runs, not after
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sweep-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        err.print(f"[red]sweep error:[/red] --out {out}: cannot write there ({e.strerror or e})")
        return 2
    columns = (TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("broken promises: {task.fields[broken]}"))
    broken: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(grid.name, total=grid.n_runs, broken=0)

        def on_row(row: dict[str, Any]) -> None:
            if row["violated"]:
                broken.append(row)
                console.print(f"[red]{row['mode']} seed {row['seed']} {row['params']}: {', '.join(row['violated'])}"
                              f"[/red]", soft_wrap=True, highlight=False)
            progress.update(task, advance=1, broken=len(broken))

        rows = run_grid(grid, args.jobs, on_row)
    save_rows(rows, out)
    command = " ".join(["geoledger sweep", shlex.quote(args.scenario),
                        *(f"--param {shlex.quote(p)}" for p in args.param), f"--modes {','.join(grid.modes)}",
                        f"--seeds {args.seeds}", *([f"--start {args.start}"] if args.start != 1 else [])])
    data = sweep_data(grid, rows, time.perf_counter() - t0, command)
    json_path, html_path = write_sweep(data, out)
    for line in [data["decision"]["headline"], *data["decision"]["designs"]]:
        console.print(f"  • {line}", soft_wrap=True, highlight=False)
    console.print(f"written: {json_path}, {html_path}", soft_wrap=True, highlight=False)
    return 1 if broken else 0


def _short(fv: dict[str, Any]) -> str:
    keys = ("t", "region", "account", "balance", "transfer_ids", "problem", "lost")
    return ", ".join(f"{k}={fv[k]}" for k in keys if k in fv)


def _fuzz_one(job: tuple[str, str | None, int, bool]) -> tuple[int, list[str], str, dict[str, Any]]:
    from replication.config import InvariantViolation
    from simulator.run import run_scenario

    name, mode, seed, check = job
    scenario = _load(name, mode)
    try:
        _, result = run_scenario(scenario, seed, check_invariants=check)
    except InvariantViolation as e:  # a node contradicted itself mid-run: the run stops there
        return seed, ["node_invariants"], "", {"node_invariants": str(e)}
    firsts = {k: result["invariants"][k]["first_violation"] for k in result["violated"]}
    return seed, result["violated"], result["digest"], firsts


def fuzz_results(jobs: list[tuple[str, str | None, int, bool]],
                 workers: int) -> Iterator[tuple[int, list[str], str, dict[str, Any]]]:
    """Each job's (seed, violated promises, digest, first violations), as its run ends: on
    `workers` spawned processes, since the runs are CPU-bound and share nothing."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_fuzz_one, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_fuzz_one, jobs)


def cmd_fuzz(args: argparse.Namespace) -> int:
    from simulator.scenario import ScenarioError

    console = Console()
    try:
        _load(args.scenario, args.mode)
    except ScenarioError as e:
        console.print(f"[red]scenario error:[/red] {e}")
        return 2
    jobs = [(args.scenario, args.mode, s, args.check_invariants) for s in range(args.start, args.start + args.seeds)]
    failures: list[tuple[int, list[str], dict[str, Any]]] = []
    columns = (TextColumn("fuzz {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("failures: {task.fields[failures]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(args.mode, total=len(jobs), failures=0)
        for seed, violated, _, firsts in fuzz_results(jobs, args.jobs):
            _record(progress, task, console, args, seed, violated, firsts, failures)
    console.print(f"{len(jobs)} seeds, {len(failures)} with a violated promise ({args.mode})")
    return 1 if failures else 0


def _record(progress: Progress, task: Any, console: Console, args: argparse.Namespace, seed: int,
            violated: list[str], firsts: dict[str, Any], failures: list) -> None:
    if violated:
        failures.append((seed, violated, firsts))
        console.print(f"[red]seed {seed}: {', '.join(violated)}[/red] {firsts}\n"
                      f"  replay: geoledger simulate {args.scenario} --seed {seed} --mode {args.mode}"
                      + (" --check-invariants" if args.check_invariants else ""))
    progress.update(task, advance=1, failures=len(failures))

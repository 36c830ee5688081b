"""`geoledger serve` and `geoledger load`: region gateways, and a load run with a verdict."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from replication.config import DESIGN_LABELS, parse_design

MODES = DESIGN_LABELS


def _mode(value: str) -> tuple[str, str, str]:
    mode, ship, groups = parse_design(value)
    return mode.value, ship.value, groups.value


def _duration(value: str) -> float:
    from load.runner import parse_duration

    try:
        return parse_duration(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


PACKAGE = Path(__file__).resolve().parent
PRINT_EVERY_S = 5.0
"""How often `load` prints its progress when its output is not a terminal."""


def out_dir_problem(out: Path) -> str | None:
    """Why `out` may not hold a run's files: inside the source package (`load/`), a run's
    data and CSVs would mix with the code (and be imported as part of it)."""
    resolved = out.resolve()
    if resolved == PACKAGE or PACKAGE in resolved.parents:
        return f"--out {out}: that is inside the source package {PACKAGE}; use e.g. --out load-runs/NAME"
    return None


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run one HTTP gateway per region (a process each) over replicated region nodes",
        description="Starts K region processes on 127.0.0.1:BASE_PORT+i, each an HTTP gateway (OpenAPI at /docs) "
                    "in front of its region node and SQLite store. Every request but /health needs a bearer "
                    "token: the tokens (roles payments, auditor, operator) are written to DATA/credentials.json, "
                    "readable by its owner only. A region that exits unexpectedly is restarted. Ctrl-C or "
                    "SIGTERM stops them all.",
    )
    serve.add_argument("--regions", type=int, default=3, help="number of regions, 1-8 (default: %(default)s)")
    serve.add_argument("--mode", choices=MODES, default="unit+semi-sync", help="(default: %(default)s)")
    serve.add_argument("--base-port", type=int, default=8100,
                       help="first region's HTTP port; peer links use BASE+50+i; 0 = free ports, printed at "
                            "start (default: %(default)s)")
    serve.add_argument("--customers", type=int, default=1000, help="customer accounts 1..N (default: %(default)s)")
    serve.add_argument("--data", default="serve-data", help="directory of the region stores (default: %(default)s)")
    serve.add_argument("--no-group-commit", action="store_true", help="one commit per request (for comparison)")
    serve.add_argument("--workers", type=int, default=1,
                       help="HTTP processes per region, 1-16: the region's own and N-1 workers on the "
                            "same port that parse, validate and batch writes for it (a region past one core of "
                            "HTTP); kill -9 of a worker loses nothing acknowledged (default: %(default)s)")
    serve.set_defaults(func=cmd_serve)

    load = subparsers.add_parser(
        "load",
        help="start gateways, run Locust headless, apply chaos, verify consistency",
        description="Runs the Locust suite (load/locustfile.py) against fresh region gateways, optionally applies "
                    "a scenario's chaos schedule to the gateway processes (kill -9 and restart, latency, "
                    "partitions), then checks every acknowledged transfer, conservation, no overdraft and "
                    "convergence. Exit code 1 on a violated invariant or a missed SLO, 2 on bad arguments.",
    )
    load.add_argument("--users", type=int, default=20, help="Locust users (default: %(default)s)")
    load.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second (default: %(default)s)")
    load.add_argument("--duration", type=_duration, default=20.0, metavar="TIME",
                      help="how long to load: seconds (30) or as Locust's -t (30s, 5m, 1h, 1h30m) "
                           "(default: %(default)s s)")
    load.add_argument("--regions", type=int, default=3, help="number of regions (default: %(default)s)")
    load.add_argument("--mode", choices=MODES, default="unit+semi-sync", help="(default: %(default)s)")
    load.add_argument("--customers", type=int, default=600, help="customer accounts (default: %(default)s)")
    load.add_argument("--chaos", default=None, help="scenario whose chaos schedule to apply, e.g. region-outage")
    load.add_argument("--shape", choices=("ramp", "spike", "soak"), default=None, help="a Locust load shape")
    load.add_argument("--processes", type=int, default=1, help="Locust worker processes (bigger machines)")
    load.add_argument("--workers", type=int, default=1,
                      help="HTTP processes per region, as `serve --workers` (default: %(default)s)")
    load.add_argument("--base-port", type=int, default=8100,
                      help="first region's HTTP port; peer links use BASE+50+i; 0 = free ports (default: "
                           "%(default)s)")
    load.add_argument("--no-group-commit", action="store_true", help="one commit per request (for comparison)")
    load.add_argument("--slo-p99-ms", type=float, default=None, help="fail if transfer p99 exceeds this")
    load.add_argument("--slo-min-acked-per-s", type=float, default=None, help="fail below this throughput")
    load.add_argument("--hostile", type=int, default=0, metavar="WEIGHT",
                      help="add hostile clients (u128 extremes, reserved ids, bank accounts, reused ids, chains "
                           "across units, other clients' holds) with this weight beside the normal ones' 10 "
                           "(default: %(default)s)")
    load.add_argument("--out", default=None,
                      help="output directory, e.g. load-runs/first (default: a new temp dir); not inside the "
                           "source package load/")
    load.set_defaults(func=cmd_load)


def cmd_serve(args: argparse.Namespace) -> int:
    from load.cluster import MAX_WORKERS, Cluster, ClusterError, default_config

    mode, ship, groups = _mode(args.mode)
    try:
        if not 1 <= args.workers <= MAX_WORKERS:
            raise ValueError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
        cfg = default_config(args.regions, mode=mode, ship=ship, quorum_groups=groups, base_port=args.base_port,
                             customers=args.customers, data_dir=str(Path(args.data).resolve()),
                             group_commit=not args.no_group_commit, workers=args.workers)
        cluster = Cluster(cfg, Path(args.data).resolve())
    except (ValueError, ClusterError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return 2
    console = Console()
    stop = _stop_on_signals()
    try:
        cluster.start_all()
        for r, name in enumerate(cfg.regions):
            console.print(f"region [bold]{name}[/bold]: {cfg.url(r)}  (OpenAPI: {cfg.url(r)}/docs)")
        console.print(usage(cluster.credentials_path, cfg.url(0), customers=cfg.customers,
                            units=len(cfg.regions) * cfg.units_per_region), highlight=False, markup=False)
        console.print("Ctrl-C (or SIGTERM) stops every region")
        stop.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        console.print(f"[red]error:[/red] {e}")
        return 1
    finally:
        cluster.stop_all()
    return 0


def usage(credentials: Path, url: str, *, customers: int, units: int) -> str:
    """How to call the gateways with the run's tokens (printed by `serve`; the tokens stay in
    the file): curl, and the Locust command for exactly these ports, credentials, customers
    and units (the suite's ids must name the unit of their debit account)."""
    token = (f"python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"tokens\"][sys.argv[2]])' "
             f"{credentials}")
    return "\n".join([
        f"credentials: {credentials} (owner-only; roles: payments, auditor, operator)",
        f"  curl -H \"Authorization: Bearer $({token} payments)\" {url}/accounts/1",
        "load it with Locust (web UI: leave out --headless and its -u/-r/-t):",
        f"  GEOLEDGER_CREDENTIALS={credentials} GEOLEDGER_CUSTOMERS={customers} GEOLEDGER_UNITS={units} "
        f"locust -f {PACKAGE / 'locustfile.py'} --headless -u 50 -r 10 -t 30s --host {url}",
    ])


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so that `serve` stops its regions either way
    (SIGTERM's default action would end `serve` at once, its regions left serving)."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


def cmd_load(args: argparse.Namespace) -> int:
    from load.runner import LoadOptions, run_load

    mode, ship, groups = _mode(args.mode)
    if args.out and (problem := out_dir_problem(Path(args.out))):
        Console(stderr=True).print(f"[red]error:[/red] {problem}", highlight=False)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="geoledger-load-"))
    opts = LoadOptions(
        users=args.users, spawn_rate=args.spawn_rate, duration=args.duration, regions=args.regions, mode=mode,
        ship=ship, quorum_groups=groups, customers=args.customers, chaos=args.chaos, shape=args.shape, out=out,
        base_port=args.base_port, group_commit=not args.no_group_commit, processes=args.processes,
        workers=args.workers, slo_p99_ms=args.slo_p99_ms, slo_min_acked_per_s=args.slo_min_acked_per_s,
        hostile=args.hostile,
    )
    console = Console()
    try:
        opts.validate()
    except ValueError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return 2
    started = time.monotonic()
    what = f"load: {opts.users} users for {opts.duration:g} s on {opts.regions} regions ({args.mode})"
    printed = [0.0]

    def show(now: dict[str, Any]) -> None:
        if console.is_terminal:
            status.update(f"{what}: {progress_line(now)}")
        elif now["t"] - printed[0] >= PRINT_EVERY_S:  # a log, not a terminal: a line every few seconds
            printed[0] = now["t"]
            console.print(progress_line(now), highlight=False)

    with console.status(f"{what}: starting the regions") as status:
        opts.progress = show
        result = run_load(opts)
    table = Table(title=f"geoledger load — {result['mode']} — {time.monotonic() - started:.0f} s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("acked", "acked_per_s", "requests", "failures", "requests_per_s", "p50_ms", "p99_ms", "quiesce_s"):
        table.add_row(key, str(result[key]))
    limits = result["limits"]
    table.add_row("in flight (Little's law)", f"{limits['in_flight_requests']} of {limits['users']} users")
    table.add_row("machine CPU busy", f"{limits['machine_busy_fraction']:.0%}" if limits["machine_busy_fraction"]
                  is not None else "—")
    table.add_row("bound by", limits["bound_by"])
    for name, fraction in limits["process_busy_fraction"].items():
        table.add_row(f"{name} busy", "—" if fraction is None else f"{fraction:.0%} of a core")
    for name, inv in result["invariants"].items():
        verdict = "holds" if inv["ok"] else ("VIOLATED" if inv["promised"] else "violated (not promised)")
        table.add_row(f"invariant {name}", verdict)
    for event in result["chaos_events"]:
        table.add_row(f"chaos t={event['t']}s", f"{event['region']}: {event['event']}")
    console.print(table)
    verdict = result["verdict"]
    console.print(f"verdict: [bold]{'ok' if verdict == 'ok' else ', '.join(verdict)}[/bold]")
    console.print(f"written in {out}/: {', '.join(result['files'])}", highlight=False)
    return 0 if verdict == "ok" else 1


def progress_line(now: dict[str, Any]) -> str:
    """One line of a running load: Locust's users, requests/s and failures, and the chaos so far."""
    chaos = f", chaos events {now['chaos_events']} (last: {now['last_chaos']})" if now["chaos_events"] else ""
    return (f"t={now['t']:.0f} s, users {now['users']}, {now['requests_per_s']:,.0f} req/s, "
            f"requests {now['requests']:,}, failures {now['failures']:,}{chaos}")

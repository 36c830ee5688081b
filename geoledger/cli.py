"""`geoledger`: the command line. Each subcommand is a thin layer over a library package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import cext

VERSION = "0.1.0"


def _version_text() -> str:
    engine = (
        "compiled Cython engine"
        if cext.COMPILED
        else "pure-Python twin engine (compiled module missing: run `pip install -e .` to build it)"
    )
    return f"geoledger {VERSION} — {engine}"


def _cmd_bench(args: argparse.Namespace) -> int:
    from bench.ledger_bench import run, write

    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        result = run(args.quick, progress=lambda what: status.update(f"benchmarking: {what}"))
    write(result, Path(args.out))
    table = Table(title=f"geoledger ledger benchmark ({'quick' if args.quick else 'full'})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "cython_apply_per_s",
        "python_twin_apply_per_s",
        "codec_pack_per_s",
        "durable_sqlite_per_s",
        "durable_cassandra_per_s",
        "naive_eventsourcing_per_s",
        "reopen_s",
        "statement_indexed_per_s",
        "statement_scan_per_s",
    ):
        if result.get(key) is not None:
            table.add_row(key, f"{result[key]:,.2f}" if isinstance(result[key], float) else str(result[key]))
    if result.get("cassandra_per_s") is not None and not result.get("cassandra_durable"):
        table.add_row(f"cassandra_per_s (NOT durable: commit log {result['cassandra_commitlog_sync']}; "
                      "scripts/cassandra start --durable for a durable figure)", f"{result['cassandra_per_s']:,.2f}")
    for key, value in result["ratios"].items():
        table.add_row(f"ratio {key}", f"{value:,.1f}×")
    table.add_row("reopen_transfers", f"{result['reopen_transfers']:,}")
    Console().print(table)
    Console().print(f"written: {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoledger",
        description=(
            "geoledger: an event-sourced double-entry ledger replicated active-active across "
            "regions, with a simulator, chaos, load suites and reports."
        ),
    )
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser(
        "bench",
        help="measure the ledger: Cython vs Python twin, durable SQLite, naive eventsourcing, reopen",
        description="Runs the ledger benchmark, prints a table and writes JSON.",
    )
    bench.add_argument("--quick", action="store_true", help="small sizes (about a minute) instead of full")
    bench.add_argument(
        "--out", default="bench/results/ledger.json", help="where to write the JSON (default: %(default)s)"
    )
    bench.set_defaults(func=_cmd_bench)

    from simulator.cli import register as register_simulator

    register_simulator(sub)

    from simulator.report_cli import register as register_reports

    register_reports(sub)

    from load.cli import register as register_load

    register_load(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""Bulk ingestion benchmark: durable transfers/s client-to-server, JSON batches vs binary rows.

Two servers, each a separate process with uvicorn (uvloop, httptools) on this machine:

* `ledger`: a gateway over `Ledger.open("sqlite:///...")` (one region, no peers);
* `node`: a one-region `geoledger serve` region process (its node and SQLite region store).

Each gets the same transfers as `POST /transfers/batch` (JSON, 8,190 per request) and as
`POST /transfers/bulk` (`application/octet-stream`, 8,190 rows of 128 bytes per request,
`load.bulk`), from `--connections` client threads. Bodies are built before the clock starts
(what is measured is the gateway and the ledger, not the client's encoder); every answer is
checked (each transfer must come back OK). The ratio binary/JSON is within the run. Each
format runs `--repeats` times on each server (the median is reported, every run's rate
beside it), with the server's and the client's CPU seconds per million transfers: on a
shared 2-core machine the rate moves with the neighbours' load, the CPU cost much less.

Run: `python -m bench.bulk_bench [--quick]`; prints a table, writes bench/results/bulk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench.publish import publish
from bench.servers import free_socket, wait_healthy
from cext.layout import TRANSFER_DTYPE
from load import bulk
from load.auth import Credentials, Role

BATCH = 8190
LEDGER = 156


@dataclass
class Target:
    """A running server: where it is, and what a transfer between two customers looks like."""

    name: str
    url: str
    headers: dict[str, str]
    payer_payee: Callable[[int], tuple[np.ndarray, np.ndarray]]
    id_hi: int  # the high word every id carries (a node's ids name their unit)
    pid: int  # the server's process, for its CPU time


def _rows(target: Target, first_id: int, n: int) -> np.ndarray:
    rows = np.zeros(n, TRANSFER_DTYPE)
    rows["id_lo"] = np.arange(first_id, first_id + n, dtype=np.uint64)
    rows["id_hi"] = target.id_hi
    payer, payee = target.payer_payee(n)
    rows["debit_account_id_lo"], rows["credit_account_id_lo"] = payer, payee
    rows["amount_lo"] = 1
    rows["ledger"], rows["code"] = LEDGER, 1
    return rows


def _json_body(rows: np.ndarray) -> bytes:
    return json.dumps([
        {"id": (int(r["id_hi"]) << 64) | int(r["id_lo"]), "debit_account_id": int(r["debit_account_id_lo"]),
         "credit_account_id": int(r["credit_account_id_lo"]), "amount": 1, "ledger": LEDGER, "code": 1}
        for r in rows], separators=(",", ":")).encode()


def _send(target: Target, bodies: list[tuple[str, bytes, str]], connections: int) -> tuple[float, int]:
    """Seconds to send every body (`connections` at a time) and how many answers were not OK."""
    def worker(part: list[tuple[str, bytes, str]]) -> int:
        bad = 0
        with httpx.Client(headers=target.headers, timeout=120.0) as client:
            for path, body, media in part:
                r = client.post(f"{target.url}{path}", content=body, headers={"content-type": media})
                r.raise_for_status()
                if media == bulk.MEDIA_TYPE:
                    bad += len(r.content) // bulk.RESULT_DTYPE.itemsize
                else:
                    bad += sum(o["result"] != "OK" for o in r.json())
        return bad

    parts = [bodies[i::connections] for i in range(connections)]
    start = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        bad = sum(pool.map(worker, parts))
    return time.perf_counter() - start, bad


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure_target(target: Target, transfers: int, json_transfers: int, connections: int,
                   repeats: int) -> dict[str, Any]:
    """Each format `repeats` times (fresh ids each time, one growing ledger); the median run
    is reported, with every run's rate beside it: the machine is shared, its noise is real."""
    out: dict[str, Any] = {"connections": connections}
    next_id = 1
    for fmt, n in (("json", json_transfers), ("binary", transfers)):
        runs = []
        for _ in range(repeats):
            bodies = []
            for start in range(0, n, BATCH):
                rows = _rows(target, next_id + start, min(BATCH, n - start))
                bodies.append(("/transfers/bulk", rows.tobytes(), bulk.MEDIA_TYPE) if fmt == "binary"
                              else ("/transfers/batch", _json_body(rows), "application/json"))
            next_id += n
            cpu_before, client_before = _cpu(target.pid), _cpu(os.getpid())
            seconds, bad = _send(target, bodies, connections)
            server_cpu, client_cpu = _cpu(target.pid) - cpu_before, _cpu(os.getpid()) - client_before
            runs.append({"transfers": n, "requests": len(bodies), "seconds": round(seconds, 3),
                         "transfers_per_s": round(n / seconds), "not_ok": bad,
                         "server_cpu_s_per_million": round(server_cpu / n * 1e6, 2),
                         "client_cpu_s_per_million": round(client_cpu / n * 1e6, 2),
                         "body_bytes_per_transfer": round(sum(len(b) for _, b, _ in bodies) / n, 1)})
        runs.sort(key=lambda r: r["transfers_per_s"])
        out[fmt] = {**runs[len(runs) // 2], "runs_transfers_per_s": [r["transfers_per_s"] for r in runs]}
    out["ratio_binary_over_json"] = round(out["binary"]["transfers_per_s"] / out["json"]["transfers_per_s"], 1)
    return out


@contextmanager
def ledger_target(workdir: Path, customers: int) -> Iterator[Target]:
    """A gateway process over a durable SQLite `Ledger`, with `customers` accounts."""
    creds = Credentials.generate()
    digests = workdir / "digests.json"
    digests.write_text(json.dumps(creds.digests()))
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bulk_bench", "--serve-ledger", f"sqlite:///{workdir / 'ledger.db'}",
         "--fd", str(sock.fileno()), "--digests", str(digests)], pass_fds=(sock.fileno(),))
    try:
        wait_healthy(url, proc)
        accounts = [{"id": i, "ledger": LEDGER, "code": 1} for i in range(1, customers + 1)]
        httpx.post(f"{url}/accounts", json=accounts, headers=creds.header(Role.OPERATOR),
                   timeout=60).raise_for_status()
        rng = np.random.default_rng(7)

        def pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
            payer = rng.integers(1, customers + 1, n, dtype=np.uint64)
            return payer, payer % np.uint64(customers) + np.uint64(1)

        yield Target("ledger", url, creds.header(Role.PAYMENTS), pairs, 0, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()


@contextmanager
def node_target(workdir: Path, customers: int) -> Iterator[Target]:
    """One region of `geoledger serve` (unit mode): ids name unit 0, customers of unit 0 pay each other."""
    from load.cluster import Cluster, default_config
    from replication.ids import UNIT_SHIFT

    cfg = default_config(1, base_port=0, customers=customers, data_dir=str(workdir / "serve"))
    cluster = Cluster(cfg, workdir)
    try:
        cluster.start_all(supervise=False)
        units = cfg.units_per_region
        in_unit0 = np.arange(1, customers + 1, units, dtype=np.uint64)  # customer i is in unit (i-1) % units
        rng = np.random.default_rng(7)

        def pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
            k = rng.integers(0, len(in_unit0), n)
            return in_unit0[k], in_unit0[(k + 1) % len(in_unit0)]

        yield Target("node", cfg.url(0), cluster.credentials.header(Role.PAYMENTS), pairs,
                     (0 + 1) << (UNIT_SHIFT - 64), cluster.procs[0].pid)
    finally:
        cluster.stop_all()


def measure(quick: bool, connections: int, repeats: int) -> dict[str, Any]:
    transfers = 8 * BATCH if quick else 122 * BATCH  # ~1 M transfers
    json_transfers = 2 * BATCH if quick else 12 * BATCH
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "batch": BATCH,
                           "command": f"python -m bench.bulk_bench{' --quick' if quick else ''} --connections "
                                      f"{connections} --repeats {repeats}"}
    with tempfile.TemporaryDirectory(prefix="geoledger-bulkbench-") as tmp:
        out["in_process_per_s"] = in_process(Path(tmp), transfers, 1000)
    for name, target in (("ledger", ledger_target), ("node", node_target)):
        with tempfile.TemporaryDirectory(prefix="geoledger-bulkbench-") as tmp, target(Path(tmp), 1000) as t:
            out[name] = measure_target(t, transfers, json_transfers, connections, repeats)
        out[name]["binary_share_of_in_process"] = round(out[name]["binary"]["transfers_per_s"]
                                                        / out["in_process_per_s"], 2)
    return out


def in_process(workdir: Path, transfers: int, customers: int) -> int:
    """The ceiling: the same rows through `Ledger.create_transfer_rows` on a durable SQLite
    ledger in this process (no HTTP, no second process), transfers/s."""
    from ledger import Account, Ledger

    with Ledger.open(f"sqlite:///{workdir / 'in-process.db'}") as led:
        led.create_accounts([Account(id=i, ledger=LEDGER, code=1) for i in range(1, customers + 1)])
        rng = np.random.default_rng(7)
        target = Target("in-process", "", {}, lambda n: (
            (p := rng.integers(1, customers + 1, n, dtype=np.uint64)), p % np.uint64(customers) + np.uint64(1)), 0, 0)
        batches = [_rows(target, 1 + start, min(BATCH, transfers - start)) for start in range(0, transfers, BATCH)]
        start = time.perf_counter()
        for rows in batches:
            assert not led.create_transfer_rows(rows).any()
        return round(transfers / (time.perf_counter() - start))


def table(result: dict[str, Any]) -> str:
    lines = [f"{'server':8} {'JSON transfers/s':>17} {'binary transfers/s':>19} {'binary/JSON':>12} "
             f"{'server CPU s/M JSON, binary':>28} {'binary runs':>28} {'not OK':>7}"]
    for name in ("ledger", "node"):
        r = result[name]
        j, b = r["json"], r["binary"]
        runs = ", ".join(f"{x:,}" for x in b["runs_transfers_per_s"])
        lines.append(f"{name:8} {j['transfers_per_s']:17,} {b['transfers_per_s']:19,} "
                     f"{r['ratio_binary_over_json']:11.1f}x {j['server_cpu_s_per_million']:>18}, "
                     f"{b['server_cpu_s_per_million']:>7} {runs:>28} {j['not_ok'] + b['not_ok']:7}")
    lines.append(f"in-process ceiling (Ledger.create_transfer_rows, durable SQLite, no HTTP): "
                 f"{result['in_process_per_s']:,}/s; the binary rates are "
                 f"{result['ledger']['binary_share_of_in_process']:.0%} (ledger) and "
                 f"{result['node']['binary_share_of_in_process']:.0%} (node) of it")
    lines.append("transfers/s: the median of the runs, client to server, durable; server CPU s per million transfers")
    return "\n".join(lines)


def _serve_ledger(url: str, fd: int, digests: Path) -> None:
    """The `ledger` server: a gateway over a durable `Ledger`, on an inherited socket."""
    import uvicorn

    from ledger import Ledger
    from load.auth import TokenVerifier
    from load.gateway import LedgerBackend, create_app

    app = create_app(LedgerBackend(Ledger.open(url), "bench"), auth=TokenVerifier(json.loads(digests.read_text())))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, loop="uvloop",
                                           http="httptools"))
    server.run(sockets=[socket.socket(fileno=fd)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="65k binary, 16k JSON transfers per server")
    parser.add_argument("--connections", type=int, default=2, help="client threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per format and server (default: %(default)s)")
    parser.add_argument("--out", default="bench/results/bulk.json")
    parser.add_argument("--serve-ledger", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--digests", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ledger:
        _serve_ledger(args.serve_ledger, args.fd, args.digests)
        return
    result = measure(args.quick, args.connections, args.repeats)
    publish(result, args.out, table(result))


if __name__ == "__main__":
    main()

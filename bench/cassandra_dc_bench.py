"""Write latency of stores kept in three datacentres, per consistency level.

On the three-datacentre Cassandra of `scripts/cassandra start --dcs changchun,beijing,shanghai`
(one node per datacentre, every keyspace replicated ``changchun:1,beijing:1,shanghai:1``), a
writer in Changchun at ``LOCAL_QUORUM`` and one at ``EACH_QUORUM``, interleaved operation by
operation so that the machine's load falls on both alike:

* a region store (`region.cassandra`) flushing batches of B records (B = 1 and 64 by default);
* the library's ledger (`Ledger.open`), one transfer per ``create_transfers`` call (a Paxos
  round: ``LOCAL_SERIAL`` under LOCAL_QUORUM, ``SERIAL`` across datacentres under EACH_QUORUM).

It prints p50/p99/mean per level and writes `bench/results/cassandra_dc.json`. `--loss` adds
what LOCAL_QUORUM loses with *no* cut: a stream of single-record flushes, Changchun's node
SIGKILLed right after an acknowledgement, and the records Beijing's replica lacks counted
(the node is started again afterwards). All nodes share one machine and its loopback: there
is no WAN here, so EACH_QUORUM's extra cost is the remote datacentres' own work, not a round
trip; between datacentres 30 ms apart, add about 30 ms to every EACH_QUORUM write.

    python -m bench.cassandra_dc_bench [--flushes 300] [--batches 1,64] [--transfers 200] [--loss]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ledger import Account, CreateTransferResult, Ledger, Transfer
from region.cassandra import CassandraRegionStore, drop_region_keyspaces
from replication.log import Entry

DCS = ("changchun", "beijing", "shanghai")
ADDR = {dc: f"127.0.0.{k + 2}" for k, dc in enumerate(DCS)}
REPLICATION = ",".join(f"{dc}:1" for dc in DCS)
LEVELS = ("local_quorum", "each_quorum")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cassandra"


def store_url(base: str, dc: str, level: str) -> str:
    return f"cassandra://{ADDR[dc]}:9042/{base}?dc={dc}&replication={REPLICATION}&consistency={level}"


def _entry(seq: int) -> Entry:
    from cext.layout import TRANSFER_DTYPE

    rows = np.zeros(4, TRANSFER_DTYPE)
    rows["id_lo"] = np.arange(4) + seq * 10
    rows["amount_lo"] = 100
    rows["ledger"] = 156
    return Entry(1, seq, 1, 1_700_000_000_000_000_000 + seq, rows).seal()


def _summary(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1000
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def _interleaved(ops: dict[str, Callable[[], None]], n: int, warmup: int) -> dict[str, dict[str, float]]:
    """Time `n` calls of each op, round-robin (after `warmup` untimed rounds)."""
    samples: dict[str, list[float]] = {k: [] for k in ops}
    for i in range(warmup + n):
        for key, op in ops.items():
            t0 = time.perf_counter()
            op()
            if i >= warmup:
                samples[key].append(time.perf_counter() - t0)
    return {k: _summary(v) for k, v in samples.items()}


def bench_region_store(base: str, flushes: int, batch: int) -> dict[str, dict[str, float]]:
    stores = {level: CassandraRegionStore(store_url(base, "changchun", level), f"b{batch}_{level}", fresh=True)
              for level in LEVELS}
    seq = {level: 0 for level in LEVELS}

    def flush(level: str) -> Callable[[], None]:
        def op() -> None:
            for _ in range(batch):
                seq[level] += 1
                stores[level].append(_entry(seq[level]))
            stores[level].flush()
        return op

    try:
        return _interleaved({level: flush(level) for level in LEVELS}, flushes, warmup=max(5, flushes // 10))
    finally:
        for s in stores.values():
            s.close()


def bench_ledger(base: str, transfers: int) -> dict[str, dict[str, float]]:
    ledgers = {level: Ledger.open(store_url(f"{base}_ledger_{level}", "changchun", level)) for level in LEVELS}
    next_id = {level: 1000 for level in LEVELS}
    for led in ledgers.values():
        led.create_accounts([Account(id=1, ledger=156, code=10), Account(id=2, ledger=156, code=10)])

    def transfer(level: str) -> Callable[[], None]:
        def op() -> None:
            next_id[level] += 1
            result = ledgers[level].create_transfers([Transfer(id=next_id[level], debit_account_id=2,
                                                               credit_account_id=1, amount=1, ledger=156, code=1)])
            assert result == [CreateTransferResult.OK], result
        return op

    try:
        return _interleaved({level: transfer(level) for level in LEVELS}, transfers, warmup=10)
    finally:
        for led in ledgers.values():
            led.close()


def script(*args: str) -> None:
    """Run scripts/cassandra (with this Python, for its CQL checks); raise if it fails."""
    subprocess.run([str(SCRIPT), *args], check=True, env={**os.environ, "PYTHON": sys.executable},
                   stdout=subprocess.DEVNULL, timeout=900)


def bench_loss(base: str, records: int) -> dict[str, Any]:
    """LOCAL_QUORUM, nothing cut off: SIGKILL Changchun right after the last acknowledged
    flush of a stream; how many acknowledged records does Beijing's replica lack?"""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy
    from cassandra.query import SimpleStatement

    store = CassandraRegionStore(store_url(base, "changchun", "local_quorum"), "loss", fresh=True)
    for i in range(records):
        store.append(_entry(i + 1))
        store.flush()
    script("stop", "--dc", "changchun", "--kill")
    store.close()
    try:
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([ADDR["beijing"]]))
        cluster = Cluster([ADDR["beijing"]], protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        try:
            stmt = SimpleStatement(f"SELECT idx FROM {store.keyspace}.records",
                                   consistency_level=ConsistencyLevel.LOCAL_ONE)
            held = {int(r.idx) for r in cluster.connect().execute(stmt)}
        finally:
            cluster.shutdown()
    finally:
        script("start", "--dcs", ",".join(DCS))
    lost = sorted(set(range(records)) - held)
    return {"acknowledged": records, "missing_in_beijing": len(lost), "missing_indexes": lost[:20]}


def table(results: dict[str, Any]) -> str:
    lines = [f"{'operation':42} {'level':13} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'n':>5}"]
    for name, per_level in results["latency"].items():
        for level, s in per_level.items():
            lines.append(f"{name:42} {level:13} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['mean_ms']:>8.2f} "
                         f"{s['n']:>5}")
    if "loss" in results:
        loss = results["loss"]
        lines.append(f"LOCAL_QUORUM, Changchun SIGKILLed after {loss['acknowledged']} acknowledged flushes: "
                     f"{loss['missing_in_beijing']} missing in Beijing's replica")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flushes", type=int, default=300, help="timed region-store flushes per level and batch size")
    ap.add_argument("--batches", default="1,64", help="records per flush, comma-separated")
    ap.add_argument("--transfers", type=int, default=200, help="timed ledger commits per level (0: skip)")
    ap.add_argument("--loss", action="store_true", help="also measure LOCAL_QUORUM's loss on a SIGKILL (restarts "
                                                         "Changchun's node: ~30 s)")
    ap.add_argument("--out", default="bench/results/cassandra_dc.json")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.flushes < 1 or args.transfers < 0 or any(not 1 <= b <= 8190 for b in batches):
        ap.error("--flushes >= 1, --transfers >= 0, batches in 1..8190")
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    base = f"glbench{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"python": platform.python_version(), "datacentres": list(DCS),
                               "replication": REPLICATION, "latency": {}}
    regions = [f"b{b}_{level}" for b in batches for level in LEVELS] + ["loss"]
    try:
        for b in batches:
            results["latency"][f"region store flush of {b} record{'s' if b > 1 else ''}"] = \
                bench_region_store(base, args.flushes, b)
        if args.transfers:
            results["latency"]["ledger create_transfers of 1 transfer"] = bench_ledger(base, args.transfers)
        if args.loss:
            results["loss"] = bench_loss(base, 2000)
    finally:
        drop_region_keyspaces(store_url(base, "changchun", "local_quorum"),
                              regions + [f"ledger_{level}" for level in LEVELS])
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

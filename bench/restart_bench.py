"""Restart time and memory of a region against its history: snapshot + tail vs every record.

For each size N (transfers), one history is generated on the fastest path there is: a
region of an `async` pair applies its peer's entries as a follower does (`Ship` messages of
`--batch` transfers, applied by the compiled engine in one call each) and its records go to
an SQLite region store. That store, holding every record, is the baseline. A copy of it is
checkpointed as a live region would be (`region.checkpoint.take`, the runtime's own path)
`--tail` transfers before its end: that is the store of a region restarted at the worst
moment of a checkpoint interval of `--tail` transfers.

Each store is then reopened and its region recovered (`RegionNode.recover`) in a fresh
process, which reports the wall time, its peak RSS (what the host must have), its RSS
afterwards, and the books' digest: every restart must give the books the generator ended
with, or the bench fails. The snapshot holds the books: every account and every transfer
(exactly-once: a retry of any id is answered from them), so a restart from it costs a read
and check of those bytes (sha256) plus the tail, and memory holds the books plus a bounded
rest; a restart from every record replays the history and keeps every record and applied
entry in memory besides.

    python -m bench.restart_bench                      # 100k, 1M, 10M (about 2 minutes here)
    python -m bench.restart_bench --sizes 20000,100000 # a quick look

The table goes to stdout, the figures to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CUSTOMERS = 10_000
T0 = 1_700_000_000_000_000_000


def _config(n_customers: int = CUSTOMERS) -> Any:
    from replication.accounts import AccountMap
    from replication.config import Mode, NodeConfig

    amap = AccountMap(2, np.arange(n_customers + 1) % 2)  # unit u homed at region u; region 0 follows 1
    return NodeConfig(2, 0, Mode.ASYNC, amap, 10**15, checkpoint_every=0)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rows(k: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Batch k of origin 1: fresh ids of unit 1, transfers between its customers."""
    from cext.layout import TRANSFER_DTYPE
    from replication.ids import transfer_id

    rows = np.zeros(batch, TRANSFER_DTYPE)
    base = transfer_id(1, 1) - 1
    ids = np.arange(k * batch + 1, (k + 1) * batch + 1, dtype=np.uint64)
    rows["id_lo"], rows["id_hi"] = np.uint64(base & ((1 << 64) - 1)) + ids, base >> 64
    debit = rng.integers(0, CUSTOMERS // 2, batch) * 2 + 1  # odd customers: unit 1
    rows["debit_account_id_lo"] = debit
    rows["credit_account_id_lo"] = (debit + 2 * rng.integers(1, CUSTOMERS // 2, batch)) % CUSTOMERS
    rows["amount_lo"], rows["ledger"], rows["code"] = 1, 156, 1
    rows["timestamp"] = T0 + ids
    return rows


def generate(path: str, n: int, batch: int, tail: int) -> dict[str, Any]:
    """Write the history of `n` transfers to `path` (every record), copy it to
    `path`.snap and checkpoint the copy `tail` transfers before its end."""
    from region import checkpoint
    from region.sqlite import SqliteRegionStore
    from replication.log import Entry
    from replication.messages import Checkpoint, Persist, Ship
    from replication.node import RegionNode
    from replication.state import canonical_digest

    config = _config()
    node = RegionNode(config)
    store = SqliteRegionStore(path)
    rng = np.random.default_rng(1)
    began = time.perf_counter()
    for k in range(-(-n // batch)):
        rows = _rows(k, min(batch, n - k * batch), rng)
        entry = Entry(1, k + 1, 0, T0, rows).seal()
        for e in node.handle(Ship(1, 1, [entry]), T0 + (k + 1) * batch):
            if type(e) is Persist:
                store.append(e.record)
        store.flush()
    gen_s = time.perf_counter() - began
    assert not node.replica.anomalies and len(node.engine.transfers) >= n, "the history applies cleanly"
    books, transfers = canonical_digest(node.engine), len(node.engine.transfers)
    del node, entry, rows  # the checkpoint below rebuilds its own node from the store, as a runtime does
    records = store.end
    store.close()
    shutil.copyfile(path, path + ".snap")
    snap = SqliteRegionStore(path + ".snap")
    position = max(1, records - -(-tail // batch))
    began = time.perf_counter()
    snapshot = checkpoint.take(config, snap, Checkpoint(position))
    checkpoint_s = time.perf_counter() - began
    snap.close()
    return {"gen_s": gen_s, "records": records, "snapshot_at": position, "checkpoint_s": checkpoint_s,
            "snapshot_bytes": len(snapshot.engine), "digest": books, "transfers": transfers}


def restart(path: str) -> dict[str, Any]:
    """Reopen the store at `path` and recover its region: what a restarted process does."""
    from region.sqlite import SqliteRegionStore
    from replication.node import RegionNode
    from replication.state import canonical_digest

    before = _rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    store = SqliteRegionStore(path)
    node, _ = RegionNode.recover(_config(), store)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    out = {"restart_s": took, "restart_cpu_s": cpu, "peak_mb": _peak_mb(), "rss_mb": _rss_mb(), "rss_before_mb": before,
           "tail_records": len(store.records), "digest": canonical_digest(node.engine),
           "transfers": len(node.engine.transfers), "kept_entries": len(node.design.applied)}
    store.close()
    return out


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.restart_bench", "--child", *args], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(sizes: list[int], batch: int, tail: int, workdir: str) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        path = os.path.join(workdir, f"region-{n}.db")
        gen = _child("generate", path, str(n), str(batch), str(tail))
        full = _child("restart", path)
        snap = _child("restart", path + ".snap")
        for r in (full, snap):
            if (r["digest"], r["transfers"]) != (gen["digest"], gen["transfers"]):
                raise SystemExit(f"n={n}: a restart gave other books than the region had")
        out.append({"transfers": n, "generate": gen, "every_record": full, "snapshot_and_tail": snap})
        for suffix in ("", "-wal", "-shm", ".lock", ".snap", ".snap-wal", ".snap-shm", ".snap.lock"):
            Path(path + suffix).unlink(missing_ok=True)
        print(f"  {n:>12,} transfers done", file=sys.stderr, flush=True)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'transfers':>11} | {'every record: s':>15} {'cpu s':>6} {'peak MB':>7} {'RSS MB':>6} {'records':>7} | "
            f"{'snapshot+tail: s':>16} {'cpu s':>6} {'peak MB':>7} {'RSS MB':>6} {'records':>7} | {'books MB':>8} | "
            f"{'cpu ratio':>9} {'RSS ratio':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        f, s = r["every_record"], r["snapshot_and_tail"]
        lines.append(f"{r['transfers']:>11,} | {f['restart_s']:>15.2f} {f['restart_cpu_s']:>6.2f} {f['peak_mb']:>7.0f} "
                     f"{f['rss_mb']:>6.0f} {f['tail_records']:>7} | {s['restart_s']:>16.2f} {s['restart_cpu_s']:>6.2f} "
                     f"{s['peak_mb']:>7.0f} {s['rss_mb']:>6.0f} {s['tail_records']:>7} | "
                     f"{r['generate']['snapshot_bytes'] / 2**20:>8.0f} | "
                     f"{s['restart_cpu_s'] / f['restart_cpu_s']:>9.2f} {s['rss_mb'] / f['rss_mb']:>9.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000,10000000", help="transfer counts, comma-separated")
    p.add_argument("--batch", type=int, default=10_000, help="transfers per entry (one store record each)")
    p.add_argument("--tail", type=int, default=50_000, help="transfers written after the snapshot")
    p.add_argument("--out", default="bench/results/restart.json")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        what, *args = a.child
        result = generate(args[0], int(args[1]), int(args[2]), int(args[3])) if what == "generate" \
            else restart(args[0])
        print(json.dumps(result))
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    workdir = tempfile.mkdtemp(prefix="restart-bench-")
    try:
        rows = run(sizes, a.batch, a.tail, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    result = {"bench": "restart", "batch": a.batch, "tail": a.tail, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()

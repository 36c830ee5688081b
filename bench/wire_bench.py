"""The wire codec against pickle: encode and decode time of typical peer frames.

`replication.wire` replaced pickle on peer links and region records (pickle runs code
from whoever wrote the bytes). This measures what that costs on the hot frames: a `Ship`
carrying one 1,000-row entry, and a 12-message `RaftBundle` (one step's AppendEntries to
a peer, with and without entries). Prints a table and writes `bench/results/wire.json`.

    python -m bench.wire_bench [--repeat 7] [--out bench/results/wire.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cext.layout import TRANSFER_DTYPE
from replication.log import Entry
from replication.messages import Ship
from replication.quorum import RaftBundle
from replication.raft import AppendEntries
from replication.wire import decode, encode


def _entry(seq: int, n: int, group: int = 0) -> Entry:
    rows = np.zeros(n, TRANSFER_DTYPE)
    rows["id_lo"] = np.arange(n) + seq * 100_000
    rows["debit_account_id_lo"] = 1 + np.arange(n) % 997
    rows["credit_account_id_lo"] = 2 + np.arange(n) % 991
    rows["amount_lo"] = 10_000
    rows["ledger"] = 156
    rows["code"] = 1
    rows["timestamp"] = 1_700_000_000_000_000_000 + np.arange(n)
    return Entry(1, seq, 3, 1_700_000_000_000_000_000, rows, group=group).seal()


def frames() -> dict[str, object]:
    return {
        "Ship, one 1,000-row entry": Ship(1, 1, [_entry(7, 1000)]),
        "RaftBundle, 12 AppendEntries of one 20-row entry": RaftBundle(
            [AppendEntries(1, 4, 100 + g, 4, [_entry(101 + g, 20, g)], 99 + g, g) for g in range(12)]),
        "RaftBundle, 12 heartbeats (no entries)": RaftBundle(
            [AppendEntries(1, 4, 100 + g, 4, [], 99 + g, g) for g in range(12)]),
    }


def _per_call_us(fn: Callable[[], object], repeat: int) -> float:
    """Best of `repeat` runs of enough calls to take ~50 ms: microseconds per call."""
    n, began = 1, time.perf_counter()
    while True:
        for _ in range(n):
            fn()
        if time.perf_counter() - began > 0.05:
            break
        n, began = n * 2, time.perf_counter()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def run(repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, obj in frames().items():
        wire_b, pickle_b = encode(obj), pickle.dumps(obj, protocol=5)
        assert type(decode(wire_b)) is type(obj)
        enc_w = _per_call_us(partial(encode, obj), repeat)
        enc_p = _per_call_us(partial(pickle.dumps, obj, protocol=5), repeat)
        dec_w = _per_call_us(partial(decode, wire_b), repeat)
        dec_p = _per_call_us(partial(pickle.loads, pickle_b), repeat)  # our own bytes, never a peer's
        rows.append({
            "frame": name, "wire_bytes": len(wire_b), "pickle_bytes": len(pickle_b),
            "wire_encode_us": enc_w, "pickle_encode_us": enc_p, "encode_ratio": enc_w / enc_p,
            "wire_decode_us": dec_w, "pickle_decode_us": dec_p, "decode_ratio": dec_w / dec_p,
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'frame':50} {'bytes wire/pickle':>18} {'encode us wire/pickle':>22} {'x':>5} "
            f"{'decode us wire/pickle':>22} {'x':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['frame']:50} {r['wire_bytes']:>8,}/{r['pickle_bytes']:<9,} "
            f"{r['wire_encode_us']:>10.1f}/{r['pickle_encode_us']:<11.1f} {r['encode_ratio']:>5.2f} "
            f"{r['wire_decode_us']:>10.1f}/{r['pickle_decode_us']:<11.1f} {r['decode_ratio']:>5.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per figure (the best is kept)")
    ap.add_argument("--out", default="bench/results/wire.json")
    args = ap.parse_args(argv)
    rows = run(args.repeat)
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                               "frames": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

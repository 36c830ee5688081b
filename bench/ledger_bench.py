"""The ledger benchmark: engine, durable API, the naive eventsourcing model, reopen time.

Every figure is measured in the same run on the same machine, so the ratios mean something
even when the machine is noisy. Results go to `bench/results/ledger.json`.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import cext
from ledger import Account, Ledger, Transfer, queries

BATCH = 8190
N_ACCOUNTS = 10_000


def _transfer_batches(n_batches: int, first_id: int = 1, seed: int = 7) -> list[list[Transfer]]:
    rng = np.random.default_rng(seed)
    batches = []
    tid = first_id
    for _ in range(n_batches):
        dr = rng.integers(1, N_ACCOUNTS + 1, BATCH).tolist()
        off = rng.integers(1, N_ACCOUNTS, BATCH).tolist()
        batch = []
        for d, o in zip(dr, off, strict=True):
            c = (d - 1 + o) % N_ACCOUNTS + 1
            batch.append(Transfer(id=tid, debit_account_id=d, credit_account_id=c, amount=100, ledger=1, code=1))
            tid += 1
        batches.append(batch)
    return batches


def _open_with_accounts(path: str) -> Ledger:
    return _with_accounts(Ledger.open(f"sqlite:///{path}"))


def _with_accounts(led: Ledger) -> Ledger:
    for start in range(1, N_ACCOUNTS + 1, BATCH):
        led.create_accounts(
            [Account(id=i, ledger=1, code=1) for i in range(start, min(start + BATCH, N_ACCOUNTS + 1))]
        )
    return led


def durable_sqlite(tmp: str, n_batches: int) -> float:
    """Transfers/s through `Ledger.create_transfers` with a durable SQLite commit per batch."""
    return _durable(_open_with_accounts(os.path.join(tmp, "durable.db")), n_batches)


DURABLE_COMMITLOG = ("batch", "group")
"""Cassandra commit-log modes that fsync a write's entry before acknowledging it. With
`periodic` (the test node's default: synced every 10 s) an acknowledged write can be lost
with the machine's power, so a figure measured on it is not a durable one."""


def durable_cassandra(n_batches: int) -> tuple[float, str] | None:
    """The same on one local Cassandra node, and how that node syncs its commit log (None
    when none answers on 127.0.0.1:9042). Only `DURABLE_COMMITLOG` modes make the figure a
    durable one (`scripts/cassandra start --durable`)."""
    try:
        socket.create_connection(("127.0.0.1", 9042), timeout=1.0).close()
    except OSError:
        return None
    keyspace = f"bench_{os.getpid()}"
    url = f"cassandra://127.0.0.1:9042/{keyspace}?dc=dc1&rf=1&consistency=LOCAL_QUORUM"
    try:
        return _durable(_with_accounts(Ledger.open(url)), n_batches), commitlog_sync()
    finally:
        from cassandra.cluster import Cluster

        cluster = Cluster(["127.0.0.1"], protocol_version=5)
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        cluster.shutdown()


def commitlog_sync() -> str:
    """The node's own word for how it syncs its commit log (`system_views.settings`), e.g.
    ``periodic 10000ms`` or ``group 2ms``; ``unknown`` if it will not say."""
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], protocol_version=5)
    try:
        rows = cluster.connect().execute(
            "SELECT name, value FROM system_views.settings WHERE name IN "
            "('commitlog_sync', 'commitlog_sync_period', 'commitlog_sync_group_window')", timeout=30)
        settings = {r.name: r.value for r in rows}
    except Exception:
        return "unknown"
    finally:
        cluster.shutdown()
    mode = settings.get("commitlog_sync") or "unknown"
    detail = settings.get({"periodic": "commitlog_sync_period", "group": "commitlog_sync_group_window"}.get(mode, ""))
    return f"{mode} {detail}" if detail else mode


def label_cassandra(out: dict[str, Any], measured: tuple[float, str] | None) -> None:
    """`cassandra_per_s` with its commit-log mode; `durable_cassandra_per_s` only when the
    node really syncs before acknowledging (otherwise None, and the table says why)."""
    figure, sync = measured if measured is not None else (None, None)
    out["cassandra_per_s"] = figure
    out["cassandra_commitlog_sync"] = sync
    out["cassandra_durable"] = sync is not None and sync.split()[0] in DURABLE_COMMITLOG
    out["durable_cassandra_per_s"] = figure if out["cassandra_durable"] else None


def _durable(led: Ledger, n_batches: int) -> float:
    batches = _transfer_batches(n_batches)
    start = time.perf_counter()
    for batch in batches:
        results = led.create_transfers(batch)
        assert not any(results)
    elapsed = time.perf_counter() - start
    led.close()
    return n_batches * BATCH / elapsed


def naive_eventsourcing(tmp: str, n_transfers: int) -> float:
    from bench.naive_es import naive_bank

    bank = naive_bank(os.path.join(tmp, "naive.db"))
    n_accounts = 1000
    for i in range(1, n_accounts + 1):
        bank.open_account(i)
    start = time.perf_counter()
    for i in range(n_transfers):
        bank.transfer(i + 1, 1 + i % n_accounts, 1 + (i * 7 + 1) % n_accounts, 100)
    elapsed = time.perf_counter() - start
    bank.close()
    return n_transfers / elapsed


def statements_per_s(led: Ledger, n: int = 200) -> tuple[float, float]:
    """Statement pages (100 transfers, newest first) per second for random accounts: through
    the ledger (its statement index, warmed by one call), and by scanning every transfer."""
    rng = np.random.default_rng(5)
    accounts = (rng.integers(1, N_ACCOUNTS + 1, n)).tolist()
    led.get_account_transfers(accounts[0])  # builds the index once
    start = time.perf_counter()
    indexed = [led.get_account_transfers(a, limit=100, reverse=True) for a in accounts]
    t_index = time.perf_counter() - start
    engine = led._engine  # the baseline: the same state, scanned without the index
    start = time.perf_counter()
    scanned = [queries.account_transfers(engine, a, limit=100, reverse=True) for a in accounts]
    t_scan = time.perf_counter() - start
    assert indexed == scanned
    return n / t_index, n / t_scan


def reopen(tmp: str, n_transfers: int) -> tuple[float, tuple[float, float]]:
    """Seconds to reopen a SQLite ledger holding `n_transfers` transfers; then statements/s
    on it (indexed, scanned)."""
    path = os.path.join(tmp, "reopen.db")
    led = _open_with_accounts(path)
    n_batches = max(1, n_transfers // BATCH)
    for batch in _transfer_batches(n_batches, first_id=1, seed=11):
        led.create_transfers(batch)
    digest = led.digest()
    led.close()
    start = time.perf_counter()
    again = Ledger.open(f"sqlite:///{path}")
    elapsed = time.perf_counter() - start
    assert again.digest() == digest
    statements = statements_per_s(again)
    again.close()
    return elapsed, statements


def run(quick: bool, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from bench.engine_bench import measure_engines

    out: dict[str, Any] = {
        "quick": quick,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "compiled_engine": cext.COMPILED,
        },
    }
    progress("engine: Cython vs pure-Python twin")
    out.update(measure_engines(quick=quick))
    with tempfile.TemporaryDirectory(prefix="geoledger-bench-") as tmp:
        progress("durable SQLite through the Ledger API")
        out["durable_sqlite_per_s"] = durable_sqlite(tmp, 4 if quick else 40)
        progress("durable Cassandra (one local node) through the Ledger API")
        label_cassandra(out, durable_cassandra(2 if quick else 10))
        progress("naive eventsourcing model (aggregate per account)")
        out["naive_eventsourcing_per_s"] = naive_eventsourcing(tmp, 300 if quick else 3000)
        n_reopen = 100_000 if quick else 1_000_000
        progress(f"reopen a SQLite ledger of {n_reopen:,} transfers")
        out["reopen_transfers"] = n_reopen
        out["reopen_s"], (out["statement_indexed_per_s"], out["statement_scan_per_s"]) = reopen(tmp, n_reopen)
        if not quick:
            out["reopen_1m_s"] = out["reopen_s"]
    out["ratios"] = {
        "cython_over_twin": out["cython_apply_per_s"] / out["python_twin_apply_per_s"],
        "durable_over_naive": out["durable_sqlite_per_s"] / out["naive_eventsourcing_per_s"],
        "statement_index_over_scan": out["statement_indexed_per_s"] / out["statement_scan_per_s"],
    }
    return out


def write(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

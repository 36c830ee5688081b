"""Engine microbenchmark: the compiled engine and codec against their Python twins.

`measure_engines` applies simple single-phase transfers between `n_accounts` accounts in
batches of `batch` (TigerBeetle's 8190), calling `expire_pending` before each batch as the
ledger does, and packs the same kind of batch from objects with both codecs. All figures
come from the same run, so the ratios hold even on a noisy machine.

Two Cython figures are reported. A fresh engine appending 2M transfers touches ~400 MB it
never touched before, and on a VM the first touch of memory new to the process costs far
more than the engine (page provisioning by the host: ~0.4 s per 256 MB measured here).
So the engine is measured on a *warm* process: one untimed pass of the same size first
(`cython_apply_per_s`, best of the timed runs); the first, cold pass is reported too
(`cython_apply_cold_per_s`) for what a short-lived process sees.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cext.codec_py import accounts_to_rows as twin_accounts_to_rows
from cext.codec_py import transfers_to_rows as twin_transfers_to_rows
from cext.engine_py import PyEngine
from cext.layout import TRANSFER_DTYPE
from ledger.types import Account, Transfer

NS_PER_S = 1_000_000_000


def _transfer_batches(n_accounts: int, n_transfers: int, batch: int, seed: int) -> list[np.ndarray]:
    """Rows of single-phase transfers: fresh ids, random distinct accounts, amount 100."""
    rng = np.random.default_rng(seed)
    batches = []
    next_id = 1
    for start in range(0, n_transfers, batch):
        n = min(batch, n_transfers - start)
        rows = np.zeros(n, TRANSFER_DTYPE)
        dr = rng.integers(1, n_accounts + 1, n)
        rows["id_lo"] = np.arange(next_id, next_id + n)
        rows["debit_account_id_lo"] = dr
        rows["credit_account_id_lo"] = (dr - 1 + rng.integers(1, n_accounts, n)) % n_accounts + 1
        rows["amount_lo"] = 100
        rows["ledger"] = 1
        rows["code"] = 1
        next_id += n
        batches.append(rows)
    return batches


def _engine_with_accounts(engine_cls: Callable[[], Any], n_accounts: int) -> tuple[Any, int]:
    engine = engine_cls()
    rows = twin_accounts_to_rows([Account(id=i, ledger=1, code=1) for i in range(1, n_accounts + 1)])
    results = engine.create_accounts(rows, np.arange(1, n_accounts + 1, dtype=np.uint64))
    assert not results.any(), "account setup failed"
    return engine, n_accounts + 1


def _apply_rate(engine_cls: Callable[[], Any], n_accounts: int, batches: list[np.ndarray]) -> float:
    """Transfers/s for `batches` applied to a fresh engine (setup not timed)."""
    engine, now = _engine_with_accounts(engine_cls, n_accounts)
    stamps = []
    for rows in batches:
        stamps.append(np.arange(now, now + len(rows), dtype=np.uint64))
        now += len(rows) + NS_PER_S
    gc.collect()
    start = time.perf_counter()
    for rows, ts in zip(batches, stamps, strict=True):
        engine.expire_pending(int(ts[0]))
        results = engine.create_transfers(rows, ts)
        if results.any():
            raise AssertionError(f"benchmark transfers failed: {np.unique(results)}")
    elapsed = time.perf_counter() - start
    count = sum(len(rows) for rows in batches)
    del engine
    gc.collect()
    return count / elapsed


def _pack_rate(pack: Callable[[list[Transfer]], np.ndarray], transfers: list[Transfer], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        pack(transfers)
    return repeats * len(transfers) / (time.perf_counter() - start)


def measure_engines(
    n_accounts: int = 10_000,
    n_transfers: int | None = None,
    batch: int = 8190,
    quick: bool = False,
) -> dict[str, Any]:
    """Apply and pack rates of the compiled engine/codec and their twins, in one run.

    `n_transfers` (default: 40 batches quick, 250 full) is what the compiled engine applies
    per timed run; the twin applies far fewer (its rate does not depend on the count).
    Raises ImportError if the extensions are not built.
    """
    from cext._codec import transfers_to_rows as compiled_transfers_to_rows
    from cext._engine import CyEngine

    if n_transfers is None:
        n_transfers = batch * (40 if quick else 250)
    runs = 2 if quick else 3
    batches = _transfer_batches(n_accounts, n_transfers, batch, seed=11)

    cold = _apply_rate(CyEngine, n_accounts, batches)
    warm = [_apply_rate(CyEngine, n_accounts, batches) for _ in range(runs)]
    cython_rate = max(warm)

    twin_batches = _transfer_batches(n_accounts, batch * (1 if quick else 3), batch, seed=12)
    twin_rate = _apply_rate(PyEngine, n_accounts, twin_batches)

    objects = [
        Transfer(id=i, debit_account_id=1 + i % n_accounts, credit_account_id=1 + (i + 1) % n_accounts,
                 amount=100, ledger=1, code=1)
        for i in range(1, batch + 1)
    ]
    codec_rate = _pack_rate(compiled_transfers_to_rows, objects, 20 if quick else 100)
    codec_twin_rate = _pack_rate(twin_transfers_to_rows, objects, 2 if quick else 5)

    return {
        "n_accounts": n_accounts,
        "batch": batch,
        "cython_transfers": n_transfers,
        "python_twin_transfers": sum(len(b) for b in twin_batches),
        "cython_apply_per_s": cython_rate,
        "cython_apply_cold_per_s": cold,
        "cython_apply_runs_per_s": warm,
        "python_twin_apply_per_s": twin_rate,
        "cython_vs_twin": cython_rate / twin_rate,
        "codec_pack_per_s": codec_rate,
        "codec_twin_pack_per_s": codec_twin_rate,
        "codec_vs_twin": codec_rate / codec_twin_rate,
    }

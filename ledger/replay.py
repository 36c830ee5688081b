"""Committed batches and how an engine re-applies them: replay, audit, point-in-time reads.

A batch is what one `create_accounts`/`create_transfers` call (or one run of the expiry
timer) committed: the accepted rows as the engine stored them, the expiry sweep that ran
first, and the ids of transfers that failed with a transient result. Re-applying every
batch in order to an empty engine rebuilds the ledger exactly; anything else is a corrupt
store, named by the batch where the replay first disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cext.layout import ACCOUNT_DTYPE, FAILED_DTYPE, TRANSFER_DTYPE
from ledger.errors import CorruptStoreError
from ledger.journal import KIND_ACCOUNTS
from ledger.types import AccountFlags, TransferFlags


@dataclass(frozen=True)
class CommittedBatch:
    """One recorded batch, as replicas and auditors see it.

    `expired_at` is the ledger time of the expiry sweep that ran before the rows (0: none)
    and `expired` the ids of the pending transfers it expired (16 bytes each, u128 little
    endian); `failed` holds the ids of transfers that failed with a transient result.
    """

    version: int
    kind: int
    rows: bytes
    expired_at: int
    last_timestamp: int
    prev_hash: bytes
    hash: bytes
    expired: bytes = b""
    failed: bytes = b""


def id_rows(ids: np.ndarray | bytes) -> np.ndarray:
    """Ids as FAILED_DTYPE rows (two u64 words each), from bytes or rows with id fields."""
    if isinstance(ids, bytes | bytearray | memoryview):
        if len(ids) % FAILED_DTYPE.itemsize:
            raise ValueError("id payload has a partial id")
        return np.frombuffer(ids, FAILED_DTYPE)
    out = np.zeros(len(ids), FAILED_DTYPE)
    out["id_lo"], out["id_hi"] = ids["id_lo"], ids["id_hi"]
    return out


def expired_ids(engine: Any) -> bytes:
    """The ids of the transfers the engine's last expiry sweep expired, as batch bytes."""
    return id_rows(engine.transfers[engine.last_expired]).tobytes()


def is_imported(rows: np.ndarray, kind: int) -> bool:
    """Whether a batch's rows are an import (the first row decides, as TigerBeetle's)."""
    flag = AccountFlags.IMPORTED if kind == KIND_ACCOUNTS else TransferFlags.IMPORTED
    return bool(len(rows)) and bool(int(rows[0]["flags"]) & flag)


def event_times(rows: np.ndarray, kind: int, last_timestamp: int) -> np.ndarray:
    """The ledger times the engine must see for a batch's rows: their own timestamps, or for
    an import the batch's last timestamp (the "now" the imported ones had to precede)."""
    if is_imported(rows, kind):
        return np.full(len(rows), last_timestamp, np.uint64)
    return rows["timestamp"].copy()


def apply_batch(engine: Any, batch: CommittedBatch, until: int | None = None) -> None:
    """Re-apply a recorded batch (replay, replicas); every row must succeed again, and the
    expiry sweep expire the same transfers, or the log is corrupt.

    With `until`, only what had happened by that ledger time is applied (a point-in-time
    read): rows stamped later are left out, and rows that no longer apply without them
    (the head of a linked chain cut by `until`) are skipped rather than reported.
    """
    dtype = ACCOUNT_DTYPE if batch.kind == KIND_ACCOUNTS else TRANSFER_DTYPE
    if len(batch.rows) % dtype.itemsize:
        raise CorruptStoreError("row payload has a partial row", batch=batch.version)
    rows = np.frombuffer(batch.rows, dtype)
    if until is not None:
        rows = rows[rows["timestamp"] <= until]
    times = event_times(rows, batch.kind, batch.last_timestamp)
    if batch.kind == KIND_ACCOUNTS:
        results = engine.create_accounts(rows, times)
    else:
        if batch.expired_at and (until is None or batch.expired_at <= until):
            limit = -1 if until is None else until - batch.expired_at + 1
            engine.expire_pending(batch.expired_at, limit)
            if until is None and batch.expired and expired_ids(engine) != batch.expired:
                raise CorruptStoreError("the expiry sweep no longer expires what it did", batch=batch.version)
        results = engine.create_transfers(rows, times)
        if batch.failed:
            try:
                engine.remember_failed(id_rows(batch.failed))
            except ValueError:
                raise CorruptStoreError("failed-id payload has a partial id", batch=batch.version) from None
    if results.any() and until is None:
        bad = int(np.nonzero(results)[0][0])
        raise CorruptStoreError(
            f"row {bad} no longer applies (result {int(results[bad])})", batch=batch.version
        )


__all__ = ["CommittedBatch", "apply_batch", "event_times", "expired_ids", "id_rows", "is_imported"]

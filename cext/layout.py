"""Columnar row layouts shared by the Cython engine, its Python twin and the batch codec.

Rows are TigerBeetle's 128-byte account and transfer layouts, little-endian, with each u128
split into two u64 words (`_lo`, `_hi`) because numpy has no 128-bit integer. The same
bytes are the event payload, so encoding a batch for the store is a `tobytes()`.
"""

from __future__ import annotations

import numpy as np

M64 = (1 << 64) - 1


def _u128(name: str) -> list[tuple[str, str]]:
    return [(f"{name}_lo", "<u8"), (f"{name}_hi", "<u8")]


ACCOUNT_DTYPE = np.dtype(
    _u128("id")
    + _u128("debits_pending")
    + _u128("debits_posted")
    + _u128("credits_pending")
    + _u128("credits_posted")
    + _u128("user_data_128")
    + [
        ("user_data_64", "<u8"),
        ("user_data_32", "<u4"),
        ("reserved", "<u4"),
        ("ledger", "<u4"),
        ("code", "<u2"),
        ("flags", "<u2"),
        ("timestamp", "<u8"),
    ]
)

TRANSFER_DTYPE = np.dtype(
    _u128("id")
    + _u128("debit_account_id")
    + _u128("credit_account_id")
    + _u128("amount")
    + _u128("pending_id")
    + _u128("user_data_128")
    + [
        ("user_data_64", "<u8"),
        ("user_data_32", "<u4"),
        ("timeout", "<u4"),
        ("ledger", "<u4"),
        ("code", "<u2"),
        ("flags", "<u2"),
        ("timestamp", "<u8"),
    ]
)

# Per committed transfer, what the engine derives and keeps beside the row.
META_DTYPE = np.dtype(
    [
        ("debit_slot", "<u4"),
        ("credit_slot", "<u4"),
        ("expires_at", "<u8"),  # 0: never (not pending, or no timeout)
        ("status", "u1"),  # TransferStatus
        ("pad", "u1", (7,)),
    ]
)

HISTORY_DTYPE = np.dtype(
    _u128("account_id")
    + [("timestamp", "<u8")]
    + _u128("debits_pending")
    + _u128("debits_posted")
    + _u128("credits_pending")
    + _u128("credits_posted")
)

# The ids of transfers that failed with a transient result (ID_ALREADY_FAILED from then on).
FAILED_DTYPE = np.dtype(_u128("id"))

assert ACCOUNT_DTYPE.itemsize == 128
assert TRANSFER_DTYPE.itemsize == 128
assert META_DTYPE.itemsize == 24
assert HISTORY_DTYPE.itemsize == 88
assert FAILED_DTYPE.itemsize == 16

# TransferStatus values in META_DTYPE.status.
STATUS_NONE = 0  # single-phase, post or void transfers
STATUS_PENDING = 1
STATUS_POSTED = 2
STATUS_VOIDED = 3
STATUS_EXPIRED = 4


def split(value: int) -> tuple[int, int]:
    return value & M64, value >> 64


def join(lo: int, hi: int) -> int:
    return (int(hi) << 64) | int(lo)

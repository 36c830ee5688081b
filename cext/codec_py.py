"""Batch codec, pure-Python twin: API objects <-> columnar rows (the event payload).

The objects were validated when constructed (`ledger.types`), so packing only splits
u128 values into two u64 words. The rows' bytes are what a committed batch stores. An
object without a `timestamp` attribute packs a zero timestamp (the ledger stamps it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cext.layout import ACCOUNT_DTYPE, M64, TRANSFER_DTYPE, join
from ledger.types import (
    Account,
    AccountFlags,
    AccountState,
    Transfer,
    TransferFlags,
    TransferPendingStatus,
    TransferState,
)


def transfers_to_rows(transfers: Sequence[Transfer]) -> np.ndarray:
    return np.array(
        [
            (
                t.id & M64, t.id >> 64,
                t.debit_account_id & M64, t.debit_account_id >> 64,
                t.credit_account_id & M64, t.credit_account_id >> 64,
                t.amount & M64, t.amount >> 64,
                t.pending_id & M64, t.pending_id >> 64,
                t.user_data_128 & M64, t.user_data_128 >> 64,
                t.user_data_64, t.user_data_32, t.timeout, t.ledger, t.code, int(t.flags),
                getattr(t, "timestamp", 0),
            )
            for t in transfers
        ],
        TRANSFER_DTYPE,
    )


def accounts_to_rows(accounts: Sequence[Account]) -> np.ndarray:
    return np.array(
        [
            (
                a.id & M64, a.id >> 64, 0, 0, 0, 0, 0, 0, 0, 0,
                a.user_data_128 & M64, a.user_data_128 >> 64,
                a.user_data_64, a.user_data_32, 0, a.ledger, a.code, int(a.flags),
                getattr(a, "timestamp", 0),
            )
            for a in accounts
        ],
        ACCOUNT_DTYPE,
    )


_PENDING_STATUS = tuple(TransferPendingStatus)  # by value: 0..4, cheaper than the enum's call


def row_to_transfer(row: np.void, status: int = 0) -> TransferState:
    """The transfer in `row`; `status` is its pending status from the engine's meta row."""
    v = row.item()
    return TransferState(
        id=join(v[0], v[1]),
        debit_account_id=join(v[2], v[3]),
        credit_account_id=join(v[4], v[5]),
        amount=join(v[6], v[7]),
        pending_id=join(v[8], v[9]),
        user_data_128=join(v[10], v[11]),
        user_data_64=v[12],
        user_data_32=v[13],
        timeout=v[14],
        ledger=v[15],
        code=v[16],
        flags=TransferFlags(v[17]),
        timestamp=v[18],
        pending_status=_PENDING_STATUS[status],
    )


def row_to_account(row: np.void) -> AccountState:
    v = row.item()
    return AccountState(
        id=join(v[0], v[1]),
        debits_pending=join(v[2], v[3]),
        debits_posted=join(v[4], v[5]),
        credits_pending=join(v[6], v[7]),
        credits_posted=join(v[8], v[9]),
        user_data_128=join(v[10], v[11]),
        user_data_64=v[12],
        user_data_32=v[13],
        ledger=v[15],
        code=v[16],
        flags=AccountFlags(v[17]),
        timestamp=v[18],
    )

"""Read queries over an engine's columnar state, shared by `Ledger` and region gateways.

They take an engine (anything with the `cext.Engine` views) so that a region node's local
replica answers statements exactly as a standalone ledger does. Callers validate input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.codec import row_to_account, row_to_transfer
from cext.layout import join
from ledger.types import AccountBalance, AccountState, TransferState

M64 = (1 << 64) - 1


def lookup_accounts(engine: Any, ids: list[int]) -> list[AccountState]:
    slots = [engine.account_slot(i) for i in ids]
    accounts = engine.accounts
    return [row_to_account(accounts[s]) for s in slots if s >= 0]


def lookup_transfers(engine: Any, ids: list[int]) -> list[TransferState]:
    slots = [engine.transfer_slot(i) for i in ids]
    transfers = engine.transfers
    return [row_to_transfer(transfers[s]) for s in slots if s >= 0]


def _time_window(timestamps: np.ndarray, lo: int, hi: int) -> np.ndarray:
    mask = timestamps >= np.uint64(lo)
    if hi:
        mask &= timestamps <= np.uint64(hi)
    return mask


def _page(found: np.ndarray, limit: int, reverse: bool) -> np.ndarray:
    return found[::-1][:limit] if reverse else found[:limit]


def account_transfers(
    engine: Any,
    account_id: int,
    *,
    limit: int = 100,
    reverse: bool = False,
    timestamp_min: int = 0,
    timestamp_max: int = 0,
    debits: bool = True,
    credits: bool = True,
) -> list[TransferState]:
    """An account's statement page, in timestamp order (TigerBeetle's AccountFilter)."""
    slot = engine.account_slot(account_id)
    if slot < 0:
        return []
    meta, transfers = engine.meta, engine.transfers
    mask = np.zeros(len(meta), bool)
    if debits:
        mask |= meta["debit_slot"] == slot
    if credits:
        mask |= meta["credit_slot"] == slot
    found = np.nonzero(mask)[0]
    if timestamp_min or timestamp_max:  # on the account's few rows, not every transfer's
        found = found[_time_window(transfers["timestamp"][found], timestamp_min, timestamp_max)]
    return [row_to_transfer(transfers[s]) for s in _page(found, limit, reverse)]


def account_balances(
    engine: Any,
    account_id: int,
    *,
    limit: int = 100,
    reverse: bool = False,
    timestamp_min: int = 0,
    timestamp_max: int = 0,
) -> list[AccountBalance]:
    """Balances after each transfer of a `HISTORY` account (empty for other accounts)."""
    history = engine.history
    mask = (history["account_id_lo"] == account_id & M64) & (history["account_id_hi"] == account_id >> 64)
    mask &= _time_window(history["timestamp"], timestamp_min, timestamp_max)
    return [
        AccountBalance(
            timestamp=int(h["timestamp"]),
            debits_pending=join(h["debits_pending_lo"], h["debits_pending_hi"]),
            debits_posted=join(h["debits_posted_lo"], h["debits_posted_hi"]),
            credits_pending=join(h["credits_pending_lo"], h["credits_pending_hi"]),
            credits_posted=join(h["credits_posted_lo"], h["credits_posted_hi"]),
        )
        for h in history[_page(np.nonzero(mask)[0], limit, reverse)]
    ]

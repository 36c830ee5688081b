"""Read queries over an engine's columnar state, shared by `Ledger` and region gateways.

They take an engine (anything with the `cext.Engine` views) so that a region node's local
replica answers statements exactly as a standalone ledger does. Callers validate input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.codec import row_to_account, row_to_transfer
from cext.layout import join
from ledger.query_index import RowCursor
from ledger.types import AccountBalance, AccountState, TransferState

M64 = (1 << 64) - 1


def lookup_accounts(engine: Any, ids: list[int]) -> list[AccountState]:
    slots = [engine.account_slot(i) for i in ids]
    accounts = engine.accounts
    return [row_to_account(accounts[s]) for s in slots if s >= 0]


def lookup_transfers(engine: Any, ids: list[int]) -> list[TransferState]:
    slots = [engine.transfer_slot(i) for i in ids]
    return transfers_at(engine, [s for s in slots if s >= 0])


def transfers_at(engine: Any, slots: Any) -> list[TransferState]:
    """The transfers in these slots, each with its pending status from the engine."""
    slots = np.asarray(slots, np.int64)
    if not len(slots):
        return []
    transfers = engine.transfers
    statuses = engine.meta["status"][slots].tolist()  # one gather, not a numpy scalar per row
    return [row_to_transfer(transfers[s], st) for s, st in zip(slots.tolist(), statuses, strict=True)]


def accounts_at(engine: Any, slots: Any) -> list[AccountState]:
    accounts = engine.accounts
    return [row_to_account(accounts[s]) for s in slots]


def _time_window(timestamps: np.ndarray, lo: int, hi: int) -> np.ndarray:
    mask = timestamps >= np.uint64(lo)
    if hi:
        mask &= timestamps <= np.uint64(hi)
    return mask


def _page(found: np.ndarray, limit: int, reverse: bool) -> np.ndarray:
    return found[::-1][:limit] if reverse else found[:limit]


class StatementIndex:
    """Transfer slots per account slot, so that a statement costs its account's transfers,
    not a scan of every transfer in the ledger (which grew with the ledger and, under load,
    took more of a gateway's CPU than the payments it served).

    Built lazily and extended with the transfers appended since the last call; when a
    failed linked chain or a replica's rollback shrinks the engine or a reload swaps it,
    `RowCursor` tells, and the index is rebuilt.
    """

    def __init__(self) -> None:
        self._cursor = RowCursor("transfers")
        self._slots: dict[int, list[np.ndarray]] = {}

    def slots(self, engine: Any, account_slot: int) -> np.ndarray:
        """Slots of the transfers debiting or crediting `account_slot`, ascending."""
        self._catch_up(engine)
        parts = self._slots.get(account_slot)
        if not parts:
            return np.zeros(0, np.int64)
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]

    def _catch_up(self, engine: Any) -> None:
        start, n, reset = self._cursor.advance(engine)
        if reset:
            self._slots = {}
        if start == n:
            return
        meta = engine.meta[start:n]
        new = np.arange(start, n, dtype=np.int64)
        accounts = np.concatenate((meta["debit_slot"].astype(np.int64), meta["credit_slot"].astype(np.int64)))
        slots = np.concatenate((new, new))
        order = np.lexsort((slots, accounts))
        accounts, slots = accounts[order], slots[order]
        cuts = np.flatnonzero(np.diff(accounts)) + 1
        for a, chunk in zip(accounts[np.concatenate(([0], cuts))].tolist(), np.split(slots, cuts), strict=True):
            self._slots.setdefault(a, []).append(chunk)


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
    index: StatementIndex | None = None,
    user_data_128: int = 0,
    user_data_64: int = 0,
    user_data_32: int = 0,
    code: int = 0,
) -> list[TransferState]:
    """An account's statement page, in timestamp order (TigerBeetle's AccountFilter; its
    user_data and code fields filter when non-zero). With an `index` the cost is the
    account's transfers; without, a scan of all of them."""
    slot = engine.account_slot(account_id)
    if slot < 0:
        return []
    meta, transfers = engine.meta, engine.transfers
    if index is not None:
        found = index.slots(engine, slot)
        if not (debits and credits):
            side = meta["debit_slot" if debits else "credit_slot"][found] == slot
            found = found[side] if (debits or credits) else found[:0]
    else:
        mask = np.zeros(len(meta), bool)
        if debits:
            mask |= meta["debit_slot"] == slot
        if credits:
            mask |= meta["credit_slot"] == slot
        found = np.nonzero(mask)[0]
    if timestamp_min or timestamp_max:  # on the account's few rows, not every transfer's
        found = found[_time_window(transfers["timestamp"][found], timestamp_min, timestamp_max)]
    for name, value in (("user_data_64", user_data_64), ("user_data_32", user_data_32), ("code", code)):
        if value:
            found = found[transfers[name][found] == value]
    if user_data_128:
        found = found[(transfers["user_data_128_lo"][found] == user_data_128 & M64)
                      & (transfers["user_data_128_hi"][found] == user_data_128 >> 64)]
    return transfers_at(engine, _page(found, limit, reverse))


def account_balances(
    engine: Any,
    account_id: int,
    *,
    limit: int = 100,
    reverse: bool = False,
    timestamp_min: int = 0,
    timestamp_max: int = 0,
) -> list[AccountBalance]:
    """Balances after each transfer and expiry of a `HISTORY` account, in time order (empty
    for other accounts). Rows are kept in the order the events were applied, which is time
    order except after an import back-filled events earlier than an expiry; hence the sort."""
    history = engine.history
    mask = (history["account_id_lo"] == account_id & M64) & (history["account_id_hi"] == account_id >> 64)
    mask &= _time_window(history["timestamp"], timestamp_min, timestamp_max)
    found = np.nonzero(mask)[0]
    found = found[np.argsort(history["timestamp"][found], kind="stable")]
    return [
        AccountBalance(
            timestamp=int(h["timestamp"]),
            debits_pending=join(h["debits_pending_lo"], h["debits_pending_hi"]),
            debits_posted=join(h["debits_posted_lo"], h["debits_posted_hi"]),
            credits_pending=join(h["credits_pending_lo"], h["credits_pending_hi"]),
            credits_posted=join(h["credits_posted_lo"], h["credits_posted_hi"]),
        )
        for h in history[_page(found, limit, reverse)]
    ]

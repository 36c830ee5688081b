"""Slices of an engine's state by unit: the snapshots of the quorum mode's per-unit logs.

Every region's engine holds every unit, but in the quorum mode each unit (or group of
units) is its own Raft log, compacted on its own schedule. So a log's snapshot must hold
*its* units' part of the books and nothing else: their accounts with balances, the
transfers debiting them (a credit leg debits the credit unit's transit account, so every
transfer belongs to exactly one unit), those transfers' metadata and the accounts' balance
history. Installing one replaces exactly that part and keeps the rest, which other logs own
and may have applied further.

The merge rests on one fact, checked rather than assumed: account slots are the same on
every replica (all accounts exist from genesis, created in one order), so the slots the
transfers' metadata names stay valid across the merge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.engine_py import pack_snapshot, parse_snapshot
from replication.accounts import AccountMap


def _masks(acc: np.ndarray, meta: np.ndarray, hist: np.ndarray, amap: AccountMap,
           units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which accounts, transfers and history rows belong to `units`."""
    acc_in = np.isin(amap.units_of(acc["id_lo"]), units)
    tr_in = acc_in[meta["debit_slot"].astype(np.int64)]
    hist_in = np.isin(amap.units_of(hist["account_id_lo"]), units)
    return acc_in, tr_in, hist_in


def export_units(engine: Any, amap: AccountMap, units: np.ndarray) -> bytes:
    """The part of the engine's state that belongs to `units`, in the engine's snapshot format."""
    acc, tr, meta, hist = engine.accounts, engine.transfers, engine.meta, engine.history
    acc_in, tr_in, hist_in = _masks(acc, meta, hist, amap, units)
    return pack_snapshot(acc[acc_in], tr[tr_in], meta[tr_in], hist[hist_in])


def install_units(engine: Any, amap: AccountMap, units: np.ndarray, data: bytes) -> None:
    """Replace the engine's part for `units` with a slice from `export_units`; the rest stays.
    Raises ValueError (and changes nothing) if the slice is not one of these units'."""
    acc, tr, meta, hist = engine.accounts, engine.transfers, engine.meta, engine.history
    _, _, _, (s_acc, s_tr, s_meta, s_hist) = parse_snapshot(data)
    acc_in, tr_in, hist_in = _masks(acc, meta, hist, amap, units)
    if not (np.array_equal(acc["id_lo"][acc_in], s_acc["id_lo"])
            and np.array_equal(acc["id_hi"][acc_in], s_acc["id_hi"])):
        raise ValueError("unit snapshot: its accounts are not these units' accounts, in this replica's order")
    _, s_tr_in, s_hist_in = _masks(acc, s_meta, s_hist, amap, units)
    if not (s_tr_in.all() and s_hist_in.all()):
        raise ValueError("unit snapshot: it holds transfers or history of other units")
    merged = acc.copy()
    merged[acc_in] = s_acc
    engine.restore(pack_snapshot(merged, np.concatenate([tr[~tr_in], s_tr]), np.concatenate([meta[~tr_in], s_meta]),
                         np.concatenate([hist[~hist_in], s_hist])))


__all__ = ["export_units", "install_units"]

"""Σ of each balance column per ledger (currency): the double-entry check, exact.

Kept apart from the `Ledger` application so that the replication layer and the
simulator's checkers can check conservation on raw engine rows without loading it.
"""

from __future__ import annotations

import numpy as np

BALANCE_NAMES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def exact_sum(words: np.ndarray) -> int:
    """Σ of uint64 words, exact: summed as 32-bit halves so nothing wraps (< 2^32 rows)."""
    w = words.astype(np.uint64, copy=False)
    low = int((w & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    high = int((w >> np.uint64(32)).sum(dtype=np.uint64))
    return low + (high << 32)


def ledger_totals(accounts: np.ndarray) -> dict[int, dict[str, int]]:
    """Σ of each balance column per ledger (currency), exact (u128 lo/hi words)."""
    totals: dict[int, dict[str, int]] = {}
    for ledger_id in np.unique(accounts["ledger"]).tolist():
        sel = accounts[accounts["ledger"] == ledger_id]
        totals[ledger_id] = {
            name: exact_sum(sel[f"{name}_lo"]) + (exact_sum(sel[f"{name}_hi"]) << 64) for name in BALANCE_NAMES
        }
    return totals


def unbalanced(accounts: np.ndarray) -> dict[int, dict[str, int]]:
    """The ledgers whose debits and credits differ (posted or pending): empty when the books balance."""
    return {lid: t for lid, t in ledger_totals(accounts).items()
            if t["debits_posted"] != t["credits_posted"] or t["debits_pending"] != t["credits_pending"]}


__all__ = ["BALANCE_NAMES", "exact_sum", "ledger_totals", "unbalanced"]

"""The bank's rules for a client row, checked where the row enters a region, before any
writer sees it; and linked-chain atomicity for rows refused on the way.

A client (a library caller, an HTTP caller, a simulated or hostile workload) may send any
u128 in any field. Whatever it sends, it can never:

* use an id in the bank's reserved range (credit legs, genesis: `replication.ids`) —
  `ID_IN_RESERVED_RANGE`;
* name a bank-internal account (a unit's fund or transit account) as debit or credit —
  `ACCOUNT_IS_BANK_INTERNAL`;
* send an id that names no unit of the run — `ID_MUST_NAME_ITS_UNIT` (the unit is how the
  id's one writer is found: `replication.ids`);
* link rows whose ids name different units into one chain — a chain is applied by one
  writer at once, or not at all (`LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT`).

The ids 0 and 2^128-1 get TigerBeetle's own answers (`ID_MUST_NOT_BE_ZERO`,
`ID_MUST_NOT_BE_INT_MAX`), as they come first in its order of checks. A row refused here,
or by its writer, fails its whole linked chain: the refused row keeps its own code and
the others get `LINKED_EVENT_FAILED`, as in TigerBeetle.
"""

from __future__ import annotations

import numpy as np

from ledger.types import CreateTransferResult, TransferFlags
from replication.accounts import AccountMap
from replication.ids import id_units, reserved
from replication.outcomes import (
    ACCOUNT_IS_BANK_INTERNAL,
    ID_IN_RESERVED_RANGE,
    ID_MUST_NAME_ITS_UNIT,
    LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT,
)

DEFENCES = {"reserved_ids": True, "bank_accounts": True, "id_units": True, "chains": True, "u128": True}
"""Test-only switches: each defence can be turned off to show that, without it, a run's
verdict fails on the invariant it protects (a checker that cannot fail is no checker).
Nothing but the tests changes them."""

_LINKED = int(TransferFlags.LINKED)
_LINKED_FAILED = int(CreateTransferResult.LINKED_EVENT_FAILED)
_ID_ZERO = int(CreateTransferResult.ID_MUST_NOT_BE_ZERO)
_ID_MAX = int(CreateTransferResult.ID_MUST_NOT_BE_INT_MAX)
_U64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def chains(rows: np.ndarray) -> np.ndarray:
    """The chain each row belongs to (a row linked to the next shares its chain)."""
    if not len(rows):
        return np.zeros(0, np.int64)
    starts = np.ones(len(rows), bool)
    starts[1:] = (rows["flags"][:-1] & _LINKED) == 0
    return np.cumsum(starts) - 1


def fail_chains(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`codes` (0 = not refused) with every other row of a refused row's chain failed too."""
    failed = codes != 0
    if not failed.any() or not (rows["flags"] & _LINKED).any():
        return codes
    chain = chains(rows)
    hit = np.isin(chain, chain[failed])
    out = codes.copy()
    out[hit & ~failed] = _LINKED_FAILED
    return out


def screen(rows: np.ndarray, amap: AccountMap) -> tuple[np.ndarray, np.ndarray]:
    """(refusal code per row, 0 for a row that passes; the unit each row's id names, -1 if none)."""
    codes = np.zeros(len(rows), np.uint32)
    if not len(rows):
        return codes, np.zeros(0, np.int64)
    lo, hi = rows["id_lo"], rows["id_hi"]
    if DEFENCES["id_units"]:
        units = id_units(hi)
        codes[(units < 0) | (units >= amap.n_units)] = ID_MUST_NAME_ITS_UNIT
    else:  # as before ids named units: written by the debit account's unit, whatever the id
        units = amap.units_of(rows["debit_account_id_lo"], rows["debit_account_id_hi"])
    if DEFENCES["bank_accounts"]:
        bank = (amap.bank(rows["debit_account_id_lo"], rows["debit_account_id_hi"])
                | amap.bank(rows["credit_account_id_lo"], rows["credit_account_id_hi"]))
        codes[bank] = ACCOUNT_IS_BANK_INTERNAL
    if DEFENCES["reserved_ids"]:
        codes[reserved(hi)] = ID_IN_RESERVED_RANGE
    codes[(lo == 0) & (hi == 0)] = _ID_ZERO
    codes[(lo == _U64) & (hi == _U64)] = _ID_MAX
    chain = chains(rows)
    if DEFENCES["chains"] and len(np.unique(chain)) < len(rows):  # some chain has several rows: one unit each
        for c in np.unique(chain[np.r_[False, chain[1:] == chain[:-1]]]).tolist():
            sel = chain == c
            if len(np.unique(units[sel])) > 1:
                codes[sel & (codes == 0)] = LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT
    return fail_chains(codes, rows), units


def writer_units(rows: np.ndarray, amap: AccountMap) -> np.ndarray:
    """The unit whose writer writes each row: the one its id names (`replication.ids`)."""
    if DEFENCES["id_units"]:
        return id_units(rows["id_hi"])
    return amap.units_of(rows["debit_account_id_lo"], rows["debit_account_id_hi"])


__all__ = ["DEFENCES", "chains", "fail_chains", "screen", "writer_units"]

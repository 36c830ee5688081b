"""The account and transfer-id scheme the replicated ledger relies on.

Units (shards) own accounts. Every unit has two bank-internal accounts: a *fund*
account that issued the customers' opening balances, and a *transit* account that holds
money between the two legs of a cross-unit transfer. Customers are `1..n_customers`;
bank accounts live above `BANK_BASE` so that their unit is readable from the id itself.

A cross-unit transfer `T` is two engine transfers with the same client id space:
the debit leg `T` (customer -> transit of the debit unit) and the credit leg
`T | CREDIT_BIT` (transit of the credit unit -> customer). The credit leg's id is
derived, so re-sending it is idempotent (`EXISTS`), which is what makes "credit applied
exactly once" hold under retries, duplication and failover. The transfer-id scheme
itself (reserved ranges, the unit an id names) is `replication.ids`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cext.layout import ACCOUNT_DTYPE, TRANSFER_DTYPE
from ledger.types import AccountFlags, TransferFlags
from replication.ids import CREDIT_BIT_HI, GENESIS_BIT_HI

LEDGER = 156
"""ISO 4217 numeric code of CNY: every simulated account is in one currency."""
CODE = 1
BANK_BASE = 1 << 40
FUND_BASE = BANK_BASE
TRANSIT_BASE = BANK_BASE + (1 << 20)
UNIT_MASK = (1 << 20) - 1
CUSTOMER_FLAGS = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_TWO_PHASE = int(TransferFlags.PENDING | TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)


def fund_id(unit: int) -> int:
    return FUND_BASE + unit


def transit_id(unit: int) -> int:
    return TRANSIT_BASE + unit


@dataclass(frozen=True)
class AccountMap:
    """Which unit each account belongs to; shared, read-only, by every node of a run."""

    n_units: int
    customer_unit: np.ndarray  # index: customer id (0 unused) -> unit

    @property
    def n_customers(self) -> int:
        return len(self.customer_unit) - 1

    def known(self, ids: np.ndarray, hi: np.ndarray | None = None) -> np.ndarray:
        """Which ids name an account of the run: a customer, a unit's fund or transit. Ids are
        u128: `ids` the low words, `hi` the high ones (an id with a high word names none)."""
        ids = ids.astype(np.uint64, copy=False)
        n = np.uint64(self.n_units)
        out = (((ids >= 1) & (ids <= np.uint64(self.n_customers)))
               | ((ids >= np.uint64(FUND_BASE)) & (ids < np.uint64(FUND_BASE) + n))
               | ((ids >= np.uint64(TRANSIT_BASE)) & (ids < np.uint64(TRANSIT_BASE) + n)))
        return out if hi is None else out & (hi == 0)

    def bank(self, ids: np.ndarray, hi: np.ndarray | None = None) -> np.ndarray:
        """Which ids name a bank-internal account (a unit's fund or transit): never a client's."""
        ids = ids.astype(np.uint64, copy=False)
        return self.known(ids, hi) & (ids > np.uint64(self.n_customers))

    def units_of(self, ids: np.ndarray, hi: np.ndarray | None = None) -> np.ndarray:
        """Unit of each account id (vectorised; u128 ids as low and high words). Ids that name
        no account (zero, unknown) map to unit 0: a row naming one fails in the engine wherever
        it is written, so where that is does not matter, but it must not crash the router."""
        ids = ids.astype(np.uint64, copy=False)
        out = np.zeros(len(ids), np.int64)
        known = self.known(ids, hi)
        customer = known & (ids <= np.uint64(self.n_customers))
        out[customer] = self.customer_unit[ids[customer].astype(np.int64)]
        bank = known & ~customer
        out[bank] = (ids[bank] & np.uint64(UNIT_MASK)).astype(np.int64)
        return out

    def unit_of(self, account_id: int) -> int:
        if 1 <= account_id <= self.n_customers:
            return int(self.customer_unit[account_id])
        for base in (FUND_BASE, TRANSIT_BASE):
            if base <= account_id < base + self.n_units:
                return account_id - base
        return 0


_GENESIS: dict[int, tuple[tuple[int, int, bool], np.ndarray, np.ndarray]] = {}
"""Genesis rows by `id(amap.customer_unit)`: every replica of a run starts from the same rows,
so they are built once per account map and shared (read-only) instead of once per node —
at 1,000,000 customers that is 256 MB and a second per node. An entry is dropped when its
account map's array is collected, so a sweep of many runs does not accumulate them."""


def genesis(amap: AccountMap, opening_balance: int, *, enforce_flags: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows every replica starts from: all accounts, and each customer's opening deposit.

    `enforce_flags` puts the no-overdraft flag into the engine (unit mode: the single
    writer's engine is the guard). In `async` and `escrow` the node guards admission and
    replicas must accept other regions' rows in any order, so the engine flag is left off;
    the flag stays the account's *logical* property that checkers test.

    The arrays are read-only and shared by every caller with the same account map and
    arguments (`_GENESIS`): copy them to change them.
    """
    key = (amap.n_units, opening_balance, enforce_flags)
    owner = amap.customer_unit
    hit = _GENESIS.get(id(owner))
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    accounts, deposits = _genesis_rows(amap, opening_balance, enforce_flags=enforce_flags)
    accounts.flags.writeable = False
    deposits.flags.writeable = False
    if hit is None:
        weakref.finalize(owner, _GENESIS.pop, id(owner), None)
    _GENESIS[id(owner)] = (key, accounts, deposits)
    return accounts, deposits


def _genesis_rows(amap: AccountMap, opening_balance: int, *, enforce_flags: bool) -> tuple[np.ndarray, np.ndarray]:
    n, u = amap.n_customers, amap.n_units
    accounts = np.zeros(n + 2 * u, ACCOUNT_DTYPE)
    accounts["id_lo"][:n] = np.arange(1, n + 1)
    accounts["id_lo"][n : n + u] = FUND_BASE + np.arange(u)
    accounts["id_lo"][n + u :] = TRANSIT_BASE + np.arange(u)
    accounts["ledger"] = LEDGER
    accounts["code"] = CODE
    accounts["code"][n:] = 2
    if enforce_flags:
        accounts["flags"][:n] = CUSTOMER_FLAGS
    deposits = np.zeros(n, TRANSFER_DTYPE)
    ids = np.arange(1, n + 1, dtype=np.uint64)
    deposits["id_lo"] = ids
    deposits["id_hi"] = GENESIS_BIT_HI  # genesis id space, never a client id
    deposits["debit_account_id_lo"] = FUND_BASE + amap.customer_unit[1:]
    deposits["credit_account_id_lo"] = ids
    deposits["amount_lo"] = opening_balance
    deposits["ledger"] = LEDGER
    deposits["code"] = CODE
    deposits["timestamp"] = ids
    accounts["timestamp"] = np.arange(1, len(accounts) + 1)
    return accounts, deposits


def as_debit_legs(rows: np.ndarray, dunits: np.ndarray, cunits: np.ndarray, amap: AccountMap) -> np.ndarray:
    """Turn the cross-unit rows of a client batch, in place, into debit legs (customer ->
    transit of the debit unit, beneficiary kept in `user_data_128`), so that every row
    touches one unit only: the writer of that unit can apply it alone. Returns the rows that
    cannot be split: two-phase transfers across units (a pending hold would need both units).
    Credit legs (already one unit's) pass unchanged, and so do rows naming an account that
    does not exist: split, their debit leg would succeed and park money for a credit leg
    that can never land; whole, the engine refuses them with the exact result code."""
    credit_leg = (rows["id_hi"] & CREDIT_BIT_HI) != 0
    named = (amap.known(rows["debit_account_id_lo"], rows["debit_account_id_hi"])
             & amap.known(rows["credit_account_id_lo"], rows["credit_account_id_hi"]))
    cross = (cunits != dunits) & ~credit_leg & named
    bad = cross & ((rows["flags"] & _TWO_PHASE) != 0)
    if cross.any():
        rows["user_data_128_lo"][cross] = rows["credit_account_id_lo"][cross]
        rows["credit_account_id_lo"][cross] = TRANSIT_BASE + dunits[cross]
    return bad


def credit_legs(debit_legs: np.ndarray, amap: AccountMap) -> np.ndarray:
    """The credit legs some debit legs owe (transit of each beneficiary's unit -> beneficiary),
    one per row, in order; their ids are derived, so sending one twice is idempotent.
    Column-wise: a region makes one for every cross-unit transfer it writes or applies."""
    legs = np.zeros(len(debit_legs), TRANSFER_DTYPE)
    beneficiary = debit_legs["user_data_128_lo"]  # a customer of the run (legs are made only for those)
    legs["id_lo"] = debit_legs["id_lo"]
    legs["id_hi"] = debit_legs["id_hi"] | np.uint64(CREDIT_BIT_HI)
    legs["debit_account_id_lo"] = np.uint64(TRANSIT_BASE) + amap.units_of(beneficiary).astype(np.uint64)
    legs["credit_account_id_lo"] = beneficiary
    legs["amount_lo"] = debit_legs["amount_lo"]
    legs["amount_hi"] = debit_legs["amount_hi"]
    legs["user_data_128_lo"] = debit_legs["debit_account_id_lo"]
    legs["ledger"] = debit_legs["ledger"]
    legs["code"] = debit_legs["code"]
    return legs


def credit_leg(debit_leg: np.void, amap: AccountMap) -> np.void:
    """The credit leg one debit leg owes (`credit_legs`)."""
    return credit_legs(np.array([debit_leg], TRANSFER_DTYPE), amap)[0]


def is_debit_leg(rows: np.ndarray, n_units: int) -> np.ndarray:
    credit = rows["credit_account_id_lo"]
    is_transit = (credit >= TRANSIT_BASE) & (credit < TRANSIT_BASE + n_units)
    return is_transit & ((rows["id_hi"] & CREDIT_BIT_HI) == 0)


def owed_debit_legs(engine, owned: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Debit legs on the transit accounts of the `owned` units (a bool per unit) whose credit
    leg the engine does not hold yet: what a new writer of those units still owes."""
    tr = engine.transfers
    if not len(tr):
        return tr[:0].copy()
    debit = is_debit_leg(tr, len(owned))
    if not debit.any():
        return tr[:0].copy()
    cand = tr[debit]
    cand = cand[owned[(cand["credit_account_id_lo"] - TRANSIT_BASE).astype(np.int64)]]
    legs = tr[(tr["id_hi"] & CREDIT_BIT_HI) != 0]
    paid = {(int(h) & ~int(CREDIT_BIT_HI), int(lo)) for h, lo in zip(legs["id_hi"].tolist(), legs["id_lo"].tolist(),
                                                                       strict=True)}
    done = np.fromiter(((h, lo) in paid for h, lo in zip(cand["id_hi"].tolist(), cand["id_lo"].tolist(), strict=True)),
                       bool, len(cand))
    return cand[~done].copy()


def customer_flags_logical() -> int:
    return CUSTOMER_FLAGS


__all__ = [
    "BANK_BASE",
    "CODE",
    "CREDIT_BIT_HI",
    "CUSTOMER_FLAGS",
    "LEDGER",
    "AccountMap",
    "as_debit_legs",
    "credit_leg",
    "fund_id",
    "genesis",
    "is_debit_leg",
    "owed_debit_legs",
    "transit_id",
]

"""The transfer-id scheme of the replicated ledger: whose ids are whose, and which writer
an id belongs to.

A transfer id is a u128 in four fields:

| bits | field | who sets it |
| --- | --- | --- |
| 127 | credit leg of a cross-unit transfer (derived from its debit leg's id) | the bank |
| 126 | genesis: the opening deposits | the bank |
| 110..125 | the id's **unit**, plus one (0: no unit named) | the client |
| 0..109 | the client's own part (unique per unit, as the client likes: a ULID's 110 bits) | the client |

Bits 126 and 127 are the bank's: a client row whose id sets either is refused
(`ID_IN_RESERVED_RANGE`), through every entry point, so a client can never pre-empt the
credit leg a later transfer will need, nor shadow a genesis deposit.

**One id, one transfer, system-wide**: an id names its unit, and only that unit's writer
ever applies it — the unit's home (`unit`), the leader of its Raft log (`quorum`), or the
region the unit is homed in (`async`, `escrow`). A second use of the id, from any region,
in any mode, across any failover, reaches the same writer, whose books already hold it:
the answer is `EXISTS` or `EXISTS_WITH_DIFFERENT_*`, exactly as TigerBeetle answers it
within one cluster. In the single-writer designs (`unit`, `quorum`) the id's unit must be
the unit of the transfer's debit account (a post or void: its pending's), so a writer only
ever touches its own unit's books; an id naming another unit is refused
(`ID_MUST_NAME_ITS_UNIT`). In `async` and `escrow` the unit names the *writing region* and
the accounts may be anywhere: a client picks a unit homed where it submits, and a retry of
the same id sent to another region is forwarded to that region — while a partition cuts
it off, the retry is answered UNAVAILABLE, never applied a second time.
Why this and not a claim in an owner log per id: the claim costs every transfer a WAN
round trip to the owner; the unit in the id costs nothing on the write path (the row is
routed exactly where it would have gone), at the price of clients naming the unit — as
unitized banks (Alipay's LDC) already put the user's shard in every order id.
"""

from __future__ import annotations

import numpy as np

CREDIT_BIT = 1 << 127
GENESIS_BIT = 1 << 126
RESERVED_BITS = CREDIT_BIT | GENESIS_BIT
UNIT_SHIFT = 110
UNIT_BITS = 16
MAX_UNITS = (1 << UNIT_BITS) - 1  # the field holds unit + 1
CLIENT_MASK = (1 << UNIT_SHIFT) - 1

CREDIT_BIT_HI = np.uint64(CREDIT_BIT >> 64)
"""Bit 127 of a transfer id, as bit 63 of its high word."""
GENESIS_BIT_HI = np.uint64(GENESIS_BIT >> 64)
RESERVED_HI = np.uint64(RESERVED_BITS >> 64)
_UNIT_SHIFT_HI = np.uint64(UNIT_SHIFT - 64)
_UNIT_MASK = np.uint64(MAX_UNITS)


def transfer_id(unit: int, local: int) -> int:
    """The id of a client's transfer `local` written by `unit`'s writer."""
    if not 0 <= unit < MAX_UNITS:
        raise ValueError(f"unit must be in 0..{MAX_UNITS - 1}, got {unit}")
    if not 0 < local <= CLIENT_MASK:
        raise ValueError(f"the client's part must be in 1..2^{UNIT_SHIFT}-1, got {local}")
    return ((unit + 1) << UNIT_SHIFT) | local


def unit_of_id(tid: int) -> int | None:
    """The unit an id names, or None when it names none."""
    tag = (tid >> UNIT_SHIFT) & MAX_UNITS
    return tag - 1 if tag else None


def id_units(id_hi: np.ndarray) -> np.ndarray:
    """The unit each id names (vectorised over the high words); -1 where it names none."""
    return ((id_hi.astype(np.uint64, copy=False) >> _UNIT_SHIFT_HI) & _UNIT_MASK).astype(np.int64) - 1


def reserved(id_hi: np.ndarray) -> np.ndarray:
    """Which ids are in the bank's reserved range (credit legs, genesis)."""
    return (id_hi.astype(np.uint64, copy=False) & RESERVED_HI) != 0


def ids_of(rows: np.ndarray, field: str = "id") -> list[int]:
    """The u128 ids in `rows[field + "_lo" / "_hi"]`, as ints."""
    return [(h << 64) | lo for lo, h in zip(rows[f"{field}_lo"].tolist(), rows[f"{field}_hi"].tolist(), strict=True)]


def with_unit(id_hi: np.ndarray, units: np.ndarray) -> np.ndarray:
    """High words naming `units` (the client parts' high bits kept)."""
    keep = id_hi.astype(np.uint64) & ~np.uint64((MAX_UNITS << (UNIT_SHIFT - 64)) | (RESERVED_BITS >> 64))
    return keep | ((units.astype(np.uint64) + np.uint64(1)) << _UNIT_SHIFT_HI)


__all__ = ["CLIENT_MASK", "CREDIT_BIT", "CREDIT_BIT_HI", "GENESIS_BIT", "GENESIS_BIT_HI", "MAX_UNITS", "RESERVED_BITS",
           "UNIT_SHIFT", "id_units", "ids_of", "reserved", "transfer_id", "unit_of_id", "with_unit"]

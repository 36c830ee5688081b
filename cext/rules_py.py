"""The twin engine's checks that need no state beyond the rows they are given.

Pure functions over numpy rows, in TigerBeetle's order: the batch-level admission of an
event (imports, timestamps), the idempotency checks of an account or transfer that
exists, and what voiding or expiring a closing transfer does to its accounts. The Cython
engine has the same functions (`admit`, `account_exists`, `transfer_exists`, `reopen`).
"""

from __future__ import annotations

from typing import Any

from cext.layout import join
from ledger.types import (
    TIMESTAMP_MAX,
    U128_MAX,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferFlags,
)

A = CreateAccountResult
T = CreateTransferResult
AF = AccountFlags
TF = TransferFlags


def admit(row: Any, flags: int, now: int, batch_imported: bool, imported_flag: int, client: bool, codes: Any) -> int:
    """The batch-level checks before an event's own (TigerBeetle's `execute_create`)."""
    imported = bool(flags & imported_flag)
    if imported != batch_imported:
        return codes.IMPORTED_EVENT_NOT_EXPECTED if imported else codes.IMPORTED_EVENT_EXPECTED
    timestamp = int(row["timestamp"])
    if imported:
        if not 1 <= timestamp <= TIMESTAMP_MAX:
            return codes.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE
        if timestamp >= now:
            return codes.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE
    elif client and timestamp != 0:
        return codes.TIMESTAMP_MUST_BE_ZERO
    return codes.OK


def account_exists(row: Any, flags: int, e: Any) -> int:
    if flags != int(e["flags"]):
        return A.EXISTS_WITH_DIFFERENT_FLAGS
    if (row["user_data_128_lo"], row["user_data_128_hi"]) != (e["user_data_128_lo"], e["user_data_128_hi"]):
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if row["user_data_64"] != e["user_data_64"]:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if row["user_data_32"] != e["user_data_32"]:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if row["ledger"] != e["ledger"]:
        return A.EXISTS_WITH_DIFFERENT_LEDGER
    if row["code"] != e["code"]:
        return A.EXISTS_WITH_DIFFERENT_CODE
    return A.EXISTS


def resolution_exists(row: Any, flags: int, e: Any, p: Any | None) -> int:
    """A post/void resent: its zero fields stand for what the pending `p` had. (Without
    `p` in this engine, a replica's partial state, the sentinels are taken as matching.)"""
    for side, differs in (
        ("debit_account_id", T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        ("credit_account_id", T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
    ):
        given = join(row[f"{side}_lo"], row[f"{side}_hi"])
        if given and given != join(e[f"{side}_lo"], e[f"{side}_hi"]):
            return differs
    amount = join(row["amount_lo"], row["amount_hi"])
    stored = join(e["amount_lo"], e["amount_hi"])
    everything = amount == U128_MAX if flags & TF.POST_PENDING_TRANSFER else amount == 0
    if everything:
        if p is not None and stored != join(p["amount_lo"], p["amount_hi"]):
            return T.EXISTS_WITH_DIFFERENT_AMOUNT
    elif amount != stored:
        return T.EXISTS_WITH_DIFFERENT_AMOUNT
    for code, words in (
        (T.EXISTS_WITH_DIFFERENT_USER_DATA_128, ("user_data_128_lo", "user_data_128_hi")),
        (T.EXISTS_WITH_DIFFERENT_USER_DATA_64, ("user_data_64",)),
        (T.EXISTS_WITH_DIFFERENT_USER_DATA_32, ("user_data_32",)),
    ):
        given_words = tuple(int(row[w]) for w in words)
        if any(given_words):
            if given_words != tuple(int(e[w]) for w in words):
                return code
        elif p is not None and tuple(int(e[w]) for w in words) != tuple(int(p[w]) for w in words):
            return code
    if row["ledger"] and row["ledger"] != e["ledger"]:
        return T.EXISTS_WITH_DIFFERENT_LEDGER
    if row["code"] and row["code"] != e["code"]:
        return T.EXISTS_WITH_DIFFERENT_CODE
    return T.EXISTS


def reopen(p: Any, dr: Any, cr: Any) -> None:
    """Voiding or expiring a closing transfer re-opens the accounts it closed."""
    if int(p["flags"]) & TF.CLOSING_DEBIT:
        dr["flags"] = int(dr["flags"]) & ~AF.CLOSED
    if int(p["flags"]) & TF.CLOSING_CREDIT:
        cr["flags"] = int(cr["flags"]) & ~AF.CLOSED


__all__ = ["account_exists", "admit", "reopen", "resolution_exists"]

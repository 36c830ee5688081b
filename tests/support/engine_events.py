"""What drives the engine tests: Hypothesis generators of accounts and transfers that refer
to earlier ones (so deep paths are reached), and the ids and amounts at the edges.

Shared by the twin comparison (`test_engine_twins`) and the statement index tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from ledger.types import (
    AMOUNT_MAX,
    U128_MAX,
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
)

AF = AccountFlags
TF = TransferFlags

# ----------------------------------------------------------------------------- generators

# Account ids, weighted: 5 is on ledger 2 and 6 is closed in the usual setup.
ACCOUNT_IDS = [1, 1, 2, 2, 3, 4, 1 << 64, U128_MAX - 1, 5, 6]
ODD_ACCOUNT_IDS = [0, 7, U128_MAX]  # zero, unknown, int max
SPECIAL_TRANSFER_IDS = [0, U128_MAX, 1 << 64, U128_MAX - 1]
BIG_AMOUNTS = [(1 << 64) - 1, 1 << 64, 1 << 127, U128_MAX - 2, U128_MAX - 1, AMOUNT_MAX]
TIMEOUTS = [0, 0, 0, 1, 2, 1000, (1 << 32) - 1]
RESERVED_ACCOUNT_FLAGS = [1 << 6, 1 << 7, 1 << 15]
RESERVED_TRANSFER_FLAGS = [1 << 9, 1 << 12, 1 << 15]
ACCOUNT_FLAGS = [
    0, 0, 0, AF.LINKED, AF.DEBITS_MUST_NOT_EXCEED_CREDITS, AF.CREDITS_MUST_NOT_EXCEED_DEBITS, AF.HISTORY,
    AF.CLOSED, AF.HISTORY | AF.LINKED, AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS,
    AF.IMPORTED, *RESERVED_ACCOUNT_FLAGS,
]

amounts = st.one_of(
    st.sampled_from([0, 1, 2, 5, 10, 100]), st.integers(0, 1000), st.sampled_from(BIG_AMOUNTS),
    st.integers(0, U128_MAX),
)
small_user_data = st.sampled_from([0, 0, 1, 2])

SETUP_ACCOUNTS = [
    Account(id=1, ledger=1, code=1),
    Account(id=2, ledger=1, code=1, flags=AF.HISTORY),
    Account(id=3, ledger=1, code=1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
    Account(id=4, ledger=1, code=1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS | AF.HISTORY),
    Account(id=5, ledger=2, code=1),
    Account(id=6, ledger=1, code=1, flags=AF.CLOSED),
    Account(id=1 << 64, ledger=1, code=2),
    Account(id=U128_MAX - 1, ledger=1, code=1, user_data_128=U128_MAX),
]


class Events:
    """Draws accounts and transfers that refer to earlier ones, so deep paths are reached.

    A purely random transfer almost never posts a pending transfer or re-sends an existing
    one with exactly one field changed; this remembers the ids it proposed (fresh ones from
    a counter, so most transfers are new) and the transfers it made, and draws posts and
    voids of earlier pendings and re-sends of earlier transfers, each sometimes spoiled.
    """

    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw
        self.next_id = 1
        self.sent: list[Transfer] = []
        self.made: list[Transfer] = []  # those an engine accepted (see `note`)
        self.pending_ids: list[int] = [1]

    def account(self) -> Account:
        return Account(
            id=self.draw(st.sampled_from(ACCOUNT_IDS + ODD_ACCOUNT_IDS + [8, 9])),
            ledger=self.draw(st.sampled_from([1, 1, 1, 2, 0])),
            code=self.draw(st.sampled_from([1, 1, 9, 0])),
            flags=int(self.draw(st.sampled_from(ACCOUNT_FLAGS))),
            user_data_128=self.draw(st.sampled_from([0, 0, 1, U128_MAX])),
            user_data_64=self.draw(small_user_data),
            user_data_32=self.draw(small_user_data),
        )

    def _id(self) -> int:
        how = self.draw(st.sampled_from(["fresh"] * 6 + ["old"] * 3 + ["special"]))
        if how == "special":
            return self.draw(st.sampled_from(SPECIAL_TRANSFER_IDS))
        if how == "old" and self.sent:
            return self.draw(st.sampled_from(self.sent)).id
        self.next_id += 1
        return self.next_id

    def _pending_id(self) -> int:
        """Mostly one of the last few pendings proposed: the likeliest to exist and be open."""
        if self.draw(st.integers(0, 3)):
            return self.draw(st.sampled_from(self.pending_ids[-3:]))
        return self.draw(st.sampled_from(self.pending_ids))

    def transfer(self) -> Transfer:
        kind = self.draw(st.sampled_from(
            ["single", "single", "pending", "pending", "post", "post", "void", "balancing", "resend", "closing"]
        ))
        t = self.resend() if kind == "resend" and self.sent else self.new(kind)
        self.sent.append(t)
        if t.flags & TF.PENDING:
            self.pending_ids.append(t.id)
        return t

    def new(self, kind: str) -> Transfer:
        linked = TF.LINKED if self.draw(st.integers(0, 7)) == 0 else 0
        dr, cr = self.draw(st.lists(st.sampled_from(ACCOUNT_IDS), min_size=2, max_size=2, unique=True))
        fields: dict[str, Any] = {
            "id": self._id(),
            "debit_account_id": dr,
            "credit_account_id": cr,
            "amount": self.draw(amounts),
            "ledger": 1,
            "code": 1,
            "user_data_128": self.draw(small_user_data),
            "user_data_64": self.draw(small_user_data),
            "user_data_32": self.draw(small_user_data),
        }
        if kind in ("single", "resend"):
            fields["flags"] = linked
        elif kind == "pending":
            fields["flags"] = linked | TF.PENDING
            fields["timeout"] = self.draw(st.sampled_from(TIMEOUTS))
        elif kind == "closing":
            fields["flags"] = linked | TF.PENDING | self.draw(st.sampled_from([
                TF.CLOSING_DEBIT, TF.CLOSING_CREDIT, TF.CLOSING_DEBIT | TF.CLOSING_CREDIT,
            ]))
            fields["timeout"] = self.draw(st.sampled_from(TIMEOUTS))
        elif kind == "balancing":
            fields["flags"] = linked | self.draw(st.sampled_from([
                TF.BALANCING_DEBIT, TF.BALANCING_CREDIT, TF.BALANCING_DEBIT | TF.BALANCING_CREDIT,
                TF.BALANCING_DEBIT | TF.PENDING,
            ]))
        else:
            fields["flags"] = linked | (TF.POST_PENDING_TRANSFER if kind == "post" else TF.VOID_PENDING_TRANSFER)
            fields["pending_id"] = self._pending_id()
            if kind == "post":
                fields["amount"] = self.draw(st.one_of(st.sampled_from([AMOUNT_MAX, AMOUNT_MAX, 0, 1, 2, 5]), amounts))
            else:
                fields["amount"] = self.draw(st.sampled_from([0, 0, 0, AMOUNT_MAX, 1]))
            # Post/void may leave these zero (inherit) or repeat them (must match).
            fields["debit_account_id"] = self.draw(st.sampled_from([0, 0, dr]))
            fields["credit_account_id"] = self.draw(st.sampled_from([0, 0, cr]))
            fields["ledger"] = self.draw(st.sampled_from([0, 1]))
            fields["code"] = self.draw(st.sampled_from([0, 1]))
        if self.draw(st.integers(0, 9)) == 0:
            self.spoil(fields, dr)
        fields["flags"] = int(fields["flags"])
        return Transfer(**fields)

    def spoil(self, fields: dict[str, Any], dr: int) -> None:
        name, values = self.draw(st.sampled_from([
            ("debit_account_id", ODD_ACCOUNT_IDS),
            ("credit_account_id", [*ODD_ACCOUNT_IDS, dr]),
            ("ledger", [0, 2, 3]),
            ("code", [0, 9]),
            ("pending_id", [0, U128_MAX, fields["id"]]),
            ("timeout", [1, 1000]),
            ("flags", [
                *RESERVED_TRANSFER_FLAGS, TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER,
                TF.POST_PENDING_TRANSFER | TF.PENDING, TF.VOID_PENDING_TRANSFER | TF.BALANCING_CREDIT,
                TF.POST_PENDING_TRANSFER | TF.BALANCING_DEBIT, TF.CLOSING_DEBIT, TF.VOID_PENDING_TRANSFER
                | TF.CLOSING_CREDIT, TF.IMPORTED,
            ]),
        ]))
        value = self.draw(st.sampled_from(values))
        fields[name] = int(fields["flags"]) | value if name == "flags" else value

    def note(self, items: list[Any], results: np.ndarray) -> None:
        """Remember which transfers were made, so that re-sends mostly name existing ones."""
        self.made.extend(t for t, r in zip(items, results.tolist(), strict=True)
                         if r == 0 and isinstance(t, Transfer))

    def resend(self) -> Transfer:
        """An earlier transfer again: as it was (exists) or with one field changed."""
        pool = self.made if self.made and self.draw(st.integers(0, 3)) else self.sent
        old = self.draw(st.sampled_from(pool))
        change = self.draw(st.sampled_from([
            None, None, "flags", "debit_account_id", "credit_account_id", "amount", "pending_id",
            "user_data_128", "user_data_64", "user_data_32", "timeout", "code", "ledger",
        ]))
        if change is None:
            return old
        fields = {f: getattr(old, f) for f in (
            "id", "debit_account_id", "credit_account_id", "amount", "ledger", "code", "flags", "pending_id",
            "timeout", "user_data_128", "user_data_64", "user_data_32",
        )}
        if change == "flags":
            fields["flags"] = old.flags ^ self.draw(st.sampled_from(
                [TF.LINKED, TF.PENDING, TF.BALANCING_DEBIT, TF.CLOSING_CREDIT]
            ))
        elif change == "amount":
            fields["amount"] = self.draw(st.sampled_from([0, 1, max(old.amount - 1, 0), AMOUNT_MAX]))
        elif change == "pending_id":
            fields["pending_id"] = self._pending_id()
        elif change in ("debit_account_id", "credit_account_id"):
            fields[change] = self.draw(st.sampled_from(ACCOUNT_IDS))
        elif change == "timeout":
            fields["timeout"] = self.draw(st.sampled_from(TIMEOUTS))
        elif change == "code":
            fields["code"] = self.draw(st.sampled_from([0, 1, 2]))
        elif change == "ledger":
            fields["ledger"] = self.draw(st.sampled_from([0, 1, 2]))
        else:
            fields[change] = self.draw(st.sampled_from([0, 1, 3]))
        return Transfer(**fields)


def timestamps(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.uint64)

"""Accounts, transfers, flags and result codes, after TigerBeetle's data model.

The names, bit values and order of checks follow TigerBeetle (>= 0.16) so that anyone who
knows it is at home. Inputs are validated when constructed: a value that cannot be a
TigerBeetle u128/u64/u32/u16 is a programming error at the boundary (an exception), while
everything that depends on the ledger's state is a result code (a value).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from ledger.errors import InvalidInputError

U16_MAX = (1 << 16) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
U128_MAX = (1 << 128) - 1
AMOUNT_MAX = U128_MAX
"""Posting or balancing with this amount moves everything there is (TigerBeetle >= 0.16)."""

NS_PER_S = 1_000_000_000


class AccountFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    CLOSED = 1 << 5


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5


ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
    | AccountFlags.CLOSED
)
TRANSFER_FLAGS_KNOWN = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
)


class CreateAccountResult(enum.IntEnum):
    """Outcome of one account in a `create_accounts` batch; only OK changes state."""

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    RESERVED_FLAG = 3
    ID_MUST_NOT_BE_ZERO = 4
    ID_MUST_NOT_BE_INT_MAX = 5
    EXISTS_WITH_DIFFERENT_FLAGS = 6
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = 7
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 8
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 9
    EXISTS_WITH_DIFFERENT_LEDGER = 10
    EXISTS_WITH_DIFFERENT_CODE = 11
    EXISTS = 12
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 13
    LEDGER_MUST_NOT_BE_ZERO = 14
    CODE_MUST_NOT_BE_ZERO = 15


class CreateTransferResult(enum.IntEnum):
    """Outcome of one transfer in a `create_transfers` batch; only OK changes state."""

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    RESERVED_FLAG = 3
    ID_MUST_NOT_BE_ZERO = 4
    ID_MUST_NOT_BE_INT_MAX = 5
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 6
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 7
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 8
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 9
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 10
    ACCOUNTS_MUST_BE_DIFFERENT = 11
    PENDING_ID_MUST_BE_ZERO = 12
    PENDING_ID_MUST_NOT_BE_ZERO = 13
    PENDING_ID_MUST_NOT_BE_INT_MAX = 14
    PENDING_ID_MUST_BE_DIFFERENT = 15
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 16
    LEDGER_MUST_NOT_BE_ZERO = 17
    CODE_MUST_NOT_BE_ZERO = 18
    DEBIT_ACCOUNT_NOT_FOUND = 19
    CREDIT_ACCOUNT_NOT_FOUND = 20
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 21
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 22
    PENDING_TRANSFER_NOT_FOUND = 23
    PENDING_TRANSFER_NOT_PENDING = 24
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 25
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 26
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 27
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = 28
    EXCEEDS_PENDING_TRANSFER_AMOUNT = 29
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 30
    PENDING_TRANSFER_ALREADY_POSTED = 31
    PENDING_TRANSFER_ALREADY_VOIDED = 32
    PENDING_TRANSFER_EXPIRED = 33
    EXISTS_WITH_DIFFERENT_FLAGS = 34
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 35
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 36
    EXISTS_WITH_DIFFERENT_AMOUNT = 37
    EXISTS_WITH_DIFFERENT_PENDING_ID = 38
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = 39
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 40
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 41
    EXISTS_WITH_DIFFERENT_TIMEOUT = 42
    EXISTS_WITH_DIFFERENT_CODE = 43
    EXISTS = 44
    DEBIT_ACCOUNT_ALREADY_CLOSED = 45
    CREDIT_ACCOUNT_ALREADY_CLOSED = 46
    OVERFLOWS_DEBITS_PENDING = 47
    OVERFLOWS_CREDITS_PENDING = 48
    OVERFLOWS_DEBITS_POSTED = 49
    OVERFLOWS_CREDITS_POSTED = 50
    OVERFLOWS_DEBITS = 51
    OVERFLOWS_CREDITS = 52
    OVERFLOWS_TIMEOUT = 53
    EXCEEDS_CREDITS = 54
    EXCEEDS_DEBITS = 55


def _check_uint(value: Any, bits: int, name: str) -> int:
    # bool is an int subclass; True as an amount is a bug, not a 1.
    if type(value) is not int:
        if isinstance(value, enum.IntFlag) and bits == 16:
            return _check_uint(int(value), bits, name)
        raise InvalidInputError(
            f"must be an int, got {type(value).__name__} {value!r}", field=name
        )
    if value < 0 or value >> bits:
        raise InvalidInputError(f"must be in 0..2^{bits}-1, got {value}", field=name)
    return value


_ACCOUNT_WIDTHS = {
    "id": 128,
    "user_data_128": 128,
    "user_data_64": 64,
    "user_data_32": 32,
    "ledger": 32,
    "code": 16,
    "flags": 16,
}
_TRANSFER_WIDTHS = {
    "id": 128,
    "debit_account_id": 128,
    "credit_account_id": 128,
    "amount": 128,
    "pending_id": 128,
    "user_data_128": 128,
    "user_data_64": 64,
    "user_data_32": 32,
    "timeout": 32,
    "ledger": 32,
    "code": 16,
    "flags": 16,
}


@dataclass(frozen=True, slots=True)
class Account:
    """An account to create. Balances start at zero; `lookup_accounts` returns them."""

    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0

    def __post_init__(self) -> None:
        for name, bits in _ACCOUNT_WIDTHS.items():
            _check_uint(getattr(self, name), bits, name)


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer to create: `amount` moves from `debit_account_id` to `credit_account_id`.

    `timeout` is in seconds of ledger time and only meaningful with `PENDING`.
    """

    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0
    pending_id: int = 0
    timeout: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0

    def __post_init__(self) -> None:
        for name, bits in _TRANSFER_WIDTHS.items():
            _check_uint(getattr(self, name), bits, name)


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as stored: its definition, its four balances and its creation time."""

    id: int
    ledger: int
    code: int
    flags: AccountFlags
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timestamp: int

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits (the customer's view of a liability account)."""
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class TransferState:
    """A transfer as committed: amounts resolved (balancing, post of AMOUNT_MAX), stamped."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timeout: int
    ledger: int
    code: int
    flags: TransferFlags
    timestamp: int


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balances right after one of its transfers (HISTORY accounts)."""

    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))

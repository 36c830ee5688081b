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
    """TigerBeetle's account flags, same bits."""

    NONE = 0
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    IMPORTED = 1 << 4
    """Back-filled history: the account carries its own `timestamp` (see `Account`)."""
    CLOSED = 1 << 5
    """No new transfer may touch the account; only voiding a pending transfer still may."""


class TransferFlags(enum.IntFlag):
    """TigerBeetle's transfer flags, same bits."""

    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    CLOSING_DEBIT = 1 << 6
    """A pending transfer that closes its debit account (voiding or expiry re-opens it)."""
    CLOSING_CREDIT = 1 << 7
    """A pending transfer that closes its credit account (voiding or expiry re-opens it)."""
    IMPORTED = 1 << 8
    """Back-filled history: the transfer carries its own `timestamp` (see `Transfer`)."""


ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
    | AccountFlags.IMPORTED
    | AccountFlags.CLOSED
)
TRANSFER_FLAGS_KNOWN = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
    | TransferFlags.CLOSING_DEBIT
    | TransferFlags.CLOSING_CREDIT
    | TransferFlags.IMPORTED
)

TIMESTAMP_MAX = (1 << 63) - 1
"""Largest ledger timestamp (ns), as TigerBeetle's: the top bit of a u64 is reserved."""


class CreateAccountResult(enum.IntEnum):
    """Outcome of one account in a `create_accounts` batch; only OK changes state.

    Members are listed in TigerBeetle's order of precedence (the first that applies is
    the answer) and carry TigerBeetle's numeric values. `RESERVED_FIELD` and the
    `*_MUST_BE_ZERO` balance codes exist for parity: `Account` has no such inputs, so
    only a raw engine row can produce them.
    """

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    IMPORTED_EVENT_EXPECTED = 22
    IMPORTED_EVENT_NOT_EXPECTED = 23
    TIMESTAMP_MUST_BE_ZERO = 3
    IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE = 24
    IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE = 25
    RESERVED_FIELD = 4
    RESERVED_FLAG = 5
    ID_MUST_NOT_BE_ZERO = 6
    ID_MUST_NOT_BE_INT_MAX = 7
    EXISTS_WITH_DIFFERENT_FLAGS = 15
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = 16
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 17
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 18
    EXISTS_WITH_DIFFERENT_LEDGER = 19
    EXISTS_WITH_DIFFERENT_CODE = 20
    EXISTS = 21
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 8
    DEBITS_PENDING_MUST_BE_ZERO = 9
    DEBITS_POSTED_MUST_BE_ZERO = 10
    CREDITS_PENDING_MUST_BE_ZERO = 11
    CREDITS_POSTED_MUST_BE_ZERO = 12
    LEDGER_MUST_NOT_BE_ZERO = 13
    CODE_MUST_NOT_BE_ZERO = 14
    IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS = 26


class CreateTransferResult(enum.IntEnum):
    """Outcome of one transfer in a `create_transfers` batch; only OK changes state.

    Members are listed in TigerBeetle's (>= 0.16.4) order of precedence and carry its
    numeric values. `AMOUNT_MUST_NOT_BE_ZERO` is deprecated there (zero amounts are legal
    since 0.16) and never returned here; it keeps the numbering dense.
    """

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    IMPORTED_EVENT_EXPECTED = 56
    IMPORTED_EVENT_NOT_EXPECTED = 57
    TIMESTAMP_MUST_BE_ZERO = 3
    IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE = 58
    IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE = 59
    RESERVED_FLAG = 4
    ID_MUST_NOT_BE_ZERO = 5
    ID_MUST_NOT_BE_INT_MAX = 6
    EXISTS_WITH_DIFFERENT_FLAGS = 36
    EXISTS_WITH_DIFFERENT_PENDING_ID = 40
    EXISTS_WITH_DIFFERENT_TIMEOUT = 44
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 37
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 38
    EXISTS_WITH_DIFFERENT_AMOUNT = 39
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = 41
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 42
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 43
    EXISTS_WITH_DIFFERENT_LEDGER = 67
    EXISTS_WITH_DIFFERENT_CODE = 45
    EXISTS = 46
    ID_ALREADY_FAILED = 68
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 7
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 8
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 9
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 10
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 11
    ACCOUNTS_MUST_BE_DIFFERENT = 12
    PENDING_ID_MUST_BE_ZERO = 13
    PENDING_ID_MUST_NOT_BE_ZERO = 14
    PENDING_ID_MUST_NOT_BE_INT_MAX = 15
    PENDING_ID_MUST_BE_DIFFERENT = 16
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 17
    CLOSING_TRANSFER_MUST_BE_PENDING = 64
    AMOUNT_MUST_NOT_BE_ZERO = 18
    LEDGER_MUST_NOT_BE_ZERO = 19
    CODE_MUST_NOT_BE_ZERO = 20
    DEBIT_ACCOUNT_NOT_FOUND = 21
    CREDIT_ACCOUNT_NOT_FOUND = 22
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 23
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 24
    PENDING_TRANSFER_NOT_FOUND = 25
    PENDING_TRANSFER_NOT_PENDING = 26
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 27
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 28
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 29
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = 30
    EXCEEDS_PENDING_TRANSFER_AMOUNT = 31
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 32
    PENDING_TRANSFER_ALREADY_POSTED = 33
    PENDING_TRANSFER_ALREADY_VOIDED = 34
    PENDING_TRANSFER_EXPIRED = 35
    IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS = 60
    IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT = 61
    IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT = 62
    IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO = 63
    DEBIT_ACCOUNT_ALREADY_CLOSED = 65
    CREDIT_ACCOUNT_ALREADY_CLOSED = 66
    OVERFLOWS_DEBITS_PENDING = 47
    OVERFLOWS_CREDITS_PENDING = 48
    OVERFLOWS_DEBITS_POSTED = 49
    OVERFLOWS_CREDITS_POSTED = 50
    OVERFLOWS_DEBITS = 51
    OVERFLOWS_CREDITS = 52
    OVERFLOWS_TIMEOUT = 53
    EXCEEDS_CREDITS = 54
    EXCEEDS_DEBITS = 55

    @property
    def transient(self) -> bool:
        """True if the outcome depends on the ledger's state at the time, not on the request.

        A transfer id that failed with a transient result can never be used again: every
        retry answers `ID_ALREADY_FAILED` (TigerBeetle >= 0.16.4), so a retry can never turn
        a refusal into a payment.
        """
        return self in TRANSIENT_TRANSFER_RESULTS


TRANSIENT_TRANSFER_RESULTS = frozenset({
    CreateTransferResult.DEBIT_ACCOUNT_NOT_FOUND,
    CreateTransferResult.CREDIT_ACCOUNT_NOT_FOUND,
    CreateTransferResult.PENDING_TRANSFER_NOT_FOUND,
    CreateTransferResult.EXCEEDS_CREDITS,
    CreateTransferResult.EXCEEDS_DEBITS,
    CreateTransferResult.DEBIT_ACCOUNT_ALREADY_CLOSED,
    CreateTransferResult.CREDIT_ACCOUNT_ALREADY_CLOSED,
})


class TransferPendingStatus(enum.IntEnum):
    """Where a pending transfer stands (TigerBeetle's TransferPendingStatus); NONE otherwise."""

    NONE = 0
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


def by_value(codes: type[enum.IntEnum]) -> tuple[Any, ...]:
    """The members of a dense result enum indexed by value (for a fast int -> member map)."""
    members = sorted(codes, key=int)
    assert [int(m) for m in members] == list(range(len(members))), f"{codes.__name__} is not dense"
    return tuple(members)


def _check_uint(value: Any, bits: int, name: str) -> int:
    # bool is an int subclass; True as an amount is a bug, not a 1.
    if type(value) is not int:
        if isinstance(value, enum.IntFlag) and name == "flags":
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
    "timestamp": 64,
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
    "timestamp": 64,
}


@dataclass(frozen=True, slots=True)
class Account:
    """An account to create. Balances start at zero; `lookup_accounts` returns them.

    `timestamp` must be zero (the ledger stamps the account) unless `flags` has
    `IMPORTED`: then it is the account's own past creation time in ns, which must be later
    than every account's and differ from every transfer's (TigerBeetle's import rules).
    """

    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timestamp: int = 0

    def __post_init__(self) -> None:
        for name, bits in _ACCOUNT_WIDTHS.items():
            _check_uint(getattr(self, name), bits, name)


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer to create: `amount` moves from `debit_account_id` to `credit_account_id`.

    `timeout` is in seconds of ledger time and only meaningful with `PENDING`.
    `timestamp` must be zero (the ledger stamps the transfer) unless `flags` has
    `IMPORTED`: then it is the transfer's own past time in ns, later than every transfer
    already in the ledger and than both accounts (TigerBeetle's import rules).
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
    timestamp: int = 0

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
    """A transfer as committed: amounts resolved (balancing, post of AMOUNT_MAX), stamped.

    `pending_status` says where a `PENDING` transfer stands now (pending, posted, voided
    or expired); it is `NONE` for every other transfer.
    """

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
    pending_status: TransferPendingStatus = TransferPendingStatus.NONE


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balances right after one of its transfers, or one expiry of a pending
    transfer, at that event's `timestamp` (HISTORY accounts only)."""

    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class QueryFilterFlags(enum.IntFlag):
    """TigerBeetle's QueryFilterFlags."""

    NONE = 0
    REVERSED = 1 << 0


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """TigerBeetle's QueryFilter: the intersection of the non-zero fields, in a time range.

    A zero field does not filter. `timestamp_min`/`timestamp_max` are inclusive (zero: no
    bound) and must not be 2^64 - 1; `limit` is at least 1 (results are further capped at
    `BATCH_MAX`, as TigerBeetle caps them at one message: page on with the timestamps).
    Results come oldest first, newest first with `QueryFilterFlags.REVERSED`.
    """

    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    ledger: int = 0
    code: int = 0
    timestamp_min: int = 0
    timestamp_max: int = 0
    limit: int = 100
    flags: int = 0

    def __post_init__(self) -> None:
        for name, bits in _FILTER_WIDTHS.items():
            _check_uint(getattr(self, name), bits, name)
        for name in ("timestamp_min", "timestamp_max"):
            if getattr(self, name) == U64_MAX:
                raise InvalidInputError("must not be 2^64-1", field=name)
        if self.limit == 0:
            raise InvalidInputError("must be at least 1", field="limit")
        if self.flags & ~int(QueryFilterFlags.REVERSED):
            raise InvalidInputError(f"reserved bits set in {self.flags:#x}", field="flags")
        if self.timestamp_max and self.timestamp_min > self.timestamp_max:
            raise InvalidInputError(
                f"timestamp_min {self.timestamp_min} is after timestamp_max {self.timestamp_max}",
                field="timestamp_min",
            )

    @property
    def reversed(self) -> bool:
        return bool(self.flags & QueryFilterFlags.REVERSED)


_FILTER_WIDTHS = {
    "user_data_128": 128,
    "user_data_64": 64,
    "user_data_32": 32,
    "ledger": 32,
    "code": 16,
    "timestamp_min": 64,
    "timestamp_max": 64,
    "limit": 32,
    "flags": 32,
}


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))

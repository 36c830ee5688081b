"""geoledger's library API: an event-sourced double-entry ledger with TigerBeetle semantics.

Everything a user needs is importable from here; `docs/api.md` documents each name.
"""

from ledger.changes import Change, ChangeFeed
from ledger.errors import (
    ConcurrentWriterError,
    CorruptStoreError,
    InvalidInputError,
    LedgerClosedError,
    LedgerError,
    StoreError,
    StoreURLError,
)
from ledger.ledger import BATCH_MAX, Ledger, VerifyReport
from ledger.replay import CommittedBatch
from ledger.types import (
    AMOUNT_MAX,
    TIMESTAMP_MAX,
    Account,
    AccountBalance,
    AccountFlags,
    AccountState,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
    TransferPendingStatus,
    TransferState,
)

__all__ = [
    "AMOUNT_MAX",
    "BATCH_MAX",
    "TIMESTAMP_MAX",
    "Account",
    "AccountBalance",
    "AccountFlags",
    "AccountState",
    "Change",
    "ChangeFeed",
    "CommittedBatch",
    "ConcurrentWriterError",
    "CorruptStoreError",
    "CreateAccountResult",
    "CreateTransferResult",
    "InvalidInputError",
    "Ledger",
    "LedgerClosedError",
    "LedgerError",
    "QueryFilter",
    "QueryFilterFlags",
    "StoreError",
    "StoreURLError",
    "Transfer",
    "TransferFlags",
    "TransferPendingStatus",
    "TransferState",
    "VerifyReport",
]

"""geoledger's library API: an event-sourced double-entry ledger with TigerBeetle semantics."""

from ledger.errors import (
    ConcurrentWriterError,
    CorruptStoreError,
    InvalidInputError,
    LedgerError,
    StoreError,
    StoreURLError,
)
from ledger.ledger import BATCH_MAX, CommittedBatch, Ledger, VerifyReport
from ledger.types import (
    AMOUNT_MAX,
    Account,
    AccountBalance,
    AccountFlags,
    AccountState,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
    TransferState,
)

__all__ = [
    "AMOUNT_MAX",
    "BATCH_MAX",
    "Account",
    "AccountBalance",
    "AccountFlags",
    "AccountState",
    "CommittedBatch",
    "ConcurrentWriterError",
    "CorruptStoreError",
    "CreateAccountResult",
    "CreateTransferResult",
    "InvalidInputError",
    "Ledger",
    "LedgerError",
    "StoreError",
    "StoreURLError",
    "Transfer",
    "TransferFlags",
    "TransferState",
    "VerifyReport",
]

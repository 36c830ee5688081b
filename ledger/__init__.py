"""geoledger's library API: an event-sourced double-entry ledger with TigerBeetle semantics.

The data model (`ledger.types`) and errors load on their own; the `Ledger` application
and what it pulls in (the `eventsourcing` library, the stores) load on first use, so the
engine and the replication layer, which only need the data model, stay light to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.errors import (
    ConcurrentWriterError,
    CorruptStoreError,
    InvalidInputError,
    LedgerError,
    StoreError,
    StoreURLError,
)
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

if TYPE_CHECKING:
    from ledger.ledger import BATCH_MAX, CommittedBatch, Ledger, VerifyReport

_APPLICATION = ("BATCH_MAX", "CommittedBatch", "Ledger", "VerifyReport")


def __getattr__(name: str) -> Any:
    if name in _APPLICATION:
        from ledger import ledger as application

        return getattr(application, name)
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")


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

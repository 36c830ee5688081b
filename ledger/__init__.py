"""geoledger's library API: an event-sourced double-entry ledger with TigerBeetle semantics.

Everything a user needs is importable from here; `docs/api.md` documents each name. The
data model (`ledger.types`) and errors load on their own; the `Ledger` application and
what it pulls in (the `eventsourcing` library, the stores, the change feed) load on first
use, so the engine and the replication layer, which only need the data model, stay light
to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.errors import (
    ConcurrentWriterError,
    CorruptStoreError,
    InvalidInputError,
    LedgerClosedError,
    LedgerError,
    StoreError,
    StoreURLError,
)
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

if TYPE_CHECKING:
    from ledger.changes import Change, ChangeFeed
    from ledger.ledger import BATCH_MAX, Ledger, VerifyReport
    from ledger.replay import CommittedBatch

_LAZY = {
    "BATCH_MAX": "ledger.ledger", "Ledger": "ledger.ledger", "VerifyReport": "ledger.ledger",
    "Change": "ledger.changes", "ChangeFeed": "ledger.changes", "CommittedBatch": "ledger.replay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


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

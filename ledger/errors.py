"""Typed exceptions raised at the ledger's boundary.

Business outcomes are result codes (values); these exceptions are for misuse, bad
configuration and corrupt stores, where carrying on would risk the books.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every exception the ledger raises on purpose."""


class InvalidInputError(LedgerError, ValueError):
    """An API argument has the wrong type or is out of range; nothing was changed."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        where = ""
        if index is not None:
            where += f"item {index}: "
        if field is not None:
            where += f"{field}: "
        super().__init__(where + message)
        self.field = field
        self.index = index


class StoreURLError(LedgerError, ValueError):
    """A store URL is malformed or names a scheme geoledger does not know."""


class StoreError(LedgerError):
    """The durable store cannot be used (unreachable, not a ledger, wrong schema)."""


class CorruptStoreError(StoreError):
    """A stored record fails its checksum or the hash chain; names the first bad batch."""

    def __init__(self, message: str, *, batch: int | None = None):
        super().__init__(message if batch is None else f"batch {batch}: {message}")
        self.batch = batch


class StoreLockedError(StoreError):
    """The store is already open for writing (by this process or another): one writer per store."""


class ConcurrentWriterError(StoreError):
    """Another writer appended to the same store since this ledger last read it.

    Nothing of the refused batch was written; the ledger has reloaded the store, so the
    same call can simply be retried (ids make the retry safe)."""


class LedgerClosedError(LedgerError):
    """The ledger was closed: it neither reads nor writes any more (open it again)."""

"""One writer per region store: the lock lives in `ledger.lock`, which a `Ledger`'s SQLite
file uses too (region may import ledger, never the reverse)."""

from ledger.lock import WriterLock

__all__ = ["WriterLock"]

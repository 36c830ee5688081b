"""One writer per store: an exclusive, non-blocking `flock` held while a store is open.

Two processes appending to one store would each number records from their own view and
overwrite the other's: acknowledged transfers vanish on the next restart, and nothing
reports it. So a durable store takes this lock before it reads anything and keeps it until
it closes; a second opener, in this process or another, gets `StoreLockedError` at once,
naming the store and, when the holder wrote it, the holder's pid. The kernel drops the lock
when its holder dies (kill -9 included), so a restarted region never waits for a stale one.

Used by a `Ledger` on an SQLite file (`Ledger.open("sqlite:///...")`) and by the region
stores (`region.sqlite`, `region.cassandra`), which import it from here: region may import
ledger, never the reverse.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ledger.errors import StoreLockedError


class WriterLock:
    """The lock on `path` (created if need be; it is never deleted, which would race)."""

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = str(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            by = f"process {holder}" if holder else "another writer"
            raise StoreLockedError(
                f"{what} is already open for writing by {by} (lock {self.path}); "
                "a store has one writer: stop that one first") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


__all__ = ["WriterLock"]

"""A region's durable store on an SQLite file: ``records(idx, payload, chain)``.

WAL mode; ``fsync=True`` sets ``synchronous=FULL`` (every commit fsynced: a record survives
power loss), ``fsync=False`` sets NORMAL (the WAL reaches the disk at checkpoints: a
record survives the process being killed, which is what a runtime's crash is, not the
machine losing power). A flush is one transaction; if it fails (disk full, I/O error) it is
rolled back, so the file holds all of a flush or none of it, and its records stay pending.
The file has one writer: ``<path>.lock`` (see `region.lock`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from ledger.errors import StoreError
from region.buffered import BufferedRegionStore, Row
from region.lock import WriterLock


class SqliteRegionStore(BufferedRegionStore):
    """A region's records in the SQLite file at `path` (see the module docstring)."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        super().__init__(f"sqlite region store {path}")
        self.path = str(path)
        self.fsync = fsync
        self._lock = WriterLock(f"{self.path}.lock", self.where)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            self._lock.release()
            raise StoreError(f"{self.where}: cannot open ({e})") from e
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._conn.execute("CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, payload BLOB, chain BLOB)")
            rows = self._conn.execute("SELECT idx, payload, chain FROM records ORDER BY idx")
            self._open(rows)
        except sqlite3.Error as e:
            self._release()
            raise StoreError(f"{self.where}: cannot read it ({e})") from e
        except BaseException:
            self._release()
            raise

    def _write(self, rows: list[Row]) -> None:
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def _release(self) -> None:
        try:
            self._conn.close()
        finally:
            self._lock.release()


__all__ = ["SqliteRegionStore"]

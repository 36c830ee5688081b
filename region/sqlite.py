"""A region's durable store on an SQLite file: ``records(idx, payload, chain)`` and its snapshot.

WAL mode; ``fsync=True`` sets ``synchronous=FULL`` (every commit fsynced: a record survives
power loss), ``fsync=False`` sets NORMAL (the WAL reaches the disk at checkpoints: a
record survives the process being killed, which is what a runtime's crash is, not the
machine losing power). A flush is one transaction; if it fails (disk full, I/O error) it is
rolled back, so the file holds all of a flush or none of it, and its records stay pending.
The snapshot (`region.snapframe`) lives in ``snapshot_chunks(position, k, data)`` and
``snapshots(position, chain, chunks, length, digest)``; the header, the removal of the older
snapshot and of the records it covers are one transaction.
The file has one writer: ``<path>.lock`` (see `region.lock`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ledger.errors import StoreError
from ledger.stores.sqlite_file import use_large_pages
from region.buffered import BufferedRegionStore, Row
from region.lock import WriterLock
from region.snapframe import SnapshotHeader

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, payload BLOB, chain BLOB)",
    "CREATE TABLE IF NOT EXISTS snapshots (position INTEGER PRIMARY KEY, chain BLOB, chunks INTEGER, "
    "length INTEGER, digest BLOB)",
    "CREATE TABLE IF NOT EXISTS snapshot_chunks (position INTEGER, k INTEGER, data BLOB, PRIMARY KEY (position, k))",
)


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
            use_large_pages(self._conn)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            for ddl in _SCHEMA:
                self._conn.execute(ddl)
            found = self._conn.execute("SELECT position, chain, chunks, length, digest FROM snapshots "
                                       "ORDER BY position DESC LIMIT 1").fetchone()
            header = SnapshotHeader(*found) if found else None
            start = header.position if header else 0
            self._open(self._conn.execute("SELECT idx, payload, chain FROM records WHERE idx >= ? ORDER BY idx",
                                          (start,)), header)
            self._transaction(self._clean_up_after, start)
        except sqlite3.Error as e:
            self._release()
            raise StoreError(f"{self.where}: cannot read it ({e})") from e
        except BaseException:
            self._release()
            raise

    def _transaction(self, work: object, *args: object) -> None:
        self._conn.execute("BEGIN")
        try:
            work(*args)  # type: ignore[operator]
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def _write(self, rows: list[Row]) -> None:
        self._transaction(self._conn.executemany, "INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows)

    def _write_chunks(self, position: int, first: int, chunks: list[bytes]) -> None:
        self._transaction(self._conn.executemany, "INSERT OR REPLACE INTO snapshot_chunks VALUES (?, ?, ?)",
                          [(position, first + k, chunk) for k, chunk in enumerate(chunks)])

    def _commit_snapshot(self, header: SnapshotHeader, older: int | None) -> None:
        def commit() -> None:
            self._conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)", tuple(header))
            self._clean_up_after(header.position)
        self._transaction(commit)

    def _clean_up_after(self, position: int) -> None:
        """Only the snapshot at `position` (if there is one) and the records from it on stay:
        older snapshots, and chunks no header names (a snapshot torn by a crash), go."""
        self._conn.execute("DELETE FROM snapshots WHERE position != ?", (position,))
        self._conn.execute("DELETE FROM snapshot_chunks WHERE position NOT IN (SELECT position FROM snapshots)")
        self._conn.execute("DELETE FROM records WHERE idx < ?", (position,))

    def _read_chunks(self, header: SnapshotHeader) -> Iterator[bytes]:
        for (data,) in self._conn.execute("SELECT data FROM snapshot_chunks WHERE position = ? ORDER BY k",
                                          (header.position,)):
            yield bytes(data)

    def _release(self) -> None:
        try:
            self._conn.close()
        finally:
            self._lock.release()


__all__ = ["SqliteRegionStore"]

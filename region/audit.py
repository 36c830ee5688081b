"""A region's SQLite store read for an audit: read-only, no writer lock, damage reported.

The audit of a region whose node is gone (lost for good in a drill, or a dead server) is
done on its disk by someone else: the operator mounts the disk elsewhere and checks what it
holds, the way a region reads its own store when it starts (the same framing, hole, chain
and snapshot checks: `region.buffered`), with two differences that make it an audit:

* nothing is written: the file is opened read-only (`mode=ro`: no write-ahead checkpoint,
  no clean-up of a torn snapshot, no lock file written), so the audit cannot repair or
  alter the evidence; the writer lock is not taken, since a reader needs none and the
  writer is gone;
* a damaged record does not stop it: what a region's start refuses (`CorruptStoreError`)
  becomes the audit's finding, `verify_chain() == (False, index)` with `problem`, and the
  records before it are still checked (an entry damaged in place is found there first).

`StoreAudit` is a checker's `StoreView` (`simulator.result`): `audit_chain` judges it like
any region's store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import CorruptStoreError, StoreError
from region.buffered import BufferedRegionStore, Row
from region.snapframe import SnapshotHeader
from replication.log import Record


class StoreAudit(BufferedRegionStore):
    """The SQLite region store at `path`, as found on its disk (module docstring)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"sqlite region store {path} (read for an audit)")
        self.path = str(path)
        self.broken_at: int | None = None  # the first record that could not be read in the chain
        self.problem: str | None = None
        self._conn: sqlite3.Connection | None = None
        if not Path(self.path).is_file():
            self._broken(0, f"{self.where}: no such file: nothing of the region's records is left to audit")
            return
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            found = self._conn.execute("SELECT position, chain, chunks, length, digest FROM snapshots "
                                       "ORDER BY position DESC LIMIT 1").fetchone()
            header = SnapshotHeader(*found) if found else None
            start = header.position if header else 0
            rows = self._conn.execute("SELECT idx, payload, chain FROM records WHERE idx >= ? ORDER BY idx",
                                      (start,)).fetchall()
            self._open(((int(i), bytes(p), bytes(c)) for i, p, c in rows), header)
        except CorruptStoreError as e:
            self._broken(self.end, str(e))
        except sqlite3.Error as e:
            self._broken(self.end, f"{self.where}: cannot read it ({e})")
        finally:
            if self._conn is not None:
                self._conn.close()
            self._closed = True  # nothing to flush or release: it was never the writer

    def _broken(self, index: int, problem: str) -> None:
        self.broken_at, self.problem = index, problem

    def verify_chain(self) -> tuple[bool, int | None]:
        """The records read verify, and nothing stopped the reading: (True, None); else
        (False, the first bad record's index)."""
        ok, bad = super().verify_chain()
        if not ok:
            return ok, bad
        return (True, None) if self.broken_at is None else (False, self.broken_at)

    def _read_chunks(self, header: SnapshotHeader) -> Iterator[bytes]:
        assert self._conn is not None
        for (data,) in self._conn.execute("SELECT data FROM snapshot_chunks WHERE position = ? ORDER BY k",
                                          (header.position,)):
            yield bytes(data)

    def _write(self, rows: list[Row]) -> None:
        raise StoreError(f"{self.where}: read-only")

    def _write_chunks(self, position: int, first: int, chunks: list[bytes]) -> None:
        raise StoreError(f"{self.where}: read-only")

    def _commit_snapshot(self, header: SnapshotHeader, older: int | None) -> None:
        raise StoreError(f"{self.where}: read-only")

    def _release(self) -> None:
        pass


@dataclass
class UnreadableStore:
    """A store the audit could not open at all (a `StoreView` that fails at record 0)."""

    problem: str
    records: list[Record] = field(default_factory=list)

    def verify_chain(self) -> tuple[bool, int | None]:
        return False, 0


def read_for_audit(path: str | Path, store_url: str | None = None,
                   region: str = "") -> StoreAudit | UnreadableStore | BufferedRegionStore:
    """A region's store, read for an audit: its SQLite file at `path` (`StoreAudit`), or with
    `store_url` its Cassandra keyspace. A Cassandra keyspace does not live on the region's
    node (it is the database's): it is opened as the region opens it, then closed; damage
    that stops it opening is the audit's finding (`UnreadableStore`)."""
    if store_url is None:
        return StoreAudit(path)
    from region.cassandra import CassandraRegionStore

    try:
        disk = CassandraRegionStore(store_url, region)
    except StoreError as e:
        return UnreadableStore(str(e))
    disk.close()
    return disk


__all__ = ["StoreAudit", "UnreadableStore", "read_for_audit"]

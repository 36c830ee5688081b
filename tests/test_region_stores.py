"""Every region store passes `RegionStoreTestCase` (tests/support/region_store.py), plus what
only one store has: SQLite's rollback and cross-process lock, Cassandra's `fresh` open.

The Cassandra cases run against the real local Cassandra (`scripts/cassandra start`;
they fail instead of skipping under GEOLEDGER_REQUIRE_REAL=1), one keyspace per test,
dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import StoreError, StoreLockedError
from ledger.stores.sqlite_file import PAGE_SIZE
from region.cassandra import CassandraRegionStore, cassandra_settings, drop_region_keyspaces
from region.snapframe import SnapshotHeader
from region.sqlite import SqliteRegionStore
from region.store import MemoryRegionStore, RegionStore
from tests.support.realparts import CASSANDRA_HOST, CASSANDRA_PORT, require_cassandra
from tests.support.records import entry, every_record_kind, extreme_rows, same_payload
from tests.support.region_store import DurableRegionStoreTestCase, RegionStoreTestCase

CASSANDRA_URL = f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/glrs{uuid.uuid4().hex[:8]}?dc=dc1&rf=1"


class TestMemoryRegionStore(RegionStoreTestCase):
    durable = False

    def set_up(self) -> None:
        self.disk = MemoryRegionStore()

    def create_store(self) -> RegionStore:
        return self.disk  # the object is the disk: "reopening" finds it as the crash left it

    def test_a_store_rebuilt_from_its_records_is_the_same_store(self) -> None:
        new = MemoryRegionStore()
        for p in every_record_kind():
            new.append(p)
        new.corrupt(1)
        again = MemoryRegionStore(list(new.records), new.head)  # as the Ray runtime rebuilds one
        assert again.head == new.head and again.records == new.records
        assert again.scrub() == new.scrub() and again.verify_chain() == new.verify_chain()


class TestSqliteRegionStore(DurableRegionStoreTestCase):
    def set_up(self) -> None:
        self.path = self.tmp_path / "region.db"

    def create_store(self) -> RegionStore:
        return SqliteRegionStore(self.path)

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = sqlite3.connect(self.path, isolation_level=None)  # the raw file, as an operator would
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def stored_blob(self, index: int) -> bytes:
        (blob,), = self._sql("SELECT payload FROM records WHERE idx = ?", (index,))
        return bytes(blob)

    def write_stored(self, index: int, blob: bytes, chain: bytes) -> None:
        self._sql("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (index, blob, chain))

    def delete_stored(self, index: int) -> None:
        self._sql("DELETE FROM records WHERE idx = ?", (index,))

    def stored_chunks(self, position: int) -> list[bytes]:
        return [bytes(d) for (d,) in self._sql("SELECT data FROM snapshot_chunks WHERE position = ? ORDER BY k",
                                               (position,))]

    def write_chunk(self, position: int, k: int, data: bytes) -> None:
        self._sql("INSERT OR REPLACE INTO snapshot_chunks VALUES (?, ?, ?)", (position, k, data))

    def delete_chunk(self, position: int, k: int) -> None:
        self._sql("DELETE FROM snapshot_chunks WHERE position = ? AND k = ?", (position, k))

    def write_header(self, header: SnapshotHeader) -> None:
        self._sql("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)", tuple(header))

    @contextmanager
    def failing_writes(self, store: RegionStore) -> Iterator[None]:
        """A full disk, for real: SQLite may not grow the file past its current pages."""
        conn = store._conn  # type: ignore[attr-defined]
        (limit,), = conn.execute("PRAGMA max_page_count").fetchall()
        (pages,), = conn.execute("PRAGMA page_count").fetchall()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA max_page_count = {limit}")

    def test_a_failed_flush_is_rolled_back(self) -> None:
        s = self.filled()
        n = len(s.records)
        with self.failing_writes(s):
            for k in range(5):
                s.append(entry(10 + k, rows=extreme_rows(256)))  # 160 KB: more than the free pages
            with pytest.raises(StoreError, match="database or disk is full"):
                s.flush()
            assert self._sql("SELECT COUNT(*) FROM records") == [(n,)], "none of the failed flush is on disk"
        s.flush()
        assert self._sql("SELECT COUNT(*) FROM records") == [(n + 5,)]

    def test_another_process_is_refused_and_a_killed_writer_leaves_no_stale_lock(self) -> None:
        self.filled().close()
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys; from region.sqlite import SqliteRegionStore; "
             f"s = SqliteRegionStore({str(self.path)!r}); print('open', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
            with pytest.raises(StoreLockedError, match=f"{self.path}.* by process {holder.pid} "):
                self.create_store()
            os.kill(holder.pid, signal.SIGKILL)  # kill -9: the kernel drops its lock
            holder.wait(10)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(10)
        assert len(self.open().records) == len(every_record_kind())

    def test_a_new_file_gets_large_pages_and_a_file_from_before_keeps_its_own(self) -> None:
        self.filled().close()
        assert self._sql("PRAGMA page_size") == [(PAGE_SIZE,)]
        self.path = self.tmp_path / "old.db"
        with sqlite3.connect(self.path) as conn:  # as a region created before this release would be
            conn.execute("PRAGMA page_size=4096")
            conn.execute("PRAGMA journal_mode=WAL")
        self.filled().close()
        assert self._sql("PRAGMA page_size") == [(4096,)]
        assert all(same_payload(r.payload, p) for r, p in zip(self.open().records, every_record_kind(), strict=True))

    def test_a_file_that_is_not_a_store_is_a_store_error(self) -> None:
        self.path.write_bytes(b"not an sqlite file" * 100)
        with pytest.raises(StoreError, match="region store"):
            self.create_store()
        self.path.unlink()
        assert self.open().records == [], "and the failed open released the lock"


@pytest.mark.cassandra
class TestCassandraRegionStore(DurableRegionStoreTestCase):
    def set_up(self) -> None:
        require_cassandra()
        self.region = f"t{uuid.uuid4().hex[:12]}"
        self._raw: Any = None

    def tear_down(self) -> None:
        if self._raw is not None:
            self._raw.close()
        drop_region_keyspaces(CASSANDRA_URL, [self.region])

    def create_store(self) -> RegionStore:
        return CassandraRegionStore(CASSANDRA_URL, self.region)

    def _cql(self, cql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        from ledger.stores.cassandra import CassandraDatastore

        if self._raw is None:
            self._raw = CassandraDatastore(cassandra_settings(CASSANDRA_URL, self.region))
        return self._raw.execute(cql.format(ks=self._raw.keyspace), params)  # type: ignore[no-any-return]

    def stored_blob(self, index: int) -> bytes:
        (row,) = self._cql("SELECT payload FROM {ks}.records WHERE idx = %s", (index,))
        return bytes(row["payload"])

    def write_stored(self, index: int, blob: bytes, chain: bytes) -> None:
        self._cql("INSERT INTO {ks}.records (idx, payload, chain) VALUES (%s, %s, %s)", (index, blob, chain))

    def delete_stored(self, index: int) -> None:
        self._cql("DELETE FROM {ks}.records WHERE idx = %s", (index,))

    def stored_chunks(self, position: int) -> list[bytes]:
        rows = self._cql("SELECT k, data FROM {ks}.snapshot_chunks WHERE position = %s ALLOW FILTERING", (position,))
        return [bytes(r["data"]) for r in sorted(rows, key=lambda r: int(r["k"]))]

    def write_chunk(self, position: int, k: int, data: bytes) -> None:
        self._cql("INSERT INTO {ks}.snapshot_chunks (position, k, data) VALUES (%s, %s, %s)", (position, k, data))

    def delete_chunk(self, position: int, k: int) -> None:
        self._cql("DELETE FROM {ks}.snapshot_chunks WHERE position = %s AND k = %s", (position, k))

    def write_header(self, header: SnapshotHeader) -> None:
        self._cql("INSERT INTO {ks}.snapshots (position, chain, chunks, length, digest) VALUES (%s, %s, %s, %s, %s)",
                  tuple(header))

    @contextmanager
    def failing_writes(self, store: RegionStore) -> Iterator[None]:
        """A write timeout after one record of the flush has landed (Cassandra has no transaction)."""
        from eventsourcing.persistence import OperationalError

        ds = store._ds  # type: ignore[attr-defined]
        real = ds.execute_all

        def timing_out(statements: list[Any], *, what: str = "write") -> Any:
            real(statements[:1], what=what)
            raise OperationalError("injected: WriteTimeout after the first record")

        self.monkeypatch.setattr(ds, "execute_all", timing_out)
        try:
            yield
        finally:
            self.monkeypatch.setattr(ds, "execute_all", real)

    def test_fresh_empties_the_region_table(self) -> None:
        self.filled().close()
        fresh = CassandraRegionStore(CASSANDRA_URL, self.region, fresh=True)
        self._opened.append(fresh)
        assert fresh.records == [] and fresh.keyspace.endswith(self.region)

"""A region's durable store in Cassandra: one keyspace per region.

Records go to ``records(idx bigint PRIMARY KEY, payload blob, chain blob)`` in the keyspace
``<keyspace>_<region>``, created on first open with ``NetworkTopologyStrategy {dc: rf}``.
The base URL is the one `ledger.stores.cassandra.environment_from_url` accepts, e.g.
``cassandra://127.0.0.1:9042/geoledger?dc=dc1&rf=1`` (``consistency`` defaults to
LOCAL_QUORUM). A flush writes the queued records with a prepared, idempotent upsert,
`FLUSH_CONCURRENCY` at a time in index order, and returns once all are acknowledged; a
region restarted after a kill reopens the keyspace and recovers from it.

Kept in several datacentres (``cassandra://127.0.0.2:9042/geoledger?dc=changchun&replication=
changchun:1,beijing:1,shanghai:1&consistency=each_quorum``; `ledger.stores.cassandra_topology`
says what each consistency level promises when a datacentre is lost), a region lost with its
datacentre is restored by opening its keyspace through another: the same URL with that
datacentre's host and ``dc=``.

A failed flush can have written some of its records (Cassandra has no multi-partition
transaction); they stay queued and the next flush writes them again, which the upsert makes
harmless. A snapshot (`region.snapframe`) goes to ``snapshot_chunks((position, k), data)``
(a partition per chunk, so none grows large), then its header to ``snapshots``; only then are
the older snapshot and the records it covers deleted, one by one. What a crash leaves of
that (chunks without a header, records or headers below the newest header) is skipped on
open and deleted; those tables keep tombstones briefly (``gc_grace_seconds``), since a
deleted row that came back would be skipped and deleted again. One writer: a lock file per
keyspace under the temp directory (`region.lock`), which covers every process on this host,
not other hosts (see `writer_lock_path`).
A password in the URL never appears in an error message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.errors import StoreError, StoreURLError
from ledger.redact import redact
from region.buffered import BufferedRegionStore, Row
from region.lock import WriterLock
from region.snapframe import SnapshotHeader

FLUSH_CONCURRENCY = 64  # statements in flight per flush
CHUNK_READS = 8  # snapshot chunks (1 MiB each) read at once
_SHORT_GRACE = "WITH gc_grace_seconds = 600"


def region_keyspace(base: str, region: str) -> str:
    """``<base>_<region>``, lower-cased, anything but [a-z0-9_] replaced by ``_``."""
    ks = re.sub(r"[^a-z0-9_]", "_", f"{base}_{region}".lower())
    if len(ks) > 48:
        raise StoreURLError(f"keyspace {ks!r} for region {region!r} is longer than Cassandra's 48 characters")
    return ks


def cassandra_settings(url: str, region: str) -> Any:
    """Validate `url` (StoreURLError if malformed) and return settings for the region's keyspace."""
    from eventsourcing.utils import Environment

    from ledger.stores.cassandra import CassandraSettings, environment_from_url

    try:
        env = environment_from_url(url)
        settings = CassandraSettings.from_env(Environment(env=env))
    except (StoreURLError, StoreError, ValueError) as e:
        # ledger.stores.cassandra quotes the whole URL, password included: never pass that on
        raise type(e)(redact(str(e), url)) from None
    return dataclasses.replace(settings, keyspace=region_keyspace(settings.keyspace, region))


def is_cassandra_url(store: str | None) -> bool:
    return isinstance(store, str) and store.strip().lower().startswith("cassandra:")


def writer_lock_path(keyspace: str) -> Path:
    """Where this host's writers of `keyspace` take their lock (one directory per user)."""
    d = Path(tempfile.gettempdir()) / f"geoledger-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d / f"cassandra-{keyspace}.lock"


class CassandraRegionStore(BufferedRegionStore):
    """A region's records in its own Cassandra keyspace (see the module docstring).

    `fresh=True` empties the region's table on open (a new run reusing the keyspace).
    """

    def __init__(self, url: str, region: str, *, fresh: bool = False) -> None:
        from ledger.stores.cassandra import CassandraDatastore

        self.settings = cassandra_settings(url, region)
        self.keyspace: str = self.settings.keyspace
        super().__init__(f"cassandra region store {self.settings.where}/{self.keyspace}")
        self._lock = WriterLock(writer_lock_path(self.keyspace), self.where)
        self._ds: Any = None
        try:
            self._ds = CassandraDatastore(self.settings, create_keyspace=True)
            ks = self.keyspace
            self._ds.execute_ddl(
                f"CREATE TABLE IF NOT EXISTS {ks}.records (idx bigint PRIMARY KEY, payload blob, chain blob)")
            self._ds.execute_ddl(f"CREATE TABLE IF NOT EXISTS {ks}.snapshots (position bigint PRIMARY KEY, "
                                 f"chain blob, chunks int, length bigint, digest blob) {_SHORT_GRACE}")
            self._ds.execute_ddl(f"CREATE TABLE IF NOT EXISTS {ks}.snapshot_chunks (position bigint, k int, "
                                 f"data blob, PRIMARY KEY ((position, k))) {_SHORT_GRACE}")
            if fresh:
                for table in ("records", "snapshots", "snapshot_chunks"):
                    self._ds.execute_ddl(f"TRUNCATE {ks}.{table}")
            self._insert = self._ds.prepare(f"INSERT INTO {ks}.records (idx, payload, chain) VALUES (?, ?, ?)",
                                            idempotent=True)
            self._delete = self._ds.prepare(f"DELETE FROM {ks}.records WHERE idx = ?", idempotent=True)
            self._put_chunk = self._ds.prepare(f"INSERT INTO {ks}.snapshot_chunks (position, k, data) "
                                               "VALUES (?, ?, ?)", idempotent=True)
            self._get_chunk = self._ds.prepare(f"SELECT data FROM {ks}.snapshot_chunks WHERE position = ? AND k = ?",
                                               idempotent=True)
            self._drop_chunk = self._ds.prepare(f"DELETE FROM {ks}.snapshot_chunks WHERE position = ? AND k = ?",
                                                idempotent=True)
            headers = sorted((SnapshotHeader(int(h["position"]), bytes(h["chain"] or b""), int(h["chunks"] or 0),
                                             int(h["length"] or 0), bytes(h["digest"] or b""))
                              for h in self._ds.execute(f"SELECT position, chain, chunks, length, digest "
                                                        f"FROM {ks}.snapshots", what="loading the snapshot")),
                             reverse=True)
            rows = self._ds.execute(f"SELECT idx, payload, chain FROM {ks}.records", what="loading records")
            ordered = sorted(rows, key=lambda r: int(r["idx"]))
            self._open(((int(r["idx"]), bytes(r["payload"] or b""), bytes(r["chain"] or b"")) for r in ordered),
                       headers[0] if headers else None)
            self._clean_up([h.position for h in headers[1:]], [int(r["idx"]) for r in ordered
                                                               if int(r["idx"]) < self.base])
        except BaseException:
            self._release()
            raise

    def _write(self, rows: list[Row]) -> None:
        stmts = [self._insert.bind(row) for row in rows]
        for k in range(0, len(stmts), FLUSH_CONCURRENCY):
            self._ds.execute_all(stmts[k:k + FLUSH_CONCURRENCY], what="flushing records")

    def _write_chunks(self, position: int, first: int, chunks: list[bytes]) -> None:
        self._ds.execute_all([self._put_chunk.bind((position, first + k, c)) for k, c in enumerate(chunks)],
                             what="writing a snapshot")

    def _commit_snapshot(self, header: SnapshotHeader, older: int | None) -> None:
        self._ds.execute(f"INSERT INTO {self.keyspace}.snapshots (position, chain, chunks, length, digest) "
                         "VALUES (%s, %s, %s, %s, %s)", tuple(header), what="writing a snapshot")
        old = self._header
        if old is not None:  # the older snapshot: its header (it no longer counts), then its chunks
            self._ds.execute(f"DELETE FROM {self.keyspace}.snapshots WHERE position = %s", (old.position,),
                             what="dropping a snapshot")
            self._run(self._drop_chunk.bind((old.position, k)) for k in range(old.chunks))
        self._run(self._delete.bind((idx,)) for idx in range(self.base, header.position))

    def _clean_up(self, old_headers: list[int], old_records: list[int]) -> None:
        """What a crash left: headers below the newest, chunks no header names, records it covers."""
        ks = self.keyspace
        keep = self.base if self._header is not None else None
        stray = {(int(c["position"]), int(c["k"])) for c in self._ds.execute(
            f"SELECT position, k FROM {ks}.snapshot_chunks", what="loading the snapshot") if int(c["position"]) != keep}
        for position in old_headers:
            self._ds.execute(f"DELETE FROM {ks}.snapshots WHERE position = %s", (position,), what="dropping a snapshot")
        self._run(self._drop_chunk.bind(key) for key in sorted(stray))
        self._run(self._delete.bind((idx,)) for idx in old_records)

    def _run(self, statements: Any) -> None:
        batch: list[Any] = []
        for stmt in statements:
            batch.append(stmt)
            if len(batch) == FLUSH_CONCURRENCY:
                self._ds.execute_all(batch, what="compacting")
                batch = []
        if batch:
            self._ds.execute_all(batch, what="compacting")

    def _read_chunks(self, header: SnapshotHeader) -> Iterator[bytes]:
        for first in range(0, header.chunks, CHUNK_READS):
            got = self._ds.execute_all([self._get_chunk.bind((header.position, k))
                                        for k in range(first, min(first + CHUNK_READS, header.chunks))],
                                       what="loading the snapshot")
            for rows in got:
                if not rows:
                    return  # a chunk is missing: the reader counts what came
                yield bytes(rows[0]["data"] or b"")

    def _release(self) -> None:
        try:
            if self._ds is not None:
                self._ds.close()
        finally:
            self._lock.release()


def drop_region_keyspaces(url: str, regions: list[str]) -> None:
    """Drop `<keyspace>_<region>` for each region (test and operator clean-up)."""
    from ledger.stores.cassandra import CassandraDatastore

    if not regions:
        return
    ds = CassandraDatastore(cassandra_settings(url, regions[0]))
    try:
        for region in regions:
            ds.execute_ddl(f"DROP KEYSPACE IF EXISTS {cassandra_settings(url, region).keyspace}")
    finally:
        ds.close()


__all__ = ["FLUSH_CONCURRENCY", "CassandraRegionStore", "cassandra_settings", "drop_region_keyspaces",
           "is_cassandra_url", "region_keyspace", "redact", "writer_lock_path"]

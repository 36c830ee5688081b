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
harmless. One writer: a lock file per keyspace under the temp directory (`region.lock`),
which covers every process on this host, not other hosts (see `writer_lock_path`).
A password in the URL never appears in an error message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ledger.errors import StoreError, StoreURLError
from ledger.redact import redact
from region.buffered import BufferedRegionStore, Row
from region.lock import WriterLock

FLUSH_CONCURRENCY = 64  # statements in flight per flush


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
            if fresh:
                self._ds.execute_ddl(f"TRUNCATE {ks}.records")
            self._insert = self._ds.prepare(f"INSERT INTO {ks}.records (idx, payload, chain) VALUES (?, ?, ?)",
                                            idempotent=True)
            rows = self._ds.execute(f"SELECT idx, payload, chain FROM {ks}.records", what="loading records")
            ordered = sorted(rows, key=lambda r: int(r["idx"]))
            self._open((int(r["idx"]), bytes(r["payload"] or b""), bytes(r["chain"] or b"")) for r in ordered)
        except BaseException:
            self._release()
            raise

    def _write(self, rows: list[Row]) -> None:
        stmts = [self._insert.bind(row) for row in rows]
        for k in range(0, len(stmts), FLUSH_CONCURRENCY):
            self._ds.execute_all(stmts[k:k + FLUSH_CONCURRENCY], what="flushing records")

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

"""A region's durable record store in Cassandra: one keyspace per region.

The same interface and behaviour as `simulator.live.SqliteStore` (append / replace /
flush / close, records loaded on open, `CorruptStoreError` for an unreadable record), over
a table ``records(idx bigint PRIMARY KEY, payload blob, chain blob)`` in the keyspace
``<keyspace>_<region>``, created on first open with ``NetworkTopologyStrategy {dc: rf}``.
The base URL is the one `ledger.stores.cassandra.environment_from_url` accepts, e.g.
``cassandra://127.0.0.1:9042/geoledger?dc=dc1&rf=1`` (``consistency`` defaults to
LOCAL_QUORUM). `flush` writes the dirty records with a prepared statement, concurrently,
at that consistency, and returns once all are acknowledged: a region actor restarted
after a kill reopens the keyspace and recovers from it.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import threading
from typing import Any

from ledger.errors import StoreURLError
from replication.log import DurableStore, Entry
from simulator.live import load_records

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

    env = environment_from_url(url)
    settings = CassandraSettings.from_env(Environment(env=env))
    return dataclasses.replace(settings, keyspace=region_keyspace(settings.keyspace, region))


def is_cassandra_url(store: str | None) -> bool:
    return isinstance(store, str) and store.strip().lower().startswith("cassandra:")


class CassandraStore(DurableStore):
    """A region's durable store in its own Cassandra keyspace (see the module docstring).

    `fresh=True` empties the region's table on open (a new run reusing the keyspace).
    Appends (event-loop thread) and a flush (possibly a worker thread) may overlap: the
    pending records are swapped under a lock and flushes are serialised, as in SqliteStore.
    """

    def __init__(self, url: str, region: str, *, fresh: bool = False) -> None:
        super().__init__()
        from ledger.stores.cassandra import CassandraDatastore

        self.settings = cassandra_settings(url, region)
        self.keyspace: str = self.settings.keyspace
        self.where = f"cassandra {self.settings.where}/{self.keyspace}"
        self._mu = threading.Lock()  # guards _dirty
        self._io = threading.Lock()  # one flush at a time, and close
        self._closed = False
        self._dirty: dict[int, tuple[bytes, bytes]] = {}
        self._ds = CassandraDatastore(self.settings, create_keyspace=True)
        try:
            ks = self.keyspace
            self._ds.execute_ddl(
                f"CREATE TABLE IF NOT EXISTS {ks}.records (idx bigint PRIMARY KEY, payload blob, chain blob)")
            if fresh:
                self._ds.execute_ddl(f"TRUNCATE {ks}.records")
            self._insert = self._ds.prepare(f"INSERT INTO {ks}.records (idx, payload, chain) VALUES (?, ?, ?)",
                                            idempotent=True)
            self._load()
        except BaseException:
            self._ds.close()
            raise

    def _load(self) -> None:
        rows = self._ds.execute(f"SELECT idx, payload, chain FROM {self.keyspace}.records", what="loading records")
        ordered = sorted(rows, key=lambda r: int(r["idx"]))
        load_records(self, ((int(r["idx"]), r["payload"], bytes(r["chain"] or b"")) for r in ordered), self.where)

    def append(self, payload: object) -> None:
        blob = pickle.dumps(payload, protocol=5)
        with self._mu:
            super().append(payload)
            self._dirty[len(self.records) - 1] = (blob, self.head)

    def replace(self, index: int, payload: Entry) -> None:
        blob = pickle.dumps(payload, protocol=5)
        with self._mu:
            super().replace(index, payload)
            self._dirty[index] = (blob, self.records[index].chain)

    def corrupt(self, index: int) -> None:
        """Chaos: damage the stored record too, so a restart finds it damaged as well."""
        with self._mu:
            super().corrupt(index)
            rec = self.records[index]
            self._dirty[index] = (pickle.dumps(rec.payload, protocol=5), rec.chain)

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def flush(self) -> None:
        with self._io:
            with self._mu:
                dirty, self._dirty = self._dirty, {}
            if not dirty:
                return
            # One upsert per record (the last version of each index), FLUSH_CONCURRENCY in flight.
            stmts = [self._insert.bind((idx, blob, chain)) for idx, (blob, chain) in sorted(dirty.items())]
            for k in range(0, len(stmts), FLUSH_CONCURRENCY):
                self._ds.execute_all(stmts[k:k + FLUSH_CONCURRENCY], what="flushing records")

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._io:
            self._closed = True
            self._ds.close()

    def drop(self) -> None:
        """Drop the region's keyspace (and close)."""
        with self._mu:
            self._dirty = {}
        with self._io:
            self._ds.execute_ddl(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
        self.close()


def drop_region_keyspaces(url: str, regions: list[str]) -> None:
    """Drop `<keyspace>_<region>` for each region (test and operator clean-up)."""
    from ledger.stores.cassandra import CassandraDatastore

    first = cassandra_settings(url, regions[0]) if regions else None
    if first is None:
        return
    ds = CassandraDatastore(first)
    try:
        for region in regions:
            ds.execute_ddl(f"DROP KEYSPACE IF EXISTS {cassandra_settings(url, region).keyspace}")
    finally:
        ds.close()

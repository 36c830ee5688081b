"""The real-time driver of a `RegionNode`: wall clock, asyncio timers, a disk, a transport.

The deterministic simulator feeds a node virtual time; this driver feeds the same node
real time, so a Ray actor and an HTTP gateway run exactly the code the simulator proves.
Everything here is I/O plumbing: records are committed to SQLite before any reply or
message that depends on them leaves, and messages leave through a pluggable transport.

Two ways to drive the node:

* immediate (default): each `deliver` is handled at once and committed in its own
  transaction (one fsync per call). Simple, and what an HTTP gateway that already
  batches requests wants.
* `group_commit=True`: messages and client requests queue in an inbox; one step handles
  everything queued, commits it in one transaction *off the event loop* (a thread runs
  the fsync, so the loop keeps receiving), then releases the step's replies and sends.
  While a step's fsync runs, the next step's inputs pile up: one fsync per step, not per
  message — group commit falls out of the queue, as in a database's log writer.
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ledger.errors import CorruptStoreError
from replication.log import DurableStore, Entry, Record
from replication.messages import (
    ClientRequest,
    Corrupted,
    Message,
    Persist,
    PersistRepair,
    Reply,
    Report,
    Send,
    SetTimer,
    Tick,
)
from replication.node import UNAVAILABLE, NodeConfig, RegionNode
from replication.raft import RAFT_RECORDS
from replication.routing import RoutingTable

Transport = Callable[[int, Message, int], None]
"""(destination region, message, size in bytes) -> None; must not block."""


def load_records(store: DurableStore, rows: Iterable[tuple[int, bytes, bytes]], where: str) -> None:
    """Fill `store` from (index, pickled record, chain) rows in index order; refuse holes and junk."""
    for idx, payload, chain in rows:
        if idx != len(store.records):
            raise CorruptStoreError(f"{where}: record {len(store.records)} is missing")
        try:
            record = pickle.loads(payload)  # noqa: S301 - the region's own disk
        except Exception as e:
            raise CorruptStoreError(f"{where}: record {idx} cannot be read ({e})") from None
        if not isinstance(record, (Entry, RoutingTable, *RAFT_RECORDS)):
            raise CorruptStoreError(f"{where}: record {idx} is not a log record")
        store.records.append(Record(record, chain))
        store.head = chain


class SqliteStore(DurableStore):
    """A region's durable store on an SQLite file (WAL; synchronous=FULL, or NORMAL).

    `fsync=True` (FULL) fsyncs every commit: a record survives power loss. `fsync=False`
    (NORMAL) leaves the WAL to the OS until a checkpoint: a record survives the process
    being killed (what a runtime's crash is), not the machine losing power.
    Records are pickled: the file is the region's own disk, never read from elsewhere.
    `flush` commits everything appended since the last flush in one transaction. Appends
    (event-loop thread) and a flush (possibly a worker thread) may overlap: the pending
    list is swapped under a lock, and flushes are serialised, so a record is written
    exactly once and in a later transaction than any record appended before it.
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        super().__init__()
        self.path = str(path)
        self.fsync = fsync
        self._mu = threading.Lock()  # guards _dirty
        self._io = threading.Lock()  # one writer transaction at a time, and close
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._conn.execute("CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, payload BLOB, chain BLOB)")
        self._dirty: list[tuple[int, bytes, bytes]] = []
        rows = self._conn.execute("SELECT idx, payload, chain FROM records ORDER BY idx")
        load_records(self, rows, self.path)

    def append(self, payload: object) -> None:
        blob = pickle.dumps(payload, protocol=5)
        with self._mu:
            super().append(payload)
            self._dirty.append((len(self.records) - 1, blob, self.head))

    def replace(self, index: int, payload: Entry) -> None:
        blob = pickle.dumps(payload, protocol=5)
        with self._mu:
            super().replace(index, payload)
            self._dirty.append((index, blob, self.records[index].chain))

    def corrupt(self, index: int) -> None:
        """Chaos: damage the record on disk too, so a restart finds it damaged as well."""
        with self._mu:
            super().corrupt(index)
            rec = self.records[index]
            self._dirty.append((index, pickle.dumps(rec.payload, protocol=5), rec.chain))

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def flush(self) -> None:
        with self._io:
            with self._mu:
                dirty, self._dirty = self._dirty, []
            if not dirty:
                return
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", dirty)
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        with self._io:
            self._conn.close()


@dataclass
class LiveStats:
    """What operators watch: committed batches, reports, replication lag samples."""

    reports: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    handled: int = 0  # messages (peer, client, timer) handed to the node
    steps: int = 0  # group-commit steps (one transaction each at most)
    flushes: int = 0
    flush_ns: list[int] = field(default_factory=list)  # group-commit fsync wall times (last 10,000)


class LiveRegion:
    """One region node under real time. Create it inside a running asyncio loop.

    `clock` is the node's clock (ns). `time_scale` is wall seconds per node-clock second
    for the node's own timers: a runtime that runs a scenario faster than real time
    (`time_scale < 1`) feeds a clock that runs faster by the same factor, so the node sees
    its nominal heartbeat, lease and timeout durations. `on_entry` / `on_report` let a
    runtime collect lag samples and operator reports itself (e.g. to ship them off a
    process that may be killed); by default they land in `stats`.
    """

    def __init__(
        self,
        config: NodeConfig,
        store: DurableStore,
        transport: Transport,
        *,
        clock: Callable[[], int] = time.time_ns,
        request_timeout: float = 5.0,
        time_scale: float = 1.0,
        group_commit: bool = False,
        on_entry: Callable[[Entry], None] | None = None,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self.cfg = config
        self.store = store
        self.transport = transport
        self.clock = clock
        self.request_timeout = request_timeout
        self.time_scale = time_scale
        self.group_commit = group_commit
        self.on_entry = on_entry
        self.on_report = on_report
        self.stats = LiveStats()
        self._loop = asyncio.get_running_loop()
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self._next_batch = 1
        self._closed = False
        self._paused = False
        self._tick_missed = False
        self._held: list[Message] = []
        self._inbox: list[Message] = []
        self._wake = asyncio.Event()
        self._io: ThreadPoolExecutor | None = None
        self._runner: asyncio.Task[None] | None = None
        if store.records:
            self.node, effects = RegionNode.recover(config, store)
        else:
            self.node, effects = RegionNode(config), []
        self._apply(effects)
        if group_commit:
            self._io = ThreadPoolExecutor(1, thread_name_prefix=f"region{config.me}-fsync")
            self._runner = self._loop.create_task(self._run())
        self._loop.call_soon(self._tick)

    @property
    def region(self) -> int:
        return self.cfg.me

    @property
    def paused(self) -> bool:
        return self._paused

    def deliver(self, message: Message) -> None:
        """A message arrived (from a peer, or a client request)."""
        if self._closed:
            return
        if self.group_commit:
            self._inbox.append(message)
            if not self._paused:
                self._wake.set()
        elif self._paused:
            self._held.append(message)
        else:
            self.stats.handled += 1
            self._apply(self.node.handle(message, self.clock()))

    def deliver_many(self, messages: list[Message]) -> None:
        """Several messages at once (a transport's batch): one commit for all of them."""
        if self._closed or not messages:
            return
        if self.group_commit:
            self._inbox.extend(messages)
            if not self._paused:
                self._wake.set()
        elif self._paused:
            self._held.extend(messages)
        else:
            effects = self.node.handle_many(messages, self.clock())
            self.stats.handled += len(messages)
            self._apply(effects)

    async def submit(self, rows: np.ndarray, reads: np.ndarray | None = None) -> Reply:
        """Submit a client batch and wait for the node's answer (or UNAVAILABLE on timeout)."""
        batch_id = self._next_batch
        self._next_batch += 1
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiters[batch_id] = future
        request = ClientRequest(batch_id, rows) if reads is None else ClientRequest(batch_id, rows, reads)
        self.deliver(request)
        try:
            return await asyncio.wait_for(future, self.request_timeout)
        except TimeoutError:
            return Reply(batch_id, np.full(len(rows), UNAVAILABLE, np.uint32))
        finally:
            self._waiters.pop(batch_id, None)

    def pause(self, paused: bool) -> None:
        """Chaos: a slow region holds its inbox (and its timers), then drains it."""
        self._paused = paused
        if paused:
            return
        if self.group_commit:
            self._wake.set()
            return
        held, self._held = self._held, []
        self.deliver_many(held)
        if self._tick_missed:  # the timer chain stopped while paused: restart it
            self._tick_missed = False
            self._tick()

    def scrub(self) -> int:
        bad = self.store.scrub()
        if bad:
            self.deliver(Corrupted(bad))
        return len(bad)

    def close(self) -> None:
        """Stop handling anything; commit what is pending; close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            self._runner.cancel()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()  # waits for an fsync in flight (the store serialises them)
        if self._io is not None:
            self._io.shutdown(wait=True)

    # ------------------------------------------------------------------ group commit
    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._paused or self._closed or not self._inbox:
                continue
            batch, self._inbox = self._inbox, []
            effects = self.node.handle_many(batch, self.clock())
            self.stats.handled += len(batch)
            self.stats.steps += 1
            if self._persist(effects):
                flush = getattr(self.store, "flush", None)
                if flush is not None:
                    self.stats.flushes += 1
                    began = time.perf_counter_ns()
                    await self._loop.run_in_executor(self._io, flush)
                    self.stats.flush_ns.append(time.perf_counter_ns() - began)
                    del self.stats.flush_ns[:-10_000]
                    if self._closed:
                        return  # closed during the fsync: nothing leaves any more
            self._release(effects)
            if self._inbox:
                self._wake.set()

    # ------------------------------------------------------------------ effects
    def _tick(self) -> None:
        if self._closed:
            return
        if self.group_commit:
            self.deliver(Tick())
        elif self._paused:
            self._tick_missed = True
        else:
            self.stats.handled += 1
            self._apply(self.node.handle(Tick(), self.clock()))

    def _persist(self, effects: list[Any]) -> bool:
        """Append every record of `effects` to the store (not yet committed)."""
        persisted = False
        for e in effects:
            if type(e) is Persist:
                self.store.append(e.record)
                persisted = True
                self._note_entry(e.record)
            elif type(e) is PersistRepair:
                self.store.replace(e.index, e.entry)
                persisted = True
        return persisted

    def _apply(self, effects: list[Any]) -> None:
        # Disk first: nothing that depends on a record may leave before it is durable.
        if self._persist(effects):
            flush = getattr(self.store, "flush", None)
            if flush is not None:
                self.stats.flushes += 1
                flush()
        self._release(effects)

    def _release(self, effects: list[Any]) -> None:
        for e in effects:
            t = type(e)
            if t is Send:
                self.transport(e.to, e.message, e.size)
            elif t is Reply:
                waiter = self._waiters.get(e.batch_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(e)
            elif t is SetTimer:
                self._loop.call_later(e.after / 1e9 * self.time_scale, self._tick)
            elif t is Report:
                if self.on_report is not None:
                    self.on_report(e)
                else:
                    self.stats.reports.append((time.time(), e.kind, e.detail))

    def _note_entry(self, record: object) -> None:
        if type(record) is not Entry or record.origin == self.cfg.me:
            return
        if self.on_entry is not None:
            self.on_entry(record)
            return
        self.stats.lag_ms.append(max(0, self.clock() - record.created) / 1e6)
        del self.stats.lag_ms[:-10_000]

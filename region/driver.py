"""The real-time driver of a `RegionNode`: wall clock, asyncio timers, a disk, a transport.

The deterministic simulator feeds a node virtual time; this driver feeds the same node
real time, so a Ray actor and an HTTP gateway run exactly the code the simulator proves.
Everything here is I/O plumbing: records are made durable in the region's store
(`region.store.RegionStore`: memory, SQLite or Cassandra) before any reply or message
that depends on them leaves, and messages leave through a pluggable transport.

Two ways to drive the node:

* immediate (default): each `deliver` is handled at once and committed in its own
  transaction (one fsync per call). Simple, and what an HTTP gateway that already
  batches requests wants.
* `group_commit=True`: messages and client requests queue in an inbox; one step handles
  everything queued, commits it in one transaction *off the event loop* (a thread runs
  the fsync, so the loop keeps receiving), then releases the step's replies and sends.
  While a step's fsync runs, the next step's inputs pile up: one fsync per step, not per
  message — group commit falls out of the queue, as in a database's log writer.

Failing fast, telling the truth. A step's effects leave only after its records are durable,
so a failed flush must neither release them nor let a later step go ahead of them (a
later acknowledgement over a hole in the record sequence loses the earlier transfer on
restart). With group commit the driver retries the flush (`flush_retry_delays`; the store
keeps the records pending and rolls back a partial write) while the loop keeps receiving;
without it the flush runs on the event loop, so there is no retrying there. If the flush
still fails, or the node's step or the loop raises anything at all, the region *stops*:
it logs why, `failure` says so (the gateway's `/health` answers 503 with it), nothing is
handled or released any more, waiting clients get UNAVAILABLE (never applied: safe to
retry), and `on_fatal` is called — the gateway process exits so that its supervisor
restarts it, and the restart recovers from what is on disk. A region that stopped never
answers again; one that recovered never acknowledged anything it did not persist.

Checkpoints (`region.checkpoint`): once a step's records are durable, a `Checkpoint` effect
is taken — in immediate mode at once, with group commit on a thread of its own, so the
loop keeps stepping (and flushing) meanwhile — and the node is told when it is durable; a
`LoadBase` effect hands the node the store's snapshot to rebuild its books from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ledger.errors import StoreError
from region import checkpoint
from region.store import RegionStore
from replication.config import NodeConfig
from replication.log import Entry
from replication.messages import (
    Checkpoint,
    ClientRequest,
    Corrupted,
    LoadBase,
    Message,
    Persist,
    PersistRepair,
    Reply,
    Report,
    Send,
    SetTimer,
    Tick,
)
from replication.node import RegionNode
from replication.outcomes import UNAVAILABLE

Transport = Callable[[int, Message, int], None]
"""(destination region, message, size in bytes) -> None; must not block."""
FLUSH_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Seconds before each retry of a failed group-commit flush (1.55 s in all, beyond the 1 s
lease: a region whose disk stays full that long has lost its lease anyway)."""
log = logging.getLogger(__name__)


class RegionStopped(Exception):
    """The region stopped (see the module docstring); what a waiting client is told."""


@dataclass
class LiveStats:
    """What operators watch: committed batches, reports, replication lag samples."""

    reports: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # the last 1,000
    report_counts: dict[str, int] = field(default_factory=dict)  # every report since start, by kind
    lag_ms: list[float] = field(default_factory=list)
    handled: int = 0  # messages (peer, client, timer) handed to the node
    steps: int = 0  # group-commit steps (one transaction each at most)
    flushes: int = 0
    flush_ns: list[int] = field(default_factory=list)  # group-commit fsync wall times (last 10,000)
    checkpoints: int = 0  # taken and durable
    checkpoint_ns: list[int] = field(default_factory=list)  # wall time of each (last 1,000)
    checkpoint_errors: list[str] = field(default_factory=list)  # why one could not be taken (last 100)


class LiveRegion:
    """One region node under real time. Create it inside a running asyncio loop.

    `clock` is the node's clock (ns). `time_scale` is wall seconds per node-clock second
    for the node's own timers: a runtime that runs a scenario faster than real time
    (`time_scale < 1`) feeds a clock that runs faster by the same factor, so the node sees
    its nominal heartbeat, lease and timeout durations. `on_entry` / `on_report` let a
    runtime collect lag samples and operator reports itself (e.g. to ship them off a
    process that may be killed); by default they land in `stats`. `on_fatal` is told when
    the region stops for good (see the module docstring).
    """

    def __init__(
        self,
        config: NodeConfig,
        store: RegionStore,
        transport: Transport,
        *,
        clock: Callable[[], int] = time.time_ns,
        request_timeout: float = 5.0,
        time_scale: float = 1.0,
        group_commit: bool = False,
        on_entry: Callable[[Entry], None] | None = None,
        on_report: Callable[[Report], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        flush_retry_delays: tuple[float, ...] = FLUSH_RETRY_DELAYS,
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
        self.on_fatal = on_fatal
        self.flush_retry_delays = flush_retry_delays
        self.failure: str | None = None
        """Why the region stopped (see the module docstring), or None while it runs."""
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
        self._checkpointer: ThreadPoolExecutor | None = None
        self._runner: asyncio.Task[None] | None = None
        if store.end or store.has_snapshot:
            self.node, effects = RegionNode.recover(config, store)
        else:
            self.node, effects = RegionNode(config), []
        self._apply(effects)
        if group_commit:
            self._io = ThreadPoolExecutor(1, thread_name_prefix=f"region{config.me}-fsync")
            self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix=f"region{config.me}-checkpoint")
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
        self.deliver_many([message])

    def deliver_many(self, messages: list[Message]) -> None:
        """Several messages at once (a transport's batch): one commit for all of them."""
        if self._closed or self.failure is not None or not messages:
            return
        if self.group_commit:
            self._inbox.extend(messages)
            if not self._paused:
                self._wake.set()
        elif self._paused:
            self._held.extend(messages)
        else:
            self._step_now(messages)

    def _step_now(self, messages: list[Message]) -> None:
        """Immediate mode: one step, its flush on the loop, then its effects; stop on any error."""
        try:
            effects = self.node.handle_many(messages, self.clock())
            self.stats.handled += len(messages)
            self._apply(effects)
        except Exception as e:
            self._fail("a step failed", e)

    async def submit(self, rows: np.ndarray, reads: np.ndarray | None = None) -> Reply:
        """Submit a client batch and wait for the node's answer (or UNAVAILABLE on timeout)."""
        batch_id = self._next_batch
        self._next_batch += 1
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiters[batch_id] = future
        request = ClientRequest(batch_id, rows) if reads is None else ClientRequest(batch_id, rows, reads)
        if self.failure is not None:
            future.set_result(Reply(batch_id, np.full(len(rows), UNAVAILABLE, np.uint32)))
        self.deliver(request)
        try:
            return await asyncio.wait_for(future, self.request_timeout)
        except (TimeoutError, RegionStopped):  # never applied (stopped: never persisted): retry elsewhere
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
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True)  # a checkpoint in flight finishes (or fails) first
        try:
            self.store.close()  # waits for an fsync in flight (the store serialises them)
        except StoreError as e:  # its records were never acknowledged: the restart recovers without them
            log.error("region %d: closing its store failed: %s", self.cfg.me, e)
        if self._io is not None:
            self._io.shutdown(wait=True)

    # ------------------------------------------------------------------ group commit
    async def _run(self) -> None:
        try:
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
                    self.stats.flushes += 1
                    began = time.perf_counter_ns()
                    await self._flush_retrying()
                    self.stats.flush_ns.append(time.perf_counter_ns() - began)
                    del self.stats.flush_ns[:-10_000]
                    if self._closed:
                        return  # closed during the fsync: nothing leaves any more
                self._after_commit(effects)
                self._release(effects)
                if self._inbox:
                    self._wake.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # the loop must never die silently: stop the region, say why
            self._fail("the group-commit loop failed", e)

    async def _flush_retrying(self) -> None:
        """Flush off the loop; on a `StoreError` (the store rolled back and kept the records
        pending) wait and flush again, `flush_retry_delays` times, then give up (raise)."""
        for attempt, delay in enumerate((0.0, *self.flush_retry_delays)):
            if delay:
                await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                await self._loop.run_in_executor(self._io, self.store.flush)
            except StoreError as e:
                if attempt == len(self.flush_retry_delays):
                    raise
                log.warning("region %d: flush failed (attempt %d of %d), retrying: %s", self.cfg.me, attempt + 1,
                            len(self.flush_retry_delays) + 1, e)
                continue
            if attempt:
                log.warning("region %d: flush succeeded on attempt %d", self.cfg.me, attempt + 1)
            return

    def _fail(self, what: str, error: BaseException) -> None:
        """Stop the region for good (see the module docstring). Idempotent."""
        if self.failure is not None or self._closed:
            return
        self.failure = f"{what}: {type(error).__name__}: {error}"
        log.critical("region %d stopped: %s", self.cfg.me, self.failure, exc_info=error)
        self._inbox.clear()
        self._held.clear()
        for waiter in list(self._waiters.values()):
            if not waiter.done():
                waiter.set_exception(RegionStopped(self.failure))
        if self.on_fatal is not None:
            self.on_fatal(error)

    # ------------------------------------------------------------------ effects
    def _tick(self) -> None:
        if self._closed or self.failure is not None:
            return
        if self.group_commit:
            self.deliver(Tick())
        elif self._paused:
            self._tick_missed = True
        else:
            self._step_now([Tick()])

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
            self.stats.flushes += 1
            self.store.flush()
        self._after_commit(effects)
        self._release(effects)

    def _after_commit(self, effects: list[Any]) -> None:
        """What waits for the step's records to be durable: a rebuild, a checkpoint."""
        for e in effects:
            t = type(e)
            if t is LoadBase:
                self.node.rebuild(self.store.load_snapshot())  # type: ignore[arg-type]  # LoadBase: there is one
            elif t is Checkpoint:
                self._checkpoint(e)

    def _checkpoint(self, request: Checkpoint) -> None:
        began = time.perf_counter_ns()
        if self._checkpointer is None:
            self._note_checkpoint(request, began, checkpoint.perform(self.node, self.store, request))
            return
        future = self._loop.run_in_executor(self._checkpointer, checkpoint.take, self.cfg, self.store, request)
        future.add_done_callback(lambda f: self._checkpoint_finished(request, began, f))

    def _checkpoint_finished(self, request: Checkpoint, began: int, future: asyncio.Future[Any]) -> None:
        if self._closed:
            return
        try:
            snapshot = future.result()
        except Exception as e:  # noqa: BLE001 - any failure leaves the store as it was: say why, retry later
            self.node.checkpoint_failed(request.position)
            self._note_checkpoint(request, began, f"{type(e).__name__}: {e}")
            return
        self.node.checkpointed(snapshot.position, snapshot.heads())
        self._note_checkpoint(request, began, None)

    def _note_checkpoint(self, request: Checkpoint, began: int, error: str | None) -> None:
        if error is None:
            self.stats.checkpoints += 1
            self.stats.checkpoint_ns.append(time.perf_counter_ns() - began)
            del self.stats.checkpoint_ns[:-1000]
        else:
            self.stats.checkpoint_errors.append(f"checkpoint at record {request.position}: {error}")
            del self.stats.checkpoint_errors[:-100]

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
                self._note_report(e)

    def _note_report(self, report: Report) -> None:
        """Count every report; keep the last 1,000 (a peer that keeps sending what we refuse
        must not grow memory); log a refused peer message at its 1st, 2nd, 4th, ... time."""
        counts = self.stats.report_counts
        n = counts[report.kind] = counts.get(report.kind, 0) + 1
        if report.kind == "peer_message_refused" and n & (n - 1) == 0:
            log.warning("region %d refused a peer message (%d so far): %s", self.cfg.me, n, report.detail)
        if self.on_report is not None:
            self.on_report(report)
            return
        self.stats.reports.append((time.time(), report.kind, report.detail))
        del self.stats.reports[:-1000]

    def _note_entry(self, record: object) -> None:
        if type(record) is not Entry or record.origin == self.cfg.me:
            return
        if self.on_entry is not None:
            self.on_entry(record)
            return
        self.stats.lag_ms.append(max(0, self.clock() - record.created) / 1e6)
        del self.stats.lag_ms[:-10_000]

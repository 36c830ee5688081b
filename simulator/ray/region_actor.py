"""The region actor: one region of a Ray run, a `LiveRegion` plus its outgoing links.

Each region is a Ray actor hosting a `LiveRegion` (wall clock, asyncio timers, group
commit) over its own durable store (an SQLite file, or a Cassandra keyspace). It owns the
network layer for its outgoing links: a `simulator.network.Network` (the scenario's
latency matrix, jitter, bandwidth, partitions, loss, duplication, reordering — the same
model the deterministic runtime uses) decides *when* (or whether) each message arrives;
messages wait in a per-link queue and leave as one actor call per link per due instant
(≈3,000 actor calls/s is all a 2-core machine has).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chaos import Fault
from replication.config import MS, NodeConfig
from replication.log import Entry
from replication.messages import Report
from replication.state import settle_status
from replication.wire import WireError, decode_peer_frame, encode_peer_frame
from simulator.clock import T0, ClockState, S
from simulator.network import Network
from simulator.ray.session import current_node_id
from simulator.ray.timebase import Timebase, swallow, wall_ns
from simulator.runtime import transit_net

TELEMETRY_EVERY_S = 0.25
LINK_SLACK_NS = 2 * MS  # messages due within 2 ms of each other leave in one actor call
LOOP_PROBE_S = 0.05
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionSpec:
    index: int
    names: tuple[str, ...]
    config: NodeConfig
    rtt_ms: list[list[float]]
    jitter_ms: float
    bandwidth_mbps: float
    seed: int
    store_path: str
    time_scale: float
    duplicate: bool
    request_timeout_s: float
    offsets_ns: tuple[int, ...]
    fsync: bool = True
    store_url: str | None = None  # a Cassandra URL: the store is keyspace <keyspace>_<name>, not store_path


class RegionActor:
    """A region: a `LiveRegion` over its SQLite file, plus its outgoing network links.

    Constructed dormant: Ray re-runs the constructor when it restarts a killed actor, and
    a crashed region must stay dark for the fault's duration, so nothing happens until
    `start`. A dormant region drops messages and gives clients no answer. The constructor
    takes only small arguments (Ray keeps them for restarts; large ones would sit in the
    object store); the region's `RegionSpec` comes with each `start`, from the controller.
    """

    def __init__(self, index: int, name: str) -> None:
        self.me = index
        self.name = name
        self.spec: RegionSpec | None = None
        self.live: Any = None
        self.incarnation = 0
        self.pid = os.getpid()
        self.tb = Timebase(0, 1.0)
        self.clock = ClockState()
        self.faults: list[Fault] = []
        self.net: Network | None = None
        self.links: list[list[tuple[int, int, Any]]] = []
        self._order = itertools.count()
        self._next_due = 1 << 62
        self._kick: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lag: list[int] = []
        self._lag_t: list[int] = []  # scenario ns at which each lag sample was taken
        self._transit: list[tuple[int, int]] = []  # (scenario second, money in transit here)
        self._detections: list[tuple[float, int]] = []  # (scenario s, faulted region this one suspects)
        self._watch: set[int] = set()  # faulted regions whose suspicion here is still to be reported
        self._reports: list[tuple[float, int, str, dict[str, Any]]] = []
        self._sent_calls = 0
        self._refused_frames = 0
        self._pushed = (0, 0, 0, 0, 0)
        self.peers: list[Any] = []
        self.controller: Any = None
        self._call_ns: list[int] = []  # actor-call transit times of incoming link batches
        self._loop_lag_ns: list[int] = []  # event-loop overshoot: a CPU-starved process shows here

    @property
    def sp(self) -> RegionSpec:
        assert self.spec is not None, "region not started"
        return self.spec

    async def ping(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.live is not None, "incarnation": self.incarnation,
                "node": current_node_id()}

    async def start(self, spec: RegionSpec, peers: list[Any], controller: Any, t0_ns: int, faults: list[Fault],
                    clock: ClockState, incarnation: int) -> dict[str, Any]:
        """Open the store, replay it (`RegionNode.recover`) and start the node and its links."""
        from region.driver import LiveRegion
        from region.sqlite import SqliteRegionStore

        if self.live is not None:
            return {"pid": self.pid, "records": len(self.live.store.records), "replay_s": 0.0, "already": True}
        began = time.perf_counter()
        self.spec = spec
        self.peers, self.controller, self.incarnation = peers, controller, incarnation
        self.links = [[] for _ in spec.names]
        self.tb = Timebase(t0_ns, spec.time_scale)
        self.clock = clock
        store: Any
        if spec.store_url is not None:
            from region.cassandra import CassandraRegionStore

            # the first incarnation starts a run: empty what an earlier run left in the keyspace
            store = CassandraRegionStore(spec.store_url, self.name, fresh=incarnation == 0)
        else:
            Path(spec.store_path).parent.mkdir(parents=True, exist_ok=True)
            store = SqliteRegionStore(spec.store_path, fsync=spec.fsync)
        records = len(store.records)
        sp = spec
        self.net = Network(sp.rtt_ms, sp.jitter_ms, sp.bandwidth_mbps,
                           np.random.default_rng([sp.seed, self.me, incarnation]))
        self._set_faults(faults)
        self._kick = asyncio.Event()
        self.live = LiveRegion(
            sp.config, store, self._transport, clock=self._node_clock, request_timeout=sp.request_timeout_s,
            time_scale=sp.time_scale, group_commit=True, on_entry=self._on_entry, on_report=self._on_report,
        )
        replay_s = time.perf_counter() - began
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flusher()), loop.create_task(self._telemetry_loop()),
                       loop.create_task(self._loop_monitor()), loop.create_task(self._observer())]
        return {"pid": self.pid, "records": records, "replay_s": replay_s, "heads": list(self.live.node.heads),
                "at": self.tb.now_s()}

    # ------------------------------------------------------------------ clocks
    def _node_clock(self) -> int:
        return self.clock.at(self.tb.now_ns())

    async def set_clock(self, clock: ClockState) -> None:
        self.clock = clock

    # ------------------------------------------------------------------ client side
    async def submit(self, rows: np.ndarray, reads: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A client batch. None = no answer (the region is dark), as a dead data centre gives."""
        if self.live is None:
            return None
        reply = await self.live.submit(rows, reads)
        return reply.results, reply.balances

    # ------------------------------------------------------------------ network layer
    async def deliver(self, blob: bytes, sender: int, sent_ns: int = 0) -> None:
        """A peer link's batch, encoded once by the sender with the wire codec (Ray then moves
        one bytes object instead of serialising every message and array; nothing is
        unpickled), in the link's send order. A dormant region drops it; a frame that does
        not decode, or speaks for another region than its sender, is dropped and counted.
        `sent_ns` (sender's wall clock) measures the call's cost."""
        if self.live is None:
            return
        if sent_ns:
            self._call_ns.append(wall_ns() - sent_ns)
        try:
            messages = decode_peer_frame(blob, sender, len(self.sp.names))
        except WireError as e:
            self._refused_frames += 1
            log.warning("region %s: frame from region %d refused: %s", self.name, sender, e)
            return
        self.live.deliver_many(messages)

    async def set_faults(self, faults: list[Fault]) -> None:
        self._set_faults(faults)

    def _set_faults(self, faults: list[Fault]) -> None:
        self.faults = list(faults)
        if self.net is None:
            return
        self.net.set_faults(list(self.sp.names), self.faults)
        if self.sp.duplicate:  # on purpose: every message twice (the at-least-once test)
            n = len(self.sp.names)
            self.net.dup = [[1.0] * n for _ in range(n)]

    def _transport(self, to: int, message: Any, size: int) -> None:
        assert self.net is not None
        for arrival in self.net.transmit(self.me, to, size, self.tb.now_ns()):
            due = self.tb.wall_of(arrival / S)
            heapq.heappush(self.links[to], (due, next(self._order), message))
            if due < self._next_due and self._kick is not None:
                self._next_due = due
                self._kick.set()

    async def _flusher(self) -> None:
        """Send each link's due messages as one actor call (FIFO per link unless reordered)."""
        assert self._kick is not None
        while True:
            now = wall_ns()
            horizon = now + LINK_SLACK_NS
            nxt = 1 << 62
            for to, heap in enumerate(self.links):
                if heap and heap[0][0] <= horizon:
                    batch = []
                    while heap and heap[0][0] <= horizon:
                        batch.append(heapq.heappop(heap)[2])
                    self._send(to, batch)
                if heap:
                    nxt = min(nxt, heap[0][0])
            self._next_due = nxt
            self._kick.clear()
            timeout = None if nxt >= 1 << 62 else max(0.0, (nxt - wall_ns()) / S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    def _send(self, to: int, batch: list[Any]) -> None:
        copies = 2 if self.sp.duplicate else 1  # the whole call again: as a Ray retry would
        blob = encode_peer_frame(self.me, batch)  # one in-band blob: Ray moves bytes, not N objects
        for _ in range(copies):
            self._sent_calls += 1
            asyncio.ensure_future(swallow(self.peers[to].deliver.remote(blob, self.me, wall_ns())))

    # ------------------------------------------------------------------ chaos
    async def pause(self, paused: bool) -> None:
        if self.live is not None:
            self.live.pause(paused)

    async def corrupt(self, records: int, seed: int) -> list[int]:
        """Damage up to `records` stored entries (on disk too); the scrub finds them."""
        if self.live is None:
            return []
        store = self.live.store
        entries = [k for k, rec in enumerate(store.records) if type(rec.payload) is Entry]
        if not entries:
            return []
        rng = np.random.default_rng([seed, self.me])
        chosen = sorted(rng.choice(entries, size=min(len(entries), records), replace=False).tolist())
        for k in chosen:
            store.corrupt(k)
        store.flush()
        return chosen

    async def scrub(self) -> int:
        return self.live.scrub() if self.live is not None else 0

    async def settle_status(self) -> dict[str, Any] | None:
        """What `settle` waits for: the books' canonical digest, credit legs owed, catch-up."""
        return None if self.live is None else settle_status(self.live.node)

    async def status(self) -> dict[str, Any] | None:
        if self.live is None:
            return None
        st = self.live.node.status()
        st["paused"] = self.live.paused
        st["clock"] = self._node_clock()
        st["now_s"] = self.tb.now_s()
        return st

    # ------------------------------------------------------------------ telemetry
    def _on_entry(self, e: Entry) -> None:
        # Lag on the scenario clock: the origin's stamp, minus its (known) clock offset.
        created = e.created - T0 - self.sp.offsets_ns[e.origin]
        now = self.tb.now_ns()
        self._lag.append(now - created)
        self._lag_t.append(now)

    async def watch(self, target: int) -> None:
        """Report when this region's failure detector first suspects `target` (a timeline event)."""
        self._watch.add(target)

    async def unwatch(self, target: int) -> None:
        self._watch.discard(target)

    async def _observer(self) -> None:
        """Observation only (no effect on the node): failure detection, money in transit each second."""
        sp = self.sp
        tick = sp.config.tick_every / S * sp.time_scale
        n_units = sp.config.amap.n_units
        next_sample = max(0, int(np.ceil(self.tb.now_s())))
        while True:
            await asyncio.sleep(tick)
            if self.live is None:
                return
            node = self.live.node
            now_s = self.tb.now_s()
            if self._watch and not self.live.paused:
                clock = self._node_clock()
                for target in sorted(self._watch):
                    if target != self.me and node.suspects(target, clock):
                        self._detections.append((now_s, target))
                        self._watch.discard(target)
            if now_s >= next_sample:
                self._transit.append((next_sample, transit_net(node.engine, n_units)))
                next_sample = int(np.floor(now_s)) + 1

    def _on_report(self, rep: Report) -> None:
        self._reports.append((self.tb.now_s(), self.me, rep.kind, rep.detail))

    def _telemetry(self) -> dict[str, Any]:
        net = self.net
        stats = self.live.stats if self.live is not None else None
        now = (net.sent if net else 0, net.dropped if net else 0, net.bytes if net else 0,
               stats.handled if stats else 0, self._sent_calls)
        delta = tuple(a - b for a, b in zip(now, self._pushed, strict=True))
        self._pushed = now
        out = {"region": self.me, "incarnation": self.incarnation, "lag_ns": np.asarray(self._lag, np.int64),
               "lag_t_ns": np.asarray(self._lag_t, np.int64), "transit": self._transit, "detections": self._detections,
               "reports": self._reports, "sent": delta[0], "dropped": delta[1], "bytes": delta[2],
               "handled": delta[3], "calls": delta[4], "call_ns": np.asarray(self._call_ns, np.int64),
               "loop_lag_ns": np.asarray(self._loop_lag_ns, np.int64)}
        self._lag, self._lag_t, self._reports, self._call_ns, self._loop_lag_ns = [], [], [], [], []
        self._transit, self._detections = [], []
        return out

    async def _loop_monitor(self) -> None:
        """How late the event loop wakes up: on a shared 2-core machine this, not the
        design, is often what a message's latency is made of."""
        while True:
            began = time.perf_counter_ns()
            await asyncio.sleep(LOOP_PROBE_S)
            self._loop_lag_ns.append(time.perf_counter_ns() - began - int(LOOP_PROBE_S * S))

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            if self.controller is not None:
                asyncio.ensure_future(swallow(self.controller.telemetry.remote(self._telemetry())))

    # ------------------------------------------------------------------ the end
    async def finish(self, keep_store: bool) -> dict[str, Any] | None:
        """Stop, commit, and hand over the books, the store as re-read from disk, telemetry."""
        from region.sqlite import SqliteRegionStore

        if self.live is None:
            return None
        for t in self._tasks:
            t.cancel()
        self.live.close()
        node = self.live.node
        disk: Any
        if self.sp.store_url is not None:
            from region.cassandra import CassandraRegionStore

            disk = CassandraRegionStore(self.sp.store_url, self.name)  # kept: the keyspace is the operator's
        else:
            disk = SqliteRegionStore(self.sp.store_path)
        records = [(r.payload, r.chain) for r in disk.records]
        disk.close()
        if not keep_store and self.sp.store_url is None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.sp.store_path + suffix)
        snapshot = {
            "accounts": node.engine.accounts.copy(), "transfers": node.engine.transfers.copy(),
            "anomalies": list(node.anomalies), "heads": list(node.heads), "status": node.status(),
            "records": records, "telemetry": self._telemetry(), "pid": self.pid,
            "steps": self.live.stats.steps, "flushes": self.live.stats.flushes,
            "flush_ns": np.asarray(self.live.stats.flush_ns, np.int64),
        }
        self.live = None
        return snapshot



__all__ = ["TELEMETRY_EVERY_S", "RegionActor", "RegionSpec"]

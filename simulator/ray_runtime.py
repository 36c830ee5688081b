"""The Ray runtime: the same region nodes, scenarios and checkers on a real distributed runtime.

Where the deterministic runtime (`simulator.runtime`) proves the design under a virtual
clock, this one runs it for real: every region is a Ray actor hosting a `LiveRegion`
(wall clock, asyncio timers) over a `SqliteRegionStore` (its own file, fsynced), regions talk
through actor calls, clients are actors of their own that record what they saw, and a
region outage is `ray.kill` of the region's process. The verdicts come from the very same
checkers (`simulator.checkers.check_all`) and the output is the same contract
(`result.json`, `history.jsonl`, `final_state.json` via `simulator.run.write_outputs`).

Pieces (all async actors, `num_cpus=0`, so a 2-core machine hosts them all):

* `RegionActor` — one per region; `max_restarts=-1`. It owns the network layer for its
  outgoing links: a `simulator.network.Network` (the scenario's latency matrix, jitter,
  bandwidth, partitions, loss, duplication, reordering — the same model the deterministic
  runtime uses) decides *when* (or whether) each message arrives; messages wait in a
  per-link queue and leave as one actor call per link per due instant (batched: ≈3,000
  actor calls/s is all a 2-core machine has). The node group-commits: one fsync per step.
* `ClientActor` — one per region (co-located with it on a cluster). It replays the
  region's share of `make_plan(scenario, rng)`: each window's operations (the scenario's
  `batch_ms`, at least `min_batch_ms`) go as one batch at the window's end, with a
  timeout, retried with the same transfer ids
  (after a timeout: the next region in unit mode, as the deterministic clients do),
  and records invoke/complete times on the scenario clock.
* `Controller` — the chaos controller: applies the fault schedule at its wall-clock
  times (kills and restarts regions, pauses them, skews their clocks, corrupts their
  stores) and pushes the set of active link faults to every region, whose network layer
  then decides what passes. It also collects telemetry (lag samples, reports, counters)
  that regions push every 250 ms, so a killed region loses at most that much of it.

Crash: `ray.kill(region, no_restart=False)`. Ray restarts the process (≈1.5 s) but the
new incarnation stays *dormant* — it drops what it receives, as a dead data centre
would — until the fault's duration is over; then the controller `start`s it: it opens
its SQLite file, `RegionNode.recover` replays it, and it catches up from its peers
(heartbeats carry heads; it pulls what it lacks). RTO, restart, replay and catch-up are
measured on the wall clock.

Time: everything is expressed on a *scenario clock* that starts at the run's `t0`.
`time_scale` is wall seconds per scenario second: 1.0 runs in real time (RTO in the
result is wall-clock); 0.5 runs a 30 s scenario in 15 s — latencies, timers, timeouts
and the fault schedule all shrink together, and the offered load per wall second
doubles. Every figure in the result is in scenario units (`rto_wall_s` and
`ray.wall_s` are wall-clock).

Cluster: `address=` (or `RAY_ADDRESS`) joins an existing cluster; when the cluster
advertises a custom resource `region_<name>` for every region, each region actor and
its client are pinned to it (see `simulator/RAY.md`).

End of run: after the quiesce, the final state is taken once the replicas have settled
(same books, nothing owed; bounded by `settle_s`), because a real quiesce on a loaded
machine is not the exact one of the virtual clock. `RayRuntime` is the `simulator.drill`
runtime (live snapshots each scenario second). Cluster recipe: `simulator/RAY.md`.

Not reproducible by seed (real time is not), but the plan and the fault schedule are the
deterministic runtime's for the same seed, so the two runtimes can be compared run for run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from chaos import Fault, random_schedule
from ledger.types import CreateTransferResult
from replication.accounts import TRANSIT_BASE
from replication.log import DurableStore, Entry, Record
from replication.messages import Report
from replication.node import MS, UNAVAILABLE, NodeConfig
from replication.state import canonical_digest
from simulator.metrics import Histogram
from simulator.network import Network
from simulator.runtime import node_configs
from simulator.scenario import CITIES, Scenario
from simulator.workload import KIND_READ, Plan, build_rows, make_plan

S = 1_000_000_000
T0 = 1_700_000_000 * S  # the node clocks' epoch, as in the deterministic runtime
OUT_NONE, OUT_OK, OUT_FAIL, OUT_TIMEOUT = range(4)  # = simulator.runtime's
TIMEOUT_CODE = 2000
OK_CODES = (int(CreateTransferResult.OK), int(CreateTransferResult.EXISTS))
EXISTS = int(CreateTransferResult.EXISTS)
RESOURCE_PREFIX = "region_"
REGION_SHARE, CLIENT_SHARE = 0.5, 0.25  # of a node's `region_<name>` resource: both fit in 1 unit
TELEMETRY_EVERY_S = 0.25
LINK_SLACK_NS = 2 * MS  # messages due within 2 ms of each other leave in one actor call
MIN_BATCH_MS = 20.0  # client window floor: an actor call costs ~0.3 ms of CPU at each end
LOOP_PROBE_S = 0.05
LOCAL_SYSTEM_CONFIG = {"max_direct_call_object_size": 4 << 20}
"""A link batch or client batch of up to 4 MB goes inline with the call instead of through the
object store (a put, a location lookup and a fetch): one 1,000-row entry shipped to two peers
is ~260 KB, over Ray's 100 KB default. Applies to a Ray started here; a cluster has its own."""
SETTLE_S = 15.0
LIVE_DELAY_S = 0.6  # wall: a second's telemetry has arrived at the controller this long after it ends
HOMED_MODES = ("unit", "quorum")  # a client that gets no answer tries the next region
RETRY_BACKOFF_S = 0.1  # scenario seconds before an UNAVAILABLE row is retried (as the deterministic clients)

log = logging.getLogger(__name__)

_WALL_BASE = time.time_ns() - time.monotonic_ns()


def wall_ns() -> int:
    """Wall-clock ns that never steps (monotonic, anchored to the epoch once per process).

    Every process computes the same anchor to within microseconds on one machine, and to
    within NTP's error across a cluster; leases only ever compare durations on one node.
    """
    return time.monotonic_ns() + _WALL_BASE


def resource_name(region: str) -> str:
    """The custom resource that pins a region's actors to a cluster node."""
    return f"{RESOURCE_PREFIX}{region}"


@dataclass(frozen=True)
class Timebase:
    """The scenario clock: scenario time 0 is wall `t0_ns`; `scale` wall s per scenario s."""

    t0_ns: int
    scale: float

    def now_ns(self) -> int:
        return int((wall_ns() - self.t0_ns) / self.scale)

    def now_s(self) -> float:
        return (wall_ns() - self.t0_ns) / self.scale / S

    def wall_of(self, scenario_s: float) -> int:
        return self.t0_ns + int(scenario_s * S * self.scale)

    async def sleep_until(self, scenario_s: float) -> None:
        delay = (self.wall_of(scenario_s) - wall_ns()) / S
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class ClockState:
    """A region's node clock: `T0 + offset + e0 + (scenario - v0) * rate` (ns).

    Offsets are set from the start (as in the deterministic runtime: a stepping clock
    defeats any lease, NTP slews); a clock-skew fault changes the rate in its window.
    """

    offset_ns: int = 0
    v0: int = 0
    e0: int = 0
    rate: float = 1.0

    def at(self, scenario_ns: int) -> int:
        return T0 + self.offset_ns + self.e0 + int((scenario_ns - self.v0) * self.rate)

    def rebase(self, scenario_ns: int, rate: float) -> ClockState:
        return ClockState(self.offset_ns, scenario_ns, self.e0 + int((scenario_ns - self.v0) * self.rate), rate)


async def _swallow(ref: Any) -> None:
    """Await a fire-and-forget actor call so its failure (a dead peer) is read, not logged."""
    with contextlib.suppress(Exception):
        await ref


# ====================================================================== region actor
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
        self._events: list[dict[str, Any]] = []  # timeline events seen here (failure detection)
        self._watch: dict[int, float] = {}  # faulted region -> fault start (s), until suspected here
        self._reports: list[tuple[float, int, str, dict[str, Any]]] = []
        self._sent_calls = 0
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
        return {"pid": self.pid, "started": self.live is not None, "incarnation": self.incarnation}

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
    async def deliver(self, blob: bytes, sent_ns: int = 0) -> None:
        """A peer link's batch (pickled once by the sender: Ray then moves one bytes object
        instead of serialising every message and array), in the link's send order. A
        dormant region drops it. `sent_ns` (sender's wall clock) measures the call's cost."""
        if self.live is not None:
            if sent_ns:
                self._call_ns.append(wall_ns() - sent_ns)
            self.live.deliver_many(pickle.loads(blob))  # noqa: S301 - from our own peers

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
        blob = pickle.dumps(batch, protocol=5)  # one in-band blob: Ray moves bytes, not N objects
        for _ in range(copies):
            self._sent_calls += 1
            asyncio.ensure_future(_swallow(self.peers[to].deliver.remote(blob, wall_ns())))

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
        if self.live is None:
            return None
        node = self.live.node
        return {"digest": canonical_digest(node.engine), "outbox": node.credit_legs_owed,
                "catching_up": bool(node.catching_up)}

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

    async def watch(self, target: int, since: float) -> None:
        """Report when this region's failure detector first suspects `target` (a timeline event)."""
        self._watch[target] = since

    async def unwatch(self, target: int) -> None:
        self._watch.pop(target, None)

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
            suspects = getattr(node, "suspects", None)
            if self._watch and suspects is not None and not self.live.paused:
                clock = self._node_clock()
                for target, since in list(self._watch.items()):
                    if target != self.me and suspects(target, clock):
                        self._events.append({"t": round(now_s, 4), "event": "detected", "region": sp.names[self.me],
                                             "target": target, "detail": f"{sp.names[target]} suspected "
                                                                         f"{now_s - since:.3f} s after the fault"})
                        del self._watch[target]
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
               "lag_t_ns": np.asarray(self._lag_t, np.int64), "transit": self._transit, "events": self._events,
               "reports": self._reports, "sent": delta[0], "dropped": delta[1], "bytes": delta[2],
               "handled": delta[3], "calls": delta[4], "call_ns": np.asarray(self._call_ns, np.int64),
               "loop_lag_ns": np.asarray(self._loop_lag_ns, np.int64)}
        self._lag, self._lag_t, self._reports, self._call_ns, self._loop_lag_ns = [], [], [], [], []
        self._transit, self._events = [], []
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
                asyncio.ensure_future(_swallow(self.controller.telemetry.remote(self._telemetry())))

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


# ====================================================================== client actor
@dataclass(frozen=True)
class ClientSpec:
    region: int
    n_regions: int
    ops: np.ndarray  # global op indices of this region's clients, in plan order
    t: np.ndarray  # planned invoke times (scenario s)
    kind: np.ndarray
    rows: np.ndarray  # TRANSFER_DTYPE row per op (unused for reads)
    read_ids: np.ndarray  # account read, per op (reads only)
    starts: np.ndarray  # batch start offsets into `ops`
    batch_window: float
    duration: float
    end: float
    timeout_s: float
    max_attempts: int
    mode: str
    time_scale: float
    duplicate: bool


class ClientActor:
    """A region's clients: submit each window's batch, retry by the same ids, record history.

    Mirrors the deterministic runtime's client rules so the two histories mean the same:
    a reply completes the rows it answers (OK/EXISTS are acknowledgements); UNAVAILABLE
    rows are retried at the same region after 100 ms; no answer within the timeout (a dead
    or partitioned region) retries at the next region in unit mode (the same otherwise);
    after `max_attempts` an operation is given up. A region that is dark gives no answer
    at all: the client waits out its timeout, as it would for a data centre without power.
    """

    def __init__(self, spec: ClientSpec) -> None:
        from simulator.runtime import OpState

        self.spec = spec
        self.st = OpState.new(len(spec.ops))
        self.regions: list[Any] = []
        self.tb = Timebase(0, spec.time_scale)
        self.next_aid = 1
        self.tasks: set[asyncio.Task[None]] = set()
        self.lateness: list[float] = []
        self.dup_exists = 0
        self.dup_ok = 0
        self.pid = os.getpid()
        self.acked_by_second: dict[int, int] = {}

    async def ping(self) -> dict[str, Any]:
        return {"pid": self.pid}

    async def run(self, regions: list[Any], t0_ns: int, controller: Any = None) -> dict[str, Any]:
        sp = self.spec
        self.regions, self.tb = regions, Timebase(t0_ns, sp.time_scale)
        if controller is not None:
            pusher = asyncio.ensure_future(self._push_progress(controller))
        n = len(sp.ops)
        starts = sp.starts.tolist()
        w = sp.batch_window
        for k, a in enumerate(starts):
            b = starts[k + 1] if k + 1 < len(starts) else n
            at = min((np.floor(sp.t[a] / w) + 1) * w, sp.duration)
            await self.tb.sleep_until(at)
            self.lateness.append(self.tb.now_s() - at)
            self._spawn(self._attempt(np.arange(a, b), sp.region))
        await self.tb.sleep_until(sp.end)
        for task in list(self.tasks):
            task.cancel()
        if controller is not None:
            pusher.cancel()
        st = self.st
        left = np.nonzero(st.status == 0)[0]
        self._complete(left, np.full(len(left), TIMEOUT_CODE, np.int32), sp.region, OUT_TIMEOUT, sp.end)
        late = np.asarray(self.lateness) if self.lateness else np.zeros(1)
        return {"ops": sp.ops, "status": st.status, "attempts": st.attempts, "last_attempt": st.last_attempt,
                "result": st.result, "outcome": st.outcome, "complete_t": st.complete_t, "ok_count": st.ok_count,
                "served_by": st.served_by, "submit_late_p99_s": float(np.percentile(late, 99)),
                "submit_late_max_s": float(late.max()), "batches": len(starts), "attempts_made": self.next_aid - 1,
                "dup_exists": self.dup_exists, "dup_ok": self.dup_ok, "pid": self.pid}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _push_progress(self, controller: Any) -> None:
        """Acknowledged transfers per completion second, for a live view (`drill`)."""
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S * 2)
            if self.acked_by_second:
                batch, self.acked_by_second = self.acked_by_second, {}
                asyncio.ensure_future(_swallow(controller.client_progress.remote(self.spec.region, batch)))

    async def _attempt(self, idx: np.ndarray, target: int) -> None:
        sp, st = self.spec, self.st
        aid = self.next_aid
        self.next_aid += 1
        st.attempts[idx] += 1
        st.last_attempt[idx] = aid
        kind = sp.kind[idx]
        transfers = idx[kind != KIND_READ]
        reads = idx[kind == KIND_READ]
        rows = sp.rows[transfers]
        read_ids = sp.read_ids[reads].astype(np.uint64)
        deadline = wall_ns() + int(sp.timeout_s * sp.time_scale * S)
        handle = self.regions[target]
        ref = handle.submit.remote(rows, read_ids)
        if sp.duplicate:  # the same batch again, on purpose: the node must answer EXISTS
            self._spawn(self._duplicate(handle.submit.remote(rows, read_ids), transfers, deadline))
        reply = await self._answer(ref, deadline)
        if reply is None:
            delay = (deadline - wall_ns()) / S
            if delay > 0:
                await asyncio.sleep(delay)
            self._on_timeout(aid, transfers, reads, target)
        else:
            self._on_reply(reply[0], transfers, reads, target)

    @staticmethod
    async def _answer(ref: Any, deadline: int) -> Any:
        try:
            return await asyncio.wait_for(ref, max(0.0, (deadline - wall_ns()) / S))
        except Exception:  # timeout, or the region's process died under the call
            return None

    async def _duplicate(self, ref: Any, transfers: np.ndarray, deadline: int) -> None:
        reply = await self._answer(ref, deadline)
        if reply is not None:
            codes = reply[0].astype(np.int32)
            self.st.ok_count[transfers[codes == 0]] += 1
            self.dup_exists += int((codes == EXISTS).sum())
            self.dup_ok += int((codes == 0).sum())

    def _on_reply(self, results: np.ndarray, transfers: np.ndarray, reads: np.ndarray, r: int) -> None:
        st = self.st
        codes = results.astype(np.int32)
        st.ok_count[transfers[codes == 0]] += 1
        pending = st.status[transfers] == 0
        unavailable = codes == UNAVAILABLE
        done = pending & ~unavailable
        now = self.tb.now_s()
        self._complete(transfers[done], codes[done], r, None, now)
        retry = transfers[pending & unavailable]
        if len(retry):
            give_up = retry[st.attempts[retry] >= self.spec.max_attempts]
            self._complete(give_up, np.full(len(give_up), UNAVAILABLE, np.int32), r, OUT_FAIL, now)
            again = retry[st.attempts[retry] < self.spec.max_attempts]
            if len(again):
                self._spawn(self._retry(again, r))
        rd = reads[st.status[reads] == 0]
        self._complete(rd, np.zeros(len(rd), np.int32), r, None, now)

    async def _retry(self, ops: np.ndarray, r: int) -> None:
        await asyncio.sleep(RETRY_BACKOFF_S * self.spec.time_scale)
        live = ops[self.st.status[ops] == 0]
        if len(live):
            await self._attempt(live, r)

    def _on_timeout(self, aid: int, transfers: np.ndarray, reads: np.ndarray, r: int) -> None:
        st, sp = self.st, self.spec
        ops = np.concatenate([transfers, reads])
        live = ops[(st.status[ops] == 0) & (st.last_attempt[ops] == aid)]
        if not len(live):
            return
        out = live[st.attempts[live] >= sp.max_attempts]
        self._complete(out, np.full(len(out), TIMEOUT_CODE, np.int32), r, OUT_TIMEOUT, self.tb.now_s())
        again = live[st.attempts[live] < sp.max_attempts]
        if len(again):
            target = (r + 1) % sp.n_regions if sp.mode in HOMED_MODES else r
            self._spawn(self._attempt(again, target))

    def _complete(self, ix: np.ndarray, codes: np.ndarray, r: int, outcome: int | None, now: float) -> None:
        if not len(ix):
            return
        st = self.st
        st.status[ix] = 1
        st.result[ix] = codes
        st.complete_t[ix] = now
        st.served_by[ix] = r
        if outcome is None:
            st.outcome[ix] = np.where(np.isin(codes, OK_CODES), OUT_OK, OUT_FAIL)
        else:
            st.outcome[ix] = outcome
        acked = int(((st.outcome[ix] == OUT_OK) & (self.spec.kind[ix] != KIND_READ)).sum())
        if acked:
            sec = max(0, int(now))
            self.acked_by_second[sec] = self.acked_by_second.get(sec, 0) + acked


# ====================================================================== chaos controller
@dataclass(frozen=True)
class ControllerSpec:
    names: tuple[str, ...]
    faults: tuple[Fault, ...]
    duration: float
    time_scale: float
    seed: int
    offsets_ns: tuple[int, ...]
    regions: tuple[RegionSpec, ...]  # what each region needs at every (re)start


class Controller:
    """Applies the fault schedule on the wall clock and collects the regions' telemetry."""

    def __init__(self, spec: ControllerSpec) -> None:
        self.spec = spec
        self.tb = Timebase(0, spec.time_scale)
        self.regions: list[Any] = []
        self.active: list[Fault] = []
        self.down: set[int] = set()
        self.clocks = [ClockState(o) for o in spec.offsets_ns]
        self.incarnation = [0] * len(spec.names)
        self.pids: list[int] = [0] * len(spec.names)
        self.fault_log: list[tuple[float, str, Fault]] = []
        self.crashes: list[dict[str, Any]] = []
        self.lag: list[np.ndarray] = []
        self.lag_at: list[tuple[np.ndarray, int, np.ndarray]] = []  # (scenario ns, region, lag ns)
        self.transit: dict[int, dict[int, int]] = {}  # second -> region -> money in transit
        self.timeline: list[dict[str, Any]] = []
        self.watching: dict[int, float] = {}  # faulted region -> fault start, until a peer suspects it
        self.acked_per_s: dict[int, dict[int, int]] = {}  # region -> second -> acked transfers (live view)
        self.lag_max_ms: dict[int, dict[int, float]] = {}  # receiving region -> second -> worst lag (live view)
        self.call_us = Histogram()
        self.loop_lag_us = Histogram()
        self.reports: list[tuple[float, int, str, dict[str, Any]]] = []
        self.counters = dict.fromkeys(("sent", "dropped", "bytes", "handled", "calls"), 0)
        self.all_pids: set[int] = {os.getpid()}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[str] = []

    async def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def telemetry(self, t: dict[str, Any]) -> None:
        if len(t["lag_ns"]):
            self.lag.append(t["lag_ns"])
            self.lag_at.append((t["lag_t_ns"], t["region"], t["lag_ns"]))
            worst = self.lag_max_ms.setdefault(t["region"], {})
            for sec, ns in zip((t["lag_t_ns"] // S).tolist(), t["lag_ns"].tolist(), strict=True):
                worst[sec] = max(worst.get(sec, 0.0), ns / 1e6)
        for sec, value in t["transit"]:
            self.transit.setdefault(sec, {})[t["region"]] = value
        for ev in sorted(t["events"], key=lambda e: e["t"]):
            target = ev.pop("target")
            if target in self.watching:  # the first peer to suspect a faulted region
                del self.watching[target]
                self.timeline.append(ev)
                for h in self.regions:
                    asyncio.ensure_future(_swallow(h.unwatch.remote(target)))
        self.call_us.record(t["call_ns"] / 1000)
        self.loop_lag_us.record(np.maximum(t["loop_lag_ns"], 0) / 1000)
        self.reports.extend(t["reports"])
        for k in self.counters:
            self.counters[k] += t[k]

    def _start_args(self, r: int) -> tuple[Any, ...]:
        import ray

        me = ray.get_runtime_context().current_actor
        return (self.spec.regions[r], self.regions, me, self.tb.t0_ns, list(self.active), self.clocks[r],
                self.incarnation[r])

    async def start_all(self, regions: list[Any], t0_ns: int, pids: list[int]) -> list[dict[str, Any]]:
        self.regions, self.tb, self.pids = regions, Timebase(t0_ns, self.spec.time_scale), list(pids)
        self.all_pids.update(pids)
        return list(await asyncio.gather(*(regions[r].start.remote(*self._start_args(r))
                                           for r in range(len(regions)))))

    async def run(self) -> None:
        """The schedule: fault starts and ends (in fault order at equal times), scrubs."""
        sp = self.spec
        events: list[tuple[float, int, str, int]] = []
        for i, f in enumerate(sp.faults):
            events.append((f.at, 2 * i, "start", i))
            events.append((min(f.end(), sp.duration), 2 * i + 1, "end", i))
        events.append((sp.duration + 1.0, 1 << 30, "scrub", -1))  # as the deterministic runtime
        for at, _, what, i in sorted(events):
            await self.tb.sleep_until(at)
            try:
                if what == "start":
                    await self._fault_start(sp.faults[i])
                elif what == "end":
                    await self._fault_end(sp.faults[i])
                else:
                    for r in range(len(self.regions)):
                        if r not in self.down:
                            asyncio.ensure_future(_swallow(self.regions[r].scrub.remote()))
            except Exception as e:  # keep the schedule going; the run reports it
                self.errors.append(f"{what} {i}: {e!r}")
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _push_faults(self) -> None:
        for r, h in enumerate(self.regions):
            if r not in self.down:
                asyncio.ensure_future(_swallow(h.set_faults.remote(list(self.active))))

    async def _fault_start(self, f: Fault) -> None:
        import ray

        names = list(self.spec.names)
        self.active.append(f)
        now_s = self.tb.now_s()
        self.fault_log.append((now_s, "start", f))
        r = names.index(f.target[0])
        self.timeline.append({"t": round(now_s, 4), "event": "fault", "region": f.target[0], "fault": f.kind,
                              "target": list(f.target), "end": round(f.end(), 4)})
        if f.kind in ("crash", "partition", "pause"):
            self.watching[r] = now_s
            for p, h in enumerate(self.regions):
                if p != r and p not in self.down:
                    asyncio.ensure_future(_swallow(h.watch.remote(r, now_s)))
        if f.kind == "partition" and r not in self.down:
            st = await _status(self.regions[r])
            if st is not None and st.get("lease_until"):
                # the cut-off home stops writing when its lease runs out (on its own clock)
                fenced = st["now_s"] + max(0, st["lease_until"] - st["clock"]) / S
                self.timeline.append({"t": round(fenced, 4), "event": "fenced", "region": f.target[0],
                                      "detail": "write lease expired on the cut-off side"})
        if f.kind == "crash":
            self.timeline.append({"t": round(now_s, 4), "event": "fenced", "region": f.target[0],
                                  "detail": "process gone: a crashed home accepts no writes"})
            self.down.add(r)
            record = {"region": names[r], "at": f.at, "killed_at": self.tb.now_s(), "old_pid": self.pids[r],
                      "killed_wall_ns": wall_ns()}
            self.crashes.append(record)
            ray.kill(self.regions[r], no_restart=False)
            self._spawn(self._watch_restart(r, record))
        elif f.kind == "pause":
            await self.regions[r].pause.remote(True)
        elif f.kind == "clock-skew":
            self.clocks[r] = self.clocks[r].rebase(self.tb.now_ns(), 1 + f.param("drift_ppm") * 1e-6)
            await self.regions[r].set_clock.remote(self.clocks[r])
        elif f.kind == "corrupt":
            await self.regions[r].corrupt.remote(int(f.param("records")), self.spec.seed)
            self._spawn(self._scrub_later(r))
        self._push_faults()

    async def _fault_end(self, f: Fault) -> None:
        if f not in self.active:
            return
        self.active.remove(f)
        self.fault_log.append((self.tb.now_s(), "end", f))
        r = list(self.spec.names).index(f.target[0])
        self.timeline.append({"t": round(self.tb.now_s(), 4), "event": "healed", "region": f.target[0],
                              "detail": f"{f.kind} ended"})
        if f.kind == "crash":
            self.incarnation[r] += 1
            self._spawn(self._restart(r))
        elif f.kind == "pause":
            await self.regions[r].pause.remote(False)
        elif f.kind == "clock-skew":
            self.clocks[r] = self.clocks[r].rebase(self.tb.now_ns(), 1.0)
            await self.regions[r].set_clock.remote(self.clocks[r])
        self._push_faults()

    async def _scrub_later(self, r: int) -> None:
        await asyncio.sleep(0.2 * self.spec.time_scale)
        await _swallow(self.regions[r].scrub.remote())

    async def _watch_restart(self, r: int, record: dict[str, Any]) -> None:
        """When does Ray have the killed region's process back (dormant)?"""
        for _ in range(600):
            try:
                info = await asyncio.wait_for(self.regions[r].ping.remote(), 5.0)
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if info["pid"] != record["old_pid"]:
                record["new_pid"] = info["pid"]
                self.all_pids.add(info["pid"])
                record["process_back_wall_s"] = round((wall_ns() - record["killed_wall_ns"]) / S, 3)
                return
            await asyncio.sleep(0.05)

    async def _restart(self, r: int) -> None:
        """Fault over: start the new incarnation (replay from SQLite), then time its catch-up."""
        names = list(self.spec.names)
        record = next(c for c in reversed(self.crashes) if c["region"] == names[r])
        record["restart_at"] = self.tb.now_s()
        began = wall_ns()
        info = await self.regions[r].start.remote(*self._start_args(r))
        self.down.discard(r)
        self.pids[r] = info["pid"]
        self.all_pids.add(info["pid"])
        record.update(replayed_records=info["records"], replay_s=round(info["replay_s"], 4),
                      started_wall_s=round((wall_ns() - began) / S, 3), up_at=self.tb.now_s())
        await _swallow(self.regions[r].set_faults.remote(list(self.active)))
        # caught up = holds every entry its peers held when it came back
        peers = [p for p in range(len(names)) if p != r and p not in self.down]
        statuses = await asyncio.gather(*(_status(self.regions[p]) for p in peers))
        target = np.max([s["heads"] for s in statuses if s], axis=0) if any(statuses) else None
        if target is None:
            return
        while True:
            st = await _status(self.regions[r])
            if st is not None and np.all(np.asarray(st["heads"]) >= target):
                record["caught_up_at"] = self.tb.now_s()
                self.timeline.append({"t": round(record["caught_up_at"], 4), "event": "rejoined",
                                      "region": names[r],
                                      "detail": "caught up with the log heads its peers had at restart"})
                record["catch_up_wall_s"] = round((wall_ns() - began) / S, 3)
                record["down_wall_s"] = round((wall_ns() - record["killed_wall_ns"]) / S, 3)
                return
            await asyncio.sleep(0.05)

    async def collect(self) -> dict[str, Any]:
        for t in list(self.tasks):
            t.cancel()
        return {"fault_log": self.fault_log, "crashes": [{k: v for k, v in c.items() if not k.endswith("_ns")}
                                                         for c in self.crashes],
                "lag": self.lag, "lag_at": self.lag_at, "transit": self.transit, "timeline": self.timeline,
                "reports": self.reports, "counters": self.counters,
                "pids": sorted(self.all_pids), "errors": self.errors,
                "link_call_ms": self.call_us.summary_ms(), "event_loop_lag_ms": self.loop_lag_us.summary_ms()}

    async def client_progress(self, region: int, acked: dict[int, int]) -> None:
        mine = self.acked_per_s.setdefault(region, {})
        for sec, n in acked.items():
            mine[sec] = mine.get(sec, 0) + n

    async def live(self, second: int, seen: tuple[int, int]) -> dict[str, Any]:
        """What happened in scenario second `second` (acked, worst lag per region), and the
        timeline events that arrived since `seen` (counts of timeline entries and reports
        already handed out: both lists only grow), for a live display."""
        names = list(self.spec.names)
        events = self.timeline[seen[0]:] + _report_events(self.reports[seen[1]:], names)
        return {"t": second + 1,
                "throughput": {n: self.acked_per_s.get(r, {}).get(second, 0) for r, n in enumerate(names)},
                "lag_ms": {n: self.lag_max_ms.get(r, {}).get(second) for r, n in enumerate(names)},
                "events": sorted(events, key=lambda e: e["t"]), "seen": (len(self.timeline), len(self.reports))}

    async def take_telemetry(self, items: list[dict[str, Any]]) -> None:
        for t in items:
            await self.telemetry(t)


def transit_net(engine: Any, n_units: int) -> int:
    """Money in transit as one replica sees it (credits minus debits of the transit accounts)."""
    acc = engine.accounts
    sel = acc[(acc["id_lo"] >= TRANSIT_BASE) & (acc["id_lo"] < TRANSIT_BASE + n_units)]
    return int(sel["credits_posted_lo"].astype(np.int64).sum()) - int(sel["debits_posted_lo"].astype(np.int64).sum())


def _report_events(reports: list[tuple[float, int, str, dict[str, Any]]], names: list[str]) -> list[dict[str, Any]]:
    """Timeline events the nodes report themselves (as the deterministic runtime names them)."""
    kinds = {"promotion": "promoted", "ready": "writes_resumed", "divergence": "divergence"}
    out = []
    for t, r, kind, detail in reports:
        if kind in kinds:
            keep = {k: v for k, v in detail.items() if k in ("units", "version", "lost", "region")}
            out.append({"t": round(t, 4), "event": kinds[kind], "region": names[r],
                        "detail": json.dumps(keep, default=str)})
    return out


async def _status(handle: Any) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(handle.status.remote(), 2.0)
    except Exception:
        return None


# ====================================================================== the driver
@dataclass
class _EngineView:
    """What the checkers read of an engine: its account and transfer rows."""

    accounts: np.ndarray
    transfers: np.ndarray


@dataclass
class _NodeView:
    """A finished region's replica, as shipped back from its actor."""

    engine: _EngineView
    anomalies: list[tuple[int, int, int, int]]
    heads: list[int]
    status: dict[str, Any]


@dataclass
class _RunLog:
    """`simulator.runtime.RunLog`'s fields, filled from the controller's telemetry."""

    reports: list[tuple[float, int, str, dict]] = field(default_factory=list)
    faults: list[tuple[float, str, Fault]] = field(default_factory=list)
    lag_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lag_at: list[tuple[int, int, int]] = field(default_factory=list)  # (scenario ns, receiving region, lag ns)
    transit: list[tuple[float, list[int | None]]] = field(default_factory=list)  # (s, per-region transit net)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # measured failover steps
    diverged: set[int] = field(default_factory=set)
    events: int = 0
    wall_s: float = 0.0


@dataclass
class RaySimulation:
    """A finished Ray run, shaped like `simulator.runtime.Simulation` where the checkers,
    `simulator.run.metrics` and `simulator.run.write_outputs` read it."""

    s: Scenario
    seed: int
    regions: list[str]
    R: int
    plan: Plan
    ops: Any
    nodes: list[_NodeView | None]
    stores: list[DurableStore]
    cfgs: list[NodeConfig]
    log: _RunLog
    fault_windows: list[tuple[float, float, Fault]]
    faults: list[Fault]
    end: int
    net: SimpleNamespace
    ray: dict[str, Any]

    def digest(self) -> str:
        """Not a replay digest (real time is not reproducible): a fingerprint of the history."""
        h = hashlib.sha256()
        o = self.ops
        for a in (o.outcome, o.result, o.ok_count):
            h.update(np.ascontiguousarray(a).tobytes())
        for _t, r, kind, _ in self.log.reports:
            h.update(f"{r}|{kind}".encode())
        return h.hexdigest()


@dataclass
class RaySession:
    """The Ray this process uses: started here (and shut down here) or joined."""

    owned: bool
    address: str | None
    temp_dir: str | None
    head_pids: list[int]

    def leftovers(self, worker_pids: list[int] | tuple[int, ...] = ()) -> list[str]:
        """What a clean shutdown must not leave: live processes we started, our temp dir."""
        import psutil

        out = [f"pid {p} still running" for p in {*self.head_pids, *worker_pids}
               if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if self.temp_dir and os.path.exists(self.temp_dir):
            out.append(f"temp dir {self.temp_dir} still there")
        return out


def _ray_init_logging() -> dict[str, Any]:
    return {"logging_level": logging.ERROR, "log_to_driver": True, "configure_logging": True}


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                regions: tuple[str, ...] | list[str] = tuple(CITIES)) -> Iterator[RaySession]:
    """Use the Ray already initialised in this process, join `address` / `RAY_ADDRESS`, or
    start a local one (every core; a custom resource per region so placement is exercised
    exactly as on a cluster; Ray's files in a temp dir of ours, removed afterwards)."""
    import ray

    if ray.is_initialized():
        yield RaySession(False, address, None, [])
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    temp_dir = None
    if address:
        ray.init(address=address, **_ray_init_logging())
    else:
        temp_dir = tempfile.mkdtemp(prefix="glray-")  # short: Ray's socket paths must fit 107 bytes
        try:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False, _temp_dir=temp_dir,
                     resources={resource_name(r): 1000.0 for r in regions}, _system_config=LOCAL_SYSTEM_CONFIG,
                     **_ray_init_logging())
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    session = RaySession(True, address, temp_dir, _head_pids())
    try:
        yield session
    finally:
        ray.shutdown()
        if temp_dir:
            _wait_dead(session.head_pids, 10.0)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _head_pids() -> list[int]:
    try:
        import ray

        node: Any = ray._private.worker._global_node  # the only way to see our own raylet/GCS pids
        return [p.process.pid for procs in node.all_processes.values() for p in procs if p.process is not None]
    except Exception:
        return []


def _wait_dead(pids: list[int], timeout: float) -> None:
    import psutil

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        time.sleep(0.1)




def client_batches(plan: Plan, region: int, window: float) -> tuple[np.ndarray, np.ndarray]:
    """`plan.batches[region]` for another window length (the plan's operations unchanged)."""
    ops = np.nonzero(plan.region == region)[0]
    if not len(ops):
        return np.zeros(0, np.int64), ops
    w = np.floor(plan.t[ops] / window).astype(np.int64)
    return np.nonzero(np.diff(w, prepend=-1))[0], ops


def plan_and_faults(scenario: Scenario, seed: int) -> tuple[Plan, list[Fault]]:
    """The deterministic runtime's plan and fault schedule for this seed (same draws, same order)."""
    rng = np.random.default_rng(seed)
    plan = make_plan(scenario, rng)
    faults = list(scenario.chaos)
    if scenario.random_faults:
        faults += random_schedule(rng, list(scenario.regions), scenario.duration, scenario.random_faults)
    return plan, [f for f in faults if f.at < scenario.duration]


def shortened(scenario: Scenario, duration: float, quiesce: float | None = None) -> Scenario:
    """The scenario squeezed into `duration` seconds of load: every fault and the spend-all
    probe keep their relative place (a crash at 30% of the run stays at 30%). The rate is
    unchanged. For tests and quick drills; `time_scale` is the other way to go faster."""
    k = duration / scenario.duration
    chaos = tuple(replace(f, at=round(f.at * k, 3), duration=round(f.duration * k, 3)) for f in scenario.chaos)
    w = scenario.workload
    spend = replace(w.spend_all, at=round(w.spend_all.at * k, 3))
    return replace(scenario, duration=duration, quiesce=scenario.quiesce if quiesce is None else quiesce,
                   chaos=chaos, workload=replace(w, spend_all=spend))


def run_scenario_ray(
    scenario: Scenario,
    seed: int,
    *,
    address: str | None = None,
    out_dir: str | Path | None = None,
    time_scale: float = 1.0,
    progress: Callable[[str, float, float], None] | None = None,
    on_second: Callable[[dict[str, Any]], None] | None = None,
    duplicate: bool = False,
    min_batch_ms: float = MIN_BATCH_MS,
    fsync: bool = True,
    settle_s: float = SETTLE_S,
    num_cpus: int | None = None,
    store: str | None = None,
) -> tuple[RaySimulation, dict[str, Any]]:
    """Run `scenario` on Ray; return (a Simulation-like object, the result dict).

    The result has `simulator.run.run_scenario`'s shape with `"runtime": "ray"` and a
    `"ray"` section (wall time, crash/restart/replay/catch-up timings, actor counts), so
    `simulator.run.write_outputs(sim, result, out)` writes the same three files.

    `address`: join this cluster (else `RAY_ADDRESS`, else a local Ray is started and shut
    down here; an already initialised Ray in this process is used as is). `out_dir`: keep
    each region's SQLite file under `out_dir/stores/` (otherwise a temp dir, removed).
    `time_scale`: wall seconds per scenario second (module docstring). `progress(phase,
    done, total)` is called about every 0.25 s of the run, in scenario seconds.
    `on_second(view)` is called once per scenario second, ~0.6 s after it ends (telemetry
    lag), with `{"t", "horizon", "throughput": {region: acked}, "lag_ms": {region: worst |
    None}, "events": [timeline events since the last call]}` — what a live display shows.
    `duplicate`: every message (peer batches, and client submits) is sent twice on purpose.
    `min_batch_ms`: clients submit a window's operations as one batch; the window is the
    scenario's `batch_ms`, but never shorter than this (scenario ms): an actor call costs
    CPU at both ends, and 5 ms windows at 300 ops/s carry 1-2 operations each. The plan
    (operations, times, ids) is the same; only how they are grouped into calls changes.
    `fsync`: commit with `synchronous=FULL` (survives power loss); False = `NORMAL`
    (survives a killed process, which is what a Ray crash is; no fsync on the hot path).
    `settle_s`: after the quiesce, wait up to this many wall seconds for the replicas to
    settle (equal log heads, no credit leg owed, nobody catching up) before the final state
    is taken. The deterministic runtime's quiesce is exact; a real one on a loaded machine
    may need longer, and a check that fails only because the snapshot came too early says
    nothing about the design. How long it took is `ray.settle_s`; if it never settles the
    checkers judge the state as it is.
    `num_cpus`: for a local Ray started here (default: every core).
    `store`: each region's durable store. None or "sqlite": an SQLite file per region (as
    above); a Cassandra URL (``cassandra://host:9042/geoledger?dc=dc1&rf=1``): a keyspace
    ``<keyspace>_<region>`` per region (`region.cassandra.CassandraRegionStore`),
    emptied when the run starts and left in place after it; a killed region recovers from it.
    """
    opts = RayOptions(time_scale, duplicate, min_batch_ms, fsync, check_store(store))
    scenario = scenario.with_mode(None)
    wall0 = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, regions=scenario.regions) as session:
        run = _RayRun(scenario, seed, opts, out_dir)
        try:
            run.launch()
            run.wait(progress, on_second)
            run.settle(settle_s)
            run.collect()
        finally:
            run.teardown()
    sim = run.simulation(time.perf_counter() - wall0, session)
    return sim, ray_result(sim)


def check_store(store: str | None) -> str | None:
    """Validate a `store` argument: None for SQLite, else the Cassandra URL (StoreURLError if bad)."""
    from ledger.errors import StoreURLError

    if store is None or store.strip().lower() == "sqlite":
        return None
    from region.cassandra import cassandra_settings, is_cassandra_url

    if not is_cassandra_url(store):
        raise StoreURLError(f"unknown store {store!r}: expected 'sqlite' or a cassandra:// URL")
    cassandra_settings(store, "region")
    return store.strip()


def ray_result(sim: RaySimulation) -> dict[str, Any]:
    """The result dict, built exactly as `simulator.run.run_scenario` builds its own."""
    from simulator.checkers import check_all
    from simulator.run import history_summary, metrics

    scenario = sim.s
    invariants = check_all(sim)  # type: ignore[arg-type]
    finals = [canonical_digest(n.engine) if n is not None else None for n in sim.nodes]
    h = hashlib.sha256(sim.digest().encode())
    for d in finals:
        h.update(str(d).encode())
    mode = scenario.mode_label
    m = metrics(sim, invariants)  # type: ignore[arg-type]
    scale = sim.ray["time_scale"]
    for item in m["rto"]:
        item["rto_wall_s"] = round(item["rto_s"] * scale, 4) if item["rto_s"] is not None else None
    result = {
        "seed": sim.seed,
        "mode": mode,
        "runtime": "ray",
        "scenario": scenario.to_json(),
        "digest": h.hexdigest(),
        "invariants": invariants,
        "metrics": m,
        "history_summary": history_summary(sim),  # type: ignore[arg-type]
        "final_digests": dict(zip(sim.regions, finals, strict=True)),
        "replay": f"geoledger simulate {scenario.name} --seed {sim.seed} --mode {mode} --runtime ray",
        "ray": sim.ray,
    }
    result["violated"] = [k for k, v in invariants.items() if v["promised"] and not v["ok"]]
    return result


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray (see `run_scenario_ray`)."""

    time_scale: float = 1.0
    duplicate: bool = False
    min_batch_ms: float = MIN_BATCH_MS
    fsync: bool = True
    store_url: str | None = None  # None: SQLite files; else a Cassandra URL

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.min_batch_ms < 0:
            raise ValueError(f"min_batch_ms must be >= 0, got {self.min_batch_ms}")


class _RayRun:
    """One run's actors and their lifecycle (launch, wait, collect, teardown)."""

    def __init__(self, scenario: Scenario, seed: int, opts: RayOptions, out_dir: str | Path | None) -> None:
        import ray

        self.s, self.seed, self.opts = scenario, seed, opts
        self.scale, self.duplicate = opts.time_scale, opts.duplicate
        self.window = max(scenario.workload.batch_ms, opts.min_batch_ms) / 1000
        self.run_id = uuid.uuid4().hex[:10]
        self.names = list(scenario.regions)
        self.R = len(self.names)
        self.plan, self.faults = plan_and_faults(scenario, seed)
        self.cfgs = node_configs(scenario, self.plan, seed)
        self.keep = out_dir is not None
        if out_dir is not None:
            self.store_dir = str(Path(out_dir).resolve() / "stores")
            self.local_dir: str | None = None
        else:
            self.store_dir = str(Path(tempfile.gettempdir()) / f"geoledger-ray-{self.run_id}")
            self.local_dir = self.store_dir
        resources = ray.cluster_resources()
        self.pinned = all(resource_name(n) in resources for n in self.names)
        self.offsets = [0] * self.R
        for f in self.faults:
            if f.kind == "clock-skew":
                self.offsets[self.names.index(f.target[0])] += int(f.param("offset_ms") * MS)
        self.regions: list[Any] = []
        self.clients: list[Any] = []
        self.controller: Any = None
        self.t0_ns = 0
        self.client_refs: list[Any] = []
        self.run_ref: Any = None
        self.pids: set[int] = set()
        self.start_info: list[dict[str, Any]] = []
        self.client_out: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any] | None] = []
        self.ctl: dict[str, Any] = {}
        self.launch_s = 0.0
        self.settled: float | None = None

    def actor_name(self, role: str) -> str:
        return f"geoledger-{self.run_id}-{role}"

    def _placement(self, region: str, share: float) -> dict[str, Any]:
        return {"resources": {resource_name(region): share}} if self.pinned else {}

    def launch(self) -> None:
        import ray

        began = time.perf_counter()
        s = self.s
        region_cls = ray.remote(RegionActor)
        client_cls = ray.remote(ClientActor)
        ctl_cls = ray.remote(Controller)
        rtt = s.rtt_matrix()
        timeout = s.workload.client_timeout_ms / 1000
        specs = tuple(
            RegionSpec(r, tuple(self.names), self.cfgs[r], rtt, s.jitter_ms, s.bandwidth_mbps, self.seed,
                       str(Path(self.store_dir) / f"region-{r}-{name}.db"), self.scale, self.duplicate,
                       2 * timeout * self.scale + 1.0, tuple(self.offsets), self.opts.fsync,
                       self.opts.store_url)
            for r, name in enumerate(self.names))
        for r, name in enumerate(self.names):
            self.regions.append(region_cls.options(
                name=self.actor_name(f"region-{name}"), num_cpus=0, max_restarts=-1, max_task_retries=0,
                max_concurrency=10_000, **self._placement(name, REGION_SHARE)).remote(r, name))
        plan = self.plan
        for r, name in enumerate(self.names):
            starts, ops = client_batches(plan, r, self.window)
            spec_c = ClientSpec(r, self.R, ops, plan.t[ops], plan.kind[ops], build_rows(plan, ops),
                                plan.debit[ops].astype(np.uint64), starts, self.window, s.duration,
                                s.duration + s.quiesce, timeout, s.workload.max_attempts, s.mode, self.scale,
                                self.duplicate)
            self.clients.append(client_cls.options(
                name=self.actor_name(f"client-{name}"), num_cpus=0, max_concurrency=10_000,
                **self._placement(name, CLIENT_SHARE)).remote(spec_c))
        self.controller = ctl_cls.options(name=self.actor_name("controller"), num_cpus=0,
                                          max_concurrency=10_000).remote(
            ControllerSpec(tuple(self.names), tuple(self.faults), s.duration, self.scale, self.seed,
                           tuple(self.offsets), specs))
        pings = ray.get([a.ping.remote() for a in [*self.regions, *self.clients, self.controller]], timeout=120)
        self.pids.update(p["pid"] for p in pings)
        region_pids = [p["pid"] for p in pings[: self.R]]
        # t0 a little ahead: regions start (open stores, first heartbeats, leases) before load
        self.t0_ns = wall_ns() + int(0.5 * S)
        self.start_info = ray.get(self.controller.start_all.remote(self.regions, self.t0_ns, region_pids),
                                  timeout=60)
        self.run_ref = self.controller.run.remote()
        self.client_refs = [c.run.remote(self.regions, self.t0_ns, self.controller) for c in self.clients]
        self.launch_s = time.perf_counter() - began

    def wait(self, progress: Callable[[str, float, float], None] | None,
             on_second: Callable[[dict[str, Any]], None] | None = None) -> None:
        import ray

        tb = Timebase(self.t0_ns, self.scale)
        end = self.s.duration + self.s.quiesce
        horizon = int(np.ceil(end))
        pending = [*self.client_refs, self.run_ref]
        second, seen = 0, (0, 0)

        def emit(upto: float) -> None:
            nonlocal second, seen
            while on_second is not None and second < horizon and second + 1 <= upto:
                view = ray.get(self.controller.live.remote(second, seen), timeout=30)
                seen = view.pop("seen")
                on_second({**view, "horizon": end})
                second += 1

        while True:
            now = tb.now_s()
            if progress is not None:
                phase = "load" if now < self.s.duration else "quiesce"
                progress(phase, min(max(now, 0.0), end), end)
            emit(now - LIVE_DELAY_S / self.scale)
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
            for ref in ready:
                ray.get(ref)  # an actor that failed raises here, early
            if now >= end and not [r for r in pending if r in self.client_refs]:
                break
            if now >= end + 30 * self.scale + 30:
                raise TimeoutError("clients did not finish 30 s after the scenario's end")
            time.sleep(min(0.25, max(0.01, (tb.wall_of(end) - wall_ns()) / S)))
        self.client_out = ray.get(self.client_refs, timeout=60)
        time.sleep(LIVE_DELAY_S)
        emit(float(horizon))

    def settle(self, limit_s: float) -> None:
        """Wait (bounded) until every replica holds the same books and owes nothing."""
        import ray

        began = time.perf_counter()
        while True:
            sts = []
            for ref in [r.settle_status.remote() for r in self.regions]:
                try:
                    sts.append(ray.get(ref, timeout=5))
                except ray.exceptions.RayError:
                    sts.append(None)
            if all(st is not None for st in sts):
                digests = {st["digest"] for st in sts}
                if len(digests) == 1 and not any(st["outbox"] or st["catching_up"] for st in sts):
                    self.settled = time.perf_counter() - began
                    return
            if time.perf_counter() - began >= limit_s:
                return
            time.sleep(0.2)

    def collect(self) -> None:
        import ray

        refs = [r.finish.remote(self.keep) for r in self.regions]
        snaps: list[dict[str, Any] | None] = []
        for ref in refs:
            try:
                snaps.append(ray.get(ref, timeout=60))
            except ray.exceptions.RayError:
                snaps.append(None)
        self.snapshots = snaps
        tel = [s["telemetry"] for s in snaps if s is not None]
        ray.get(self.controller.take_telemetry.remote(tel), timeout=30)
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(self.run_ref, timeout=10)
        self.ctl = ray.get(self.controller.collect.remote(), timeout=30)
        self.pids.update(self.ctl["pids"])
        self.pids.update(s["pid"] for s in snaps if s is not None)

    def teardown(self) -> None:
        import ray

        for a in [*self.clients, *self.regions, self.controller]:
            if a is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
        if self.local_dir:
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def _group_commit(self) -> dict[str, Any]:
        """Steps, commits and commit times of the final incarnations (a killed one's are lost)."""
        snaps = [x for x in self.snapshots if x]
        hist = Histogram()
        for x in snaps:
            hist.record(x["flush_ns"] / 1000)
        return {"steps": sum(x["steps"] for x in snaps), "commits": sum(x["flushes"] for x in snaps),
                "commit_ms": hist.summary_ms(), "sync": "FULL (fsync)" if self.opts.fsync else "NORMAL"}

    def simulation(self, wall_s: float, session: RaySession) -> RaySimulation:
        from simulator.runtime import OpState

        plan = self.plan
        ops = OpState.new(plan.n_ops)
        for c in self.client_out:
            ix = c["ops"]
            for name in ("status", "attempts", "last_attempt", "result", "outcome", "complete_t", "ok_count",
                         "served_by"):
                getattr(ops, name)[ix] = c[name]
        nodes: list[_NodeView | None] = []
        stores: list[DurableStore] = []
        for snap in self.snapshots:
            if snap is None:
                nodes.append(None)
                stores.append(DurableStore())
                continue
            nodes.append(_NodeView(_EngineView(snap["accounts"], snap["transfers"]), snap["anomalies"],
                                   snap["heads"], snap["status"]))
            recs = [Record(p, c) for p, c in snap["records"]]
            stores.append(DurableStore(recs, recs[-1].chain if recs else bytes(32)))
        ctl = self.ctl
        reports = sorted(ctl["reports"], key=lambda x: x[0])
        diverged: set[int] = set()
        for _, _, kind, detail in reports:
            if kind == "divergence":
                diverged.update(detail["transfer_ids"])
        lag = np.concatenate(ctl["lag"]) if ctl["lag"] else np.zeros(0, np.int64)
        counters = ctl["counters"]
        lag_at = [(max(0, int(t)), r, int(v)) for ts, r, vs in ctl["lag_at"]
                  for t, v in zip(ts.tolist(), vs.tolist(), strict=True)]
        lag_at.sort()
        secs = sorted(ctl["transit"])
        transit = [(float(k), [ctl["transit"][k].get(r) for r in range(self.R)]) for k in secs]
        timeline = list(ctl["timeline"]) + _report_events(reports, self.names)
        runlog = _RunLog(reports, ctl["fault_log"], lag, lag_at, transit, timeline, diverged,
                         int(counters["handled"]), round(wall_s, 3))
        s = self.s
        windows = [(f.at, min(f.end(), s.duration), f) for f in self.faults]
        late = [c["submit_late_p99_s"] for c in self.client_out]
        info = {
            "time_scale": self.scale, "address": session.address, "pinned_by_resource": self.pinned,
            "wall_s": round(wall_s, 3), "launch_s": round(self.launch_s, 3), "duplicate": self.duplicate,
            "settle_s": None if self.settled is None else round(self.settled, 3),
            "client_window_ms": round(self.window * 1000, 3), "fsync": self.opts.fsync,
            "store": "cassandra" if self.opts.store_url else "sqlite",
            "actors": {"regions": self.R, "clients": len(self.clients), "controller": 1},
            "pids": sorted(self.pids), "crashes": ctl["crashes"], "controller_errors": ctl["errors"],
            "actor_calls": int(counters["calls"]),
            "link_call_ms": ctl["link_call_ms"], "event_loop_lag_ms": ctl["event_loop_lag_ms"],
            "client_submit_late_p99_s": round(max(late), 4) if late else None,
            "client_submit_late_max_s": round(max(c["submit_late_max_s"] for c in self.client_out), 4)
            if self.client_out else None,
            "dup_client_replies": {"exists": sum(c["dup_exists"] for c in self.client_out),
                                   "ok": sum(c["dup_ok"] for c in self.client_out)},
            "group_commit": self._group_commit(),
            "start": [{k: v for k, v in i.items() if k != "heads"} for i in self.start_info],
            "stores_kept": self.store_dir if self.keep else None,
        }
        return RaySimulation(s, self.seed, self.names, self.R, plan, ops, nodes, stores, self.cfgs, runlog, windows,
                             self.faults, int((s.duration + s.quiesce) * S),
                             SimpleNamespace(sent=int(counters["sent"]), dropped=int(counters["dropped"]),
                                             bytes=int(counters["bytes"])), info)


class RayRuntime:
    """`geoledger drill --runtime ray`: the drill's `Runtime` protocol (`simulator.drill`) on Ray.

    A live runtime: it runs in real time and feeds the drill display one snapshot per
    scenario second (acked writes per region, worst replication lag, events, the phase), built
    with the drill's and report's own helpers from the same timeline dicts that end up in
    `metrics.series.timeline`, so the live view and the final report cannot disagree.
    """

    name = "ray"
    live = True

    def __init__(self, address: str | None = None, time_scale: float = 1.0, **options: Any) -> None:
        self.address = address
        self.time_scale = time_scale
        self.options = options

    def run(self, scenario: Any, seed: int, out: Path, on_progress: Callable[[Any], None]) -> Path:
        from simulator.run import write_outputs

        live = _LiveDrillView(scenario, on_progress)
        sim, result = run_scenario_ray(scenario, seed, address=self.address, time_scale=self.time_scale,
                                       on_second=live.second, **self.options)
        write_outputs(sim, result, Path(out))  # type: ignore[arg-type]
        return Path(out) / "result.json"


class _LiveDrillView:
    """Turns `on_second` views into `simulator.drill.Snapshot`s (phase, faults in force)."""

    def __init__(self, scenario: Scenario, on_progress: Callable[[Any], None]) -> None:
        self.s = scenario
        self.on_progress = on_progress
        self.timeline: list[dict[str, Any]] = []

    def _view(self, events: list[dict[str, Any]]) -> SimpleNamespace:
        """Just enough of a `simulator.report.RunView` for `fault_windows`, `timeline_events`
        and `simulator.drill.phase_at`, over the timeline recorded so far."""
        from simulator.report import fault_windows, timeline_events

        timeline = sorted(events, key=lambda e: e["t"])
        view = SimpleNamespace(series=lambda name: timeline if name == "timeline" else None,
                               regions=list(self.s.regions), duration=float(self.s.duration),
                               scenario={"chaos": [], "random_faults": 0}, metrics={}, notes=[])
        view.windows = fault_windows(view)  # type: ignore[arg-type]
        view.events = timeline_events(view)  # type: ignore[arg-type]
        return view

    def second(self, v: dict[str, Any]) -> None:
        from simulator.drill import Snapshot, phase_at

        self.timeline.extend(v["events"])
        view = self._view(self.timeline)
        new = self._view(v["events"]).events if v["events"] else []
        t = float(v["t"])
        faults = [f"{w.label} ({w.start:g}–{w.end:g} s)" for w in view.windows if w.start < t and w.end > t - 1]
        phase = phase_at(view, t - 1e-9)  # type: ignore[arg-type]
        self.on_progress(Snapshot(t=t, horizon=float(v["horizon"]), phase=phase, faults=faults,
                                  throughput=v["throughput"], lag_ms=v["lag_ms"], events=new))


__all__ = ["RayRuntime", "RaySession", "RaySimulation", "ray_result", "ray_session", "resource_name",
           "run_scenario_ray", "shortened"]

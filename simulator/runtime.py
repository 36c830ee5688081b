"""The deterministic runtime: a virtual clock, one PRNG, a network, and region nodes.

Events sit in a heap keyed by (virtual time, insertion number), so equal times resolve
in one fixed order; every random draw comes from the run's numpy Generator seeded once.
The same scenario and seed therefore give the same history, byte for byte, and the
trace digest (SHA-256 over every client outcome, fault and report, in order) proves it.

Clients submit batches of operations at their region's gateway (group commit window
`batch_ms`), time out after `client_timeout_ms` and retry *with the same transfer ids*,
up to `max_attempts`. A crashed region loses its node object (volatile state); its
`DurableStore` survives and the restarted node recovers by replaying it.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chaos import Fault, random_schedule
from ledger.types import CreateTransferResult
from replication.accounts import TRANSIT_BASE
from replication.config import MS, Grouping, Mode, NodeConfig, Ship
from replication.log import DurableStore, Entry
from replication.messages import (
    ClientRequest,
    Corrupted,
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
from simulator.network import Network
from simulator.scenario import Scenario
from simulator.workload import KIND_READ, Plan, build_rows, make_plan

S = 1_000_000_000
T0 = 1_700_000_000 * S
(EV_BATCH, EV_DELIVER, EV_TICK, EV_REPLY, EV_TIMEOUT, EV_RETRY,
 EV_FAULT_START, EV_FAULT_END, EV_SCRUB, EV_SAMPLE) = range(10)
OK_CODES = (int(CreateTransferResult.OK), int(CreateTransferResult.EXISTS))
OUT_NONE, OUT_OK, OUT_FAIL, OUT_TIMEOUT = range(4)
TIMEOUT_CODE = 2000


def node_configs(scenario: Scenario, plan: Plan, seed: int = 0) -> list[NodeConfig]:
    """Every region's node configuration, the same for both runtimes (the seed feeds only
    the quorum mode's election timers)."""
    p = scenario.node
    return [NodeConfig(len(scenario.regions), r, Mode(scenario.mode), plan.amap, scenario.workload.opening_balance,
                       ship=Ship(scenario.ship), heartbeat_every=int(p.heartbeat_ms * MS),
                       suspect_after=int(p.suspect_ms * MS), lease=int(p.lease_ms * MS), drift=p.drift,
                       tick_every=int(p.tick_ms * MS), seed=seed, replicas=scenario.replicas,
                       quorum_groups=Grouping(p.quorum_groups), snapshot_every=p.snapshot_every)
            for r in range(len(scenario.regions))]


@dataclass
class OpState:
    """Per-operation client state, columnar (one slot per planned operation)."""

    status: np.ndarray
    attempts: np.ndarray
    last_attempt: np.ndarray
    result: np.ndarray
    outcome: np.ndarray
    complete_t: np.ndarray
    ok_count: np.ndarray
    served_by: np.ndarray

    @classmethod
    def new(cls, n: int) -> OpState:
        return cls(np.zeros(n, np.uint8), np.zeros(n, np.int16), np.full(n, -1, np.int64),
                   np.zeros(n, np.int32), np.zeros(n, np.uint8), np.full(n, np.nan), np.zeros(n, np.int16),
                   np.full(n, -1, np.int16))


@dataclass
class RunLog:
    reports: list[tuple[float, int, str, dict]] = field(default_factory=list)
    faults: list[tuple[float, str, Fault]] = field(default_factory=list)
    lag_ns: list[int] = field(default_factory=list)
    lag_at: list[tuple[int, int, int]] = field(default_factory=list)  # (virtual ns, receiving region, lag ns)
    transit: list[tuple[float, list[int | None]]] = field(default_factory=list)  # (s, per-region transit net)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # measured failover steps
    diverged: set[int] = field(default_factory=set)
    events: int = 0
    wall_s: float = 0.0


class Simulation:
    """One run of a scenario with one seed. `run()` then read the fields."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.s = scenario
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.regions = list(scenario.regions)
        self.R = len(self.regions)
        self.plan: Plan = make_plan(scenario, self.rng)
        faults = list(scenario.chaos)
        if scenario.random_faults:
            faults += random_schedule(self.rng, self.regions, scenario.duration, scenario.random_faults)
        self.faults = [f for f in faults if f.at < scenario.duration]
        self.net = Network(scenario.rtt_matrix(), scenario.jitter_ms, scenario.bandwidth_mbps, self.rng)
        self.net.regions = self.regions
        self.cfgs = node_configs(scenario, self.plan, seed)
        self.nodes: list[RegionNode | None] = [RegionNode(c) for c in self.cfgs]
        self.stores = [DurableStore() for _ in range(self.R)]
        self.incarnation = [0] * self.R
        self.paused_until = [0] * self.R
        self.clock_offset = [0] * self.R
        self.clock_base = [(0, 0, 1.0)] * self.R  # (virtual at rebase, elapsed at rebase, rate)
        self.intra = int(scenario.intra_rtt_ms * MS / 2)
        self.ops = OpState.new(self.plan.n_ops)
        self.attempts: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self.next_attempt = 1
        self.heap: list[tuple[int, int, int, Any, Any]] = []
        self.seq = 0
        self.now = 0
        self.trace = hashlib.sha256()
        self.log = RunLog()
        self.created: dict[tuple[int, int, int], int] = {}
        self.active: list[Fault] = []
        self.end_load = int(scenario.duration * S)
        self.end = self.end_load + int(scenario.quiesce * S)
        self.timeout = int(scenario.workload.client_timeout_ms * MS)
        self.max_attempts = scenario.workload.max_attempts
        self.fault_windows: list[tuple[float, float, Fault]] = []
        self._watch: dict[int, float] = {}  # faulted region -> fault start (s), until detected
        self._rejoin: dict[int, list[int]] = {}  # restarted region -> peers' log heads it must reach
        for f in self.faults:
            if f.kind == "clock-skew":
                # A skewed clock is off from the start (offsets are not stepped mid-run:
                # a stepping clock defeats any lease; NTP slews); the drift applies in the window.
                self.clock_offset[self.regions.index(f.target[0])] += int(f.param("offset_ms") * MS)

    # ------------------------------------------------------------------ event plumbing
    def push(self, t: int, kind: int, a: Any = None, b: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def clock(self, r: int) -> int:
        v0, e0, rate = self.clock_base[r]
        return T0 + self.clock_offset[r] + e0 + int((self.now - v0) * rate)

    def _set_rate(self, r: int, rate: float) -> None:
        v0, e0, old = self.clock_base[r]
        self.clock_base[r] = (self.now, e0 + int((self.now - v0) * old), rate)

    # ------------------------------------------------------------------ run
    def run(self) -> Simulation:
        wall = time.perf_counter()
        for r in range(self.R):
            self.push(0, EV_TICK, r, 0)
            starts, _ = self.plan.batches[r]
            if len(starts):
                self.push(self._submit_time(r, 0), EV_BATCH, r, 0)
        for i, f in enumerate(self.faults):
            end = min(f.end(), self.s.duration)
            self.fault_windows.append((f.at, end, f))
            self.push(int(f.at * S), EV_FAULT_START, i)
            self.push(int(end * S), EV_FAULT_END, i)
        for r in range(self.R):
            self.push(self.end_load + S, EV_SCRUB, r)
        self.push(0, EV_SAMPLE)
        handlers: dict[int, Callable[[Any, Any], None]] = {
            EV_BATCH: self._on_batch, EV_DELIVER: self._on_deliver, EV_TICK: self._on_tick,
            EV_REPLY: self._on_reply, EV_TIMEOUT: self._on_timeout, EV_RETRY: self._on_retry,
            EV_FAULT_START: self._on_fault_start, EV_FAULT_END: self._on_fault_end, EV_SCRUB: self._on_scrub,
            EV_SAMPLE: self._on_sample,
        }
        heap = self.heap
        n_events = 0
        while heap:
            t, _, kind, a, b = heapq.heappop(heap)
            if t > self.end:
                break
            self.now = t
            n_events += 1
            handlers[kind](a, b)
        self.now = self.end
        self._finish_pending()
        self.log.events = n_events
        self.log.wall_s = time.perf_counter() - wall
        return self

    def _submit_time(self, r: int, k: int) -> int:
        starts, order = self.plan.batches[r]
        first = self.plan.t[order[starts[k]]]
        w = self.plan.batch_window
        return int(min((np.floor(first / w) + 1) * w, self.s.duration) * S)

    # ------------------------------------------------------------------ clients
    def _on_batch(self, r: int, k: int) -> None:
        starts, order = self.plan.batches[r]
        end = starts[k + 1] if k + 1 < len(starts) else len(order)
        self._submit(order[starts[k]:end], r)
        if k + 1 < len(starts):
            self.push(self._submit_time(r, k + 1), EV_BATCH, r, k + 1)

    def _submit(self, ops: np.ndarray, r: int) -> None:
        plan = self.plan
        aid = self.next_attempt
        self.next_attempt += 1
        self.ops.attempts[ops] += 1
        self.ops.last_attempt[ops] = aid
        kind = plan.kind[ops]
        reads = ops[kind == KIND_READ]
        transfers = ops[kind != KIND_READ]
        self.attempts[aid] = (transfers, reads, r)
        rows = self._rows(transfers)
        msg = ClientRequest(aid, rows, plan.debit[reads].astype(np.uint64))
        self.push(self.now + self.intra, EV_DELIVER, r, msg)
        self.push(self.now + self.timeout, EV_TIMEOUT, aid)

    def _rows(self, ops: np.ndarray) -> np.ndarray:
        return build_rows(self.plan, ops)

    def _on_reply(self, aid: int, reply: Reply) -> None:
        got = self.attempts.get(aid)
        if got is None:
            return
        transfers, reads, r = got
        ops = self.ops
        self.trace.update(struct.pack("<qq", self.now, aid))
        self.trace.update(reply.results.tobytes())
        codes = reply.results.astype(np.int32)
        ops.ok_count[transfers[codes == 0]] += 1
        pending = ops.status[transfers] == 0
        unavailable = codes == UNAVAILABLE
        done = pending & ~unavailable
        self._complete(transfers[done], codes[done], r)
        retry = transfers[pending & unavailable]
        if len(retry):
            give_up = retry[ops.attempts[retry] >= self.max_attempts]
            self._complete(give_up, np.full(len(give_up), UNAVAILABLE, np.int32), r, OUT_FAIL)
            again = retry[ops.attempts[retry] < self.max_attempts]
            if len(again):
                self.push(self.now + 100 * MS, EV_RETRY, again, r)
        rd = reads[ops.status[reads] == 0]
        self._complete(rd, np.zeros(len(rd), np.int32), r)

    def _complete(self, ops_ix: np.ndarray, codes: np.ndarray, r: int, outcome: int | None = None) -> None:
        if not len(ops_ix):
            return
        o = self.ops
        o.status[ops_ix] = 1
        o.result[ops_ix] = codes
        o.complete_t[ops_ix] = self.now / S
        o.served_by[ops_ix] = r
        if outcome is None:
            o.outcome[ops_ix] = np.where(np.isin(codes, OK_CODES), OUT_OK, OUT_FAIL)
        else:
            o.outcome[ops_ix] = outcome

    def _on_timeout(self, aid: int, _: Any) -> None:
        got = self.attempts.pop(aid, None)
        if got is None:
            return
        transfers, reads, r = got
        ops = np.concatenate([transfers, reads])
        o = self.ops
        live = ops[(o.status[ops] == 0) & (o.last_attempt[ops] == aid)]
        if not len(live):
            return
        out = live[o.attempts[live] >= self.max_attempts]
        self._complete(out, np.full(len(out), TIMEOUT_CODE, np.int32), r, OUT_TIMEOUT)
        again = live[o.attempts[live] < self.max_attempts]
        if len(again):
            target = (r + 1) % self.R if self.s.mode in ("unit", "quorum") else r
            self._submit(again, target)

    def _on_retry(self, ops: np.ndarray, r: int) -> None:
        live = ops[self.ops.status[ops] == 0]
        if len(live):
            self._submit(live, r)

    def _finish_pending(self) -> None:
        o = self.ops
        left = np.nonzero(o.status == 0)[0]
        for r in range(self.R):
            sel = left[self.plan.region[left] == r]
            self._complete(sel, np.full(len(sel), TIMEOUT_CODE, np.int32), r, OUT_TIMEOUT)

    # ------------------------------------------------------------------ nodes
    def _on_deliver(self, r: int, msg: Any) -> None:
        node = self.nodes[r]
        if node is None:
            return
        if self.paused_until[r] > self.now:
            self.push(self.paused_until[r], EV_DELIVER, r, msg)
            return
        self._effects(r, node.handle(msg, self.clock(r)))

    def _on_tick(self, r: int, inc: int) -> None:
        if inc != self.incarnation[r] or self.nodes[r] is None:
            return
        if self.paused_until[r] > self.now:
            self.push(self.paused_until[r], EV_TICK, r, inc)
            return
        node = self.nodes[r]
        assert node is not None
        self._effects(r, node.handle(Tick(), self.clock(r)))
        if self._watch:
            self._detect(r)
        if r in self._rejoin and all(h >= need for h, need in zip(node.heads, self._rejoin[r], strict=True)):
            del self._rejoin[r]
            self.log.timeline.append({"t": round(self.now / S, 4), "event": "rejoined", "region": self.regions[r],
                                      "detail": "caught up with the log heads its peers had at restart"})

    def _effects(self, r: int, effects: list[Any]) -> None:
        now = self.now
        for e in effects:
            t = type(e)
            if t is Send:
                for arrival in self.net.transmit(r, e.to, e.size, now):
                    self.push(arrival, EV_DELIVER, e.to, e.message)
            elif t is Persist:
                rec = e.record
                self.stores[r].append(rec)
                if type(rec) is Entry:
                    key = (rec.origin, rec.group, rec.seq)
                    if rec.origin == r:
                        self.created[key] = now
                    elif key in self.created:
                        self.log.lag_ns.append(now - self.created[key])
                        self.log.lag_at.append((now, r, now - self.created[key]))
            elif t is Reply:
                self.push(now + self.intra, EV_REPLY, e.batch_id, e)
            elif t is SetTimer:
                self.push(now + e.after, EV_TICK, r, self.incarnation[r])
            elif t is PersistRepair:
                self.stores[r].replace(e.index, e.entry)
            elif t is Report:
                self.log.reports.append((now / S, r, e.kind, e.detail))
                self._note_report(r, e)
                self.trace.update(f"{now}|{r}|{e.kind}".encode())
                if e.kind == "divergence":
                    self.log.diverged.update(e.detail["transfer_ids"])

    # ------------------------------------------------------------------ chaos
    def _on_fault_start(self, i: int, _: Any) -> None:
        f = self.faults[i]
        self.active.append(f)
        self.log.faults.append((self.now / S, "start", f))
        self.trace.update(f"start|{self.now}|{f.kind}|{f.target}".encode())
        r = self.regions.index(f.target[0])
        self.log.timeline.append({"t": round(self.now / S, 4), "event": "fault", "region": f.target[0],
                                  "fault": f.kind, "target": list(f.target), "end": round(f.end(), 4)})
        if f.kind in ("crash", "partition", "pause"):
            self._watch[r] = self.now / S
        node = self.nodes[r]
        if f.kind == "partition" and node is not None and node.lease_until:
            # The cut-off home stops writing when its lease runs out (its own clock).
            fenced = self.now / S + max(0, node.lease_until - self.clock(r)) / S
            self.log.timeline.append({"t": round(fenced, 4), "event": "fenced", "region": f.target[0],
                                      "detail": "write lease expired on the cut-off side"})
        if f.kind == "crash":
            self.log.timeline.append({"t": round(self.now / S, 4), "event": "fenced", "region": f.target[0],
                                      "detail": "process gone: a crashed home accepts no writes"})
            self.nodes[r] = None
            self.incarnation[r] += 1
        elif f.kind == "pause":
            self.paused_until[r] = max(self.paused_until[r], int(f.end() * S))
        elif f.kind == "clock-skew":
            self._set_rate(r, 1 + f.param("drift_ppm") * 1e-6)
        elif f.kind == "corrupt":
            entries = [k for k, rec in enumerate(self.stores[r].records) if type(rec.payload) is Entry]
            if entries:
                n = min(len(entries), int(f.param("records")))
                for k in sorted(self.rng.choice(entries, size=n, replace=False).tolist()):
                    self.stores[r].corrupt(k)
                self.push(self.now + 200 * MS, EV_SCRUB, r)
        self.net.set_faults(self.regions, self.active)

    def _on_fault_end(self, i: int, _: Any) -> None:
        f = self.faults[i]
        if f not in self.active:
            return
        self.active.remove(f)
        self.log.faults.append((self.now / S, "end", f))
        self.trace.update(f"end|{self.now}|{f.kind}|{f.target}".encode())
        r = self.regions.index(f.target[0])
        self.log.timeline.append({"t": round(self.now / S, 4), "event": "healed", "region": f.target[0],
                                  "detail": f"{f.kind} ended"})
        if f.kind == "crash":
            self.incarnation[r] += 1
            node, effects = RegionNode.recover(self.cfgs[r], self.stores[r])
            self.nodes[r] = node
            live = [n for n in self.nodes if n is not None and n is not node]
            if live:
                self._rejoin[r] = [max(n.heads[o] for n in live) for o in range(len(node.heads))]
            self._effects(r, effects)
            self.push(self.now, EV_TICK, r, self.incarnation[r])
        elif f.kind == "clock-skew":
            self._set_rate(r, 1.0)
        self.net.set_faults(self.regions, self.active)

    # ------------------------------------------------------------------ observation (no effect on the run)
    def _on_sample(self, _: Any, __: Any) -> None:
        """Once a virtual second: money in transit as each live replica sees it."""
        lo, hi = TRANSIT_BASE, TRANSIT_BASE + self.plan.amap.n_units
        per_region: list[int | None] = []
        for node in self.nodes:
            if node is None:
                per_region.append(None)
                continue
            acc = node.engine.accounts
            sel = acc[(acc["id_lo"] >= lo) & (acc["id_lo"] < hi)]
            per_region.append(int(sel["credits_posted_lo"].astype(np.int64).sum())
                              - int(sel["debits_posted_lo"].astype(np.int64).sum()))
        self.log.transit.append((self.now / S, per_region))
        if self.now + S <= self.end:
            self.push(self.now + S, EV_SAMPLE)

    def _detect(self, r: int) -> None:
        """First time a live peer's failure detector suspects a faulted region."""
        node = self.nodes[r]
        for target, since in list(self._watch.items()):
            if target != r and node is not None and node.suspects(target, self.clock(r)):
                self.log.timeline.append({"t": round(self.now / S, 4), "event": "detected",
                                          "region": self.regions[r],
                                          "detail": f"{self.regions[target]} suspected "
                                                    f"{self.now / S - since:.3f} s after the fault"})
                del self._watch[target]

    def _note_report(self, r: int, e: Any) -> None:
        events = {"promotion": "promoted", "ready": "writes_resumed", "divergence": "divergence"}
        if e.kind in events:
            detail = {k: v for k, v in e.detail.items() if k in ("units", "version", "lost", "region")}
            self.log.timeline.append({"t": round(self.now / S, 4), "event": events[e.kind],
                                      "region": self.regions[r], "detail": json.dumps(detail, default=str)})

    def _on_scrub(self, r: int, _: Any) -> None:
        bad = self.stores[r].scrub()
        node = self.nodes[r]
        if bad and node is not None:
            self._effects(r, node.handle(Corrupted(bad), self.clock(r)))

    # ------------------------------------------------------------------ summary
    def digest(self) -> str:
        return self.trace.hexdigest()

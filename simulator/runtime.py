"""The deterministic runtime: a virtual clock, one PRNG, a network, and region nodes.

Events sit in a heap keyed by (virtual time, insertion number), so equal times resolve
in one fixed order; every random draw comes from the run's numpy Generator seeded once.
The same scenario and seed therefore give the same history, byte for byte, and the
trace digest (SHA-256 over every client outcome, fault and report, in order) proves it.

What clients do is `simulator.clients` and what a fault does is `simulator.faults`: the
rules the Ray runtime applies too. This module only keeps time: it delivers messages
with the network's delays, runs timers, and carries out the dispatcher's actions on the
spot. A crashed region loses its node object (volatile state); its store survives and
the restarted node recovers by replaying it.

Regions step as the live driver (`region.driver.LiveRegion`) steps them: whatever has
arrived is handed to `RegionNode.handle_many` as one step, the step's records are
committed, and only then do its replies and messages leave. A commit takes
`node.commit_ms` of virtual time (0: instantaneous); what arrives meanwhile waits for the
next step. So the batching path that runs live — one entry per step, Raft parts merged
per log — is the path the simulator and the fuzzer prove.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from region import checkpoint
from region.store import MemoryRegionStore
from replication.accounts import TRANSIT_BASE
from replication.config import MS, Grouping, InvariantViolation, Mode, NodeConfig, Ship, check
from replication.log import Entry
from replication.messages import (
    Checkpoint,
    ClientRequest,
    Corrupted,
    LoadBase,
    Persist,
    PersistRepair,
    Reply,
    Report,
    Send,
    SetTimer,
    Tick,
)
from replication.node import RegionNode
from replication.raft import Role
from replication.state import all_settled, settle_status
from simulator.clients import RETRY_BACKOFF_S, Attempt, ClientBook, ClientRules
from simulator.clock import ClockState, S
from simulator.faults import (
    ClockRate,
    Corrupt,
    Crash,
    FaultDispatcher,
    Fence,
    LinkFaults,
    Pause,
    Restart,
    lost_for_good,
)
from simulator.network import Network
from simulator.plan import plan_and_faults, submit_time
from simulator.result import NetCounters, RunResult
from simulator.runlog import RunLog, report_event
from simulator.scenario import Scenario
from simulator.workload import Plan, build_rows

(EV_BATCH, EV_DELIVER, EV_TICK, EV_REPLY, EV_TIMEOUT, EV_RETRY,
 EV_FAULT_START, EV_FAULT_END, EV_SCRUB, EV_SAMPLE, EV_STEP, EV_RELEASE) = range(12)
HOMED_MODES = (Mode.UNIT, Mode.QUORUM)


SETTLE_MAX_S = 30
"""Virtual seconds past the quiesce a run may take to drain (as the Ray runtime's settle
waits): a store whose commits take most of a second builds a backlog no fixed quiesce
drains, and books judged mid-drain read as money created or lost in transit."""


def node_configs(scenario: Scenario, plan: Plan, seed: int = 0) -> list[NodeConfig]:
    """Every region's node configuration, the same for both runtimes (the seed feeds only
    the quorum mode's election timers)."""
    p = scenario.node
    return [NodeConfig(len(scenario.regions), r, Mode(scenario.mode), plan.amap, scenario.workload.opening_balance,
                       ship=Ship(scenario.ship), heartbeat_every=int(p.heartbeat_ms * MS),
                       suspect_after=int(p.suspect_ms * MS),
                       suspect_max=int(p.suspect_max_ms * MS), lease=int(p.lease_ms * MS), drift=p.drift,
                       tick_every=int(p.tick_ms * MS), seed=seed, replicas=scenario.replicas,
                       quorum_groups=Grouping(p.quorum_groups), snapshot_every=p.snapshot_every,
                       checkpoint_every=p.checkpoint_every)
            for r in range(len(scenario.regions))]


def client_rules(scenario: Scenario) -> ClientRules:
    return ClientRules(len(scenario.regions), scenario.workload.max_attempts, Mode(scenario.mode) in HOMED_MODES)


def clock_offsets(scenario: Scenario, faults: list[Any]) -> list[int]:
    """Each region's clock offset (ns): a skewed clock is off from the start."""
    offsets = [0] * len(scenario.regions)
    for f in faults:
        if f.kind == "clock-skew":
            offsets[list(scenario.regions).index(f.target[0])] += int(f.param("offset_ms") * MS)
    return offsets


class Simulation:
    """One run of a scenario with one seed. `run()`, then `result()`."""

    def __init__(self, scenario: Scenario, seed: int, *, check_invariants: bool = False) -> None:
        self.s = scenario
        self.seed = seed
        self.check_invariants = check_invariants
        self.leaders: dict[tuple[int, int], int] = {}  # (Raft group, term) -> the region that led it
        self.rng = np.random.default_rng(seed)
        self.regions = list(scenario.regions)
        self.R = len(self.regions)
        self.plan, self.faults = plan_and_faults(scenario, self.rng)
        self.net = Network(scenario.rtt_matrix(), scenario.jitter_ms, scenario.bandwidth_mbps, self.rng)
        self.net.regions = self.regions
        self.cfgs = node_configs(scenario, self.plan, seed)
        self.nodes: list[RegionNode | None] = [RegionNode(c) for c in self.cfgs]
        self.stores = [MemoryRegionStore() for _ in range(self.R)]
        self.incarnation = [0] * self.R
        self.paused_until = [0] * self.R
        self.inbox: list[list[Any]] = [[] for _ in range(self.R)]
        self.step_at: list[int | None] = [None] * self.R  # when the region's next step is due
        self.busy_until = [0] * self.R  # a step's commit ends here; the next step not before
        self.commit_ns = int(scenario.node.commit_ms * MS)
        self.clocks = [ClockState(o) for o in clock_offsets(scenario, self.faults)]
        self.intra = int(scenario.intra_rtt_ms * MS / 2)
        plan = self.plan
        self.clients = ClientBook(plan.kind, build_rows(plan, np.arange(plan.n_ops)),
                                  plan.debit.astype(np.uint64), client_rules(scenario))
        self.heap: list[tuple[int, int, int, Any, Any]] = []
        self.seq = 0
        self.now = 0
        self.trace = hashlib.sha256()
        self.log = RunLog()
        self.dispatch = FaultDispatcher(self.regions, self.faults, self.log)
        self.created: dict[tuple[int, int, int], int] = {}
        self.end_load = int(scenario.duration * S)
        self.end = self.end_load + int(scenario.quiesce * S)
        self.timeout = int(scenario.workload.client_timeout_ms * MS)
        self._rejoin: dict[int, list[int]] = {}  # restarted region -> peers' log heads it must reach

    # ------------------------------------------------------------------ event plumbing
    def push(self, t: int, kind: int, a: Any = None, b: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def clock(self, r: int) -> int:
        return self.clocks[r].at(self.now)

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
            self.push(int(f.at * S), EV_FAULT_START, i)
            self.push(int(end * S), EV_FAULT_END, i)
        for r in range(self.R):
            self.push(self.end_load + S, EV_SCRUB, r)
        self.push(0, EV_SAMPLE)
        handlers: dict[int, Callable[[Any, Any], None]] = {
            EV_BATCH: self._on_batch, EV_DELIVER: self._on_deliver, EV_TICK: self._on_tick,
            EV_REPLY: self._on_reply, EV_TIMEOUT: self._on_timeout, EV_RETRY: self._on_retry,
            EV_FAULT_START: self._on_fault_start, EV_FAULT_END: self._on_fault_end, EV_SCRUB: self._on_scrub,
            EV_SAMPLE: self._on_sample, EV_STEP: self._on_step, EV_RELEASE: self._on_release,
        }
        heap = self.heap
        n_events = 0
        quiesced, limit = self.end, self.end + SETTLE_MAX_S * S
        while True:
            while heap and heap[0][0] <= self.end:
                t, _, kind, a, b = heapq.heappop(heap)
                self.now = t
                n_events += 1
                handlers[kind](a, b)
            if self._settled():
                self.log.settle_s = (self.end - quiesced) / S
                break
            if self.end >= limit:
                break
            self.end += S  # not drained yet (a slow store, a long backlog): one more second
        self.now = self.end
        self.clients.finish(self.now / S, self.plan.region)
        self.log.events = n_events
        self.log.wall_s = time.perf_counter() - wall
        return self

    def _settled(self) -> bool:
        """Every region expected up holds the same books and owes nothing: what the checkers
        judge is the design's end state, not a backlog the quiesce was too short to drain."""
        gone = lost_for_good(self.faults, self.regions)
        return all_settled([None if self.nodes[r] is None else settle_status(self.nodes[r])
                            for r in range(self.R) if r not in gone])

    def result(self) -> RunResult:
        return RunResult(self.s, self.seed, self.regions, self.plan, self.clients.st, list(self.nodes),
                         list(self.stores), self.cfgs, self.log, self.faults, self.end,
                         NetCounters(self.net.sent, self.net.dropped, self.net.bytes), self.trace.hexdigest())

    def _submit_time(self, r: int, k: int) -> int:
        starts, order = self.plan.batches[r]
        return int(submit_time(self.plan, order[starts[k]], self.plan.batch_window, self.s.duration) * S)

    # ------------------------------------------------------------------ clients
    def _on_batch(self, r: int, k: int) -> None:
        starts, order = self.plan.batches[r]
        end = starts[k + 1] if k + 1 < len(starts) else len(order)
        self._submit(order[starts[k]:end], r)
        if k + 1 < len(starts):
            self.push(self._submit_time(r, k + 1), EV_BATCH, r, k + 1)

    def _submit(self, ops: np.ndarray, r: int) -> None:
        a: Attempt = self.clients.attempt(ops, r)
        self.push(self.now + self.intra, EV_DELIVER, r, ClientRequest(a.aid, a.rows, a.read_ids))
        self.push(self.now + self.timeout, EV_TIMEOUT, a.aid)

    def _on_reply(self, aid: int, reply: Reply) -> None:
        attempt = self.clients.open.get(aid)
        if attempt is None:
            return
        self.trace.update(struct.pack("<qq", self.now, aid))
        self.trace.update(reply.results.tobytes())
        again = self.clients.reply(aid, reply.results, self.now / S)
        if again is not None and len(again):
            self.push(self.now + int(RETRY_BACKOFF_S * S), EV_RETRY, again, attempt.region)

    def _on_timeout(self, aid: int, _: Any) -> None:
        retry = self.clients.timeout(aid, self.now / S)
        if retry is not None:
            self._submit(*retry)

    def _on_retry(self, ops: np.ndarray, r: int) -> None:
        live = self.clients.still_open(ops)
        if len(live):
            self._submit(live, r)

    # ------------------------------------------------------------------ nodes
    def _on_deliver(self, r: int, msg: Any) -> None:
        if self.nodes[r] is None:
            return
        if self.paused_until[r] > self.now:
            self.push(self.paused_until[r], EV_DELIVER, r, msg)
            return
        self._enqueue(r, msg)

    def _on_tick(self, r: int, inc: int) -> None:
        if inc != self.incarnation[r] or self.nodes[r] is None:
            return
        if self.paused_until[r] > self.now:
            self.push(self.paused_until[r], EV_TICK, r, inc)
            return
        self._enqueue(r, Tick())

    def _enqueue(self, r: int, msg: Any) -> None:
        """A message for region `r`'s next step (due now, or when its commit in flight ends)."""
        self.inbox[r].append(msg)
        if self.step_at[r] is None:
            at = max(self.now, self.busy_until[r])
            self.step_at[r] = at
            self.push(at, EV_STEP, r, self.incarnation[r])

    def _on_step(self, r: int, inc: int) -> None:
        node = self.nodes[r]
        if inc != self.incarnation[r] or node is None:
            return
        if self.paused_until[r] > self.now:  # a stalled region holds its inbox
            self.step_at[r] = self.paused_until[r]
            self.push(self.paused_until[r], EV_STEP, r, inc)
            return
        self.step_at[r] = None
        batch, self.inbox[r] = self.inbox[r], []
        self._effects(r, node.handle_many(batch, self.clock(r)))
        if self.check_invariants:
            self._invariants(r, node)
        if self.dispatch.watching:
            self._detect(r)
        if r in self._rejoin and all(h >= need for h, need in zip(node.heads, self._rejoin[r], strict=True)):
            del self._rejoin[r]
            self.dispatch.rejoined(r, self.now / S)

    def _effects(self, r: int, effects: list[Any]) -> None:
        """Persist the step's records now; what depends on them leaves once the commit is done."""
        now = self.now
        if self.commit_ns and any(type(e) in (Persist, PersistRepair) for e in effects):
            self.busy_until[r] = now + self.commit_ns
            self.push(now + self.commit_ns, EV_RELEASE, r, (self.incarnation[r], effects))
            effects = [e for e in effects if type(e) in (Persist, PersistRepair, Report)]
        self._apply_effects(r, effects, now)

    def _invariants(self, r: int, node: RegionNode) -> None:
        """The node's own invariants after every step, and Raft's election safety across
        nodes (at most one leader per log and term), naming the seed and the moment."""
        try:
            node.invariants()
            for raft in getattr(node.design, "groups", ()):
                if raft.role is Role.LEADER:
                    first = self.leaders.setdefault((raft.group, raft.term), r)
                    check(first == r, "election safety: one leader per log and term",
                          (raft.group, raft.term, self.regions[first], self.regions[r]))
        except InvariantViolation as e:
            raise InvariantViolation(f"seed {self.seed}, t={self.now / S:.6f} s, region {self.regions[r]}: {e}") from e

    def _on_release(self, r: int, what: tuple[int, list[Any]]) -> None:
        inc, effects = what
        if inc == self.incarnation[r]:  # a crash during the commit: nothing left the region
            self._apply_effects(r, [e for e in effects if type(e) not in (Persist, PersistRepair, Report)], self.now)

    def _apply_effects(self, r: int, effects: list[Any], now: int) -> None:
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
                event = report_event(now / S, self.regions[r], e.kind, e.detail)
                if event is not None:
                    self.log.timeline.append(event)
                self.trace.update(f"{now}|{r}|{e.kind}".encode())
                if e.kind == "divergence":
                    self.log.diverged.update(e.detail["transfer_ids"])
            elif t is LoadBase or t is Checkpoint:
                self._after_commit(r, e, now)

    def _after_commit(self, r: int, e: Any, now: int) -> None:
        """What a region does once a step's records are durable: rebuild its books from its
        snapshot, or take a checkpoint (at once, in virtual time: it changes no timing)."""
        node = self.nodes[r]
        if node is None:
            return
        if type(e) is LoadBase:
            base = self.stores[r].load_snapshot()
            assert base is not None, "a node asks for its store's snapshot only once there is one"
            node.rebuild(base)
            return
        error = checkpoint.perform(node, self.stores[r], e)
        if error is not None:  # seen in the run log, not in the trace: a checkpoint changes no outcome
            self.log.reports.append((now / S, r, "checkpoint_failed", {"region": self.regions[r], "why": error}))

    # ------------------------------------------------------------------ chaos
    def _on_fault_start(self, i: int, _: Any) -> None:
        f = self.faults[i]
        self.trace.update(f"start|{self.now}|{f.kind}|{f.target}".encode())
        self._act(self.dispatch.start(i, self.now / S))

    def _on_fault_end(self, i: int, _: Any) -> None:
        f = self.faults[i]
        if f in self.dispatch.active:
            self.trace.update(f"end|{self.now}|{f.kind}|{f.target}".encode())
        self._act(self.dispatch.end(i, self.now / S))

    def _act(self, actions: list[Any]) -> None:
        for a in actions:
            t = type(a)
            if t is Fence:
                node = self.nodes[a.region]
                if node is not None and node.lease_until:
                    # The cut-off home stops writing when its lease runs out (its own clock).
                    left = max(0, node.lease_until - self.clock(a.region))
                    self.dispatch.fenced(a.region, self.now / S + left / S)
            elif t is Crash:
                self.nodes[a.region] = None
                self.incarnation[a.region] += 1
                self.inbox[a.region] = []  # what had arrived dies with the process
                self.step_at[a.region] = None
            elif t is Restart:
                self._restart(a.region)
            elif t is Pause:
                if a.paused:
                    self.paused_until[a.region] = max(self.paused_until[a.region], int(a.until_s * S))
            elif t is ClockRate:
                self.clocks[a.region] = self.clocks[a.region].rebase(self.now, a.rate)
            elif t is Corrupt:
                self._corrupt(a.region, a.records)
            elif t is LinkFaults:
                self.net.set_faults(self.regions, list(a.active))

    def _restart(self, r: int) -> None:
        self.incarnation[r] += 1
        self.inbox[r] = []  # a new process: nothing of the old one's inbox or scheduled step
        self.step_at[r] = None
        node, effects = RegionNode.recover(self.cfgs[r], self.stores[r])
        self.nodes[r] = node
        live = [n for n in self.nodes if n is not None and n is not node]
        if live:
            self._rejoin[r] = [max(n.heads[o] for n in live) for o in range(len(node.heads))]
        self.busy_until[r] = self.now
        self._effects(r, effects)
        self.push(self.now, EV_TICK, r, self.incarnation[r])

    def _corrupt(self, r: int, records: int) -> None:
        entries = self.stores[r].entry_indices()
        if entries:
            n = min(len(entries), records)
            for k in sorted(self.rng.choice(entries, size=n, replace=False).tolist()):
                self.stores[r].corrupt(k)
            self.push(self.now + 200 * MS, EV_SCRUB, r)

    # ------------------------------------------------------------------ observation (no effect on the run)
    def _on_sample(self, _: Any, __: Any) -> None:
        """Once a virtual second: money in transit as each live replica sees it."""
        per_region: list[int | None] = []
        for node in self.nodes:
            per_region.append(None if node is None else transit_net(node.engine, self.plan.amap.n_units))
        self.log.transit.append((self.now / S, per_region))
        if self.now + S <= self.end:
            self.push(self.now + S, EV_SAMPLE)

    def _detect(self, r: int) -> None:
        """First time a live peer's failure detector suspects a faulted region."""
        node = self.nodes[r]
        for target in list(self.dispatch.watching):
            if target != r and node is not None and node.suspects(target, self.clock(r)):
                self.dispatch.detected(target, r, self.now / S)

    def _on_scrub(self, r: int, _: Any) -> None:
        bad = self.stores[r].scrub()
        if bad and self.nodes[r] is not None:
            self._enqueue(r, Corrupted(bad))


def transit_net(engine: Any, n_units: int) -> int:
    """Money in transit as one replica sees it (credits minus debits of the transit accounts)."""
    acc = engine.accounts
    sel = acc[(acc["id_lo"] >= TRANSIT_BASE) & (acc["id_lo"] < TRANSIT_BASE + n_units)]
    return int(sel["credits_posted_lo"].astype(np.int64).sum()) - int(sel["debits_posted_lo"].astype(np.int64).sum())


def run_simulation(scenario: Scenario, seed: int, *, check_invariants: bool = False) -> RunResult:
    return Simulation(scenario, seed, check_invariants=check_invariants).run().result()


__all__ = ["HOMED_MODES", "Simulation", "client_rules", "clock_offsets", "node_configs", "run_simulation",
           "transit_net"]

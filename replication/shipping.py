"""Log shipping: the replication core of the `async`, `unit` and `escrow` designs.

Each region numbers its own entries (per-origin sequence). Followers apply each origin's
entries in order and exactly once (`seq <= head` is a duplicate), buffer what arrives
early and `Pull` what is missing from whoever sent them. Heartbeats carry every node's
heads, so after a heal or a restart a node pulls what it lacks from any peer
(anti-entropy), not only from the origin. Entries are written under a versioned routing
table; a newer table's fork points void an old home's unreplicated suffix, which every
replica holding it reports (`divergence`) and drops — nothing is merged silently.

`LogShipping` is a complete design on its own apart from *admission* (`_commit`): who may
accept a client row. Subclasses decide: anywhere against the local view (`async`),
anywhere within an escrow share (`escrow`), or only at the unit's home under a lease
(`unit`, with failover). Shipping is asynchronous; with `ship = semi-sync` a reply waits
until the entry is stored in a majority of regions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cext.layout import TRANSFER_DTYPE
from ledger.types import CreateTransferResult
from replication.admission import screen
from replication.batches import ClientBatches
from replication.config import NodeConfig, Ship, check
from replication.detector import FailureDetector
from replication.log import Entry, Grant
from replication.messages import (
    ClientRequest,
    Corrupted,
    Effect,
    Forward,
    ForwardReply,
    Heartbeat,
    HeartbeatAck,
    LoadBase,
    Persist,
    PersistRepair,
    Pull,
    RepairData,
    RepairRequest,
    Report,
    Send,
    SetTimer,
    ShipAck,
    Tick,
)
from replication.messages import (
    Ship as ShipMsg,
)
from replication.outcomes import UNAVAILABLE
from replication.repairs import PendingRepairs
from replication.replica import Replica
from replication.routing import RoutingTable, majority
from replication.snapshot import NodeSnapshot, ShippingState

MS = 1_000_000
_EXISTS = int(CreateTransferResult.EXISTS)
_NO_ROWS = np.zeros(0, TRANSFER_DTYPE)
MAX_FORWARDS = 10_000

Handler = Callable[[Any, int, list[Effect]], None]


@dataclass
class _StepEntry:
    """Rows and escrow grants this region accepted during the current step."""

    rows: list[np.ndarray] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows or self.grants)


class LogShipping:
    """One region's replica under log shipping (see the module docstring)."""

    admits_row_by_row = False  # async, escrow: a batch is admitted against a view (`node.Design`)

    handlers: ClassVar[dict[type, str]] = {}
    """Message type -> the name of the method that handles it (subclasses extend it)."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        self.cfg = config
        self.replica = replica
        r = config.n_regions
        self.me = config.me
        self.peers = [p for p in range(r) if p != config.me]
        self.maj = majority(r)
        self.durable_need = max(1, r - self.maj) if r > 1 else 0
        self.routing = RoutingTable.initial(config.amap.n_units, r)
        self._homes = np.asarray(self.routing.homes)
        self.applied: list[Entry] = []  # in apply order since the store's snapshot: what a rebuild replays
        self.by_origin: list[list[Entry]] = [[] for _ in range(r)]  # per origin: entries log_base+1 .. head
        self.heads = [0] * r
        self.log_base = [0] * r  # per origin: entries at or below it are no longer kept (checkpointed)
        self.base_heads = [0] * r  # per origin: what the store's snapshot covers (not in `applied`)
        self.has_base = False  # the store holds a snapshot: a rebuild starts from it, not from genesis
        self.rebuilding = False  # waiting for that snapshot (`LoadBase`): nothing is written meanwhile
        self.peer_heads: dict[int, tuple[int, ...]] = {}  # per peer: the heads it last vouched for
        self.peer_based: dict[int, tuple[int, ...]] = {}  # per peer: what its store's snapshot covers
        self.buffer: list[dict[int, Entry]] = [{} for _ in range(r)]
        self.next_seq = 1
        self.detector = FailureDetector(config.suspect_after, config.suspect_max, config.suspect_memory)
        self.lease_until = 0
        self.hb_round = 0
        self.hb_last = -(1 << 62)
        self.hb_sent: dict[int, int] = {}
        self.catching_up: set[int] = set()
        self.peer_acked = dict.fromkeys(self.peers, 0)
        self.durable_seq = 0
        self.waiters: deque[tuple[int, str, Any]] = deque()
        self.batches = ClientBatches(config.me)
        self.forwards: dict[int, tuple[int, np.ndarray, int]] = {}  # fwd id -> (batch, rows, home)
        self.fwd_next = 1
        self.pulled_at: dict[tuple[int, int], int] = {}
        self.repairing = PendingRepairs(config.me, self.peers, config.tick_every)
        self.started = False
        self.reported_void: set[tuple[int, int]] = set()
        self._step: _StepEntry | None = None  # what this step accepted, written at its end
        self._handlers: dict[type, Handler] = {t: getattr(self, name) for t, name in self.handlers.items()}

    @property
    def engine(self) -> Any:
        return self.replica.engine

    # ================================================================== recovery
    @classmethod
    def recover(cls, config: NodeConfig, replica: Replica, records: Sequence[object], *,
                base: NodeSnapshot | None = None, first: int = 0) -> tuple[LogShipping, list[Effect]]:
        """Rebuild from the durable records after a crash: volatile state is gone.

        `base` is the store's snapshot (what the records before store index `first` gave);
        `records` follow it. Entries are replayed in store order under the newest routing
        table found (forks only accumulate, so that table voids exactly what must be voided;
        a snapshot holds settled entries only, which no fork voids). A record whose checksum
        fails is skipped together with the rest of its origin's entries: those are pulled
        again from peers, and the bad record is repaired in place.
        """
        node = cls(config, replica)
        effects: list[Effect] = []
        if base is not None:
            node._restore_base(base)
        tables = [p for p in records if isinstance(p, RoutingTable)]
        if tables:
            newest = max(tables, key=lambda t: t.version)
            if newest.version > node.routing.version:
                node._set_routing(newest)
        stopped: set[int] = set()
        for index, e in enumerate(records, start=first):
            if not isinstance(e, Entry):
                continue
            if e.origin == node.me:
                node.next_seq = max(node.next_seq, e.seq + 1)
            if not e.intact():
                stopped.add(e.origin)
                node.repairing.ask(index, e.origin, e.seq, e.checksum, 0, effects)
                continue
            if e.origin in stopped:
                node.buffer[e.origin][e.seq] = e  # good, but must wait for the damaged one
                continue
            if e.seq != node.heads[e.origin] + 1:
                continue
            node._apply(e)
            if e.origin == node.me and len(e.rows):
                replica.last_ts = max(replica.last_ts, int(e.rows["timestamp"].max()))
        node.durable_seq = 0
        return node, effects

    # ================================================================== snapshots (replication.snapshot)
    def _restore_base(self, base: NodeSnapshot) -> None:
        """Start from the store's snapshot: its books, heads, routing and retained log."""
        s = base.shipping
        assert s is not None  # NodeSnapshot.check_fits
        self.replica.restore(base)
        self.replica.last_ts = base.last_ts
        self.heads = list(s.heads)
        self.base_heads = list(s.heads)
        self.has_base = True
        self.next_seq = max(s.next_seq, s.heads[self.me] + 1)
        self._set_routing(s.routing)
        logs: list[list[Entry]] = [[] for _ in self.heads]
        for e in s.retained:
            if not 0 <= e.origin < len(logs):
                raise ValueError(f"snapshot at record {base.position}: a retained entry of origin {e.origin}")
            logs[e.origin].append(e)
        for o, log in enumerate(logs):
            first = self.heads[o] - len(log)
            if first < 0 or any(e.seq != first + i + 1 for i, e in enumerate(log)):
                raise ValueError(f"snapshot at record {base.position}: origin {o}'s retained entries are not "
                                 f"its log up to its head {self.heads[o]}")
            self.by_origin[o], self.log_base[o] = log, first
        self._restore_extra(s)

    def _restore_extra(self, state: ShippingState) -> None:
        """A hook: what a design keeps beyond the books (escrow shares, credit legs owed)."""

    def _export_extra(self) -> dict[str, Any]:
        """A hook: the `ShippingState` fields a design adds (escrow shares, credit legs owed)."""
        return {}

    def export_state(self, retain_from: Sequence[int]) -> ShippingState:
        """This replica's log-shipping state, keeping each origin's entries above
        `retain_from` (those some peer may still pull)."""
        retained = [e for o, log in enumerate(self.by_origin) for e in log
                    if not retain_from or e.seq > retain_from[o]]
        return ShippingState(tuple(self.heads), self.next_seq, self.routing, retained, **self._export_extra())

    def settled_heads(self) -> list[int] | None:
        """Per origin, the entries up to which no fork can void (None: no entry is ever
        voided). Only the unit design has forks (`LeaseFailover`)."""
        return None

    def damaged_positions(self) -> list[int]:
        return self.repairing.positions()

    def superseded_positions(self) -> list[int]:
        return []  # a peer may pull any entry of our log again: every damaged record is repaired

    def retain_from(self) -> tuple[int, ...]:
        """Per origin: every peer's store snapshot covers its entries up to here, so no peer
        will ask us for them again ("keep enough log"). Having applied an entry is not
        enough: until a peer's snapshot covers it, the peer's record of it may rot and need a
        repair, or the peer may restart over such a record and pull the rest again. A
        replica's books are the product of every origin's log, so a peer's snapshot could
        never be merged into ours: a peer behind gets entries, never a snapshot. A peer not
        heard from yet (or without checkpoints) covers nothing, and while a peer is down we
        keep what it may still ask for: memory is bounded by the slowest live peer."""
        out = []
        for o in range(len(self.heads)):
            covered = [self.peer_based[p][o] if p in self.peer_based else 0 for p in self.peers]
            out.append(min(covered, default=self.heads[o]))
        return tuple(out)

    def on_checkpointed(self, position: int, heads: Sequence[int]) -> None:
        """The store's snapshot now covers each origin up to `heads`: what a rebuild replays
        starts past them, and only what peers may still pull is kept."""
        self.has_base = True
        self.base_heads = [max(b, h) for b, h in zip(self.base_heads, heads, strict=True)]
        self.applied = [e for e in self.applied if e.seq > self.base_heads[e.origin]]
        keep = self.retain_from()
        for o, log in enumerate(self.by_origin):
            cut = min(self.base_heads[o], keep[o])
            n = cut - self.log_base[o]
            if n > 0:
                del log[:n]
                self.log_base[o] = cut

    def entry_at(self, origin: int, seq: int) -> Entry | None:
        """Origin's entry `seq` if this replica still keeps it."""
        if not 0 <= origin < len(self.by_origin):
            return None
        log, i = self.by_origin[origin], seq - 1 - self.log_base[origin]
        return log[i] if 0 <= i < len(log) else None

    def rebuild(self, base: NodeSnapshot) -> None:
        """The books again: the store's snapshot, then every entry applied since it that no
        fork voids (after `LoadBase`)."""
        s = base.shipping
        assert s is not None
        last_ts = self.replica.last_ts
        self.replica.restore(base)
        self.replica.last_ts = max(last_ts, base.last_ts)
        self.applied = [e for e in self.applied if e.seq > s.heads[e.origin]]
        for e in self.applied:
            if len(e.rows) and not self.routing.is_void(e.origin, e.seq, e.rv):
                self.replica.apply(e.rows, e.origin, e.seq)
        self.base_heads = [max(b, h) for b, h in zip(self.base_heads, s.heads, strict=True)]
        self.rebuilding = False
        self._after_rebuild()

    def _after_rebuild(self) -> None:
        """A hook: the books were rebuilt from the store's snapshot."""

    # ================================================================== dispatch
    def handle_many(self, messages: Sequence[Any], now: int) -> list[Effect]:
        """Handle a step's messages in order. Everything this region accepts during the step
        becomes ONE entry of its log, appended at the end of the step (group commit: one
        entry, one persist, one ship per peer, however many client batches the step brings)."""
        out: list[Effect] = []
        self._step = _StepEntry()
        try:
            for m in messages:
                self._dispatch(m, now, out)
            self._close_step(now, out)
        finally:
            self._step = None
        return out

    def _dispatch(self, m: Any, now: int, out: list[Effect]) -> None:
        if not self.started:
            self.started = True
            for p in self.peers:
                self.detector.start(p, now)
        handler = self._handlers.get(type(m))
        if handler is None:  # a message this design never exchanges: refuse it, stay up
            out.append(Report("rejected_message", {"region": self.me, "type": type(m).__name__}))
            return
        handler(m, now, out)

    # ================================================================== client path
    def _on_client(self, m: ClientRequest, now: int, out: list[Effect]) -> None:
        """A client batch: the bank's rules first (`replication.admission`), then each row to
        the writer of the unit its id names — here, or forwarded to that unit's home."""
        rows = m.rows
        batch = self.batches.start(m.batch_id, len(rows), self.replica.read(m.reads), now)
        if len(rows):
            codes, units = screen(rows, self.cfg.amap)
            refused = codes != 0
            batch.results[refused] = codes[refused]
            homes = np.where(refused, -1, self._homes[np.where(refused, 0, units)])
            for h in np.unique(homes[~refused]).tolist():
                idx = np.nonzero(homes == h)[0]
                self.batches.expect(m.batch_id, 1)
                if h == self.me:
                    self._commit_part(m.batch_id, idx, rows[idx], now, out)
                else:
                    fid = self.fwd_next
                    self.fwd_next += 1
                    self.forwards[fid] = (m.batch_id, idx, h)
                    out.append(Send(h, Forward(self.me, fid, rows[idx]), 64 + 128 * len(idx)))
        self.batches.answer(m.batch_id, out)

    def _on_forward(self, m: Forward, now: int, out: list[Effect]) -> None:
        """Rows another region routed here: screened again (a region trusts no peer with the
        bank's rules), then committed if their unit is still written here."""
        codes, _ = screen(m.rows, self.cfg.amap)
        results, seq = self._commit(m.rows[codes == 0], now, out) if (codes == 0).any() else (codes[:0], 0)
        answer = codes.copy()
        answer[codes == 0] = results
        seq = self._durable_wait(answer, seq)
        if seq and self.cfg.ship is Ship.SEMI_SYNC and seq > self.durable_seq:
            self.waiters.append((seq, "fwd", (m.sender, m.fwd_id, answer)))
        else:
            out.append(Send(m.sender, ForwardReply(m.fwd_id, answer), 64 + 4 * len(answer)))

    def _on_forward_reply(self, m: ForwardReply, now: int, out: list[Effect]) -> None:
        got = self.forwards.pop(m.fwd_id, None)
        if got is None:
            return
        batch_id, idx, home = got
        if len(m.results) == len(idx):  # a reply of another shape is not an answer to this forward
            self.batches.answer(batch_id, out, idx, m.results, home)

    def _commit_part(self, batch_id: int, idx: np.ndarray, rows: np.ndarray, now: int, out: list[Effect]) -> None:
        results, seq = self._commit(rows, now, out)
        seq = self._durable_wait(results, seq)
        if seq and self.cfg.ship is Ship.SEMI_SYNC and seq > self.durable_seq:
            self.waiters.append((seq, "part", (batch_id, idx, results)))
        else:
            self.batches.answer(batch_id, out, idx, results)

    def _durable_wait(self, results: np.ndarray, seq: int) -> int:
        """The own-log sequence a semi-sync reply must wait for.

        A retry answered EXISTS wrote nothing new, but the entry holding the original may
        not be on a majority yet: acknowledging it now would promise what a crash can still
        lose. So it waits for everything this region has written so far.
        """
        if not seq and (results == _EXISTS).any():
            return self.next_seq if self._step else self.next_seq - 1
        return seq

    def _commit(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        """Admit, transform and apply client rows as one entry of this region's log:
        (result per row, the entry's sequence or 0 if nothing was written)."""
        if self.own_gap():
            return np.full(len(rows), UNAVAILABLE, np.uint32), 0
        return self._admit_and_apply(rows, now, out)

    def _admit_and_apply(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        raise NotImplementedError  # the design's admission rule

    # ================================================================== own log
    def own_gap(self) -> bool:
        """After a restart with a damaged own record: our own log must come back from peers
        before we write again, or our sequence numbers would skip what they lack."""
        return self.heads[self.me] < self.next_seq - 1

    def _append_own(self, rows: np.ndarray, grants: tuple[Grant, ...], now: int, out: list[Effect]) -> int:
        """Rows (applied to the engine already) and grants go into this step's entry; returns
        the sequence number that entry gets (it is written when the step closes)."""
        if self._step is None:  # outside a step (recovery tools, tests driving one call)
            return self._write_own(rows, grants, now, out)
        if len(rows):
            self._step.rows.append(rows)
        self._step.grants.extend(grants)
        return self.next_seq

    def _close_step(self, now: int, out: list[Effect]) -> None:
        """Write what the step accepted as one entry, then release what only waited for it."""
        step = self._step
        if not step:
            return
        self._step = _StepEntry()
        rows = np.concatenate(step.rows) if len(step.rows) > 1 else step.rows[0] if step.rows else _NO_ROWS
        self._write_own(rows, tuple(step.grants), now, out)
        if not self.durable_need:
            self._advance_durable(out)

    def _write_own(self, rows: np.ndarray, grants: tuple[Grant, ...], now: int, out: list[Effect]) -> int:
        e = Entry(self.me, self.next_seq, self.routing.version, now, rows, grants).seal()
        self.next_seq += 1
        self.heads[self.me] = e.seq
        if not self.durable_need:
            self.durable_seq = e.seq
        self.by_origin[self.me].append(e)
        self.applied.append(e)
        out.append(Persist(e))
        self._on_own_entry(e)
        size = 96 + 128 * len(rows)
        for p in self.peers:
            out.append(Send(p, ShipMsg(self.me, self.me, [e]), size))
        return e.seq

    def _on_own_entry(self, e: Entry) -> None:
        """A hook: an entry this region just wrote (already applied to its engine)."""

    # ================================================================== follower path
    def _on_ship(self, m: ShipMsg, now: int, out: list[Effect]) -> None:
        o = m.origin
        if o == self.me and m.sender == self.me:
            return
        buf = self.buffer[o]
        for e in m.entries:
            if e.seq > self.heads[o]:
                buf[e.seq] = e
        before = self.heads[o]
        self._drain(o, m.sender, now, out)
        if self.heads[o] > before and o != self.me:
            out.append(Send(o, ShipAck(self.me, o, self.acked_head(o))))

    def _drain(self, o: int, source: int, now: int, out: list[Effect]) -> None:
        buf = self.buffer[o]
        while buf:
            nxt = self.heads[o] + 1
            e = buf.get(nxt)
            if e is None:
                self._pull(o, source, now, out)
                return
            if e.rv > self.routing.version:
                return  # wait for the newer routing table (heartbeats bring it)
            for origin, kept in self.routing.required_heads(e.rv).items():
                if origin != o and self.heads[origin] < kept:
                    self._pull(origin, source, now, out)
                    return
            del buf[nxt]
            self._apply(e)
            out.append(Persist(e))
        if self.catching_up:
            self._check_ready(now, out)

    def _check_ready(self, now: int, out: list[Effect]) -> None:
        """A hook: a design whose homes catch up before writing checks here."""

    def _pull(self, o: int, source: int, now: int, out: list[Effect]) -> None:
        key = (o, source)
        if now - self.pulled_at.get(key, -(1 << 62)) >= 2 * self.cfg.tick_every:
            self.pulled_at[key] = now
            out.append(Send(source, Pull(self.me, o, self.heads[o])))

    def _apply(self, e: Entry) -> None:
        """Apply the next entry of its origin (idempotent by (origin, seq))."""
        o = e.origin
        self.heads[o] = e.seq
        self.by_origin[o].append(e)
        self.applied.append(e)
        if self.routing.is_void(o, e.seq, e.rv):
            return
        if len(e.rows):
            self.replica.apply(e.rows, o, e.seq)
        self._on_applied(e)

    def _on_applied(self, e: Entry) -> None:
        """A hook: an entry (not void) applied in its origin's order."""

    def _on_pull(self, m: Pull, now: int, out: list[Effect]) -> None:
        if not 0 <= m.origin < len(self.by_origin) or m.after < self.log_base[m.origin]:
            return  # not ours to serve: what we no longer keep, every peer had vouched for
        log = self.by_origin[m.origin]
        start = m.after - self.log_base[m.origin]
        chunk = log[start : start + self.cfg.pull_max]
        if chunk:
            size = 96 * len(chunk) + 128 * sum(len(e.rows) for e in chunk)
            out.append(Send(m.sender, ShipMsg(self.me, m.origin, chunk), size))

    def _on_ship_ack(self, m: ShipAck, now: int, out: list[Effect]) -> None:
        if m.origin == self.me and m.seq > self.peer_acked.get(m.sender, 0):
            self.peer_acked[m.sender] = m.seq
            self._advance_durable(out)

    def _advance_durable(self, out: list[Effect]) -> None:
        if not self.durable_need:
            self.durable_seq = self.heads[self.me]
        else:
            acks = sorted(self.peer_acked.values(), reverse=True)
            self.durable_seq = acks[self.durable_need - 1]
        while self.waiters and self.waiters[0][0] <= self.durable_seq:
            _, kind, data = self.waiters.popleft()
            self._release_waiter(kind, data, out)

    def _release_waiter(self, kind: str, data: Any, out: list[Effect]) -> None:
        if kind == "part":
            batch_id, idx, results = data
            self.batches.answer(batch_id, out, idx, results)
        else:
            sender, fid, results = data
            out.append(Send(sender, ForwardReply(fid, results), 64 + 4 * len(results)))

    # ================================================================== routing (forks void a suffix)
    def _set_routing(self, table: RoutingTable) -> None:
        self.routing = table
        self._homes = np.asarray(table.homes)

    def _rebuild(self, out: list[Effect]) -> None:
        """Replay everything applied, minus void entries (a divergent suffix is dropped). Once
        the store has a snapshot, replay starts from it: the runtime hands it over (`LoadBase`,
        then `rebuild`), and until then this region writes nothing."""
        if self.has_base:
            self.rebuilding = True
            out.append(LoadBase())
            return
        self.replica.reset()
        for e in self.applied:
            if len(e.rows) and not self.routing.is_void(e.origin, e.seq, e.rv):
                self.replica.apply(e.rows, e.origin, e.seq)

    # ================================================================== heartbeats
    def _on_tick(self, m: Tick, now: int, out: list[Effect]) -> None:
        out.append(SetTimer(self.cfg.tick_every))
        if now - self.hb_last >= self.cfg.heartbeat_every:
            self.hb_last = now
            self.hb_round += 1
            self.hb_sent[self.hb_round] = now
            self.hb_sent.pop(self.hb_round - 64, None)
            self._on_heartbeat_round(now)
            based = tuple(self.base_heads) if self.cfg.checkpoint_every or self.cfg.checkpoint_bytes else ()
            hb = Heartbeat(self.me, self.hb_round, self.routing.version, self._vouched_heads(), based)
            for p in self.peers:
                out.append(Send(p, hb))
        if self.repairing:
            self.repairing.resend_due(now, out)
        if self.own_gap():
            for p in self.peers:
                self._pull(self.me, p, now, out)
        self._on_timers(now, out)
        self.batches.expire(now)
        if len(self.forwards) > MAX_FORWARDS:
            for fid in sorted(self.forwards)[: len(self.forwards) - MAX_FORWARDS]:
                del self.forwards[fid]

    def _on_heartbeat_round(self, now: int) -> None:
        """A hook: a heartbeat round is about to go out."""

    def _on_timers(self, now: int, out: list[Effect]) -> None:
        """A hook: the design's periodic work (promotions, resends)."""

    def suspects(self, p: int, now: int) -> bool:
        return self.detector.suspects(p, now)

    def _on_heartbeat(self, m: Heartbeat, now: int, out: list[Effect]) -> None:
        self.detector.heard(m.sender, now)
        if len(m.heads) == len(self.heads):
            self.peer_heads[m.sender] = m.heads
        if len(m.based) == len(self.heads):
            self.peer_based[m.sender] = m.based
        grant = self._grants_lease(m, now)
        newer = self.routing if self.routing.version > m.routing_version else None
        out.append(Send(m.sender, HeartbeatAck(self.me, m.round, grant, newer)))
        if m.heads[self.me] > self.peer_acked.get(m.sender, 0):
            self.peer_acked[m.sender] = m.heads[self.me]
            self._advance_durable(out)
        for o, head in enumerate(m.heads):
            if head > self.heads[o]:
                self._pull(o, m.sender, now, out)

    def _grants_lease(self, m: Heartbeat, now: int) -> bool:
        """Whether this heartbeat's ack counts toward the sender's write lease (no leases here)."""
        return False

    def _on_heartbeat_ack(self, m: HeartbeatAck, now: int, out: list[Effect]) -> None:
        self.detector.heard(m.sender, now)

    def acked_head(self, o: int) -> int:
        """How far we vouch for `o`'s log (acks, heartbeat heads). Void entries are never
        vouched for: their writer must not count them as stored. (Entries no longer kept
        were settled: never void.)"""
        head = self.heads[o]
        while head > 0:
            e = self.entry_at(o, head)
            if e is None or not self.routing.is_void(o, head, e.rv):
                break
            head -= 1
        return head

    def _vouched_heads(self) -> tuple[int, ...]:
        return tuple(self.acked_head(o) for o in range(len(self.heads)))

    # ================================================================== storage faults
    def _on_corrupted(self, m: Corrupted, now: int, out: list[Effect]) -> None:
        for index, origin, seq, _group, checksum in m.records:
            if index in self.repairing or self.entry_at(origin, seq) is None:
                continue
            out.append(Report("corruption", {"region": self.me, "index": index, "origin": origin, "seq": seq}))
            self.repairing.ask(index, origin, seq, checksum, now, out)

    def _on_repair_request(self, m: RepairRequest, now: int, out: list[Effect]) -> None:
        e = self.entry_at(m.origin, m.seq)
        if e is not None and e.intact():
            out.append(Send(m.sender, RepairData(m.index, e), 96 + 128 * len(e.rows)))

    def _on_repair_data(self, m: RepairData, now: int, out: list[Effect]) -> None:
        """A good copy of a damaged record, accepted only for a record this region asked to
        repair and only if it is that very entry (same origin, sequence and checksum)."""
        e = m.entry
        if self.repairing.take(m.index, e.origin, e):
            out.append(PersistRepair(m.index, e))
            if e.seq > self.heads[e.origin]:
                self.buffer[e.origin][e.seq] = e
                self._drain(e.origin, e.origin, now, out)

    # ================================================================== invariants
    def invariants(self) -> None:
        """Per-origin logs are gap-free prefixes, applied in order, and own sequence
        numbers never run behind what this region has written."""
        for o, log in enumerate(self.by_origin):
            base = self.log_base[o]
            check(self.heads[o] == base + len(log), "heads: a head is its origin's applied prefix",
                  (o, self.heads[o], base, len(log)))
            check(all(e.seq == base + i + 1 and e.origin == o
                      for i, e in enumerate(log[-3:], len(log) - len(log[-3:]))),
                  "logs: entries are numbered 1..head by their origin", o)
            check(all(seq > self.heads[o] for seq in self.buffer[o]), "buffer: only entries past the head wait", o)
        check(len(self.applied) == sum(self.heads) - sum(self.base_heads),
              "applied: every entry applied since the snapshot, once", (len(self.applied), self.heads, self.base_heads))
        check(self.next_seq >= self.heads[self.me] + 1, "own log: the next sequence is past the own head",
              (self.next_seq, self.heads[self.me]))
        check(all(b.parts >= 1 for b in self.batches.open.values()), "batches: an open batch awaits a part")

    # ================================================================== introspection
    def writer_of(self, unit: int) -> int | None:
        """The region that writes the ids naming this unit: the unit's home."""
        return int(self._homes[unit])

    @property
    def credit_legs_owed(self) -> int:
        return 0

    @property
    def applied_heads(self) -> list[int]:
        return list(self.heads)


LogShipping.handlers = {
    ClientRequest: "_on_client",
    Forward: "_on_forward",
    ForwardReply: "_on_forward_reply",
    Tick: "_on_tick",
    ShipMsg: "_on_ship",
    ShipAck: "_on_ship_ack",
    Pull: "_on_pull",
    Heartbeat: "_on_heartbeat",
    HeartbeatAck: "_on_heartbeat_ack",
    Corrupted: "_on_corrupted",
    RepairRequest: "_on_repair_request",
    RepairData: "_on_repair_data",
}

__all__ = ["LogShipping"]

"""The `quorum` mode of `RegionNode`: each unit's books behind its own Raft log.

Design (see replication/README.md, "quorum mode"):

* **A Raft group per unit** (`NodeConfig.quorum_groups = Grouping.UNIT`, the default), as in
  multi-Raft stores (TiKV, CockroachDB) and OceanBase's per-partition Paxos: every region
  is a member of every group, and each group prefers the unit's home region as its leader
  (Raft leadership transfer, thesis §3.10), so leaders are spread over the regions and a
  home region's customers commit at the cost of one round trip to the nearest majority.
  `"region"` groups the units homed in one region into one log led from there: leaders
  stay at the homes, but a region's batch is split three ways, not once per unit, so far
  fewer, larger entries (the batching multi-Raft stores do below the groups).
  `"ledger"` keeps one group for every unit, led from region 0: one leader orders all
  writes, the single-leader design to compare against.
* **Cross-unit transfers are two legs**, as in the `unit` mode: the debit leg (customer ->
  the debit unit's transit account) is committed in the debit unit's log and acknowledged
  then; the debit unit's leader then owes the credit leg (credit unit's transit ->
  beneficiary) and proposes it to the credit unit's leader until it sees it applied. The
  credit leg's id is derived, so re-sending is idempotent; what is owed is recomputed from
  committed state by any new leader, so no acknowledged credit is lost with a leader.
  Every entry of a unit's log touches that unit's accounts only, so replicas applying the
  groups' entries in different interleavings hold the same books.
* **Commit = majority.** A leader replies only once the entry is committed (stored on a
  majority of replicas, current term) and applied; `NodeConfig.replicas` gives each region
  its replica count (2+2+1 over three regions), and as a region's replicas share its fate
  they count as that many votes in elections and commits (Raft's majorities, weighted).
  Results are the engine's, identical on every replica, because every replica applies the
  same entries in the same order with the timestamps the leader stamped into them.
* **Reads go through the log**: a batch's reads are answered when its entry is applied at
  the leader of the account's unit (a read-only part appends an empty entry). Linearizable
  with no clock assumption; leader-lease reads would save the majority round trip but rest
  on bounded clock drift, which the clock-skew scenario deliberately stresses.
* **Snapshots, per group**: every `snapshot_every` applied entries a group replaces its
  log prefix with its units' slice of the engine (`replication.unit_state`); a region
  behind it gets the slice with `InstallSnapshot` and merges it into its engine.
* A region that is not a unit's leader forwards that unit's part of a batch to the leader
  it knows; with no leader known (minority side, election running) it answers that part
  UNAVAILABLE at once: unavailability, never a lost acknowledgement.
* The groups' Raft messages to one peer produced by one step travel as one `RaftBundle`,
  so heartbeats cost one message per peer per round, not one per group.
* **A damaged store record** (bit rot, `corrupt`) is rewritten from a copy with its checksum:
  ours, else a peer's. One whose entry lies behind its group's durable snapshot is also
  *superseded*: recovery never reads it, so a store checkpoint may drop it, and one is taken
  at once (store checkpoints drop the copies of entries they cover, so with checkpoints on
  none may be left anywhere). A member whose log holds damaged
  committed entries cannot apply past them; a leader with no copy answers its request with
  its snapshot when that covers the entry, and the member installs it (below its commit if
  need be), so a region never waits for ever on a copy nobody keeps.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.types import CreateTransferResult, TransferFlags
from replication.accounts import as_debit_legs, credit_legs, is_debit_leg, owed_debit_legs
from replication.admission import DEFENCES, fail_chains, screen
from replication.batches import ClientBatches
from replication.config import Grouping, NodeConfig, check
from replication.ids import CREDIT_BIT, CREDIT_BIT_HI, ids_of, reserved
from replication.log import Entry
from replication.messages import (
    ClientRequest,
    Corrupted,
    Effect,
    PersistRepair,
    RepairData,
    RepairRequest,
    Report,
    Send,
    SetTimer,
    Tick,
)
from replication.outbox import CreditOutbox
from replication.outcomes import CROSS_UNIT_TWO_PHASE, ID_IN_RESERVED_RANGE, ID_MUST_NAME_ITS_UNIT, UNAVAILABLE
from replication.raft import LEADER, RAFT_MESSAGES, RaftConfig, RaftGroupState, RaftNode
from replication.repairs import PendingRepairs, Wanted
from replication.replica import Replica, no_balances
from replication.routing import RoutingTable
from replication.snapshot import NodeSnapshot
from replication.unit_state import export_units, install_units

_PENDING_NOT_FOUND = int(CreateTransferResult.PENDING_TRANSFER_NOT_FOUND)
_POST_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_LINKED = int(TransferFlags.LINKED)
_NO_READS = np.zeros(0, np.uint64)

# Where a proposed entry's outcome goes: a part of one of our clients' batches
# ("part", batch id, row indices, read indices), a peer's forwarded part ("fwd", region,
# forward id), or nobody (credit legs: their sender learns by seeing them applied).
Target = tuple[Any, ...] | None


@dataclass(slots=True)
class QForward:
    """A unit's part of a client batch, sent to that unit's leader by the region that got it."""

    sender: int
    fwd_id: int
    group: int
    rows: np.ndarray
    reads: np.ndarray


@dataclass(slots=True)
class QForwardReply:
    fwd_id: int
    results: np.ndarray
    balances: np.ndarray


@dataclass(slots=True)
class QCreditLegs:
    """Credit legs a debit unit's leader owes, for the credit unit's leader to append."""

    group: int
    rows: np.ndarray


@dataclass(slots=True)
class RaftBundle:
    """Several groups' Raft messages for one peer, produced by one step: one send."""

    messages: list[Any]


def raft_config(cfg: NodeConfig, preferred: int) -> RaftConfig:
    return RaftConfig(election_min=cfg.suspect_after, election_max=2 * cfg.suspect_after,
                      heartbeat_every=cfg.heartbeat_every, snapshot_every=cfg.snapshot_every,
                      weights=cfg.replicas, preferred=preferred)


def groups_of(cfg: NodeConfig, homes: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """The units of each Raft group and the region each prefers as leader."""
    n_units = cfg.amap.n_units
    if cfg.quorum_groups is Grouping.LEDGER:
        return [np.arange(n_units)], [0]
    if cfg.quorum_groups is Grouping.REGION:
        return [np.nonzero(homes == r)[0] for r in range(cfg.n_regions)], list(range(cfg.n_regions))
    return [np.array([u]) for u in range(n_units)], [int(h) for h in homes]


def _rng(cfg: NodeConfig, group: int, restarted: bool) -> random.Random:
    return random.Random(cfg.seed * 7919 + cfg.me + int(restarted) + 104_729 * group)


class QuorumDesign:
    """The `quorum` design: the region's Raft groups in front of its replica's engine."""

    admits_row_by_row = True  # see `replication.node.Design`

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        self.cfg = cfg = config
        self.replica = replica
        self.me = cfg.me
        self.peers = [p for p in range(cfg.n_regions) if p != cfg.me]
        homes = np.asarray(RoutingTable.initial(cfg.amap.n_units, cfg.n_regions).homes)
        self.group_units, preferred = groups_of(cfg, homes)
        self.unit_group = np.zeros(cfg.amap.n_units, np.int64)
        for g, units in enumerate(self.group_units):
            self.unit_group[units] = g
        self.groups = [RaftNode(cfg.me, cfg.n_regions, raft_config(cfg, p), _rng(cfg, g, False), group=g)
                       for g, p in enumerate(preferred)]
        # (group, log index) -> [(term, first row, n rows, reads, target)]: an entry may carry several parts
        self.waiters: dict[tuple[int, int], list[tuple[int, int, int, np.ndarray, Target]]] = {}
        # inside `handle_many`: the parts proposed to each group, appended as one entry at the end
        self.deferring = False
        self.proposing: dict[int, list[tuple[np.ndarray, np.ndarray, Target]]] = {}
        self.batches = ClientBatches(cfg.me)  # our clients' batches still waiting for parts
        # fwd id -> (batch, rows, reads, the leader it went to)
        self.forwards: dict[int, tuple[int, np.ndarray, np.ndarray, int]] = {}
        self.fwd_next = 1
        self.persisted: dict[tuple[int, int], list[Entry]] = {}  # (group, index) -> copies we stored
        self.damaged_records = PendingRepairs(cfg.me, self.peers, cfg.tick_every)
        self.started = False
        # per group: what arrived while its leadership was being handed over (rows, reads, target)
        self.held: dict[int, list[tuple[np.ndarray, np.ndarray, Target]]] = {}
        self.reported_term = [1] * len(self.groups)  # a first term's election is the start-up, not a failover
        self.outbox = [CreditOutbox() for _ in self.groups]  # per group: debit legs whose credit leg is owed
        self.leading = [False] * len(self.groups)

    # -------------------------------------------------------------- dispatch
    def handle_many(self, messages: list[Any], now: int) -> list[Effect]:
        """Messages that arrived together (a runtime's batch): every part proposed to one log
        while handling them becomes one entry, so a group's entries are few and large however
        many client batches and forwards a step brings (the batching multi-Raft stores do)."""
        out: list[Effect] = []
        self.deferring = True
        for m in messages:
            self._dispatch_message(m, now, out)
        self.deferring = False
        proposing, self.proposing = self.proposing, {}
        for g, items in proposing.items():
            if self.groups[g].role == LEADER and not self.groups[g].transferring:
                for run in _chain_safe_runs(items):
                    self._append(g, run, now, out)
            else:  # leadership moved during the step: held as during a handover (see _end_step)
                self.held.setdefault(g, []).extend(items)
        self._end_step(now, out)
        return out


    def _dispatch_message(self, m: Any, now: int, out: list[Effect]) -> None:
        if not self.started:
            self.started = True
            for raft in self.groups:  # bootstrap: each group's preferred region campaigns first
                if raft.cfg.preferred == self.me and raft.term == 0:
                    raft.deadline = now
        t = type(m)
        if t is Tick:
            out.append(SetTimer(self.cfg.tick_every))
            self.batches.expire(now)
            for raft in self.groups:
                raft.tick(now, out)
            self._send_credit_legs(now, out)
            self.damaged_records.resend_due(now, out)
        elif t is RaftBundle:
            for msg in m.messages:
                self._step(msg, now, out)
        elif t in RAFT_MESSAGES:
            self._step(m, now, out)
        elif t is ClientRequest:
            self._on_client(m, now, out)
        elif t is QForward:
            if 0 <= m.group < len(self.groups) and self.groups[m.group].role == LEADER:
                self._propose(m.group, m.rows, m.reads, ("fwd", m.sender, m.fwd_id), now, out)
            else:
                self._answer(("fwd", m.sender, m.fwd_id), _unavailable(len(m.rows)), _no_balances(m.reads), out)
        elif t is QForwardReply:
            part = self.forwards.pop(m.fwd_id, None)
            if part is not None and len(m.results) == len(part[1]) and len(m.balances) == len(part[2]):
                batch_id, ri, di, leader = part
                self._part_done(("part", batch_id, ri, di), m.results, m.balances, out, leader)
        elif t is QCreditLegs:
            if 0 <= m.group < len(self.groups) and self.groups[m.group].role == LEADER:
                self._propose(m.group, m.rows, _NO_READS, None, now, out)
        elif t is Corrupted:
            self._on_corrupted(m, now, out)
        elif t is RepairRequest:  # in this mode a RepairRequest's `origin` names the group
            copies = [e for e in self.persisted.get((m.origin, m.seq), []) if e.intact()]
            for e in copies:
                out.append(Send(m.sender, RepairData(m.index, e), 96 + 128 * len(e.rows)))
            if not copies and 0 <= m.origin < len(self.groups) and m.sender in self.peers:
                self.groups[m.origin].offer_snapshot(m.sender, m.seq, now, out)
        elif t is RepairData:
            e = m.entry
            if 0 <= e.group < len(self.groups) and self.damaged_records.take(m.index, e.group, e):
                out.append(PersistRepair(m.index, e))
                self.groups[e.group].repair(e)

    def _end_step(self, now: int, out: list[Effect]) -> None:
        """What follows the messages of a step, once: release what a handover held, note what
        was persisted, apply what was committed, answer, report, bundle the Raft messages."""
        for g in [g for g in self.held if not self.groups[g].transferring]:
            self._release_held(g, now, out)
        self._record_persists(out)
        self._note_leadership()
        self._apply_committed(out)
        self._report_leadership(out)
        _bundle(out)

    def _step(self, m: Any, now: int, out: list[Effect]) -> None:
        if 0 <= m.group < len(self.groups):
            self.groups[m.group].step(m, now, out)

    def leader_of(self, unit: int) -> int | None:
        """The region this node believes leads the unit's group (None if it knows none)."""
        return self.groups[int(self.unit_group[unit])].leader

    writer_of = leader_of

    def invariants(self) -> None:
        """Each log's own invariants; a waiting answer is for an entry not yet applied; only
        a log's leader tracks the credit legs its units owe."""
        for g, raft in enumerate(self.groups):
            raft.invariants()
            check(self.leading[g] or not self.outbox[g], "outbox: only a leader owes credit legs", g)
        for g, index in self.waiters:
            check(index > self.groups[g].applied, "waiters: an applied entry's answer was given", (g, index))

    # -------------------------------------------------------------- checkpoints (replication.checkpoint)
    def export_state(self, retain_from: Sequence[int]) -> list[RaftGroupState]:
        """Every log's persistent state (a follower behind a log's snapshot gets it by
        InstallSnapshot, so nothing is kept for peers beyond what each log keeps)."""
        return [raft.export() for raft in self.groups]

    def settled_heads(self) -> list[int] | None:
        return None  # Raft never truncates a committed entry; recovery replays the rest as Raft does

    def damaged_positions(self) -> list[int]:
        superseded = set(self.superseded_positions())
        return [i for i in self.damaged_records.positions() if i not in superseded]

    def superseded_positions(self) -> list[int]:
        """The damaged records no recovery reads: a checkpoint may drop them (and one is due)."""
        return sorted(self.damaged_records.matching(self._superseded))

    def _superseded(self, w: Wanted) -> bool:
        """Whether the damaged record of entry `w.seq` of log `w.log` is one a recovery never
        reads: the entry lies behind the log's durable snapshot (which replaces it), or the
        log holds another entry at its index (a later record of the store replaced it)."""
        if not 0 <= w.log < len(self.groups):
            return False
        raft = self.groups[w.log]
        return w.seq <= raft.snap_index or w.seq > raft.last_index or raft.entry(w.seq).checksum != w.checksum

    def retain_from(self) -> tuple[int, ...]:
        return ()

    def on_checkpointed(self, position: int, heads: Sequence[int]) -> None:
        """The store's snapshot now covers its records before `position` and each log up to
        `heads` (its commit there): the copies of entries both covered and compacted out of
        the log go, as no store record needs them for a repair any more (the log keeps the
        others itself), and no damaged record it replaced is waited for."""
        for key in [k for k in self.persisted if k[1] <= min(heads[k[0]], self.groups[k[0]].offset)]:
            del self.persisted[key]
        self.damaged_records.forget_before(position)

    def rebuild(self, base: NodeSnapshot) -> None:
        raise RuntimeError("quorum mode never rebuilds its books from a snapshot (no LoadBase)")

    catching_up: frozenset[int] = frozenset()  # a new leader writes once elected: nothing to catch up
    lease_until = 0  # leadership is fenced by terms, not leases

    @property
    def credit_legs_owed(self) -> int:
        return sum(map(len, self.outbox))

    @property
    def applied_heads(self) -> list[int]:
        return [g.applied for g in self.groups]

    def suspects(self, p: int, now: int) -> bool:
        """Raft's own failure detector, as operators see it: a leader suspects a follower whose
        replies stopped; a follower suspects its leader once its heartbeats stopped. Followers
        never talk to each other, so they suspect nobody else."""
        for raft in self.groups:
            if raft.role == LEADER:
                if p in raft.last_ack and now - raft.last_ack[p] >= raft.cfg.election_min:
                    return True
            elif p == raft.leader and now - raft.leader_contact >= raft.cfg.election_min:
                return True
        return False

    def _report_leadership(self, out: list[Effect]) -> None:
        """A failover's milestones for the timeline: new leaders elected ("promotion"), then
        their first entry committed ("ready": writes resume there). Groups that get there in
        the same step are reported together, as one move of several units."""
        me = self.me
        moved: list[int] = []
        term = 0
        for g, raft in enumerate(self.groups):
            if raft.role != LEADER or raft.term <= self.reported_term[g]:
                continue
            first = raft.first_index_of_term()
            if first is None or raft.commit < first:
                continue
            self.reported_term[g] = raft.term
            moved += self.group_units[g].tolist()
            term = max(term, raft.term)
        if moved:
            out.append(Report("promotion", {"version": term, "moves": dict.fromkeys(moved, me), "kept": {},
                                            "decider": me}))
            out.append(Report("ready", {"region": me, "version": term, "units": moved}))

    # -------------------------------------------------------------- client path
    def _on_client(self, m: ClientRequest, now: int, out: list[Effect]) -> None:
        """The bank's rules first (`replication.admission`); then each row to the leader of
        the log of the unit its id names (cross-unit rows become debit legs there), each
        read to its account's log; answered once every part is."""
        rows = m.rows.copy()
        batch = self.batches.start(m.batch_id, len(rows), _no_balances(m.reads), now)
        codes, units = screen(rows, self.cfg.amap)
        refused = codes != 0
        batch.results[refused] = codes[refused]
        ri = np.nonzero(~refused)[0]
        rows, units = rows[ri], units[ri]
        dunits, cunits, _ = self.replica.route_units(rows)
        bad = as_debit_legs(rows, dunits, cunits, self.cfg.amap)
        split = fail_chains(np.where(bad, CROSS_UNIT_TWO_PHASE, 0).astype(np.uint32), rows)
        batch.results[ri[split != 0]] = split[split != 0]
        row_group = np.where(split == 0, self.unit_group[units], -1)
        read_group = self.unit_group[self.cfg.amap.units_of(m.reads)]  # no such account: zeros, from unit 0
        parts = sorted(set(row_group[row_group >= 0].tolist()) | set(read_group.tolist()))
        self.batches.expect(m.batch_id, len(parts))
        for g in parts:
            sel, di = np.nonzero(row_group == g)[0], np.nonzero(read_group == g)[0]
            self._dispatch(g, ("part", m.batch_id, ri[sel], di), rows[sel], m.reads[di], now, out)
        self.batches.answer(m.batch_id, out)

    def _dispatch(self, g: int, target: Target, rows: np.ndarray, reads: np.ndarray, now: int,
                  out: list[Effect]) -> None:
        assert target is not None
        raft = self.groups[g]
        if raft.role == LEADER:
            self._propose(g, rows, reads, target, now, out)
        elif raft.leader is not None:
            fid = self.fwd_next
            self.fwd_next += 1
            self.forwards[fid] = (target[1], target[2], target[3], raft.leader)
            if len(self.forwards) > 10_000:
                del self.forwards[next(iter(self.forwards))]
            out.append(Send(raft.leader, QForward(self.me, fid, g, rows, reads), 64 + 128 * len(rows)))
        else:
            self._part_done(target, _unavailable(len(rows)), _no_balances(reads), out)

    def _answer(self, target: Target, results: np.ndarray, balances: np.ndarray, out: list[Effect]) -> None:
        """This region's answer to a part: to our own client's batch, or to the region that
        forwarded it (with the rows refused before proposal filled in: `_narrow`)."""
        if target is None:
            return
        if target[0] == "part":
            self._part_done(target, results, balances, out)
            return
        if len(target) > 3:
            full = target[3].copy()
            full[full == 0] = results
            results = full
        out.append(Send(target[1], QForwardReply(target[2], results, balances), 64 + 4 * len(results)))

    def _part_done(self, target: tuple[Any, ...], results: np.ndarray, balances: np.ndarray,
                   out: list[Effect], writer: int | None = None, stay_open: bool = False) -> None:
        _, batch_id, ri, di = target
        if stay_open:  # some rows of a part answered early; the part itself is answered later
            self.batches.expect(batch_id, 1)
        self.batches.answer(batch_id, out, ri, results, writer, di, balances)

    def _propose(self, g: int, rows: np.ndarray, reads: np.ndarray, target: Target, now: int,
                 out: list[Effect]) -> None:
        raft = self.groups[g]
        if raft.transferring:
            self.held.setdefault(g, []).append((rows, reads, target))
            return
        if target is not None and len(rows):
            refused = self._refusals(g, rows)
            if refused.any():
                target, rows = self._narrow(target, refused, reads, out), rows[refused == 0]
                if target is None:
                    return
        if self.deferring:
            self.proposing.setdefault(g, []).append((rows, reads, target))
        else:
            self._append(g, [(rows, reads, target)], now, out)

    def _refusals(self, g: int, rows: np.ndarray) -> np.ndarray:
        """Client rows this log's leader must refuse before proposing them: an id in the bank's
        range, or a new id whose accounts (a post or void: its pending's) are not this log's
        units — a log's entries touch its own units only (`unit_state`), so a transfer is
        written by its unit's leader alone. An id the books already hold goes on: the engine
        answers EXISTS or EXISTS_WITH_DIFFERENT_* and touches nothing."""
        dunits, cunits, unknown = self.replica.route_units(rows)
        named_debit, named_credit = self.replica.named_accounts(rows)
        post_void = (rows["flags"] & _POST_VOID) != 0  # its accounts are its pending's (route_units)
        refused_anywhere = ~(named_debit & named_credit) & ~post_void  # the engine refuses it, touching nothing
        owned = refused_anywhere | ((self.unit_group[dunits] == g) & (self.unit_group[cunits] == g))
        new = ~self.replica.have_transfers(rows)
        codes = np.zeros(len(rows), np.uint32)
        if DEFENCES["id_units"]:
            codes[new & ~owned & ~unknown] = ID_MUST_NAME_ITS_UNIT
        if DEFENCES["reserved_ids"]:
            codes[reserved(rows["id_hi"])] = ID_IN_RESERVED_RANGE
        return fail_chains(codes, rows)

    def _narrow(self, target: Target, refused: np.ndarray, reads: np.ndarray, out: list[Effect]) -> Target:
        """The target of the rows still to propose, once `refused` rows are answered: a part
        of our own client's batch gets those answers now; a forwarder gets them with the rest.
        None when nothing is left to propose or read (the whole part is answered here)."""
        assert target is not None
        keep = refused == 0
        done = not keep.any() and not len(reads)
        if target[0] == "part":
            _, batch_id, ri, di = target
            self._part_done(("part", batch_id, ri[~keep], di[:0]), refused[~keep], _no_balances(di[:0]), out,
                            stay_open=not done)
            return None if done else ("part", batch_id, ri[keep], di)
        if done:
            self._answer(target, refused, _no_balances(reads), out)
            return None
        return ("fwd", target[1], target[2], refused)

    def _append(self, g: int, items: list[tuple[np.ndarray, np.ndarray, Target]], now: int,
                out: list[Effect]) -> None:
        """Parts proposed to group `g` (we lead it), as one new log entry."""
        raft = self.groups[g]
        rows = np.concatenate([r for r, _, _ in items]) if len(items) > 1 else items[0][0].copy()
        if len(rows):
            rows["timestamp"] = self._stamp(raft, len(rows), now)
        got = raft.propose(rows, now, out)
        assert got is not None
        index, term = got
        first = 0
        for r, reads, target in items:
            self.waiters.setdefault((g, index), []).append((term, first, len(r), reads, target))
            first += len(r)

    def _release_held(self, g: int, now: int, out: list[Effect]) -> None:
        """The handover finished (or was given up): propose what was held if still leader;
        otherwise send our own clients' parts to the new leader, and answer forwarded ones
        UNAVAILABLE (never proposed, so their region's client retries them safely)."""
        for rows, reads, target in self.held.pop(g):
            if self.groups[g].role == LEADER:
                self._propose(g, rows, reads, target, now, out)
            elif target is not None and target[0] == "part":
                self._dispatch(g, target, rows, reads, now, out)
            else:
                self._answer(target, _unavailable(len(rows)), _no_balances(reads), out)

    def _stamp(self, raft: RaftNode, n: int, now: int) -> np.ndarray:
        """Timestamps strictly above every one in the group's log (leaders' clocks may disagree)."""
        tail = 0
        for e in reversed(raft.log):
            if len(e.rows):
                tail = int(e.rows["timestamp"].max())
                break
        return self.replica.stamp(n, now, floor=tail)

    # -------------------------------------------------------------- cross-unit credit legs
    def _note_leadership(self) -> None:
        """A group's leader owes its units' credit legs: a new leader works out what is owed
        from its books (committed state, so nothing an old leader owed is lost); a region
        that stops leading forgets it."""
        for g, raft in enumerate(self.groups):
            leads = raft.role == LEADER
            if leads != self.leading[g]:
                self.leading[g] = leads
                if leads:
                    self._rebuild_outbox(g)
                else:
                    self.outbox[g] = CreditOutbox()

    def _track_legs(self, g: int, rows: np.ndarray, res: np.ndarray) -> None:
        """Applied debit legs owe a credit leg (tracked by the debit unit's leader); an applied
        credit leg settles one."""
        amap = self.cfg.amap
        legs = (rows["id_hi"] & CREDIT_BIT_HI) != 0
        debits = is_debit_leg(rows, amap.n_units) if self.leading[g] else np.zeros(len(rows), bool)
        if not (legs.any() or debits.any()):
            return
        done = res == 0
        paid = rows[legs & done]
        for payer, tid in zip(paid["user_data_128_lo"].tolist(), ids_of(paid), strict=True):
            self.outbox[int(self.unit_group[amap.unit_of(payer)])].settle(tid & ~CREDIT_BIT)
        owing = np.nonzero(debits & done)[0]
        owing = owing[self.replica.transfer_slots(rows[owing], credit_legs=True) < 0]
        debit_legs = rows[owing]  # a copy; a leg's credit leg is built when it is sent
        self.outbox[g].owe(0, ids_of(debit_legs), debit_legs)

    def _rebuild_outbox(self, g: int) -> None:
        """After a snapshot replaced the group's books: what they owe, from the engine."""
        owned = np.zeros(self.cfg.amap.n_units, bool)
        owned[self.group_units[g]] = True
        owed = owed_debit_legs(self.replica.engine, owned)
        self.outbox[g] = CreditOutbox()  # nothing was sent yet by this leader
        self.outbox[g].replace(ids_of(owed), owed)

    def _send_credit_legs(self, now: int, out: list[Effect]) -> None:
        amap, every = self.cfg.amap, self.cfg.credit_resend_every
        for g, raft in enumerate(self.groups):
            if raft.role != LEADER or not self.outbox[g]:
                continue
            debits = self.outbox[g].due(now, 0, every)
            if debits is None:
                continue
            legs = credit_legs(debits, amap)
            targets = self.unit_group[amap.units_of(legs["credit_account_id_lo"], legs["credit_account_id_hi"])]
            for target_group in np.unique(targets).tolist():
                rows = legs[targets == target_group]
                target = self.groups[target_group]
                if target.role == LEADER:
                    self._propose(target_group, rows, _NO_READS, None, now, out)
                elif target.leader is not None:
                    out.append(Send(target.leader, QCreditLegs(target_group, rows), 64 + 128 * len(rows)))

    # -------------------------------------------------------------- state machine
    def _apply_committed(self, out: list[Effect] | None) -> None:
        engine, amap = self.replica.engine, self.cfg.amap
        for g, raft in enumerate(self.groups):
            if raft.applied == raft.commit and raft.pending_snapshot is None:
                continue
            if raft.pending_snapshot is not None:
                install_units(engine, amap, self.group_units[g], raft.pending_snapshot.data)
                self._drop_waiters(g, raft.pending_snapshot.index)
                raft.pending_snapshot = None
                if self.leading[g]:
                    self._rebuild_outbox(g)
            for e in raft.take_committed():
                res = np.zeros(0, np.uint32)
                if len(e.rows):
                    res = engine.create_transfers(e.rows, e.rows["timestamp"].copy())
                    self.replica.last_ts = max(self.replica.last_ts, int(e.rows["timestamp"].max()))
                    self._track_legs(g, e.rows, res)
                if out is None:
                    continue
                for term, first, n, reads, target in self.waiters.pop((g, e.seq), []):
                    if term == e.rv:
                        self._answer(target, res[first:first + n].astype(np.uint32), self.replica.read(reads), out)
                    else:  # our entry lost its slot to another leader's: never applied, safe to retry
                        self._answer(target, _unavailable(n), _no_balances(reads), out)
            if out is not None and raft.applied - raft.snap_index >= raft.cfg.snapshot_every:
                raft.compact(export_units(engine, amap, self.group_units[g]), out)
                self._drop_waiters(g, raft.snap_index)
                # `persisted` keeps the compacted entries: the store still holds their records,
                # and a record damaged later is repaired from a copy (ours or a peer's) until a
                # store checkpoint covers it (`on_checkpointed`)

    def _drop_waiters(self, g: int, index: int) -> None:
        """The entries of group `g` up to `index` were applied as a snapshot, not one by one:
        their results are not known here, so their clients get no answer (a timeout, which
        a retry with the same ids resolves), never a guessed one."""
        for key in [k for k in self.waiters if k[0] == g and k[1] <= index]:
            del self.waiters[key]

    def _record_persists(self, out: list[Effect]) -> None:
        for eff in out:
            rec = getattr(eff, "record", None)
            if type(rec) is Entry:
                self.persisted.setdefault((rec.group, rec.seq), []).append(rec)

    # -------------------------------------------------------------- storage faults
    def _on_corrupted(self, m: Corrupted, now: int, out: list[Effect]) -> None:
        """A damaged record is rewritten from a copy with its checksum: ours if the entry is
        still in memory, else a peer's (asked until one answers: the request or the answer
        can be lost, and a compacted log has no copy to give)."""
        for index, _origin, seq, group, checksum in m.records:
            if not 0 <= group < len(self.groups) or index in self.damaged_records:
                continue
            cands = [e for e in self.persisted.get((group, seq), []) if e.checksum == checksum and e.intact()]
            if cands:
                out.append(PersistRepair(index, cands[-1]))  # our own memory still holds it
            else:
                self.damaged_records.ask(index, group, seq, checksum, now, out)

    # -------------------------------------------------------------- recovery
    @classmethod
    def recover(cls, config: NodeConfig, replica: Replica, records: Sequence[object], *,
                base: NodeSnapshot | None = None, first: int = 0) -> tuple[QuorumDesign, list[Effect]]:
        """Rebuild every group's Raft state (term, vote, log, commit marks, snapshots) from
        the store's snapshot `base` (the books and each log's state, applied to its commit)
        and the durable records after it (from store index `first`), and re-apply each
        group's committed entries past what the books hold."""
        q = cls(config, replica)
        states: list[RaftGroupState | None] = [None] * len(q.groups)
        if base is not None:
            if [s.group for s in base.raft] != list(range(len(q.groups))):
                raise ValueError(f"snapshot at record {base.position} holds Raft logs "
                                 f"{[s.group for s in base.raft]}, this region runs {len(q.groups)}")
            replica.restore(base)
            replica.last_ts = base.last_ts
            states = list(base.raft)
        by_group: list[list[object]] = [[] for _ in q.groups]
        for rec in records:
            g = getattr(rec, "group", -1)
            if 0 <= g < len(by_group):
                by_group[g].append(rec)
        q.groups = [RaftNode.restore(config.me, config.n_regions, raft.cfg, _rng(config, g, True), by_group[g],
                                     group=g, base=states[g]) for g, raft in enumerate(q.groups)]
        q.started = True
        for state, raft in zip(states, q.groups, strict=True):
            if state is None:
                continue
            # RaftNode.restore checked the checksum of each entry its log kept: not twice
            log = raft.log if raft.offset == state.offset else []
            for i, e in enumerate(state.log):
                kept = i < len(log) and log[i] is e
                if e.seq not in raft.damaged if kept else e.intact():
                    q.persisted.setdefault((e.group, e.seq), []).append(e)
        effects: list[Effect] = []
        damaged = []
        for index, rec in enumerate(records, start=first):
            if type(rec) is Entry:
                if rec.intact():
                    q.persisted.setdefault((rec.group, rec.seq), []).append(rec)
                else:
                    damaged.append((index, rec))
        for index, rec in damaged:
            copies = [e for e in q.persisted.get((rec.group, rec.seq), []) if e.checksum == rec.checksum]
            if copies:  # the store holds the same entry again, intact
                effects.append(PersistRepair(index, copies[-1]))
            else:
                q.damaged_records.ask(index, rec.group, rec.seq, rec.checksum, None, effects)
        q._apply_committed(None)
        return q, effects


def _chain_safe_runs(items: list[tuple[np.ndarray, np.ndarray, Target]]) -> list[list[Any]]:
    """Parts merged into one entry are applied as one engine batch: a part ending with an
    open LINKED chain would swallow the next part's rows into its chain. Such a part ends
    its entry, so each part's rows get exactly the results they would get alone."""
    runs: list[list[Any]] = [[]]
    for item in items:
        runs[-1].append(item)
        rows = item[0]
        if len(rows) and int(rows["flags"][-1]) & _LINKED:
            runs.append([])
    return [run for run in runs if run]


def _unavailable(n: int) -> np.ndarray:
    return np.full(n, UNAVAILABLE, np.uint32)


def _no_balances(reads: np.ndarray) -> np.ndarray:
    return no_balances(len(reads))


def _bundle(out: list[Effect]) -> None:
    """Coalesce the Raft messages bound for the same peer into one `RaftBundle` each."""
    by_peer: dict[int, list[Send]] = {}
    for eff in out:
        if type(eff) is Send and type(eff.message) in RAFT_MESSAGES:
            by_peer.setdefault(eff.to, []).append(eff)
    bundled = {p: sends for p, sends in by_peer.items() if len(sends) > 1}
    if not bundled:
        return
    kept = [eff for eff in out if not (type(eff) is Send and eff.to in bundled and type(eff.message) in RAFT_MESSAGES)]
    for p, sends in bundled.items():
        kept.append(Send(p, RaftBundle([s.message for s in sends]), sum(s.size for s in sends)))
    out[:] = kept

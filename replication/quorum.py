"""The `quorum` mode of `RegionNode`: the ledger as a state machine behind one Raft log.

Design (see replication/README.md, "quorum mode"):

* **One Raft group for the whole ledger** (a ledger-wide log), not one per unit. Every
  client batch of every unit is one log entry, so a cross-unit transfer is a single
  engine transfer applied atomically on every replica (no transit legs, no outbox), and
  the engine's no-overdraft flag is the guard, exactly as on a unit home. The cost: one
  leader orders all writes (throughput is bounded by one region, and regions other than
  the leader's pay a WAN hop to it). Per-unit groups would spread leaders over regions
  but need a cross-group protocol for cross-unit transfers; not done here.
* **Commit = majority.** The leader replies only once the entry is committed (stored on a
  majority of replicas, current term) and applied; `NodeConfig.replicas` gives each region
  its replica count (2+2+1 over three regions), and as a region's replicas share its fate
  they count as that many votes in elections and commits (Raft's majorities, weighted);
  the results are the engine's, identical on every
  replica because every replica applies the same entries in the same order with the
  timestamps the leader stamped into them.
* **Reads go through the log**: a batch's reads are answered when its entry is applied at
  the leader (a read-only batch appends an empty entry). Linearizable with no clock
  assumption; leader-lease reads would save the majority round trip but rest on bounded
  clock drift, which the clock-skew scenario deliberately stresses.
* **Snapshots**: every `snapshot_every` applied entries the engine's state
  (`Engine.snapshot()`) replaces the log prefix; a region that is behind the snapshot gets
  it with `InstallSnapshot` instead of the history.
* A region that is not the leader forwards to the leader it knows; with no leader known
  (minority side, election running) it answers UNAVAILABLE at once: unavailability, never
  a lost acknowledgement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replication.log import DurableStore, Entry
from replication.messages import (
    ClientRequest,
    Corrupted,
    Effect,
    PersistRepair,
    RepairData,
    RepairRequest,
    Reply,
    Report,
    Send,
    SetTimer,
    Tick,
)
from replication.raft import LEADER, RAFT_MESSAGES, RaftConfig, RaftNode

if TYPE_CHECKING:
    from replication.node import NodeConfig, RegionNode

UNAVAILABLE = 1001


@dataclass(slots=True)
class QForward:
    """A client batch sent to the leader by the region that received it."""

    sender: int
    fwd_id: int
    rows: np.ndarray
    reads: np.ndarray


@dataclass(slots=True)
class QForwardReply:
    fwd_id: int
    results: np.ndarray
    balances: np.ndarray


def raft_config(cfg: NodeConfig) -> RaftConfig:
    return RaftConfig(election_min=cfg.suspect_after, election_max=2 * cfg.suspect_after,
                      heartbeat_every=cfg.heartbeat_every, snapshot_every=cfg.snapshot_every,
                      weights=cfg.replicas, preferred=0)


class Quorum:
    """Glue between a `RaftNode` and the region's ledger engine."""

    def __init__(self, node: RegionNode) -> None:
        self.node = node
        cfg = node.cfg
        self.raft = RaftNode(cfg.me, cfg.n_regions, raft_config(cfg), random.Random(cfg.seed * 7919 + cfg.me))
        # log index -> [(term, n rows, reads, target)]; target ("local", batch) | ("fwd", region, fid)
        self.waiters: dict[int, list[tuple[int, int, np.ndarray, tuple]]] = {}
        self.forwards: dict[int, int] = {}
        self.fwd_next = 1
        self.last_ts = 0
        self.persisted: dict[tuple[int, int], list[Entry]] = {}
        self.damaged_records: dict[int, bytes] = {}  # store index -> checksum of the damaged record
        self.started = False
        # client batches that arrived while leadership was being handed over (rows, reads, target)
        self.held: list[tuple[np.ndarray, np.ndarray, tuple]] = []
        self.reported_term = 1  # the first term's election is the start-up, not a failover

    # -------------------------------------------------------------- dispatch
    def handle(self, m: Any, now: int, out: list[Effect]) -> None:
        if not self.started:
            self.started = True
            if self.node.me == self.raft.cfg.preferred and self.raft.term == 0:
                self.raft.deadline = now  # bootstrap: the preferred region campaigns first
        t = type(m)
        if t is Tick:
            out.append(SetTimer(self.node.cfg.tick_every))
            self.raft.tick(now, out)
        elif t in RAFT_MESSAGES:
            self.raft.step(m, now, out)
        elif t is ClientRequest:
            self._on_client(m, now, out)
        elif t is QForward:
            if self.raft.role == LEADER:
                self._propose(m.rows, m.reads, ("fwd", m.sender, m.fwd_id), now, out)
            else:
                out.append(Send(m.sender, QForwardReply(m.fwd_id, _unavailable(len(m.rows)),
                                                        np.zeros((len(m.reads), 4), np.uint64))))
        elif t is QForwardReply:
            batch = self.forwards.pop(m.fwd_id, None)
            if batch is not None:
                out.append(Reply(batch, m.results, m.balances))
        elif t is Corrupted:
            self._on_corrupted(m, out)
        elif t is RepairRequest:
            for e in self.persisted.get((m.origin, m.seq), []):
                if e.intact():
                    out.append(Send(m.sender, RepairData(m.index, e), 96 + 128 * len(e.rows)))
        elif t is RepairData:
            want = self.damaged_records.get(m.index)
            e = m.entry
            if want is not None and e.checksum == want and e.intact():
                del self.damaged_records[m.index]
                out.append(PersistRepair(m.index, e))
                self.raft.repair(e)
        if self.held and not self.raft.transferring:
            self._release_held(now, out)
        self._record_persists(out)
        self._apply_committed(out)
        self._report_leadership(out)

    def suspects(self, p: int, now: int) -> bool:
        """Raft's own failure detector, as operators see it: a leader suspects a follower whose
        replies stopped; a follower suspects its leader once its heartbeats stopped. Followers
        never talk to each other, so they suspect nobody else."""
        raft = self.raft
        if raft.role == LEADER:
            return p in raft.last_ack and now - raft.last_ack[p] >= raft.cfg.election_min
        return p == raft.leader and now - raft.leader_contact >= raft.cfg.election_min

    def _report_leadership(self, out: list[Effect]) -> None:
        """A failover's milestones for the timeline: a new leader elected ("promotion"),
        then its first entry committed ("ready": writes resume). Reported by the new leader."""
        raft = self.raft
        if raft.role != LEADER or raft.term <= self.reported_term:
            return
        first = raft.first_index_of_term()
        if first is None or raft.commit < first:
            return
        self.reported_term = raft.term
        detail = {"version": raft.term, "moves": {}, "kept": {}, "decider": self.node.me}
        out.append(Report("promotion", detail))
        out.append(Report("ready", {"region": self.node.me, "version": raft.term, "units": []}))

    # -------------------------------------------------------------- client path
    def _on_client(self, m: ClientRequest, now: int, out: list[Effect]) -> None:
        raft = self.raft
        if raft.role == LEADER:
            self._propose(m.rows, m.reads, ("local", m.batch_id), now, out)
        elif raft.leader is not None:
            fid = self.fwd_next
            self.fwd_next += 1
            self.forwards[fid] = m.batch_id
            if len(self.forwards) > 10_000:
                del self.forwards[min(self.forwards)]
            out.append(Send(raft.leader, QForward(self.node.me, fid, m.rows, m.reads), 64 + 128 * len(m.rows)))
        else:
            out.append(Reply(m.batch_id, _unavailable(len(m.rows)), np.zeros((len(m.reads), 4), np.uint64)))

    def _propose(self, rows: np.ndarray, reads: np.ndarray, target: tuple, now: int, out: list[Effect]) -> None:
        if self.raft.transferring:
            self.held.append((rows, reads, target))
            return
        rows = rows.copy()
        if len(rows):
            rows["timestamp"] = self._stamp(len(rows), now)
        got = self.raft.propose(rows, now, out)
        assert got is not None
        index, term = got
        self.waiters.setdefault(index, []).append((term, len(rows), reads, target))

    def _release_held(self, now: int, out: list[Effect]) -> None:
        """The handover finished (or was given up): propose what was held if still leader;
        otherwise send our own clients' batches to the new leader, and answer forwarded ones
        UNAVAILABLE (never proposed, so their region's client retries them safely)."""
        held, self.held = self.held, []
        for rows, reads, target in held:
            if self.raft.role == LEADER:
                self._propose(rows, reads, target, now, out)
            elif target[0] == "local":
                self._on_client(ClientRequest(target[1], rows, reads), now, out)
            else:
                out.append(Send(target[1], QForwardReply(target[2], _unavailable(len(rows)),
                                                         np.zeros((len(reads), 4), np.uint64))))

    def _stamp(self, n: int, now: int) -> np.ndarray:
        """Timestamps strictly above every one in the log (leaders' clocks may disagree)."""
        tail = 0
        for e in reversed(self.raft.log):
            if len(e.rows):
                tail = int(e.rows["timestamp"].max())
                break
        base = max(now, self.last_ts + 1, tail + 1)
        self.last_ts = base + n - 1
        return np.arange(base, base + n, dtype=np.uint64)

    # -------------------------------------------------------------- state machine
    def _apply_committed(self, out: list[Effect] | None) -> None:
        raft, node = self.raft, self.node
        if raft.pending_snapshot is not None:
            node.engine.restore(raft.pending_snapshot.data)
            raft.pending_snapshot = None
        for e in raft.take_committed():
            res = (node.engine.create_transfers(e.rows, e.rows["timestamp"].copy()) if len(e.rows)
                   else np.zeros(0, np.uint32))
            if len(e.rows):
                self.last_ts = max(self.last_ts, int(e.rows["timestamp"].max()))
            if out is None:
                continue
            for term, n, reads, target in self.waiters.pop(e.seq, []):
                if term == e.rv:
                    results, balances = res.astype(np.uint32), node._read(reads)
                else:  # our entry lost its slot to another leader's: never applied, safe to retry
                    results, balances = _unavailable(n), np.zeros((len(reads), 4), np.uint64)
                if target[0] == "local":
                    out.append(Reply(target[1], results, balances))
                else:
                    out.append(Send(target[1], QForwardReply(target[2], results, balances), 64 + 4 * len(results)))
        if out is not None and raft.applied - raft.snap_index >= raft.cfg.snapshot_every:
            raft.compact(node.engine.snapshot(), out)
            for i in [i for i in self.waiters if i <= raft.snap_index]:
                del self.waiters[i]

    def _record_persists(self, out: list[Effect]) -> None:
        for eff in out:
            rec = getattr(eff, "record", None)
            if type(rec) is Entry:
                self.persisted.setdefault((rec.origin, rec.seq), []).append(rec)

    # -------------------------------------------------------------- storage faults
    def _on_corrupted(self, m: Corrupted, out: list[Effect]) -> None:
        for index, origin, seq in m.records:
            cands = [e for e in self.persisted.get((origin, seq), []) if e.intact()]
            cur = self.raft.term_at(seq)
            cands.sort(key=lambda e: e.rv == cur)
            if cands:
                out.append(PersistRepair(index, cands[-1]))  # our own memory still holds it
            else:
                for p in self.node.peers:
                    out.append(Send(p, RepairRequest(self.node.me, origin, seq, index)))

    # -------------------------------------------------------------- recovery
    @classmethod
    def recover(cls, node_cls: type[RegionNode], config: NodeConfig,
                store: DurableStore) -> tuple[RegionNode, list[Effect]]:
        node = node_cls(config)
        q = node._quorum
        assert q is not None
        records = [r.payload for r in store.records]
        q.raft = RaftNode.restore(config.me, config.n_regions, raft_config(config),
                                  random.Random(config.seed * 7919 + config.me + 1), records)
        q.started = True
        effects: list[Effect] = []
        for index, rec in enumerate(records):
            if type(rec) is Entry:
                if rec.intact():
                    q.persisted.setdefault((rec.origin, rec.seq), []).append(rec)
                else:
                    q.damaged_records[index] = rec.checksum
                    for p in node.peers:
                        effects.append(Send(p, RepairRequest(node.me, rec.origin, rec.seq, index)))
        q._apply_committed(None)
        return node, effects


def _unavailable(n: int) -> np.ndarray:
    return np.full(n, UNAVAILABLE, np.uint32)

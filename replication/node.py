"""`RegionNode`: one region's replica of the ledger, as a sans-IO state machine.

`node.handle(message, now) -> list[effect]`. The node never reads a clock, sleeps, opens a
socket or draws a random number: `now` is the region's clock (ns), and every effect
(send, persist, reply, timer, report) is carried out by whichever runtime drives it.

Modes (see ARCHITECTURE.md):

* `async`  — any region writes any account; admission is checked against the *local*
  replica only, entries are shipped afterwards. Two regions can both accept a debit
  against the same money: the overdraft is real and shows in the final books.
* `unit`   — each unit has one home (routing table); other regions forward to it. The
  home's engine enforces no-overdraft; `ship=semi-sync` replies only once the entry is
  stored in a majority of regions (home + `R - majority(R)` peers), so a promoted home
  always finds it (RPO = 0 for one region lost); `ship=async` replies at once.
* `escrow` — any region writes, but may only debit an account within its own *share*
  of the balance. Shares start as an even split of the opening balance, grow with the
  credits a region applies, and move between regions as `grant`s written into the
  granting region's log (so they are durable and shipped like any entry). The sum of
  the shares never exceeds the balance, so no partition can cause an overdraft.
* `quorum` — a Raft log per unit (`replication/raft.py`, glue in `replication/quorum.py`),
  led from the unit's home region when it can be: the unit's leader appends each batch,
  replies once it is committed on a majority and applied; every replica applies every
  log's committed entries in order. Cross-unit transfers are debit and credit legs, as in
  `unit`.

Failover (unit mode) — who decides, explicitly:

* Every region heartbeats every other; a region *suspects* a peer it has not heard for
  `suspect_after`.
* The **decider** is the lowest-ranked region (rank = index in the region list) among
  the regions a node does not suspect, and only if that node itself sees a majority
  (counting itself). Two nodes may briefly both believe they decide (asymmetric
  partitions); safety does not rest on that belief: a new routing version needs *votes*
  from a majority, and a region votes at most once per version.
* A home may write only under a **lease**: it counts heartbeat acks with `grant=True`
  from a majority; the lease lasts `lease*(1-drift)` from the send time of that round.
  A region grants only while it has not voted to demote that home, and votes to demote
  only once its own last grant to that home has expired. Any two majorities intersect,
  so the old home's lease has run out before the new routing can be committed. A voter
  whose grant has not yet expired (it heard the dead home's last heartbeat later than the
  decider did) refuses with the time its grant has left; the decider drops a proposal
  that can no longer win and proposes again exactly then, not after a fixed timeout.
* The new home takes writes only after it has caught up with the old home's log up to
  the fork point (the highest sequence any voter had applied).
* If the decider itself is cut off, it no longer sees a majority and stops deciding; the
  majority side suspects it and the next-ranked region there becomes the decider after
  `suspect_after`. If the decider was also a home, its units are moved like any other.
  A minority side never promotes anything: its units homed elsewhere stay unwritable
  there (the CP choice), and its own homes lose their lease.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cext import Engine
from cext.layout import TRANSFER_DTYPE
from ledger.types import CreateTransferResult, TransferFlags
from replication.accounts import (
    CREDIT_BIT_HI,
    TRANSIT_BASE,
    AccountMap,
    as_debit_legs,
    credit_leg,
    genesis,
    is_debit_leg,
    owed_debit_legs,
)
from replication.log import DurableStore, Entry
from replication.messages import (
    CROSS_UNIT_TWO_PHASE,
    UNAVAILABLE,
    Abort,
    ClientRequest,
    Corrupted,
    CreditLegs,
    Effect,
    Forward,
    ForwardReply,
    Heartbeat,
    HeartbeatAck,
    Message,
    Persist,
    PersistRepair,
    Propose,
    Pull,
    Query,
    QuotaRequest,
    RepairData,
    RepairRequest,
    Reply,
    Report,
    RoutingUpdate,
    Send,
    SetTimer,
    Ship,
    ShipAck,
    Tick,
    Vote,
)
from replication.quorum import GROUPINGS, Quorum
from replication.routing import RoutingTable, majority, preference

MS = 1_000_000
RESULT_NAMES = {UNAVAILABLE: "UNAVAILABLE", CROSS_UNIT_TWO_PHASE: "CROSS_UNIT_TWO_PHASE"}
MODES = ("async", "unit", "escrow", "quorum")
SHIPS = ("async", "semi-sync")
_TWO_PHASE = int(TransferFlags.PENDING | TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_POST_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_LINKED = int(TransferFlags.LINKED)
_EXCEEDS = int(CreateTransferResult.EXCEEDS_CREDITS)
_EXISTS = int(CreateTransferResult.EXISTS)
_PENDING_NOT_FOUND = int(CreateTransferResult.PENDING_TRANSFER_NOT_FOUND)


def result_name(code: int) -> str:
    return RESULT_NAMES.get(code) or CreateTransferResult(code).name


@dataclass(frozen=True)
class NodeConfig:
    n_regions: int
    me: int
    mode: str
    amap: AccountMap
    opening_balance: int
    ship: str = "async"
    heartbeat_every: int = 100 * MS
    suspect_after: int = 600 * MS
    lease: int = 1000 * MS
    drift: float = 0.01
    tick_every: int = 50 * MS
    credit_resend_every: int = 300 * MS
    quota_retry_every: int = 200 * MS
    pull_max: int = 256
    seed: int = 0  # quorum: seeds the Raft election timeouts (the node draws nothing else)
    snapshot_every: int = 1000  # quorum: applied entries between snapshots (log compaction)
    replicas: tuple[int, ...] = ()  # quorum: replicas (votes) per region, e.g. (2, 2, 1); empty = one each
    quorum_groups: str = "unit"  # quorum: a Raft log per "unit" or per home "region" (led there), or one "ledger"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.ship not in SHIPS:
            raise ValueError(f"ship must be one of {SHIPS}, got {self.ship!r}")
        if self.quorum_groups not in GROUPINGS:
            raise ValueError(f"quorum_groups must be one of {GROUPINGS}, got {self.quorum_groups!r}")
        if self.lease <= self.heartbeat_every:
            raise ValueError("lease must be longer than the heartbeat interval")


@dataclass
class _Tracker:
    """A client batch being answered, possibly in parts (local commit + forwards)."""

    batch_id: int
    results: np.ndarray
    balances: np.ndarray
    parts: int
    created: int


@dataclass
class _Proposal:
    table: RoutingTable
    moves: dict[int, int]
    demoted: set[int]
    votes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    sent: int = 0
    asked: frozenset[int] = frozenset()  # the peers the proposal went to
    refused: set[int] = field(default_factory=set)


class RegionNode:
    """One region: its replica of every unit, its own log, routing, failover, escrow."""

    def __init__(self, config: NodeConfig) -> None:
        self.cfg = config
        r = config.n_regions
        self.me = config.me
        self.peers = [p for p in range(r) if p != config.me]
        self.maj = majority(r)
        self.durable_need = max(1, r - self.maj) if r > 1 else 0
        self.routing = RoutingTable.initial(config.amap.n_units, r)
        self._homes = np.asarray(self.routing.homes)
        self.engine: Any = None
        self.anomalies: list[tuple[int, int, int, int]] = []
        self.accounts_genesis, self.deposits_genesis = genesis(
            config.amap, config.opening_balance, enforce_flags=config.mode in ("unit", "quorum")
        )
        self._reset_engine()
        self.applied: list[Entry] = []  # in apply order: what a rebuild replays
        self.by_origin: list[list[Entry]] = [[] for _ in range(r)]
        self.heads = [0] * r
        self.buffer: list[dict[int, Entry]] = [{} for _ in range(r)]
        self.next_seq = 1
        self.last_ts = 0
        self.last_heard: dict[int, int] = {}
        self.lease_until = 0
        self.hb_round = 0
        self.hb_last = -(1 << 62)
        self.hb_sent: dict[int, int] = {}
        self.hb_acks: dict[int, set[int]] = {}
        self.grant_until: dict[int, int] = {}
        self.voted: dict[int, int] = {}
        # version -> (proposer, demoted homes, when, our heads when we voted)
        self.votes_cast: dict[int, tuple[int, set[int], int, tuple[int, ...]]] = {}
        self.proposal: _Proposal | None = None
        self.propose_not_before = 0  # after a refusal: when another proposal could win
        self.catching_up: set[int] = set()
        self.peer_acked = dict.fromkeys(self.peers, 0)
        self.durable_seq = 0
        self.waiters: deque[tuple[int, str, Any]] = deque()
        self.outbox: dict[int, list[Any]] = {}  # credit id lo -> [seq, row, last_sent]
        self.trackers: dict[int, _Tracker] = {}
        self.forwards: dict[int, tuple[int, np.ndarray]] = {}
        self.fwd_next = 1
        self.pulled_at: dict[tuple[int, int], int] = {}
        self.quota = self._initial_quota() if config.mode == "escrow" else []
        self.quota_asked: dict[int, int] = {}
        self.repairing: dict[int, list[int]] = {}  # store index -> [origin, seq, last asked]
        self.started = False
        self.reported_void: set[tuple[int, int]] = set()
        self._quorum = Quorum(self) if config.mode == "quorum" else None

    # ================================================================== recovery
    @classmethod
    def recover(cls, config: NodeConfig, store: DurableStore) -> tuple[RegionNode, list[Effect]]:
        """Rebuild from the durable store after a crash: volatile state is gone.

        Entries are replayed in store order under the newest routing table found (forks
        only accumulate, so that table voids exactly what must be voided). A record whose
        checksum fails is skipped together with the rest of its origin's entries: those
        are pulled again from peers, and the bad record is repaired in place.
        """
        if config.mode == "quorum":
            return Quorum.recover(cls, config, store)
        node = cls(config)
        effects: list[Effect] = []
        tables = [r.payload for r in store.records if isinstance(r.payload, RoutingTable)]
        if tables:
            node._set_routing(max(tables, key=lambda t: t.version))
        stopped: set[int] = set()
        for index, rec in enumerate(store.records):
            e = rec.payload
            if not isinstance(e, Entry):
                continue
            if e.origin == node.me:
                node.next_seq = max(node.next_seq, e.seq + 1)
            if not e.intact():
                stopped.add(e.origin)
                node.repairing[index] = [e.origin, e.seq, 0]
                for p in node.peers:
                    effects.append(Send(p, RepairRequest(node.me, e.origin, e.seq, index)))
                continue
            if e.origin in stopped:
                node.buffer[e.origin][e.seq] = e  # good, but must wait for the damaged one
                continue
            if e.seq != node.heads[e.origin] + 1:
                continue
            node._apply(e)
            if e.origin == node.me and len(e.rows):
                node.last_ts = max(node.last_ts, int(e.rows["timestamp"].max()))
        node.durable_seq = 0
        return node, effects

    # ================================================================== dispatch
    def handle(self, message: Message, now: int) -> list[Effect]:
        effects: list[Effect] = []
        if self._quorum is not None:  # quorum mode: Raft drives everything (replication/quorum.py)
            self._quorum.handle(message, now, effects)
            return effects
        if not self.started:
            self.started = True
            for p in self.peers:
                self.last_heard.setdefault(p, now)
        handler = _HANDLERS[type(message)]
        handler(self, message, now, effects)
        return effects

    def handle_many(self, messages: list[Message], now: int) -> list[Effect]:
        """Messages that arrived together, handled in order (the quorum mode turns the parts
        they propose to one Raft log into one entry: see `Quorum.handle_many`)."""
        if self._quorum is not None:
            return self._quorum.handle_many(messages, now)
        effects: list[Effect] = []
        for m in messages:
            effects.extend(self.handle(m, now))
        return effects

    # ================================================================== client path
    def _on_client(self, m: ClientRequest, now: int, out: list[Effect]) -> None:
        rows = m.rows
        n = len(rows)
        bal = self._read(m.reads)
        tracker = _Tracker(m.batch_id, np.full(n, UNAVAILABLE, np.uint32), bal, 1, now)
        if n and self.cfg.mode == "unit":
            units, _, unknown = self._route_units(rows)
            tracker.results[unknown] = _PENDING_NOT_FOUND
            homes = self._homes[units]
            homes[unknown] = -1
            for h in np.unique(homes[~unknown]).tolist():
                idx = np.nonzero(homes == h)[0]
                tracker.parts += 1
                if h == self.me:
                    self._commit_part(tracker, idx, rows[idx], now, out)
                else:
                    fid = self.fwd_next
                    self.fwd_next += 1
                    self.forwards[fid] = (m.batch_id, idx)
                    out.append(Send(h, Forward(self.me, fid, rows[idx]), 64 + 128 * len(idx)))
        elif n:
            tracker.parts += 1
            self._commit_part(tracker, np.arange(n), rows, now, out)
        self.trackers[m.batch_id] = tracker
        self._part_done(tracker, out)

    def _commit_part(self, tracker: _Tracker, idx: np.ndarray, rows: np.ndarray, now: int,
                     out: list[Effect]) -> None:
        results, seq = self._commit(rows, now, out)
        tracker.results[idx] = results
        seq = self._durable_wait(results, seq)
        if seq and self.cfg.ship == "semi-sync" and seq > self.durable_seq:
            self.waiters.append((seq, "part", tracker.batch_id))
        else:
            self._part_done(tracker, out)

    def _durable_wait(self, results: np.ndarray, seq: int) -> int:
        """The own-log sequence a semi-sync reply must wait for.

        A retry answered EXISTS wrote nothing new, but the entry holding the original may
        not be on a majority yet: acknowledging it now would promise what a crash can still
        lose. So it waits for everything this home has written so far.
        """
        if not seq and (results == _EXISTS).any():
            return self.next_seq - 1
        return seq

    def _part_done(self, tracker: _Tracker, out: list[Effect]) -> None:
        tracker.parts -= 1
        if tracker.parts == 0 and self.trackers.pop(tracker.batch_id, None) is not None:
            out.append(Reply(tracker.batch_id, tracker.results, tracker.balances))

    def _on_forward(self, m: Forward, now: int, out: list[Effect]) -> None:
        results, seq = self._commit(m.rows, now, out)
        seq = self._durable_wait(results, seq)
        if seq and self.cfg.ship == "semi-sync" and seq > self.durable_seq:
            self.waiters.append((seq, "fwd", (m.sender, m.fwd_id, results)))
        else:
            out.append(Send(m.sender, ForwardReply(m.fwd_id, results), 64 + 4 * len(results)))

    def _on_forward_reply(self, m: ForwardReply, now: int, out: list[Effect]) -> None:
        got = self.forwards.pop(m.fwd_id, None)
        if got is None:
            return
        batch_id, idx = got
        tracker = self.trackers.get(batch_id)
        if tracker is not None:
            tracker.results[idx] = m.results
            self._part_done(tracker, out)

    def _route_units(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(debit unit, credit unit, pending unknown) of each row, as unit-mode routing sees it.

        A post or void names its pending transfer and may leave its accounts zero (the
        engine takes them from the pending). It must still be written by the home of the
        pending's unit: account 0 maps to unit 0, and a post/void written by another home
        would touch accounts that home does not own, a dependency on another origin's log
        that followers do not order by (they apply each origin in order, and only fork
        points across origins). A replica applying it before the pending (e.g. a restarted
        region pulling each origin's log from peers) fails it: the replicas diverge.
        Rows whose pending this replica does not know and that name no debit account
        cannot be routed: they are answered PENDING_TRANSFER_NOT_FOUND here.
        """
        debit = rows["debit_account_id_lo"].copy()
        credit = rows["credit_account_id_lo"].copy()
        unknown = np.zeros(len(rows), bool)
        post_void = np.nonzero((rows["flags"] & _POST_VOID) != 0)[0]
        if len(post_void):
            tr = self.engine.transfers
            for i in post_void.tolist():
                pid = (int(rows["pending_id_hi"][i]) << 64) | int(rows["pending_id_lo"][i])
                slot = self.engine.transfer_slot(pid)
                if slot >= 0:
                    debit[i] = tr[slot]["debit_account_id_lo"]
                    credit[i] = tr[slot]["credit_account_id_lo"]
                elif debit[i] == 0:
                    unknown[i] = True
        amap = self.cfg.amap
        return amap.units_of(debit), amap.units_of(credit), unknown

    def _read(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), 4), np.uint64)
        if len(ids):
            acc = self.engine.accounts
            for i, a in enumerate(ids.tolist()):
                s = self.engine.account_slot(int(a))
                if s >= 0:
                    row = acc[s]
                    out[i] = (row["debits_pending_lo"], row["debits_posted_lo"],
                              row["credits_pending_lo"], row["credits_posted_lo"])
        return out

    # ================================================================== commit (origin side)
    def _writable_units(self, now: int) -> np.ndarray:
        mask = self._homes == self.me
        if now >= self.lease_until:
            mask[:] = False
        for u in self.catching_up:
            mask[u] = False
        return mask

    def _commit(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        """Admit, transform and apply client rows as one entry of this region's log."""
        if self.own_gap():
            return np.full(len(rows), UNAVAILABLE, np.uint32), 0
        if self.cfg.mode == "unit":
            return self._commit_unit(rows, now, out)
        return self._commit_anywhere(rows, now, out)

    def _commit_unit(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        results = np.full(len(rows), UNAVAILABLE, np.uint32)
        dunits, cunits, unknown = self._route_units(rows)
        results[unknown] = _PENDING_NOT_FOUND
        ok = self._writable_units(now)[dunits] & ~unknown
        if not ok.any():
            return results, 0
        sub = rows[ok].copy()
        du = dunits[ok]
        cu = cunits[ok]
        go = ~as_debit_legs(sub, du, cu, self.cfg.amap)
        sub_res = np.full(len(sub), CROSS_UNIT_TWO_PHASE, np.uint32)
        seq = 0
        if go.any():
            todo = sub[go]
            before = self.engine.n_transfers
            sub_res[go] = self.engine.create_transfers(todo, self._stamp(len(todo), now))
            accepted = self.engine.transfers[before:].copy()
            if len(accepted):
                seq = self._append_own(accepted, (), now, out)
        results[ok] = sub_res
        return results, seq

    def _commit_anywhere(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        """async and escrow: admission by this region alone, both legs in one entry."""
        amap = self.cfg.amap
        n = len(rows)
        results = np.zeros(n, np.uint32)
        admitted, charged = self._admit(rows, results, now, out)
        if not admitted.any():
            return results, 0
        sub = rows[admitted]
        du = amap.units_of(sub["debit_account_id_lo"])
        cu = amap.units_of(sub["credit_account_id_lo"])
        cross = ((cu != du) & ((sub["flags"] & _TWO_PHASE) == 0) & amap.known(sub["debit_account_id_lo"])
                 & amap.known(sub["credit_account_id_lo"]))
        n_sub = len(sub)
        pos = np.arange(n_sub) + np.concatenate(([0], np.cumsum(cross)[:-1])) if n_sub else np.zeros(0, int)
        batch = np.zeros(n_sub + int(cross.sum()), TRANSFER_DTYPE)
        batch[pos] = sub
        if cross.any():
            p1 = pos[cross]
            leg1 = batch[p1]
            leg2 = leg1.copy()
            leg1["user_data_128_lo"] = leg1["credit_account_id_lo"]
            leg1["credit_account_id_lo"] = TRANSIT_BASE + du[cross]
            leg1["flags"] |= _LINKED
            leg2["id_hi"] |= CREDIT_BIT_HI
            leg2["debit_account_id_lo"] = TRANSIT_BASE + cu[cross]
            leg2["user_data_128_lo"] = sub["debit_account_id_lo"][cross]
            batch[p1] = leg1
            batch[p1 + 1] = leg2
        before = self.engine.n_transfers
        res = self.engine.create_transfers(batch, self._stamp(len(batch), now))
        client_res = res[pos].copy()
        if cross.any():
            p1 = pos[cross]
            linked_failed = client_res[cross] == CreateTransferResult.LINKED_EVENT_FAILED
            r2 = res[p1 + 1]
            client_res[np.nonzero(cross)[0][linked_failed]] = r2[linked_failed]
        results[admitted] = client_res
        accepted = self.engine.transfers[before:].copy()
        if self.cfg.mode == "escrow":
            self._refund_rejected(sub[charged[admitted]], client_res[charged[admitted]])
            self._escrow_credits(accepted)
        seq = self._append_own(accepted, (), now, out) if len(accepted) else 0
        return results, seq

    def _admit(self, rows: np.ndarray, results: np.ndarray, now: int,
               out: list[Effect]) -> tuple[np.ndarray, np.ndarray]:
        """Which rows this region may accept without asking anyone (async: its own view of
        the balance; escrow: its share). Rejected rows get EXCEEDS_CREDITS."""
        n = len(rows)
        admitted = np.ones(n, bool)
        charged = np.zeros(n, bool)
        n_cust = self.cfg.amap.n_customers
        debit = rows["debit_account_id_lo"].tolist()
        amount = rows["amount_lo"].tolist()
        flags = rows["flags"].tolist()
        ids = rows["id_lo"].tolist()
        ids_hi = rows["id_hi"].tolist()
        escrow = self.cfg.mode == "escrow"
        acc = self.engine.accounts
        spent: dict[int, int] = {}
        short: dict[int, int] = {}
        for i in range(n):
            a = debit[i]
            if a < 1 or a > n_cust or flags[i] & _POST_VOID:
                continue
            if self.engine.transfer_slot((ids_hi[i] << 64) | ids[i]) >= 0:
                continue  # a retry: the engine answers EXISTS
            if escrow:
                avail = self.quota[a]
            else:
                s = self.engine.account_slot(a)
                if s < 0:
                    continue
                row = acc[s]
                avail = int(row["credits_posted_lo"]) - int(row["debits_posted_lo"]) - int(row["debits_pending_lo"])
                avail -= spent.get(a, 0)
            if amount[i] > avail:
                admitted[i] = False
                results[i] = _EXCEEDS
                short[a] = max(short.get(a, 0), amount[i] - max(avail, 0))
                continue
            charged[i] = True
            if escrow:
                self.quota[a] -= amount[i]
            else:
                spent[a] = spent.get(a, 0) + amount[i]
        if escrow and short:
            for a, need in short.items():
                if now - self.quota_asked.get(a, -(1 << 62)) >= self.cfg.quota_retry_every:
                    self.quota_asked[a] = now
                    for p in self.peers:
                        out.append(Send(p, QuotaRequest(self.me, a, need)))
        return admitted, charged

    # ------------------------------------------------------------------ escrow shares
    def _initial_quota(self) -> list[int]:
        """An even split of each opening balance; the remainder goes to the unit's home."""
        n = self.cfg.amap.n_customers
        r = self.cfg.n_regions
        base, rem = divmod(self.cfg.opening_balance, r)
        homes = np.asarray(self.routing.homes)[self.cfg.amap.customer_unit]
        q = [base + (rem if int(homes[a]) == self.me else 0) for a in range(n + 1)]
        q[0] = 0
        return q

    def _refund_rejected(self, sub: np.ndarray, res: np.ndarray) -> None:
        n_cust = self.cfg.amap.n_customers
        for a, amt, f, r in zip(sub["debit_account_id_lo"].tolist(), sub["amount_lo"].tolist(),
                                sub["flags"].tolist(), res.tolist(), strict=True):
            if r != 0 and 1 <= a <= n_cust and not f & _POST_VOID:
                self.quota[a] += amt

    def _escrow_debits(self, rows: np.ndarray) -> None:
        n_cust = self.cfg.amap.n_customers
        for a, amt, f in zip(rows["debit_account_id_lo"].tolist(), rows["amount_lo"].tolist(),
                             rows["flags"].tolist(), strict=True):
            if 1 <= a <= n_cust and not f & _POST_VOID:
                self.quota[a] -= amt

    def _escrow_credits(self, rows: np.ndarray) -> None:
        """Money this region received (credits, posts, voids) becomes its share."""
        n_cust = self.cfg.amap.n_customers
        pending = int(TransferFlags.PENDING)
        void = int(TransferFlags.VOID_PENDING_TRANSFER)
        for d, c, amt, f in zip(rows["debit_account_id_lo"].tolist(), rows["credit_account_id_lo"].tolist(),
                                rows["amount_lo"].tolist(), rows["flags"].tolist(), strict=True):
            if f & void:
                if 1 <= d <= n_cust:
                    self.quota[d] += amt
            elif not f & pending and 1 <= c <= n_cust:
                self.quota[c] += amt

    def _on_quota_request(self, m: QuotaRequest, now: int, out: list[Effect]) -> None:
        if self.cfg.mode != "escrow" or self.own_gap():
            return
        have = self.quota[m.account]
        give = min(m.need, (have + 1) // 2) if have > 0 else 0
        if give <= 0:
            return
        self.quota[m.account] -= give
        empty = np.zeros(0, TRANSFER_DTYPE)
        self._append_own(empty, ((m.account, m.sender, give),), now, out)

    # ================================================================== own log
    def own_gap(self) -> bool:
        """After a restart with a damaged own record: our own log must come back from peers
        before we write again, or our sequence numbers would skip what they lack."""
        return self.heads[self.me] < self.next_seq - 1

    def _stamp(self, n: int, now: int) -> np.ndarray:
        base = max(now, self.last_ts + 1)
        self.last_ts = base + n - 1
        return np.arange(base, base + n, dtype=np.uint64)

    def _append_own(self, rows: np.ndarray, grants: tuple, now: int, out: list[Effect]) -> int:
        e = Entry(self.me, self.next_seq, self.routing.version, now, rows, grants).seal()
        self.next_seq += 1
        self.heads[self.me] = e.seq
        if not self.durable_need:
            self.durable_seq = e.seq
        self.by_origin[self.me].append(e)
        self.applied.append(e)
        out.append(Persist(e))
        if self.cfg.mode == "unit" and len(rows):
            self._track_debit_legs(rows, e.seq)
        size = 96 + 128 * len(rows)
        for p in self.peers:
            out.append(Send(p, Ship(self.me, self.me, [e]), size))
        return e.seq

    # ================================================================== follower path
    def _on_ship(self, m: Ship, now: int, out: list[Effect]) -> None:
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
            res = self.engine.create_transfers(e.rows, e.rows["timestamp"].copy())
            if res.any():
                self.anomalies.append((o, e.seq, int(np.nonzero(res)[0][0]), int(res[res != 0][0])))
            if self.cfg.mode == "unit":
                self._track_debit_legs(e.rows, e.seq if o == self.me else 0)
            elif self.cfg.mode == "escrow" and o == self.me:  # replay, or own entries pulled back
                self._escrow_debits(e.rows)
                self._escrow_credits(e.rows)
        if self.cfg.mode == "escrow":
            for account, to, amount in e.grants:
                if to == self.me:
                    self.quota[account] += amount
                elif o == self.me:
                    self.quota[account] -= amount

    def _on_pull(self, m: Pull, now: int, out: list[Effect]) -> None:
        log = self.by_origin[m.origin]
        chunk = log[m.after : m.after + self.cfg.pull_max]
        if chunk:
            size = 96 * len(chunk) + 128 * sum(len(e.rows) for e in chunk)
            out.append(Send(m.sender, Ship(self.me, m.origin, chunk), size))

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
            if kind == "part":
                tracker = self.trackers.get(data)
                if tracker is not None:
                    self._part_done(tracker, out)
            else:
                sender, fid, results = data
                out.append(Send(sender, ForwardReply(fid, results), 64 + 4 * len(results)))

    # ================================================================== cross-unit credit legs
    def _track_debit_legs(self, rows: np.ndarray, seq: int) -> None:
        """Debit legs of units homed here owe a credit leg: keep it until it is seen applied."""
        is_leg = (rows["id_hi"] & CREDIT_BIT_HI) != 0
        if is_leg.any():
            for i in rows["id_lo"][is_leg].tolist():
                self.outbox.pop(i, None)
        debits = is_debit_leg(rows, self.cfg.amap.n_units)
        if not debits.any():
            return
        credit = rows["credit_account_id_lo"][debits]
        mine = self._homes[(credit - TRANSIT_BASE).astype(np.int64)] == self.me
        for row in rows[debits][mine]:
            tid = int(row["id_lo"])
            if self.engine.transfer_slot((int(CREDIT_BIT_HI) << 64) | tid) >= 0:
                continue
            self.outbox[tid] = [seq, credit_leg(row, self.cfg.amap), 0]

    def _rebuild_outbox(self) -> None:
        """After a promotion: what this home owes, derived from its replica (own debit legs
        keep their sequence number: they are released only once stored on a majority)."""
        previous = self.outbox
        self.outbox = {}
        for row in owed_debit_legs(self.engine, self._homes == self.me):
            tid = int(row["id_lo"])
            self.outbox[tid] = previous.get(tid) or [0, credit_leg(row, self.cfg.amap), 0]

    def _send_credit_legs(self, now: int, out: list[Effect]) -> None:
        if not self.outbox:
            return
        due: dict[int, list[Any]] = {}
        for item in self.outbox.values():
            seq, row, last = item
            if (seq and seq > self.durable_seq) or (last and now - last < self.cfg.credit_resend_every):
                continue
            item[2] = now
            unit = self.cfg.amap.unit_of(int(row["credit_account_id_lo"]))
            due.setdefault(int(self._homes[unit]), []).append(row)
        for home, legs in sorted(due.items()):
            rows = np.array(legs, TRANSFER_DTYPE)
            if home == self.me:
                self._commit(rows, now, out)
            else:
                out.append(Send(home, CreditLegs(self.me, rows), 64 + 128 * len(rows)))

    def _on_credit_legs(self, m: CreditLegs, now: int, out: list[Effect]) -> None:
        self._commit(m.rows, now, out)

    # ================================================================== heartbeats, leases
    def _on_tick(self, m: Tick, now: int, out: list[Effect]) -> None:
        out.append(SetTimer(self.cfg.tick_every))
        if now - self.hb_last >= self.cfg.heartbeat_every:
            self.hb_last = now
            self.hb_round += 1
            self.hb_sent[self.hb_round] = now
            self.hb_sent.pop(self.hb_round - 64, None)
            self.hb_acks.pop(self.hb_round - 64, None)
            if self.maj == 1:
                self.lease_until = now + self.cfg.lease
            hb = Heartbeat(self.me, self.hb_round, self.routing.version, self._vouched_heads())
            for p in self.peers:
                out.append(Send(p, hb))
        if self.repairing:
            self._retry_repairs(now, out)
        if self.own_gap():
            for p in self.peers:
                self._pull(self.me, p, now, out)
        if self.cfg.mode == "unit":
            self._chase_votes(now, out)
            self._maybe_promote(now, out)
            self._send_credit_legs(now, out)
            if self.catching_up:
                self._check_ready(now, out)
        for bid in [b for b, t in self.trackers.items() if now - t.created > 30_000 * MS]:
            del self.trackers[bid]
        if len(self.forwards) > 10_000:
            for fid in sorted(self.forwards)[: len(self.forwards) - 10_000]:
                del self.forwards[fid]

    def suspects(self, p: int, now: int) -> bool:
        if self._quorum is not None:
            return self._quorum.suspects(p, now)
        return now - self.last_heard.get(p, now) > self.cfg.suspect_after

    def _on_heartbeat(self, m: Heartbeat, now: int, out: list[Effect]) -> None:
        self.last_heard[m.sender] = now
        grant = (self.cfg.mode == "unit" and m.routing_version >= self.routing.version
                 and not self._refuses_grant(m.sender))
        if grant:
            self.grant_until[m.sender] = now + self.cfg.lease
        newer = self.routing if self.routing.version > m.routing_version else None
        out.append(Send(m.sender, HeartbeatAck(self.me, m.round, grant, newer)))
        if m.heads[self.me] > self.peer_acked.get(m.sender, 0):
            self.peer_acked[m.sender] = m.heads[self.me]
            self._advance_durable(out)
        for o, head in enumerate(m.heads):
            if head > self.heads[o]:
                self._pull(o, m.sender, now, out)

    def _refuses_grant(self, home: int) -> bool:
        """A region that voted to demote `home` grants it no lease until that vote's fate is known."""
        return any(home in x[1] for v, x in self.votes_cast.items() if v > self.routing.version)

    def acked_head(self, o: int) -> int:
        """How far we vouch for `o`'s log (acks, heartbeat heads). Void entries are never
        vouched for. Having voted to demote `o`,
        we vouch for nothing past what we had when voting: the fork point is computed from
        those heads, so anything we acked later could be voided after the client was told OK."""
        head = self.heads[o]
        log = self.by_origin[o]
        while head > 0 and head <= len(log) and self.routing.is_void(o, head, log[head - 1].rv):
            head -= 1  # a void entry is never vouched for: its writer must not count it as stored
        for v, (_, demoted, _, heads) in self.votes_cast.items():
            if v > self.routing.version and o in demoted:
                head = min(head, heads[o])
        return head

    def _vouched_heads(self) -> tuple[int, ...]:
        return tuple(self.acked_head(o) for o in range(len(self.heads)))

    def _chase_votes(self, now: int, out: list[Effect]) -> None:
        for v, (proposer, _, when, _) in list(self.votes_cast.items()):
            if v <= self.routing.version:
                del self.votes_cast[v]
            elif proposer != self.me and now - when > 4 * self.cfg.heartbeat_every:
                out.append(Send(proposer, Query(self.me, v)))

    def _on_query(self, m: Query, now: int, out: list[Effect]) -> None:
        if self.routing.version >= m.version:
            out.append(Send(m.sender, RoutingUpdate(self.me, self.routing)))
        elif self.proposal is None or self.proposal.table.version != m.version:
            out.append(Send(m.sender, Abort(self.me, m.version)))

    def _on_abort(self, m: Abort, now: int, out: list[Effect]) -> None:
        got = self.votes_cast.get(m.version)
        if got is not None and got[0] == m.sender:
            del self.votes_cast[m.version]

    def _on_heartbeat_ack(self, m: HeartbeatAck, now: int, out: list[Effect]) -> None:
        self.last_heard[m.sender] = now
        if m.routing is not None:
            self._adopt(m.routing, now, out)
        if not m.grant or m.round not in self.hb_sent:
            return
        acks = self.hb_acks.setdefault(m.round, set())
        acks.add(m.sender)
        if len(acks) + 1 >= self.maj:
            until = self.hb_sent[m.round] + int(self.cfg.lease * (1 - self.cfg.drift))
            self.lease_until = max(self.lease_until, until)

    # ================================================================== promotion
    def is_decider(self, now: int) -> bool:
        live = [p for p in self.peers if not self.suspects(p, now)]
        if len(live) + 1 < self.maj:
            return False
        return not any(p < self.me for p in live)

    def _maybe_promote(self, now: int, out: list[Effect]) -> None:
        if self.proposal is not None:
            if now - self.proposal.sent < 4 * self.cfg.heartbeat_every:
                return
            self._abandon_proposal(out)
        if now < self.propose_not_before or not self.is_decider(now):
            return
        dead = {h for h in set(self.routing.homes) if h != self.me and self.suspects(h, now)}
        if not dead or any(now <= self.grant_until.get(h, 0) for h in dead):
            return
        live = {self.me} | {p for p in self.peers if not self.suspects(p, now)}
        moves: dict[int, int] = {}
        for u, h in enumerate(self.routing.homes):
            if h in dead:
                moves[u] = next(r for r in preference(u, self.cfg.n_regions) if r in live)
        version = max([self.routing.version, *self.voted]) + 1
        table = self.routing.promote(moves, {}, version)
        self.proposal = _Proposal(table, moves, dead, {self.me: tuple(self.heads)}, now, frozenset(live - {self.me}))
        self.voted[version] = self.me
        self.votes_cast[version] = (self.me, set(dead), now, tuple(self.heads))
        for p in sorted(live - {self.me}):
            out.append(Send(p, Propose(self.me, table)))

    def _on_propose(self, m: Propose, now: int, out: list[Effect]) -> None:
        t = m.table
        demoted = {h for u, h in enumerate(self.routing.homes) if t.homes[u] != h}
        yes = (
            t.version > self.routing.version
            and self.voted.get(t.version, m.sender) == m.sender
            and self.me not in demoted
            and all(now > self.grant_until.get(h, 0) for h in demoted)
        )
        if yes:
            self.voted[t.version] = m.sender
            self.votes_cast[t.version] = (m.sender, demoted, now, tuple(self.heads))
        elif self.routing.version >= t.version:
            out.append(Send(m.sender, RoutingUpdate(self.me, self.routing)))
        # the first instant this voter could say yes: just past its last grant to a demoted home
        retry_in = 0 if yes else max([self.grant_until.get(h, 0) - now + 1 for h in demoted] + [0])
        out.append(Send(m.sender, Vote(self.me, t.version, yes, tuple(self.heads), retry_in)))

    def _abandon_proposal(self, out: list[Effect]) -> None:
        """No majority: abandon the proposal for good (late votes are ignored) and release
        the voters, who would otherwise refuse the old home its lease forever."""
        assert self.proposal is not None
        v = self.proposal.table.version
        self.proposal = None
        self.votes_cast.pop(v, None)
        for p in self.peers:
            out.append(Send(p, Abort(self.me, v)))

    def _on_vote(self, m: Vote, now: int, out: list[Effect]) -> None:
        p = self.proposal
        if p is None or m.version != p.table.version:
            return
        if not m.yes:
            # A voter still leasing a demoted home refuses; once a majority can no longer
            # be reached, retry right when the longest such lease runs out.
            p.refused.add(m.sender)
            self.propose_not_before = max(self.propose_not_before, now + max(m.retry_in, self.cfg.heartbeat_every))
            if len(p.votes) + len(p.asked - p.refused - set(p.votes)) < self.maj:
                self._abandon_proposal(out)
            return
        p.votes[m.sender] = m.heads
        if len(p.votes) < self.maj:
            return
        self.proposal = None
        kept = {h: max(v[h] for v in p.votes.values()) for h in p.demoted}
        base = self.routing
        if p.table.version <= base.version:
            return
        table = base.promote(p.moves, kept, p.table.version)
        out.append(Report("promotion", {"version": table.version, "moves": dict(p.moves), "kept": kept,
                                        "decider": self.me}))
        self._adopt(table, now, out)
        for peer in self.peers:
            out.append(Send(peer, RoutingUpdate(self.me, table)))

    def _on_routing_update(self, m: RoutingUpdate, now: int, out: list[Effect]) -> None:
        self._adopt(m.table, now, out)

    def _set_routing(self, table: RoutingTable) -> None:
        self.routing = table
        self._homes = np.asarray(table.homes)

    def _adopt(self, table: RoutingTable, now: int, out: list[Effect]) -> None:
        if table.version <= self.routing.version:
            return
        old = self.routing
        self._set_routing(table)
        out.append(Persist(table))
        self.votes_cast = {v: x for v, x in self.votes_cast.items() if v > table.version}
        self.voted = {v: p for v, p in self.voted.items() if v > table.version}
        if self.proposal is not None and self.proposal.table.version <= table.version:
            self.proposal = None
        new_forks = table.forks[len(old.forks):]
        void_found = False
        for f in new_forks:
            for e in self.by_origin[f.origin][f.kept_through:]:
                if e.rv < f.version and (e.origin, e.seq) not in self.reported_void:
                    self.reported_void.add((e.origin, e.seq))
                    void_found = True
                    ids = e.rows["id_lo"][(e.rows["id_hi"] & CREDIT_BIT_HI) == 0]
                    out.append(Report("divergence", {"origin": e.origin, "seq": e.seq, "detected_by": self.me,
                                                     "transfer_ids": ids.tolist()}))
        if void_found:
            self._rebuild()
        lost = [u for u in old.units_of(self.me) if table.homes[u] != self.me]
        if lost:
            self.waiters.clear()
            self.lease_until = 0
        gained = [u for u in table.units_of(self.me) if old.homes[u] != self.me]
        if gained:
            self.catching_up.update(gained)
            self._check_ready(now, out)
        if self.cfg.mode == "unit":
            self._rebuild_outbox()

    def _check_ready(self, now: int, out: list[Effect]) -> None:
        need = self.routing.required_heads(self.routing.version)
        missing = {o: k for o, k in need.items() if self.heads[o] < k}
        if not missing:
            units = sorted(self.catching_up)
            self.catching_up.clear()
            self._rebuild_outbox()
            out.append(Report("ready", {"units": units, "region": self.me, "version": self.routing.version}))
            return
        for o in missing:
            for p in self.peers:
                if not self.suspects(p, now):
                    self._pull(o, p, now, out)

    def _reset_engine(self) -> None:
        self.engine = Engine()
        self.engine.create_accounts(self.accounts_genesis, self.accounts_genesis["timestamp"].copy())
        self.engine.create_transfers(self.deposits_genesis, self.deposits_genesis["timestamp"].copy())
        self.anomalies = []

    def _rebuild(self) -> None:
        """Replay everything applied, minus void entries (a divergent suffix is dropped)."""
        self._reset_engine()
        for e in self.applied:
            if len(e.rows) and not self.routing.is_void(e.origin, e.seq, e.rv):
                res = self.engine.create_transfers(e.rows, e.rows["timestamp"].copy())
                if res.any():
                    self.anomalies.append((e.origin, e.seq, int(np.nonzero(res)[0][0]), int(res[res != 0][0])))

    # ================================================================== storage faults
    def _on_corrupted(self, m: Corrupted, now: int, out: list[Effect]) -> None:
        for index, origin, seq, _group in m.records:
            if index in self.repairing:
                continue
            self.repairing[index] = [origin, seq, now]
            out.append(Report("corruption", {"region": self.me, "index": index, "origin": origin, "seq": seq}))
            for p in self.peers:
                out.append(Send(p, RepairRequest(self.me, origin, seq, index)))

    def _retry_repairs(self, now: int, out: list[Effect]) -> None:
        """Asked during a partition, the answer may never come: ask again until repaired."""
        for index, item in self.repairing.items():
            origin, seq, last = item
            if now - last >= 5 * self.cfg.tick_every:
                item[2] = now
                for p in self.peers:
                    out.append(Send(p, RepairRequest(self.me, origin, seq, index)))

    def _on_repair_request(self, m: RepairRequest, now: int, out: list[Effect]) -> None:
        log = self.by_origin[m.origin]
        if 0 < m.seq <= len(log) and log[m.seq - 1].intact():
            out.append(Send(m.sender, RepairData(m.index, log[m.seq - 1]), 96 + 128 * len(log[m.seq - 1].rows)))

    def _on_repair_data(self, m: RepairData, now: int, out: list[Effect]) -> None:
        e = m.entry
        if e.intact():
            self.repairing.pop(m.index, None)
            out.append(PersistRepair(m.index, e))
            if e.seq > self.heads[e.origin]:
                self.buffer[e.origin][e.seq] = e
                self._drain(e.origin, e.origin, now, out)

    # ================================================================== introspection
    def raft_leader_of(self, unit: int) -> int | None:
        """Quorum mode: the region this node believes leads the unit's Raft log (None if unknown)."""
        return self._quorum.leader_of(unit) if self._quorum is not None else None

    @property
    def credit_legs_owed(self) -> int:
        """Cross-unit debit legs applied here whose credit leg is not (yet): money in transit."""
        return len(self.outbox) if self._quorum is None else sum(map(len, self._quorum.outbox))

    def status(self) -> dict[str, Any]:
        return {
            "region": self.me,
            "routing_version": self.routing.version,
            "homes": list(self.routing.homes),
            "heads": list(self.heads) if self._quorum is None else [g.applied for g in self._quorum.groups],
            "lease_until": self.lease_until,
            "catching_up": sorted(self.catching_up),
            "outbox": self.credit_legs_owed,
            "anomalies": len(self.anomalies),
            "raft_leaders": [self.raft_leader_of(u) for u in range(self.cfg.amap.n_units)],
        }


_HANDLERS: dict[type, Any] = {
    ClientRequest: RegionNode._on_client,
    Tick: RegionNode._on_tick,
    Forward: RegionNode._on_forward,
    ForwardReply: RegionNode._on_forward_reply,
    Ship: RegionNode._on_ship,
    ShipAck: RegionNode._on_ship_ack,
    Pull: RegionNode._on_pull,
    Heartbeat: RegionNode._on_heartbeat,
    HeartbeatAck: RegionNode._on_heartbeat_ack,
    Propose: RegionNode._on_propose,
    Vote: RegionNode._on_vote,
    RoutingUpdate: RegionNode._on_routing_update,
    Query: RegionNode._on_query,
    Abort: RegionNode._on_abort,
    CreditLegs: RegionNode._on_credit_legs,
    QuotaRequest: RegionNode._on_quota_request,
    Corrupted: RegionNode._on_corrupted,
    RepairRequest: RegionNode._on_repair_request,
    RepairData: RegionNode._on_repair_data,
}

__all__ = ["MODES", "SHIPS", "UNAVAILABLE", "NodeConfig", "RegionNode", "result_name"]

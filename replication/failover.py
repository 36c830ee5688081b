"""Failover for unit homes: leases, a decider, votes, fork points (the `unit` design).

* Every region heartbeats every other; a region *suspects* a peer it has not heard for
  `suspect_after`, or longer when that peer was lately heard after longer gaps
  (`replication.detector`: survivors whose loops stall for seconds must not suspect
  each other in turn).
* A home may write only under a **lease**: it counts heartbeat acks with `grant=True`
  from a majority; the lease lasts `lease*(1-drift)` from the send time of that round.
  A region grants only while it has not voted to demote that home, and votes to demote
  only once its own last grant to that home has expired. Any two majorities intersect,
  so the old home's lease has run out before the new routing can be committed.
* The **decider** is the lowest-ranked region among those a node does not suspect, and
  only if that node itself sees a majority. Two nodes may briefly both believe they
  decide; safety does not rest on that belief: a new routing version needs votes from a
  majority, and a region votes at most once per version. A voter whose grant has not yet
  expired refuses with the time its grant has left; the decider drops a proposal that can
  no longer win and proposes again exactly then.
* A proposal is sent again, every few heartbeats, to the voters that have not answered, and
  a voter answers a proposal it already voted for with the same vote (the heads it had when
  it voted, never newer ones): a vote may take longer than any fixed timeout (seconds, on
  a loaded machine), and a decider that gave up on each proposal after a fixed wait and
  proposed a new version never counted the late votes, so it never promoted. A proposal
  is dropped only when it can no longer win, when its decider stops being the decider, when
  a home it demotes is heard from again or a region it moves units to falls silent.
* The new home takes writes only after it has caught up with the old home's log up to
  the fork point (the highest sequence any voter had applied); the old home's entries
  past it are void, reported as `divergence` wherever they were applied, and dropped.
* A minority side never promotes: its units homed elsewhere stay unwritable there (the
  CP choice) and its own homes lose their lease.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from replication.config import NodeConfig
from replication.ids import CREDIT_BIT_HI, ids_of
from replication.messages import (
    Abort,
    Effect,
    Heartbeat,
    HeartbeatAck,
    Persist,
    Propose,
    Query,
    Report,
    RoutingUpdate,
    Send,
    Vote,
)
from replication.replica import Replica
from replication.routing import RoutingTable, preference
from replication.shipping import LogShipping


@dataclass
class Proposal:
    """A routing version this region proposed as decider, and the votes it has."""

    table: RoutingTable
    moves: dict[int, int]
    demoted: set[int]
    votes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    sent: int = 0
    asked: frozenset[int] = frozenset()  # the peers the proposal went to
    refused: set[int] = field(default_factory=set)


class LeaseFailover(LogShipping):
    """Log shipping plus leased homes and promotion by majority vote (module docstring)."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        super().__init__(config, replica)
        self.hb_acks: dict[int, set[int]] = {}
        self.grant_until: dict[int, int] = {}
        self.voted: dict[int, int] = {}
        # version -> (proposer, demoted homes, when, our heads when we voted)
        self.votes_cast: dict[int, tuple[int, set[int], int, tuple[int, ...]]] = {}
        self.proposal: Proposal | None = None
        self.propose_not_before = 0  # after a refusal: when another proposal could win

    # ------------------------------------------------------------------ leases
    def _on_heartbeat_round(self, now: int) -> None:
        self.hb_acks.pop(self.hb_round - 64, None)
        if self.maj == 1:
            self.lease_until = now + self.cfg.lease

    def _grants_lease(self, m: Heartbeat, now: int) -> bool:
        grant = m.routing_version >= self.routing.version and not self._refuses_grant(m.sender)
        if grant:
            self.grant_until[m.sender] = now + self.cfg.lease
        return grant

    def _refuses_grant(self, home: int) -> bool:
        """A region that voted to demote `home` grants it no lease until that vote's fate is known."""
        return any(home in x[1] for v, x in self.votes_cast.items() if v > self.routing.version)

    def _on_heartbeat_ack(self, m: HeartbeatAck, now: int, out: list[Effect]) -> None:
        super()._on_heartbeat_ack(m, now, out)
        if m.routing is not None:
            self._adopt(m.routing, now, out)
        if not m.grant or m.round not in self.hb_sent:
            return
        acks = self.hb_acks.setdefault(m.round, set())
        acks.add(m.sender)
        if len(acks) + 1 >= self.maj:
            until = self.hb_sent[m.round] + int(self.cfg.lease * (1 - self.cfg.drift))
            self.lease_until = max(self.lease_until, until)

    def acked_head(self, o: int) -> int:
        """Having voted to demote `o`, we vouch for nothing past what we had when voting: the
        fork point is computed from those heads, so anything we acked later could be voided
        after the client was told OK."""
        head = super().acked_head(o)
        for v, (_, demoted, _, heads) in self.votes_cast.items():
            if v > self.routing.version and o in demoted:
                head = min(head, heads[o])
        return head

    # ------------------------------------------------------------------ votes
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

    # ------------------------------------------------------------------ promotion
    def is_decider(self, now: int) -> bool:
        live = [p for p in self.peers if not self.suspects(p, now)]
        if len(live) + 1 < self.maj:
            return False
        return not any(p < self.me for p in live)

    def _maybe_promote(self, now: int, out: list[Effect]) -> None:
        prop = self.proposal
        if prop is not None:
            still = all(self.suspects(h, now) for h in prop.demoted) and not any(
                self.suspects(t, now) for t in set(prop.moves.values()) - {self.me})
            if still and self.is_decider(now):
                if now - prop.sent >= 4 * self.cfg.heartbeat_every:  # ask again who has not answered
                    prop.sent = now
                    for v in sorted(prop.asked - prop.refused - set(prop.votes)):
                        out.append(Send(v, Propose(self.me, prop.table)))
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
        self.proposal = Proposal(table, moves, dead, {self.me: tuple(self.heads)}, now, frozenset(live - {self.me}))
        self.voted[version] = self.me
        self.votes_cast[version] = (self.me, set(dead), now, tuple(self.heads))
        for p in sorted(live - {self.me}):
            out.append(Send(p, Propose(self.me, table)))

    def _on_propose(self, m: Propose, now: int, out: list[Effect]) -> None:
        t = m.table
        cast = self.votes_cast.get(t.version)
        if cast is not None and cast[0] == m.sender:  # asked again: the same vote, as cast
            out.append(Send(m.sender, Vote(self.me, t.version, True, cast[3], 0)))
            return
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

    # ------------------------------------------------------------------ adopting a routing table
    def _adopt(self, table: RoutingTable, now: int, out: list[Effect]) -> None:
        if table.version <= self.routing.version:
            return
        # What this step accepted was accepted under the old table: its entry says so.
        self._close_step(now, out)
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
            if f.kept_through < self.log_base[f.origin]:  # settled entries were checkpointed: never void
                out.append(Report("void_below_checkpoint", {"region": self.me, "origin": f.origin,
                                                            "kept_through": f.kept_through,
                                                            "checkpointed": self.log_base[f.origin]}))
            for e in self.by_origin[f.origin][max(0, f.kept_through - self.log_base[f.origin]):]:
                if e.rv < f.version and (e.origin, e.seq) not in self.reported_void:
                    self.reported_void.add((e.origin, e.seq))
                    void_found = True
                    ids = ids_of(e.rows[(e.rows["id_hi"] & CREDIT_BIT_HI) == 0])
                    out.append(Report("divergence", {"origin": e.origin, "seq": e.seq, "detected_by": self.me,
                                                     "transfer_ids": ids}))
        if void_found:
            self._rebuild(out)
        lost = [u for u in old.units_of(self.me) if table.homes[u] != self.me]
        if lost:
            self.waiters.clear()
            self.lease_until = 0
        gained = [u for u in table.units_of(self.me) if old.homes[u] != self.me]
        if gained:
            self.catching_up.update(gained)
            self._check_ready(now, out)
        self._after_adopt()

    def _after_adopt(self) -> None:
        """A hook: a newer routing table was adopted."""

    def _check_ready(self, now: int, out: list[Effect]) -> None:
        need = self.routing.required_heads(self.routing.version)
        missing = {o: k for o, k in need.items() if self.heads[o] < k}
        if not missing:
            units = sorted(self.catching_up)
            self.catching_up.clear()
            self._on_ready()
            out.append(Report("ready", {"units": units, "region": self.me, "version": self.routing.version}))
            return
        for o in missing:
            for p in self.peers:
                if not self.suspects(p, now):
                    self._pull(o, p, now, out)

    def _on_ready(self) -> None:
        """A hook: this region caught up and now writes the units it gained."""

    # ------------------------------------------------------------------ what checkpoints may cover
    def settled_heads(self) -> list[int] | None:
        """Per origin o, the entries no fork can void. A fork for o keeps what the majority
        that voted for it had applied; o never votes for its own demotion, so that majority
        is of the other R-1 regions. An entry that `durable_need` (R - majority) of those
        vouch for is therefore held by one of the voters, and a voter never vouches past the
        heads it voted with (`acked_head`): the fork keeps it. Our own log: `durable_seq`."""
        out = []
        for o in range(len(self.heads)):
            if o == self.me:
                out.append(min(self.durable_seq, self.heads[o]))
                continue
            vouched = [self.acked_head(o)]
            for p in self.peers:
                heads = self.peer_heads.get(p)
                if p != o and heads:
                    vouched.append(heads[o])
            vouched.sort(reverse=True)
            need = max(1, self.durable_need)
            out.append(min(vouched[need - 1], self.heads[o]) if len(vouched) >= need else 0)
        return out

    def _writable_units(self, now: int) -> np.ndarray:
        mask = self._homes == self.me
        if now >= self.lease_until or self.rebuilding:
            mask[:] = False
        for u in self.catching_up:
            mask[u] = False
        return mask


LeaseFailover.handlers = {
    **LogShipping.handlers,
    Propose: "_on_propose",
    Vote: "_on_vote",
    RoutingUpdate: "_on_routing_update",
    Query: "_on_query",
    Abort: "_on_abort",
}

__all__ = ["LeaseFailover", "Proposal"]

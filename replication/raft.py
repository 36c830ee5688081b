"""Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014),
sans-IO: one replicated log, driven by messages and time, returning effects.

`RaftNode` never reads a clock, sleeps or draws from a global RNG: `now` is passed in and
election timeouts come from the `random.Random` it is given (seeded from the node config).
Effects are the node's own `Send` and `Persist`; the state machine (the ledger) pulls
committed entries with `take_committed()` and applies them in log order.

What is implemented, by the paper's section:

* §5.2 leader election, randomised timeouts in `[election_min, election_max)`; plus the
  thesis' PreVote (§9.6) and CheckQuorum/leader stickiness (§6.2 / §4.2.3), so a region that
  was cut off does not depose a healthy leader when it comes back, and a leader that no
  longer hears a majority steps down (its side then answers UNAVAILABLE at once).
* §5.3 log replication: AppendEntries with (prev_index, prev_term) consistency check,
  conflicting suffix truncated, optimistic pipelining with next_index rolled back on reject.
* §5.4 safety: vote only for an up-to-date log; a leader commits by counting replicas only
  entries of its own term (a no-op is appended at the start of every term).
* Thesis §3.10 leadership transfer: with `RaftConfig.preferred`, a leader elsewhere holds
  new entries once the preferred member is alive and nearly caught up, sends it
  `TimeoutNow` when it matches the whole log, and gives up after an election timeout;
  the RequestVote of that election waives leader stickiness (`transfer=True`).
* §7 snapshots: `compact()` replaces the applied prefix with an opaque snapshot; a follower
  behind the snapshot gets `InstallSnapshot`.
* Persistence: `HardState` (term, vote) before any vote or term-dependent reply, each log
  entry before acking it, snapshots, and `CommitMark`s (the commit index is only ever an
  index that *is* committed, so persisting it is safe and lets a restart re-apply exactly
  the committed prefix). `RaftNode.restore()` rebuilds from those records.

Log entries are `replication.log.Entry` (checksummed): `seq` is the log index, `rv` the
term, `origin` the leader that created it, `group` the log's group. A region may run several
groups (one per unit, each with its own leader): `RaftNode.group` tags every message and
record, so they share one transport and one store.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from replication.config import check
from replication.log import Entry
from replication.messages import Effect, Persist, Send


class Role(enum.StrEnum):
    """A Raft member's role (PreVote adds the pre-candidate, thesis §9.6)."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER = Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER


# ------------------------------------------------------------------ messages and records
@dataclass(slots=True)
class RequestVote:
    sender: int
    term: int  # for a pre-vote: the term the sender would campaign in
    last_index: int
    last_term: int
    pre: bool = False
    transfer: bool = False  # asked for by the leader (TimeoutNow): voters waive leader stickiness
    group: int = 0  # the Raft group (per-unit logs share one transport and one store)


@dataclass(slots=True)
class TimeoutNow:
    """Leadership transfer (thesis §3.10): the leader tells a caught-up follower to campaign now."""

    sender: int
    term: int
    group: int = 0


@dataclass(slots=True)
class VoteReply:
    sender: int
    term: int
    granted: bool
    pre: bool = False
    group: int = 0


@dataclass(slots=True)
class AppendEntries:
    sender: int
    term: int
    prev_index: int
    prev_term: int
    entries: list[Entry]
    commit: int
    group: int = 0


@dataclass(slots=True)
class AppendReply:
    sender: int
    term: int
    success: bool
    match: int  # success: last index known to match; failure: where the leader should retry from - 1
    group: int = 0


@dataclass(slots=True)
class InstallSnapshot:
    sender: int
    term: int
    snapshot: Snapshot
    group: int = 0


@dataclass(slots=True)
class HardState:
    term: int
    voted_for: int | None
    group: int = 0


@dataclass(slots=True)
class CommitMark:
    index: int
    group: int = 0


@dataclass(slots=True, repr=False)
class Snapshot:
    index: int
    term: int
    data: bytes  # the state machine's state after applying entries 1..index
    group: int = 0
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = hashlib.sha256(self.data).hexdigest()

    def __repr__(self) -> str:  # the store checksums records by repr: keep it short and exact
        return f"Snapshot(index={self.index}, term={self.term}, group={self.group}, digest={self.digest})"


@dataclass(slots=True)
class RaftGroupState:
    """One log's persistent state as a region's snapshot keeps it (`replication.snapshot`):
    what `RaftNode.restore` would rebuild from the log's records, applied up to `commit`."""

    group: int
    term: int
    voted_for: int | None
    commit: int  # the books hold every entry up to here
    offset: int  # the log holds entries offset+1 ..
    offset_term: int
    snapshot: Snapshot | None  # the log's own snapshot (its units' slice), for followers behind it
    log: list[Entry]


RAFT_MESSAGES = (RequestVote, VoteReply, AppendEntries, AppendReply, InstallSnapshot, TimeoutNow)
RAFT_RECORDS = (HardState, CommitMark, Snapshot)  # what the quorum mode stores besides log entries


@dataclass
class RaftConfig:
    election_min: int  # ns
    election_max: int
    heartbeat_every: int
    max_batch: int = 64  # entries per AppendEntries
    snapshot_every: int = 1000  # entries applied since the last snapshot
    # Votes per member (replicas a region runs: 2+2+1 over three regions is (2, 2, 1)); empty = one each.
    # A member's replicas sit in one region and fail together, so they vote and ack as one.
    weights: tuple[int, ...] = ()
    # The member that should lead when it can (the primary region): a leader elsewhere hands
    # leadership back once that member is alive and has caught up. None: no preference.
    preferred: int | None = None


# ------------------------------------------------------------------ the node
@dataclass
class RaftNode:
    me: int
    n: int
    cfg: RaftConfig
    rng: random.Random
    term: int = 0
    voted_for: int | None = None
    role: Role = FOLLOWER
    leader: int | None = None
    log: list[Entry] = field(default_factory=list)  # entries offset+1 .. last_index
    # The entry just before log[0] (index, term). offset <= snap_index: compaction keeps a
    # margin of entries the snapshot covers, so a follower that is merely a little behind
    # (the far region, a reordered message) catches up from the log, not from a snapshot.
    offset: int = 0
    offset_term: int = 0
    snap: Snapshot | None = None
    commit: int = 0
    applied: int = 0
    pending_snapshot: Snapshot | None = None  # installed from the leader, for the state machine
    deadline: int | None = None
    leader_contact: int = -(1 << 62)
    votes: set[int] = field(default_factory=set)
    next_index: dict[int, int] = field(default_factory=dict)
    match_index: dict[int, int] = field(default_factory=dict)
    last_ack: dict[int, int] = field(default_factory=dict)
    hb_last: int = -(1 << 62)
    became_leader: int = 0
    snap_sent: dict[int, int] = field(default_factory=dict)  # peer -> when a snapshot was last sent
    # Followers whose match point the leader is still looking for: one AppendEntries in flight
    # each, its next_index moved only by their answers (etcd's probe state). Optimistic
    # pipelining to them would send guesses past their log whose rejects undo the search.
    probing: set[int] = field(default_factory=set)
    damaged: set[int] = field(default_factory=set)  # log indices whose stored copy failed its checksum
    transfer_to: int | None = None  # leadership being handed to this member (proposals held meanwhile)
    transfer_until: int = 0
    group: int = 0  # which log this is, when a region runs several (one per unit): tags messages and records

    # -------------------------------------------------------------- log helpers
    @property
    def peers(self) -> list[int]:
        return [p for p in range(self.n) if p != self.me]

    def weight(self, member: int) -> int:
        return self.cfg.weights[member] if self.cfg.weights else 1

    def is_majority(self, members: set[int]) -> bool:
        """More than half of all votes (replicas): any two such sets share a member."""
        total = sum(self.cfg.weights) if self.cfg.weights else self.n
        return 2 * sum(self.weight(m) for m in members) > total

    @property
    def snap_index(self) -> int:
        return self.snap.index if self.snap else 0

    @property
    def snap_term(self) -> int:
        return self.snap.term if self.snap else 0

    @property
    def last_index(self) -> int:
        return self.offset + len(self.log)

    @property
    def last_term(self) -> int:
        return self.log[-1].rv if self.log else self.offset_term

    def term_at(self, i: int) -> int | None:
        if i == self.offset:
            return self.offset_term
        if i < self.offset or i > self.last_index:
            return None
        return self.log[i - self.offset - 1].rv

    def first_index_of_term(self) -> int | None:
        """The index of this term's first entry (a leader's no-op), if still in the log."""
        for e in self.log:
            if e.rv == self.term:
                return e.seq
        return None

    def entry(self, i: int) -> Entry:
        return self.log[i - self.offset - 1]

    def _timeout(self) -> int:
        return int(self.rng.uniform(self.cfg.election_min, self.cfg.election_max))

    def _persist_hard(self, out: list[Effect]) -> None:
        out.append(Persist(HardState(self.term, self.voted_for, self.group)))

    @property
    def transferring(self) -> bool:
        """A leader handing over takes no new entries: the target must hold the whole log."""
        return self.transfer_to is not None

    def _become_follower(self, term: int, now: int, out: list[Effect]) -> None:
        self.transfer_to = None
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._persist_hard(out)
        self.role = FOLLOWER
        self.votes = set()

    # -------------------------------------------------------------- time
    def tick(self, now: int, out: list[Effect]) -> None:
        if self.deadline is None:
            self.deadline = now + self._timeout()
        if self.role == LEADER:
            if now - self.hb_last >= self.cfg.heartbeat_every:
                self.hb_last = now
                for p in self.peers:
                    self._send_append(p, out, now, heartbeat=True)
            heard = {p for p in self.peers if now - self.last_ack.get(p, -(1 << 62)) < self.cfg.election_min}
            if not self.is_majority(heard | {self.me}) and now - self.became_leader >= self.cfg.election_min:
                self.role = FOLLOWER  # CheckQuorum: a leader that cannot reach a majority steps down
                self.leader = None
                self.transfer_to = None
                self.deadline = now + self._timeout()
                return
            self._maybe_transfer(now, out)
        elif now >= self.deadline:
            self._campaign(now, out, pre=True)

    def _maybe_transfer(self, now: int, out: list[Effect]) -> None:
        """Hand leadership to the preferred member: once it has been leader-stable for an
        election timeout and the preferred member answers, hold new entries; send TimeoutNow
        as soon as it matches the whole log; give up after an election timeout."""
        p = self.cfg.preferred
        if self.transfer_to is not None:
            if now >= self.transfer_until:
                self.transfer_to = None  # no new leader in time: keep leading, try again later
                self.became_leader = now
            elif self.match_index.get(self.transfer_to, 0) == self.last_index:
                out.append(Send(self.transfer_to, TimeoutNow(self.me, self.term, self.group)))
            return
        if (p is None or p == self.me or p not in self.match_index
                or now - self.became_leader < self.cfg.election_max
                or now - self.last_ack.get(p, -(1 << 62)) >= 2 * self.cfg.heartbeat_every
                or self.last_index - self.match_index[p] > self.cfg.max_batch):
            return
        self.transfer_to, self.transfer_until = p, now + self.cfg.election_min
        if self.match_index[p] == self.last_index:
            out.append(Send(p, TimeoutNow(self.me, self.term, self.group)))

    def _send_snapshot(self, p: int, now: int, out: list[Effect]) -> bool:
        """Send `p` our snapshot, unless one went within an election timeout (resending floods
        the link). Whether it was sent."""
        assert self.snap is not None
        if now - self.snap_sent.get(p, -(1 << 62)) < self.cfg.election_min:
            return False
        self.snap_sent[p] = now
        out.append(Send(p, InstallSnapshot(self.me, self.term, self.snap, self.group), 96 + len(self.snap.data)))
        return True

    def offer_snapshot(self, p: int, seq: int, now: int, out: list[Effect]) -> None:
        """Member `p` asked for entry `seq`, which its stored log holds damaged, and nobody
        kept a copy: as leader, send our snapshot if it covers the entry (the member installs
        it even below its commit: `_on_install`), so its log no longer needs the entry."""
        if self.role == LEADER and self.snap is not None and 0 < seq <= self.snap_index:
            self._send_snapshot(p, now, out)

    def _on_timeout_now(self, m: TimeoutNow, now: int, out: list[Effect]) -> None:
        if m.term == self.term and self.role == FOLLOWER and m.sender == self.leader:
            self._campaign(now, out, pre=False, transfer=True)

    def _campaign(self, now: int, out: list[Effect], pre: bool, transfer: bool = False) -> None:
        self.deadline = now + self._timeout()
        if self.damaged:
            return  # a log we cannot read whole must not lead
        self.leader = None
        if pre:
            self.role = PRE_CANDIDATE
            term = self.term + 1
        else:
            self.role = CANDIDATE
            self.term += 1
            self.voted_for = self.me
            self._persist_hard(out)
            term = self.term
        self.votes = {self.me}
        if self.is_majority(self.votes):
            return self._on_won(now, out, pre)
        rv = RequestVote(self.me, term, self.last_index, self.last_term, pre, transfer, self.group)
        for p in self.peers:
            out.append(Send(p, rv))

    def _on_won(self, now: int, out: list[Effect], pre: bool) -> None:
        if pre:
            return self._campaign(now, out, pre=False)
        self.role = LEADER
        self.leader = self.me
        self.became_leader = now
        self.next_index = dict.fromkeys(self.peers, self.last_index + 1)
        self.match_index = dict.fromkeys(self.peers, 0)
        self.probing = set()
        self.last_ack = dict.fromkeys(self.peers, now)
        self.propose(np.zeros(0, _empty_dtype()), now, out)  # no-op: commits the previous terms' tail
        self.hb_last = now

    # -------------------------------------------------------------- client side
    def propose(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[int, int] | None:
        """Append a batch as a new entry (leader only): (index, term) or None."""
        if self.role != LEADER or self.transfer_to is not None:
            return None
        e = Entry(self.me, self.last_index + 1, self.term, now, rows, group=self.group).seal()
        self.log.append(e)
        out.append(Persist(e))
        for p in self.peers:
            self._send_append(p, out, now)
        self._advance_commit(out)
        return e.seq, e.rv

    def _send_append(self, p: int, out: list[Effect], now: int, heartbeat: bool = False, probe: bool = False) -> None:
        if p in self.probing and not (heartbeat or probe):
            return  # a probe is in flight: its answer sends the next one
        ni = self.next_index[p]
        if ni <= self.offset:
            if self._send_snapshot(p, now, out):
                self.next_index[p] = self.snap_index + 1
            return
        if ni > self.last_index and not heartbeat:
            return
        prev = ni - 1
        entries = self.log[prev - self.offset: prev - self.offset + self.cfg.max_batch]
        size = 96 + sum(96 + 128 * len(e.rows) for e in entries)
        out.append(Send(p, AppendEntries(self.me, self.term, prev, self.term_at(prev) or 0, entries, self.commit,
                                          self.group), size))
        if p not in self.probing:
            self.next_index[p] = ni + len(entries)  # optimistic pipelining; rolled back on reject

    def _advance_commit(self, out: list[Effect]) -> None:
        # the highest index stored on a majority of votes: walk the members by match index
        stored: set[int] = set()
        n = 0
        for member, index in sorted([(self.me, self.last_index), *self.match_index.items()], key=lambda x: -x[1]):
            stored.add(member)
            if self.is_majority(stored):
                n = index
                break
        if n > self.commit and self.term_at(n) == self.term:
            self.commit = n
            out.append(Persist(CommitMark(n, self.group)))

    # -------------------------------------------------------------- messages
    def step(self, m: object, now: int, out: list[Effect]) -> None:
        if self.deadline is None:
            self.deadline = now + self._timeout()
        t = type(m)
        if t is RequestVote:
            self._on_request_vote(m, now, out)  # type: ignore[arg-type]
        elif t is VoteReply:
            self._on_vote_reply(m, now, out)  # type: ignore[arg-type]
        elif t is AppendEntries:
            self._on_append(m, now, out)  # type: ignore[arg-type]
        elif t is AppendReply:
            self._on_append_reply(m, now, out)  # type: ignore[arg-type]
        elif t is InstallSnapshot:
            self._on_install(m, now, out)  # type: ignore[arg-type]
        elif t is TimeoutNow:
            self._on_timeout_now(m, now, out)  # type: ignore[arg-type]

    def _up_to_date(self, last_term: int, last_index: int) -> bool:
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def _on_request_vote(self, m: RequestVote, now: int, out: list[Effect]) -> None:
        sticky = not m.transfer and (self.role == LEADER or now - self.leader_contact < self.cfg.election_min)
        if m.pre:
            granted = m.term > self.term and not sticky and self._up_to_date(m.last_term, m.last_index)
            out.append(Send(m.sender, VoteReply(self.me, m.term if granted else self.term, granted, True, self.group)))
            return
        if m.term > self.term and sticky:
            return  # leader stickiness: a live leader is not deposed by a disruptive candidate
        if m.term > self.term:
            self._become_follower(m.term, now, out)
            self.leader = None
        granted = (m.term == self.term and self.voted_for in (None, m.sender)
                   and self._up_to_date(m.last_term, m.last_index))
        if granted:
            self.voted_for = m.sender
            self._persist_hard(out)
            self.deadline = now + self._timeout()
        out.append(Send(m.sender, VoteReply(self.me, self.term, granted, False, self.group)))

    def _on_vote_reply(self, m: VoteReply, now: int, out: list[Effect]) -> None:
        if m.pre:
            if self.role == PRE_CANDIDATE and m.granted and m.term == self.term + 1:
                self.votes.add(m.sender)
                if self.is_majority(self.votes):
                    self._on_won(now, out, pre=True)
            elif not m.granted and m.term > self.term:
                self._become_follower(m.term, now, out)
            return
        if m.term > self.term:
            self._become_follower(m.term, now, out)
            self.leader = None
            return
        if self.role == CANDIDATE and m.term == self.term and m.granted:
            self.votes.add(m.sender)
            if self.is_majority(self.votes):
                self._on_won(now, out, pre=False)

    def _accept_leader(self, m: AppendEntries | InstallSnapshot, now: int, out: list[Effect]) -> bool:
        if m.term < self.term:
            out.append(Send(m.sender, AppendReply(self.me, self.term, False, self.last_index, self.group)))
            return False
        if m.term > self.term or self.role != FOLLOWER:
            assert not (m.term == self.term and self.role == LEADER), "two leaders in one term"
            self._become_follower(m.term, now, out)
        self.leader = m.sender
        self.leader_contact = now
        self.deadline = now + self._timeout()
        return True

    def _on_append(self, m: AppendEntries, now: int, out: list[Effect]) -> None:
        if not self._accept_leader(m, now, out):
            return
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        covered = prev + len(entries)
        if prev < self.offset:  # that prefix is in our snapshot: committed, identical
            entries = [e for e in entries if e.seq > self.offset]
            prev, prev_term = self.offset, self.offset_term
        if self.term_at(prev) != prev_term:
            hint = max(self._conflict_hint(prev), self.commit)
            out.append(Send(m.sender, AppendReply(self.me, self.term, False, hint, self.group)))
            return
        for e in entries:
            have = self.term_at(e.seq)
            if have == e.rv:
                continue  # already there (a duplicate or reordered message must not truncate)
            if have is not None:
                assert e.seq > self.commit, "a committed entry would be truncated"
                del self.log[e.seq - self.offset - 1:]
                self.damaged = {i for i in self.damaged if i < e.seq}
            self.log.append(e)
            out.append(Persist(e))
        new_commit = min(m.commit, covered)
        if new_commit > self.commit:
            self.commit = new_commit
            out.append(Persist(CommitMark(new_commit, self.group)))
        out.append(Send(m.sender, AppendReply(self.me, self.term, True, covered, self.group)))

    def _conflict_hint(self, prev: int) -> int:
        """Where the leader should retry from - 1 (Raft §5.3, the optimisation at its end): our
        last index if `prev` is past our log, else the index before our conflicting term began,
        so a whole divergent term is skipped in one round trip instead of one entry per trip."""
        if prev > self.last_index:
            return self.last_index
        term = self.term_at(prev)
        i = prev
        while i - 1 > max(self.offset, self.commit) and self.term_at(i - 1) == term:
            i -= 1
        return i - 1

    def _on_append_reply(self, m: AppendReply, now: int, out: list[Effect]) -> None:
        if m.term > self.term:
            self._become_follower(m.term, now, out)
            self.leader = None
            return
        if self.role != LEADER or m.term != self.term:
            return
        self.last_ack[m.sender] = now
        if m.success:
            self.probing.discard(m.sender)
            if m.match > self.match_index[m.sender]:
                self.match_index[m.sender] = m.match
                self._advance_commit(out)
            self.next_index[m.sender] = max(self.next_index[m.sender], self.match_index[m.sender] + 1)
            if self.next_index[m.sender] <= self.last_index:
                self._send_append(m.sender, out, now)
            if m.sender == self.transfer_to and m.match == self.last_index:
                out.append(Send(m.sender, TimeoutNow(self.me, self.term, self.group)))
        else:
            self.next_index[m.sender] = max(self.match_index[m.sender], m.match) + 1
            self.probing.add(m.sender)
            self._send_append(m.sender, out, now, probe=True)

    def _on_install(self, m: InstallSnapshot, now: int, out: list[Effect]) -> None:
        if not self._accept_leader(m, now, out):
            return
        s = m.snapshot
        # below our commit only to get past damaged entries we cannot apply (the log's own
        # entries at the snapshot's index agree with it, so what follows it stays)
        past_damage = (s.index > self.applied and any(i <= s.index for i in self.damaged)
                       and self.term_at(s.index) == s.term)
        if s.index > self.commit or past_damage:
            self._install(s)
            out.append(Persist(s))
        out.append(Send(m.sender, AppendReply(self.me, self.term, True, s.index, self.group)))

    def _install(self, s: Snapshot) -> None:
        if self.term_at(s.index) == s.term:
            self.log = self.log[s.index - self.offset:]
        else:
            self.log = []
        self.offset, self.offset_term = s.index, s.term
        self.damaged = {i for i in self.damaged if i > s.index}
        self.snap = s
        if s.index > self.commit:
            self.commit = s.index
        if s.index > self.applied:
            self.applied = s.index
            self.pending_snapshot = s

    # -------------------------------------------------------------- state machine side
    def take_committed(self) -> list[Entry]:
        """Committed entries not yet applied, in log order (stops at a damaged one)."""
        out = []
        while self.applied < self.commit:
            i = self.applied + 1
            if i in self.damaged:
                break
            out.append(self.entry(i))
            self.applied = i
        return out

    def compact(self, data: bytes, out: list[Effect]) -> Snapshot | None:
        """Snapshot the state machine at `applied` and drop the log prefix it covers."""
        if self.applied - self.snap_index < self.cfg.snapshot_every:
            return None
        if any(i <= self.applied for i in self.damaged):
            return None
        s = Snapshot(self.applied, self.term_at(self.applied) or 0, data, self.group)
        keep = max(self.offset, s.index - self.cfg.snapshot_every // 2)  # the catch-up margin
        self.offset_term = self.term_at(keep) or 0
        self.log = self.log[keep - self.offset:]
        self.offset = keep
        self.snap = s
        out.append(Persist(s))
        return s

    def repair(self, e: Entry) -> bool:
        """A good copy of a damaged entry (same index and checksum) from a peer."""
        if e.seq in self.damaged and e.intact() and self.entry(e.seq).checksum == e.checksum:
            self.log[e.seq - self.offset - 1] = e
            self.damaged.discard(e.seq)
            return True
        return False

    # -------------------------------------------------------------- invariants
    def invariants(self) -> None:
        """What Raft's safety rests on, as this member sees it (checked after every step)."""
        where = f"raft group {self.group} member {self.me}"
        check(0 <= self.offset <= self.snap_index <= self.applied <= self.commit <= self.last_index,
              f"{where}: offset <= snapshot <= applied <= commit <= last index",
              (self.offset, self.snap_index, self.applied, self.commit, self.last_index))
        if self.log:  # entries are appended one by one: the ends and the newest stretch say it all
            check(self.log[0].seq == self.offset + 1 and self.log[-1].seq == self.last_index,
                  f"{where}: log indices are contiguous", (self.log[0].seq, self.offset, self.log[-1].seq))
            tail = self.log[-8:]
            prev = tail[0].rv if len(tail) < len(self.log) else self.offset_term
            for e in tail:
                check(e.group == self.group and e.rv >= prev, f"{where}: terms never decrease along the log",
                      (e.seq, e.rv, prev))
                prev = e.rv
        check(self.last_term <= self.term, f"{where}: no entry from a future term", (self.last_term, self.term))
        check(self.voted_for is None or 0 <= self.voted_for < self.n, f"{where}: a vote names a member",
              self.voted_for)
        if self.role is LEADER:
            check(self.leader == self.me and self.voted_for == self.me, f"{where}: a leader voted for itself")
            for p, m in self.match_index.items():
                check(m <= self.last_index and self.next_index[p] <= self.last_index + 1,
                      f"{where}: a follower's match and next index are within the log", (p, m, self.next_index[p]))
        check(all(self.offset < i <= self.last_index for i in self.damaged), f"{where}: damaged entries are in the log")

    # -------------------------------------------------------------- recovery
    @classmethod
    def restore(cls, me: int, n: int, cfg: RaftConfig, rng: random.Random, records: Sequence[object],
                group: int = 0, base: RaftGroupState | None = None) -> RaftNode:
        """Rebuild the persistent state from the group's durable records, in the order written,
        after `base` (the group's state in the store's snapshot, applied up to its commit)."""
        node = cls(me, n, cfg, rng, group=group)
        if base is not None:
            node.term, node.voted_for, node.commit = base.term, base.voted_for, base.commit
            node.offset, node.offset_term, node.snap = base.offset, base.offset_term, base.snapshot
            node.log = list(base.log)
            node.applied = base.commit
            if node.log and (node.log[0].seq != node.offset + 1 or node.log[-1].seq != node.last_index):
                raise ValueError(f"raft group {group}: a snapshot's log is not the entries after its offset")
            if not node.offset <= node.snap_index <= node.commit <= node.last_index:
                raise ValueError(f"raft group {group}: a snapshot's offset, snapshot, commit and log disagree")
        for rec in records:
            t = type(rec)
            if t is HardState:
                node.term, node.voted_for = rec.term, rec.voted_for  # type: ignore[attr-defined]
            elif t is Entry:
                e: Entry = rec  # type: ignore[assignment]
                if e.seq <= node.offset:
                    continue
                if e.seq <= node.last_index:
                    del node.log[e.seq - node.offset - 1:]
                if e.seq == node.last_index + 1:
                    node.log.append(e)
            elif t is Snapshot:
                node._install(rec)  # type: ignore[arg-type]
            elif t is CommitMark:
                node.commit = max(node.commit, rec.index)  # type: ignore[attr-defined]
        node.damaged = {e.seq for e in node.log if not e.intact()}
        node.commit = min(node.commit, node.last_index)
        return node

    def export(self) -> RaftGroupState:
        """The persistent state, as `restore` takes it back: only once everything committed
        is applied (the books a snapshot holds are at `commit`)."""
        if self.applied != self.commit or self.pending_snapshot is not None:
            raise ValueError(f"raft group {self.group}: applied {self.applied} of {self.commit} committed "
                             "(a damaged entry waits): no snapshot covers it")
        return RaftGroupState(self.group, self.term, self.voted_for, self.commit, self.offset, self.offset_term,
                              self.snap, list(self.log))


def _empty_dtype() -> np.dtype:
    from cext.layout import TRANSFER_DTYPE

    return TRANSFER_DTYPE


__all__ = [
    "CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "RAFT_MESSAGES", "Role",
    "AppendEntries", "AppendReply", "CommitMark", "HardState", "InstallSnapshot", "RaftConfig",
    "RaftGroupState", "RaftNode", "RequestVote", "Snapshot", "VoteReply",
]

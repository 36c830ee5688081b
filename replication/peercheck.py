"""Whether a peer's message fits this node's configuration, before any design sees it.

The wire (`replication.wire.decode_peer_frame`) guarantees a peer message's *types*: a
`RoutingTable` is a table of ints, a `Heartbeat`'s heads a tuple of ints, and the sender is
the peer the transport authenticated. It cannot know the *shape* the receiving region was
configured with: how many regions and units there are, how many Raft logs, which accounts
exist. A peer started with another unit count (an operator's slip), a peer of a newer
release, or a buggy one sends messages that are well-typed and wrong for us: a routing
table with three homes where we have six units, heads for four regions where we have
three, a log of region 7, an escrow request for an account we do not have.

Handed to a design, such a message either raises in the middle of a step (the region
stops: `region.driver`), or is *adopted and persisted* (a three-unit routing table
written to a six-unit region's store survives restarts). So the node checks each peer
message here, as a whole, and refuses the misfits before anything else: a refused message
changes nothing and is reported (`peer_message_refused`, naming the peer, the message
and why), the rest of the step goes on.

What is checked is the shape, not the truth: indices in range, tuple lengths, sequence
numbers and versions that are natural numbers within 63 bits (what stores and peers
carry), entries that belong to the log they travel in. Whether a well-shaped message is
*right* (a vote, a head, an entry's rows) is the protocol's business, as it is today.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from replication import messages as m
from replication import raft as r
from replication.accounts import AccountMap
from replication.log import Entry
from replication.quorum import RaftBundle
from replication.routing import RoutingTable

MAX_NATURAL = (1 << 63) - 1
"""The largest sequence number, version, term, index or round a peer may name (int64)."""
MAX_U64 = (1 << 64) - 1
MAX_AMOUNT = (1 << 128) - 1


class PeerCheck:
    """The shape rules for one node: `why_refused(message)` is None for a message that fits."""

    def __init__(self, n_regions: int, amap: AccountMap, n_groups: int = 0) -> None:
        """`n_groups`: the Raft logs of a quorum design; 0 for the log-shipping designs."""
        self.n_regions = n_regions
        self.n_units = amap.n_units
        self.n_customers = amap.n_customers
        self.n_groups = n_groups
        self._rules: dict[type, Callable[[Any], str | None]] = {
            m.Forward: lambda x: self._natural("fwd_id", x.fwd_id),
            m.ForwardReply: lambda x: self._natural("fwd_id", x.fwd_id),
            m.Ship: self._ship,
            m.ShipAck: lambda x: self._region("origin", x.origin) or self._natural("seq", x.seq),
            m.Pull: lambda x: self._region("origin", x.origin) or self._natural("after", x.after),
            m.Heartbeat: self._heartbeat,
            m.HeartbeatAck: lambda x: (self._natural("round", x.round)
                                       or (None if x.routing is None else self._table(x.routing))),
            m.Propose: lambda x: self._table(x.table),
            m.Vote: lambda x: (self._natural("version", x.version) or self._heads("heads", x.heads)
                               or self._natural("retry_in", x.retry_in)),
            m.Query: lambda x: self._natural("version", x.version),
            m.Abort: lambda x: self._natural("version", x.version),
            m.RoutingUpdate: lambda x: self._table(x.table),
            m.CreditLegs: lambda x: None,  # rows: typed by the wire, judged row by row by the engine
            m.QuotaRequest: self._quota,
            m.RepairRequest: lambda x: ((self._group(x.origin) if n_groups else self._region("origin", x.origin))
                                        or self._positive("seq", x.seq) or self._natural("index", x.index)),
            m.RepairData: lambda x: (self._natural("index", x.index)
                                     or self._entry(x.entry, x.entry.origin, x.entry.group if n_groups else 0)),
            RaftBundle: lambda x: next(filter(None, map(self.why_refused, x.messages)), None),
            r.RequestVote: lambda x: self._raft(x, ("term", "last_index", "last_term")),
            r.VoteReply: lambda x: self._raft(x, ("term",)),
            r.TimeoutNow: lambda x: self._raft(x, ("term",)),
            r.AppendEntries: self._append,
            r.AppendReply: lambda x: self._raft(x, ("term", "match")),
            r.InstallSnapshot: self._install,
        }

    def why_refused(self, message: Any) -> str | None:
        """Why `message`, from a peer, cannot be meant for this node; None if it fits.
        Messages from the node's own driver (client requests, ticks, disk reports) and
        types without rules are not judged here."""
        rule = self._rules.get(type(message))
        return None if rule is None else rule(message)

    # ------------------------------------------------------------------ parts
    def _natural(self, what: str, value: int) -> str | None:
        return None if 0 <= value <= MAX_NATURAL else f"{what} {value} is not in 0..2^63-1"

    def _positive(self, what: str, value: int) -> str | None:
        return None if 1 <= value <= MAX_NATURAL else f"{what} {value} is not in 1..2^63-1"

    def _region(self, what: str, value: int) -> str | None:
        return None if 0 <= value < self.n_regions else f"{what} {value} names no region (there are {self.n_regions})"

    def _heads(self, what: str, heads: tuple[int, ...], *, empty_ok: bool = False) -> str | None:
        if len(heads) != self.n_regions and not (empty_ok and not heads):
            return f"{what} has {len(heads)} values, one per region wanted ({self.n_regions})"
        return next((self._natural(what, h) for h in heads if not 0 <= h <= MAX_NATURAL), None)

    def _table(self, t: RoutingTable) -> str | None:
        if len(t.homes) != self.n_units or len(t.epochs) != self.n_units:
            return (f"routing table version {t.version} has {len(t.homes)} homes and {len(t.epochs)} epochs "
                    f"for {self.n_units} units")
        return (self._positive("routing version", t.version)
                or next(filter(None, (self._region("home", h) for h in t.homes)), None)
                or next(filter(None, (self._positive("epoch", e) for e in t.epochs)), None)
                or next(filter(None, (self._region("fork origin", f.origin) or self._natural("fork kept_through",
                                                                                            f.kept_through)
                                      or self._fork_version(f.version, t.version) for f in t.forks)), None))

    def _fork_version(self, fork: int, table: int) -> str | None:
        return None if 1 <= fork <= table else f"fork version {fork} is not in 1..{table} (the table's)"

    def _entry(self, e: Entry, origin: int, group: int) -> str | None:
        """An entry that must be `origin`'s and in log `group` (0 where logs are per origin)."""
        if e.origin != origin:
            return f"an entry of region {e.origin} travels in region {origin}'s log"
        if e.group != group:
            return f"an entry of log {e.group} travels in log {group}"
        return (self._region("entry origin", e.origin) or (self._group(group) if self.n_groups else None)
                or self._positive("entry seq", e.seq) or self._natural("entry rv", e.rv)
                or (None if 0 <= e.created <= MAX_U64 else f"entry created {e.created} is not in 0..2^64-1"))

    def _entries(self, entries: Iterable[Entry], origin: int | None, group: int) -> str | None:
        """Each entry is `origin`'s (None: any region's, as a Raft log's leaders change)."""
        return next(filter(None, (self._entry(e, e.origin if origin is None else origin, group)
                                  for e in entries)), None)

    def _ship(self, x: m.Ship) -> str | None:
        return self._region("origin", x.origin) or self._entries(x.entries, x.origin, 0)

    def _heartbeat(self, x: m.Heartbeat) -> str | None:
        return (self._natural("round", x.round) or self._natural("routing_version", x.routing_version)
                or self._heads("heads", x.heads) or self._heads("based", x.based, empty_ok=True))

    def _quota(self, x: m.QuotaRequest) -> str | None:
        if not 1 <= x.account <= self.n_customers:
            return f"account {x.account} is not a customer account (1..{self.n_customers})"
        return None if 1 <= x.need <= MAX_AMOUNT else f"need {x.need} is not in 1..2^128-1"

    def _group(self, group: int) -> str | None:
        return None if 0 <= group < self.n_groups else f"log {group} does not exist (there are {self.n_groups})"

    def _raft(self, x: Any, fields: tuple[str, ...]) -> str | None:
        return self._group(x.group) or next(filter(None, (self._natural(f, getattr(x, f)) for f in fields)), None)

    def _append(self, x: r.AppendEntries) -> str | None:
        return (self._raft(x, ("term", "prev_index", "prev_term", "commit"))
                or self._entries(x.entries, None, x.group))

    def _install(self, x: r.InstallSnapshot) -> str | None:
        if x.snapshot.group != x.group:
            return f"a snapshot of log {x.snapshot.group} travels in log {x.group}"
        return self._raft(x, ("term",)) or self._raft(x.snapshot, ("index", "term"))

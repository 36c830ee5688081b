"""A region's checkpoint: its replicated state at a position of its store, as one record.

A long-lived region cannot replay its whole history at every start, nor keep every entry it
ever applied in memory. So its store keeps a `NodeSnapshot`: what `RegionNode.recover` would
rebuild from the store's records before `position`, written together with that position and
the audit chain's value there (`chain`), after which those records are dropped. Recovery is
then the snapshot plus the records after it, and the audit chain verifies from `chain` on.

What a snapshot holds is what recovery needs and nothing volatile:

* the engine (accounts, every transfer — the ids exactly-once rests on: a retry of any id,
  however old, still finds its transfer and is answered EXISTS — their metadata and the
  balance history), in the engine's own snapshot format;
* log shipping (`ShippingState`): each origin's applied head (entries at or below it are
  duplicates), this region's next sequence number, the newest routing table (fork points),
  the entries peers may still pull (`retained`), the escrow share (`quota`) and the credit
  legs a unit home still owes (`owed`);
* quorum (`RaftGroupState`, one per Raft log): term, vote, commit, the log's own snapshot
  and its retained entries;
* the anomalies the checkers read, and the last timestamp this region stamped.

These are registered in `replication.wire` (never pickled) but are not records of the
store's chain nor peer messages: a store keeps one, beside its records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from replication.config import Mode, NodeConfig, design_label
from replication.log import Entry
from replication.raft import RaftGroupState
from replication.routing import RoutingTable

Anomaly = tuple[int, int, int, int]


@dataclass(slots=True)
class ShippingState:
    """What a log-shipping design (async, escrow, unit) recovers beyond the engine."""

    heads: tuple[int, ...]  # per origin: the last sequence number applied
    next_seq: int  # this region's next own sequence number
    routing: RoutingTable
    retained: list[Entry]  # entries kept for peers that may still pull them, per origin in order
    quota: tuple[int, ...] = ()  # escrow: this region's share of each account (index: account id)
    owed: tuple[tuple[int, int], ...] = ()  # unit: (debit leg id, own sequence or 0) whose credit leg is owed


@dataclass(slots=True)
class NodeSnapshot:
    """A region's state after its store's records before `position` (module docstring)."""

    position: int  # store records before this index are covered (and may be dropped)
    chain: bytes  # the audit chain's value after record position-1 (GENESIS at 0)
    design: str  # the design label it was taken under (`unit+semi-sync`, `quorum+ledger`, ...)
    n_regions: int
    engine: bytes  # the replica's engine, in the engine's snapshot format
    last_ts: int  # the highest timestamp this region stamped
    anomalies: list[tuple[int, int, int, int]] = field(default_factory=list)
    shipping: ShippingState | None = None
    raft: list[RaftGroupState] = field(default_factory=list)

    def check_fits(self, config: NodeConfig) -> None:
        """Refuse (ValueError) a snapshot of another design or topology than `config`'s."""
        want = design_label(config.mode, config.ship, config.quorum_groups)
        if (self.design, self.n_regions) != (want, config.n_regions):
            raise ValueError(f"snapshot at record {self.position} was taken by a {self.design} region of "
                             f"{self.n_regions} regions; this region runs {want} with {config.n_regions}")
        quorum = config.mode is Mode.QUORUM
        if (self.shipping is None) != quorum or (not self.raft) == quorum:
            raise ValueError(f"snapshot at record {self.position}: a {want} region's snapshot holds "
                             f"{'Raft' if quorum else 'log-shipping'} state and only that")
        if self.shipping is not None and len(self.shipping.heads) != config.n_regions:
            raise ValueError(f"snapshot at record {self.position}: {len(self.shipping.heads)} heads for "
                             f"{config.n_regions} regions")

    def heads(self) -> tuple[int, ...]:
        """Per origin (log shipping) or per Raft log (quorum): how far the snapshot applied."""
        if self.shipping is not None:
            return self.shipping.heads
        return tuple(g.commit for g in self.raft)


SNAPSHOT_TYPES = (NodeSnapshot, ShippingState, RaftGroupState)
"""What a store's snapshot is made of (registered in the wire codec)."""

__all__ = ["SNAPSHOT_TYPES", "Anomaly", "NodeSnapshot", "RaftGroupState", "ShippingState"]

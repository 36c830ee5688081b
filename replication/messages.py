"""Messages a region node accepts and effects it returns (sans-IO, h11 style).

Everything a node knows arrives as a message with the current time; everything it
wants done leaves as an effect. Row payloads are numpy arrays of `TRANSFER_DTYPE`, shared
by reference and never mutated after creation, so shipping costs no copies in a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replication.log import Entry
from replication.routing import RoutingTable

# ------------------------------------------------------------------ client side


@dataclass(slots=True)
class ClientRequest:
    """A batch of client operations submitted at the node's region gateway."""

    batch_id: int
    rows: np.ndarray  # client transfer rows (TRANSFER_DTYPE)
    reads: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # account ids


@dataclass(slots=True)
class Tick:
    """Time passes: heartbeats, failure detection, promotions, resends."""


# ------------------------------------------------------------------ node to node


@dataclass(slots=True)
class Forward:
    """Rows routed to the home of their unit (unit mode)."""

    sender: int
    fwd_id: int
    rows: np.ndarray


@dataclass(slots=True)
class ForwardReply:
    fwd_id: int
    results: np.ndarray


@dataclass(slots=True)
class Ship:
    """Entries of one origin's log, in sequence order (push or answer to a pull)."""

    sender: int
    origin: int
    entries: list[Entry]


@dataclass(slots=True)
class ShipAck:
    sender: int
    origin: int
    seq: int


@dataclass(slots=True)
class Pull:
    """Send me `origin`'s entries after `after` (catch-up after a gap, a heal, a restart)."""

    sender: int
    origin: int
    after: int


@dataclass(slots=True)
class Heartbeat:
    sender: int
    round: int
    routing_version: int
    heads: tuple[int, ...]  # per origin: last sequence number applied here
    # per origin: what this region's store snapshot covers (replication.checkpoint; empty
    # without checkpoints): entries at or below it are no longer in its store, so it can
    # never need them again from a peer (no pull after a restart, no repair of a record)
    based: tuple[int, ...] = ()


@dataclass(slots=True)
class HeartbeatAck:
    sender: int
    round: int
    grant: bool  # counts toward the sender's write lease
    routing: RoutingTable | None  # sent when newer than the heartbeat's


@dataclass(slots=True)
class Propose:
    """A coordinator proposes routing version `version` moving units off suspected homes."""

    sender: int
    table: RoutingTable


@dataclass(slots=True)
class Vote:
    """A region's answer to a Propose. A refusal because the voter still grants a demoted
    home its lease carries how long that lease has left (`retry_in`, ns), so the proposer
    tries again the moment it can win instead of waiting out its proposal timeout."""

    sender: int
    version: int
    yes: bool
    heads: tuple[int, ...]
    retry_in: int = 0


@dataclass(slots=True)
class Query:
    """A voter asks the proposer what became of proposal `version` (so it may grant again)."""

    sender: int
    version: int


@dataclass(slots=True)
class Abort:
    """Proposal `version` will never be committed: its votes are released."""

    sender: int
    version: int


@dataclass(slots=True)
class RoutingUpdate:
    sender: int
    table: RoutingTable


@dataclass(slots=True)
class CreditLegs:
    """Credit legs of cross-unit transfers, for the credit unit's home to apply once."""

    sender: int
    rows: np.ndarray


@dataclass(slots=True)
class QuotaRequest:
    """Escrow: I am short of `need` on `account`; grant me some of your share."""

    sender: int
    account: int
    need: int


@dataclass(slots=True)
class Corrupted:
    """The store found records whose checksum fails (from a scrub or a read)."""

    records: list[tuple[int, int, int, int, bytes]]  # (store index, origin, seq, group, stored checksum)


@dataclass(slots=True)
class RepairRequest:
    sender: int
    origin: int
    seq: int
    index: int


@dataclass(slots=True)
class RepairData:
    index: int
    entry: Entry


@dataclass(slots=True)
class PeerFrame:
    """What one region sends another in one go: `sender`'s messages, in send order. The
    transport authenticates `sender`; every message in the frame that names its sender
    must name the same one (a region cannot speak for another)."""

    sender: int
    messages: list[Any]


Message = (
    ClientRequest | Tick | Forward | ForwardReply | Ship | ShipAck | Pull | Heartbeat | HeartbeatAck
    | Propose | Vote | Query | Abort | RoutingUpdate | CreditLegs | QuotaRequest | Corrupted
    | RepairRequest | RepairData
)

# ------------------------------------------------------------------ effects


@dataclass(slots=True)
class Send:
    to: int
    message: object  # a `Message`, or a consensus message of `replication.raft` / `replication.quorum`
    size: int = 64  # bytes, for the runtime's bandwidth model


@dataclass(slots=True)
class Persist:
    """Append to the region's durable store (before any reply that depends on it)."""

    record: object  # Entry | RoutingTable


@dataclass(slots=True)
class PersistRepair:
    index: int
    entry: Entry


@dataclass(slots=True)
class Checkpoint:
    """Replace the store's records before `position` by a snapshot of the state they give
    (`region.checkpoint`); the runtime tells the node when it is durable (`checkpointed`).
    `retain_from[o]`: origin `o`'s entries above it are kept in the snapshot for peers that
    may still pull them (log shipping; empty in quorum mode)."""

    position: int
    retain_from: tuple[int, ...] = ()


@dataclass(slots=True)
class LoadBase:
    """The books must be rebuilt from the store's snapshot (a fork voided entries applied
    since it): the runtime hands the node that snapshot (`RegionNode.rebuild`) right after
    the step's records are durable. The node writes nothing meanwhile."""


@dataclass(slots=True)
class Reply:
    """Answer a client batch: one result code per row, one balance tuple per read, and per
    row the region whose answer it is (the writer that committed or refused it)."""

    batch_id: int
    results: np.ndarray
    balances: np.ndarray | None = None
    writers: np.ndarray | None = None


@dataclass(slots=True)
class SetTimer:
    after: int  # ns from now


@dataclass(slots=True)
class Report:
    """Something an operator must see: promotions, divergence (RPO), anomalies."""

    kind: str
    detail: dict


Effect = Send | Persist | PersistRepair | Reply | SetTimer | Report | Checkpoint | LoadBase

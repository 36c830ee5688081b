"""Taking a checkpoint: what a runtime does with a node's `Checkpoint` effect.

A checkpoint at position *p* is the state a restarted region would recover from its store's
records before *p*: so it is built exactly that way, by recovering a node from the store's
current snapshot and its records up to *p* (`RegionNode.restore`) and exporting that node
(`RegionNode.export`). Recovery from the new snapshot plus the records after it is then
recovery from every record, by construction; the live node's own (volatile) state never
enters a snapshot, and a snapshot never holds an entry a fork may still void (the node only
asks for settled positions: `replication.checkpoint`).

Refused, with `CheckpointError` and the store unchanged: a prefix holding a damaged record
the replay needs (it must be repaired at its index first; one the replayed node calls
superseded, an entry behind its Raft log's snapshot, is what the checkpoint drops), or one
whose replay leaves entries waiting behind a gap. The store then keeps its records; the node
is told (`checkpoint_failed`) and tries again an interval later.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.errors import StoreError
from region.store import RegionStore
from replication.config import NodeConfig
from replication.log import Entry
from replication.messages import Checkpoint
from replication.node import RegionNode
from replication.snapshot import NodeSnapshot


class CheckpointError(ValueError):
    """The records before the position cannot be replaced by a snapshot (yet)."""


def build(config: NodeConfig, store: RegionStore, position: int, retain_from: Sequence[int] = ()) -> NodeSnapshot:
    """The snapshot at `position` of `store` (see the module docstring)."""
    if not store.base < position <= store.end:
        raise CheckpointError(f"a checkpoint at record {position} of a store holding records "
                              f"{store.base}..{store.end - 1}")
    payloads = [r.payload for r in store.records[:position - store.base]]
    node, _ = RegionNode.restore(config, store.load_snapshot(), payloads, store.base)
    superseded = set(node.design.superseded_positions())
    for i, p in enumerate(payloads, store.base):
        if isinstance(p, Entry) and not p.intact() and i not in superseded:
            raise CheckpointError(f"record {i} is damaged: it is repaired in place before any checkpoint covers it")
    waiting = [o for o, b in enumerate(getattr(node.design, "buffer", ())) if b]
    if waiting:
        raise CheckpointError(f"replaying the records before {position} leaves entries of origins {waiting} "
                              "waiting behind a gap")
    try:
        return node.export(position, store.chain_at(position), retain_from)
    except ValueError as e:  # a Raft log with committed entries it could not apply
        raise CheckpointError(str(e)) from None


def take(config: NodeConfig, store: RegionStore, request: Checkpoint) -> NodeSnapshot:
    """Build the checkpoint `request` asks for and make it the store's (durable on return)."""
    snapshot = build(config, store, request.position, request.retain_from)
    store.save_snapshot(snapshot)
    return snapshot


def perform(node: RegionNode, store: RegionStore, request: Checkpoint) -> str | None:
    """Take the checkpoint `request` asks for and tell `node` how it went: None, or why it
    could not be taken (the store is then unchanged)."""
    try:
        snapshot = take(node.cfg, store, request)
    except (CheckpointError, StoreError) as e:
        node.checkpoint_failed(request.position)
        return str(e)
    node.checkpointed(snapshot.position, snapshot.heads())
    return None


__all__ = ["CheckpointError", "build", "perform", "take"]

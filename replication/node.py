"""`RegionNode`: one region's replica of the ledger, as a sans-IO state machine.

`node.handle_many(messages, now) -> list[effect]`. The node never reads a clock, sleeps,
opens a socket or draws a random number: `now` is the region's clock (ns), and every
effect (send, persist, reply, timer, report) is carried out by whichever runtime drives
it (`simulator.runtime`, `simulator.ray`, `region.driver`).

A node is a replica core (`replication.replica.Replica`: the books) under one design,
chosen once from `NodeConfig.mode` and built at construction:

| mode | design | module |
| --- | --- | --- |
| `async` | admission against the local view, log shipping | `replication.anywhere` |
| `escrow` | admission within the region's escrow share, log shipping | `replication.anywhere` |
| `unit` | one home per unit, leases, failover by vote, credit legs | `replication.unit`, `replication.failover` |
| `quorum` | a Raft log per unit (or per home region, or one) | `replication.quorum`, `replication.raft` |

The node is the one type every runtime drives; the design is where the protocol lives.

Checkpoints (`replication.checkpoint`, `replication.snapshot`): the node counts the records it
writes and, on its policy, asks its runtime (`Checkpoint` effect) to replace the store's
settled records by a snapshot of the state they give (`export`); the runtime says when that
is durable (`checkpointed`). Recovery is the store's snapshot plus the records after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from replication.anywhere import AsyncDesign, EscrowDesign
from replication.checkpoint import CheckpointPolicy
from replication.coalesce import Coalescer
from replication.config import Mode, NodeConfig, design_label
from replication.messages import Checkpoint, Effect, Message, Report
from replication.peercheck import PeerCheck
from replication.quorum import QuorumDesign
from replication.replica import Anomaly, Replica
from replication.snapshot import NodeSnapshot
from replication.unit import UnitDesign


class Design(Protocol):
    """What a replication design offers the node (and, through it, the runtimes)."""

    replica: Replica
    catching_up: Any  # units this region gained and is still catching up on (a set)
    lease_until: int  # unit design: this region's write lease runs to here (node clock)
    admits_row_by_row: bool
    """Whether a row's answer depends only on the rows before it (and the books), never on
    the rows after it in its batch: then a step's client requests may be admitted as one
    batch (`replication.coalesce`). Not so where admission checks a whole batch against a
    local view (async, escrow: a batch's debits are summed before the engine runs)."""

    def handle_many(self, messages: Sequence[Any], now: int) -> list[Effect]: ...

    def suspects(self, peer: int, now: int) -> bool: ...

    def writer_of(self, unit: int) -> int | None: ...

    def invariants(self) -> None: ...

    @property
    def credit_legs_owed(self) -> int: ...

    @property
    def applied_heads(self) -> list[int]: ...

    def export_state(self, retain_from: Sequence[int]) -> Any: ...

    def settled_heads(self) -> list[int] | None: ...

    def damaged_positions(self) -> list[int]: ...

    def superseded_positions(self) -> list[int]: ...

    def retain_from(self) -> tuple[int, ...]: ...

    def on_checkpointed(self, position: int, heads: Sequence[int]) -> None: ...

    def rebuild(self, base: NodeSnapshot) -> None: ...


DESIGNS: dict[Mode, Any] = {
    Mode.ASYNC: AsyncDesign,
    Mode.ESCROW: EscrowDesign,
    Mode.UNIT: UnitDesign,
    Mode.QUORUM: QuorumDesign,
}


class RegionNode:
    """One region: its replica of every unit under one replication design."""

    def __init__(self, config: NodeConfig, design: Design | None = None, *, position: int = 0,
                 base: int = 0) -> None:
        """`position`: how many records the store holds (its end); `base`: where its snapshot is."""
        self.cfg = config
        self.me = config.me
        if design is None:
            design = DESIGNS[config.mode](config, Replica(config))
        self.design: Any = design
        self.replica: Replica = design.replica
        self.checkpoints = CheckpointPolicy(config.checkpoint_every, config.checkpoint_bytes, position, base)
        self.coalescer = Coalescer(enabled=design.admits_row_by_row)  # a step's requests as one batch
        self.peer_check = PeerCheck(config.n_regions, config.amap, len(getattr(design, "groups", ())))

    @classmethod
    def recover(cls, config: NodeConfig, store: Any) -> tuple[RegionNode, list[Effect]]:
        """Rebuild from the durable store after a crash (volatile state is gone): its snapshot,
        then its records after it."""
        return cls.restore(config, store.load_snapshot(), [r.payload for r in store.records], store.base)

    @classmethod
    def restore(cls, config: NodeConfig, base: NodeSnapshot | None, records: Sequence[object],
                first: int = 0) -> tuple[RegionNode, list[Effect]]:
        """The node `base` (a snapshot of what the store's records before index `first` gave,
        or None with `first` 0) and `records` (the store's records from `first` on) give.
        ValueError if the snapshot is not this region's kind or does not cover `first`."""
        if base is not None:
            base.check_fits(config)
            if base.position != first:
                raise ValueError(f"a snapshot covering the records before {base.position} cannot start the "
                                 f"records at {first}")
        elif first:
            raise ValueError(f"records from index {first} on need the snapshot covering those before")
        design, effects = DESIGNS[config.mode].recover(config, Replica(config), records, base=base, first=first)
        node = cls(config, design, position=first + len(records), base=first)
        node.checkpoints.note_stored(records, first, voidable=config.mode is Mode.UNIT)
        node._note(effects)
        return node, effects

    # ------------------------------------------------------------------ driving
    def handle(self, message: Message | Any, now: int) -> list[Effect]:
        """One message as a step of its own."""
        return self.handle_many([message], now)

    def handle_many(self, messages: Sequence[Message | Any], now: int) -> list[Effect]:
        """Messages that arrived together, handled as one step: the parts they propose to
        one log become one entry, and the step's effects are persisted before they leave.
        A checkpoint that falls due is asked for last, after the step's records."""
        refused = self._refuse_misfits(messages)
        if refused:
            messages = [msg for i, msg in enumerate(messages) if i not in refused]
        effects: list[Effect] = self.coalescer.split(self.design.handle_many(self.coalescer.merge(messages), now))
        if refused:
            effects[:0] = refused.values()
        if not self.checkpoints.enabled:
            return effects
        self._note(effects)
        design = self.design
        at = self.checkpoints.due(design.settled_heads(), design.damaged_positions(), design.superseded_positions())
        if at is not None:
            effects.append(Checkpoint(at, self.design.retain_from()))
        return effects

    def _refuse_misfits(self, messages: Sequence[Message | Any]) -> dict[int, Report]:
        """Peer messages that do not fit this node's configuration (`replication.peercheck`),
        by position, each with the report that says so: they are handled no further."""
        refused: dict[int, Report] = {}
        why_refused = self.peer_check.why_refused
        for i, msg in enumerate(messages):
            why = why_refused(msg)
            if why is not None:
                refused[i] = Report("peer_message_refused", {"region": self.me, "from": getattr(msg, "sender", None),
                                                             "message": type(msg).__name__, "why": why})
        return refused

    def _note(self, effects: list[Effect]) -> None:
        self.checkpoints.note(effects, voidable=self.cfg.mode is Mode.UNIT)

    # ------------------------------------------------------------------ checkpoints
    def export(self, position: int, chain: bytes, retain_from: Sequence[int] = ()) -> NodeSnapshot:
        """This node's state as a snapshot at store `position` (chain value `chain`): meant
        for a node just recovered from the records before `position` (`region.checkpoint`),
        which holds nothing volatile."""
        shipping, raft = None, []
        state = self.design.export_state(retain_from)
        if self.cfg.mode is Mode.QUORUM:
            raft = state
        else:
            shipping = state
        return NodeSnapshot(position, chain, design_label(self.cfg.mode, self.cfg.ship, self.cfg.quorum_groups),
                            self.cfg.n_regions, self.engine.snapshot(), self.replica.last_ts,
                            list(self.replica.anomalies), shipping, raft)

    def checkpointed(self, position: int, heads: Sequence[int]) -> None:
        """The runtime made the checkpoint at `position` durable (its snapshot covers `heads`)."""
        self.checkpoints.done(position)
        self.design.on_checkpointed(position, heads)

    def checkpoint_failed(self, position: int) -> None:
        """The checkpoint at `position` could not be taken; the next one waits an interval."""
        self.checkpoints.failed(position)

    def rebuild(self, base: NodeSnapshot) -> None:
        """After a `LoadBase` effect: the books from the store's snapshot `base`, then what
        was applied since (without what a fork voided)."""
        base.check_fits(self.cfg)
        self.design.rebuild(base)

    # ------------------------------------------------------------------ what runtimes read
    @property
    def engine(self) -> Any:
        return self.replica.engine

    @property
    def anomalies(self) -> list[Anomaly]:
        return self.replica.anomalies

    @property
    def heads(self) -> list[int]:
        """Per origin (log shipping) or per Raft group (quorum): how far this replica applied."""
        return self.design.applied_heads  # type: ignore[no-any-return]

    @property
    def catching_up(self) -> Any:
        return self.design.catching_up

    @property
    def lease_until(self) -> int:
        return int(self.design.lease_until)

    @property
    def credit_legs_owed(self) -> int:
        """Cross-unit debit legs applied here whose credit leg is not (yet): money in transit."""
        return int(self.design.credit_legs_owed)

    def suspects(self, peer: int, now: int) -> bool:
        return bool(self.design.suspects(peer, now))

    def writer_of(self, unit: int) -> int | None:
        """The region that writes the unit's rows as this node sees it: the unit's home
        (unit), its Raft leader (quorum, None if unknown), or this region (async, escrow)."""
        return self.design.writer_of(unit)  # type: ignore[no-any-return]

    def invariants(self) -> None:
        """Raise `InvariantViolation` naming the first invariant this node's state breaks."""
        self.replica.invariants()
        self.design.invariants()

    def status(self) -> dict[str, Any]:
        d = self.design
        routing = getattr(d, "routing", None)
        n_units = self.cfg.amap.n_units
        return {
            "region": self.me,
            "mode": str(self.cfg.mode),
            "routing_version": routing.version if routing is not None else 1,
            "homes": list(routing.homes) if routing is not None else [],
            "heads": self.heads,
            "lease_until": self.lease_until,
            "catching_up": sorted(self.catching_up),
            "outbox": self.credit_legs_owed,
            "anomalies": len(self.anomalies),
            "writers": [self.writer_of(u) for u in range(n_units)],
        }


__all__ = ["DESIGNS", "Design", "RegionNode"]

"""When a region checkpoints, and up to which record: the policy inside the sans-IO node.

A checkpoint replaces the store's records before a position by a snapshot of the state they
give (`replication.snapshot`, built by `region.checkpoint`). The node decides *when* (every
`checkpoint_every` records or `checkpoint_bytes` bytes written since the last one) and *up
to where*: only over records no later event can take back.

In the `unit` design a failover voids the old home's entries past its fork point, and every
replica that applied them rebuilds its books without them (`replication.failover`). Such an
entry must never end up inside a snapshot: rebuilding starts from the snapshot. An entry of
origin `o` is *settled* once enough regions other than `o` vouch for it that every majority
which could demote `o` holds one of them (`LogShipping.settled_heads`): its fork point is
then at or past the entry. A checkpoint covers records up to the first unsettled entry. The
other designs never void an entry (no forks in `async`/`escrow`; Raft never truncates a
committed entry and recovery replays an uncommitted one as Raft does), so every record is
settled as soon as it is written. A record found damaged is never covered either: it is
repaired in place, at its index; unless no recovery would read it (quorum mode: its entry is
behind its log's durable snapshot) and no copy of it may be left anywhere, when a checkpoint
covering it is due at once, as that is what makes the store whole again.

The node counts the records it writes (`Persist` effects, one store record each, in order),
so it knows store positions without asking the store; it asks for one checkpoint at a time
(`Checkpoint` effect) and hears back from its runtime (`RegionNode.checkpointed` /
`checkpoint_failed`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from replication.log import Entry
from replication.messages import Effect, Persist

ENTRY_BYTES = 96
ROW_BYTES = 128
RECORD_BYTES = 64
"""Sizes (bytes) the policy counts: an entry's header, each of its rows, any other record."""


class CheckpointPolicy:
    """Where the store stands (as this node wrote it) and when the next checkpoint is due."""

    def __init__(self, every: int, every_bytes: int, position: int, base: int) -> None:
        self.every = every
        self.every_bytes = every_bytes
        self.position = position  # the store's end: records this node (and its past lives) wrote
        self.base = base  # the store's snapshot covers the records before it
        self.floor = base  # the next checkpoint is due `every` records past this
        self.asked: int | None = None  # the position of the checkpoint in flight
        self.bytes = 0  # bytes of records written since the last checkpoint was asked for
        self.unsettled: deque[tuple[int, int, int]] = deque()  # (position, origin, seq) of voidable entries

    @property
    def enabled(self) -> bool:
        return bool(self.every or self.every_bytes)

    def note(self, effects: Iterable[Effect], voidable: bool) -> None:
        """Count the records a step (or a recovery) writes; remember entries a fork could void."""
        for e in effects:
            if type(e) is not Persist:
                continue
            rec = e.record
            if type(rec) is Entry:
                self.bytes += ENTRY_BYTES + ROW_BYTES * len(rec.rows)
                if voidable and self.enabled:
                    self.unsettled.append((self.position, rec.origin, rec.seq))
            else:
                self.bytes += RECORD_BYTES
            self.position += 1

    def note_stored(self, records: Sequence[object], first: int, voidable: bool) -> None:
        """After a restart: the store's records from `first` on, written by past lives. The
        entries among them a fork could void are unsettled until the settled heads say
        otherwise, as when they were written: a restarted region has heard no vouching yet,
        and a checkpoint taken at once would otherwise cover its own unacknowledged entries."""
        if voidable and self.enabled:
            self.unsettled.extend((i, rec.origin, rec.seq) for i, rec in enumerate(records, first)
                                  if type(rec) is Entry)

    def due(self, settled: Sequence[int] | None, damaged: Iterable[int],
            superseded: Sequence[int] = ()) -> int | None:
        """The position to checkpoint at now (and it is then in flight), or None.

        `settled[o]`: origin o's entries up to it can no longer be voided (None: none can be);
        `damaged`: positions of records waiting for a repair; `superseded`: positions of
        damaged records a checkpoint may drop (and should, now)."""
        if not self.enabled or self.asked is not None:
            return None
        q = self.unsettled
        if settled is None:
            q.clear()
        else:
            while q and q[0][2] <= settled[q[0][1]]:
                q.popleft()
        upto = min([q[0][0] if q else self.position, *damaged])
        covered = upto - self.floor
        if covered <= 0:
            return None
        drop_now = bool(superseded) and max(superseded) < upto
        if drop_now or (self.every and covered >= self.every) or (self.every_bytes and self.bytes >= self.every_bytes):
            self.asked = upto
            self.bytes = 0
            return upto
        return None

    def done(self, position: int) -> None:
        """The checkpoint at `position` is durable: the store's records before it are gone."""
        self.asked = None
        self.base = max(self.base, position)
        self.floor = max(self.floor, position)

    def failed(self, position: int) -> None:
        """It could not be taken: the next attempt waits for another interval past it."""
        self.asked = None
        self.floor = max(self.floor, position)


__all__ = ["CheckpointPolicy"]

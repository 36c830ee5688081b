"""The region store: one declared interface for a region's disk, and the in-memory one.

A region's store holds its records (log entries, routing tables, Raft state) in index
order, linked by a hash chain: record *i*'s chain value is
``sha256(chain[i-1] || record_checksum(record i))`` from 32 zero bytes. An entry is
linked by the checksum its origin computed, so a damaged copy (bit rot, or `corrupt` in a
chaos run) keeps the chain: `scrub` finds it, a peer sends an intact copy with the same
checksum, `replace` writes it back. The node recovers from `records` after a crash
(`RegionNode.recover`).

A store also keeps at most one snapshot (`replication.snapshot.NodeSnapshot`): the region's
state after the records before its `position`, with the chain value there. Saving one
(`save_snapshot`, a checkpoint: `region.checkpoint`) drops the records it covers: the store
then holds records `base` .. `end - 1` only, indices stay absolute, and the chain verifies
from the snapshot's value on, so the head is the one a store that never dropped anything
would have. Recovery is the snapshot plus the records after it.

`RegionStore` holds the chain logic; a store adds where records go (`pending`, `flush`,
`close`, and the snapshot's `load_snapshot` / `_save_snapshot`). `MemoryRegionStore` keeps
them in memory (what the deterministic simulator uses: the object *is* the disk, and it
survives the node's crash); `region.sqlite` and `region.cassandra` write them durably
through `region.buffered`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from replication.log import Entry, Record, record_checksum
from replication.snapshot import NodeSnapshot

GENESIS = bytes(32)
"""The chain value before the first record."""


def chain_next(head: bytes, payload: object) -> bytes:
    """The chain value of `payload` appended after a record whose chain value is `head`."""
    return hashlib.sha256(head + record_checksum(payload)).digest()


@dataclass
class StoreImage:
    """Everything a store holds, as objects: how a runtime hands a store to another process
    that rebuilds it in memory (`MemoryRegionStore.from_image`) for the checkers."""

    base: int
    base_chain: bytes
    snapshot: NodeSnapshot | None
    records: list[Record]


class RegionStore(ABC):
    """A region's records in a hash chain (see the module docstring); a store says where they live.

    `append`, `replace` and `corrupt` change `records` at once; they are durable once `flush`
    returns (every store has one: in memory it does nothing). `close` flushes and is idempotent.
    Indices are absolute: record `i` is `records[i - base]`; those before `base` are covered
    by the store's snapshot.
    """

    records: list[Record]
    head: bytes
    base: int
    base_chain: bytes

    def __init__(self, records: list[Record] | None = None, head: bytes | None = None, *, base: int = 0,
                 base_chain: bytes = GENESIS) -> None:
        self.records = [] if records is None else records
        self.base = base
        self.base_chain = base_chain
        self.head = head if head is not None else (self.records[-1].chain if self.records else base_chain)

    @property
    def end(self) -> int:
        """The index the next record gets (how many records were ever written)."""
        return self.base + len(self.records)

    def _at(self, index: int) -> Record:
        if not self.base <= index < self.end:
            kept = f"{self.base}..{self.end - 1}" if self.records else "none"
            raise ValueError(f"record {index}: not in the store (it holds records {kept}; those before "
                             f"{self.base} are in its snapshot)")
        return self.records[index - self.base]

    def chain_at(self, position: int) -> bytes:
        """The chain value after the records before `position` (what a snapshot there keeps)."""
        if position == self.base:
            return self.base_chain
        return self._at(position - 1).chain

    # -------------------------------------------------------------- the chain
    def append(self, payload: object) -> None:
        """Add a record at the end of the chain (an Entry, a RoutingTable or a Raft record)."""
        self.head = chain_next(self.head, payload)
        self.records.append(Record(payload, self.head))

    def replace(self, index: int, entry: Entry) -> None:
        """Write a repaired copy of entry `index` in place. The copy must be intact and carry
        the stored entry's checksum, so the chain is unchanged; anything else is refused
        (ValueError): it would break the chain, and the store would not reopen."""
        old = self._at(index).payload
        if not isinstance(old, Entry) or not isinstance(entry, Entry):
            raise ValueError(f"record {index}: only an entry can be replaced, by an entry")
        if entry.checksum != old.checksum or not entry.intact():
            raise ValueError(f"record {index}: a repair must be an intact copy with the stored checksum "
                             f"{old.checksum.hex()[:16]}, got {entry.checksum.hex()[:16]}")
        self._at(index).payload = entry

    def corrupt(self, index: int) -> None:
        """Chaos: flip bits of stored entry `index` without updating its checksum (bit rot)."""
        rec = self._at(index)
        e = rec.payload
        if not isinstance(e, Entry):
            raise ValueError(f"record {index} is not an entry: only entries are corrupted")
        rows = e.rows.copy()
        if len(rows):
            rows["amount_lo"][0] ^= np.uint64(0x5A5A)
        rec.payload = Entry(e.origin, e.seq, e.rv, e.created ^ 1, rows, e.grants, e.checksum, e.group)

    def entry_indices(self) -> list[int]:
        """The indices of the entries the store holds (what chaos may damage)."""
        return [i for i, r in enumerate(list(self.records), self.base) if isinstance(r.payload, Entry)]

    def scrub(self) -> list[tuple[int, int, int, int, bytes]]:
        """(index, origin, seq, group, stored checksum) of every entry whose checksum no longer
        matches: the checksum says which copy repairs it (`replace` takes only that one)."""
        return [
            (i, r.payload.origin, r.payload.seq, r.payload.group, r.payload.checksum)
            for i, r in enumerate(list(self.records), self.base)
            if isinstance(r.payload, Entry) and not r.payload.intact()
        ]

    def verify_chain(self) -> tuple[bool, int | None]:
        """Recompute the chain from the snapshot's value (genesis without one): (True, None),
        or (False, first bad record index)."""
        head = self.base_chain
        for i, r in enumerate(list(self.records), self.base):
            if isinstance(r.payload, Entry) and not r.payload.intact():
                return False, i
            head = chain_next(head, r.payload)
            if head != r.chain:
                return False, i
        return True, None

    # -------------------------------------------------------------- the snapshot
    def save_snapshot(self, snapshot: NodeSnapshot) -> None:
        """Keep `snapshot` (the state after the records before its position, with the chain
        value there) and drop the records it covers; durable when this returns. A snapshot
        that does not fit the store (its position outside the records, another chain value)
        is refused with ValueError and changes nothing."""
        self._check_fits(snapshot)
        self._save_snapshot(snapshot)
        self._drop_before(snapshot)

    def _check_fits(self, snapshot: NodeSnapshot) -> None:
        p = snapshot.position
        if not self.base <= p <= self.end:
            raise ValueError(f"a snapshot at record {p} does not fit a store holding records {self.base}..{self.end}")
        if p == self.base and self.has_snapshot:
            raise ValueError(f"the store's snapshot already covers the records before {p}")
        if snapshot.chain != self.chain_at(p):
            raise ValueError(f"a snapshot at record {p} carries chain value {snapshot.chain.hex()[:16]}, the "
                             f"store's is {self.chain_at(p).hex()[:16]}")

    def _drop_before(self, snapshot: NodeSnapshot) -> None:
        del self.records[:snapshot.position - self.base]
        self.base, self.base_chain = snapshot.position, snapshot.chain

    @property
    @abstractmethod
    def has_snapshot(self) -> bool:
        """Whether the store keeps a snapshot (then records before `base` are gone)."""

    @abstractmethod
    def load_snapshot(self) -> NodeSnapshot | None:
        """The store's snapshot, checked (a durable store raises CorruptStoreError for one
        whose stored bytes are damaged: it is never loaded), or None."""

    @abstractmethod
    def _save_snapshot(self, snapshot: NodeSnapshot) -> None:
        """Make `snapshot` the store's, durably and all at once, and drop what it covers."""

    def image(self) -> StoreImage:
        return StoreImage(self.base, self.base_chain, self.load_snapshot(), list(self.records))

    # -------------------------------------------------------------- where records live
    @property
    @abstractmethod
    def pending(self) -> bool:
        """True while some change is not yet durable."""

    @abstractmethod
    def flush(self) -> None:
        """Make every change so far durable; when it returns, they survive a crash."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store (idempotent)."""


class MemoryRegionStore(RegionStore):
    """Records (and the snapshot) in memory: the store object is the disk (it outlives a
    simulated crash).

    What the deterministic simulator keeps a region's disk in; `pending` / `flush` /
    `close` have nothing to do here.
    """

    def __init__(self, records: list[Record] | None = None, head: bytes | None = None, *, base: int = 0,
                 base_chain: bytes = GENESIS, snapshot: NodeSnapshot | None = None) -> None:
        super().__init__(records, head, base=base, base_chain=base_chain)
        if (snapshot is None and base) or (snapshot is not None and snapshot.position != base):
            raise ValueError("a store's records start where its snapshot ends (and at 0 without one)")
        self._snapshot = snapshot

    @classmethod
    def from_image(cls, image: StoreImage) -> MemoryRegionStore:
        return cls(image.records, base=image.base, base_chain=image.base_chain, snapshot=image.snapshot)

    @property
    def has_snapshot(self) -> bool:
        return self._snapshot is not None

    def load_snapshot(self) -> NodeSnapshot | None:
        return self._snapshot

    def _save_snapshot(self, snapshot: NodeSnapshot) -> None:
        self._snapshot = snapshot

    @property
    def pending(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["GENESIS", "MemoryRegionStore", "RegionStore", "StoreImage", "chain_next"]

"""The region store: one declared interface for a region's disk, and the in-memory one.

A region's store holds its records (log entries, routing tables, Raft state) in index
order, linked by a hash chain: record *i*'s chain value is
``sha256(chain[i-1] || record_checksum(record i))`` from 32 zero bytes. An entry is
linked by the checksum its origin computed, so a damaged copy (bit rot, or `corrupt` in a
chaos run) keeps the chain: `scrub` finds it, a peer sends an intact copy with the same
checksum, `replace` writes it back. The node recovers from `records` after a crash
(`RegionNode.recover`).

`RegionStore` holds the chain logic; a store adds where records go (`pending`, `flush`,
`close`). `MemoryRegionStore` keeps them in memory (what the deterministic simulator uses:
the object *is* the disk, and it survives the node's crash); `region.sqlite` and
`region.cassandra` write them durably through `region.buffered`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np

from replication.log import Entry, Record, record_checksum

GENESIS = bytes(32)
"""The chain value before the first record."""


def chain_next(head: bytes, payload: object) -> bytes:
    """The chain value of `payload` appended after a record whose chain value is `head`."""
    return hashlib.sha256(head + record_checksum(payload)).digest()


class RegionStore(ABC):
    """A region's records in a hash chain (see the module docstring); a store says where they live.

    `append`, `replace` and `corrupt` change `records` at once; they are durable once `flush`
    returns (every store has one: in memory it does nothing). `close` flushes and is idempotent.
    """

    records: list[Record]
    head: bytes

    def __init__(self, records: list[Record] | None = None, head: bytes = GENESIS) -> None:
        self.records = [] if records is None else records
        self.head = head

    # -------------------------------------------------------------- the chain
    def append(self, payload: object) -> None:
        """Add a record at the end of the chain (an Entry, a RoutingTable or a Raft record)."""
        self.head = chain_next(self.head, payload)
        self.records.append(Record(payload, self.head))

    def replace(self, index: int, entry: Entry) -> None:
        """Write a repaired copy of entry `index` in place. The copy must be intact and carry
        the stored entry's checksum, so the chain is unchanged; anything else is refused
        (ValueError): it would break the chain, and the store would not reopen."""
        old = self.records[index].payload
        if not isinstance(old, Entry) or not isinstance(entry, Entry):
            raise ValueError(f"record {index}: only an entry can be replaced, by an entry")
        if entry.checksum != old.checksum or not entry.intact():
            raise ValueError(f"record {index}: a repair must be an intact copy with the stored checksum "
                             f"{old.checksum.hex()[:16]}, got {entry.checksum.hex()[:16]}")
        self.records[index].payload = entry

    def corrupt(self, index: int) -> None:
        """Chaos: flip bits of stored entry `index` without updating its checksum (bit rot)."""
        e = self.records[index].payload
        if not isinstance(e, Entry):
            raise ValueError(f"record {index} is not an entry: only entries are corrupted")
        rows = e.rows.copy()
        if len(rows):
            rows["amount_lo"][0] ^= np.uint64(0x5A5A)
        self.records[index].payload = Entry(e.origin, e.seq, e.rv, e.created ^ 1, rows, e.grants, e.checksum,
                                            e.group)

    def scrub(self) -> list[tuple[int, int, int, int]]:
        """(index, origin, seq, group) of every entry whose checksum no longer matches."""
        return [
            (i, r.payload.origin, r.payload.seq, r.payload.group)
            for i, r in enumerate(self.records)
            if isinstance(r.payload, Entry) and not r.payload.intact()
        ]

    def verify_chain(self) -> tuple[bool, int | None]:
        """Recompute the chain from genesis: (True, None), or (False, first bad record index)."""
        head = GENESIS
        for i, r in enumerate(self.records):
            if isinstance(r.payload, Entry) and not r.payload.intact():
                return False, i
            head = chain_next(head, r.payload)
            if head != r.chain:
                return False, i
        return True, None

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
    """Records in memory: the store object is the disk (it outlives a simulated crash).

    What the deterministic simulator keeps a region's disk in; `pending` / `flush` /
    `close` have nothing to do here.
    """

    @property
    def pending(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["GENESIS", "MemoryRegionStore", "RegionStore", "chain_next"]

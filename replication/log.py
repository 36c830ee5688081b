"""Log entries (what is shipped) and the durable store (what survives a crash).

An entry is one committed batch of one origin region, numbered by that origin's own
sequence; followers apply each origin's entries in order, exactly once. Every entry
carries a checksum computed once by its origin, so a store can tell a damaged record
from a good one, and the store's records form a hash chain (the audit chain).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

Grant = tuple[int, int, int]  # (account id, to region, amount): escrow share moved


@dataclass(slots=True)
class Entry:
    origin: int
    seq: int
    rv: int  # routing version it was written under
    created: int  # origin's clock (ns), for lag measurement
    rows: np.ndarray
    grants: tuple[Grant, ...] = ()
    checksum: bytes = b""
    group: int = 0  # quorum mode: the Raft log (unit) it belongs to; `seq` is its index there

    def compute_checksum(self) -> bytes:
        h = hashlib.sha256(struct.pack("<QQQQQ", self.origin, self.seq, self.rv, self.created, self.group))
        h.update(self.rows.tobytes())
        h.update(repr(self.grants).encode())
        return h.digest()

    def seal(self) -> Entry:
        self.checksum = self.compute_checksum()
        return self

    def intact(self) -> bool:
        return self.compute_checksum() == self.checksum


@dataclass(slots=True)
class Record:
    payload: object  # an Entry, a RoutingTable, or a Raft record (replication.raft.RAFT_RECORDS)
    chain: bytes  # sha256(previous chain || this record's checksum)


def record_checksum(payload: object) -> bytes:
    """What the hash chain links for a record: an entry's own checksum (computed once by its
    origin, so a damaged copy keeps the chain), else the sha256 of the record's repr."""
    if isinstance(payload, Entry):
        return payload.checksum
    return hashlib.sha256(repr(payload).encode()).digest()


@dataclass
class DurableStore:
    """A region's disk: append-only records in a hash chain. Survives crashes."""

    records: list[Record] = field(default_factory=list)
    head: bytes = bytes(32)

    def append(self, payload: object) -> None:
        self.head = hashlib.sha256(self.head + record_checksum(payload)).digest()
        self.records.append(Record(payload, self.head))

    def replace(self, index: int, payload: Entry) -> None:
        """Write a repaired copy in place (same checksum, so the chain is unchanged)."""
        self.records[index].payload = payload

    def corrupt(self, index: int) -> None:
        """Chaos: flip bits of a stored entry without updating its checksum."""
        rec = self.records[index]
        assert isinstance(rec.payload, Entry)
        e = rec.payload
        rows = e.rows.copy()
        if len(rows):
            rows["amount_lo"][0] ^= np.uint64(0x5A5A)
        bad = Entry(e.origin, e.seq, e.rv, e.created ^ 1, rows, e.grants, e.checksum, e.group)
        rec.payload = bad

    def scrub(self) -> list[tuple[int, int, int, int]]:
        """Indices and identities (origin, seq, group) of entries whose checksum no longer matches."""
        return [
            (i, r.payload.origin, r.payload.seq, r.payload.group)
            for i, r in enumerate(self.records)
            if isinstance(r.payload, Entry) and not r.payload.intact()
        ]

    def verify_chain(self) -> tuple[bool, int | None]:
        """Recompute the chain from genesis: (ok, first bad record index)."""
        head = bytes(32)
        for i, r in enumerate(self.records):
            if isinstance(r.payload, Entry) and not r.payload.intact():
                return False, i
            head = hashlib.sha256(head + record_checksum(r.payload)).digest()
            if head != r.chain:
                return False, i
        return True, None

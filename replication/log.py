"""Log entries (what is shipped) and the durable store (what survives a crash).

An entry is one committed batch of one origin region, numbered by that origin's own
sequence; followers apply each origin's entries in order, exactly once. Every entry
carries a checksum computed once by its origin, so a store can tell a damaged record
from a good one, and the store's records form a hash chain (the audit chain).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

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

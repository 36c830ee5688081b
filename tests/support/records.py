"""Sample records for codec and store tests: one of each kind, u128 fields at their extremes."""

from __future__ import annotations

import numpy as np

from cext.layout import M64, TRANSFER_DTYPE
from replication.log import Entry
from replication.raft import CommitMark, HardState, Snapshot
from replication.routing import RoutingTable

U128_EXTREMES = (0, 1 << 64, 1 << 127, (1 << 128) - 1)


def extreme_rows(n: int = 4) -> np.ndarray:
    """Transfer rows whose u128 fields take the extremes 0, 2^64, 2^127, 2^128-1."""
    rows = np.zeros(n, TRANSFER_DTYPE)
    for i in range(n):
        v = U128_EXTREMES[i % len(U128_EXTREMES)]
        for name in ("id", "debit_account_id", "credit_account_id", "amount", "pending_id", "user_data_128"):
            rows[f"{name}_lo"][i], rows[f"{name}_hi"][i] = v & M64, v >> 64
    rows["timestamp"] = M64
    rows["ledger"] = 0xFFFF_FFFF
    return rows


def entry(seq: int, *, rows: np.ndarray | None = None, group: int = 0, grants: tuple = ()) -> Entry:
    return Entry(2, seq, 3, 1_700_000_000_000_000_000 + seq, extreme_rows() if rows is None else rows,
                 grants, group=group).seal()


def every_record_kind() -> list[object]:
    """One of each record a region stores, at the extremes its fields allow."""
    table = RoutingTable.initial(6, 3).promote({0: 1, 3: 2}, {0: 17}).promote({1: 0}, {1: (1 << 64) - 1})
    return [
        table,
        entry(1),
        entry(2, rows=np.zeros(0, TRANSFER_DTYPE), grants=((U128_EXTREMES[3], 1, U128_EXTREMES[2]), (7, 0, 0))),
        HardState(5, None, 2),
        HardState(6, 1, 0),
        entry(1, group=3),
        CommitMark(1, 3),
        Snapshot(1, 6, b"\x00\xff engine snapshot bytes", group=3),
    ]


def same_payload(a: object, b: object) -> bool:
    """Equal records (an entry's rows compared as bytes, which is what its checksum covers)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Entry) and isinstance(b, Entry):
        return (a.rows.dtype == b.rows.dtype and a.rows.tobytes() == b.rows.tobytes()
                and (a.origin, a.seq, a.rv, a.created, a.grants, a.checksum, a.group)
                == (b.origin, b.seq, b.rv, b.created, b.grants, b.checksum, b.group))
    return a == b

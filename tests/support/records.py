"""Sample records for codec and store tests: one of each kind, u128 fields at their extremes."""

from __future__ import annotations

import numpy as np

from cext.layout import M64, TRANSFER_DTYPE
from replication.log import Entry
from replication.raft import CommitMark, HardState, Snapshot
from replication.routing import RoutingTable
from replication.snapshot import NodeSnapshot, ShippingState

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


def sample_snapshot(position: int, chain: bytes, engine: bytes = b"\x01engine\xff") -> NodeSnapshot:
    """A region snapshot at store `position` (chain value `chain`) whose engine is `engine`:
    what a store keeps and gives back (a store never looks inside the engine's bytes)."""
    shipping = ShippingState((3, 0, (1 << 63) - 1), 4, RoutingTable.initial(6, 3).promote({0: 1}, {0: 17}),
                             [entry(1), entry(2)], quota=(0, 5, (1 << 128) - 1), owed=(((1 << 128) - 1, 3),))
    return NodeSnapshot(position, chain, "async", 3, engine, 1_700_000_000_000_000_000, [(1, 2, 3, 4)], shipping)


def same_snapshot(a: NodeSnapshot | None, b: NodeSnapshot | None) -> bool:
    """Equal snapshots (retained entries compared as `same_payload` does)."""
    if a is None or b is None:
        return a is b
    sa, sb = a.shipping, b.shipping
    if (sa is None) != (sb is None):
        return False
    if sa is not None and sb is not None:
        if len(sa.retained) != len(sb.retained) or not all(
                same_payload(x, y) for x, y in zip(sa.retained, sb.retained, strict=True)):
            return False
        if (sa.heads, sa.next_seq, sa.routing, sa.quota, sa.owed) != (sb.heads, sb.next_seq, sb.routing, sb.quota,
                                                                      sb.owed):
            return False
    return ((a.position, a.chain, a.design, a.n_regions, a.engine, a.last_ts, [tuple(x) for x in a.anomalies])
            == (b.position, b.chain, b.design, b.n_regions, b.engine, b.last_ts, [tuple(x) for x in b.anomalies])
            and a.raft == b.raft)

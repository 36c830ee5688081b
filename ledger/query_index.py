"""Secondary indexes for TigerBeetle's `query_accounts` / `query_transfers`.

A query is the intersection of the non-zero fields of a `QueryFilter` (user_data_128,
user_data_64, user_data_32, ledger, code) within a timestamp range. Scanning every
transfer for it grows with the ledger, so each field has a posting list per value: the
slots of the rows that carry it, ascending. Rows are in timestamp order (a ledger stamps
them so, imports included), hence slots are too, and a time range is two binary searches.

A query takes the shortest posting list among its fields, cuts it to the time range, and
walks it in the asked direction in chunks, checking the other fields on those rows only,
until `limit` rows matched. Its cost is the length of that walk, not the ledger's size.

Indexes are built lazily, on the first query, and then follow the engine: rows appended
since are indexed at the next query; a rollback, a reload or another engine is detected
(see `RowCursor`) and answered by a rebuild. Zero values are not indexed (zero means "no
filter"), so fields a bank leaves unused cost nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ledger.types import QueryFilter

FIELDS = ("user_data_128", "user_data_64", "user_data_32", "ledger", "code")
CHUNK = 4096
"""Candidate rows checked per step of a walk: large enough to vectorise, small enough
that a query with an early match does not check far more rows than it returns."""


class RowCursor:
    """Where an index stands in one of an engine's append-only row arrays.

    Between two calls the rows only grow, except when a linked chain rolls back, a replica
    rewinds, or a reload swaps the engine: `advance` detects those (engine identity, count,
    and the id of the last row seen) and then asks for a rebuild from row 0.
    """

    def __init__(self, view: str) -> None:
        self.view = view
        self._engine: Any = None
        self._n = 0
        self._last_id = (0, 0)

    def advance(self, engine: Any) -> tuple[int, int, bool]:
        """(first new row, row count, whether the index must start over)."""
        rows = getattr(engine, self.view)
        n = len(rows)
        reset = (engine is not self._engine or n < self._n
                 or (self._n > 0 and _id_at(rows, self._n - 1) != self._last_id))
        start = 0 if reset else self._n
        if reset or n != self._n:
            self._engine, self._n = engine, n
            self._last_id = _id_at(rows, n - 1) if n else (0, 0)
        return start, n, reset


def _id_at(rows: np.ndarray, slot: int) -> tuple[int, int]:
    row = rows[slot]
    return int(row["id_lo"]), int(row["id_hi"])


class QueryIndex:
    """Posting lists over the accounts or the transfers of an engine (`view`)."""

    def __init__(self, view: str) -> None:
        assert view in ("accounts", "transfers")
        self.view = view
        self._cursor = RowCursor(view)
        self._postings: dict[str, dict[int, list[np.ndarray]]] = {name: {} for name in FIELDS}

    def search(self, engine: Any, query: QueryFilter, cap: int) -> np.ndarray:
        """Slots of the rows matching `query`, in answer order, at most min(limit, cap)."""
        self._catch_up(engine)
        rows = getattr(engine, self.view)
        limit = min(query.limit, cap)
        lo = _lower_bound(rows, query.timestamp_min) if query.timestamp_min else 0
        hi = _lower_bound(rows, query.timestamp_max + 1) if query.timestamp_max else len(rows)
        wanted = [(name, getattr(query, name)) for name in FIELDS if getattr(query, name)]
        if not wanted:
            window = np.arange(lo, max(lo, hi), dtype=np.int64)
            return (window[::-1] if query.reversed else window)[:limit]
        lists = [self._posting(name, value) for name, value in wanted]
        shortest = min(range(len(lists)), key=lambda k: len(lists[k]))
        base = lists[shortest]
        window = base[np.searchsorted(base, lo): np.searchsorted(base, hi)]
        if query.reversed:
            window = window[::-1]
        others = [w for k, w in enumerate(wanted) if k != shortest]
        if not others:
            return window[:limit]
        found: list[np.ndarray] = []
        count = 0
        for start in range(0, len(window), CHUNK):
            part = window[start:start + CHUNK]
            keep = np.ones(len(part), bool)
            for name, value in others:
                keep &= _matches(rows, part, name, value)
            part = part[keep]
            found.append(part[: limit - count])
            count += len(found[-1])
            if count >= limit:
                break
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    def _posting(self, name: str, value: int) -> np.ndarray:
        parts = self._postings[name].get(value)
        if not parts:
            return np.zeros(0, np.int64)
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]

    def _catch_up(self, engine: Any) -> None:
        start, n, reset = self._cursor.advance(engine)
        if reset:
            self._postings = {name: {} for name in FIELDS}
        if start == n:
            return
        new = getattr(engine, self.view)[start:n]
        slots = np.arange(start, n, dtype=np.int64)
        for name in FIELDS:
            postings = self._postings[name]
            for value, chunk in _groups(new, slots, name):
                postings.setdefault(value, []).append(chunk)


def _words(rows: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if name == "user_data_128":
        return rows["user_data_128_lo"], rows["user_data_128_hi"]
    return rows[name], None


def _groups(rows: np.ndarray, slots: np.ndarray, name: str) -> list[tuple[int, np.ndarray]]:
    """(value, ascending slots) for each non-zero value of field `name` in `rows`."""
    lo, hi = _words(rows, name)
    nonzero = lo != 0 if hi is None else (lo != 0) | (hi != 0)
    if not nonzero.any():
        return []
    lo, slots = lo[nonzero].astype(np.uint64), slots[nonzero]
    hi_ = hi[nonzero].astype(np.uint64) if hi is not None else np.zeros(len(lo), np.uint64)
    order = np.lexsort((slots, lo, hi_))
    lo, hi_, slots = lo[order], hi_[order], slots[order]
    cuts = np.flatnonzero((np.diff(lo) != 0) | (np.diff(hi_) != 0)) + 1
    starts = np.concatenate(([0], cuts))
    return [
        ((int(hi_[s]) << 64) | int(lo[s]), chunk)
        for s, chunk in zip(starts.tolist(), np.split(slots, cuts), strict=True)
    ]


def _matches(rows: np.ndarray, slots: np.ndarray, name: str, value: int) -> np.ndarray:
    lo, hi = _words(rows, name)
    keep = lo[slots] == (value & ((1 << 64) - 1))
    if hi is not None:
        keep &= hi[slots] == (value >> 64)
    return keep


def _lower_bound(rows: np.ndarray, timestamp: int) -> int:
    """The first slot whose timestamp is >= `timestamp` (rows are in timestamp order).

    A Python binary search on the strided column: numpy's searchsorted would first copy
    the whole column to make it contiguous, which is the scan this module avoids.
    """
    column = rows["timestamp"]
    lo, hi = 0, len(rows)
    while lo < hi:
        mid = (lo + hi) // 2
        if int(column[mid]) < timestamp:
            lo = mid + 1
        else:
            hi = mid
    return lo


__all__ = ["CHUNK", "FIELDS", "QueryIndex", "RowCursor"]

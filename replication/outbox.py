"""The credit legs a debit home owes, and which of them are due to be sent now.

A credit leg owed (`replication.unit`) waits for two things: its debit leg's entry to be
durable on a majority (`seq <= durable_seq`; seq 0: nothing to wait for) and, once sent,
`credit_resend_every` before it is sent again, until its credit leg comes back applied
(`settle`). Under load a home owes tens of thousands of legs at once (most of a region's
transfers are cross-unit), and handling them one Python object at a time — or scanning
them all on every tick, as the first version did — was a tenth of a Ray region's CPU at
100k transfers/s. So legs live in *batches*, as rows: the legs one entry owes, which share
their seq and, sent together, the instant they were sent. A batch waits on one of two heaps
keyed by what it waits for (its seq, or the instant it may be resent); a tick opens only the
batches that are due, and a batch once sent waits again as a whole. Per leg there is one dict
entry (to settle it) and one flag; the rest is array work per batch.

What `due` returns is exactly what a scan of every leg would: the legs that wait for
nothing, in the order they were first owed (the number `k` each leg keeps, even when owed
anew). A leg settled, or owed anew (it moves to the new batch), is switched off in its old
batch; a batch with no leg left is dropped when it surfaces.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import numpy as np


class _Batch:
    """Legs owed by one entry (or kept through a rebuild), with what they wait for."""

    __slots__ = ("alive", "k", "last", "n_alive", "rows", "seq", "tids")

    def __init__(self, seq: int, last: int, tids: Sequence[int], rows: np.ndarray, k: np.ndarray) -> None:
        self.seq, self.last, self.tids, self.rows, self.k = seq, last, tids, rows, k
        self.alive = np.ones(len(tids), bool)
        self.n_alive = len(tids)

    def drop(self, i: int) -> None:
        self.alive[i] = False
        self.n_alive -= 1


class CreditOutbox:
    """Credit legs owed (rows: a credit leg, or in quorum mode the debit leg it is built
    from), by debit leg id (u128)."""

    def __init__(self) -> None:
        self._where: dict[int, tuple[_Batch, int]] = {}  # debit leg id -> (its batch, its row there)
        self._gate: list[tuple[int, int, _Batch]] = []  # (seq, n, batch): waiting for durability
        self._timer: list[tuple[int, int, _Batch]] = []  # (may resend at, n, batch): sent, waiting
        self._next_k = 0
        self._next_n = 0  # orders batches of one key on a heap

    def __len__(self) -> int:
        return len(self._where)

    def __bool__(self) -> bool:
        return bool(self._where)

    def __contains__(self, tid: object) -> bool:
        return tid in self._where

    def __iter__(self) -> Iterator[int]:
        return iter(self._where)

    def owed(self) -> Iterator[tuple[int, int]]:
        """(debit leg id, seq) of every leg owed, in id order (what a snapshot keeps)."""
        return ((tid, b.seq) for tid, (b, _) in sorted(self._where.items(), key=lambda item: item[0]))

    def owe(self, seq: int, tids: Sequence[int], rows: np.ndarray) -> None:
        """Owe the legs `rows` of debit legs `tids` once entry `seq` is durable; a leg owed
        already is owed anew (not yet sent, in its first place)."""
        if not len(tids):
            return
        where = self._where
        k = np.empty(len(tids), np.int64)
        batch = _Batch(seq, 0, tids, rows, k)
        for i, tid in enumerate(tids):
            old = where.get(tid)
            if old is None:
                self._next_k += 1
                k[i] = self._next_k
            else:
                k[i] = old[0].k[old[1]]
                old[0].drop(old[1])
            where[tid] = (batch, i)
        self._push(self._gate, seq, batch)

    def settle(self, tid: int) -> None:
        """Its credit leg came back applied: owed no more."""
        old = self._where.pop(tid, None)
        if old is not None:
            old[0].drop(old[1])

    def replace(self, tids: Sequence[int], rows: np.ndarray) -> None:
        """Owe exactly these legs, in this order; a leg owed already keeps its seq, row and
        when it was last sent."""
        previous = self._where
        placed: dict[int, None] = {}  # the ids in the order given (a dict: first place kept)
        self._gate, self._timer = [], []
        groups: dict[tuple[int, int], list[tuple[int, int, np.ndarray]]] = {}  # (seq, last) -> legs
        for i, tid in enumerate(tids):
            if tid in placed:
                continue  # named twice: its first place
            placed[tid] = None
            self._next_k += 1
            old = previous.get(tid)
            b, j = old if old is not None else (None, 0)
            key = (b.seq, b.last) if b is not None else (0, 0)
            groups.setdefault(key, []).append((tid, self._next_k, rows[i:i + 1] if b is None else b.rows[j:j + 1]))
        where: dict[int, tuple[_Batch, int]] = {}
        for (seq, last), legs in groups.items():
            batch = _Batch(seq, last, [t for t, _, _ in legs], np.concatenate([r for _, _, r in legs]),
                           np.array([k for _, k, _ in legs], np.int64))
            where.update((tid, (batch, i)) for i, tid in enumerate(batch.tids))
            self._push(self._gate, 0, batch)  # re-examined on the next `due`
        self._where = {tid: where[tid] for tid in placed}  # in the order given

    def due(self, now: int, durable_seq: int, every: int) -> np.ndarray | None:
        """The rows of the legs due now, in the order first owed (None: none); each is
        marked sent at `now`."""
        ready: list[_Batch] = []
        for heap, bound in ((self._gate, durable_seq), (self._timer, now)):
            while heap and heap[0][0] <= bound:
                batch = heapq.heappop(heap)[2]
                if not batch.n_alive:
                    continue  # every leg settled or owed anew since
                if batch.seq and batch.seq > durable_seq:
                    self._push(self._gate, batch.seq, batch)
                elif batch.last and now - batch.last < every:
                    self._push(self._timer, batch.last + every, batch)
                else:
                    ready.append(batch)
        if not ready:
            return None
        rows = np.concatenate([b.rows[b.alive] for b in ready])
        k = np.concatenate([b.k[b.alive] for b in ready])
        for batch in ready:
            batch.last = now
            if now:
                self._push(self._timer, now + every, batch)
            else:  # sent at instant 0 reads as never sent: due again on the next tick
                self._push(self._gate, batch.seq, batch)
        return rows[np.argsort(k, kind="stable")]

    def _push(self, heap: list[tuple[int, int, _Batch]], key: int, batch: _Batch) -> None:
        self._next_n += 1
        heapq.heappush(heap, (key, self._next_n, batch))


__all__ = ["CreditOutbox"]

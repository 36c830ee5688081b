"""The credit legs a debit home owes, and which of them are due to be sent now.

A credit leg owed (`replication.unit`) waits for two things: its debit leg's entry to be
durable on a majority (`seq <= durable_seq`; seq 0: nothing to wait for) and, once sent,
`credit_resend_every` before it is sent again, until its credit leg comes back applied
(`settle`). Under load a home owes tens of thousands of legs at any moment, most of them
already sent and waiting, and scanning them all on every tick was about a tenth of a Ray
region's CPU at 100k transfers/s. So legs wait in *buckets* — the legs owed by one entry,
the legs sent at one instant — on two heaps keyed by what they wait for (an entry's seq, an
instant they may be resent), and a tick opens only the buckets that are due: one heap
operation per bucket, not per leg.

What `due` returns is exactly what a scan of every leg would: the legs that wait for
nothing, in the order they were first owed (a dict keeps that order; so does the number `k`
every leg carries). A leg settled or owed anew since it was put in a bucket is stale there
(it is no longer the dict's leg, or no longer in that bucket) and is skipped when the bucket
is opened; a leg a bucket was opened for too early (it now waits for the other thing) moves
to a bucket of its own kind.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

# A leg: [seq, credit leg row, last sent (0: never), k (first owed, in order), the bucket it waits in]
_SEQ, _ROW, _LAST, _K, _BUCKET = range(5)
Bucket = list[tuple[int, list[Any]]]  # (debit leg id, leg)


class CreditOutbox:
    """Credit legs owed, by debit leg id (u128)."""

    def __init__(self) -> None:
        self._legs: dict[int, list[Any]] = {}
        self._gate: list[tuple[int, int, Bucket]] = []  # (seq, n, bucket): waiting for durability
        self._timer: list[tuple[int, int, Bucket]] = []  # (may resend at, n, bucket): sent, waiting
        self._next_k = 0
        self._next_n = 0  # orders buckets of one key (never compare two lists)

    def __len__(self) -> int:
        return len(self._legs)

    def __bool__(self) -> bool:
        return bool(self._legs)

    def __contains__(self, tid: object) -> bool:
        return tid in self._legs

    def __iter__(self) -> Iterator[int]:
        return iter(self._legs)

    def owed(self) -> Iterator[tuple[int, int]]:
        """(debit leg id, seq) of every leg owed, in id order (what a snapshot keeps)."""
        return ((tid, int(leg[_SEQ])) for tid, leg in sorted(self._legs.items()))

    def owe(self, seq: int, legs: Iterable[tuple[int, Any]]) -> None:
        """Owe each (debit leg id, credit leg row) of `legs` once entry `seq` is durable; a leg
        owed already is owed anew (not yet sent, in its first place)."""
        bucket: Bucket = []
        known = self._legs
        for tid, row in legs:
            old = known.get(tid)
            leg = known[tid] = [seq, row, 0, old[_K] if old is not None else self._take_k(), bucket]
            bucket.append((tid, leg))
        if bucket:
            self._push(self._gate, seq, bucket)

    def settle(self, tid: int) -> None:
        """Its credit leg came back applied: owed no more."""
        self._legs.pop(tid, None)

    def replace(self, legs: Iterable[tuple[int, Any]]) -> None:
        """Owe exactly `legs` — (debit leg id, credit leg row) — in that order; a leg owed
        already keeps its seq, row and when it was last sent."""
        previous, self._legs, self._gate, self._timer = self._legs, {}, [], []
        bucket: Bucket = []  # every leg re-examined on the next `due`
        for tid, row in legs:
            leg = previous.get(tid) or [0, row, 0, 0, None]
            leg[_K], leg[_BUCKET] = self._take_k(), bucket
            self._legs[tid] = leg
            bucket.append((tid, leg))
        if bucket:
            self._push(self._gate, 0, bucket)

    def due(self, now: int, durable_seq: int, every: int) -> list[Any]:
        """The rows of the legs due now, in the order first owed; each is marked sent at `now`."""
        ready: Bucket = []  # the legs sent now: the bucket they then wait in
        known = self._legs
        for heap, bound in ((self._gate, durable_seq), (self._timer, now)):
            while heap and heap[0][0] <= bound:
                bucket = heapq.heappop(heap)[2]
                waiting: dict[tuple[bool, int], Bucket] = {}
                for tid, leg in bucket:
                    if leg[_BUCKET] is not bucket or known.get(tid) is not leg:
                        continue  # settled, owed anew, or moved to another bucket since
                    seq, last = leg[_SEQ], leg[_LAST]
                    if seq and seq > durable_seq:
                        waiting.setdefault((True, seq), []).append((tid, leg))
                    elif last and now - last < every:
                        waiting.setdefault((False, last + every), []).append((tid, leg))
                    else:
                        ready.append((tid, leg))
                for (gated, key), legs in waiting.items():
                    for _, leg in legs:
                        leg[_BUCKET] = legs
                    self._push(self._gate if gated else self._timer, key, legs)
        if not ready:
            return []
        ready.sort(key=lambda pair: pair[1][_K])
        for _, leg in ready:
            leg[_LAST], leg[_BUCKET] = now, ready
        if now:
            self._push(self._timer, now + every, ready)
        else:  # sent at instant 0 reads as never sent: due again on the next tick
            self._push(self._gate, 0, ready)
        return [leg[_ROW] for _, leg in ready]

    def _push(self, heap: list[tuple[int, int, Bucket]], key: int, bucket: Bucket) -> None:
        self._next_n += 1
        heapq.heappush(heap, (key, self._next_n, bucket))

    def _take_k(self) -> int:
        self._next_k += 1
        return self._next_k


__all__ = ["CreditOutbox"]

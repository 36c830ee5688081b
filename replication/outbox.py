"""The credit legs a debit home owes, and which of them are due to be sent now.

A credit leg owed (`replication.unit`) waits for two things: its debit leg's entry to be
durable on a majority (`seq <= durable_seq`; seq 0: nothing to wait for) and, once sent,
`credit_resend_every` before it is sent again, until its credit leg comes back applied
(`settle`). Under load a home owes tens of thousands of legs at any moment, most of them
already sent and waiting, and scanning them all on every tick was about a tenth of a Ray
region's CPU at 100k transfers/s. So each leg sits in one of two heaps, keyed by what it
waits for (its seq, or the instant it may be resent), and a tick pops only what is due.

What `due` returns is exactly what a scan of every leg would: the legs that wait for
nothing, in the order they were first owed (a dict keeps that order; so does the
insertion number `k` every leg carries). A heap entry whose leg was settled or owed anew
since it was pushed is stale (its ticket no longer matches) and is dropped when it surfaces.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

# A leg: [seq, credit leg row, last sent (0: never), k (first owed, in order), ticket]
_SEQ, _ROW, _LAST, _K, _TICKET = range(5)


class CreditOutbox:
    """Credit legs owed, by debit leg id (u128)."""

    def __init__(self) -> None:
        self._legs: dict[int, list[Any]] = {}
        self._gate: list[tuple[int, int, int, int]] = []  # (seq, k, ticket, tid): waiting for durability
        self._timer: list[tuple[int, int, int, int]] = []  # (may resend at, k, ticket, tid): sent, waiting
        self._next_k = 0
        self._next_ticket = 0

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

    def owe(self, tid: int, seq: int, row: Any) -> None:
        """Owe the credit leg `row` of debit leg `tid` once entry `seq` is durable (owed
        anew if it was: not yet sent, in its first place)."""
        leg = self._legs.get(tid)
        k = leg[_K] if leg is not None else self._take_k()
        leg = self._legs[tid] = [seq, row, 0, k, 0]
        self._push(self._gate, seq, tid, leg)

    def settle(self, tid: int) -> None:
        """Its credit leg came back applied: owed no more."""
        self._legs.pop(tid, None)

    def replace(self, legs: Iterable[tuple[int, Any]]) -> None:
        """Owe exactly `legs` — (debit leg id, credit leg row) — in that order; a leg owed
        already keeps its seq, row and when it was last sent."""
        previous, self._legs, self._gate, self._timer = self._legs, {}, [], []
        for tid, row in legs:
            leg = previous.get(tid) or [0, row, 0, 0, 0]
            leg[_K] = self._take_k()
            self._legs[tid] = leg
            self._push(self._gate, leg[_SEQ], tid, leg)  # re-examined on the next `due`

    def due(self, now: int, durable_seq: int, every: int) -> list[Any]:
        """The rows of the legs due now, in the order first owed; each is marked sent at `now`."""
        ready: list[tuple[int, int, list[Any]]] = []
        for heap, bound in ((self._gate, durable_seq), (self._timer, now)):
            while heap and heap[0][0] <= bound:
                _, _, ticket, tid = heapq.heappop(heap)
                leg = self._legs.get(tid)
                if leg is None or leg[_TICKET] != ticket:
                    continue  # settled, or owed anew since: its current entry is elsewhere
                seq, last = leg[_SEQ], leg[_LAST]
                if seq and seq > durable_seq:
                    self._push(self._gate, seq, tid, leg)
                elif last and now - last < every:
                    self._push(self._timer, last + every, tid, leg)
                else:
                    ready.append((leg[_K], tid, leg))
        ready.sort(key=lambda r: r[0])
        for _, tid, leg in ready:
            leg[_LAST] = now
            if now:
                self._push(self._timer, now + every, tid, leg)
            else:  # sent at instant 0 reads as never sent: due again on the next tick
                self._push(self._gate, leg[_SEQ], tid, leg)
        return [leg[_ROW] for _, _, leg in ready]

    def _push(self, heap: list[tuple[int, int, int, int]], key: int, tid: int, leg: list[Any]) -> None:
        """`leg` waits on `heap` until `key`; a fresh ticket makes its older entries stale."""
        self._next_ticket += 1
        leg[_TICKET] = self._next_ticket
        heapq.heappush(heap, (key, leg[_K], self._next_ticket, tid))

    def _take_k(self) -> int:
        self._next_k += 1
        return self._next_k


__all__ = ["CreditOutbox"]

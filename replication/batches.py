"""Client batches being answered, in parts, by whichever region writes each part.

A client batch may touch units written by several regions (unit homes, Raft leaders): its
rows go out in parts and come back at different times. The batch is answered once every
part is, with one result per row, the balance of each account read, and — for each row —
the region whose answer it is (the writer that committed it, or the region that refused
it), so a gateway can say which region wrote a transfer without reaching into the node.
Every design keeps its client batches here, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replication.messages import Effect, Reply
from replication.outcomes import UNAVAILABLE

BATCH_TTL = 30_000_000_000  # ns: a batch nobody answered in this long is forgotten (its client gave up)
MAX_OPEN = 10_000  # batches kept at most; the oldest go first


@dataclass
class OpenBatch:
    results: np.ndarray  # uint32 per row: UNAVAILABLE until a part answers it
    writers: np.ndarray  # int16 per row: the region whose answer it is
    balances: np.ndarray  # uint64 (n reads, BALANCE_WORDS): four u128 balances as (lo, hi) words
    parts: int  # parts still to answer (the opening part included)
    created: int


class ClientBatches:
    def __init__(self, me: int) -> None:
        self.me = me
        self.open: dict[int, OpenBatch] = {}

    def start(self, batch_id: int, n_rows: int, balances: np.ndarray, now: int) -> OpenBatch:
        """A batch arrives: every row UNAVAILABLE from here until a part says otherwise. The
        opening part is closed with `answer(batch_id)` once its parts are sent out."""
        b = OpenBatch(np.full(n_rows, UNAVAILABLE, np.uint32), np.full(n_rows, self.me, np.int16), balances, 1, now)
        self.open[batch_id] = b
        if len(self.open) > MAX_OPEN:
            del self.open[next(iter(self.open))]
        return b

    def expect(self, batch_id: int, parts: int) -> None:
        b = self.open.get(batch_id)
        if b is not None:
            b.parts += parts

    def answer(self, batch_id: int, out: list[Effect], rows: np.ndarray | None = None,
               results: np.ndarray | None = None, writer: int | None = None,
               reads: np.ndarray | None = None, balances: np.ndarray | None = None) -> None:
        """One part answered (rows `rows` got `results`, written or refused by `writer`;
        reads `reads` got `balances`); the batch's reply leaves with its last part."""
        b = self.open.get(batch_id)
        if b is None:
            return  # forgotten (expired), or answered already
        if rows is not None and results is not None:
            b.results[rows] = results
            b.writers[rows] = self.me if writer is None else writer
        if reads is not None and balances is not None:
            b.balances[reads] = balances
        b.parts -= 1
        if b.parts == 0:
            del self.open[batch_id]
            out.append(Reply(batch_id, b.results, b.balances, b.writers))

    def expire(self, now: int) -> None:
        for bid in [bid for bid, b in self.open.items() if now - b.created > BATCH_TTL]:
            del self.open[bid]


__all__ = ["ClientBatches", "OpenBatch"]

"""Client requests that arrive in one step, admitted as one batch.

A live region's step holds whatever arrived while the previous step's fsync ran: under load,
hundreds of one-transfer requests. Admitting each on its own ran the bank's rules, routing
and the engine once per request (about a hundred small numpy calls each), which cost a
gateway more CPU per payment than everything else it does. Merged, they run once per step:
one batching layer, at the node, where the step already is.

Merging never changes an answer. It is on only for designs that admit a batch row by row
(`Design.admits_row_by_row`: unit, quorum), and requests are merged only when no linked chain can cross
from one into the next (a request ending in an open chain, the engine's
LINKED_EVENT_CHAIN_OPEN, stays alone) and only when they read no balances (their answers
carry per-request reads); the engine applies a batch's rows in order, exactly as it would
apply the requests one after another in the same step; every rule of the bank is per row or
per chain. The merged request gets a batch id of its own (negative: client ids are
positive), and its reply is split back into one reply per request, each with its rows'
results and writers, whenever it comes (at once, or steps later for semi-sync and forwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ledger.types import TransferFlags
from replication.batches import MAX_OPEN
from replication.messages import ClientRequest, Effect, Reply

MAX_MERGED_ROWS = 8190
"""Rows in one merged request at most: TigerBeetle's batch size, the largest a client sends."""
_LINKED = int(TransferFlags.LINKED)


class Coalescer:
    """Merges a step's client requests (`merge`) and splits the merged replies (`split`)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._parts: dict[int, list[tuple[int, int]]] = {}  # merged id -> [(batch id, rows)]
        self._next = -1

    def merge(self, messages: Sequence[Any]) -> Sequence[Any]:
        """`messages` with each run of mergeable client requests replaced by one request."""
        if not self.enabled or sum(type(m) is ClientRequest for m in messages) < 2:
            return messages
        out: list[Any] = []
        run: list[ClientRequest] = []
        size = 0
        for m in messages:
            if type(m) is ClientRequest and _mergeable(m):
                if size + len(m.rows) > MAX_MERGED_ROWS:
                    self._flush(run, out)
                    run, size = [], 0
                run.append(m)
                size += len(m.rows)
                continue
            self._flush(run, out)
            run, size = [], 0
            out.append(m)
        self._flush(run, out)
        return out

    def _flush(self, run: list[ClientRequest], out: list[Any]) -> None:
        if len(run) < 2:
            out.extend(run)
            return
        merged = self._next
        self._next -= 1
        self._parts[merged] = [(m.batch_id, len(m.rows)) for m in run]
        if len(self._parts) > MAX_OPEN:  # as the node forgets unanswered batches, so does this
            del self._parts[next(iter(self._parts))]
        # Copied into one array rather than np.concatenate'd: concatenate promotes the
        # structured dtype once per input, which cost more than the copy itself.
        rows = np.empty(sum(len(m.rows) for m in run), run[0].rows.dtype)
        at = 0
        for m in run:
            rows[at:at + len(m.rows)] = m.rows
            at += len(m.rows)
        out.append(ClientRequest(merged, rows))

    def split(self, effects: list[Effect]) -> list[Effect]:
        """`effects` with each merged reply replaced by one reply per request, in order."""
        if not self._parts or not any(type(e) is Reply and e.batch_id in self._parts for e in effects):
            return effects
        out: list[Effect] = []
        for e in effects:
            if not isinstance(e, Reply) or (parts := self._parts.pop(e.batch_id, None)) is None:
                out.append(e)
                continue
            at = 0
            for batch_id, n in parts:
                writers = None if e.writers is None else e.writers[at:at + n]
                out.append(Reply(batch_id, e.results[at:at + n], e.balances, writers))  # no reads: empty
                at += n
        return out


def _mergeable(m: ClientRequest) -> bool:
    return len(m.rows) > 0 and not len(m.reads) and not int(m.rows["flags"][-1]) & _LINKED


__all__ = ["MAX_MERGED_ROWS", "Coalescer"]

"""The client book: what every simulated client does, whatever runs it.

Clients submit batches of operations at a region, get one result per row, and retry
*with the same transfer ids*: a row answered UNAVAILABLE is retried at the same region
after a short back-off; an attempt with no answer in time is retried at once, at the next
region for designs with a home or leader per unit (`unit`, `quorum`: the home may be the
one that died) and at the same one otherwise; after `max_attempts` an operation is given
up. OK and EXISTS acknowledge a transfer; any other ledger result completes it as failed.

The book is sans-IO: a runtime asks it for an attempt, delivers it however it delivers
things (an event heap, a Ray call), and hands back the reply or the timeout; the book says
what to send next. The deterministic and the Ray runtime therefore apply the very same
rules, and their histories mean the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from replication.outcomes import ACKNOWLEDGED, TIMEOUT, UNAVAILABLE
from simulator.workload import KIND_READ

OUT_NONE, OUT_OK, OUT_FAIL, OUT_TIMEOUT = range(4)
OUTCOMES = ("none", "ok", "fail", "timeout")
RETRY_BACKOFF_S = 0.1
"""Scenario seconds before rows answered UNAVAILABLE are tried again at the same region."""


@dataclass
class OpState:
    """Per-operation client state, columnar (one slot per operation of the book)."""

    status: np.ndarray
    attempts: np.ndarray
    last_attempt: np.ndarray
    result: np.ndarray
    outcome: np.ndarray
    complete_t: np.ndarray
    ok_count: np.ndarray
    served_by: np.ndarray

    FIELDS = ("status", "attempts", "last_attempt", "result", "outcome", "complete_t", "ok_count", "served_by")

    @classmethod
    def new(cls, n: int) -> OpState:
        return cls(np.zeros(n, np.uint8), np.zeros(n, np.int16), np.full(n, -1, np.int64),
                   np.zeros(n, np.int32), np.zeros(n, np.uint8), np.full(n, np.nan), np.zeros(n, np.int16),
                   np.full(n, -1, np.int16))

    def put(self, ix: np.ndarray, other: OpState) -> None:
        """Copy `other` (a book over the operations `ix`) into these slots."""
        for name in self.FIELDS:
            getattr(self, name)[ix] = getattr(other, name)


@dataclass(frozen=True)
class ClientRules:
    n_regions: int
    max_attempts: int
    homed: bool  # unit/quorum: an attempt with no answer goes to the next region


@dataclass(frozen=True)
class Attempt:
    """One submission of some of the book's operations to one region."""

    aid: int
    region: int
    transfers: np.ndarray  # book indices of the transfer rows, in row order
    reads: np.ndarray  # book indices of the reads, in read order
    rows: np.ndarray  # TRANSFER_DTYPE, one per transfer
    read_ids: np.ndarray  # uint64 account ids, one per read


class ClientBook:
    """A set of operations and the clients' rules over them (module docstring).

    `rows[i]` is the transfer row of operation `i` (unused for reads), `read_ids[i]` the
    account a read asks for. Times are scenario seconds.
    """

    def __init__(self, kind: np.ndarray, rows: np.ndarray, read_ids: np.ndarray, rules: ClientRules,
                 on_acked: Callable[[float, int], None] | None = None) -> None:
        self.kind = kind
        self.rows = rows
        self.read_ids = read_ids
        self.rules = rules
        self.st = OpState.new(len(kind))
        self.open: dict[int, Attempt] = {}
        self.next_aid = 1
        self.on_acked = on_acked

    def attempt(self, ops: np.ndarray, region: int) -> Attempt:
        aid = self.next_aid
        self.next_aid += 1
        self.st.attempts[ops] += 1
        self.st.last_attempt[ops] = aid
        is_read = self.kind[ops] == KIND_READ
        transfers, reads = ops[~is_read], ops[is_read]
        a = Attempt(aid, region, transfers, reads, self.rows[transfers], self.read_ids[reads].astype(np.uint64))
        self.open[aid] = a
        return a

    def reply(self, aid: int, results: np.ndarray, now_s: float) -> np.ndarray | None:
        """The region answered attempt `aid`: complete what it settled; the attempt is
        closed (a later timeout for it is void). Returns the operations to try again at
        the same region after `RETRY_BACKOFF_S` (None: the attempt was no longer open,
        e.g. it had timed out)."""
        a = self.open.pop(aid, None)
        if a is None:
            return None
        st, r = self.st, a.region
        codes = results.astype(np.int32)
        st.ok_count[a.transfers[codes == 0]] += 1
        pending = st.status[a.transfers] == 0
        unavailable = codes == UNAVAILABLE
        done = pending & ~unavailable
        self.complete(a.transfers[done], codes[done], r, now_s)
        retry = a.transfers[pending & unavailable]
        give_up = retry[st.attempts[retry] >= self.rules.max_attempts]
        self.complete(give_up, np.full(len(give_up), UNAVAILABLE, np.int32), r, now_s, OUT_FAIL)
        rd = a.reads[st.status[a.reads] == 0]
        self.complete(rd, np.zeros(len(rd), np.int32), r, now_s)
        return retry[st.attempts[retry] < self.rules.max_attempts]

    def timeout(self, aid: int, now_s: float) -> tuple[np.ndarray, int] | None:
        """No answer to attempt `aid` in time: give up what has no attempts left; the rest
        is to be submitted now, to the region returned."""
        a = self.open.pop(aid, None)
        if a is None:
            return None
        st, r = self.st, a.region
        ops = np.concatenate([a.transfers, a.reads])
        live = ops[(st.status[ops] == 0) & (st.last_attempt[ops] == aid)]
        if not len(live):
            return None
        out = live[st.attempts[live] >= self.rules.max_attempts]
        self.complete(out, np.full(len(out), TIMEOUT, np.int32), r, now_s, OUT_TIMEOUT)
        again = live[st.attempts[live] < self.rules.max_attempts]
        if not len(again):
            return None
        return again, (r + 1) % self.rules.n_regions if self.rules.homed else r

    def still_open(self, ops: np.ndarray) -> np.ndarray:
        """Which of `ops` are not settled yet (a back-off ends: retry only those)."""
        return ops[self.st.status[ops] == 0]

    def duplicate_reply(self, transfers: np.ndarray, results: np.ndarray) -> None:
        """A second answer to the same rows (the at-least-once test): count OKs only."""
        codes = results.astype(np.int32)
        self.st.ok_count[transfers[codes == 0]] += 1

    def complete(self, ix: np.ndarray, codes: np.ndarray, region: int, now_s: float,
                 outcome: int | None = None) -> None:
        if not len(ix):
            return
        st = self.st
        st.status[ix] = 1
        st.result[ix] = codes
        st.complete_t[ix] = now_s
        st.served_by[ix] = region
        if outcome is None:
            st.outcome[ix] = np.where(np.isin(codes, ACKNOWLEDGED), OUT_OK, OUT_FAIL)
        else:
            st.outcome[ix] = outcome
        if self.on_acked is not None:
            acked = int(((st.outcome[ix] == OUT_OK) & (self.kind[ix] != KIND_READ)).sum())
            if acked:
                self.on_acked(now_s, acked)

    def finish(self, now_s: float, region_of: np.ndarray) -> None:
        """The run is over: what is still unsettled timed out (at the region it was for)."""
        left = np.nonzero(self.st.status == 0)[0]
        for r in np.unique(region_of[left]).tolist():
            sel = left[region_of[left] == r]
            self.complete(sel, np.full(len(sel), TIMEOUT, np.int32), int(r), now_s, OUT_TIMEOUT)


__all__ = ["OUTCOMES", "OUT_FAIL", "OUT_NONE", "OUT_OK", "OUT_TIMEOUT", "RETRY_BACKOFF_S", "Attempt", "ClientBook",
           "ClientRules", "OpState"]

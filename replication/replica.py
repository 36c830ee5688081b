"""The replica core every design builds on: one region's copy of the books.

Every design (log shipping, escrow, quorum) keeps the same thing underneath: the ledger
engine started from the same genesis on every replica, reads of balances, the routing of
a row to the unit it touches, and timestamps that only move forward. A design owns the
protocol (who may write, when to answer); the replica owns the books.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cext import Engine
from ledger.totals import unbalanced
from ledger.types import TransferFlags
from replication.accounts import genesis
from replication.config import Mode, NodeConfig, check
from replication.ids import CREDIT_BIT_HI
from replication.snapbuffer import give_back_of

if TYPE_CHECKING:
    from replication.snapshot import NodeSnapshot

_POST_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)

BALANCE_WORDS = 8
_BALANCE_COLUMNS = [f"{name}_{word}" for name in ("debits_pending", "debits_posted", "credits_pending",
                                                  "credits_posted") for word in ("lo", "hi")]

Anomaly = tuple[int, int, int, int]
"""(origin region or group, sequence, row in the entry, result code): a row a replica
rejected although its writer accepted it: replicas would diverge."""


class Replica:
    """The books of one region and what every design reads of them."""

    def __init__(self, config: NodeConfig) -> None:
        self.cfg = config
        self.amap = config.amap
        # The single writer's engine enforces no-overdraft in `unit` and `quorum`; in
        # `async` and `escrow` replicas must accept other regions' rows in any order, so the
        # guard is admission at the origin and the flag stays a logical property checkers test.
        self.accounts_genesis, self.deposits_genesis = genesis(
            config.amap, config.opening_balance, enforce_flags=config.mode in (Mode.UNIT, Mode.QUORUM))
        self.engine: Any = None
        self.anomalies: list[Anomaly] = []
        self.last_ts = 0  # the highest timestamp this region stamped (own writes)
        self.reset()

    def reset(self) -> None:
        """Back to genesis (a rebuild replays what is still valid on top)."""
        self.engine = Engine()
        self.engine.create_accounts(self.accounts_genesis, self.accounts_genesis["timestamp"].copy())
        self.engine.create_transfers(self.deposits_genesis, self.deposits_genesis["timestamp"].copy())
        self.anomalies = []

    def restore(self, base: NodeSnapshot) -> None:
        """The books of a snapshot: its engine and its anomalies (`last_ts` is the caller's).
        ValueError, and the books unchanged, if its engine is not an engine snapshot or not
        of this run's accounts (every replica creates them in one order from genesis).

        A snapshot a durable store read hands its engine's bytes over in a buffer that gives
        its pages back as the engine copies them (`replication.snapbuffer`): that snapshot's
        `engine` is then spent, and emptied here, so it cannot be restored from twice."""
        engine = Engine()
        give_back = give_back_of(base.engine)
        try:
            engine.restore(base.engine, give_back)
        finally:
            if give_back is not None:
                base.engine = b""
        acc, want = engine.accounts, self.accounts_genesis
        if len(acc) != len(want) or not (np.array_equal(acc["id_lo"], want["id_lo"])
                                         and np.array_equal(acc["id_hi"], want["id_hi"])):
            raise ValueError(f"snapshot at record {base.position}: its engine holds {len(acc)} accounts, "
                             f"not this run's {len(want)} in their order")
        self.engine = engine
        self.anomalies = [tuple(a) for a in base.anomalies]  # type: ignore[misc]

    def apply(self, rows: np.ndarray, origin: int, seq: int) -> np.ndarray:
        """Apply rows another writer (or this one, replaying) already accepted, with their
        own timestamps; a row this replica rejects is an anomaly, kept for the checkers."""
        res = self.engine.create_transfers(rows, rows["timestamp"].copy())
        if res.any():
            first = int(np.nonzero(res)[0][0])
            self.anomalies.append((origin, seq, first, int(res[first])))
        return res

    def stamp(self, n: int, now: int, floor: int = 0) -> np.ndarray:
        """`n` timestamps, strictly above every earlier one of this writer (and `floor`)."""
        base = max(now, self.last_ts + 1, floor + 1)
        self.last_ts = base + n - 1
        return np.arange(base, base + n, dtype=np.uint64)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """Per account id read: its four u128 balances as (low, high) words —
        debits_pending, debits_posted, credits_pending, credits_posted (`BALANCE_WORDS`)."""
        out = np.zeros((len(ids), BALANCE_WORDS), np.uint64)
        if len(ids):
            acc = self.engine.accounts
            for i, a in enumerate(ids.tolist()):
                s = self.engine.account_slot(int(a))
                if s >= 0:
                    out[i] = acc[s][_BALANCE_COLUMNS].tolist()
        return out

    def route_units(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(debit unit, credit unit, pending unknown) of each row.

        A post or void names its pending transfer and may leave its accounts zero (the
        engine takes them from the pending). It must still be written by the writer of the
        pending's unit: account 0 maps to unit 0, and a post/void written by another writer
        would touch accounts that writer does not own — a dependency on another log that
        followers do not order by. Rows whose pending this replica does not know and that
        name no debit account cannot be routed: the caller answers them
        PENDING_TRANSFER_NOT_FOUND (or waits for the pending, in quorum mode).
        """
        debit, debit_hi = rows["debit_account_id_lo"].copy(), rows["debit_account_id_hi"].copy()
        credit, credit_hi = rows["credit_account_id_lo"].copy(), rows["credit_account_id_hi"].copy()
        unknown = np.zeros(len(rows), bool)
        post_void = np.nonzero((rows["flags"] & _POST_VOID) != 0)[0]
        if len(post_void):
            tr = self.engine.transfers
            for i in post_void.tolist():
                pid = (int(rows["pending_id_hi"][i]) << 64) | int(rows["pending_id_lo"][i])
                slot = self.engine.transfer_slot(pid)
                if slot >= 0:
                    p = tr[slot]
                    debit[i], debit_hi[i] = p["debit_account_id_lo"], p["debit_account_id_hi"]
                    credit[i], credit_hi[i] = p["credit_account_id_lo"], p["credit_account_id_hi"]
                elif debit[i] == 0 and debit_hi[i] == 0:
                    unknown[i] = True
        return self.amap.units_of(debit, debit_hi), self.amap.units_of(credit, credit_hi), unknown

    def named_accounts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(debit names an account of the run, credit does): a row naming none of its accounts
        may go to any writer — every engine refuses it with the same code."""
        amap = self.amap
        return (amap.known(rows["debit_account_id_lo"], rows["debit_account_id_hi"]),
                amap.known(rows["credit_account_id_lo"], rows["credit_account_id_hi"]))

    def has_transfer(self, tid: int) -> bool:
        return bool(self.engine.transfer_slot(tid) >= 0)

    def transfer_slots(self, rows: np.ndarray, *, credit_legs: bool = False) -> np.ndarray:
        """The rows of `rows`' ids in these books, -1 where absent (one engine call for them
        all); with `credit_legs`, of the ids of their credit legs (the credit bit set)."""
        hi = rows["id_hi"] | np.uint64(CREDIT_BIT_HI) if credit_legs else rows["id_hi"]
        return self.engine.transfer_slots(rows["id_lo"], hi)  # type: ignore[no-any-return]

    def have_transfers(self, rows: np.ndarray) -> np.ndarray:
        """Which rows' ids these books already hold (u128 ids)."""
        return self.transfer_slots(rows) >= 0

    def invariants(self) -> None:
        """The books balance on this replica, per ledger (money in transit included: the
        transit accounts are ordinary accounts), and a single-writer design's replica has
        rejected nothing its writers accepted."""
        bad = unbalanced(self.engine.accounts)
        check(not bad, "conservation: debits == credits per ledger", bad)
        if self.cfg.mode in (Mode.UNIT, Mode.QUORUM):
            check(not self.anomalies, "single writer: replicas apply what the writer accepted", self.anomalies[:3])


def no_balances(n: int) -> np.ndarray:
    """What a read that could not be served answers (no books were read)."""
    return np.zeros((n, BALANCE_WORDS), np.uint64)


__all__ = ["BALANCE_WORDS", "Anomaly", "Replica", "no_balances"]

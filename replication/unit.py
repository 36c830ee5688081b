"""The `unit` design: each unit has one home region that alone writes its accounts.

Accounts belong to units; unit *u* starts homed at region *u mod R*. A region that is
not a row's home forwards it there (`Forward`); the home's engine enforces the
no-overdraft flags, because it is the single writer. With `ship = semi-sync` the home
answers once the entry is stored in a majority of regions (RPO 0 with one region lost).

A transfer between two units is two engine transfers: the debit leg `T` (customer to the
debit unit's transit account, written by the debit home) and the credit leg
`T | 2^127` (the credit unit's transit account to the beneficiary, written by the credit
home). The debit home keeps an *outbox* of credit legs it owes, derived from its replica,
and re-sends them every `credit_resend_every` to the credit unit's current home until the
credit leg comes back through replication. A credit leg is released only once its debit
leg is stored on a majority, so a failover can never keep a credit whose debit was lost.
Failover itself (leases, votes, fork points) is `replication.failover`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.layout import TRANSFER_DTYPE
from ledger.types import CreateTransferResult, TransferFlags
from replication.accounts import (
    TRANSIT_BASE,
    as_debit_legs,
    credit_leg,
    credit_legs,
    is_debit_leg,
    owed_debit_legs,
)
from replication.admission import fail_chains, writer_units
from replication.config import NodeConfig, check
from replication.failover import LeaseFailover
from replication.ids import CREDIT_BIT, CREDIT_BIT_HI
from replication.ids import ids_of as transfer_ids
from replication.log import Entry
from replication.messages import CreditLegs, Effect, Send
from replication.outbox import CreditOutbox
from replication.outcomes import CROSS_UNIT_TWO_PHASE, ID_MUST_NAME_ITS_UNIT, UNAVAILABLE
from replication.replica import Replica
from replication.snapshot import ShippingState

_PENDING_NOT_FOUND = int(CreateTransferResult.PENDING_TRANSFER_NOT_FOUND)
_POST_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)


class UnitDesign(LeaseFailover):
    """Unit homes, forwarding, semi-sync answers and cross-unit credit legs."""

    admits_row_by_row = True  # see `replication.node.Design`

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        super().__init__(config, replica)
        self.outbox = CreditOutbox()

    def _admit_and_apply(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        """Rows whose id names a unit homed here (under a lease, caught up) go to the engine;
        cross-unit rows become debit legs, so every row touches one unit only. A new id must
        name the unit of its debit account (a post or void: of its pending): this home
        writes only its own units' books. An id this home already holds goes to the engine,
        which answers EXISTS or EXISTS_WITH_DIFFERENT_*, as TigerBeetle does."""
        results = np.full(len(rows), UNAVAILABLE, np.uint32)
        dunits, cunits, unknown = self.replica.route_units(rows)
        units = writer_units(rows, self.cfg.amap)
        legs = (rows["id_hi"] & CREDIT_BIT_HI) != 0  # our own credit legs: routed by their credit unit
        units[legs] = dunits[legs]
        new = ~self.replica.have_transfers(rows)
        named, _ = self.replica.named_accounts(rows)
        post_void = (rows["flags"] & _POST_VOID) != 0  # its accounts are its pending's (route_units)
        refused = np.zeros(len(rows), np.uint32)
        refused[new & ~unknown & (named | post_void) & (dunits != units)] = ID_MUST_NAME_ITS_UNIT
        refused[unknown & new] = _PENDING_NOT_FOUND
        refused = fail_chains(refused, rows)
        results[refused != 0] = refused[refused != 0]
        mine = (units >= 0) & (units < self.cfg.amap.n_units)
        ok = mine & self._writable_units(now)[np.where(mine, units, 0)] & (refused == 0)
        if not ok.any():
            return results, 0
        sub = rows[ok].copy()
        du = dunits[ok]
        cu = cunits[ok]
        split_refused = np.where(as_debit_legs(sub, du, cu, self.cfg.amap), CROSS_UNIT_TWO_PHASE, 0).astype(np.uint32)
        sub_res = fail_chains(split_refused, sub)
        go = sub_res == 0
        seq = 0
        if go.any():
            todo = sub[go]
            engine = self.replica.engine
            before = engine.n_transfers
            sub_res[go] = engine.create_transfers(todo, self.replica.stamp(len(todo), now))
            accepted = engine.transfers[before:].copy()
            if len(accepted):
                seq = self._append_own(accepted, (), now, out)
        results[ok] = sub_res
        return results, seq

    # ------------------------------------------------------------------ cross-unit credit legs
    def _on_own_entry(self, e: Entry) -> None:
        if len(e.rows):
            self._track_debit_legs(e.rows, e.seq)

    def _on_applied(self, e: Entry) -> None:
        if len(e.rows):
            self._track_debit_legs(e.rows, e.seq if e.origin == self.me else 0)

    def _track_debit_legs(self, rows: np.ndarray, seq: int) -> None:
        """Debit legs of units homed here owe a credit leg: keep it until it is seen applied."""
        is_leg = (rows["id_hi"] & CREDIT_BIT_HI) != 0
        if is_leg.any():
            for tid in transfer_ids(rows[is_leg]):
                self.outbox.settle(tid & ~CREDIT_BIT)
        debits = is_debit_leg(rows, self.cfg.amap.n_units)
        if not debits.any():
            return
        credit = rows["credit_account_id_lo"][debits]
        owed = rows[debits][self._homes[(credit - TRANSIT_BASE).astype(np.int64)] == self.me]
        owed = owed[self.replica.transfer_slots(owed, credit_legs=True) < 0]
        for tid, leg in zip(transfer_ids(owed), credit_legs(owed, self.cfg.amap), strict=True):
            self.outbox.owe(tid, seq, leg)

    def _rebuild_outbox(self) -> None:
        """After a promotion: what this home owes, derived from its replica (own debit legs
        keep their sequence number: they are released only once stored on a majority)."""
        owed = owed_debit_legs(self.replica.engine, self._homes == self.me)
        legs = credit_legs(owed, self.cfg.amap)
        self.outbox.replace(zip(transfer_ids(owed), legs, strict=True))

    _after_adopt = _rebuild_outbox
    _on_ready = _rebuild_outbox
    _after_rebuild = _rebuild_outbox

    def _export_extra(self) -> dict[str, Any]:
        """The credit legs owed, by debit leg id (their rows are rebuilt from the books)."""
        return {"owed": tuple(self.outbox.owed())}

    def _restore_extra(self, state: ShippingState) -> None:
        engine = self.replica.engine
        for tid, seq in state.owed:
            slot = engine.transfer_slot(tid)
            if slot < 0:
                raise ValueError(f"a snapshot owes the credit leg of {tid:#x}, whose debit leg its books lack")
            self.outbox.owe(tid, seq, credit_leg(engine.transfers[slot], self.cfg.amap))

    def _send_credit_legs(self, now: int, out: list[Effect]) -> None:
        if not self.outbox or self.rebuilding:  # books being rebuilt: what is owed is not known yet
            return
        legs = self.outbox.due(now, self.durable_seq, self.cfg.credit_resend_every)
        if not legs:
            return
        due = np.array(legs, TRANSFER_DTYPE)
        homes = self._homes[self.cfg.amap.units_of(due["credit_account_id_lo"], due["credit_account_id_hi"])]
        for home in np.unique(homes).tolist():
            rows = due[homes == home]
            if home == self.me:
                self._commit(rows, now, out)
            else:
                out.append(Send(home, CreditLegs(self.me, rows), 64 + 128 * len(rows)))

    def _on_credit_legs(self, m: CreditLegs, now: int, out: list[Effect]) -> None:
        self._commit(m.rows, now, out)

    # ------------------------------------------------------------------ timers
    def _on_timers(self, now: int, out: list[Effect]) -> None:
        self._chase_votes(now, out)
        self._maybe_promote(now, out)
        self._send_credit_legs(now, out)
        if self.catching_up:
            self._check_ready(now, out)

    # ------------------------------------------------------------------ invariants
    def invariants(self) -> None:
        """Every credit leg owed has its debit leg in the books and not its credit leg yet."""
        super().invariants()
        engine = self.replica.engine
        for tid in self.outbox:
            check(engine.transfer_slot(tid) >= 0, "outbox: a credit leg owed has its debit leg applied", tid)
            check(engine.transfer_slot(tid | CREDIT_BIT) < 0, "outbox: a credit leg applied is owed no more", tid)

    # ------------------------------------------------------------------ introspection
    def writer_of(self, unit: int) -> int | None:
        return int(self._homes[unit])

    @property
    def credit_legs_owed(self) -> int:
        return len(self.outbox)


UnitDesign.handlers = {**LeaseFailover.handlers, CreditLegs: "_on_credit_legs"}

__all__ = ["UnitDesign"]

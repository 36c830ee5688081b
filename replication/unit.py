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
from ledger.types import CreateTransferResult
from replication.accounts import CREDIT_BIT_HI, TRANSIT_BASE, as_debit_legs, credit_leg, is_debit_leg, owed_debit_legs
from replication.config import NodeConfig, Ship, check
from replication.failover import LeaseFailover
from replication.log import Entry
from replication.messages import ClientRequest, CreditLegs, Effect, Forward, ForwardReply, Send
from replication.outcomes import CROSS_UNIT_TWO_PHASE, UNAVAILABLE
from replication.replica import Replica
from replication.shipping import MAX_FORWARDS

_PENDING_NOT_FOUND = int(CreateTransferResult.PENDING_TRANSFER_NOT_FOUND)


class UnitDesign(LeaseFailover):
    """Unit homes, forwarding, semi-sync answers and cross-unit credit legs."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        super().__init__(config, replica)
        self.outbox: dict[int, list[Any]] = {}  # credit id lo -> [seq, row, last_sent]
        self.forwards: dict[int, tuple[int, np.ndarray, int]] = {}  # fwd id -> (batch, rows, home)
        self.fwd_next = 1

    # ------------------------------------------------------------------ client path
    def _on_client(self, m: ClientRequest, now: int, out: list[Effect]) -> None:
        rows = m.rows
        batch = self.batches.start(m.batch_id, len(rows), self.replica.read(m.reads), now)
        if len(rows):
            units, _, unknown = self.replica.route_units(rows)
            batch.results[unknown] = _PENDING_NOT_FOUND
            homes = self._homes[units]
            homes[unknown] = -1
            for h in np.unique(homes[~unknown]).tolist():
                idx = np.nonzero(homes == h)[0]
                self.batches.expect(m.batch_id, 1)
                if h == self.me:
                    self._commit_part(m.batch_id, idx, rows[idx], now, out)
                else:
                    fid = self.fwd_next
                    self.fwd_next += 1
                    self.forwards[fid] = (m.batch_id, idx, h)
                    out.append(Send(h, Forward(self.me, fid, rows[idx]), 64 + 128 * len(idx)))
        self.batches.answer(m.batch_id, out)

    def _on_forward(self, m: Forward, now: int, out: list[Effect]) -> None:
        results, seq = self._commit(m.rows, now, out)
        seq = self._durable_wait(results, seq)
        if seq and self.cfg.ship is Ship.SEMI_SYNC and seq > self.durable_seq:
            self.waiters.append((seq, "fwd", (m.sender, m.fwd_id, results)))
        else:
            out.append(Send(m.sender, ForwardReply(m.fwd_id, results), 64 + 4 * len(results)))

    def _release_waiter(self, kind: str, data: Any, out: list[Effect]) -> None:
        if kind == "part":
            super()._release_waiter(kind, data, out)
            return
        sender, fid, results = data
        out.append(Send(sender, ForwardReply(fid, results), 64 + 4 * len(results)))

    def _on_forward_reply(self, m: ForwardReply, now: int, out: list[Effect]) -> None:
        got = self.forwards.pop(m.fwd_id, None)
        if got is None:
            return
        batch_id, idx, home = got
        if len(m.results) == len(idx):  # a reply of another shape is not an answer to this forward
            self.batches.answer(batch_id, out, idx, m.results, home)

    def _admit_and_apply(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        """Rows of units homed here (under a lease, caught up) go to the engine; cross-unit
        rows become debit legs, so every row touches one unit only."""
        results = np.full(len(rows), UNAVAILABLE, np.uint32)
        dunits, cunits, unknown = self.replica.route_units(rows)
        results[unknown] = _PENDING_NOT_FOUND
        ok = self._writable_units(now)[dunits] & ~unknown
        if not ok.any():
            return results, 0
        sub = rows[ok].copy()
        du = dunits[ok]
        cu = cunits[ok]
        go = ~as_debit_legs(sub, du, cu, self.cfg.amap)
        sub_res = np.full(len(sub), CROSS_UNIT_TWO_PHASE, np.uint32)
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
            for i in rows["id_lo"][is_leg].tolist():
                self.outbox.pop(i, None)
        debits = is_debit_leg(rows, self.cfg.amap.n_units)
        if not debits.any():
            return
        credit = rows["credit_account_id_lo"][debits]
        mine = self._homes[(credit - TRANSIT_BASE).astype(np.int64)] == self.me
        engine = self.replica.engine
        for row in rows[debits][mine]:
            tid = int(row["id_lo"])
            if engine.transfer_slot((int(CREDIT_BIT_HI) << 64) | tid) >= 0:
                continue
            self.outbox[tid] = [seq, credit_leg(row, self.cfg.amap), 0]

    def _rebuild_outbox(self) -> None:
        """After a promotion: what this home owes, derived from its replica (own debit legs
        keep their sequence number: they are released only once stored on a majority)."""
        previous = self.outbox
        self.outbox = {}
        for row in owed_debit_legs(self.replica.engine, self._homes == self.me):
            tid = int(row["id_lo"])
            self.outbox[tid] = previous.get(tid) or [0, credit_leg(row, self.cfg.amap), 0]

    _after_adopt = _rebuild_outbox
    _on_ready = _rebuild_outbox

    def _send_credit_legs(self, now: int, out: list[Effect]) -> None:
        if not self.outbox:
            return
        due: dict[int, list[Any]] = {}
        for item in self.outbox.values():
            seq, row, last = item
            if (seq and seq > self.durable_seq) or (last and now - last < self.cfg.credit_resend_every):
                continue
            item[2] = now
            unit = self.cfg.amap.unit_of(int(row["credit_account_id_lo"]))
            due.setdefault(int(self._homes[unit]), []).append(row)
        for home, legs in sorted(due.items()):
            rows = np.array(legs, TRANSFER_DTYPE)
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
        if len(self.forwards) > MAX_FORWARDS:
            for fid in sorted(self.forwards)[: len(self.forwards) - MAX_FORWARDS]:
                del self.forwards[fid]

    # ------------------------------------------------------------------ invariants
    def invariants(self) -> None:
        """Every credit leg owed has its debit leg in the books and not its credit leg yet."""
        super().invariants()
        engine = self.replica.engine
        for tid in self.outbox:
            check(engine.transfer_slot(tid) >= 0, "outbox: a credit leg owed has its debit leg applied", tid)
            check(engine.transfer_slot((int(CREDIT_BIT_HI) << 64) | tid) < 0,
                  "outbox: a credit leg applied is owed no more", tid)

    # ------------------------------------------------------------------ introspection
    def writer_of(self, unit: int) -> int | None:
        return int(self._homes[unit])

    @property
    def credit_legs_owed(self) -> int:
        return len(self.outbox)


UnitDesign.handlers = {
    **LeaseFailover.handlers,
    Forward: "_on_forward",
    ForwardReply: "_on_forward_reply",
    CreditLegs: "_on_credit_legs",
}

__all__ = ["UnitDesign"]

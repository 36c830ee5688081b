"""The `async` and `escrow` designs: any region accepts any write, admitted locally.

Both write both legs of a cross-unit transfer into one entry of the accepting region's
log (no unit home orders anything) and ship it afterwards. They differ only in what a
region may debit without asking anyone:

* `async` — the balance as *this* replica sees it. Two regions can both accept a debit
  against the same money: the overdraft is real and shows in the final books (the
  partition scenario shows it, the checker reports it; this design does not promise it).
* `escrow` — the region's *share* of the balance. Shares start as an even split of the
  opening balance, grow with the credits a region applies, and move between regions as
  grants written into the granting region's log (durable, shipped and applied exactly
  once like any entry). The shares never sum to more than the balance, so no partition
  can cause an overdraft. A region short of share rejects (EXCEEDS_CREDITS) and asks its
  peers (`QuotaRequest`); a peer grants up to half of its own share.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.layout import TRANSFER_DTYPE, join
from ledger.types import CreateTransferResult, TransferFlags
from replication.accounts import TRANSIT_BASE
from replication.admission import DEFENCES, fail_chains
from replication.config import NodeConfig
from replication.ids import CREDIT_BIT_HI, ids_of
from replication.log import Entry
from replication.messages import Effect, QuotaRequest, Send
from replication.replica import Replica
from replication.shipping import LogShipping
from replication.snapshot import ShippingState

_TWO_PHASE = int(TransferFlags.PENDING | TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_POST_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_LINKED = int(TransferFlags.LINKED)
_EXCEEDS = int(CreateTransferResult.EXCEEDS_CREDITS)


class AsyncDesign(LogShipping):
    """Admission against the local view of the balance; both legs in one entry."""

    def _admit_and_apply(self, rows: np.ndarray, now: int, out: list[Effect]) -> tuple[np.ndarray, int]:
        amap = self.cfg.amap
        n = len(rows)
        results = np.zeros(n, np.uint32)
        admitted, charged = self._admit(rows, results, now, out)
        # A row refused at admission fails its linked chain: a chain is applied whole or not at all.
        chained = fail_chains(results, rows)
        dropped = admitted & (chained != 0)
        if dropped.any():
            self._uncharge(rows[dropped & charged])
            admitted &= ~dropped
            charged &= ~dropped
            results[:] = chained
        if not admitted.any():
            return results, 0
        sub = rows[admitted]
        dlo, dhi = sub["debit_account_id_lo"], sub["debit_account_id_hi"]
        clo, chi = sub["credit_account_id_lo"], sub["credit_account_id_hi"]
        du, cu = amap.units_of(dlo, dhi), amap.units_of(clo, chi)
        cross = (cu != du) & ((sub["flags"] & _TWO_PHASE) == 0) & amap.known(dlo, dhi) & amap.known(clo, chi)
        n_sub = len(sub)
        pos = np.arange(n_sub) + np.concatenate(([0], np.cumsum(cross)[:-1])) if n_sub else np.zeros(0, int)
        batch = np.zeros(n_sub + int(cross.sum()), TRANSFER_DTYPE)
        batch[pos] = sub
        if cross.any():
            p1 = pos[cross]
            leg1 = batch[p1]
            leg2 = leg1.copy()
            leg1["user_data_128_lo"] = leg1["credit_account_id_lo"]
            leg1["credit_account_id_lo"] = TRANSIT_BASE + du[cross]
            leg1["flags"] |= _LINKED
            leg2["id_hi"] |= CREDIT_BIT_HI
            leg2["debit_account_id_lo"] = TRANSIT_BASE + cu[cross]
            leg2["user_data_128_lo"] = sub["debit_account_id_lo"][cross]
            batch[p1] = leg1
            batch[p1 + 1] = leg2
        engine = self.replica.engine
        before = engine.n_transfers
        res = engine.create_transfers(batch, self.replica.stamp(len(batch), now))
        client_res = res[pos].copy()
        if cross.any():
            p1 = pos[cross]
            linked_failed = client_res[cross] == CreateTransferResult.LINKED_EVENT_FAILED
            r2 = res[p1 + 1]
            client_res[np.nonzero(cross)[0][linked_failed]] = r2[linked_failed]
        results[admitted] = client_res
        accepted = engine.transfers[before:].copy()
        self._after_commit(sub[charged[admitted]], client_res[charged[admitted]], accepted)
        seq = self._append_own(accepted, (), now, out) if len(accepted) else 0
        return results, seq

    def _after_commit(self, charged: np.ndarray, results: np.ndarray, accepted: np.ndarray) -> None:
        """A hook: rows admitted against a charge, their results, and the rows applied."""

    def _uncharge(self, rows: np.ndarray) -> None:
        """A hook: rows charged at admission that will not be applied after all."""

    def _admit(self, rows: np.ndarray, results: np.ndarray, now: int,
               out: list[Effect]) -> tuple[np.ndarray, np.ndarray]:
        """Which rows this region may accept without asking anyone, and which of them were
        charged against what it may spend. Rejected rows get EXCEEDS_CREDITS."""
        n = len(rows)
        admitted = np.ones(n, bool)
        charged = np.zeros(n, bool)
        n_cust = self.cfg.amap.n_customers
        debit = ids_of(rows, "debit_account_id")  # u128 all the way: an id or amount above 2^64 is
        amount = ids_of(rows, "amount") if DEFENCES["u128"] else rows["amount_lo"].tolist()  # exactly itself
        flags = rows["flags"].tolist()
        held = self.replica.have_transfers(rows).tolist()
        spent: dict[int, int] = {}
        short: dict[int, int] = {}
        for i in range(n):
            a = debit[i]
            if a < 1 or a > n_cust or flags[i] & _POST_VOID:
                continue
            if held[i]:
                continue  # a retry: the engine answers EXISTS
            avail = self._available(a, spent)
            if avail is None:
                continue
            if amount[i] > avail:
                admitted[i] = False
                results[i] = _EXCEEDS
                short[a] = max(short.get(a, 0), amount[i] - max(avail, 0))
                continue
            charged[i] = True
            self._charge(a, amount[i], spent)
        if short:
            self._short_of(short, now, out)
        return admitted, charged

    def _available(self, account: int, spent: dict[int, int]) -> int | None:
        """What this region may still debit from `account` (None: let the engine decide)."""
        engine = self.replica.engine
        s = engine.account_slot(account)
        if s < 0:
            return None
        row = engine.accounts[s]
        avail = (join(row["credits_posted_lo"], row["credits_posted_hi"]) - join(row["debits_posted_lo"],
                 row["debits_posted_hi"]) - join(row["debits_pending_lo"], row["debits_pending_hi"]))
        return avail - spent.get(account, 0)

    def _charge(self, account: int, amount: int, spent: dict[int, int]) -> None:
        spent[account] = spent.get(account, 0) + amount

    def _short_of(self, short: dict[int, int], now: int, out: list[Effect]) -> None:
        """A hook: accounts this batch needed more of than this region may debit."""


class EscrowDesign(AsyncDesign):
    """Admission within this region's escrow share of each account (module docstring)."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        super().__init__(config, replica)
        self.quota = self._initial_quota()
        self.quota_asked: dict[int, int] = {}

    def _initial_quota(self) -> list[int]:
        """An even split of each opening balance; the remainder goes to the unit's home."""
        n = self.cfg.amap.n_customers
        r = self.cfg.n_regions
        base, rem = divmod(self.cfg.opening_balance, r)
        homes = np.asarray(self.routing.homes)[self.cfg.amap.customer_unit]
        q = [base + (rem if int(homes[a]) == self.me else 0) for a in range(n + 1)]
        q[0] = 0
        return q

    def _available(self, account: int, spent: dict[int, int]) -> int | None:
        return self.quota[account]

    def _export_extra(self) -> dict[str, Any]:
        return {"quota": tuple(self.quota)}

    def _restore_extra(self, state: ShippingState) -> None:
        if len(state.quota) != len(self.quota):
            raise ValueError(f"a snapshot holds escrow shares of {len(state.quota)} accounts, this run has "
                             f"{len(self.quota)}")
        self.quota = list(state.quota)

    def _charge(self, account: int, amount: int, spent: dict[int, int]) -> None:
        self.quota[account] -= amount

    def _short_of(self, short: dict[int, int], now: int, out: list[Effect]) -> None:
        for a, need in short.items():
            if now - self.quota_asked.get(a, -(1 << 62)) >= self.cfg.quota_retry_every:
                self.quota_asked[a] = now
                for p in self.peers:
                    out.append(Send(p, QuotaRequest(self.me, a, need)))

    def _after_commit(self, charged: np.ndarray, results: np.ndarray, accepted: np.ndarray) -> None:
        self._uncharge(charged[results != 0])
        self._escrow_credits(accepted)

    def _uncharge(self, rows: np.ndarray) -> None:
        """Charged rows that were not applied: their amount goes back to this region's share."""
        self._move_shares(rows, +1)

    def _escrow_debits(self, rows: np.ndarray) -> None:
        self._move_shares(rows, -1)

    def _move_shares(self, rows: np.ndarray, sign: int) -> None:
        n_cust = self.cfg.amap.n_customers
        for a, amt, f in zip(ids_of(rows, "debit_account_id"), ids_of(rows, "amount"), rows["flags"].tolist(),
                             strict=True):
            if 1 <= a <= n_cust and not f & _POST_VOID:
                self.quota[a] += sign * amt

    def _escrow_credits(self, rows: np.ndarray) -> None:
        """Money this region received (credits, posts, voids) becomes its share."""
        n_cust = self.cfg.amap.n_customers
        pending = int(TransferFlags.PENDING)
        void = int(TransferFlags.VOID_PENDING_TRANSFER)
        for d, c, amt, f in zip(ids_of(rows, "debit_account_id"), ids_of(rows, "credit_account_id"),
                                ids_of(rows, "amount"), rows["flags"].tolist(), strict=True):
            if f & void:
                if 1 <= d <= n_cust:
                    self.quota[d] += amt
            elif not f & pending and 1 <= c <= n_cust:
                self.quota[c] += amt

    def _on_applied(self, e: Entry) -> None:
        if len(e.rows) and e.origin == self.me:  # replay, or own entries pulled back
            self._escrow_debits(e.rows)
            self._escrow_credits(e.rows)
        for account, to, amount in e.grants:
            if to == self.me:
                self.quota[account] += amount
            elif e.origin == self.me:
                self.quota[account] -= amount

    def _on_quota_request(self, m: QuotaRequest, now: int, out: list[Effect]) -> None:
        if self.own_gap():
            return
        have = self.quota[m.account]
        give = min(m.need, (have + 1) // 2) if have > 0 else 0
        if give <= 0:
            return
        self.quota[m.account] -= give
        empty = np.zeros(0, TRANSFER_DTYPE)
        self._append_own(empty, ((m.account, m.sender, give),), now, out)


EscrowDesign.handlers = {**AsyncDesign.handlers, QuotaRequest: "_on_quota_request"}

__all__ = ["AsyncDesign", "EscrowDesign"]

"""The `Ledger` against a small, obviously-correct reference model (hypothesis.stateful).

The model knows only dicts and Python ints, and only the rules a bank teller would state:
money moves from debit to credit, limits hold, pending money is reserved until posted,
voided or expired, and an id means one transfer forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)

R = CreateTransferResult
LIMIT_DEBITS = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
LIMIT_CREDITS = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
ACCOUNT_IDS = st.integers(1, 5)
TRANSFER_IDS = st.integers(1, 40)


@dataclass
class ModelAccount:
    flags: int
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0


@dataclass
class ModelTransfer:
    dr: int
    cr: int
    amount: int
    flags: int
    pending_id: int = 0
    state: str = "done"  # "pending" | "posted" | "voided" for pending transfers


class LedgerVersusModel(RuleBasedStateMachine):
    @initialize(flags=st.lists(st.sampled_from([0, LIMIT_DEBITS, LIMIT_CREDITS]), min_size=5, max_size=5))
    def open_accounts(self, flags: list[int]) -> None:
        self.now = 10**18
        self.led = Ledger(clock=lambda: self.now)
        self.accounts = {i + 1: ModelAccount(f) for i, f in enumerate(flags)}
        self.transfers: dict[int, ModelTransfer] = {}
        self.led.create_accounts([Account(id=i, ledger=1, code=1, flags=a.flags) for i, a in self.accounts.items()])

    # -------------------------------------------------------------- the model's rules
    def expect_transfer(self, tid: int, dr: int, cr: int, amount: int, flags: int) -> R:
        if dr == cr:
            return R.ACCOUNTS_MUST_BE_DIFFERENT
        if tid in self.transfers:
            e = self.transfers[tid]
            if e.flags != flags:
                return R.EXISTS_WITH_DIFFERENT_FLAGS
            if e.dr != dr:
                return R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
            if e.cr != cr:
                return R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
            return R.EXISTS if e.amount == amount else R.EXISTS_WITH_DIFFERENT_AMOUNT
        d, c = self.accounts[dr], self.accounts[cr]
        if d.flags & LIMIT_DEBITS and d.dp + d.dpo + amount > d.cpo:
            return R.EXCEEDS_CREDITS
        if c.flags & LIMIT_CREDITS and c.cp + c.cpo + amount > c.dpo:
            return R.EXCEEDS_DEBITS
        return R.OK

    def apply_transfer(self, tid: int, dr: int, cr: int, amount: int, flags: int) -> None:
        d, c = self.accounts[dr], self.accounts[cr]
        if flags & TransferFlags.PENDING:
            d.dp += amount
            c.cp += amount
            self.transfers[tid] = ModelTransfer(dr, cr, amount, flags, state="pending")
        else:
            d.dpo += amount
            c.cpo += amount
            self.transfers[tid] = ModelTransfer(dr, cr, amount, flags)

    def expect_resolve(self, tid: int, pid: int, amount: int, post: bool) -> R:
        p = self.transfers.get(pid)
        if p is None:
            return R.PENDING_TRANSFER_NOT_FOUND
        if p.state == "done":
            return R.PENDING_TRANSFER_NOT_PENDING
        everything = amount == AMOUNT_MAX or (not post and amount == 0)
        resolved = p.amount if everything else amount
        if resolved > p.amount:
            return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and resolved < p.amount:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        if tid in self.transfers:
            e = self.transfers[tid]
            flags = TransferFlags.POST_PENDING_TRANSFER if post else TransferFlags.VOID_PENDING_TRANSFER
            if e.flags != flags:
                return R.EXISTS_WITH_DIFFERENT_FLAGS
            if e.pending_id != pid:
                return R.EXISTS_WITH_DIFFERENT_PENDING_ID
            return R.EXISTS if e.amount == resolved else R.EXISTS_WITH_DIFFERENT_AMOUNT
        if p.state == "posted":
            return R.PENDING_TRANSFER_ALREADY_POSTED
        if p.state == "voided":
            return R.PENDING_TRANSFER_ALREADY_VOIDED
        return R.OK

    # -------------------------------------------------------------- rules
    @rule(tid=TRANSFER_IDS, dr=ACCOUNT_IDS, cr=ACCOUNT_IDS, amount=st.integers(0, 300), pending=st.booleans())
    def transfer(self, tid: int, dr: int, cr: int, amount: int, pending: bool) -> None:
        flags = TransferFlags.PENDING if pending else 0
        expected = self.expect_transfer(tid, dr, cr, amount, flags)
        got = self.led.create_transfers([Transfer(id=tid, debit_account_id=dr, credit_account_id=cr,
                                                  amount=amount, ledger=1, code=1, flags=flags)])
        assert got == [expected]
        if expected == R.OK:
            self.apply_transfer(tid, dr, cr, amount, flags)

    @rule(tid=TRANSFER_IDS, pid=TRANSFER_IDS, amount=st.integers(0, 300) | st.just(AMOUNT_MAX),
          post=st.booleans())
    def resolve(self, tid: int, pid: int, amount: int, post: bool) -> None:
        if tid == pid:
            return
        flags = TransferFlags.POST_PENDING_TRANSFER if post else TransferFlags.VOID_PENDING_TRANSFER
        expected = self.expect_resolve(tid, pid, amount, post)
        got = self.led.create_transfers([Transfer(id=tid, pending_id=pid, amount=amount, flags=flags)])
        assert got == [expected]
        if expected == R.OK:
            p = self.transfers[pid]
            resolved = p.amount if amount == AMOUNT_MAX or (not post and amount == 0) else amount
            posted = resolved if post else 0
            d, c = self.accounts[p.dr], self.accounts[p.cr]
            d.dp -= p.amount
            c.cp -= p.amount
            d.dpo += posted
            c.cpo += posted
            p.state = "posted" if post else "voided"
            self.transfers[tid] = ModelTransfer(p.dr, p.cr, resolved, flags, pending_id=pid)

    @rule(a=st.tuples(TRANSFER_IDS, ACCOUNT_IDS, ACCOUNT_IDS, st.integers(0, 300)),
          b=st.tuples(TRANSFER_IDS, ACCOUNT_IDS, ACCOUNT_IDS, st.integers(0, 300)))
    def linked_pair(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> None:
        if a[0] == b[0]:
            return
        first = self.expect_transfer(a[0], a[1], a[2], a[3], TransferFlags.LINKED)
        snapshot = {k: ModelAccount(**vars(v)) for k, v in self.accounts.items()}
        second = R.LINKED_EVENT_FAILED
        if first == R.OK:
            self.apply_transfer(*a, flags=TransferFlags.LINKED)
            second = self.expect_transfer(b[0], b[1], b[2], b[3], 0)
        got = self.led.create_transfers([
            Transfer(id=a[0], debit_account_id=a[1], credit_account_id=a[2], amount=a[3], ledger=1, code=1,
                     flags=TransferFlags.LINKED),
            Transfer(id=b[0], debit_account_id=b[1], credit_account_id=b[2], amount=b[3], ledger=1, code=1),
        ])
        if first == R.OK and second == R.OK:
            assert got == [R.OK, R.OK]
            self.apply_transfer(*b, flags=0)
        else:
            assert got == ([first, R.LINKED_EVENT_FAILED] if first != R.OK else [R.LINKED_EVENT_FAILED, second])
            self.accounts = snapshot
            if first == R.OK:
                del self.transfers[a[0]]

    # -------------------------------------------------------------- invariants
    @invariant()
    def balances_match_the_model(self) -> None:
        for state in self.led.lookup_accounts(list(self.accounts)):
            m = self.accounts[state.id]
            assert (state.debits_pending, state.debits_posted, state.credits_pending, state.credits_posted) == (
                m.dp, m.dpo, m.cp, m.cpo
            )

    @invariant()
    def double_entry_holds(self) -> None:
        rows = self.led.lookup_accounts(list(self.accounts))
        assert sum(a.debits_posted for a in rows) == sum(a.credits_posted for a in rows)
        assert sum(a.debits_pending for a in rows) == sum(a.credits_pending for a in rows)


LedgerVersusModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedgerVersusModel = LedgerVersusModel.TestCase

"""The `Ledger` against a small reference model of TigerBeetle's rules (hypothesis.stateful).

The model knows dicts and Python ints, and the rules as TigerBeetle's reference states
them: a result is the first rule of its documented list that a request breaks; limits and
overflows are judged on the balances a transfer *would leave* (not on the engine's
pre-checks); pending money is reserved until posted, voided or expired by the clock; an
id means one transfer forever, and one that failed transiently can never succeed;
closing transfers close accounts until voided or expired; imports carry their own past
timestamps. It never looks inside the engine: it observes the ledger only through the
public API (and reads a transfer's timestamp once it is created).

Runs on the in-memory store and on SQLite (with reopening as a step). Amounts reach the
u128 extremes. The clock moves in steps that never land on a timeout's exact nanosecond
(see `STEPS`), so whether a pending transfer has expired is never a matter of the few
nanoseconds by which ledger time may run ahead of the clock.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger import (
    AMOUNT_MAX,
    BATCH_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
    TransferPendingStatus,
)

R = CreateTransferResult
AF = AccountFlags
TF = TransferFlags
NS = 1_000_000_000
MAX = (1 << 128) - 1
LIMIT_DEBITS = AF.DEBITS_MUST_NOT_EXCEED_CREDITS
LIMIT_CREDITS = AF.CREDITS_MUST_NOT_EXCEED_DEBITS
ACCOUNT_IDS = st.integers(1, 7)  # 7 is never created
TRANSFER_IDS = st.integers(1, 60)
AMOUNTS = st.one_of(st.integers(0, 300), st.sampled_from([1 << 64, (1 << 127) + 3, MAX - 1, MAX]))
STEPS = [0, NS + 7_000_000, 3 * NS + 7_000_000, 9 * NS + 7_000_000]
"""Clock steps: whole seconds plus 7 ms. Timeouts are whole seconds and ledger time runs
at most a few microseconds ahead of the clock here, so a deadline is never within 7 ms of
the clock (for fewer than 142 steps)."""
TIMEOUTS = st.sampled_from([0, 1, 3, 10])
KINDS = {
    "single": TF.NONE, "pending": TF.PENDING, "balance debit": TF.BALANCING_DEBIT,
    "balance credit": TF.BALANCING_CREDIT, "balance both": TF.BALANCING_DEBIT | TF.BALANCING_CREDIT,
    "pending balance": TF.PENDING | TF.BALANCING_DEBIT, "close debit": TF.PENDING | TF.CLOSING_DEBIT,
    "close credit": TF.PENDING | TF.CLOSING_CREDIT, "close without pending": TF.CLOSING_DEBIT,
}
TRANSIENT = {R.DEBIT_ACCOUNT_NOT_FOUND, R.CREDIT_ACCOUNT_NOT_FOUND, R.PENDING_TRANSFER_NOT_FOUND, R.EXCEEDS_CREDITS,
             R.EXCEEDS_DEBITS, R.DEBIT_ACCOUNT_ALREADY_CLOSED, R.CREDIT_ACCOUNT_ALREADY_CLOSED}


@dataclass
class MAccount:
    flags: int
    timestamp: int = 0
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0
    closed: bool = False
    history: list[list[object]] = field(default_factory=list)  # [timestamp or ("made by", id), balances]

    def balances(self) -> tuple[int, int, int, int]:
        return self.dp, self.dpo, self.cp, self.cpo

    def debits_exceed_credits(self) -> bool:
        return bool(self.flags & LIMIT_DEBITS) and self.dp + self.dpo > self.cpo

    def credits_exceed_debits(self) -> bool:
        return bool(self.flags & LIMIT_CREDITS) and self.cp + self.cpo > self.dpo


@dataclass
class MTransfer:
    dr: int
    cr: int
    amount: int       # as moved (balancing resolved, a post's "everything" resolved)
    requested: int    # as sent
    flags: int
    timeout: int = 0
    pending_id: int = 0
    timestamp: int = 0
    state: str = ""   # for pending transfers: "pending", "posted", "voided" or "expired"

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.timeout * NS if self.state == "pending" and self.timeout else 0


class LedgerVersusModel(RuleBasedStateMachine):
    store = "memory"

    @initialize(flags=st.lists(st.sampled_from([0, LIMIT_DEBITS, LIMIT_CREDITS, AF.HISTORY,
                                                AF.HISTORY | LIMIT_DEBITS]), min_size=6, max_size=6),
                imported=st.booleans())
    def open_accounts(self, flags: list[int], imported: bool) -> None:
        self.now = 1_700_000_000 * NS
        self.dir = tempfile.mkdtemp() if self.store == "sqlite" else None
        self.led = self.open()
        self.accounts = {i + 1: MAccount(int(f)) for i, f in enumerate(flags)}
        self.transfers: dict[int, MTransfer] = {}
        self.burnt: set[int] = set()
        extra = AF.IMPORTED if imported else 0
        made = self.led.create_accounts([
            Account(id=i, ledger=1, code=1, flags=a.flags | extra,
                    timestamp=self.now - NS + i if imported else 0)
            for i, a in self.accounts.items()
        ])
        assert made == [CreateAccountResult.OK] * len(self.accounts)
        for state in self.led.lookup_accounts(list(self.accounts)):
            self.accounts[state.id].timestamp = state.timestamp
            assert not imported or state.timestamp == self.now - NS + state.id

    def open(self) -> Ledger:
        if self.dir is None:
            return Ledger(clock=lambda: self.now)
        return Ledger.open(f"sqlite:///{self.dir}/model.db", clock=lambda: self.now)

    def teardown(self) -> None:
        if hasattr(self, "led"):
            self.led.close()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------- the model's rules
    def expire(self) -> None:
        """What TigerBeetle's timer does by the clock: release every pending transfer
        whose timeout has passed, oldest deadline first, re-opening closed accounts."""
        due = sorted((t.expires_at, t.timestamp, tid) for tid, t in self.transfers.items()
                     if t.expires_at and t.expires_at <= self.now)
        for i, (_, _, tid) in enumerate(due):
            t = self.transfers[tid]
            d, c = self.accounts[t.dr], self.accounts[t.cr]
            d.dp -= t.amount
            c.cp -= t.amount
            t.state = "expired"
            self.reopen_closed_by(t, d, c)
            # The timer runs at the first call after the clock stepped past the deadline, at
            # the clock's time (the ledger's time is then the clock's), one nanosecond apart.
            self.note_history(d, c, when=self.now + i)

    @staticmethod
    def reopen_closed_by(t: MTransfer, d: MAccount, c: MAccount) -> None:
        if t.flags & TF.CLOSING_DEBIT:
            d.closed = False
        if t.flags & TF.CLOSING_CREDIT:
            c.closed = False

    @staticmethod
    def note_history(*accounts: MAccount, when: object) -> None:
        """A HISTORY account's balances after an event, at the event's time (for a transfer
        not yet known: ("made by", id), filled in once the ledger has stamped it)."""
        for a in accounts:
            if a.flags & AF.HISTORY:
                a.history.append([when, a.balances()])

    def exists(self, e: MTransfer, flags: int, dr: int, cr: int, amount: int, timeout: int, pending_id: int) -> R:
        """Resending an id: the first field that differs, in TigerBeetle's order."""
        if e.flags != flags:
            return R.EXISTS_WITH_DIFFERENT_FLAGS
        if e.pending_id != pending_id:
            return R.EXISTS_WITH_DIFFERENT_PENDING_ID
        if e.timeout != timeout:
            return R.EXISTS_WITH_DIFFERENT_TIMEOUT
        if flags & (TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER):
            everything = amount == (AMOUNT_MAX if flags & TF.POST_PENDING_TRANSFER else 0)
            same = e.amount == self.transfers[pending_id].amount if everything else e.amount == amount
            return R.EXISTS if same else R.EXISTS_WITH_DIFFERENT_AMOUNT
        if e.dr != dr:
            return R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if e.cr != cr:
            return R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        balancing = flags & (TF.BALANCING_DEBIT | TF.BALANCING_CREDIT)
        if (amount < e.amount) if balancing else (amount != e.amount):
            return R.EXISTS_WITH_DIFFERENT_AMOUNT
        return R.EXISTS

    def judge_transfer(self, tid: int, dr: int, cr: int, amount: int, flags: int, timeout: int,
                       timestamp: int = 0) -> tuple[R, int]:
        """(result, amount it would move) of a new single-phase or pending transfer."""
        if tid in self.transfers:
            return self.exists(self.transfers[tid], flags, dr, cr, amount, timeout, 0), 0
        if tid in self.burnt:
            return R.ID_ALREADY_FAILED, 0
        pending = bool(flags & TF.PENDING)
        if dr == cr:
            return R.ACCOUNTS_MUST_BE_DIFFERENT, 0
        if not pending and timeout:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, 0
        if not pending and flags & (TF.CLOSING_DEBIT | TF.CLOSING_CREDIT):
            return R.CLOSING_TRANSFER_MUST_BE_PENDING, 0
        if dr not in self.accounts:
            return R.DEBIT_ACCOUNT_NOT_FOUND, 0
        if cr not in self.accounts:
            return R.CREDIT_ACCOUNT_NOT_FOUND, 0
        d, c = self.accounts[dr], self.accounts[cr]
        if flags & TF.IMPORTED:
            newest = max((t.timestamp for t in self.transfers.values()), default=0)
            if timestamp <= newest or timestamp in {a.timestamp for a in self.accounts.values()}:
                return R.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, 0
            if timestamp <= d.timestamp:
                return R.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT, 0
            if timestamp <= c.timestamp:
                return R.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT, 0
            if timeout:
                return R.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO, 0
        if d.closed:
            return R.DEBIT_ACCOUNT_ALREADY_CLOSED, 0
        if c.closed:
            return R.CREDIT_ACCOUNT_ALREADY_CLOSED, 0
        if flags & TF.BALANCING_DEBIT:  # the most the debit account can still give
            amount = min(amount, max(0, d.cpo - d.dpo - d.dp))
        if flags & TF.BALANCING_CREDIT:  # the most the credit account can still take
            amount = min(amount, max(0, c.dpo - c.cpo - c.cp))
        after = {  # the balances the transfer would leave, against u128's ceiling
            "dp": d.dp + amount * pending, "cp": c.cp + amount * pending,
            "dpo": d.dpo + amount * (not pending), "cpo": c.cpo + amount * (not pending),
        }
        if pending and after["dp"] > MAX:
            return R.OVERFLOWS_DEBITS_PENDING, 0
        if pending and after["cp"] > MAX:
            return R.OVERFLOWS_CREDITS_PENDING, 0
        if d.dpo + amount > MAX:
            return R.OVERFLOWS_DEBITS_POSTED, 0
        if c.cpo + amount > MAX:
            return R.OVERFLOWS_CREDITS_POSTED, 0
        if after["dp"] + after["dpo"] > MAX:
            return R.OVERFLOWS_DEBITS, 0
        if after["cp"] + after["cpo"] > MAX:
            return R.OVERFLOWS_CREDITS, 0
        if d.flags & LIMIT_DEBITS and after["dp"] + after["dpo"] > d.cpo:
            return R.EXCEEDS_CREDITS, 0
        if c.flags & LIMIT_CREDITS and after["cp"] + after["cpo"] > c.dpo:
            return R.EXCEEDS_DEBITS, 0
        return R.OK, amount

    def apply_transfer(self, tid: int, dr: int, cr: int, amount: int, requested: int, flags: int,
                       timeout: int) -> None:
        d, c = self.accounts[dr], self.accounts[cr]
        pending = bool(flags & TF.PENDING)
        if pending:
            d.dp += amount
            c.cp += amount
        else:
            d.dpo += amount
            c.cpo += amount
        d.closed |= bool(flags & TF.CLOSING_DEBIT)
        c.closed |= bool(flags & TF.CLOSING_CREDIT)
        self.transfers[tid] = MTransfer(dr, cr, amount, requested, flags, timeout, state="pending" if pending else "")
        self.note_history(d, c, when=("made by", tid))

    def judge_resolve(self, tid: int, pid: int, amount: int, post: bool) -> tuple[R, int]:
        flags = TF.POST_PENDING_TRANSFER if post else TF.VOID_PENDING_TRANSFER
        if tid in self.transfers:
            return self.exists(self.transfers[tid], flags, 0, 0, amount, 0, pid), 0
        if tid in self.burnt:
            return R.ID_ALREADY_FAILED, 0
        if pid == tid:
            return R.PENDING_ID_MUST_BE_DIFFERENT, 0
        p = self.transfers.get(pid)
        if p is None:
            return R.PENDING_TRANSFER_NOT_FOUND, 0
        if not p.state:
            return R.PENDING_TRANSFER_NOT_PENDING, 0
        everything = AMOUNT_MAX if post else 0  # "all of it", as a post and as a void say it
        amount = p.amount if amount == everything else amount
        if amount > p.amount:
            return R.EXCEEDS_PENDING_TRANSFER_AMOUNT, 0
        if not post and amount < p.amount:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, 0
        answer = {"posted": R.PENDING_TRANSFER_ALREADY_POSTED, "voided": R.PENDING_TRANSFER_ALREADY_VOIDED,
                  "expired": R.PENDING_TRANSFER_EXPIRED}.get(p.state)
        if answer is not None:
            return answer, 0
        if post and self.accounts[p.dr].closed:
            return R.DEBIT_ACCOUNT_ALREADY_CLOSED, 0
        if post and self.accounts[p.cr].closed:
            return R.CREDIT_ACCOUNT_ALREADY_CLOSED, 0
        return R.OK, amount

    def apply_resolve(self, tid: int, pid: int, amount: int, requested: int, post: bool) -> None:
        p = self.transfers[pid]
        d, c = self.accounts[p.dr], self.accounts[p.cr]
        d.dp -= p.amount
        c.cp -= p.amount
        if post:
            d.dpo += amount
            c.cpo += amount
        else:
            self.reopen_closed_by(p, d, c)
        p.state = "posted" if post else "voided"
        flags = TF.POST_PENDING_TRANSFER if post else TF.VOID_PENDING_TRANSFER
        self.transfers[tid] = MTransfer(p.dr, p.cr, amount, requested, flags, pending_id=pid)
        self.note_history(d, c, when=("made by", tid))

    def settle(self, tid: int, result: R) -> None:
        """After a call: a made transfer's timestamp is read once; a transient failure burns the id."""
        if result == R.OK:
            stamp = self.transfers[tid].timestamp = self.led.lookup_transfers([tid])[0].timestamp
            for a in self.accounts.values():
                for entry in a.history:
                    if entry[0] == ("made by", tid):
                        entry[0] = stamp
        elif result in TRANSIENT:
            self.burnt.add(tid)

    # -------------------------------------------------------------- rules
    def pick_id(self, data: st.DataObject) -> int:
        """Mostly an id never used (so that new transfers get made), sometimes any."""
        if data.draw(st.integers(0, 3)):
            used = set(self.transfers) | self.burnt
            return next(i for i in range(1, 61) if i not in used) if len(used) < 60 else 60
        return data.draw(TRANSFER_IDS)

    @rule(data=st.data(), dr=ACCOUNT_IDS, cr=ACCOUNT_IDS, amount=AMOUNTS, kind=st.sampled_from(sorted(KINDS)),
          timeout=TIMEOUTS)
    def transfer(self, data: st.DataObject, dr: int, cr: int, amount: int, kind: str, timeout: int) -> None:
        tid = self.pick_id(data)
        flags = int(KINDS[kind])
        timeout = timeout if flags & TF.PENDING or not timeout % 3 else 0  # mostly valid
        self.expire()
        expected, moved = self.judge_transfer(tid, dr, cr, amount, flags, timeout)
        got = self.led.create_transfers([Transfer(id=tid, debit_account_id=dr, credit_account_id=cr, amount=amount,
                                                  ledger=1, code=1, flags=flags, timeout=timeout)])
        assert got == [expected]
        if expected == R.OK:
            self.apply_transfer(tid, dr, cr, moved, amount, flags, timeout)
        self.settle(tid, expected)

    @rule(data=st.data(), amount=st.one_of(st.sampled_from([0, AMOUNT_MAX]), AMOUNTS), post=st.booleans())
    def resolve(self, data: st.DataObject, amount: int, post: bool) -> None:
        tid = self.pick_id(data)
        pendings = sorted(i for i, t in self.transfers.items() if t.state)
        pid = data.draw(st.sampled_from(pendings) if pendings and data.draw(st.integers(0, 4)) else TRANSFER_IDS)
        if pendings and amount not in (0, AMOUNT_MAX) and data.draw(st.booleans()):
            amount = self.transfers[pid].amount if pid in self.transfers else amount  # exactly, or a part
            amount = data.draw(st.sampled_from([amount, amount // 2, min(amount + 1, MAX)]))
        flags = TF.POST_PENDING_TRANSFER if post else TF.VOID_PENDING_TRANSFER
        self.expire()
        expected, moved = self.judge_resolve(tid, pid, amount, post)
        assert self.led.create_transfers([Transfer(id=tid, pending_id=pid, amount=amount, flags=flags)]) == [expected]
        if expected == R.OK:
            self.apply_resolve(tid, pid, moved, amount, post)
        self.settle(tid, expected)

    @precondition(lambda self: self.transfers)
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """An existing transfer again, exactly or with its amount or accounts changed."""
        tid = data.draw(st.sampled_from(sorted(self.transfers)))
        t = self.transfers[tid]
        body = {"id": tid, "flags": t.flags, "timeout": t.timeout, "pending_id": t.pending_id, "amount": t.requested}
        if not t.pending_id:
            body.update(debit_account_id=t.dr, credit_account_id=t.cr, ledger=1, code=1)
        if t.flags & TF.IMPORTED:
            body["timestamp"] = t.timestamp  # an import is resent as imported
        change = data.draw(st.sampled_from(["none", "amount", "debit_account_id", "ledger"]))
        if change == "amount":
            body["amount"] = data.draw(AMOUNTS)
        elif change != "none" and not t.pending_id:
            body[change] = 2 if body[change] == 1 else 1
        self.expire()
        expected = R.EXISTS_WITH_DIFFERENT_LEDGER if body.get("ledger") == 2 else self.exists(
            t, t.flags, body.get("debit_account_id", 0), body.get("credit_account_id", 0), body["amount"],
            t.timeout, t.pending_id)
        if t.flags & TF.LINKED:  # alone in its batch, a linked event leaves its chain open: checked first
            expected = R.LINKED_EVENT_CHAIN_OPEN
        assert self.led.create_transfers([Transfer(**body)]) == [expected]

    @rule(a=st.tuples(TRANSFER_IDS, ACCOUNT_IDS, ACCOUNT_IDS, AMOUNTS),
          b=st.tuples(TRANSFER_IDS, ACCOUNT_IDS, ACCOUNT_IDS, AMOUNTS))
    def linked_pair(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> None:
        if a[0] == b[0]:
            return
        self.expire()
        first, moved = self.judge_transfer(a[0], a[1], a[2], a[3], TF.LINKED, 0)
        saved = ({k: MAccount(**{**vars(v), "history": [list(e) for e in v.history]})
                  for k, v in self.accounts.items()}, dict(self.transfers))
        second = R.LINKED_EVENT_FAILED
        if first == R.OK:
            self.apply_transfer(a[0], a[1], a[2], moved, a[3], TF.LINKED, 0)
            second, moved_b = self.judge_transfer(b[0], b[1], b[2], b[3], 0, 0)
        got = self.led.create_transfers([
            Transfer(id=a[0], debit_account_id=a[1], credit_account_id=a[2], amount=a[3], ledger=1, code=1,
                     flags=TF.LINKED),
            Transfer(id=b[0], debit_account_id=b[1], credit_account_id=b[2], amount=b[3], ledger=1, code=1),
        ])
        if first == R.OK and second == R.OK:
            assert got == [R.OK, R.OK]
            self.apply_transfer(b[0], b[1], b[2], moved_b, b[3], 0, 0)
            self.settle(a[0], R.OK)
            self.settle(b[0], R.OK)
        else:
            assert got == ([first, R.LINKED_EVENT_FAILED] if first != R.OK else [R.LINKED_EVENT_FAILED, second])
            self.accounts, self.transfers = saved
            self.settle(a[0] if first != R.OK else b[0], first if first != R.OK else second)

    @rule(data=st.data(), dr=ACCOUNT_IDS, cr=ACCOUNT_IDS, amount=AMOUNTS, pending=st.booleans(),
          when=st.sampled_from(["past", "past", "future", "regress", "timeout"]))
    def import_transfer(self, data: st.DataObject, dr: int, cr: int, amount: int, pending: bool, when: str) -> None:
        """Back-fill one transfer with its own timestamp (after a clock step, so that ledger
        time is the clock's and "the past" is well defined)."""
        tid = self.pick_id(data)
        self.now += STEPS[1]
        self.expire()
        newest = max([t.timestamp for t in self.transfers.values()] + [a.timestamp for a in self.accounts.values()])
        stamp = {"past": newest + 1, "timeout": newest + 1, "future": self.now + NS,
                 "regress": max((t.timestamp for t in self.transfers.values()), default=1)}[when]
        flags = int(TF.IMPORTED | (TF.PENDING if pending or when == "timeout" else 0))
        timeout = 1 if when == "timeout" else 0
        if when == "future":
            expected, moved = R.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE, 0
        else:
            expected, moved = self.judge_transfer(tid, dr, cr, amount, flags, timeout, stamp)
        got = self.led.create_transfers([Transfer(id=tid, debit_account_id=dr, credit_account_id=cr, amount=amount,
                                                  ledger=1, code=1, flags=flags, timeout=timeout, timestamp=stamp)])
        assert got == [expected]
        if expected == R.OK:
            self.apply_transfer(tid, dr, cr, moved, amount, flags, timeout)
            self.settle(tid, expected)
            assert self.transfers[tid].timestamp == stamp
        else:
            self.settle(tid, expected)

    @rule(step=st.sampled_from(STEPS[1:]))
    def clock_moves(self, step: int) -> None:
        self.now += step

    @precondition(lambda self: self.dir is not None)
    @rule()
    def reopen(self) -> None:
        self.led.close()
        self.led = self.open()

    # -------------------------------------------------------------- invariants
    @invariant()
    def balances_match_the_model(self) -> None:
        self.expire()  # every read runs the ledger's timer first; so does the model
        assert self.led.lookup_accounts([7]) == []
        for state in self.led.lookup_accounts(list(self.accounts)):
            m = self.accounts[state.id]
            assert (state.debits_pending, state.debits_posted, state.credits_pending, state.credits_posted) == (
                m.dp, m.dpo, m.cp, m.cpo
            )
            assert bool(state.flags & AF.CLOSED) == m.closed

    @invariant()
    def history_matches_the_model(self) -> None:
        self.expire()
        for i, m in self.accounts.items():
            rows = self.led.get_account_balances(i, limit=BATCH_MAX)
            got = [(h.timestamp, (h.debits_pending, h.debits_posted, h.credits_pending, h.credits_posted))
                   for h in rows]
            assert got == sorted(((e[0], e[1]) for e in m.history), key=lambda e: e[0])  # type: ignore[arg-type,return-value]

    @invariant()
    def transfers_match_the_model(self) -> None:
        self.expire()
        got = {t.id: t for t in self.led.lookup_transfers(range(1, 61))}
        assert set(got) == set(self.transfers)
        for tid, t in got.items():
            m = self.transfers[tid]
            assert (t.debit_account_id, t.credit_account_id, t.amount) == (m.dr, m.cr, m.amount)
            status = TransferPendingStatus[m.state.upper()] if m.state else TransferPendingStatus.NONE
            assert t.pending_status == status
        assert not self.burnt & set(got)

    @invariant()
    def double_entry_holds(self) -> None:
        self.expire()
        rows = self.led.lookup_accounts(list(self.accounts))
        assert sum(a.debits_posted for a in rows) == sum(a.credits_posted for a in rows)
        assert sum(a.debits_pending for a in rows) == sum(a.credits_pending for a in rows)


class LedgerOnSQLiteVersusModel(LedgerVersusModel):
    store = "sqlite"


LedgerVersusModel.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
LedgerOnSQLiteVersusModel.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestLedgerVersusModel = LedgerVersusModel.TestCase
TestLedgerOnSQLiteVersusModel = LedgerOnSQLiteVersusModel.TestCase

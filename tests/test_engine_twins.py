"""The compiled engine against its Python twin: same results, same state, byte for byte.

`PyEngine` (cext/engine_py.py) is the reference, written to be read; `CyEngine` is the
one that runs. Hypothesis drives both through random sequences of account batches,
transfer batches, expiries and snapshot hand-overs, and after every step compares the
results and the whole state (row arrays, counts, id lookups, digest). The generators
aim at the edges: linked chains (also open at the end of a batch), two-phase transfers
with partial and AMOUNT_MAX posts, expiry, balancing, amounts and balances near 2^128,
timestamps near 2^64, duplicate ids within and across batches, reserved flags, HISTORY
and CLOSED accounts, zero and maximal ids.

The hand-written tests below pin one TigerBeetle rule each and run against both classes,
so that a rule the twin itself gets wrong does not pass just because both agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.codec_py import accounts_to_rows, row_to_account, row_to_transfer, transfers_to_rows
from cext.engine_py import PyEngine
from cext.layout import FAILED_DTYPE, STATUS_EXPIRED, STATUS_PENDING, STATUS_POSTED, STATUS_VOIDED
from ledger.types import (
    AMOUNT_MAX,
    NS_PER_S,
    TIMESTAMP_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)
from tests.support.engine_events import (
    ACCOUNT_IDS,
    ODD_ACCOUNT_IDS,
    SETUP_ACCOUNTS,
    SPECIAL_TRANSFER_IDS,
    Events,
    timestamps,
)

_engine = pytest.importorskip("cext._engine", reason="the Cython extension is not built")
CyEngine = _engine.CyEngine

A = CreateAccountResult
T = CreateTransferResult
AF = AccountFlags
TF = TransferFlags
ENGINES = [PyEngine, CyEngine]
Engine = Any  # PyEngine | CyEngine: the same duck type

def imported(data: st.DataObject, items: list[Any], now: int) -> list[Any]:
    """The same events as an import: the IMPORTED flag (mostly) and increasing past
    timestamps just before `now` (sometimes spoiled: zero, in the future, regressing)."""
    out = []
    flagged = data.draw(st.integers(0, 5)) > 0  # else: timestamps on events that do not import
    for k, item in enumerate(items):
        flag = AF.IMPORTED if isinstance(item, Account) else TF.IMPORTED
        fields = {f: getattr(item, f) for f in item.__dataclass_fields__}
        if flagged and data.draw(st.integers(0, 9)):
            fields["flags"] = int(fields["flags"]) | flag
        fields["timeout"] = 0 if "timeout" in fields and data.draw(st.integers(0, 3)) else fields.get("timeout", 0)
        if "timeout" not in item.__dataclass_fields__:
            del fields["timeout"]
        fields["timestamp"] = data.draw(st.sampled_from(
            [now - 3 * len(items) + 2 * k] * 6 + [0, now, now + 1, max(now - 10**9, 1), 1, TIMESTAMP_MAX + 1]
        ))
        out.append(type(item)(**fields))
    return out


# ----------------------------------------------------------------------------- comparison

def assert_same_state(py: Engine, cy: Engine, where: object = "") -> None:
    """Equal rows byte for byte (so equal digests), counts and id lookups."""
    assert (py.n_accounts, py.n_transfers, py.n_history) == (cy.n_accounts, cy.n_transfers, cy.n_history), where
    for name in ("accounts", "transfers", "meta", "history"):
        a, b = getattr(py, name), getattr(cy, name)
        assert a.dtype == b.dtype, (where, name)
        assert a.tobytes() == b.tobytes(), (where, name, a, b)
    assert py.digest() == cy.digest(), where
    for i in [*ACCOUNT_IDS, *ODD_ACCOUNT_IDS, 8, 9]:
        assert py.account_slot(i) == cy.account_slot(i), (where, i)
    ids = [0, *range(1, 60), *SPECIAL_TRANSFER_IDS]
    for i in ids[1:]:
        assert py.transfer_slot(i) == cy.transfer_slot(i), (where, i)
        assert py.failed_slot(i) == cy.failed_slot(i), (where, i)
    lo = np.array([i & U64_MAX for i in ids], np.uint64)
    hi = np.array([i >> 64 for i in ids], np.uint64)
    slots = [py.transfer_slot(i) if i else -1 for i in ids]
    assert py.transfer_slots(lo, hi).tolist() == cy.transfer_slots(lo, hi).tolist() == slots, where
    assert py.failed.tobytes() == cy.failed.tobytes(), where
    assert py.next_expiry() == cy.next_expiry(), where


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    setup=st.lists(st.sampled_from(SETUP_ACCOUNTS), min_size=5, max_size=8, unique_by=lambda a: a.id),
    t0=st.sampled_from([1, 10**18, TIMESTAMP_MAX - 5000 * NS_PER_S, U64_MAX - 5000 * NS_PER_S]),
    gap=st.sampled_from([1, NS_PER_S, 3 * NS_PER_S]),
)
def test_twins_agree(data: st.DataObject, setup: list[Account], t0: int, gap: int) -> None:
    """Random batches (client rows or replayed ones, imports, closing transfers), expiries,
    remembered failures and snapshot hand-overs: equal results and state throughout."""
    events = Events(data)
    py, cy = PyEngine(), CyEngine()
    rows = accounts_to_rows(setup)
    ts = timestamps(t0, len(rows))
    np.testing.assert_array_equal(py.create_accounts(rows, ts), cy.create_accounts(rows, ts))
    now = t0 + len(rows)
    for i in range(data.draw(st.integers(1, 10), label="steps")):
        op = data.draw(st.sampled_from(["accounts", "transfers", "transfers", "transfers", "transfers",
                                        "import", "expire", "handover", "remember"]))
        if op in ("accounts", "transfers", "import"):
            n = data.draw(st.integers(0, 8 if op == "accounts" else 16))
            kind = op if op != "import" else data.draw(st.sampled_from(["accounts", "transfers"]))
            items: list[Any] = [events.account() if kind == "accounts" else events.transfer() for _ in range(n)]
            now = min(now + 4 * n + gap, U64_MAX - 100)
            if op == "import":
                items = imported(data, items, now)
            rows = accounts_to_rows(items) if kind == "accounts" else transfers_to_rows(items)
            ts = np.full(n, now, np.uint64) if op == "import" else timestamps(now, n)
            now = min(now + n + gap, U64_MAX - 100)
            client = data.draw(st.booleans(), label="client")
            create = "create_accounts" if kind == "accounts" else "create_transfers"
            expected = getattr(py, create)(rows, ts, client=client)
            got = getattr(cy, create)(rows, ts, client=client)
            assert got.dtype == np.uint32
            np.testing.assert_array_equal(got, expected, err_msg=f"step {i}: {op}")
            events.note(items, got)
        elif op == "expire":
            delta = data.draw(st.sampled_from([0, 1, NS_PER_S, 3 * NS_PER_S, 2000 * NS_PER_S, U64_MAX]))
            limit = data.draw(st.sampled_from([-1, -1, 0, 1, 2]))
            at = min(now + delta, U64_MAX)
            assert cy.expire_pending(at, limit) == py.expire_pending(at, limit), f"step {i}"
            assert cy.last_expired.tolist() == py.last_expired.tolist(), f"step {i}"
        elif op == "remember":
            ids = data.draw(st.lists(st.sampled_from([*range(1, 12), 1 << 64, U128_MAX - 1]), max_size=4))
            failed = np.zeros(len(ids), FAILED_DTYPE)
            failed["id_lo"] = [x & (2**64 - 1) for x in ids]
            failed["id_hi"] = [x >> 64 for x in ids]
            py.remember_failed(failed)
            cy.remember_failed(failed)
        else:  # hand the state over through a snapshot, one way or the other
            from_python = data.draw(st.booleans())
            snap = (py if from_python else cy).snapshot()
            assert snap == (cy if from_python else py).snapshot()
            py, cy = PyEngine(), CyEngine()
            py.restore(snap)
            cy.restore(snap)
        assert_same_state(py, cy, f"step {i}: {op}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n_batches=st.integers(1, 4))
def test_snapshots_interchange(data: st.DataObject, n_batches: int) -> None:
    """A snapshot of either engine restores into either, with the same digest and future."""
    events = Events(data)
    engines = [PyEngine(), CyEngine()]
    now = 1
    for engine in engines:
        engine.create_accounts(accounts_to_rows(SETUP_ACCOUNTS), timestamps(now, len(SETUP_ACCOUNTS)))
    now += len(SETUP_ACCOUNTS)
    for _ in range(n_batches):
        rows = transfers_to_rows([events.transfer() for _ in range(data.draw(st.integers(1, 20)))])
        for engine in engines:
            engine.create_transfers(rows, timestamps(now, len(rows)))
        now += len(rows) + NS_PER_S
    for source in engines:
        snap = source.snapshot()
        for cls in ENGINES:
            restored = cls()
            restored.restore(snap)
            assert restored.digest() == source.digest()
            assert restored.snapshot() == snap
    # Each continues from the other's snapshot exactly as the other would have.
    py, cy = PyEngine(), CyEngine()
    py.restore(engines[1].snapshot())
    cy.restore(engines[0].snapshot())
    rows = transfers_to_rows([events.transfer() for _ in range(10)])
    ts = timestamps(now, len(rows))
    np.testing.assert_array_equal(py.create_transfers(rows, ts), cy.create_transfers(rows, ts))
    assert py.expire_pending(U64_MAX) == cy.expire_pending(U64_MAX)
    assert_same_state(py, cy)


u128s = st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, U128_MAX), st.sampled_from([0, 1 << 64, U128_MAX]))


class _SubTransfer(Transfer):
    """Not exactly `Transfer`: the compiled codec must take its getattr path."""

    __slots__ = ()


TRANSFER_FIELDS = {
    "id": u128s, "debit_account_id": u128s, "credit_account_id": u128s, "amount": u128s, "pending_id": u128s,
    "user_data_128": u128s, "user_data_64": st.integers(0, U64_MAX), "user_data_32": st.integers(0, (1 << 32) - 1),
    "timeout": st.integers(0, (1 << 32) - 1), "ledger": st.integers(0, (1 << 32) - 1),
    "code": st.integers(0, (1 << 16) - 1), "flags": st.integers(0, (1 << 16) - 1),
}


@settings(max_examples=150, deadline=None)
@given(
    transfers=st.lists(
        st.one_of(st.builds(Transfer, **TRANSFER_FIELDS), st.builds(_SubTransfer, **TRANSFER_FIELDS)), max_size=20
    ),
    accounts=st.lists(
        st.builds(
            Account, id=u128s, user_data_128=u128s, user_data_64=st.integers(0, U64_MAX),
            user_data_32=st.integers(0, (1 << 32) - 1), ledger=st.integers(0, (1 << 32) - 1),
            code=st.integers(0, (1 << 16) - 1), flags=st.sampled_from([0, AF.HISTORY, AF.LINKED | AF.CLOSED]),
        ),
        max_size=20,
    ),
)
def test_compiled_codec_packs_like_the_twin(transfers: list[Transfer], accounts: list[Account]) -> None:
    import cext.codec_py as twin

    compiled = pytest.importorskip("cext._codec")
    for got, expected in (
        (compiled.transfers_to_rows(transfers), twin.transfers_to_rows(transfers)),
        (compiled.transfers_to_rows(tuple(transfers)), twin.transfers_to_rows(transfers)),
        (compiled.accounts_to_rows(accounts), twin.accounts_to_rows(accounts)),
        (compiled.accounts_to_rows(iter(accounts)), twin.accounts_to_rows(accounts)),
    ):
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes()


def test_compiled_codec_refuses_what_numpy_refuses() -> None:
    """Objects are validated upstream; a value that still does not fit is an error, not a wrap."""
    from types import SimpleNamespace

    import cext.codec_py as twin

    compiled = pytest.importorskip("cext._codec")
    ok = {"id": 1, "debit_account_id": 1, "credit_account_id": 2, "amount": 1, "pending_id": 0,
          "user_data_128": 0, "user_data_64": 0, "user_data_32": 0, "timeout": 0, "ledger": 1, "code": 1,
          "flags": 0}
    assert compiled.transfers_to_rows([SimpleNamespace(**ok)]).tobytes() == twin.transfers_to_rows(
        [SimpleNamespace(**ok)]  # type: ignore[list-item]
    ).tobytes()
    for name, value in (("user_data_32", 1 << 32), ("code", 1 << 16), ("amount", 1 << 128), ("ledger", -1)):
        bad = [SimpleNamespace(**{**ok, name: value})]
        with pytest.raises(OverflowError):
            twin.transfers_to_rows(bad)  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            compiled.transfers_to_rows(bad)


# ----------------------------------------------------------------------------- hand-written rules

parametrize_engines = pytest.mark.parametrize("engine_cls", ENGINES, ids=["python", "cython"])


class Book:
    """One engine plus a clock, with object-level helpers for the rules below."""

    def __init__(self, engine_cls: Callable[[], Engine], start: int = 1_000) -> None:
        self.engine = engine_cls()
        self.now = start

    def accounts(self, *accounts: Account) -> list[int]:
        rows = accounts_to_rows(list(accounts))
        results = self.engine.create_accounts(rows, timestamps(self.now, len(rows)))
        self.now += len(rows)
        return [int(r) for r in results]

    def transfers(self, *transfers: Transfer) -> list[int]:
        rows = transfers_to_rows(list(transfers))
        results = self.engine.create_transfers(rows, timestamps(self.now, len(rows)))
        self.now += len(rows)
        return [int(r) for r in results]

    def balances(self, account_id: int) -> tuple[int, int, int, int]:
        a = row_to_account(self.engine.accounts[self.engine.account_slot(account_id)])
        return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted

    def transfer(self, transfer_id: int) -> Any:
        return row_to_transfer(self.engine.transfers[self.engine.transfer_slot(transfer_id)])

    def status(self, transfer_id: int) -> int:
        return int(self.engine.meta[self.engine.transfer_slot(transfer_id)]["status"])


def book_with(engine_cls: Callable[[], Engine], *flags: int, ledger: int = 1) -> Book:
    """Accounts 1..len(flags) on `ledger`, with those flags."""
    book = Book(engine_cls)
    accounts = [Account(id=i + 1, ledger=ledger, code=1, flags=f) for i, f in enumerate(flags)]
    assert book.accounts(*accounts) == [A.OK] * len(flags)
    return book


def tr(id: int, dr: int = 1, cr: int = 2, amount: int = 10, flags: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, debit_account_id=dr, credit_account_id=cr, amount=amount, ledger=1, code=1,
                    flags=int(flags), **kw)


def post(id: int, pending_id: int, amount: int = AMOUNT_MAX, flags: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, pending_id=pending_id, amount=amount, flags=int(TF.POST_PENDING_TRANSFER | flags), **kw)


def void(id: int, pending_id: int, amount: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, pending_id=pending_id, amount=amount, flags=int(TF.VOID_PENDING_TRANSFER), **kw)


@parametrize_engines
def test_account_results(engine_cls: Callable[[], Engine]) -> None:
    book = Book(engine_cls)
    assert book.accounts(
        Account(id=1, ledger=1, code=1, user_data_64=5),
        Account(id=1, ledger=1, code=1, user_data_64=5),
        Account(id=1, ledger=1, code=1, flags=AF.HISTORY),
        Account(id=1, ledger=1, code=1, user_data_128=1),
        Account(id=1, ledger=1, code=1),
        Account(id=1, ledger=1, code=1, user_data_64=5, user_data_32=1),
        Account(id=1, ledger=2, code=1, user_data_64=5),
        Account(id=1, ledger=1, code=2, user_data_64=5),
        Account(id=0, ledger=1, code=1),
        Account(id=U128_MAX, ledger=1, code=1),
        Account(id=2, ledger=1, code=1, flags=1 << 6),
        Account(id=2, ledger=1, code=1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        Account(id=2, ledger=0, code=1),
        Account(id=2, ledger=1, code=0),
    ) == [
        A.OK, A.EXISTS, A.EXISTS_WITH_DIFFERENT_FLAGS, A.EXISTS_WITH_DIFFERENT_USER_DATA_128,
        A.EXISTS_WITH_DIFFERENT_USER_DATA_64, A.EXISTS_WITH_DIFFERENT_USER_DATA_32,
        A.EXISTS_WITH_DIFFERENT_LEDGER, A.EXISTS_WITH_DIFFERENT_CODE, A.ID_MUST_NOT_BE_ZERO,
        A.ID_MUST_NOT_BE_INT_MAX, A.RESERVED_FLAG, A.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        A.LEDGER_MUST_NOT_BE_ZERO, A.CODE_MUST_NOT_BE_ZERO,
    ]
    assert book.engine.n_accounts == 1
    assert book.engine.account_slot(1) == 0 and book.engine.account_slot(2) == -1


@parametrize_engines
def test_linked_accounts_roll_back_together(engine_cls: Callable[[], Engine]) -> None:
    book = Book(engine_cls)
    assert book.accounts(
        Account(id=1, ledger=1, code=1, flags=AF.LINKED),
        Account(id=2, ledger=1, code=1, flags=AF.LINKED),
        Account(id=3, ledger=0, code=1),
        Account(id=4, ledger=1, code=1),
    ) == [A.LINKED_EVENT_FAILED, A.LINKED_EVENT_FAILED, A.LEDGER_MUST_NOT_BE_ZERO, A.OK]
    assert [book.engine.account_slot(i) for i in (1, 2, 3, 4)] == [-1, -1, -1, 0]
    # The ids are free again, and a chain open at the end of the batch fails as a whole.
    assert book.accounts(Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1, flags=AF.LINKED)) == [
        A.OK, A.LINKED_EVENT_CHAIN_OPEN
    ]
    assert book.engine.n_accounts == 2


@parametrize_engines
def test_single_phase_moves_balances(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, 0)
    assert book.transfers(tr(1, amount=7), tr(2, dr=2, cr=1, amount=3)) == [T.OK, T.OK]
    assert book.balances(1) == (0, 7, 0, 3)
    assert book.balances(2) == (0, 3, 0, 7)
    assert book.transfer(1).timestamp > 0


@parametrize_engines
def test_transfer_validation_order(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, 0)
    assert book.accounts(Account(id=9, ledger=2, code=1)) == [A.OK]
    assert book.transfers(
        tr(1, flags=1 << 9),
        tr(0),
        tr(U128_MAX),
        tr(1, dr=0),
        tr(1, dr=U128_MAX),
        tr(1, cr=0),
        tr(1, cr=U128_MAX),
        tr(1, cr=1),
        tr(1, pending_id=5),
        tr(1, timeout=1),
        Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=0, code=1),
        Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=0),
        tr(1, dr=8),
        tr(1, cr=8),
        tr(1, cr=9),
        Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=2, code=1),
    ) == [
        T.RESERVED_FLAG, T.ID_MUST_NOT_BE_ZERO, T.ID_MUST_NOT_BE_INT_MAX,
        T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        T.ACCOUNTS_MUST_BE_DIFFERENT, T.PENDING_ID_MUST_BE_ZERO, T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        T.LEDGER_MUST_NOT_BE_ZERO, T.CODE_MUST_NOT_BE_ZERO, T.DEBIT_ACCOUNT_NOT_FOUND,
        T.CREDIT_ACCOUNT_NOT_FOUND, T.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
        T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
    ]
    assert book.engine.n_transfers == 0


@parametrize_engines
def test_transfer_exists_results(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, 0, 0)
    base = {"user_data_128": 1, "user_data_64": 2, "user_data_32": 3}
    assert book.transfers(tr(1, amount=5, **base)) == [T.OK]
    assert book.transfers(
        tr(1, amount=5, **base),
        tr(1, amount=5, flags=TF.PENDING, **base),
        tr(1, cr=3, amount=5, **base),
        tr(1, dr=3, amount=5, **base),
        tr(1, amount=6, **base),
        tr(1, amount=5, **{**base, "user_data_128": 9}),
        tr(1, amount=5, **{**base, "user_data_64": 9}),
        tr(1, amount=5, **{**base, "user_data_32": 9}),
        Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=5, ledger=1, code=2, **base),
    ) == [
        T.EXISTS, T.EXISTS_WITH_DIFFERENT_FLAGS, T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
        T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, T.EXISTS_WITH_DIFFERENT_AMOUNT,
        T.EXISTS_WITH_DIFFERENT_USER_DATA_128, T.EXISTS_WITH_DIFFERENT_USER_DATA_64,
        T.EXISTS_WITH_DIFFERENT_USER_DATA_32, T.EXISTS_WITH_DIFFERENT_CODE,
    ]
    assert book.transfers(tr(2, amount=5, flags=TF.PENDING, timeout=5)) == [T.OK]
    assert book.transfers(tr(2, amount=5, flags=TF.PENDING, timeout=6)) == [T.EXISTS_WITH_DIFFERENT_TIMEOUT]
    assert book.balances(1) == (5, 5, 0, 0)  # an existing transfer moves nothing


@parametrize_engines
def test_closed_accounts_refuse_transfers(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, AF.CLOSED, 0, AF.CLOSED)
    assert book.transfers(tr(1, dr=1, cr=2), tr(2, dr=2, cr=3)) == [
        T.DEBIT_ACCOUNT_ALREADY_CLOSED, T.CREDIT_ACCOUNT_ALREADY_CLOSED
    ]


@parametrize_engines
def test_limits(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, AF.DEBITS_MUST_NOT_EXCEED_CREDITS, AF.CREDITS_MUST_NOT_EXCEED_DEBITS, 0)
    assert book.transfers(tr(1, dr=3, cr=1, amount=10)) == [T.OK]
    assert book.transfers(
        tr(2, dr=1, cr=3, amount=11),
        tr(3, dr=1, cr=3, amount=6, flags=TF.PENDING),
        tr(4, dr=1, cr=3, amount=5),
        tr(5, dr=3, cr=2, amount=1),
    ) == [T.EXCEEDS_CREDITS, T.OK, T.EXCEEDS_CREDITS, T.EXCEEDS_DEBITS]


@parametrize_engines
def test_balancing_transfers_move_what_is_there(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, 0, 0)
    assert book.transfers(tr(1, dr=2, cr=1, amount=30), tr(2, dr=1, cr=3, amount=5, flags=TF.PENDING)) == [T.OK, T.OK]
    # Account 1: credits 30, debits 5 pending -> at most 25 can be debited.
    assert book.transfers(tr(3, dr=1, cr=3, amount=AMOUNT_MAX, flags=TF.BALANCING_DEBIT)) == [T.OK]
    assert book.transfer(3).amount == 25
    assert book.transfers(tr(4, dr=1, cr=3, amount=7, flags=TF.BALANCING_DEBIT)) == [T.OK]
    assert book.transfer(4).amount == 0
    # Re-sent with any upper bound at least what moved, it exists; below, it differs.
    assert book.transfers(
        tr(3, dr=1, cr=3, amount=25, flags=TF.BALANCING_DEBIT),
        tr(3, dr=1, cr=3, amount=24, flags=TF.BALANCING_DEBIT),
    ) == [T.EXISTS, T.EXISTS_WITH_DIFFERENT_AMOUNT]
    # Account 2 has debits 30: a balancing credit into it moves at most 30.
    assert book.transfers(tr(5, dr=3, cr=2, amount=100, flags=TF.BALANCING_CREDIT)) == [T.OK]
    assert book.transfer(5).amount == 30


@parametrize_engines
def test_every_overflow_is_a_result(engine_cls: Callable[[], Engine]) -> None:
    big = U128_MAX - 1
    book = book_with(engine_cls, 0, 0, 0, 0)
    assert book.transfers(tr(1, dr=1, cr=2, amount=big, flags=TF.PENDING)) == [T.OK]
    assert book.transfers(
        tr(2, dr=1, cr=3, amount=2, flags=TF.PENDING),
        tr(3, dr=3, cr=2, amount=2, flags=TF.PENDING),
        tr(4, dr=1, cr=3, amount=2),
        tr(5, dr=3, cr=2, amount=2),
    ) == [T.OVERFLOWS_DEBITS_PENDING, T.OVERFLOWS_CREDITS_PENDING, T.OVERFLOWS_DEBITS, T.OVERFLOWS_CREDITS]
    assert book.transfers(tr(6, dr=3, cr=4, amount=big)) == [T.OK]
    assert book.transfers(tr(7, dr=3, cr=1, amount=2), tr(8, dr=1, cr=4, amount=2)) == [
        T.OVERFLOWS_DEBITS_POSTED, T.OVERFLOWS_CREDITS_POSTED
    ]
    assert book.transfers(tr(9, dr=3, cr=4, amount=1)) == [T.OK]
    assert book.balances(3) == (0, U128_MAX, 0, 0)
    # The timeout, added to the timestamp in ns, must stay below 2^63 (TigerBeetle's u63).
    late = Book(engine_cls, start=TIMESTAMP_MAX - 10 * NS_PER_S)
    assert late.accounts(Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)) == [A.OK, A.OK]
    assert late.transfers(tr(1, flags=TF.PENDING, timeout=11), tr(2, flags=TF.PENDING, timeout=9)) == [
        T.OVERFLOWS_TIMEOUT, T.OK
    ]


@parametrize_engines
def test_two_phase(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, AF.HISTORY, 0)
    assert book.transfers(
        tr(1, amount=100, flags=TF.PENDING, user_data_64=7),
        tr(2, amount=50, flags=TF.PENDING),
        tr(3, amount=10),
    ) == [T.OK, T.OK, T.OK]
    assert book.balances(1) == (150, 10, 0, 0)
    assert book.transfers(
        post(10, 1, amount=101),
        void(10, 2, amount=49),
        post(10, 3),
        post(10, 9),
        post(10, 10),
        Transfer(id=10, pending_id=1, amount=AMOUNT_MAX, flags=TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER),
        Transfer(id=10, pending_id=1, amount=5, flags=TF.POST_PENDING_TRANSFER | TF.PENDING),
        Transfer(id=10, pending_id=1, amount=5, flags=TF.POST_PENDING_TRANSFER, timeout=1),
        Transfer(id=10, pending_id=0, amount=5, flags=TF.POST_PENDING_TRANSFER),
        Transfer(id=10, pending_id=U128_MAX, amount=5, flags=TF.POST_PENDING_TRANSFER),
        post(10, 1, debit_account_id=3),
        post(10, 1, credit_account_id=3),
        post(10, 1, ledger=2),
        post(10, 1, code=2),
        post(10, 1, amount=60),  # a partial post
    ) == [
        T.EXCEEDS_PENDING_TRANSFER_AMOUNT, T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        T.PENDING_TRANSFER_NOT_PENDING, T.PENDING_TRANSFER_NOT_FOUND, T.PENDING_ID_MUST_BE_DIFFERENT,
        T.FLAGS_ARE_MUTUALLY_EXCLUSIVE, T.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, T.PENDING_ID_MUST_NOT_BE_ZERO,
        T.PENDING_ID_MUST_NOT_BE_INT_MAX, T.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        T.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID, T.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER,
        T.PENDING_TRANSFER_HAS_DIFFERENT_CODE, T.OK,
    ]
    assert book.balances(1) == (50, 70, 0, 0)
    assert book.balances(2) == (0, 0, 50, 70)
    assert book.status(1) == STATUS_POSTED
    posted = book.transfer(10)
    assert (posted.debit_account_id, posted.credit_account_id, posted.amount) == (1, 2, 60)
    assert (posted.ledger, posted.code, posted.user_data_64) == (1, 1, 7)  # resolved, inherited
    assert book.transfers(
        post(10, 1, amount=60),
        post(10, 1, amount=61),
        post(10, 2),
        void(10, 1, amount=100),
        post(10, 1, amount=60, user_data_64=8),
        post(11, 1),
        void(11, 2),
        void(12, 2),
    ) == [
        T.EXISTS, T.EXISTS_WITH_DIFFERENT_AMOUNT, T.EXISTS_WITH_DIFFERENT_PENDING_ID,
        T.EXISTS_WITH_DIFFERENT_FLAGS, T.EXISTS_WITH_DIFFERENT_USER_DATA_64,
        T.PENDING_TRANSFER_ALREADY_POSTED, T.OK, T.PENDING_TRANSFER_ALREADY_VOIDED,
    ]
    assert book.balances(1) == (0, 70, 0, 0)
    assert book.status(2) == STATUS_VOIDED
    # Account 2 keeps its balance history: one row per transfer that touched it.
    history = book.engine.history
    assert len(history) == 5
    assert int(history[-1]["credits_posted_lo"]) == 70 and int(history[-1]["credits_pending_lo"]) == 0


@parametrize_engines
def test_expiry(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, 0)
    start = book.now
    assert book.transfers(
        tr(1, amount=10, flags=TF.PENDING, timeout=2),
        tr(2, amount=20, flags=TF.PENDING, timeout=1),
        tr(3, amount=30, flags=TF.PENDING),
    ) == [T.OK, T.OK, T.OK]
    assert book.engine.expire_pending(start + NS_PER_S) == 0  # not yet: expires_at > now
    assert book.engine.expire_pending(start + 1 + NS_PER_S) == 1
    assert book.status(2) == STATUS_EXPIRED and book.status(1) == STATUS_PENDING
    assert book.balances(1) == (40, 0, 0, 0)
    book.now = start + 2 * NS_PER_S  # transfer 1 expires at start + 2 s, not yet swept
    assert book.transfers(post(4, 2), post(5, 1), post(6, 3)) == [
        T.PENDING_TRANSFER_EXPIRED, T.PENDING_TRANSFER_EXPIRED, T.OK
    ]
    assert book.engine.expire_pending(U64_MAX) == 1
    assert book.engine.expire_pending(U64_MAX) == 0
    assert book.balances(1) == (0, 30, 0, 0)


@parametrize_engines
def test_linked_transfers_roll_back_everything(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, AF.HISTORY, 0)
    assert book.transfers(tr(1, amount=100, flags=TF.PENDING)) == [T.OK]
    before = book.engine.snapshot()
    assert book.transfers(
        tr(2, amount=5, flags=TF.LINKED),
        post(3, 1, amount=40, flags=TF.LINKED),
        tr(4, dr=2, cr=3, amount=1, flags=TF.LINKED),
        tr(2, amount=5),  # its id was taken earlier in the chain: the chain fails
        tr(5, amount=1),
    ) == [T.LINKED_EVENT_FAILED, T.LINKED_EVENT_FAILED, T.LINKED_EVENT_FAILED, T.EXISTS_WITH_DIFFERENT_FLAGS, T.OK]
    assert book.transfer(5).amount == 1
    for i in (2, 3, 4):
        assert book.engine.transfer_slot(i) == -1
    assert book.status(1) == STATUS_PENDING
    assert book.balances(1) == (100, 1, 0, 0)
    # Apart from transfer 5 (and its history row), the state is the one before the chain.
    other = engine_cls()
    other.restore(before)
    assert other.transfers.tobytes() == book.engine.transfers[:-1].tobytes()
    assert other.history.tobytes() == book.engine.history[:-1].tobytes()
    # A chain still open at the end of the batch fails whole; later ones are independent.
    assert book.transfers(tr(6, flags=TF.LINKED), tr(7), tr(8, flags=TF.LINKED), tr(9, flags=TF.LINKED)) == [
        T.OK, T.OK, T.LINKED_EVENT_FAILED, T.LINKED_EVENT_CHAIN_OPEN
    ]
    assert book.engine.transfer_slot(8) == -1


@parametrize_engines
def test_snapshot_round_trip(engine_cls: Callable[[], Engine]) -> None:
    book = book_with(engine_cls, 0, AF.HISTORY)
    book.transfers(tr(1, amount=3), tr(2, amount=4, flags=TF.PENDING, timeout=1))
    snap = book.engine.snapshot()
    for cls in ENGINES:
        other = cls()
        other.restore(snap)
        assert other.digest() == book.engine.digest()
        assert other.transfer_slot(2) == 1 and other.account_slot(2) == 1
        assert other.expire_pending(U64_MAX) == 1
    with pytest.raises(ValueError):
        engine_cls().restore(b"nope")
    with pytest.raises(ValueError):
        engine_cls().restore(snap[:-1])


@parametrize_engines
def test_views_survive_growth(engine_cls: Callable[[], Engine]) -> None:
    """A view taken earlier keeps showing the rows it showed while the engine grows."""
    book = book_with(engine_cls, 0, 0)
    book.transfers(*(tr(i, amount=i) for i in range(1, 11)))
    early = book.engine.transfers
    copy = early.copy()
    for start in range(11, 3000, 500):
        book.transfers(*(tr(i, amount=1) for i in range(start, start + 500)))
    assert early.tobytes() == copy.tobytes()
    assert book.engine.n_transfers == 3010
    assert book.engine.transfers[:10].tobytes() == copy.tobytes()


def test_views_survive_a_move() -> None:
    """Past its reservation the compiled engine moves its rows; old views keep the old block."""
    old = _engine._set_reservation(16, 16)
    try:
        book = book_with(CyEngine, 0, 0)
    finally:
        _engine._set_reservation(*old)
    book.transfers(*(tr(i, amount=i) for i in range(1, 11)))
    early = book.engine.transfers
    copy = early.copy()
    book.transfers(*(tr(i, amount=1) for i in range(11, 1000)))
    del book
    assert early.tobytes() == copy.tobytes()


@pytest.mark.parametrize("reserve_rows", [None, 16], ids=["reserved", "outgrown"])
def test_many_transfers_agree(reserve_rows: int | None) -> None:
    """A larger run (index growth, rehash, batch loop prefetching) agrees with the twin.

    With a tiny reservation the compiled engine outgrows its row blocks at once and then
    moves them at every doubling, the path a ledger past 64M transfers (or a system
    without mmap) takes.
    """
    rng = np.random.default_rng(3)
    py = PyEngine()
    if reserve_rows is None:
        cy = CyEngine()
    else:
        old = _engine._set_reservation(reserve_rows, reserve_rows)
        try:
            cy = CyEngine()
        finally:
            _engine._set_reservation(*old)
    accounts = [Account(id=i, ledger=1, code=1, flags=AF.HISTORY if i % 7 == 0 else 0) for i in range(1, 201)]
    rows = accounts_to_rows(accounts)
    for engine in (py, cy):
        engine.create_accounts(rows, timestamps(1, len(rows)))
    now = 1000
    for batch in range(4):
        n = 600
        dr = rng.integers(1, 201, n)
        cr = (dr + rng.integers(1, 200, n) - 1) % 200 + 1
        kinds = rng.integers(0, 4, n)
        batch_transfers = []
        for k in range(n):
            tid = int(rng.integers(1, 2500))
            flags = [0, TF.PENDING, TF.LINKED, 0][kinds[k]]
            if kinds[k] == 3 and batch:
                batch_transfers.append(post(tid, int(rng.integers(1, 2500)), amount=int(rng.integers(0, 50))))
            else:
                batch_transfers.append(
                    tr(tid, dr=int(dr[k]), cr=int(cr[k]), amount=int(rng.integers(0, 100)), flags=flags,
                       timeout=int(rng.integers(0, 3)) if flags == TF.PENDING else 0)
                )
        rows = transfers_to_rows(batch_transfers)
        ts = timestamps(now, n)
        now += n + NS_PER_S
        np.testing.assert_array_equal(py.create_transfers(rows, ts), cy.create_transfers(rows, ts))
        assert py.expire_pending(now) == cy.expire_pending(now)
        assert_same_state(py, cy, batch)


@parametrize_engines
def test_transfer_slots_refuses_words_of_different_lengths(engine_cls: type) -> None:
    """A caller's mismatched id words are an error, never a read past the shorter array."""
    with pytest.raises(ValueError, match="differ in length"):
        engine_cls().transfer_slots(np.zeros(3, np.uint64), np.zeros(2, np.uint64))

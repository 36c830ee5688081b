"""The library API's behaviour, on every store: memory, SQLite and Cassandra."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    Transfer,
    TransferFlags,
)
from tests.support.clock import FakeClock
from tests.support.realparts import drop_keyspace

R = CreateTransferResult
AF = AccountFlags
TF = TransferFlags
MAX = (1 << 128) - 1


def accounts(led: Ledger, *specs: tuple[int, int]) -> None:
    """Create accounts (id, flags) on ledger 1 with code 1."""
    results = led.create_accounts([Account(id=i, ledger=1, code=1, flags=f) for i, f in specs])
    assert results == [CreateAccountResult.OK] * len(specs)


def tr(id: int, dr: int, cr: int, amount: int, flags: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, debit_account_id=dr, credit_account_id=cr, amount=amount, ledger=1, code=1,
                    flags=flags, **kw)


def balances(led: Ledger, account_id: int) -> tuple[int, int, int, int]:
    (a,) = led.lookup_accounts([account_id])
    return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted


def test_architecture_example(led: Ledger) -> None:
    led.create_accounts([
        Account(id=1, ledger=156, code=10, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
        Account(id=2, ledger=156, code=10),
    ])
    results = led.create_transfers([Transfer(id=7, debit_account_id=2, credit_account_id=1,
                                             amount=10_00, ledger=156, code=1)])
    assert results == [R.OK]
    a1, a2 = led.lookup_accounts([1, 2])
    assert (a1.credits_posted, a2.debits_posted) == (1000, 1000)
    assert led.lookup_transfers([7])[0].amount == 1000
    assert led.verify().ok


def test_account_results_follow_tigerbeetle(led: Ledger) -> None:
    A = CreateAccountResult
    results = led.create_accounts([
        Account(id=1, ledger=1, code=1),
        Account(id=1, ledger=1, code=1),
        Account(id=1, ledger=2, code=1),
        Account(id=1, ledger=1, code=1, flags=AF.HISTORY),
        Account(id=0, ledger=1, code=1),
        Account(id=MAX, ledger=1, code=1),
        Account(id=3, ledger=0, code=1),
        Account(id=4, ledger=1, code=0),
        Account(id=5, ledger=1, code=1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        Account(id=6, ledger=1, code=1, flags=1 << 12),
    ])
    assert results == [
        A.OK, A.EXISTS, A.EXISTS_WITH_DIFFERENT_LEDGER, A.EXISTS_WITH_DIFFERENT_FLAGS,
        A.ID_MUST_NOT_BE_ZERO, A.ID_MUST_NOT_BE_INT_MAX, A.LEDGER_MUST_NOT_BE_ZERO,
        A.CODE_MUST_NOT_BE_ZERO, A.FLAGS_ARE_MUTUALLY_EXCLUSIVE, A.RESERVED_FLAG,
    ]
    assert [a.id for a in led.lookup_accounts([1, 3, 4, 5, 6])] == [1]


def test_single_phase_and_limits(led: Ledger) -> None:
    accounts(led, (1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (2, 0), (3, AF.CREDITS_MUST_NOT_EXCEED_DEBITS))
    assert led.create_transfers([
        tr(10, 2, 1, 100),
        tr(11, 1, 2, 101),
        tr(12, 1, 2, 100),
        tr(13, 2, 3, 1),
        tr(14, 3, 2, 5),
        tr(15, 3, 2, 0),
        tr(16, 9, 2, 1),
        tr(17, 2, 9, 1),
        tr(18, 2, 2, 1),
    ]) == [R.OK, R.EXCEEDS_CREDITS, R.OK, R.EXCEEDS_DEBITS, R.OK, R.OK, R.DEBIT_ACCOUNT_NOT_FOUND,
           R.CREDIT_ACCOUNT_NOT_FOUND, R.ACCOUNTS_MUST_BE_DIFFERENT]
    assert balances(led, 1) == (0, 100, 0, 100)
    assert balances(led, 3) == (0, 5, 0, 0)


def test_idempotency_by_id(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 5)]) == [R.OK]
    assert led.create_transfers([
        tr(10, 1, 2, 5), tr(10, 1, 2, 6), tr(10, 2, 1, 5), tr(10, 1, 2, 5, user_data_64=1),
    ]) == [R.EXISTS, R.EXISTS_WITH_DIFFERENT_AMOUNT, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
           R.EXISTS_WITH_DIFFERENT_USER_DATA_64]
    assert balances(led, 1) == (0, 5, 0, 0)


def test_linked_chains_are_all_or_nothing(led: Ledger) -> None:
    accounts(led, (1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (2, 0))
    assert led.create_transfers([
        tr(10, 2, 1, 50, TF.LINKED),
        tr(11, 1, 2, 60),          # breaks the chain: 10 is undone too
        tr(12, 2, 1, 50, TF.LINKED),
        tr(13, 1, 2, 50),          # chain 12-13 commits
        tr(14, 2, 1, 1, TF.LINKED),  # open at the end of the batch
    ]) == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS, R.OK, R.OK, R.LINKED_EVENT_CHAIN_OPEN]
    assert balances(led, 1) == (0, 50, 0, 50)
    assert led.lookup_transfers([10, 11, 14]) == []


def test_two_phase_post_void_and_partial(led: Ledger) -> None:
    accounts(led, (1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (2, 0))
    led.create_transfers([tr(1, 2, 1, 100)])
    assert led.create_transfers([
        tr(10, 1, 2, 60, TF.PENDING),
        tr(11, 1, 2, 60, TF.PENDING),   # would exceed: 60 pending + 60 > 100
        tr(12, 1, 2, 40, TF.PENDING),
    ]) == [R.OK, R.EXCEEDS_CREDITS, R.OK]
    assert balances(led, 1) == (100, 0, 0, 100)
    assert led.create_transfers([
        Transfer(id=20, pending_id=10, amount=25, flags=TF.POST_PENDING_TRANSFER),
        Transfer(id=21, pending_id=10, amount=AMOUNT_MAX, flags=TF.POST_PENDING_TRANSFER),
        Transfer(id=22, pending_id=12, amount=40, flags=TF.VOID_PENDING_TRANSFER),
        Transfer(id=23, pending_id=99, flags=TF.VOID_PENDING_TRANSFER),
        Transfer(id=24, pending_id=12, amount=41, flags=TF.POST_PENDING_TRANSFER),
    ]) == [R.OK, R.PENDING_TRANSFER_ALREADY_POSTED, R.OK, R.PENDING_TRANSFER_NOT_FOUND,
           R.EXCEEDS_PENDING_TRANSFER_AMOUNT]
    # Partial post: 25 posted, the other 35 released.
    assert balances(led, 1) == (0, 25, 0, 100)
    assert balances(led, 2) == (0, 100, 0, 25)
    assert led.lookup_transfers([20])[0].debit_account_id == 1


def test_post_amount_max_posts_everything(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    led.create_transfers([tr(10, 1, 2, 70, TF.PENDING)])
    assert led.create_transfers(
        [Transfer(id=11, pending_id=10, amount=AMOUNT_MAX, flags=TF.POST_PENDING_TRANSFER)]
    ) == [R.OK]
    assert led.lookup_transfers([11])[0].amount == 70
    assert balances(led, 2) == (0, 0, 0, 70)


def test_pending_expires_in_ledger_time(led: Ledger, clock: FakeClock) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 70, TF.PENDING, timeout=5)]) == [R.OK]
    clock.advance(4)
    assert led.create_transfers([tr(11, 1, 2, 1, TF.PENDING, timeout=1)]) == [R.OK]
    assert balances(led, 1) == (71, 0, 0, 0)
    clock.advance(2)
    assert led.create_transfers(
        [Transfer(id=12, pending_id=10, amount=AMOUNT_MAX, flags=TF.POST_PENDING_TRANSFER)]
    ) == [R.PENDING_TRANSFER_EXPIRED]
    assert balances(led, 1) == (0, 0, 0, 0)


def test_balancing_transfers_move_what_there_is(led: Ledger) -> None:
    accounts(led, (1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (2, 0), (3, 0))
    led.create_transfers([tr(1, 2, 1, 30)])
    assert led.create_transfers([tr(10, 1, 3, AMOUNT_MAX, TF.BALANCING_DEBIT)]) == [R.OK]
    assert led.lookup_transfers([10])[0].amount == 30
    assert balances(led, 1) == (0, 30, 0, 30)
    assert led.create_transfers([tr(10, 1, 3, AMOUNT_MAX, TF.BALANCING_DEBIT)]) == [R.EXISTS]


def test_overflow_gives_a_result_never_a_wrapped_value(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0), (3, 0))
    assert led.create_transfers([tr(10, 1, 2, MAX)]) == [R.OK]
    assert led.create_transfers([tr(11, 1, 3, 1), tr(12, 3, 2, 1), tr(13, 3, 1, 1, TF.PENDING)]) == [
        R.OVERFLOWS_DEBITS_POSTED, R.OVERFLOWS_CREDITS_POSTED, R.OK,
    ]
    assert balances(led, 1) == (0, MAX, 1, 0)
    assert led.create_transfers([tr(14, 1, 3, 0, TF.PENDING)]) == [R.OK]
    assert led.verify().ok


def test_timestamps_strictly_increase_when_the_clock_does_not(led: Ledger, clock: FakeClock) -> None:
    accounts(led, (1, 0), (2, 0))
    led.create_transfers([tr(10, 1, 2, 1), tr(11, 1, 2, 1)])
    clock.advance(-3600)
    led.create_transfers([tr(12, 1, 2, 1)])
    stamps = [t.timestamp for t in led.lookup_transfers([10, 11, 12])]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_statement_paging_both_ways(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0), (3, 0))
    led.create_transfers([tr(100 + i, 1, 2 + i % 2, 1) for i in range(10)])
    first = led.get_account_transfers(1, limit=4)
    assert [t.id for t in first] == [100, 101, 102, 103]
    second = led.get_account_transfers(1, limit=4, timestamp_min=first[-1].timestamp + 1)
    assert [t.id for t in second] == [104, 105, 106, 107]
    back = led.get_account_transfers(1, limit=3, reverse=True)
    assert [t.id for t in back] == [109, 108, 107]
    assert [t.id for t in led.get_account_transfers(3, limit=100)] == [101, 103, 105, 107, 109]
    assert led.get_account_transfers(2, credits=False) == []


def test_history_and_balance_at(led: Ledger) -> None:
    accounts(led, (1, AF.HISTORY), (2, 0))
    led.create_transfers([tr(10, 2, 1, 5)])
    led.create_transfers([tr(11, 2, 1, 7)])
    history = led.get_account_balances(1)
    assert [h.credits_posted for h in history] == [5, 12]
    assert led.get_account_balances(2) == []
    at = led.balance_at(1, history[0].timestamp)
    assert at is not None and at.credits_posted == 5
    assert led.balance_at(1, 1) is None


def test_reopen_restores_the_same_books(open_ledger: Callable[[], Ledger], clock: FakeClock) -> None:
    led = open_ledger()
    accounts(led, (1, AF.HISTORY), (2, 0))
    led.create_transfers([tr(10, 2, 1, 5), tr(11, 2, 1, 9, TF.PENDING, timeout=10)])
    digest, head = led.digest(), led.head
    again = open_ledger()
    assert (again.digest(), again.head) == (digest, head)
    clock.advance(20)
    assert again.create_transfers([tr(12, 2, 1, 1)]) == [R.OK]
    assert balances(again, 1) == (0, 0, 0, 6)
    assert again.verify().ok


def test_bad_batches_change_nothing(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    before = led.digest()
    with pytest.raises(InvalidInputError, match="item 1"):
        led.create_transfers([tr(10, 1, 2, 1), "not a transfer"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        led.create_transfers(tr(10, 1, 2, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="exceeds the maximum"):
        led.create_transfers([tr(10 + i, 1, 2, 1) for i in range(8191)])
    with pytest.raises(InvalidInputError, match="ids"):
        led.lookup_accounts([-1])
    with pytest.raises(InvalidInputError, match="limit"):
        led.get_account_transfers(1, limit=0)
    assert led.create_transfers([tr(10, 1, 2, 1, flags=1 << 9)]) == [R.RESERVED_FLAG]
    assert led.digest() == before


def test_a_bad_clock_is_refused_before_anything_changes(store_url: str) -> None:
    led = Ledger.open(store_url, clock=lambda: 1.5)  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(InvalidInputError, match="clock"):
            led.create_accounts([Account(id=1, ledger=1, code=1)])
        assert led.lookup_accounts([1]) == []
    finally:
        led.close()
        if store_url.startswith("cassandra://"):
            drop_keyspace(store_url)  # a keyspace per test would fill a small Cassandra heap


def test_void_without_an_amount_voids_the_whole_pending_amount(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    led.create_transfers([tr(10, 1, 2, 70, TF.PENDING)])
    assert led.create_transfers([Transfer(id=11, pending_id=10, flags=TF.VOID_PENDING_TRANSFER)]) == [R.OK]
    assert led.lookup_transfers([11])[0].amount == 70
    assert balances(led, 1) == (0, 0, 0, 0)

"""TigerBeetle (>= 0.16.4) parity through the library API, on every store.

One rule per test, each stated as TigerBeetle's reference documents it
(docs/reference/requests/create_transfers.md and create_accounts.md): the order of checks
for an id that exists, ID_ALREADY_FAILED after a transient failure, closing accounts,
imported events, OVERFLOWS_TIMEOUT. Where the input space is wide, Hypothesis draws it
(on the in-memory store: one example costs one ledger).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    AMOUNT_MAX,
    TIMESTAMP_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    Transfer,
    TransferFlags,
    TransferPendingStatus,
)
from tests.support.clock import FakeClock

R = CreateTransferResult
A = CreateAccountResult
AF = AccountFlags
TF = TransferFlags
MAX = (1 << 128) - 1
NS = 1_000_000_000


def accounts(led: Ledger, *specs: tuple[int, int]) -> None:
    """Create accounts (id, flags) on ledger 1 with code 1."""
    assert led.create_accounts([Account(id=i, ledger=1, code=1, flags=f) for i, f in specs]) == [A.OK] * len(specs)


def tr(id: int, dr: int, cr: int, amount: int, flags: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, debit_account_id=dr, credit_account_id=cr, amount=amount, ledger=kw.pop("ledger", 1),
                    code=kw.pop("code", 1), flags=int(flags), **kw)


def balances(led: Ledger, account_id: int) -> tuple[int, int, int, int]:
    (a,) = led.lookup_accounts([account_id])
    return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted


def memory_ledger(now: int = 1_700_000_000 * NS) -> tuple[Ledger, FakeClock]:
    clock = FakeClock(now)
    return Ledger(clock=clock), clock


# ----------------------------------------------------------------------------- existing ids

TRANSFER_ORDER = [  # TigerBeetle's create_transfer_exists, for a transfer that is not a post/void
    ("flags", R.EXISTS_WITH_DIFFERENT_FLAGS),
    ("pending_id", R.EXISTS_WITH_DIFFERENT_PENDING_ID),
    ("timeout", R.EXISTS_WITH_DIFFERENT_TIMEOUT),
    ("debit_account_id", R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
    ("credit_account_id", R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
    ("amount", R.EXISTS_WITH_DIFFERENT_AMOUNT),
    ("user_data_128", R.EXISTS_WITH_DIFFERENT_USER_DATA_128),
    ("user_data_64", R.EXISTS_WITH_DIFFERENT_USER_DATA_64),
    ("user_data_32", R.EXISTS_WITH_DIFFERENT_USER_DATA_32),
    ("ledger", R.EXISTS_WITH_DIFFERENT_LEDGER),
    ("code", R.EXISTS_WITH_DIFFERENT_CODE),
]
ORIGINAL = {"id": 10, "debit_account_id": 1, "credit_account_id": 2, "amount": 5, "ledger": 1, "code": 1,
            "flags": int(TF.PENDING), "pending_id": 0, "timeout": 60, "user_data_128": 7, "user_data_64": 8,
            "user_data_32": 9}
OTHER = {"flags": int(TF.PENDING | TF.BALANCING_DEBIT), "pending_id": 99, "timeout": 61, "debit_account_id": 3,
         "credit_account_id": 3, "amount": 6, "user_data_128": MAX, "user_data_64": 0, "user_data_32": 1,
         "ledger": 2, "code": 0}


def test_resending_an_id_with_another_ledger_answers_exists_with_different_ledger(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 5)]) == [R.OK]
    # Ledger 2 names no account: before 0.16.4 this was TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS.
    assert led.create_transfers([tr(10, 1, 2, 5, ledger=2)]) == [R.EXISTS_WITH_DIFFERENT_LEDGER]
    assert led.create_transfers([tr(10, 1, 2, 5)]) == [R.EXISTS]


def test_an_existing_id_is_compared_before_the_body_is_validated(led: Ledger) -> None:
    accounts(led, (1, 0), (2, AF.DEBITS_MUST_NOT_EXCEED_CREDITS))
    assert led.create_transfers([tr(10, 1, 2, 5)]) == [R.OK]
    assert led.create_transfers([
        tr(10, 0, 2, 5),               # would be DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        tr(10, 1, 1, 5),               # would be ACCOUNTS_MUST_BE_DIFFERENT
        tr(10, 1, 2, 5, ledger=0),     # would be LEDGER_MUST_NOT_BE_ZERO
        tr(10, 1, 2, 5, code=0),       # would be CODE_MUST_NOT_BE_ZERO
        tr(10, 2, 1, 5),               # would be EXCEEDS_CREDITS
        tr(10, 9, 2, 5),               # would be DEBIT_ACCOUNT_NOT_FOUND
    ]) == [R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
           R.EXISTS_WITH_DIFFERENT_LEDGER, R.EXISTS_WITH_DIFFERENT_CODE, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
           R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID]
    assert balances(led, 1) == (0, 5, 0, 0)


@settings(max_examples=120, deadline=None)
@given(changed=st.sets(st.sampled_from([name for name, _ in TRANSFER_ORDER]), min_size=1))
def test_an_existing_transfer_answers_the_first_field_that_differs(changed: set[str]) -> None:
    led, _ = memory_ledger()
    accounts(led, (1, 0), (2, 0), (3, 0))
    assert led.create_transfers([Transfer(**ORIGINAL)]) == [R.OK]
    body = {**ORIGINAL, **{name: OTHER[name] for name in changed}}
    expected = next(code for name, code in TRANSFER_ORDER if name in changed)
    assert led.create_transfers([Transfer(**body)]) == [expected]
    assert led.create_transfers([Transfer(**ORIGINAL)]) == [R.EXISTS]


RESOLVE_ORDER = [  # TigerBeetle's post_or_void_pending_transfer_exists; zero fields mean "as the pending"
    ("flags", R.EXISTS_WITH_DIFFERENT_FLAGS, int(TF.VOID_PENDING_TRANSFER)),
    ("pending_id", R.EXISTS_WITH_DIFFERENT_PENDING_ID, 11),
    ("timeout", R.EXISTS_WITH_DIFFERENT_TIMEOUT, 1),
    ("debit_account_id", R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, 3),
    ("credit_account_id", R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID, 3),
    ("amount", R.EXISTS_WITH_DIFFERENT_AMOUNT, 4),
    ("user_data_128", R.EXISTS_WITH_DIFFERENT_USER_DATA_128, 5),
    ("user_data_64", R.EXISTS_WITH_DIFFERENT_USER_DATA_64, 5),
    ("user_data_32", R.EXISTS_WITH_DIFFERENT_USER_DATA_32, 5),
    ("ledger", R.EXISTS_WITH_DIFFERENT_LEDGER, 2),
    ("code", R.EXISTS_WITH_DIFFERENT_CODE, 2),
]


@settings(max_examples=120, deadline=None)
@given(changed=st.sets(st.sampled_from([name for name, _, _ in RESOLVE_ORDER]), min_size=1),
       explicit=st.booleans())
def test_a_resent_post_answers_the_first_field_that_differs(changed: set[str], explicit: bool) -> None:
    led, _ = memory_ledger()
    accounts(led, (1, 0), (2, 0), (3, 0))
    assert led.create_transfers([
        tr(10, 1, 2, 7, TF.PENDING, user_data_64=1), tr(11, 1, 2, 7, TF.PENDING),
    ]) == [R.OK, R.OK]
    post = {"id": 20, "pending_id": 10, "amount": AMOUNT_MAX, "flags": int(TF.POST_PENDING_TRANSFER)}
    assert led.create_transfers([Transfer(**post)]) == [R.OK]
    again = dict(post)
    if explicit:  # a resend may spell out what the post resolved to, or leave it to the pending
        again.update(debit_account_id=1, credit_account_id=2, amount=7, ledger=1, code=1, user_data_64=1)
    assert led.create_transfers([Transfer(**again)]) == [R.EXISTS]
    body = {**again, **{name: value for name, _, value in RESOLVE_ORDER if name in changed}}
    expected = next(code for name, code, _ in RESOLVE_ORDER if name in changed)
    assert led.create_transfers([Transfer(**body)]) == [expected]


ACCOUNT_ORDER = [
    ("flags", A.EXISTS_WITH_DIFFERENT_FLAGS, int(AF.HISTORY)),
    ("user_data_128", A.EXISTS_WITH_DIFFERENT_USER_DATA_128, MAX),
    ("user_data_64", A.EXISTS_WITH_DIFFERENT_USER_DATA_64, 1),
    ("user_data_32", A.EXISTS_WITH_DIFFERENT_USER_DATA_32, 1),
    ("ledger", A.EXISTS_WITH_DIFFERENT_LEDGER, 0),
    ("code", A.EXISTS_WITH_DIFFERENT_CODE, 0),
]


@settings(max_examples=60, deadline=None)
@given(changed=st.sets(st.sampled_from([name for name, _, _ in ACCOUNT_ORDER]), min_size=1))
def test_an_existing_account_answers_the_first_field_that_differs(changed: set[str]) -> None:
    led, _ = memory_ledger()
    original = {"id": 1, "ledger": 1, "code": 1}
    assert led.create_accounts([Account(**original)]) == [A.OK]
    body = {**original, **{name: value for name, _, value in ACCOUNT_ORDER if name in changed}}
    expected = next(code for name, code, _ in ACCOUNT_ORDER if name in changed)
    assert led.create_accounts([Account(**body)]) == [expected]


def test_account_checks_in_tigerbeetles_order(led: Ledger) -> None:
    assert led.create_accounts([
        Account(id=0, ledger=0, code=0, flags=1 << 9),  # reserved flag first
        Account(id=0, ledger=0, code=0),
        Account(id=MAX, ledger=0, code=0),
        Account(id=2, ledger=0, code=0, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        Account(id=2, ledger=0, code=0),
        Account(id=2, ledger=1, code=0),
        Account(id=2, ledger=1, code=1, timestamp=5),
    ]) == [A.RESERVED_FLAG, A.ID_MUST_NOT_BE_ZERO, A.ID_MUST_NOT_BE_INT_MAX, A.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
           A.LEDGER_MUST_NOT_BE_ZERO, A.CODE_MUST_NOT_BE_ZERO, A.TIMESTAMP_MUST_BE_ZERO]
    assert led.lookup_accounts([0, 2, MAX]) == []


def test_transfer_checks_in_tigerbeetles_order(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_accounts([Account(id=9, ledger=2, code=1)]) == [A.OK]
    assert led.create_transfers([
        tr(1, 1, 2, 1, timestamp=3),
        tr(1, 0, 0, 1, flags=1 << 9),
        tr(0, 0, 0, 1),
        tr(MAX, 0, 0, 1),
        Transfer(id=1, pending_id=5, flags=TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER),
        tr(1, 0, 2, 1), tr(1, MAX, 2, 1), tr(1, 1, 0, 1), tr(1, 1, MAX, 1), tr(1, 1, 1, 1),
        tr(1, 1, 2, 1, pending_id=5),
        tr(1, 1, 2, 1, timeout=1),
        tr(1, 1, 2, 1, TF.CLOSING_DEBIT),
        tr(1, 1, 2, 1, ledger=0), tr(1, 1, 2, 1, code=0),
        tr(1, 8, 2, 1), tr(2, 1, 8, 1), tr(3, 1, 9, 1), tr(4, 1, 2, 1, ledger=2),
    ]) == [
        R.TIMESTAMP_MUST_BE_ZERO, R.RESERVED_FLAG, R.ID_MUST_NOT_BE_ZERO, R.ID_MUST_NOT_BE_INT_MAX,
        R.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX, R.ACCOUNTS_MUST_BE_DIFFERENT,
        R.PENDING_ID_MUST_BE_ZERO, R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, R.CLOSING_TRANSFER_MUST_BE_PENDING,
        R.LEDGER_MUST_NOT_BE_ZERO, R.CODE_MUST_NOT_BE_ZERO,
        R.DEBIT_ACCOUNT_NOT_FOUND, R.CREDIT_ACCOUNT_NOT_FOUND, R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
        R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
    ]
    assert led.lookup_transfers([1, 2, 3, 4]) == []


def test_a_void_of_amount_max_exceeds_the_pending_amount_as_in_tigerbeetle(led: Ledger) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 5, TF.PENDING)]) == [R.OK]
    assert led.create_transfers([
        Transfer(id=11, pending_id=10, amount=AMOUNT_MAX, flags=TF.VOID_PENDING_TRANSFER),
        Transfer(id=12, pending_id=10, amount=4, flags=TF.VOID_PENDING_TRANSFER),
        Transfer(id=13, pending_id=10, amount=5, flags=TF.VOID_PENDING_TRANSFER),
    ]) == [R.EXCEEDS_PENDING_TRANSFER_AMOUNT, R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, R.OK]


# ----------------------------------------------------------------------------- ID_ALREADY_FAILED

def test_every_transient_failure_burns_its_id_for_good(open_ledger: Callable[[], Ledger]) -> None:
    led = open_ledger()
    accounts(led, (1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (2, AF.CREDITS_MUST_NOT_EXCEED_DEBITS), (3, 0))
    assert led.create_transfers([tr(90, 3, 4, 1, TF.PENDING | TF.CLOSING_DEBIT)]) == [R.CREDIT_ACCOUNT_NOT_FOUND]
    attempts = [
        (tr(10, 9, 3, 1), R.DEBIT_ACCOUNT_NOT_FOUND),
        (tr(11, 3, 9, 1), R.CREDIT_ACCOUNT_NOT_FOUND),
        (Transfer(id=12, pending_id=99, flags=TF.POST_PENDING_TRANSFER), R.PENDING_TRANSFER_NOT_FOUND),
        (tr(13, 1, 3, 5), R.EXCEEDS_CREDITS),
        (tr(14, 3, 2, 5), R.EXCEEDS_DEBITS),
    ]
    assert led.create_transfers([t for t, _ in attempts]) == [r for _, r in attempts]
    # Fix every cause: the accounts exist, there is money, the pending transfer exists...
    accounts(led, (9, 0))
    assert led.create_transfers([tr(20, 3, 1, 50), tr(21, 2, 3, 50), tr(99, 3, 9, 1, TF.PENDING)]) == [R.OK] * 3
    # ...and the same ids still never succeed, even after a reopen.
    again = open_ledger()
    assert again.create_transfers([t for t, _ in attempts]) == [R.ID_ALREADY_FAILED] * len(attempts)
    assert again.lookup_transfers([10, 11, 12, 13, 14]) == []
    # Closed accounts: transient too.
    assert again.create_transfers([tr(30, 9, 3, 0, TF.PENDING | TF.CLOSING_DEBIT)]) == [R.OK]
    assert again.create_transfers([tr(31, 9, 3, 1), tr(32, 3, 9, 1)]) == [
        R.DEBIT_ACCOUNT_ALREADY_CLOSED, R.CREDIT_ACCOUNT_ALREADY_CLOSED]
    assert again.create_transfers([Transfer(id=33, pending_id=30, flags=TF.VOID_PENDING_TRANSFER)]) == [R.OK]
    assert again.create_transfers([tr(31, 9, 3, 1), tr(32, 3, 9, 1)]) == [R.ID_ALREADY_FAILED] * 2
    assert again.verify().ok


def test_failures_that_are_not_transient_leave_the_id_free(led: Ledger) -> None:
    accounts(led, (1, 0), (2, AF.DEBITS_MUST_NOT_EXCEED_CREDITS))
    assert led.create_transfers([
        tr(10, 1, 2, 5, ledger=0),       # malformed: LEDGER_MUST_NOT_BE_ZERO
        tr(11, 1, 2, 5, TF.LINKED),      # rolled back with its chain: LINKED_EVENT_FAILED
        tr(12, 2, 1, 6),                 # breaks the chain: EXCEEDS_CREDITS, transient
    ]) == [R.LEDGER_MUST_NOT_BE_ZERO, R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert led.create_transfers([tr(10, 1, 2, 5), tr(11, 1, 2, 5), tr(12, 1, 2, 5)]) == [
        R.OK, R.OK, R.ID_ALREADY_FAILED]


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["ok", "missing", "exceeds", "malformed"])),
                     min_size=1, max_size=25))
def test_an_id_is_never_answered_two_different_transient_outcomes(plan: list[tuple[int, str]]) -> None:
    """Whatever is resent, an id that once failed transiently never later succeeds."""
    led, _ = memory_ledger()
    accounts(led, (1, 0), (2, AF.DEBITS_MUST_NOT_EXCEED_CREDITS))
    burnt: set[int] = set()
    made: set[int] = set()
    for tid, how in plan:
        t = {"ok": tr(tid, 1, 2, 1), "missing": tr(tid, 1, 7, 1), "exceeds": tr(tid, 2, 1, 1),
             "malformed": tr(tid, 1, 2, 1, code=0)}[how]
        (result,) = led.create_transfers([t])
        if tid in made:
            assert result not in (R.OK, R.ID_ALREADY_FAILED) and not result.transient
        elif tid in burnt:
            assert result == R.ID_ALREADY_FAILED
        elif result == R.OK:
            made.add(tid)
        elif result.transient:
            burnt.add(tid)
    assert sorted(t.id for t in led.lookup_transfers(range(1, 7))) == sorted(made)


# ----------------------------------------------------------------------------- closing accounts

def test_a_closing_transfer_closes_and_its_void_reopens(open_ledger: Callable[[], Ledger]) -> None:
    led = open_ledger()
    accounts(led, (1, 0), (2, 0), (3, 0))
    assert led.create_transfers([tr(5, 3, 1, 10), tr(6, 1, 3, 4, TF.PENDING)]) == [R.OK, R.OK]
    assert led.create_transfers([
        tr(10, 1, 2, 0, TF.CLOSING_DEBIT),                       # must be pending
        tr(11, 1, 2, 0, TF.PENDING | TF.CLOSING_DEBIT | TF.CLOSING_CREDIT),
    ]) == [R.CLOSING_TRANSFER_MUST_BE_PENDING, R.OK]
    (a1, a2) = led.lookup_accounts([1, 2])
    assert a1.flags & AF.CLOSED and a2.flags & AF.CLOSED
    reopened = open_ledger()
    assert reopened.create_transfers([
        tr(12, 3, 1, 1), tr(13, 2, 3, 1),                                         # closed: no new transfer
        Transfer(id=14, pending_id=6, flags=TF.POST_PENDING_TRANSFER),            # nor a post
        Transfer(id=15, pending_id=11, amount=AMOUNT_MAX, flags=TF.POST_PENDING_TRANSFER),
        Transfer(id=16, pending_id=6, flags=TF.VOID_PENDING_TRANSFER | TF.CLOSING_DEBIT),
        Transfer(id=17, pending_id=6, flags=TF.VOID_PENDING_TRANSFER),           # but a void, yes
    ]) == [R.CREDIT_ACCOUNT_ALREADY_CLOSED, R.DEBIT_ACCOUNT_ALREADY_CLOSED, R.DEBIT_ACCOUNT_ALREADY_CLOSED,
           R.DEBIT_ACCOUNT_ALREADY_CLOSED, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE, R.OK]
    assert balances(reopened, 1) == (0, 0, 0, 10)
    assert reopened.create_transfers([Transfer(id=18, pending_id=11, flags=TF.VOID_PENDING_TRANSFER)]) == [R.OK]
    (a1, a2) = reopened.lookup_accounts([1, 2])
    assert not a1.flags & AF.CLOSED and not a2.flags & AF.CLOSED
    assert reopened.create_transfers([tr(19, 1, 2, 1)]) == [R.OK]
    assert reopened.verify().ok


def test_an_expired_closing_transfer_reopens_the_account(led: Ledger, clock: FakeClock) -> None:
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 0, TF.PENDING | TF.CLOSING_CREDIT, timeout=2)]) == [R.OK]
    assert led.lookup_accounts([2])[0].flags & AF.CLOSED
    clock.now = led.lookup_transfers([10])[0].timestamp + 2 * NS
    assert not led.lookup_accounts([2])[0].flags & AF.CLOSED
    assert led.lookup_transfers([10])[0].pending_status == TransferPendingStatus.EXPIRED


def test_a_failed_chain_leaves_the_account_open(led: Ledger) -> None:
    accounts(led, (1, 0), (2, AF.DEBITS_MUST_NOT_EXCEED_CREDITS), (3, 0))
    assert led.create_transfers([
        tr(10, 1, 2, 0, TF.PENDING | TF.CLOSING_DEBIT | TF.LINKED),
        tr(11, 2, 3, 1),
    ]) == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert not led.lookup_accounts([1])[0].flags & AF.CLOSED


# ----------------------------------------------------------------------------- imported events

def test_importing_history_with_its_own_timestamps(open_ledger: Callable[[], Ledger], clock: FakeClock) -> None:
    led = open_ledger()
    t = clock.now - 10_000
    assert led.create_accounts([
        Account(id=1, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t),
        Account(id=2, ledger=1, code=1, flags=AF.IMPORTED | AF.HISTORY, timestamp=t + 1),
    ]) == [A.OK, A.OK]
    assert led.create_transfers([
        tr(10, 1, 2, 7, TF.IMPORTED, timestamp=t + 5),
        tr(11, 1, 2, 3, TF.IMPORTED | TF.PENDING, timestamp=t + 6),
        Transfer(id=12, pending_id=11, amount=AMOUNT_MAX, flags=TF.IMPORTED | TF.POST_PENDING_TRANSFER,
                 timestamp=t + 7),
    ]) == [R.OK, R.OK, R.OK]
    again = open_ledger()
    assert [a.timestamp for a in again.lookup_accounts([1, 2])] == [t, t + 1]
    assert [x.timestamp for x in again.lookup_transfers([10, 11, 12])] == [t + 5, t + 6, t + 7]
    assert [h.timestamp for h in again.get_account_balances(2)] == [t + 5, t + 6, t + 7]
    assert balances(again, 2) == (0, 0, 0, 10)
    # New, non-imported events come after, stamped by the ledger.
    assert again.create_transfers([tr(13, 1, 2, 1)]) == [R.OK]
    assert again.lookup_transfers([13])[0].timestamp > t + 7
    assert again.verify().ok


def test_import_rules(led: Ledger, clock: FakeClock) -> None:
    t = clock.now - 10_000
    assert led.create_accounts([
        Account(id=1, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t),
        Account(id=2, ledger=1, code=1),                                              # not imported
        Account(id=3, ledger=1, code=1, flags=AF.IMPORTED, timestamp=0),              # no timestamp
        Account(id=4, ledger=1, code=1, flags=AF.IMPORTED, timestamp=TIMESTAMP_MAX + 1),
        Account(id=5, ledger=1, code=1, flags=AF.IMPORTED, timestamp=clock.now + 10**12),  # the future
        Account(id=6, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t),              # not after account 1
        Account(id=7, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t + 100),
    ]) == [A.OK, A.IMPORTED_EVENT_EXPECTED, A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
           A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
           A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, A.OK]
    assert led.create_accounts([
        Account(id=8, ledger=1, code=1), Account(id=9, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t + 200),
    ]) == [A.OK, A.IMPORTED_EVENT_NOT_EXPECTED]
    assert led.create_transfers([
        tr(10, 1, 7, 1, TF.IMPORTED, timestamp=t + 50),      # before account 7 existed
        tr(11, 7, 1, 1, TF.IMPORTED, timestamp=t + 50),
        tr(12, 1, 7, 1, TF.IMPORTED | TF.PENDING, timeout=5, timestamp=t + 150),
        tr(13, 1, 7, 1, TF.IMPORTED, timestamp=t + 100),     # equal to account 7's timestamp
        tr(14, 1, 7, 1, TF.IMPORTED, timestamp=t + 150),
        tr(15, 1, 7, 1, TF.IMPORTED, timestamp=t + 150),     # not after transfer 14
        tr(16, 1, 7, 1, timestamp=0),                        # not imported in an imported batch
    ]) == [R.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,
           R.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT, R.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO,
           R.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, R.OK, R.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
           R.IMPORTED_EVENT_EXPECTED]
    # An imported account may not share a transfer's timestamp either.
    assert led.create_accounts([Account(id=20, ledger=1, code=1, flags=AF.IMPORTED, timestamp=t + 150)]) == [
        A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS]
    assert led.verify().ok


# ----------------------------------------------------------------------------- time limits

def test_a_timeout_must_end_before_2_to_the_63(open_ledger: Callable[[], Ledger], clock: FakeClock) -> None:
    clock.now = TIMESTAMP_MAX - 100 * NS
    led = open_ledger()
    accounts(led, (1, 0), (2, 0))
    assert led.create_transfers([
        tr(10, 1, 2, 1, TF.PENDING, timeout=200), tr(11, 1, 2, 1, TF.PENDING, timeout=50),
    ]) == [R.OVERFLOWS_TIMEOUT, R.OK]
    clock.now = TIMESTAMP_MAX
    before = led.digest()
    with pytest.raises(InvalidInputError, match="2\\^63"):
        led.create_transfers([tr(12, 1, 2, 1)])
    assert led.digest() == before


# ----------------------------------------------------------------------------- expiry by the clock

@pytest.mark.parametrize("reader", ["lookup_accounts", "lookup_transfers", "statement", "balances", "query"])
def test_expiry_is_seen_by_every_reader_without_a_write(
    open_ledger: Callable[[], Ledger], clock: FakeClock, reader: str,
) -> None:
    led = open_ledger()
    accounts(led, (1, AF.HISTORY), (2, 0))
    assert led.create_transfers([tr(10, 1, 2, 70, TF.PENDING, timeout=5)]) == [R.OK]
    deadline = led.lookup_transfers([10])[0].timestamp + 5 * NS
    clock.now = deadline - 1
    assert balances(led, 1) == (70, 0, 0, 0)
    clock.now = deadline
    seen = {
        "lookup_accounts": lambda: balances(led, 1),
        "lookup_transfers": lambda: led.lookup_transfers([10])[0].pending_status,
        "statement": lambda: led.get_account_transfers(1)[0].pending_status,
        "balances": lambda: led.get_account_balances(1)[-1].debits_pending,
        "query": lambda: led.query_transfers(ledger=1)[0].pending_status,
    }[reader]()
    assert seen == {"lookup_accounts": (0, 0, 0, 0), "balances": 0}.get(reader, TransferPendingStatus.EXPIRED)
    history = led.get_account_balances(1)
    assert [h.debits_pending for h in history] == [70, 0]
    assert history[1].timestamp == deadline
    digest = led.digest()
    led = open_ledger()  # the reopen closes the first (one writer per store)
    assert led.digest() == digest  # the expiry was committed, not just shown
    assert led.create_transfers([Transfer(id=11, pending_id=10, flags=TF.VOID_PENDING_TRANSFER)]) == [
        R.PENDING_TRANSFER_EXPIRED]
    assert led.verify().ok


def test_tick_expires_without_reading(led: Ledger, clock: FakeClock) -> None:
    accounts(led, (1, 0), (2, 0))
    led.create_transfers([tr(10, 1, 2, 1, TF.PENDING, timeout=1), tr(11, 1, 2, 2, TF.PENDING, timeout=3)])
    assert led.tick() == 0
    clock.now = led.lookup_transfers([10])[0].timestamp + NS
    assert led.tick() == 1
    clock.advance(5)
    assert led.tick() == 1
    assert led.tick() == 0
    assert balances(led, 1) == (0, 0, 0, 0)

"""`query_accounts` / `query_transfers` (TigerBeetle's QueryFilter), on every store.

The reference is a plain list filter over everything the test created; the ledger must
give the same answer, in the same order, through its posting-list indexes, after any mix
of batches, failed linked chains and reopening. A counting test shows the index walks the
matching rows, not the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.query_index as query_index
from ledger import (
    BATCH_MAX,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
)
from tests.support.clock import FakeClock

R = CreateTransferResult
MAX = (1 << 128) - 1
U64 = (1 << 64) - 1

values_128 = st.sampled_from([0, 1, 2, MAX])
values_64 = st.sampled_from([0, 1, U64])
values_32 = st.sampled_from([0, 1, 2])
ledgers = st.sampled_from([1, 2])
codes = st.sampled_from([1, 2, 3])


def _matches(obj: Any, q: QueryFilter) -> bool:
    for name in ("user_data_128", "user_data_64", "user_data_32", "ledger", "code"):
        if getattr(q, name) and getattr(obj, name) != getattr(q, name):
            return False
    if q.timestamp_min and obj.timestamp < q.timestamp_min:
        return False
    return not (q.timestamp_max and obj.timestamp > q.timestamp_max)


def expected(objects: list[Any], q: QueryFilter) -> list[int]:
    """The reference answer: filter everything, sort by time, page."""
    found = sorted((o for o in objects if _matches(o, q)), key=lambda o: o.timestamp, reverse=q.reversed)
    return [o.id for o in found[: min(q.limit, BATCH_MAX)]]


filters = st.builds(
    QueryFilter, user_data_128=values_128, user_data_64=values_64, user_data_32=values_32,
    ledger=st.sampled_from([0, 0, 1, 2]), code=st.sampled_from([0, 0, 1, 2, 3]), limit=st.integers(1, 12),
    flags=st.sampled_from([0, int(QueryFilterFlags.REVERSED)]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_queries_answer_as_a_filter_of_everything(data: st.DataObject) -> None:
    clock = FakeClock()
    led = Ledger(clock=clock)
    accounts: list[Account] = []
    for i in range(1, data.draw(st.integers(2, 7)) + 1):
        a = Account(id=i, ledger=data.draw(ledgers), code=data.draw(codes), user_data_128=data.draw(values_128),
                    user_data_64=data.draw(values_64), user_data_32=data.draw(values_32))
        assert led.create_accounts([a]) == [CreateAccountResult.OK]
        accounts.append(a)
    tid = 0
    for _ in range(data.draw(st.integers(0, 6), label="batches")):
        batch = []
        for _ in range(data.draw(st.integers(1, 8))):
            tid += 1
            dr, cr = data.draw(st.lists(st.sampled_from(accounts), min_size=2, max_size=2, unique=True))
            batch.append(Transfer(
                id=tid, debit_account_id=dr.id, credit_account_id=cr.id, amount=1, ledger=dr.ledger,
                code=data.draw(codes), user_data_128=data.draw(values_128), user_data_64=data.draw(values_64),
                user_data_32=data.draw(values_32), flags=int(data.draw(st.sampled_from([0, 0, TransferFlags.LINKED]))),
            ))
        led.create_transfers(batch)  # chains across ledgers fail and roll back: the index must follow
        clock.advance(data.draw(st.sampled_from([0, 1])))
        _agree(led, data, tid, queries=data.draw(st.integers(0, 2)))  # the indexes catch up as they go
    _agree(led, data, tid, queries=6)


def _agree(led: Ledger, data: st.DataObject, tid: int, queries: int) -> None:
    made_accounts = led.lookup_accounts(range(1, 8))
    made_transfers = led.lookup_transfers(range(1, tid + 1))
    stamps = sorted(t.timestamp for t in made_transfers + made_accounts)
    for _ in range(queries):
        q = data.draw(filters)
        if stamps and data.draw(st.booleans()):
            lo, hi = sorted(data.draw(st.sampled_from(stamps)) for _ in range(2))
            q = QueryFilter(**{**_fields(q), "timestamp_min": lo, "timestamp_max": hi})
        assert [a.id for a in led.query_accounts(q)] == expected(made_accounts, q)
        assert [t.id for t in led.query_transfers(q)] == expected(made_transfers, q)


def _fields(q: QueryFilter) -> dict[str, int]:
    return {name: getattr(q, name) for name in q.__slots__}


def test_queries_on_every_store(open_ledger: Callable[[], Ledger], clock: FakeClock) -> None:
    led = open_ledger()
    assert led.create_accounts([
        Account(id=1, ledger=840, code=1, user_data_128=77), Account(id=2, ledger=840, code=2),
        Account(id=3, ledger=978, code=1, user_data_128=77), Account(id=4, ledger=978, code=2),
    ]) == [CreateAccountResult.OK] * 4
    assert led.create_transfers([
        Transfer(id=10 + i, debit_account_id=1 + 2 * (i % 2), credit_account_id=2 + 2 * (i % 2), amount=i,
                 ledger=840 if i % 2 == 0 else 978, code=1 + i % 3, user_data_64=i // 4, user_data_32=5)
        for i in range(12)
    ]) == [R.OK] * 12

    def check(led_: Ledger) -> None:
        assert [a.id for a in led_.query_accounts(user_data_128=77)] == [1, 3]
        assert [a.id for a in led_.query_accounts(ledger=978, code=2)] == [4]
        assert [t.id for t in led_.query_transfers(ledger=840, limit=3)] == [10, 12, 14]
        assert [t.id for t in led_.query_transfers(ledger=840, reverse=True, limit=2)] == [20, 18]
        assert [t.id for t in led_.query_transfers(user_data_64=2, code=1)] == [19]
        assert [t.id for t in led_.query_transfers(QueryFilter(user_data_32=5, ledger=978, code=2))] == [11, 17]
        page = led_.query_transfers(user_data_32=5, limit=5)
        rest = led_.query_transfers(user_data_32=5, limit=100, timestamp_min=page[-1].timestamp + 1)
        assert [t.id for t in page + rest] == list(range(10, 22))
        assert led_.query_transfers(user_data_128=1) == []

    check(led)
    check(open_ledger())  # as restored (the reopen closes the first: one writer per store)


def test_a_query_walks_the_matching_rows_not_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    led = Ledger(clock=FakeClock())
    led.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    n = 20_000
    for start in range(0, n, BATCH_MAX):
        led.create_transfers([
            Transfer(id=1 + k, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1,
                     user_data_64=k % 1000, user_data_32=7 if k % 4000 == 0 else 0)
            for k in range(start, min(n, start + BATCH_MAX))
        ])
    checked: list[int] = []
    real = query_index._matches

    def counting(rows: Any, slots: Any, name: str, value: int) -> Any:
        checked.append(len(slots))
        return real(rows, slots, name, value)

    monkeypatch.setattr(query_index, "_matches", counting)
    assert [t.id for t in led.query_transfers(user_data_32=7, ledger=1, code=1)] == [1, 4001, 8001, 12001, 16001]
    assert max(checked) == 5  # the 5 rows of the shortest posting list, never the 20,000
    checked.clear()
    assert [t.id for t in led.query_transfers(user_data_64=3, limit=2, reverse=True)] == [19004, 18004]
    assert checked == []  # one field: its posting list is the answer


@pytest.mark.parametrize("bad", [
    {"limit": 0}, {"limit": -1}, {"limit": 1 << 32}, {"limit": 1.5}, {"ledger": -1}, {"code": 1 << 16},
    {"user_data_128": 1 << 128}, {"user_data_64": "1"}, {"timestamp_min": U64}, {"timestamp_max": U64},
    {"timestamp_min": 5, "timestamp_max": 4}, {"flags": 2}, {"reverse": 1}, {"nonsense": 1},
])
def test_bad_filters_are_refused_clearly(bad: dict[str, Any]) -> None:
    led = Ledger()
    with pytest.raises(InvalidInputError):
        led.query_transfers(**bad)
    with pytest.raises(InvalidInputError):
        led.query_accounts(**bad)


def test_a_filter_and_keywords_together_are_refused() -> None:
    led = Ledger()
    with pytest.raises(InvalidInputError, match="not both"):
        led.query_transfers(QueryFilter(ledger=1), code=1)
    with pytest.raises(InvalidInputError, match="QueryFilter"):
        led.query_transfers({"ledger": 1})  # type: ignore[arg-type]


def test_results_are_capped_at_one_message() -> None:
    led = Ledger(clock=FakeClock())
    led.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    for start in range(0, BATCH_MAX + 10, BATCH_MAX):
        led.create_transfers([Transfer(id=1 + k, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)
                              for k in range(start, min(BATCH_MAX + 10, start + BATCH_MAX))])
    assert len(led.query_transfers(ledger=1, limit=(1 << 32) - 1)) == BATCH_MAX

"""The bulk route (`POST /transfers/bulk`, rows of `cext.layout.TRANSFER_DTYPE`): the same
answers as the JSON batch for every transfer JSON can carry, and hostile bodies refused
with a clear 4xx that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.codec import transfers_to_rows
from cext.layout import TRANSFER_DTYPE
from ledger import Ledger, Transfer
from ledger.types import TRANSFER_FLAGS_KNOWN, U128_MAX
from load import bulk
from load.auth import BANK_ACCOUNTS, Credentials, Role, TokenVerifier
from load.gateway import LedgerBackend, create_app
from replication.ids import CREDIT_BIT, GENESIS_BIT, transfer_id
from replication.outcomes import outcome_name
from tests.support.region_app import region_app

CREDS = Credentials.generate()
PAYMENTS, AUDITOR, OPERATOR = (CREDS.header(r) for r in (Role.PAYMENTS, Role.AUDITOR, Role.OPERATOR))
OCTETS = {"content-type": bulk.MEDIA_TYPE}
ACCOUNTS = [{"id": 1, "ledger": 156, "code": 1, "flags": 2}, {"id": 2, "ledger": 156, "code": 1},
            {"id": 3, "ledger": 156, "code": 1}]


def gateway(led: Ledger) -> TestClient:
    client = TestClient(create_app(LedgerBackend(led, "beijing"), auth=TokenVerifier(CREDS.digests()),
                                   max_wait=0.001), headers=PAYMENTS)
    return client


@pytest.fixture
def served() -> Iterator[tuple[TestClient, Ledger]]:
    led = Ledger()
    with gateway(led) as c:
        assert c.post("/accounts", headers=OPERATOR, json=ACCOUNTS).status_code == 200
        yield c, led


def send(client: TestClient, rows: np.ndarray | bytes, **headers: str) -> Any:
    body = rows.tobytes() if isinstance(rows, np.ndarray) else rows
    return client.post("/transfers/bulk", content=body, headers={**OCTETS, **headers})


def results(client: TestClient, transfers: list[Transfer]) -> list[str]:
    r = send(client, transfers_to_rows(transfers))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == bulk.MEDIA_TYPE
    return [outcome_name(c) for c in bulk.decode_results(r.content, len(transfers))]


def pay(tid: int, dr: int = 2, cr: int = 1, amount: int = 5, **extra: Any) -> Transfer:
    return Transfer(id=tid, debit_account_id=dr, credit_account_id=cr, amount=amount, ledger=156, code=1, **extra)


def state(led: Ledger) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was: balances, transfers, the log."""
    return (led.lookup_accounts([1, 2, 3]), led.query_transfers(limit=8190), len(list(led.changes())))


def test_results_come_back_compact_and_in_order(served: tuple[TestClient, Ledger]) -> None:
    client, led = served
    batch = [pay(10), pay(10), pay(11, 1, 2, 501), pay(12, 3, 2, U128_MAX), pay(14, 3, 2, 1)]
    assert results(client, batch) == ["OK", "EXISTS", "EXCEEDS_CREDITS", "OK", "OVERFLOWS_DEBITS_POSTED"]
    r = send(client, transfers_to_rows([pay(13)]))
    assert (r.status_code, r.content) == (200, b"")  # all OK: nothing to report
    assert led.lookup_accounts([1])[0].credits_posted == 10
    assert led.lookup_accounts([3])[0].debits_posted == U128_MAX


def test_linked_chains_span_the_body(served: tuple[TestClient, Ledger]) -> None:
    client, _ = served
    assert results(client, [pay(30, flags=1), pay(31, 1, 2, 50)]) == ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"]
    assert results(client, [pay(32, flags=1)]) == ["LINKED_EVENT_CHAIN_OPEN"]


_u128_edges = st.sampled_from([0, 1, 2, 3, 5, (1 << 64) - 1, 1 << 64, (1 << 127), U128_MAX - 1, U128_MAX])
_transfer = st.builds(
    dict,
    id=st.one_of(st.integers(1, 40), st.sampled_from([U128_MAX - 1, 1 << 64, CREDIT_BIT | 7, GENESIS_BIT | 1])),
    debit_account_id=st.one_of(st.integers(0, 4), _u128_edges), credit_account_id=st.one_of(st.integers(0, 4),
                                                                                            _u128_edges),
    amount=st.one_of(st.integers(0, 50), _u128_edges), ledger=st.sampled_from([0, 156, 7]),
    code=st.sampled_from([0, 1, 65535]), flags=st.integers(0, TRANSFER_FLAGS_KNOWN),
    pending_id=st.one_of(st.just(0), st.integers(1, 40), _u128_edges), timeout=st.sampled_from([0, 1, (1 << 32) - 1]),
    user_data_128=_u128_edges, user_data_64=st.sampled_from([0, (1 << 64) - 1]),
    user_data_32=st.sampled_from([0, (1 << 32) - 1]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_transfer, min_size=1, max_size=12), min_size=1, max_size=4))
def test_binary_and_json_give_the_same_answers(batches: list[list[dict[str, int]]]) -> None:
    """Any sequence of batches JSON accepts, sent as rows to a twin ledger: the same results,
    the same books (u128 edges, every flag, pending ids, reserved-looking ids)."""
    json_led, bulk_led = Ledger(clock=_clock()), Ledger(clock=_clock())
    with gateway(json_led) as j, gateway(bulk_led) as b:
        for c in (j, b):
            assert c.post("/accounts", headers=OPERATOR, json=ACCOUNTS).status_code == 200
        for batch in batches:
            via_json = j.post("/transfers/batch", json=batch)
            assert via_json.status_code == 200, via_json.text
            assert results(b, [Transfer(**t) for t in batch]) == [o["result"] for o in via_json.json()]
        assert state(json_led) == state(bulk_led)


def _clock() -> Any:
    """The same ledger time for both twins: a counter, not the wall clock."""
    now = iter(range(10**9, 10**18, 10**9))
    return lambda: next(now)


def _row(**fields: int) -> np.ndarray:
    rows = transfers_to_rows([pay(50)])
    for name, value in fields.items():
        rows[name] = value
    return rows


@pytest.mark.parametrize("body,status,needle", [
    (b"", 422, "empty body"),
    (b"\0" * 127, 422, "not a whole number"),
    (_row().tobytes()[:-1], 422, "not a whole number"),
    (_row().tobytes() + b"\0", 422, "not a whole number"),
    (_row(id_lo=0, id_hi=0).tobytes(), 422, "id must be at least 1"),
    (_row(id_lo=(1 << 64) - 1, id_hi=(1 << 64) - 1).tobytes(), 422, "id must be below 2^128-1"),
    (_row(flags=TRANSFER_FLAGS_KNOWN + 1).tobytes(), 422, "flags"),
    (_row(flags=0xFFFF).tobytes(), 422, "flags"),
    (_row(timestamp=1).tobytes(), 422, "timestamp must be 0"),
    (np.concatenate([_row(), _row(timestamp=1 << 63)]).tobytes(), 422, "row 1: timestamp"),
    (b"\0" * (bulk.BULK_BODY_MAX + bulk.ROW_BYTES), 413, "at most 8190"),
    (b"\xff" * bulk.ROW_BYTES, 422, "id must be below"),
])
def test_hostile_bodies_are_refused_and_change_nothing(served: tuple[TestClient, Ledger], body: bytes, status: int,
                                                        needle: str) -> None:
    client, led = served
    results(client, [pay(1)])
    before = state(led)
    r = send(client, body)
    assert r.status_code == status, r.text
    assert needle in str(r.json()["detail"])
    assert state(led) == before


def test_a_chunked_body_past_the_cap_is_refused(served: tuple[TestClient, Ledger]) -> None:
    client, led = served
    before = state(led)
    chunks = (b"\0" * bulk.ROW_BYTES * 1000 for _ in range(9))  # no Content-Length: counted as it streams
    assert client.post("/transfers/bulk", content=chunks, headers=OCTETS).status_code == 413
    assert state(led) == before


@pytest.mark.parametrize("field", ["debit_account_id", "credit_account_id"])
@pytest.mark.parametrize("account", [BANK_ACCOUNTS.start, BANK_ACCOUNTS.stop - 1])
def test_payments_may_not_name_bank_accounts(served: tuple[TestClient, Ledger], field: str, account: int) -> None:
    client, led = served
    before = state(led)
    rows = np.concatenate([_row(), _row(**{f"{field}_lo": account, "id_lo": 51})])
    r = send(client, rows)
    assert r.status_code == 403
    assert r.json()["detail"]["rule"] == "ACCOUNT_IS_BANK_INTERNAL"
    assert (r.json()["detail"]["index"], r.json()["detail"]["field"]) == (1, field)
    assert state(led) == before
    # just outside the range, and the same low word in a u128 above it, are customers' ids
    for lo, hi in ((BANK_ACCOUNTS.start - 1, 0), (BANK_ACCOUNTS.stop, 0), (account, 1)):
        assert send(client, _row(**{f"{field}_lo": lo, f"{field}_hi": hi, "id_lo": 60 + lo % 7})).status_code == 200


def test_callers_roles_and_media_type(served: tuple[TestClient, Ledger]) -> None:
    client, led = served
    before = state(led)
    body = _row().tobytes()
    assert client.post("/transfers/bulk", content=body, headers={**OCTETS, "Authorization": ""}).status_code == 401
    assert client.post("/transfers/bulk", content=body, headers={**OCTETS, **AUDITOR}).status_code == 403
    assert client.post("/transfers/bulk", content=body, headers={**OCTETS, **OPERATOR}).status_code == 403
    assert client.post("/transfers/bulk", content=body, headers={"content-type": "application/json"}).status_code == 415
    assert client.post("/transfers/bulk", content=body).status_code == 415
    assert state(led) == before
    assert "/transfers/bulk" in client.get("/openapi.json").json()["paths"]


def test_nan_has_no_row_form() -> None:
    """Every field is an unsigned integer: there is no bit pattern a float could hide in."""
    assert all(TRANSFER_DTYPE[name].kind == "u" for name in TRANSFER_DTYPE.names or ())


def test_the_ledger_refuses_rows_of_another_layout() -> None:
    from ledger import InvalidInputError

    led = Ledger()
    with pytest.raises(InvalidInputError, match="TRANSFER_DTYPE"):
        led.create_transfer_rows(np.zeros(3, np.uint64))
    with pytest.raises(InvalidInputError, match="exceeds the maximum"):
        led.create_transfer_rows(np.zeros(8191, TRANSFER_DTYPE))
    assert led.create_transfer_rows(np.zeros(0, TRANSFER_DTYPE)).tolist() == []


def test_over_a_region_node_the_banks_rules_answer_per_row(tmp_path: Path) -> None:
    """A region node applies its rules to rows as to JSON: reserved ids and ids naming
    another unit are refused per row, what is left commits."""
    with region_app(tmp_path, ["beijing"]) as client:
        ok = transfer_id(0, 1)
        rows = transfers_to_rows([pay(ok, 1, 3, 5), pay(CREDIT_BIT | ok, 1, 3, 5), pay(transfer_id(1, 2), 1, 3, 5),
                                  pay(ok, 1, 3, 5), pay(transfer_id(0, 3), 1, 3, (1 << 128) - 1)])
        r = send(client, rows)
        assert r.status_code == 200, r.text
        assert [outcome_name(c) for c in bulk.decode_results(r.content, len(rows))] == [
            "OK", "ID_IN_RESERVED_RANGE", "ID_MUST_NAME_ITS_UNIT", "EXISTS", "OVERFLOWS_DEBITS_POSTED"]
        assert send(client, _row(debit_account_id_lo=BANK_ACCOUNTS.start)).status_code == 403
        assert int(client.get("/accounts/3").json()["credits_posted"]) == 10_000_000 + 5  # opening balance + one


def test_without_the_bank_account_rule_a_payments_row_would_move_the_banks_money(
        served: tuple[TestClient, Ledger], monkeypatch: pytest.MonkeyPatch) -> None:
    """The 403 above is what stands between the payments role and the bank's own accounts:
    with the rule's lookup switched off, the same row commits."""
    client, led = served
    fund = BANK_ACCOUNTS.start
    assert client.post("/accounts", headers=OPERATOR, json=[{"id": fund, "ledger": 156, "code": 1}]).status_code == 200
    row = _row(debit_account_id_lo=fund, id_lo=70)
    assert send(client, row).status_code == 403
    assert led.lookup_accounts([fund])[0].debits_posted == 0
    monkeypatch.setattr(bulk, "bank_accounts_named", lambda rows: [])
    assert send(client, row).status_code == 200
    assert led.lookup_accounts([fund])[0].debits_posted == 5

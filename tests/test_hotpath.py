"""The gateway's fast lane (`load.hotpath`) answers exactly as the full app, and serves.

The same requests — ordinary ones, and every kind of odd or hostile one — go to a gateway
with the fast lane and to one without; answers and books must be the same. The comparison
is shown able to fail: a lane whose validation lets a float through is caught.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from load import schemas
from load.auth import Credentials, Role, TokenVerifier
from load.gateway import LedgerBackend, create_app

CREDS = Credentials.generate()
U128 = (1 << 128) - 1
BANK = 1 << 40
TOKENS = {"payments": CREDS.tokens[Role.PAYMENTS], "auditor": CREDS.tokens[Role.AUDITOR],
          "operator": CREDS.tokens[Role.OPERATOR], "stranger": "not-a-token"}


def gateway(hot: bool) -> TestClient:
    app = create_app(LedgerBackend(Ledger(), "beijing"), auth=TokenVerifier(CREDS.digests()), max_wait=0.001,
                     hot_path=hot)
    return TestClient(app)


def opened(client: TestClient) -> TestClient:
    accounts = [{"id": 1, "ledger": 156, "code": 1, "flags": 2}, {"id": 2, "ledger": 156, "code": 1},
                {"id": 3, "ledger": 156, "code": 1}]
    assert client.post("/accounts", headers=CREDS.header(Role.OPERATOR), json=accounts).status_code == 200
    return client


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[TestClient, TestClient]]:
    with gateway(True) as hot, gateway(False) as full:
        yield opened(hot), opened(full)


amounts = st.one_of(st.integers(0, 5000), st.sampled_from([U128, U128 + 1, -1, 1 << 64, 1.5, "10", True, None]))
accounts = st.one_of(st.integers(0, 4), st.sampled_from([BANK, BANK + (1 << 20), U128, "1"]))
transfer = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(1, 40), st.sampled_from([0, U128, U128 - 1]))},
    optional={"debit_account_id": accounts, "credit_account_id": accounts, "amount": amounts,
              "ledger": st.sampled_from([156, 0, 7]), "code": st.sampled_from([1, 0, 70000]),
              "flags": st.sampled_from([0, 1, 2, 4, 8, 1 << 15]), "pending_id": st.integers(0, 40),
              "timeout": st.sampled_from([0, 60]), "nickname": st.just("x")})
resolve = st.fixed_dictionaries({"id": st.integers(1, 60)}, optional={"amount": amounts})
raw_bodies = st.sampled_from(['{"id": 1, "id": 2}', "NaN", '{"id": 1, "amount": 1e999}', "[", "", "null", "[]",
                              '{"id": 99999999999999999999999999999999999999999999}'])
queries = st.sampled_from(["", "limit=5", "limit=0", "limit=8191", "reverse=true", "reverse=1", "limit=5&limit=6",
                           "timestamp_min=18446744073709551616", "timestamp_max=5", "foo=1", "limit=05", "limit"])
pids = st.one_of(st.integers(1, 60).map(str), st.sampled_from(["0", "007", "+5", str(U128), str(U128 - 1), "x"]))


Request = tuple[str, str, dict[str, str], bytes]
"""(method, path with query, headers, body)."""


@st.composite
def requests(draw: st.DrawFn) -> Request:
    kind = draw(st.sampled_from(["one", "batch", "post", "void", "statement"]))
    headers = {}
    who = draw(st.sampled_from(["payments", "payments", "payments", "auditor", "operator", "stranger", None]))
    if who is not None:
        headers["authorization"] = f"Bearer {TOKENS[who]}"
    if kind == "statement":
        account = draw(st.one_of(st.integers(1, 4).map(str), st.sampled_from(["0", "01", str(BANK)])))
        query = draw(queries)
        return "GET", f"/accounts/{account}/transfers" + (f"?{query}" if query else ""), headers, b""
    headers["content-type"] = draw(st.sampled_from(["application/json", "application/json", "text/plain",
                                                    "application/json; charset=utf-8"]))
    if draw(st.integers(0, 9)) == 0:
        body = draw(raw_bodies)
    elif kind == "one":
        body = json.dumps(draw(transfer))
    elif kind == "batch":
        body = json.dumps(draw(st.lists(transfer, max_size=4)))
    else:
        body = json.dumps(draw(resolve))
    path = {"one": "/transfers", "batch": "/transfers/batch"}.get(kind) or f"/transfers/{draw(pids)}/{kind}"
    return "POST", path, headers, body.encode()


def answer(client: TestClient, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    r = client.request(method, path, headers=headers, content=body or None)
    try:
        payload = r.json()
    except ValueError:
        payload = r.text
    if path.startswith("/accounts/") and isinstance(payload, list):  # two ledgers, two clocks
        payload = [{k: v for k, v in row.items() if k != "timestamp"} for row in payload]
    return r.status_code, payload


def books(client: TestClient) -> list[Any]:
    auditor = CREDS.header(Role.AUDITOR)
    found = [client.get(f"/accounts/{i}", headers=auditor).json() for i in (1, 2, 3)]
    return [{k: v for k, v in a.items() if k != "timestamp"} for a in found]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(requests(), min_size=1, max_size=6))
def test_the_fast_lane_answers_every_request_as_the_full_app(pair: tuple[TestClient, TestClient],
                                                             sent: list[Request]) -> None:
    hot, full = pair
    for request in sent:
        assert answer(hot, *request) == answer(full, *request), request
    assert books(hot) == books(full)


def served(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics", headers=CREDS.header(Role.AUDITOR)).text
    found = re.findall(r'geoledger_hot_path_requests_total\{outcome="(\w+)",region="beijing"\} (\S+)', text)
    return {outcome: float(count) for outcome, count in found}


def test_the_fast_lane_serves_ordinary_requests_and_passes_the_rest(pair: tuple[TestClient, TestClient]) -> None:
    hot, _ = pair
    pay = CREDS.header(Role.PAYMENTS)
    before = served(hot)
    assert hot.post("/transfers", headers=pay, json={"id": 900, "debit_account_id": 2, "credit_account_id": 3,
                                                     "amount": 1, "ledger": 156, "code": 1}).status_code == 201
    assert hot.get("/accounts/2/transfers?limit=3&reverse=true", headers=pay).status_code == 200
    assert hot.post("/transfers", headers=pay, json={"id": 901, "amount": 1.5}).status_code == 422
    assert hot.post("/transfers", json={"id": 902}).status_code == 401
    after = served(hot)
    assert after["served"] - before.get("served", 0) == 2
    assert after["passed"] - before.get("passed", 0) == 2


def test_the_comparison_catches_a_lane_that_validates_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checker must be able to fail: a lane that builds its input without validating it
    (here: a float amount let through) answers otherwise than the full app."""
    monkeypatch.setattr(schemas.TransferIn, "model_validate", classmethod(lambda cls, obj: cls.model_construct(**obj)))
    body = json.dumps({"id": 5, "debit_account_id": 2, "credit_account_id": 3, "amount": 1.5, "ledger": 156,
                       "code": 1}).encode()
    request = ("POST", "/transfers", {**CREDS.header(Role.PAYMENTS), "content-type": "application/json"}, body)
    with gateway(True) as hot, gateway(False) as full:
        opened(hot), opened(full)
        assert answer(full, *request)[0] == 422
        assert answer(hot, *request) != answer(full, *request)

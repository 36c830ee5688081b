"""The gateway's query routes and change stream (additive to its ledger API).

GET and POST /query/accounts and /query/transfers take TigerBeetle's QueryFilter (query
parameters or a strict JSON body) and answer 422 naming the field for anything else;
GET /changes streams committed batches as NDJSON, resumable by cursor, optionally
following new commits; they are the auditor's. A gateway over a region node (no ledger of its
own) has none of these routes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger import Account, Change, CreateTransferResult, Ledger, QueryFilter, Transfer, TransferFlags
from load.auth import Credentials, Role, TokenVerifier
from load.gateway import LedgerBackend, create_app
from tests.support.clock import FakeClock

MAX = (1 << 128) - 1
CREDS = Credentials.generate()


def auditor_client(backend: Any) -> TestClient:
    """A gateway over `backend` whose requests carry the auditor's token (queries and the
    change stream are the auditor's)."""
    app = create_app(backend, auth=TokenVerifier(CREDS.digests()), group_commit=False)
    return TestClient(app, headers=CREDS.header(Role.AUDITOR))


@pytest.fixture
def led() -> Ledger:
    led = Ledger(clock=FakeClock())
    led.create_accounts([
        Account(id=1, ledger=840, code=1, user_data_128=MAX, user_data_64=1 << 63),
        Account(id=2, ledger=840, code=2),
        Account(id=3, ledger=978, code=1),
    ])
    led.create_transfers([
        Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=MAX, ledger=840, code=7, user_data_32=9),
        Transfer(id=11, debit_account_id=2, credit_account_id=1, amount=5, ledger=840, code=8,
                 flags=TransferFlags.PENDING, timeout=60),
    ])
    return led


@pytest.fixture
def client(led: Ledger) -> Iterator[TestClient]:
    with auditor_client(LedgerBackend(led)) as c:
        yield c


def test_query_routes_answer_as_the_library(client: TestClient, led: Ledger) -> None:
    got = client.get("/query/accounts", params={"user_data_128": str(MAX)})
    assert got.status_code == 200
    (account,) = got.json()
    assert (account["id"], account["user_data_128"], account["user_data_64"]) == ("1", str(MAX), str(1 << 63))
    assert [a["id"] for a in client.post("/query/accounts", json={"ledger": 840, "reverse": True}).json()] == ["2", "1"]
    transfers = client.get("/query/transfers", params={"ledger": 840, "limit": 1, "reverse": "true"}).json()
    assert [(t["id"], t["pending_status"]) for t in transfers] == [("11", "PENDING")]
    (big,) = client.post("/query/transfers", json={"user_data_32": 9}).json()
    assert big["amount"] == str(MAX) and big["code"] == 7
    want = [t.id for t in led.query_transfers(QueryFilter(ledger=840, timestamp_min=big["timestamp"]))]
    assert [int(t["id"]) for t in client.get(
        "/query/transfers", params={"ledger": 840, "timestamp_min": big["timestamp"]}).json()] == want


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 1 << 32}, {"limit": "1.5"}, {"ledger": -1}, {"ledger": 1 << 32}, {"code": 1 << 16},
    {"user_data_128": str(1 << 128)}, {"timestamp_min": str((1 << 64) - 1)}, {"reverse": "maybe"},
    {"timestamp_min": 5, "timestamp_max": 4}, {"nonsense": 1},
])
def test_bad_query_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    for route in ("/query/accounts", "/query/transfers"):
        assert client.get(route, params=params).status_code == 422


@pytest.mark.parametrize("body", [
    {"ledger": "1"}, {"ledger": 1.0}, {"ledger": True}, {"limit": 0}, {"user_data_128": 1 << 128},
    {"timestamp_min": 5, "timestamp_max": 4}, {"flags": 1}, [], "x",
])
def test_bad_query_bodies_are_422(client: TestClient, body: Any) -> None:
    for route in ("/query/accounts", "/query/transfers"):
        assert client.post(route, json=body).status_code == 422


def _lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_the_change_stream_is_ndjson_resumable_by_cursor(client: TestClient, led: Ledger) -> None:
    everything = _lines(client.get("/changes"))
    assert [c["cursor"] for c in everything] == [c.cursor for c in led.changes()] == [2, 3]
    assert everything[1]["transfers"][0]["amount"] == str(MAX)
    assert [c["cursor"] for c in _lines(client.get("/changes", params={"after": 2}))] == [3]
    assert [c["cursor"] for c in _lines(client.get("/changes", params={"limit": 1}))] == [2]
    assert _lines(client.get("/changes", params={"after": 3})) == []
    for bad in ({"after": -1}, {"limit": 0}, {"limit": 8191}, {"poll": 0}, {"timeout": 0}, {"timeout": 6},
                {"after": "x"}):
        assert client.get("/changes", params=bad).status_code == 422


def test_following_the_stream_delivers_new_commits(led: Ledger) -> None:
    backend = LedgerBackend(led)
    asked = threading.Event()
    read = backend.changes

    def watched(after: int, limit: int) -> list[Change]:
        asked.set()
        return read(after, limit)

    backend.changes = watched  # type: ignore[method-assign]

    def commit_once_following() -> None:
        asked.wait(30)
        assert led.create_transfers([Transfer(id=12, debit_account_id=2, credit_account_id=1, amount=1, ledger=840,
                                              code=1)]) == [CreateTransferResult.OK]

    writer = threading.Thread(target=commit_once_following)
    writer.start()
    with auditor_client(backend) as c:
        lines = _lines(c.get("/changes", params={"after": 3, "follow": "true", "limit": 1, "timeout": 5}))
    writer.join()
    assert [t["id"] for t in lines[0]["transfers"]] == ["12"]


class NodeLike:
    """A region backend without a ledger of its own (as load/region.py's)."""

    region = "r0"
    batches_itself = True
    creates_accounts = False

    def create_transfers(self, transfers: list[Transfer]) -> list[Any]:
        raise AssertionError("not used here")

    def failure(self) -> str | None:
        return None

    def close(self) -> None:
        pass


def test_routes_need_a_ledger_of_their_own() -> None:
    """A gateway over a region node has no query or change routes: 404, never a 5xx."""
    with auditor_client(NodeLike()) as c:
        assert c.get("/query/transfers").status_code == 404
        assert c.post("/query/accounts", json={}).status_code == 404
        assert c.get("/changes").status_code == 404

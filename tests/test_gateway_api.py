"""The HTTP gateway over a local ledger: results, validation at the boundary, metrics, OpenAPI fuzz."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ledger import Ledger
from load.auth import Credentials, Role, TokenVerifier
from load.gateway import LedgerBackend, create_app
from tests.support.openapi_fuzz import fuzz

CREDS = Credentials.generate()
PAYMENTS, AUDITOR, OPERATOR = (CREDS.header(r) for r in (Role.PAYMENTS, Role.AUDITOR, Role.OPERATOR))


def gateway(region: str = "beijing", **kwargs: object) -> TestClient:
    """A gateway over a fresh in-memory ledger; requests carry the payments token unless told."""
    app = create_app(LedgerBackend(Ledger(), region), auth=TokenVerifier(CREDS.digests()), **kwargs)  # type: ignore[arg-type]
    return TestClient(app, headers=PAYMENTS)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with gateway(max_wait=0.001) as c:
        assert c.post("/accounts", headers=OPERATOR, json=[{"id": 1, "ledger": 156, "code": 1, "flags": 2},
                                                           {"id": 2, "ledger": 156, "code": 1}]).status_code == 200
        yield c


def pay(client: TestClient, tid: int, dr: int, cr: int, amount: object) -> object:
    return client.post("/transfers", json={"id": tid, "debit_account_id": dr, "credit_account_id": cr,
                                           "amount": amount, "ledger": 156, "code": 1})


def test_results_are_ledger_codes_and_say_where_committed(client: TestClient) -> None:
    r = pay(client, 10, 2, 1, 500)
    assert (r.status_code, r.json()) == (201, {"id": "10", "result": "OK", "region": "beijing"})
    assert pay(client, 10, 2, 1, 500).json()["result"] == "EXISTS"
    assert pay(client, 11, 1, 2, 501).json()["result"] == "EXCEEDS_CREDITS"
    assert client.get("/accounts/1").json()["credits_posted"] == "500"


def test_two_phase_over_http(client: TestClient) -> None:
    pay(client, 10, 2, 1, 500)
    hold = client.post("/transfers", json={"id": 20, "debit_account_id": 1, "credit_account_id": 2, "amount": 300,
                                           "ledger": 156, "code": 2, "flags": 2, "timeout": 60})
    assert hold.json()["result"] == "OK"
    assert client.post("/transfers/20/post", json={"id": 21, "amount": 120}).json()["result"] == "OK"
    assert client.post("/transfers/20/void", json={"id": 22}).json()["result"] == "PENDING_TRANSFER_ALREADY_POSTED"
    statement = client.get("/accounts/1/transfers", params={"reverse": "true", "limit": 2}).json()
    assert [t["id"] for t in statement] == ["21", "20"]


def test_batches_keep_order_and_linked_chains(client: TestClient) -> None:
    body = [
        {"id": 30, "debit_account_id": 2, "credit_account_id": 1, "amount": 5, "ledger": 156, "code": 1, "flags": 1},
        {"id": 31, "debit_account_id": 1, "credit_account_id": 2, "amount": 50, "ledger": 156, "code": 1},
    ]
    assert [o["result"] for o in client.post("/transfers/batch", json=body).json()] == [
        "LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"]


@pytest.mark.parametrize(
    "field,value",
    [("amount", 1.5), ("amount", "5"), ("amount", True), ("amount", -1), ("amount", 1 << 128),
     ("id", 0), ("ledger", None), ("flags", 1 << 9), ("debit_account_id", [1])],
)
def test_bad_fields_are_422_naming_the_field_and_change_nothing(client: TestClient, field: str, value: object) -> None:
    before = client.get("/accounts/2").json()
    body = {"id": 40, "debit_account_id": 2, "credit_account_id": 1, "amount": 5, "ledger": 156, "code": 1}
    body[field] = value
    r = client.post("/transfers", json=body)
    assert r.status_code == 422
    assert field in str(r.json()["detail"])
    assert client.get("/accounts/2").json() == before


def test_malformed_json_and_unknown_fields_are_4xx(client: TestClient) -> None:
    r = client.post("/transfers", content=b'{"id": 1,', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = pay(client, 41, 2, 1, 5)
    assert client.post("/transfers", json={"id": 42, "surprise": 1}).status_code == 422
    assert client.get("/accounts/0").status_code == 422
    assert client.get("/accounts/99").status_code == 404


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    pay(client, 50, 2, 1, 5)
    pay(client, 51, 1, 2, 10**9)
    r = client.get("/metrics", headers=AUDITOR)
    text = r.text
    assert 'geoledger_transfer_results_total{region="beijing",result="OK"} 1' in text
    assert 'geoledger_transfer_results_total{region="beijing",result="EXCEEDS_CREDITS"} 1' in text
    assert 'geoledger_batch_size_count{region="beijing"}' in text
    # latency by route template, through prometheus_client (a histogram per route)
    assert 'geoledger_request_duration_seconds_count{region="beijing",route="/transfers"} 2.0' in text
    assert 'geoledger_request_duration_seconds_bucket{le="+Inf",region="beijing",route="/transfers"} 2.0' in text
    assert 'geoledger_event_loop_busy_seconds_count{region="beijing"}' in text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.slow
def test_openapi_fuzz_with_every_role_finds_no_server_errors() -> None:
    """Schemathesis over every operation, called with each role's token and with none: 4xx
    as the role and the input deserve, never a 5xx."""
    import schemathesis

    client = gateway("fuzz", max_wait=0.0005)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[tuple[str, str, int]] = []
    calls: list[int] = []
    with client:
        client.post("/accounts", headers=OPERATOR, json=[{"id": i, "ledger": 156, "code": 1} for i in (1, 2)])
        for operation in schema.get_all_operations():
            op = operation.ok()
            for headers in (PAYMENTS, AUDITOR, OPERATOR, {}):
                fuzz(op, headers, calls, failures)
    assert len(calls) > 300 and failures == []
    assert {401, 403} <= set(calls) and any(200 <= c < 300 for c in calls)


def test_region_reports_are_a_metric_by_kind() -> None:
    """The node's report counts (a region gateway's `region_reports`) are served by kind."""
    from load.metrics import GatewayMetrics

    text = GatewayMetrics("beijing").render({}, {"peer_message_refused": 3, "promotion": 1})
    assert 'geoledger_region_reports{kind="peer_message_refused",region="beijing"} 3.0' in text
    assert 'geoledger_region_reports{kind="promotion",region="beijing"} 1.0' in text

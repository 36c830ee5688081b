"""A gateway lets no stranger in: tokens and roles per endpoint, the payments rule, limits
before work, strict JSON, bounded metric labels, honest health.

Each test here fails on the gateway before issue 14 (no authentication, the raw path as a
metric label, the item cap checked after parsing, JSON NaN a 500, duplicate keys accepted,
`/health` always 200).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger import Ledger
from load.auth import BANK_ACCOUNT_RULE, Credentials, Role, TokenVerifier, check_policies
from load.gateway import LedgerBackend, create_app
from load.limits import BATCH_BODY_MAX, BODY_MAX, MAX_REQUEST_ITEMS, strict_loads
from replication.accounts import FUND_BASE, TRANSIT_BASE

CREDS = Credentials.generate()
HEADERS = {role: CREDS.header(role) for role in Role}
U128_MAX = (1 << 128) - 1


class FailingBackend(LedgerBackend):
    failed: str | None = None

    def failure(self) -> str | None:
        return self.failed


@pytest.fixture
def backend() -> FailingBackend:
    return FailingBackend(Ledger(), "beijing")


@pytest.fixture
def client(backend: FailingBackend) -> Iterator[TestClient]:
    app = create_app(backend, auth=TokenVerifier(CREDS.digests()), max_wait=0.0005)
    with TestClient(app) as c:
        accounts = [{"id": i, "ledger": 156, "code": 1} for i in (1, 2)]
        accounts += [{"id": FUND_BASE, "ledger": 156, "code": 1}, {"id": TRANSIT_BASE + 3, "ledger": 156, "code": 1}]
        assert c.post("/accounts", json=accounts, headers=HEADERS[Role.OPERATOR]).status_code == 200
        fund = {"id": 1, "debit_account_id": FUND_BASE, "credit_account_id": 2, "amount": 1000, "ledger": 156,
                "code": 1}
        c.app.state.committer.enabled = False  # the test's own setup: straight into the books
        backend.ledger.create_transfers([_transfer(fund)])
        hold = {"id": 5, "debit_account_id": 2, "credit_account_id": 1, "amount": 10, "ledger": 156, "code": 1,
                "flags": 2, "timeout": 3600}
        assert c.post("/transfers", json=hold, headers=HEADERS[Role.PAYMENTS]).json()["result"] == "OK"
        yield c


def _transfer(body: dict[str, Any]) -> Any:
    from ledger import Transfer

    return Transfer(**body)


def payment(tid: int, debit: int = 2, credit: int = 1, amount: int = 1) -> dict[str, Any]:
    return {"id": tid, "debit_account_id": debit, "credit_account_id": credit, "amount": amount, "ledger": 156,
            "code": 1}


P, A, OP = Role.PAYMENTS, Role.AUDITOR, Role.OPERATOR
ENDPOINTS: list[tuple[str, str, Any, set[Role]]] = [
    ("POST", "/accounts", [{"id": 60, "ledger": 156, "code": 1}], {OP}),
    ("POST", "/transfers", payment(20), {P}),
    ("POST", "/transfers/batch", [payment(21), payment(22)], {P}),
    ("POST", "/transfers/bulk", b"rows", {P}),  # bytes: sent as application/octet-stream (`_request`)
    ("POST", "/transfers/5/post", {"id": 23, "amount": 1}, {P}),
    ("POST", "/transfers/5/void", {"id": 24}, {P}),
    ("GET", "/accounts/1", None, {P, A}),
    ("GET", "/transfers/5", None, {P, A}),
    ("GET", "/accounts/1/transfers", None, {P, A}),
    ("GET", "/metrics", None, {A, OP}),
    ("GET", "/query/accounts?ledger=156", None, {A}),
    ("POST", "/query/accounts", {"ledger": 156}, {A}),
    ("GET", "/query/transfers?ledger=156", None, {A}),
    ("POST", "/query/transfers", {"ledger": 156}, {A}),
    ("GET", "/changes", None, {A}),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]
STRANGERS = {"no header": {}, "unknown token": {"Authorization": "Bearer " + "x" * 43},
             "empty bearer": {"Authorization": "Bearer "}, "basic": {"Authorization": "Basic dXNlcjpwdw=="},
             "a token without its scheme": {"Authorization": CREDS.tokens[Role.OPERATOR]}}


def _request(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """JSON, or for the bulk route (`b"rows"`) one transfer row (`load.bulk`)."""
    if body == b"rows":
        from cext.codec import transfers_to_rows

        row = transfers_to_rows([_transfer(payment(25))]).tobytes()
        octets = {**headers, "content-type": "application/octet-stream"}
        return client.request(method, path, content=row, headers=octets)
    return client.request(method, path, json=body, headers=headers)


def _books(client: TestClient) -> list[Any]:
    auditor = HEADERS[Role.AUDITOR]
    return [client.get(f"/accounts/{a}", headers=auditor).json() for a in (1, 2, FUND_BASE)] + [
        client.get("/transfers/20", headers=auditor).status_code]


def test_the_table_covers_every_route(client: TestClient) -> None:
    from fastapi.routing import APIRoute

    from load.auth import PUBLIC

    routes = {(m, r.path) for r in client.app.routes if isinstance(r, APIRoute) and r.path not in PUBLIC
              for m in r.methods}
    table = {(m, p.split("?")[0].replace("/5/", "/{pending_id}/").replace("/transfers/5", "/transfers/{transfer_id}")
              .replace("/accounts/1", "/accounts/{account_id}")) for m, p, _, _ in ENDPOINTS}
    assert routes == table


@pytest.mark.parametrize(("method", "path", "body", "admitted"), ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("stranger", sorted(STRANGERS))
def test_a_stranger_gets_401_and_changes_nothing(client: TestClient, method: str, path: str, body: Any,
                                                 admitted: set[Role], stranger: str) -> None:
    before = _books(client)
    r = _request(client, method, path, body, STRANGERS[stranger])
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert CREDS.tokens[Role.OPERATOR] not in r.text and "x" * 43 not in r.text  # never echoed
    assert _books(client) == before


@pytest.mark.parametrize(("method", "path", "body", "admitted"), ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_each_role_reaches_exactly_its_endpoints(client: TestClient, method: str, path: str, body: Any,
                                                 admitted: set[Role], role: Role) -> None:
    before = _books(client)
    r = _request(client, method, path, body, HEADERS[role])
    if role in admitted:
        assert r.status_code < 400, r.text
    else:
        assert r.status_code == 403, r.text
        assert f"role {role.value} may not call" in r.json()["detail"]
        assert _books(client) == before


def test_health_and_the_api_description_are_public(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "region": "beijing"}
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    post = schema["paths"]["/transfers"]["post"]
    assert post["security"] == [{"bearer": []}] and post["x-geoledger-roles"] == ["payments"]


def test_a_route_without_a_role_policy_is_refused_at_start_up(backend: FailingBackend) -> None:
    app = create_app(backend, auth=TokenVerifier(CREDS.digests()))

    @app.get("/oops")
    async def oops() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match=r"routes without a role policy.*/oops"):
        check_policies(app)
    with pytest.raises(RuntimeError, match="/oops"), TestClient(app):
        pass


def test_tokens_are_compared_in_constant_time_against_every_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier hashes the presented token and compares it with every role's digest
    through `hmac.compare_digest`, even after a match: neither the comparison nor the number
    of comparisons depends on where the token differs or which role it is."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    verifier = TokenVerifier(CREDS.digests())
    for role in Role:
        calls.clear()
        assert verifier.role_of(f"Bearer {CREDS.tokens[role]}") is role
        assert len(calls) == len(Role)
    calls.clear()
    assert verifier.role_of("Bearer " + CREDS.tokens[Role.PAYMENTS][:-1] + "?") is None
    assert len(calls) == len(Role)
    assert CREDS.tokens[Role.PAYMENTS] not in json.dumps(CREDS.digests())  # gateways hold digests only


# ------------------------------------------------------------------ the payments rule
@pytest.mark.parametrize("field", ["debit_account_id", "credit_account_id"])
@pytest.mark.parametrize("account", [FUND_BASE, FUND_BASE + 7, TRANSIT_BASE, TRANSIT_BASE + 3,
                                     TRANSIT_BASE + (1 << 20) - 1])
def test_payments_may_not_name_a_bank_account(client: TestClient, field: str, account: int) -> None:
    """The issue's attack: debit the unit fund (no overdraft flag) and credit a customer."""
    before = _books(client)
    body = payment(30, amount=10**15)
    body[field] = account
    r = client.post("/transfers", json=body, headers=HEADERS[Role.PAYMENTS])
    assert r.status_code == 403, r.text
    assert r.json()["detail"]["rule"] == BANK_ACCOUNT_RULE and r.json()["detail"]["field"] == field
    batch = [payment(31), payment(32), body]
    r = client.post("/transfers/batch", json=batch, headers=HEADERS[Role.PAYMENTS])
    assert r.status_code == 403 and r.json()["detail"]["index"] == 2 and "item 2" in r.json()["detail"]["msg"]
    assert _books(client) == before  # the batch's other rows were not applied either


def test_payments_may_not_read_a_bank_account_and_the_auditor_may(client: TestClient) -> None:
    for path in (f"/accounts/{FUND_BASE}", f"/accounts/{TRANSIT_BASE + 3}/transfers"):
        r = client.get(path, headers=HEADERS[Role.PAYMENTS])
        assert r.status_code == 403 and r.json()["detail"]["rule"] == BANK_ACCOUNT_RULE
        assert client.get(path, headers=HEADERS[Role.AUDITOR]).status_code == 200
    assert client.get("/accounts/1", headers=HEADERS[Role.PAYMENTS]).status_code == 200


def test_u128_extremes_beside_the_bank_range_are_the_ledgers_business(client: TestClient) -> None:
    """Ids just outside the bank's range are not refused by the rule: the ledger answers them."""
    for i, (account, result) in enumerate([(FUND_BASE - 1, "DEBIT_ACCOUNT_NOT_FOUND"),
                                           (TRANSIT_BASE + (1 << 20), "DEBIT_ACCOUNT_NOT_FOUND"),
                                           (U128_MAX, "DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX")]):
        r = client.post("/transfers", json=payment(40 + i, debit=account), headers=HEADERS[Role.PAYMENTS])
        assert r.status_code == 200 and r.json()["result"] == result, r.text


# ------------------------------------------------------------------ limits before work
def test_a_body_over_its_cap_is_413_before_anything_reads_it(client: TestClient) -> None:
    """Content-Length over the route's cap: refused unread (the body is not even sent here)."""
    app = client.app
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"[]", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import asyncio

    for path, cap in (("/transfers/batch", BATCH_BODY_MAX), ("/transfers", BODY_MAX)):
        sent.clear()
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "http_version": "1.1",
                 "headers": [(b"content-length", str(cap + 1).encode()), (b"content-type", b"application/json"),
                             *[(k.lower().encode(), v.encode()) for k, v in HEADERS[Role.PAYMENTS].items()]]}
        asyncio.run(app.middleware_stack(scope, receive, send))  # type: ignore[union-attr]
        assert sent[0]["status"] == 413 and reads == 0
        assert f"{cap:,} bytes" in json.loads(sent[1]["body"])["detail"]


def test_a_streamed_body_is_cut_off_at_its_cap(client: TestClient) -> None:
    """No Content-Length (chunked): counted as it arrives, 413 once past the cap."""
    def chunks() -> Iterator[bytes]:
        yield b"["
        for i in range(BODY_MAX // 100 + 10):
            yield json.dumps(payment(100 + i)).encode() + b","
        yield b"{}]"

    before = _books(client)
    r = client.post("/transfers", content=chunks(), headers={**HEADERS[P], "content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert _books(client) == before


def test_the_largest_legal_batch_fits_its_cap(client: TestClient) -> None:
    big = {"id": U128_MAX - 1, "debit_account_id": U128_MAX, "credit_account_id": U128_MAX, "amount": U128_MAX,
           "ledger": 2**32 - 1, "code": 65535, "flags": 0, "pending_id": U128_MAX, "timeout": 2**32 - 1,
           "user_data_128": U128_MAX, "user_data_64": 2**64 - 1, "user_data_32": 2**32 - 1}
    body = json.dumps([big] * MAX_REQUEST_ITEMS, indent=1).encode()
    assert len(body) < BATCH_BODY_MAX
    r = client.post("/transfers/batch", content=body,
                    headers={**HEADERS[Role.PAYMENTS], "content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()) == MAX_REQUEST_ITEMS


def test_list_lengths_are_in_the_schema_and_8191_items_are_422_without_an_echo(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["paths"]["/transfers/batch"]["post"]["requestBody"]
    body_schema = schema["content"]["application/json"]["schema"]
    assert (body_schema["minItems"], body_schema["maxItems"]) == (1, MAX_REQUEST_ITEMS)
    r = client.post("/transfers/batch", json=[payment(1)] * (MAX_REQUEST_ITEMS + 1), headers=HEADERS[Role.PAYMENTS])
    assert r.status_code == 422 and len(r.content) < 2000, r.text[:300]
    assert client.post("/transfers/batch", json=[], headers=HEADERS[Role.PAYMENTS]).status_code == 422


@pytest.mark.parametrize("raw", [
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": NaN, "ledger": 156, "code": 1}',
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": Infinity, "ledger": 156, "code": 1}',
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": -Infinity, "ledger": 156, "code": 1}',
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": 1e999, "ledger": 156, "code": 1}',
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": 5, "amount": 5000, "ledger": 156, "code": 1}',
    b'{"id": 50, "id": 51, "debit_account_id": 2, "credit_account_id": 1, "amount": 5, "ledger": 156, "code": 1}',
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": ' + b"9" * 5000 + b', "code": 1}',
    b"[" * 5000 + b"]" * 5000,
    b'{"id": 50, "debit_account_id": 2, "credit_account_id": 1, "amount": 5, "ledger": 156, "code": 1, "x": "\xff"}',
], ids=["NaN", "Infinity", "-Infinity", "1e999", "duplicate amount", "duplicate id", "5000 digits", "deep",
        "bad utf-8"])
def test_json_that_python_would_let_through_is_422_naming_it(client: TestClient, raw: bytes) -> None:
    before = _books(client)
    r = client.post("/transfers", content=raw, headers={**HEADERS[Role.PAYMENTS], "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid"
    assert _books(client) == before


def test_strict_loads_names_the_problem() -> None:
    with pytest.raises(json.JSONDecodeError, match="duplicate key 'a'"):
        strict_loads(b'{"a": 1, "b": {"c": 2}, "a": 3}')
    with pytest.raises(json.JSONDecodeError, match="NaN is not a JSON number"):
        strict_loads(b"[NaN]")
    assert strict_loads(b'{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}


# ------------------------------------------------------------------ metrics, health
def test_metric_labels_are_route_templates_and_strangers_mint_none(client: TestClient) -> None:
    auditor = HEADERS[Role.AUDITOR]
    client.get("/accounts/1", headers=auditor)
    client.get("/accounts/2", headers=auditor)
    client.get("/x%22,status=%22200%22%7D%201%0Ageoledger_fake%7Ba=%22")  # a quote, a newline, a new series
    client.get("/metrics", headers=auditor)  # its own latency series exists from the next scrape on
    text = client.get("/metrics", headers=auditor).text
    assert 'route="/accounts/{account_id}",status="200"} 2' in text
    assert "geoledger_fake" not in text and 'route="/x' not in text
    assert 'route="unmatched",status="404"} 1' in text
    size = len(text)
    for i in range(300):
        client.get(f"/random-{i}/path-{i * 7919}")
    after = client.get("/metrics", headers=auditor).text
    assert len(after) - size < 200, "random paths grew the metrics output"
    assert 'route="unmatched",status="404"} 301' in after


def test_health_fails_once_the_region_has_failed(client: TestClient, backend: FailingBackend) -> None:
    assert client.get("/health").status_code == 200
    backend.failed = "group commit loop died: OSError: [Errno 28] No space left on device"
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "failed" and "No space left" in r.json()["detail"]


def test_the_credentials_file_is_owner_only_and_a_wider_one_is_refused(tmp_path: Any) -> None:
    import os
    import stat

    path = tmp_path / "credentials.json"
    CREDS.save(path, ["http://127.0.0.1:8100"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load(path).tokens == CREDS.tokens
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        Credentials.load(path)

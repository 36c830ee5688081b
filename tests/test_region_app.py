"""A region's gateway app in-process: its internal endpoints are the operator's alone and take
only well-formed input, a full disk makes /health fail and ends the process, and fuzzing
with every role finds no 5xx.

Before issue 14 the internal endpoints checked one shared token with `!=` (every region
process and `serve.json` held it), `{"partition": "a"}` was a 500, and a region whose
commit loop had died still answered /health with 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from load.auth import Role
from replication.ids import transfer_id
from tests.support.region_app import HEADERS, region_app

INTERNAL: list[tuple[str, str, Any]] = [
    ("POST", "/internal/chaos", {"extra_latency_ms": {"1": 5.0}}),
    ("GET", "/internal/state", None),
    ("POST", "/internal/missing", [1, 2, 3]),
]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[TestClient]:
    """Region 0 of two (its peer is not running): enough for the internal endpoints."""
    with region_app(tmp_path, ["beijing", "shanghai"]) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), INTERNAL, ids=[p for _, p, _ in INTERNAL])
def test_internal_endpoints_are_the_operators_alone(pair: TestClient, method: str, path: str, body: Any) -> None:
    for who, headers in [("nobody", {"Authorization": ""}), ("a guess", {"Authorization": "Bearer guess"})]:
        assert pair.request(method, path, json=body, headers=headers).status_code == 401, who
    for role in (Role.PAYMENTS, Role.AUDITOR):
        assert pair.request(method, path, json=body, headers=HEADERS[role]).status_code == 403, role
    assert pair.request(method, path, json=body, headers=HEADERS[Role.OPERATOR]).status_code == 200


@pytest.mark.parametrize("body", [
    {"partition": "a"}, {"partition": [1, "x"]}, {"partition": [0]}, {"partition": [2]}, {"partition": [-1]},
    {"extra_latency_ms": {"x": 1}}, {"extra_latency_ms": {"1": -5}}, {"extra_latency_ms": {"1": 1e12}},
    {"extra_latency_ms": [1]}, {"pause": [True]}, {"surprise": 1}, [], "partition",
], ids=lambda b: str(b)[:40])
def test_chaos_takes_only_well_formed_settings(pair: TestClient, body: Any) -> None:
    r = pair.post("/internal/chaos", json=body, headers=HEADERS[Role.OPERATOR])
    assert r.status_code == 422, r.text
    assert pair.post("/internal/chaos", json={}, headers=HEADERS[Role.OPERATOR]).json() == {
        "partitioned": [], "extra_latency_ms": {}}


def test_missing_takes_u128_ids_up_to_the_batch_limit(pair: TestClient) -> None:
    op = HEADERS[Role.OPERATOR]
    assert pair.post("/internal/missing", json=[(1 << 128) - 1, 0], headers=op).json() == {
        "missing": [(1 << 128) - 1, 0]}
    for bad in ([1 << 128], [-1], [1.5], list(range(8191))):
        assert pair.post("/internal/missing", json=bad, headers=op).status_code == 422


def test_a_full_disk_makes_health_fail_and_ends_the_process(tmp_path: Path) -> None:
    """SQLite's own disk-full (`max_page_count`), on the real region app: the flush fails,
    is retried, still fails; the region stops, /health says 503 with the reason, writes are
    refused, and `on_fatal` (in a real process: exit, then the supervisor's restart) runs."""
    fatal: list[BaseException] = []
    with region_app(tmp_path, ["solo"], fatal) as client:
        backend = client.app.state.backend
        amap = backend.cfg.amap()

        def pay(local: int) -> Any:
            return client.post("/transfers", json={"id": transfer_id(amap.unit_of(1), local), "debit_account_id": 1,
                                                   "credit_account_id": 3, "amount": 1, "ledger": 156, "code": 1})

        for attempt in range(200):
            if pay(attempt + 1).status_code == 201:
                break
        assert client.get("/health").status_code == 200
        backend.live.flush_retry_delays = (0.01, 0.01)
        conn = backend.live.store._conn
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        for local in range(1000, 3000):  # until a flush needs a new page (64 KiB: a few hundred payments)
            r = pay(local)
            if r.status_code != 201:
                break
        assert r.status_code == 503, r.text
        health = client.get("/health")
        assert health.status_code == 503 and "full" in health.json()["detail"], health.text
        assert len(fatal) == 1
        assert pay(5000).status_code == 503


@pytest.mark.slow
def test_openapi_fuzz_of_the_region_app_with_every_role_finds_no_server_errors(tmp_path: Path) -> None:
    import schemathesis

    from tests.support.openapi_fuzz import fuzz

    client = region_app(tmp_path, ["solo"])  # one region: its writes commit without peers
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)  # it runs the app's lifespan itself
    calls: list[int] = []
    failures: list[tuple[str, str, int]] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        for headers in (*HEADERS.values(), {}):
            fuzz(op, headers, calls, failures)
    paths = {op.ok().path for op in schema.get_all_operations()}
    assert {"/internal/chaos", "/internal/state", "/internal/missing"} <= paths
    assert len(calls) > 300 and failures == []

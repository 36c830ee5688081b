"""A region's HTTP gateway: the ledger API over JSON, with group commit and metrics.

The gateway is a thin driver: it admits a caller by bearer token and role (`load.auth`),
bounds and strictly parses the body (`load.limits`), validates at the boundary (strict
models, 422 naming the field), turns requests into ledger batches through the group
committer, and reports business outcomes as TigerBeetle result codes in a 200/201 body.
Nothing a client sends can produce a 500: bad input is a 4xx, and a store failure is a 503
the client may retry with the same transfer id. `/health` answers 503 once the region
behind the gateway has failed (`RegionBackend.failure`), so a supervisor or load balancer
sees what clients see.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ledger import (
    Account,
    AccountState,
    Change,
    CreateAccountResult,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    LedgerError,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
    TransferState,
)
from ledger.types import U64_MAX, U128_MAX
from load import bulk
from load.auth import (
    SCOPE_ROUTE,
    BearerAuth,
    Role,
    TokenVerifier,
    check_policies,
    refuse_bank_accounts,
    role_of,
    roles,
)
from load.groupcommit import GroupCommitter
from load.hotpath import HotPath
from load.limits import (
    BATCH_BODY_MAX,
    MAX_REQUEST_ITEMS,
    BodyLimit,
    StrictJSONRoute,
    validation_error,
)
from load.loopwatch import LoopWatch
from load.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from load.metrics import GatewayMetrics
from load.schemas import (
    AccountIn,
    AccountOut,
    AccountRecord,
    Outcome,
    QueryIn,
    QueryParams,
    ResolveIn,
    StatementQuery,
    TransferIn,
    TransferOut,
    TransferRecord,
)
from load.work import READERS, WRITERS, GatewayWork, off_loop, outcome_list, to_domain, transfer_out
from replication.outcomes import outcome_name

FOLLOW_MAX_S = 5.0
"""Longest a followed change stream stays open: a long poll the client renews with its
cursor, short enough that no proxy (or HTTP client) in between times it out."""
PathId = Annotated[int, Path(ge=1, lt=U128_MAX)]
TransferBatch = Annotated[list[TransferIn], Body(min_length=1, max_length=MAX_REQUEST_ITEMS)]
AccountBatch = Annotated[list[AccountIn], Body(min_length=1, max_length=MAX_REQUEST_ITEMS)]
BATCH_ROUTES = {"/transfers/batch": BATCH_BODY_MAX, "/accounts": BATCH_BODY_MAX, "/internal/missing": BATCH_BODY_MAX,
                "/transfers/bulk": bulk.BULK_BODY_MAX}
"""Routes whose body may be a whole batch (of transfers, accounts, or transfer ids: the region
app's `/internal/missing`; rows for the bulk route); every other body is capped at
`limits.BODY_MAX`."""
BULK_BODY_DOC = {"requestBody": {"required": True, "content": {bulk.MEDIA_TYPE: {"schema": {
    "type": "string", "format": "binary",
    "description": "1 to 8,190 transfers as 128-byte rows of cext.layout.TRANSFER_DTYPE (TigerBeetle's layout)"}}}}}
AUDITOR, OPERATOR = Role.AUDITOR, Role.OPERATOR


class RegionBackend(Protocol):
    """What a gateway needs from its region: a local ledger, or a region node.

    `batches_itself`: the backend merges concurrent requests on its own (a region node's
    step does), so the gateway adds no group commit in front of it: one batching layer.
    `creates_accounts`: the backend opens accounts on request; a replicated region's are
    provisioned by its run, and its gateway has no `POST /accounts` at all (not a 501:
    nothing a client sends gets a 5xx).
    """

    region: str
    batches_itself: bool
    creates_accounts: bool

    def create_accounts(self, accounts: list[Account]) -> list[tuple[CreateAccountResult, str]]: ...

    def create_transfers(self, transfers: list[Transfer]) -> list[tuple[CreateTransferResult, str]]: ...

    def create_transfer_rows(self, rows: np.ndarray) -> np.ndarray | Awaitable[np.ndarray]:
        """One batch already in row form (a bulk body): a result code per row (0: OK)."""
        ...

    def lookup_accounts(self, ids: list[int]) -> list[AccountState]: ...

    def lookup_transfers(self, ids: list[int]) -> list[TransferState]: ...

    def get_account_transfers(self, account_id: int, **filters: Any) -> list[TransferState]: ...

    def replication_lag(self) -> dict[str, float]: ...

    def region_reports(self) -> dict[str, int]:
        """What the region node reported since start, by kind (promotions, refused peer
        messages, divergence, ...); empty for a gateway without a region node."""
        ...

    def failure(self) -> str | None:
        """Why the region can no longer serve (it is stopping), or None while it can."""
        ...

    def close(self) -> None: ...


class LedgerBackend:
    """One region with no peers: every unit is homed here and committed locally. A
    `Ledger` commits what it is given: the gateway's group committer batches for it."""

    batches_itself = False
    creates_accounts = True

    def __init__(self, ledger: Ledger, region: str = "local") -> None:
        self.ledger = ledger
        self.region = region

    def create_accounts(self, accounts: list[Account]) -> list[tuple[CreateAccountResult, str]]:
        return [(r, self.region) for r in self.ledger.create_accounts(accounts)]

    def create_transfers(self, transfers: list[Transfer]) -> list[tuple[CreateTransferResult, str]]:
        return [(r, self.region) for r in self.ledger.create_transfers(transfers)]

    def create_transfer_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.ledger.create_transfer_rows(rows)

    def lookup_accounts(self, ids: list[int]) -> list[AccountState]:
        return self.ledger.lookup_accounts(ids)

    def lookup_transfers(self, ids: list[int]) -> list[TransferState]:
        return self.ledger.lookup_transfers(ids)

    def get_account_transfers(self, account_id: int, **filters: Any) -> list[TransferState]:
        return self.ledger.get_account_transfers(account_id, **filters)

    def replication_lag(self) -> dict[str, float]:
        return {}

    def region_reports(self) -> dict[str, int]:
        return {}

    def failure(self) -> str | None:
        return None

    def close(self) -> None:
        self.ledger.close()

    # Beyond RegionBackend: what only a ledger of its own can answer (`_add_reader_routes`).
    def query_accounts(self, query: QueryFilter) -> list[AccountState]:
        return self.ledger.query_accounts(query)

    def query_transfers(self, query: QueryFilter) -> list[TransferState]:
        return self.ledger.query_transfers(query)

    def changes(self, after: int, limit: int) -> list[Change]:
        return list(self.ledger.changes(after=after, limit=limit))


def _account_out(a: AccountState) -> AccountOut:
    return AccountOut(
        id=str(a.id), ledger=a.ledger, code=a.code, flags=int(a.flags),
        debits_pending=str(a.debits_pending), debits_posted=str(a.debits_posted),
        credits_pending=str(a.credits_pending), credits_posted=str(a.credits_posted), timestamp=a.timestamp,
    )


def _account_record(a: AccountState) -> AccountRecord:
    return AccountRecord(
        **_account_out(a).model_dump(), user_data_128=str(a.user_data_128), user_data_64=str(a.user_data_64),
        user_data_32=a.user_data_32,
    )


def _transfer_record(t: TransferState) -> TransferRecord:
    return TransferRecord(
        **transfer_out(t), user_data_128=str(t.user_data_128), user_data_64=str(t.user_data_64),
        user_data_32=t.user_data_32, pending_status=t.pending_status.name,
    )


def _query_filter(q: QueryIn) -> QueryFilter:
    """The library's filter for a validated request; a rule across fields is a 422 too."""
    fields = q.model_dump()
    reverse = fields.pop("reverse")
    try:
        return QueryFilter(**fields, flags=int(QueryFilterFlags.REVERSED) if reverse else 0)
    except InvalidInputError as e:
        raise HTTPException(422, str(e)) from None


class RequestCounter:
    """Counts requests by route template and status. A plain ASGI middleware, not `@app.middleware`:
    Starlette's BaseHTTPMiddleware runs every request through an extra task and memory
    stream, which cost more CPU per request than the ledger commit it wraps."""

    def __init__(self, app: Any, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the response started is reported as 500
        started = time.perf_counter()

        async def send_counted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.observe_request(scope.get(SCOPE_ROUTE, "unmatched"), status, time.perf_counter() - started)


def create_app(
    backend: RegionBackend,
    *,
    auth: TokenVerifier,
    group_commit: bool = True,
    max_batch: int = 8190,
    max_wait: float = 0.002,
    startup: Callable[[], Awaitable[None]] | None = None,
    shutdown: Callable[[], Awaitable[None]] | None = None,
    hot_path: bool = True,
) -> FastAPI:
    """The gateway app; `startup`/`shutdown` run inside the server's event loop. `auth` knows
    the run's tokens (by digest): every route but `/health` and the API description needs one.
    `hot_path=False` leaves out the fast lane (`load.hotpath`): what it is compared with."""
    metrics = GatewayMetrics(backend.region)
    transfers: GroupCommitter[Transfer, tuple[CreateTransferResult, str]] = GroupCommitter(
        backend.create_transfers, max_batch=max_batch, max_wait=max_wait,
        enabled=group_commit and not backend.batches_itself, on_batch=metrics.observe_batch,
    )

    watch = LoopWatch()
    metrics.watch(watch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        check_policies(app)  # every route is added by now, the region app's own included
        if startup is not None:
            await startup()
        watch.start()
        yield
        await watch.stop()
        await transfers.close()
        if shutdown is not None:
            await shutdown()
        backend.close()

    app = FastAPI(
        title=f"geoledger gateway — region {backend.region}",
        version="0.1.0",
        description="TigerBeetle-style accounts and transfers over JSON. u128 values are returned as "
        "decimal strings so that JavaScript clients keep every digit.",
        lifespan=lifespan,
    )
    app.router.route_class = StrictJSONRoute
    app.state.metrics = metrics
    app.state.committer = transfers
    app.state.loop_watch = watch
    # The last added runs first: count every answer, then admit the caller, then bound the body.
    app.add_middleware(BodyLimit, caps=BATCH_ROUTES)
    app.add_middleware(BearerAuth, verifier=auth, routes=app.routes)
    app.add_middleware(RequestCounter, metrics=metrics)
    app.add_exception_handler(RequestValidationError, validation_error)
    _describe_bearer(app)

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    work = GatewayWork(transfers, metrics, backend)

    async def create_accounts(body: AccountBatch) -> JSONResponse:
        accounts = await off_loop(to_domain, body)
        results = await asyncio.to_thread(backend.create_accounts, accounts)
        rows = [(a.id, r.name, where) for a, (r, where) in zip(accounts, results, strict=True)]
        return JSONResponse(await off_loop(outcome_list, rows))

    if backend.creates_accounts:
        app.post("/accounts", response_model=list[Outcome], summary="Create accounts (a batch)",
                 openapi_extra=roles(OPERATOR))(create_accounts)

    @app.post("/transfers", response_model=Outcome, summary="Create one transfer", openapi_extra=roles(*WRITERS))
    async def create_transfer(request: Request, body: TransferIn) -> JSONResponse:
        status, answer = await work.transfer_one(role_of(request), body)
        return JSONResponse(answer, status_code=status)

    @app.post("/transfers/batch", response_model=list[Outcome], summary="Create transfers (a batch)",
              openapi_extra=roles(*WRITERS))
    async def create_transfers(request: Request, body: TransferBatch) -> JSONResponse:
        return JSONResponse((await work.transfer_batch(role_of(request), body))[1])

    @app.post("/transfers/bulk", summary="Create transfers from a binary body (the engine's row layout)",
              response_class=Response, openapi_extra={**roles(*WRITERS), **BULK_BODY_DOC},
              responses={200: {"description": "(index u32, result u32) per transfer not created OK",
                               "content": {bulk.MEDIA_TYPE: {}}}})
    async def create_transfers_bulk(request: Request) -> Response:
        """The bulk path (`load.bulk`): rows in, TigerBeetle's compact results out. Linked
        chains may span the body; the body is one batch, committed alone."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != bulk.MEDIA_TYPE:
            return JSONResponse({"detail": f"send the rows as {bulk.MEDIA_TYPE}, not {media or 'no type'}"},
                                status_code=415)
        try:
            rows = bulk.decode(await request.body())
        except bulk.BulkRefusal as e:
            return JSONResponse({"detail": e.detail}, status_code=e.status)
        refuse_bank_accounts(role_of(request), bulk.bank_accounts_named(rows))
        metrics.observe_batch(len(rows))
        try:
            if inspect.iscoroutinefunction(backend.create_transfer_rows):
                codes = await backend.create_transfer_rows(rows)
            else:
                codes = await asyncio.to_thread(backend.create_transfer_rows, rows)
        except LedgerError as e:
            raise HTTPException(503, f"commit failed, retry with the same ids: {e}") from e
        values, counts = np.unique(codes, return_counts=True)
        for code, n in zip(values.tolist(), counts.tolist(), strict=True):
            metrics.observe_result(outcome_name(code), n)
        return Response(bulk.encode_results(codes), media_type=bulk.MEDIA_TYPE)

    @app.post("/transfers/{pending_id}/post", response_model=Outcome, summary="Post (part of) a pending transfer",
              openapi_extra=roles(*WRITERS))
    async def post_pending(pending_id: PathId, body: ResolveIn) -> JSONResponse:
        return JSONResponse((await work.resolve(pending_id, body, TransferFlags.POST_PENDING_TRANSFER))[1])

    @app.post("/transfers/{pending_id}/void", response_model=Outcome, summary="Void a pending transfer",
              openapi_extra=roles(*WRITERS))
    async def void_pending(pending_id: PathId, body: ResolveIn) -> JSONResponse:
        return JSONResponse((await work.resolve(pending_id, body, TransferFlags.VOID_PENDING_TRANSFER))[1])

    @app.get("/accounts/{account_id}", response_model=AccountOut, summary="Look up an account",
             openapi_extra=roles(*READERS))
    async def get_account(request: Request, account_id: PathId) -> AccountOut:
        refuse_bank_accounts(role_of(request), [(-1, "account_id", account_id)])
        found = backend.lookup_accounts([account_id])
        if not found:
            raise HTTPException(404, f"account_id: no account {account_id}")
        return _account_out(found[0])

    @app.get("/transfers/{transfer_id}", response_model=TransferOut, summary="Look up a transfer",
             openapi_extra=roles(*READERS))
    async def get_transfer(transfer_id: PathId) -> dict[str, Any]:
        found = backend.lookup_transfers([transfer_id])
        if not found:
            raise HTTPException(404, f"transfer_id: no transfer {transfer_id}")
        return transfer_out(found[0])

    @app.get("/accounts/{account_id}/transfers", response_model=list[TransferOut], summary="Account statement (paged)",
             openapi_extra=roles(*READERS))
    async def statement(
        request: Request,
        account_id: PathId,
        limit: Annotated[int, Query(ge=1, le=8190)] = 100,
        reverse: bool = False,
        timestamp_min: Annotated[int, Query(ge=0, le=U64_MAX)] = 0,
        timestamp_max: Annotated[int, Query(ge=0, le=U64_MAX)] = 0,
    ) -> JSONResponse:
        query = StatementQuery(limit, reverse, timestamp_min, timestamp_max)
        return JSONResponse((await work.read_statement(role_of(request), account_id, query))[1])

    if isinstance(backend, LedgerBackend):
        _add_reader_routes(app, backend)


    @app.get("/health", summary="Liveness and the region's name (no token needed); 503 once the region failed")
    async def health() -> JSONResponse:
        failure = backend.failure()
        if failure is not None:
            return JSONResponse({"status": "failed", "region": backend.region, "detail": failure}, status_code=503)
        return JSONResponse({"status": "ok", "region": backend.region})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (prometheus_client)",
             openapi_extra=roles(AUDITOR, OPERATOR))
    async def prometheus() -> PlainTextResponse:
        body = metrics.render(backend.replication_lag(), backend.region_reports())
        return PlainTextResponse(body, media_type=METRICS_CONTENT_TYPE)

    if hot_path:  # outermost: the fast lane for the hot routes' ordinary requests
        app.add_middleware(HotPath, verifier=auth, metrics=metrics, lanes=work.lanes())
    return app


def _add_reader_routes(app: FastAPI, backend: LedgerBackend) -> None:
    """The auditor's routes that only a ledger of its own can answer: TigerBeetle's
    QueryFilter and the change stream. A gateway over a region node has none of them
    (not a 501: nothing a client sends gets a 5xx)."""
    async def run_query(query: Callable[[QueryFilter], list[Any]], q: QueryIn) -> list[Any]:
        return await asyncio.to_thread(query, _query_filter(q))

    @app.get("/query/accounts", response_model=list[AccountRecord], summary="Query accounts (QueryFilter)",
             openapi_extra=roles(AUDITOR))
    async def query_accounts_get(q: Annotated[QueryParams, Query()]) -> list[AccountRecord]:
        return [_account_record(a) for a in await run_query(backend.query_accounts, q)]

    @app.post("/query/accounts", response_model=list[AccountRecord], summary="Query accounts (QueryFilter body)",
             openapi_extra=roles(AUDITOR))
    async def query_accounts_post(q: QueryIn) -> list[AccountRecord]:
        return [_account_record(a) for a in await run_query(backend.query_accounts, q)]

    @app.get("/query/transfers", response_model=list[TransferRecord], summary="Query transfers (QueryFilter)",
             openapi_extra=roles(AUDITOR))
    async def query_transfers_get(q: Annotated[QueryParams, Query()]) -> list[TransferRecord]:
        return [_transfer_record(t) for t in await run_query(backend.query_transfers, q)]

    @app.post("/query/transfers", response_model=list[TransferRecord], summary="Query transfers (QueryFilter body)",
             openapi_extra=roles(AUDITOR))
    async def query_transfers_post(q: QueryIn) -> list[TransferRecord]:
        return [_transfer_record(t) for t in await run_query(backend.query_transfers, q)]

    @app.get("/changes", summary="The change stream: committed batches after a cursor, as NDJSON",
             response_class=StreamingResponse, openapi_extra=roles(AUDITOR))
    async def changes(
        request: Request,
        after: Annotated[int, Query(ge=0, le=U64_MAX)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_REQUEST_ITEMS)] = 1000,
        follow: bool = False,
        poll: Annotated[float, Query(ge=0.01, le=5)] = 0.2,
        timeout: Annotated[float, Query(gt=0, le=FOLLOW_MAX_S)] = FOLLOW_MAX_S,
    ) -> StreamingResponse:
        """One JSON object per line, one per committed batch, oldest first, at most `limit`;
        each carries the `cursor` to resume from (`after=`). With `follow=true` it is a
        long poll: the stream stays open and sends batches as they commit, until it has
        sent `limit`, `timeout` seconds (at most 5) have passed or the client has gone;
        the client then asks again from the last cursor it saw."""
        async def lines() -> Any:
            cursor, sent = after, 0
            loop = asyncio.get_running_loop()
            until = loop.time() + timeout
            while sent < limit:
                page = await asyncio.to_thread(backend.changes, cursor, limit - sent)
                for change in page:
                    yield json.dumps(change.to_json(), separators=(",", ":")) + "\n"
                    cursor, sent = change.cursor, sent + 1
                if not follow or loop.time() >= until or await request.is_disconnected():
                    return
                if not page:
                    await asyncio.sleep(min(poll, max(0.0, until - loop.time())))

        return StreamingResponse(lines(), media_type="application/x-ndjson")


def _describe_bearer(app: FastAPI) -> None:
    """Put the bearer scheme in the API description (each route's `security` names it)."""
    describe = app.openapi

    def with_bearer() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = describe()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "a token from the run's credentials file (`geoledger serve` prints where)"}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = with_bearer  # type: ignore[method-assign]

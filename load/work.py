"""What the gateway's hot routes do, once: shared by the full app's endpoints, the fast lane
(`load.hotpath`) in front of them, and a region's extra HTTP workers (`load.intake`).

Each operation takes the caller's role and validated input and answers (HTTP status, JSON
body), raising `HTTPException` for a refusal; nothing here knows about ASGI. A backend only
needs what the operation uses: writes need `create_transfers`, statements
`get_account_transfers` — a worker process, which holds no books, serves the writes alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

from fastapi import HTTPException
from pydantic import Field, TypeAdapter

from ledger import CreateTransferResult, LedgerError, Transfer, TransferFlags, TransferState
from ledger.types import U64_MAX, U128_MAX
from load.auth import Role, refuse_bank_accounts
from load.groupcommit import GroupCommitter
from load.hotpath import DECIMAL_ID, Lane, statement_query
from load.limits import BATCH_BODY_MAX, BODY_MAX, MAX_REQUEST_ITEMS
from load.metrics import GatewayMetrics
from load.schemas import AccountIn, ResolveIn, StatementQuery, TransferIn
from replication.outcomes import UNAVAILABLE, outcome_name

WRITERS = (Role.PAYMENTS,)
"""Who may create, post and void transfers (the routes' `roles(...)` and their lanes)."""
READERS = (Role.PAYMENTS, Role.AUDITOR)
"""Who may read accounts, transfers and statements."""
TRANSFER_BATCH = TypeAdapter(Annotated[list[TransferIn], Field(min_length=1, max_length=MAX_REQUEST_ITEMS)])
"""A batch body, validated as the full app's `list[TransferIn]` body parameter is."""
OFF_LOOP_ITEMS = 256
"""A batch longer than this is converted in a worker thread: the largest (8,190 items) costs
about 80 ms each way, which the event loop (health checks, the node's heartbeats) must not
wait for in one piece. The thread still takes the GIL, but the loop gets it back every
switch interval (5 ms)."""


class Statements(Protocol):
    def get_account_transfers(self, account_id: int, **filters: Any) -> list[TransferState]: ...


class GatewayWork:
    """The hot routes' operations over one region's committer (see the module docstring)."""

    def __init__(self, committer: GroupCommitter[Transfer, tuple[Any, str]], metrics: GatewayMetrics,
                 statements: Statements | None = None) -> None:
        self.committer = committer
        self.metrics = metrics
        self.statements = statements

    async def commit(self, items: Sequence[Transfer]) -> list[tuple[Transfer, int, str]]:
        """(transfer, outcome code, writing region) per item, in order."""
        alone = bool(items[-1].flags & TransferFlags.LINKED)
        try:
            results = await self.committer.submit(items, alone=alone)
        except LedgerError as e:
            raise HTTPException(503, f"commit failed, retry with the same ids: {e}") from e
        for code, _ in results:
            self.metrics.observe_result(outcome_name(code))
        return [(t, int(code), where) for t, (code, where) in zip(items, results, strict=True)]

    async def transfer_one(self, role: Role | None, body: TransferIn) -> tuple[int, Any]:
        refuse_bank_accounts(role, accounts_named([body]))
        done = await self.commit([body.to_domain()])
        code = done[0][1]
        if code == UNAVAILABLE:
            raise HTTPException(503, "the account's home region is unavailable; retry with the same id")
        return (201 if code == CreateTransferResult.OK else 200), outcomes(done)[0]

    async def transfer_batch(self, role: Role | None, body: Sequence[TransferIn]) -> tuple[int, Any]:
        refuse_bank_accounts(role, accounts_named(body))
        done = await self.commit(await off_loop(to_domain, body))
        return 200, await off_loop(outcomes, done)

    async def resolve(self, pending_id: int, body: ResolveIn, flag: TransferFlags) -> tuple[int, Any]:
        # A post's "all of it" default (2^128-1) means nothing to a void, whose amount is 0.
        amount = 0 if flag is TransferFlags.VOID_PENDING_TRANSFER and body.amount == U128_MAX else body.amount
        done = await self.commit([Transfer(id=body.id, pending_id=pending_id, amount=amount, flags=flag)])
        return 200, outcomes(done)[0]

    async def read_statement(self, role: Role | None, account_id: int, query: StatementQuery) -> tuple[int, Any]:
        assert self.statements is not None, "a gateway without books has no statement lane"
        refuse_bank_accounts(role, [(-1, "account_id", account_id)])
        rows = self.statements.get_account_transfers(account_id, **query._asdict())
        return 200, [transfer_out(t) for t in rows]

    def lanes(self) -> list[Lane]:
        """The fast lane's routes: the writes, and the statement where there are books."""
        lanes = [
            Lane("POST", "/transfers", "/transfers", frozenset(WRITERS), TransferIn.model_validate,
                 lambda role, _, body: self.transfer_one(role, body), BODY_MAX),
            Lane("POST", "/transfers/batch", "/transfers/batch", frozenset(WRITERS), TRANSFER_BATCH.validate_python,
                 lambda role, _, body: self.transfer_batch(role, body), BATCH_BODY_MAX),
            Lane("POST", "/transfers/{pending_id}/post", f"/transfers/{DECIMAL_ID}/post", frozenset(WRITERS),
                 ResolveIn.model_validate,
                 lambda _, ids, body: self.resolve(ids[0], body, TransferFlags.POST_PENDING_TRANSFER), BODY_MAX),
            Lane("POST", "/transfers/{pending_id}/void", f"/transfers/{DECIMAL_ID}/void", frozenset(WRITERS),
                 ResolveIn.model_validate,
                 lambda _, ids, body: self.resolve(ids[0], body, TransferFlags.VOID_PENDING_TRANSFER), BODY_MAX),
        ]
        if self.statements is not None:
            lanes.append(Lane("GET", "/accounts/{account_id}/transfers", f"/accounts/{DECIMAL_ID}/transfers",
                              frozenset(READERS),
                              lambda raw: StatementQuery(**statement_query(raw, MAX_REQUEST_ITEMS, U64_MAX)),
                              lambda role, ids, query: self.read_statement(role, ids[0], query), 0, query=True))
        return lanes


async def off_loop(convert: Callable[[Sequence[Any]], Any], items: Sequence[Any]) -> Any:
    """`convert(items)`, in a worker thread if the batch is long."""
    if len(items) > OFF_LOOP_ITEMS:
        return await asyncio.to_thread(convert, items)
    return convert(items)


def to_domain(items: Sequence[TransferIn | AccountIn]) -> list[Any]:
    return [item.to_domain() for item in items]


def outcome_list(rows: Sequence[tuple[int, str, str]]) -> list[dict[str, str]]:
    """A batch's outcomes as the declared `list[Outcome]` (plain JSON, no model per row)."""
    return [{"id": str(i), "result": result, "region": where} for i, result, where in rows]


def outcomes(done: Sequence[tuple[Transfer, int, str]]) -> list[dict[str, str]]:
    return outcome_list([(t.id, outcome_name(code), where) for t, code, where in done])


def accounts_named(transfers: Sequence[TransferIn]) -> list[tuple[int, str, int]]:
    """(index, field, account id) of every account a batch names (for the payments rule)."""
    return [(i, field, getattr(t, field)) for i, t in enumerate(transfers)
            for field in ("debit_account_id", "credit_account_id")]


def transfer_out(t: TransferState) -> dict[str, Any]:
    """A `TransferOut`'s fields, in its order (plain JSON: no model per row on a hot route)."""
    return {"id": str(t.id), "debit_account_id": str(t.debit_account_id), "credit_account_id": str(t.credit_account_id),
            "amount": str(t.amount), "pending_id": str(t.pending_id), "ledger": t.ledger, "code": t.code,
            "flags": int(t.flags), "timeout": t.timeout, "timestamp": t.timestamp}


__all__ = ["OFF_LOOP_ITEMS", "READERS", "TRANSFER_BATCH", "WRITERS", "GatewayWork", "accounts_named", "off_loop",
           "outcome_list", "outcomes", "to_domain", "transfer_out"]

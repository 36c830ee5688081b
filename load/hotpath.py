"""The gateway's fast lane: ordinary requests of the busiest routes, served without the framework.

FastAPI's per-request machinery (a dozen middleware layers, routing by trying each route,
dependency solving, response models) cost a region gateway more CPU per payment than the
region's commit did. `HotPath` is a raw ASGI layer in front of the full app that serves a
request of one of its `Lane`s itself only when everything about it is ordinary:

* the method and a canonical path (ids in plain decimal, no leading zero);
* a bearer token whose role the route admits (the same roles the full app's route declares);
* one Content-Length within the route's cap and a JSON content type (or, on a GET, a query
  string of known keys in canonical form, each at most once);
* a body that `strict_loads` parses and the route's own models validate.

Anything else goes to the full app untouched (a body already read is replayed), so every
refusal — 401, 403, 413, 422, the wording of each — is the full app's and is written once.
What a lane does with a valid request is the same function the full app's endpoint calls
(`gateway.create_app`), answered with the same JSON bytes (`JSONResponse`'s rendering);
`tests/test_hotpath.py` sends the same requests through both and compares answers and books.
An error raised by that function is answered as the full app's handlers answer it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from ledger import LedgerError
from ledger.types import U128_MAX
from load.auth import Role, TokenVerifier
from load.limits import OFFLOAD_BYTES, strict_loads
from load.metrics import GatewayMetrics

Answer = tuple[int, Any]
"""(HTTP status, JSON-able body)."""
DECIMAL_ID = r"([1-9][0-9]{0,38})"
"""A path id as the hot path takes it: decimal, no sign, no leading zero (others: full app)."""


class NotOrdinary(Exception):
    """The request is not one the hot path serves: the full app answers it."""


@dataclass(frozen=True)
class Lane:
    """One hot route, admitting the roles its full-app route declares (`load.work` holds both).
    `serve(role, path ids, input)` is the route's shared work; `accept`
    turns the parsed JSON body (or, with `query=True`, the raw query string) into its
    validated input, raising `NotOrdinary`, `ValueError` or `ValidationError` otherwise."""

    method: str
    template: str
    path: str
    admitted: frozenset[Role]
    accept: Callable[[Any], Any]
    serve: Callable[[Role, tuple[int, ...], Any], Awaitable[Answer]]
    cap: int
    query: bool = False


class HotPath:
    """Raw ASGI middleware in front of `app` (the full gateway, or a worker's forwarder to
    it); see the module docstring."""

    def __init__(self, app: Any, *, lanes: Iterable[Lane], verifier: TokenVerifier, metrics: GatewayMetrics) -> None:
        self.app = app
        self.verifier = verifier
        self.metrics = metrics
        self._lanes = [(lane, re.compile(lane.path)) for lane in lanes]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        found = self._lane(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        lane, ids = found
        headers = _headers(scope["headers"])
        role = self._role(lane, headers)
        if role is None or (not lane.query and not _ordinary_body(headers, lane.cap)):
            self.metrics.observe_hot(False)
            await self.app(scope, receive, send)
            return
        body = b""
        if not lane.query:
            read = await _read_body(receive)
            if read is None:
                return  # the client went away
            body = read
        try:
            if lane.query:
                given = lane.accept(scope.get("query_string", b""))
            else:
                big = len(body) > OFFLOAD_BYTES  # parsed off the loop, as the full app does
                given = lane.accept(await asyncio.to_thread(strict_loads, body) if big else strict_loads(body))
        except (NotOrdinary, ValueError, ValidationError):  # json's errors are ValueErrors
            self.metrics.observe_hot(False)
            await self.app(scope, _replay(body, receive), send)
            return
        self.metrics.observe_hot(True)
        status, answer, extra = await _answer(lane, role, ids, given)
        await _send_json(send, status, answer, extra)
        self.metrics.observe_request(lane.template, status, time.perf_counter() - started)

    def _lane(self, scope: Any) -> tuple[Lane, tuple[int, ...]] | None:
        method, path = scope["method"], scope["path"]
        for lane, pattern in self._lanes:
            if lane.method == method and (m := pattern.fullmatch(path)) is not None:
                ids = tuple(int(g) for g in m.groups())
                return (lane, ids) if all(i < U128_MAX for i in ids) else None  # ids are 1..2^128-2
        return None

    def _role(self, lane: Lane, headers: dict[bytes, bytes | None]) -> Role | None:
        presented = headers.get(b"authorization")
        if presented is None:
            return None
        role = self.verifier.role_of(presented.decode("latin-1"))
        return role if role is not None and role in lane.admitted else None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes | None]:
    """The headers the hot path looks at; one named twice maps to None (not ordinary)."""
    out: dict[bytes, bytes | None] = {}
    for key, value in raw:
        if key in (b"authorization", b"content-length", b"content-type", b"transfer-encoding"):
            out[key] = None if key in out else value
    return out


def _ordinary_body(headers: dict[bytes, bytes | None], cap: int) -> bool:
    length, media = headers.get(b"content-length"), headers.get(b"content-type")
    if b"transfer-encoding" in headers or length is None or media is None or not length.isdigit():
        return False
    return int(length) <= cap and media.split(b";")[0].strip().lower() == b"application/json"


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[Any]]:
    """A `receive` that hands the full app the body already read, then the real stream."""
    given = False

    async def replayed() -> Any:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _answer(lane: Lane, role: Role, ids: tuple[int, ...],
                  given: Any) -> tuple[int, Any, Mapping[str, str] | None]:
    """The lane's answer, or what the full app's handlers make of its error."""
    try:
        status, answer = await lane.serve(role, ids, given)
        return status, answer, None
    except HTTPException as e:  # FastAPI's own handler: {"detail": ...}, the exception's headers
        return e.status_code, {"detail": e.detail}, e.headers
    except LedgerError as e:  # the gateway's handler for a store failure (`gateway.create_app`)
        return 503, {"detail": str(e)}, None


async def _send_json(send: Any, status: int, answer: Any, extra: Mapping[str, str] | None) -> None:
    """Starlette's `JSONResponse` bytes and headers, without building one."""
    body = json.dumps(answer, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def statement_query(raw: bytes, limit_max: int, u64_max: int) -> dict[str, Any]:
    """A statement's query string, if canonical: known keys at most once, limit 1..`limit_max`
    and timestamps 0..`u64_max` in plain decimal, reverse `true`/`false`. Else `NotOrdinary`."""
    out: dict[str, Any] = {}
    for part in raw.split(b"&") if raw else ():
        key, eq, value = part.partition(b"=")
        name = key.decode("latin-1")
        if not eq or name in out or not _CANONICAL.get(name, _NEVER).fullmatch(value):
            raise NotOrdinary(name)
        out[name] = value == b"true" if name == "reverse" else int(value)
    if not 1 <= out.get("limit", 1) <= limit_max or any(out.get(k, 0) > u64_max for k in _TIMESTAMPS):
        raise NotOrdinary("out of range")
    return out


_NUMBER = re.compile(rb"0|[1-9][0-9]{0,19}")
_NEVER = re.compile(rb"(?!)")
_TIMESTAMPS = ("timestamp_min", "timestamp_max")
_CANONICAL = {"limit": _NUMBER, "reverse": re.compile(rb"true|false"), "timestamp_min": _NUMBER,
              "timestamp_max": _NUMBER}

__all__ = ["DECIMAL_ID", "HotPath", "Lane", "NotOrdinary", "statement_query"]

"""Limits before work: what a gateway refuses before it parses, and how it parses the rest.

One request must never cost a region its lease. Before this module a 31 MB batch was
parsed whole before its 8,190-item cap was checked: 1.9 s of event loop, during which
`/health` (and the node's heartbeats) waited longer than the 1 s lease. So:

* `BodyLimit` (raw ASGI, before anything reads the body): a route's body may be at most its
  cap — the largest legal request of that route in JSON, with room for whitespace
  (`BATCH_BODY_MAX` for the batch routes, `BODY_MAX` for the others). A Content-Length
  over the cap is answered 413 at once, unread; a body without one (chunked) is counted as
  it streams and refused with 413 the moment it passes the cap.
* `StrictJSONRoute`: bodies are parsed by `strict_loads`, which refuses what Python's
  `json` lets through — `NaN`, `Infinity` (also as an overflowing `1e999`), duplicate
  keys (which of the two would a ledger believe?), ints past Python's digit limit, nesting
  past the recursion limit — as 422 `json_invalid` naming the problem (JSON NaN used to
  be a 500: the error echo could not serialise it). A body over `OFFLOAD_BYTES` is parsed
  in a worker thread, so the event loop keeps answering while it runs.
* `validation_error`: a 422 names each problem's location and message but never echoes the
  offending input (an 8,191-item list would come back whole).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from load.auth import SCOPE_ROUTE

MAX_REQUEST_ITEMS = 8190
"""Most transfers (or accounts, or ids) in one request: TigerBeetle's batch size."""
ITEM_BYTES = 640
"""Room per item: the largest legal transfer is 473 bytes of JSON with `json.dumps`' default
separators (every u128 at 2^128-1), 530 indented by two."""
BATCH_BODY_MAX = MAX_REQUEST_ITEMS * ITEM_BYTES + 4096
"""A batch route's cap (about 5 MiB)."""
BODY_MAX = 16 << 10
"""Every other route's cap: one transfer or one post/void body, with room to spare."""
OFFLOAD_BYTES = 64 << 10
"""Bodies larger than this are parsed off the event loop."""


class BodyTooLarge(HTTPException):
    """Raised from the body stream when it passes its cap. An HTTPException, so FastAPI's body
    reader passes it on (it turns other errors into a 400) and the app answers 413."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"request body over {cap:,} bytes: send smaller batches "
                              f"(at most {MAX_REQUEST_ITEMS} items)")


class BodyLimit:
    """Raw ASGI middleware: a body cap per route template (`caps`, else `default`)."""

    def __init__(self, app: Any, caps: Mapping[str, int], default: int = BODY_MAX) -> None:
        self.app = app
        self.caps = dict(caps)
        self.default = default

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.get(scope.get(SCOPE_ROUTE, ""), self.default)
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                await _answer(send, 400, "one Content-Length header, a decimal number, please")
                return
            if int(lengths[0]) > cap:
                await _answer(send, 413, BodyTooLarge(cap).detail)
                return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(cap)
            return message

        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as e:  # raised where no handler turned it into a response
            if not started:
                await _answer(send, 413, str(e.detail))


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:32]} overflows a float")
    return value


def strict_loads(body: bytes | str) -> Any:
    """JSON as RFC 8259 means it, or `json.JSONDecodeError` saying what is wrong."""
    try:
        return json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as e:  # _Refused, the int digit limit, deep nesting, bad UTF-8
        doc = body if isinstance(body, str) else ""
        raise json.JSONDecodeError(str(e)[:200] or type(e).__name__, doc, 0) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > OFFLOAD_BYTES:
                self._json = await asyncio.to_thread(strict_loads, body)
            else:
                self._json = strict_loads(body)
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by `strict_loads` (FastAPI's custom-route hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each problem's place and kind, never echoing the input."""
    assert isinstance(exc, RequestValidationError)
    detail = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300],
               **({"error": str(e["ctx"]["error"])[:300]} if isinstance(e.get("ctx"), dict) and "error" in e["ctx"]
                  else {})}
              for e in exc.errors()[:20]]
    return JSONResponse({"detail": detail}, status_code=422)


__all__ = ["BATCH_BODY_MAX", "BODY_MAX", "MAX_REQUEST_ITEMS", "BodyLimit", "BodyTooLarge", "StrictJSONRoute",
           "strict_loads", "validation_error"]

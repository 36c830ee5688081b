"""A region's extra HTTP workers (`geoledger serve --workers N`), and the link to their region.

A region's node is one process, and so was its HTTP front: past one core of parsing,
validating and answering, a region could not grow. With N workers the region process
serves HTTP as before and N - 1 worker processes accept on the same listening socket (the
kernel spreads connections among them). A worker holds no books and no secret but the
token digests: it parses and validates the hot writes itself (`load.hotpath` lanes over
`load.work`) and hands their rows to the region's node over the region's *intake*, a Unix
socket in the region's data directory (owner-only, like the store beside it); every other
request — reads, refusals, operator endpoints, metrics — it forwards as it came, to be
answered by the region's own full app in-process. A worker killed with -9 loses nothing
acknowledged: an answer leaves a worker only after the node committed, and a client whose
connection died retries the same id (EXISTS).

Frames, both ways: a 4-byte big-endian length, then a msgpack array checked field by field
(nothing unpickled, nothing else accepted; a bad frame closes the link, changing nothing):

* ``[1, call, rows]`` — rows: bytes of 1..8,190 `TRANSFER_DTYPE` rows;
  answered ``[3, call, results, writers]`` (uint32, int16 bytes, one each per row);
* ``[2, call, method, path, query, headers, body]`` — a request for the full app;
  answered ``[4, call, status, headers, body]``;
* ``[5, call, detail]`` — the region could not answer (it is stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from cext.codec import transfers_to_rows
from cext.layout import TRANSFER_DTYPE
from ledger import LedgerError, Transfer
from load.limits import BATCH_BODY_MAX, MAX_REQUEST_ITEMS
from replication.outcomes import Outcome

SUBMIT, FORWARD, ANSWER, RESPONSE, REFUSED = 1, 2, 3, 4, 5
ENVELOPE = 64 << 10
"""Room in a frame for what travels with a body: method, path, query, headers."""
MAX_FRAME = BATCH_BODY_MAX + ENVELOPE
"""Largest frame either side sends or accepts: the largest request body, plus its envelope."""
_LEN = struct.Struct(">I")
RECONNECT_S = 0.2
MAX_SOCKET_PATH = 107
log = logging.getLogger(__name__)


class IntakeError(ValueError):
    """A frame that is not one of the module docstring's: the link is closed."""


def socket_path(data_dir: str | Path, region: int) -> Path:
    """Where region `region`'s intake listens; ValueError if the path is too long for a Unix
    socket (108 bytes with its terminator)."""
    path = Path(data_dir).resolve() / f"region-{region}.intake"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"{path}: too long for a Unix socket ({MAX_SOCKET_PATH} bytes at most); use a data "
                         "directory with a shorter path for --workers")
    return path


def pack(*fields: object) -> bytes:
    body = msgpack.packb(list(fields), use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise IntakeError(f"frame of {len(body):,} bytes over {MAX_FRAME:,}")
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame's fields, None at a clean end of stream; `IntakeError` if malformed."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise IntakeError("the stream ended inside a frame's length") from None
        return None
    (n,) = _LEN.unpack(head)
    if not 0 < n <= MAX_FRAME:
        raise IntakeError(f"frame length {n:,} outside 1..{MAX_FRAME:,}")
    try:
        fields = msgpack.unpackb(await reader.readexactly(n), raw=False, strict_map_key=True)
    except (asyncio.IncompleteReadError, ValueError, msgpack.ExtraData) as e:
        raise IntakeError(f"a frame that does not decode ({type(e).__name__})") from None
    if not isinstance(fields, list) or len(fields) < 2 or type(fields[0]) is not int or type(fields[1]) is not int:
        raise IntakeError("a frame is [kind, call, ...]")
    return fields


def _expect(fields: list[Any], kinds: tuple[type, ...]) -> list[Any]:
    rest = fields[2:]
    if len(rest) != len(kinds) or not all(isinstance(v, k) and type(v) is not bool for v, k in zip(rest, kinds,
                                                                                                      strict=True)):
        raise IntakeError(f"frame kind {fields[0]}: fields must be {[k.__name__ for k in kinds]}")
    return rest


def _headers(raw: object) -> list[tuple[bytes, bytes]]:
    if not isinstance(raw, list) or not all(isinstance(h, list) and len(h) == 2 and all(isinstance(x, bytes)
                                                                                        for x in h) for h in raw):
        raise IntakeError("headers must be [[name, value], ...] of bytes")
    return [(k, v) for k, v in raw]


def _rows(raw: bytes) -> np.ndarray:
    size = TRANSFER_DTYPE.itemsize
    if not raw or len(raw) % size or len(raw) // size > MAX_REQUEST_ITEMS:
        raise IntakeError(f"rows must be 1..{MAX_REQUEST_ITEMS} whole rows of {size} bytes")
    return np.frombuffer(raw, TRANSFER_DTYPE).copy()


# ---------------------------------------------------------------------------- region side
Submit = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray]]]
"""Rows to (result per row uint32, writer per row int16), through the region's node."""


class IntakeServer:
    """The region process's end: rows go to its node (`submit`), other requests to its full
    app (`app`, called in-process). Each frame is served as it comes, concurrently, so the
    writes of several workers meet in one node step."""

    def __init__(self, path: Path, submit: Submit, app: Any, on_call: Callable[[str], None] = lambda kind: None
                 ) -> None:
        self.path = path
        self.submit = submit
        self.app = app
        self.on_call = on_call  # "submit" / "forward": how much the workers hand over (metrics)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a killed predecessor
        old = os.umask(0o177)  # owner-only from its first moment
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_FRAME)
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (fields := await read_frame(reader)) is not None:
                task = asyncio.ensure_future(self._answer(fields, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except IntakeError as e:
            log.warning("intake: closing a link that sent %s", e)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, fields: list[Any], writer: asyncio.StreamWriter) -> None:
        call = fields[1]
        try:
            if fields[0] == SUBMIT:
                (raw,) = _expect(fields, (bytes,))
                self.on_call("submit")
                results, writers = await self.submit(_rows(raw))
                frame = pack(ANSWER, call, results.astype("<u4").tobytes(), writers.astype("<i2").tobytes())
            elif fields[0] == FORWARD:
                method, path, query, headers, body = _expect(fields, (str, str, bytes, list, bytes))
                self.on_call("forward")
                status, out_headers, out_body = await call_app(self.app, method, path, query, _headers(headers), body)
                frame = pack(RESPONSE, call, status, [list(h) for h in out_headers], out_body)
            else:
                raise IntakeError(f"unknown frame kind {fields[0]}")
        except IntakeError as e:
            log.warning("intake: closing a link that sent %s", e)
            writer.close()
            return
        except Exception as e:  # noqa: BLE001 - the worker answers 503: retry with the same ids
            frame = pack(REFUSED, call, f"{type(e).__name__}: {e}"[:500])
        if not writer.is_closing():
            writer.write(frame)


async def call_app(app: Any, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI app in this process: (status, headers, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": query, "headers": headers, "scheme": "http",
             "server": ("127.0.0.1", 0), "client": ("127.0.0.1", 0), "root_path": "", "state": {}}
    sent = False
    status, out_headers, chunks = 500, [], []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # as a client that stays: no disconnect mid-answer
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status, out_headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)


# ---------------------------------------------------------------------------- worker side
class IntakeClient:
    """A worker's link to its region: calls in flight by number, reconnecting when the
    region process comes back. A call made while the link is down, or cut by its fall,
    raises `LedgerError` (the gateway answers 503: retry with the same ids)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._calls: dict[int, asyncio.Future[list[Any]]] = {}
        self._next = 1
        self._runner: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    def start(self) -> None:
        self._runner = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path), limit=MAX_FRAME)
            except OSError:
                await asyncio.sleep(RECONNECT_S)
                continue
            self._writer = writer
            try:
                while (fields := await read_frame(reader)) is not None:
                    future = self._calls.pop(fields[1], None)
                    if future is not None and not future.done():
                        future.set_result(fields)
            except (IntakeError, ConnectionError) as e:
                log.warning("intake link to %s: %s", self.path, e)
            finally:
                self._writer = None
                writer.close()
                for future in self._calls.values():
                    if not future.done():
                        future.set_exception(LedgerError("the region process went away mid-call"))
                self._calls.clear()
            await asyncio.sleep(RECONNECT_S)

    async def call(self, *fields: object) -> list[Any]:
        if self._writer is None:
            raise LedgerError("the region process is not reachable (restarting?)")
        call, self._next = self._next, self._next + 1
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._calls[call] = future
        self._writer.write(pack(fields[0], call, *fields[1:]))
        answer = await future
        if answer[0] == REFUSED:
            raise LedgerError(f"the region could not answer: {answer[2]}")
        return answer


class IntakeBackend:
    """A worker's committer backend: rows to the region's node, answers as a region node's
    gateway gives them (`load.region.NodeBackend`)."""

    batches_itself = True

    def __init__(self, client: IntakeClient, regions: list[str], me: int) -> None:
        self.client = client
        self.regions = regions
        self.me = me

    async def create_transfers(self, transfers: list[Transfer]) -> list[tuple[Outcome, str]]:
        answer = await self.client.call(SUBMIT, transfers_to_rows(transfers).tobytes())
        if answer[0] != ANSWER or len(answer) != 4:
            raise LedgerError("the region answered a write with something else")
        results = np.frombuffer(answer[2], "<u4")
        writers = np.frombuffer(answer[3], "<i2")
        if len(results) != len(transfers) or len(writers) != len(transfers):
            raise LedgerError("the region's answer does not match the rows sent")
        return writer_outcomes(results, writers, self.regions, self.me)


def writer_outcomes(results: np.ndarray, writers: np.ndarray | None, regions: list[str],
                    me: int) -> list[tuple[Outcome, str]]:
    """Each row's outcome and the name of the region whose answer it is."""
    codes = results.tolist()
    who = writers.tolist() if writers is not None else [me] * len(codes)
    return [(Outcome(c), regions[w] if 0 <= w < len(regions) else regions[me]) for c, w in zip(codes, who, strict=True)]


class Forwarder:
    """ASGI app of a worker behind its fast lane: every other request goes to the region's
    full app as it came (`FORWARD`); the lifespan starts and stops the intake link."""

    def __init__(self, client: IntakeClient) -> None:
        self.client = client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > BATCH_BODY_MAX:  # what a frame can carry (the region's own caps are smaller)
                await _send(send, 413, [(b"content-type", b"application/json")],
                            b'{"detail":"request body too large"}')
                return
            if not message.get("more_body", False):
                break
        try:
            answer = await self.client.call(FORWARD, scope["method"], scope["path"], scope.get("query_string", b""),
                                            [list(h) for h in scope["headers"]], body)
            if answer[0] != RESPONSE or len(answer) != 5:
                raise LedgerError("the region answered a request with something else")
            status, headers, out = answer[2], _headers(answer[3]), answer[4]
        except (LedgerError, IntakeError) as e:
            status, headers = 503, [(b"content-type", b"application/json")]
            out = json.dumps({"detail": f"{e}; retry with the same ids"}).encode()
        await _send(send, status, headers, out)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *kept]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Forwarder", "IntakeBackend", "IntakeClient", "IntakeError", "IntakeServer", "call_app", "pack",
           "read_frame", "socket_path", "writer_outcomes"]

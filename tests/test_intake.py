"""The link between a region and its HTTP workers (`load.intake`): rows in, answers out,
requests forwarded to the region's full app — and nothing but its frames accepted."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from cext.codec import transfers_to_rows
from cext.layout import TRANSFER_DTYPE
from ledger import LedgerError, Transfer
from load.intake import (
    FORWARD,
    MAX_FRAME,
    SUBMIT,
    Forwarder,
    IntakeBackend,
    IntakeClient,
    IntakeServer,
    call_app,
    pack,
    socket_path,
)


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """A tiny ASGI app: answers 207 with what it was asked."""
    body = (await receive())["body"]
    answer = f"{scope['method']} {scope['path']}?{scope['query_string'].decode()} {body.decode()}".encode()
    await send({"type": "http.response.start", "status": 207, "headers": [(b"x-seen", b"1")]})
    await send({"type": "http.response.body", "body": answer})


class Node:
    """Stands in for the region's node: every row OK, written by region 1; counts the calls."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    async def submit(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.rows.append(rows)
        return np.zeros(len(rows), np.uint32), np.ones(len(rows), np.int16)


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def payments(n: int) -> list[Transfer]:
    return [Transfer(id=i + 1, debit_account_id=1, credit_account_id=2, amount=5, ledger=1, code=1) for i in range(n)]


async def linked(tmp_path: Path) -> tuple[IntakeServer, IntakeClient, Node]:
    node = Node()
    server = IntakeServer(socket_path(tmp_path, 0), node.submit, echo_app)
    await server.start()
    client = IntakeClient(socket_path(tmp_path, 0))
    client.start()
    for _ in range(100):
        if client.connected:
            break
        await asyncio.sleep(0.01)
    return server, client, node


def test_rows_and_requests_go_through_and_the_socket_is_owner_only(tmp_path: Path) -> None:
    async def run() -> None:
        server, client, node = await linked(tmp_path)
        assert socket_path(tmp_path, 0).stat().st_mode & 0o077 == 0
        backend = IntakeBackend(client, ["changchun", "beijing"], 0)
        got = await asyncio.gather(*(backend.create_transfers(payments(k)) for k in (1, 3)))
        assert [len(g) for g in got] == [1, 3] and {where for g in got for _, where in g} == {"beijing"}
        assert sorted(len(r) for r in node.rows) == [1, 3]
        answer = await client.call(FORWARD, "POST", "/x", b"a=1", [[b"h", b"v"]], b"body")
        assert answer[2:] == [207, [[b"x-seen", b"1"]], b"POST /x?a=1 body"]
        await client.close()
        await server.close()
        assert not socket_path(tmp_path, 0).exists()

    asyncio.run(run())


@pytest.mark.parametrize("frame", [
    struct.pack(">I", MAX_FRAME + 1),  # a length past the cap: not read
    struct.pack(">I", 3) + b"\xc1\xc1\xc1",  # not msgpack
    pack(SUBMIT, 1, b"x" * 100),  # not whole rows
    pack(SUBMIT, 1, b"\0" * TRANSFER_DTYPE.itemsize * 8191),  # one row past the batch limit
    pack(SUBMIT, 1, "rows as text"),
    pack(FORWARD, 1, "GET", "/", b"", [[b"h"]], b""),  # a header that is not a pair
    pack(9, 1),  # an unknown kind
    framed(msgpack.packb({"kind": 1})),  # not a list
])
def test_a_bad_frame_closes_the_link_and_commits_nothing(tmp_path: Path, frame: bytes) -> None:
    async def run() -> None:
        node = Node()
        server = IntakeServer(socket_path(tmp_path, 0), node.submit, echo_app)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(str(socket_path(tmp_path, 0)))
        writer.write(frame)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
        assert node.rows == []
        await server.close()

    asyncio.run(run())


def test_a_worker_without_its_region_answers_503_and_calls_fail_cleanly(tmp_path: Path) -> None:
    async def run() -> None:
        client = IntakeClient(socket_path(tmp_path, 0))  # nobody listens
        client.start()
        with pytest.raises(LedgerError):
            await IntakeBackend(client, ["changchun"], 0).create_transfers(payments(1))
        status, _, body = await call_app(Forwarder(client), "GET", "/health", b"", [], b"")
        assert status == 503 and b"retry with the same ids" in body
        await client.close()

    asyncio.run(run())


def test_rows_cross_as_the_engine_lays_them_out(tmp_path: Path) -> None:
    async def run() -> None:
        server, client, node = await linked(tmp_path)
        sent = payments(2)
        await IntakeBackend(client, ["changchun"], 0).create_transfers(sent)
        assert node.rows[0].tobytes() == transfers_to_rows(sent).tobytes()
        await client.close()
        await server.close()

    asyncio.run(run())

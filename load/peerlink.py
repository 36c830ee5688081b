"""Region-to-region links of `geoledger serve`: framed pickles over persistent TCP.

Why not HTTP between regions: every replicated write costs several node messages (ship,
ack, forward, reply, heartbeats), and an HTTP round trip per coalesced batch (httpx on one
side, the ASGI stack on the other) cost more CPU than the ledger itself on a 2-core box.
A link here is one long-lived connection per ordered pair of regions; a frame is a 4-byte
big-endian length and a pickled list of node messages. The first frame of a connection is
the run's shared token: pickles are only ever read from a peer that proved it belongs to
the run. A message lost with a broken connection is survivable (the node's resends, pulls
and heartbeats recover), so the sender never blocks on or retries a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # bytes; a longer length prefix means a broken or hostile peer
log = logging.getLogger(__name__)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    return await reader.readexactly(n)


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class PeerListener:
    """Accepts peers' connections; hands each frame's messages to `deliver`."""

    def __init__(self, token: str, deliver: Callable[[list[Any]], None]) -> None:
        self.token = token.encode()
        self.deliver = deliver
        self.server: asyncio.Server | None = None
        self.refused = 0  # connections closed for a wrong token
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, port: int, sock: socket.socket | None = None) -> None:
        """Listen on `sock` (already bound, e.g. by the parent process) or bind `port`."""
        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock)
        else:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            if not self.token or not hmac.compare_digest(await _read_frame(reader), self.token):
                self.refused += 1
                return
            while True:
                messages = pickle.loads(await _read_frame(reader))  # noqa: S301 - token-checked peer
                self.deliver(messages)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        """Stop listening and hang up on every peer (they reconnect to whoever listens next)."""
        for writer in list(self._open):
            writer.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


class PeerSender:
    """One peer's outgoing link: whatever was queued since the last write goes as one frame."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token.encode()
        self.queue: list[Any] = []
        self.wake = asyncio.Event()
        self.sent_frames = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, message: Any) -> None:
        self.queue.append(message)
        self.wake.set()

    async def _run(self) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if not self.queue:
                    continue
                batch, self.queue = self.queue, []
                try:
                    if writer is not None and writer.is_closing():
                        writer = None  # the peer hung up (it died, or restarted) since the last frame
                    if writer is None:
                        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                        writer.write(_frame(self.token))
                    writer.write(_frame(pickle.dumps(batch, protocol=5)))
                    await writer.drain()
                    self.sent_frames += 1
                except (OSError, RuntimeError):  # peer down or restarting (uvloop raises RuntimeError
                    # for a write on a transport it already closed): drop this batch, reconnect next time
                    if writer is not None:
                        writer.close()
                    writer = None
                    await asyncio.sleep(0.05)
                except Exception:  # never let the pump die: a dead link would starve the peer for good
                    log.exception("peer link to port %d: batch of %d messages dropped", self.port, len(batch))
                    if writer is not None:
                        writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

"""Region-to-region links of `geoledger serve`: authenticated, sealed wire-codec frames over TCP.

Why not HTTP between regions: every replicated write costs several node messages (ship,
ack, forward, reply, heartbeats), and an HTTP round trip per coalesced batch (httpx on one
side, the ASGI stack on the other) cost more CPU than the ledger itself on a 2-core box.
A link here is one long-lived connection per ordered pair of regions, in one direction:
the connector sends, the listener receives. A frame is a 4-byte big-endian length and its
bytes.

A connection starts with the handshake of `load.peerauth` (each region proves it holds its
own key; the listener learns *which* region is on the line, and confirms it accepted). Until it completes, a frame
may be at most `PRE_AUTH_MAX` bytes (a stranger makes a region buffer a few KB, not 64
MiB), it must complete within `HANDSHAKE_TIMEOUT`, and at most `MAX_PENDING` connections
may be in it at once (a newcomer evicts the oldest, so a stranger who opens connections
cannot lock peers out unless he opens them faster than a handshake takes). Each peer has
one live link (its newer connection replaces the older). After it, every frame is sealed
(`FrameOpener`: forged, replayed, reordered, truncated or altered frames close the
connection) and holds a `PeerFrame` in the explicit codec (`replication.wire`; never pickle),
decoded with `decode_peer_frame(frame, sender=<the authenticated peer>)`: a frame or a
message claiming another sender, or anything that is not a known peer message, is
dropped whole, logged and counted, and the link carries on.

A message lost with a broken connection is survivable (the node's resends, pulls and
heartbeats recover), so the sender never blocks on or retries a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from load.peerauth import (
    HELLO_SIZE,
    PROOF_SIZE,
    REPLY_SIZE,
    ConnectorHandshake,
    FrameOpener,
    FrameRejected,
    FrameSealer,
    HandshakeError,
    ListenerHandshake,
    PeerKeys,
    check_confirmation,
    confirmation,
)
from replication.wire import WireError, decode_peer_frame, encode_peer_frame

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20
"""Largest sealed frame after the handshake (a peer's catch-up `Ship` can be large)."""
PRE_AUTH_MAX = 4096
"""Largest frame before the handshake completes (its messages are 64 to 136 bytes)."""
HANDSHAKE_TIMEOUT = 2.0
"""Seconds a connection may take to prove who it is (a local handshake takes about a ms)."""
MAX_PENDING = 8
"""Connections in their handshake at once; a newcomer evicts the oldest."""
log = logging.getLogger(__name__)


class FrameTooLong(ValueError):
    pass


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (n,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if n > limit:
        raise FrameTooLong(f"frame of {n} bytes exceeds {limit}")
    return await reader.readexactly(n)


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _every_power_of_two(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... of a kind: a stranger cannot flood the log."""
    return count & (count - 1) == 0


class PeerListener:
    """Accepts peers' connections; hands each authenticated frame's messages to `deliver`.

    Counters: `refused` connections that failed the handshake (or its deadline, or were
    evicted while in it), `rejected` sealed frames that failed to open (the connection is
    closed), `dropped` frames that opened but did not decode as the peer's own messages.
    """

    def __init__(self, keys: PeerKeys, deliver: Callable[[list[Any]], None], *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_pending: int = MAX_PENDING,
                 max_frame: int = MAX_FRAME) -> None:
        self.keys = keys
        self.deliver = deliver
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.max_frame = max_frame
        self.server: asyncio.Server | None = None
        self.refused = 0
        self.rejected = 0
        self.dropped = 0
        self._pending: dict[asyncio.StreamWriter, None] = {}  # insertion order: oldest first
        self._links: dict[int, asyncio.StreamWriter] = {}
        self._open: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[Any]] = set()

    async def start(self, port: int, sock: socket.socket | None = None) -> None:
        """Listen on `sock` (already bound, e.g. by the parent process) or bind `port`."""
        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock)
        else:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        while len(self._pending) >= self.max_pending:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest)
            oldest.close()
        self._pending[writer] = None
        self._open.add(writer)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
        shake = ListenerHandshake(self.keys)
        hello = await _read_frame(reader, PRE_AUTH_MAX)
        if len(hello) != HELLO_SIZE:
            raise HandshakeError(f"a first frame of {len(hello)} bytes is no hello")
        writer.write(_frame(shake.reply(hello)))
        await writer.drain()
        proof = await _read_frame(reader, PRE_AUTH_MAX)
        if len(proof) != PROOF_SIZE:
            raise HandshakeError(f"a second frame of {len(proof)} bytes is no proof")
        peer, key = shake.finish(proof)
        writer.write(_frame(confirmation(key)))
        await writer.drain()
        return peer, key

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        self._admit(writer)
        peer: int | None = None
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    peer, key = await self._handshake(reader, writer)
            except (TimeoutError, HandshakeError, FrameTooLong, asyncio.IncompleteReadError, ConnectionError) as e:
                self.refused += 1
                if _every_power_of_two(self.refused):
                    log.warning("peer link refused (%d so far): %s", self.refused, type(e).__name__ + (
                        f": {e}" if isinstance(e, HandshakeError | FrameTooLong) else ""))
                return
            self._pending.pop(writer, None)
            older = self._links.get(peer)
            if older is not None:
                older.close()
            self._links[peer] = writer
            opener = FrameOpener(key)
            while True:
                sealed = await _read_frame(reader, self.max_frame)
                try:
                    frame = opener.open(sealed)
                except FrameRejected as e:
                    self.rejected += 1
                    log.warning("peer link from region %d closed: %s", peer, e)
                    return
                try:
                    messages = decode_peer_frame(frame, peer, self.keys.regions, max_frame=self.max_frame)
                except WireError as e:
                    self.dropped += 1
                    if _every_power_of_two(self.dropped):
                        log.warning("frame from region %d dropped (%d so far): %s", peer, self.dropped, e)
                    continue
                try:
                    self.deliver(messages)
                except Exception:  # the region's own failure (its driver stops it): not the link's
                    log.exception("delivering a frame from region %d failed", peer)
        except (asyncio.IncompleteReadError, ConnectionError, FrameTooLong):
            return
        finally:
            self._pending.pop(writer, None)
            if peer is not None and self._links.get(peer) is writer:
                del self._links[peer]
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        """Stop listening and hang up on every peer (they reconnect to whoever listens next)."""
        if self.server is not None:
            self.server.close()  # no new connections
        for writer in list(self._open):
            writer.close()
        if self._serving:  # let each connection's task see its end (not be cancelled mid-read)
            await asyncio.wait(list(self._serving), timeout=2.0)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


class PeerSender:
    """One peer's outgoing link: whatever was queued since the last write goes as one frame."""

    def __init__(self, port: int, keys: PeerKeys, peer: int, *, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.port = port
        self.keys = keys
        self.peer = peer
        self.handshake_timeout = handshake_timeout
        self.queue: list[Any] = []
        self.wake = asyncio.Event()
        self.sent_frames = 0
        self.handshake_failures = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, message: Any) -> None:
        self.queue.append(message)
        self.wake.set()

    async def _connect(self) -> tuple[asyncio.StreamWriter, FrameSealer]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            async with asyncio.timeout(self.handshake_timeout):
                shake = ConnectorHandshake(self.keys, self.peer)
                writer.write(_frame(shake.hello()))
                reply = await _read_frame(reader, PRE_AUTH_MAX)
                if len(reply) != REPLY_SIZE:
                    raise HandshakeError(f"a reply of {len(reply)} bytes is no reply")
                proof, key = shake.finish(reply)
                writer.write(_frame(proof))
                await writer.drain()
                try:
                    check_confirmation(key, await _read_frame(reader, PRE_AUTH_MAX))
                except asyncio.IncompleteReadError:
                    raise HandshakeError(f"region {self.peer} hung up on the handshake (it refused this key)") from None
        except BaseException:
            writer.close()
            raise
        return writer, FrameSealer(key)

    async def _run(self) -> None:
        link: tuple[asyncio.StreamWriter, FrameSealer] | None = None
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if not self.queue:
                    continue
                batch, self.queue = self.queue, []
                try:
                    payload = encode_peer_frame(self.keys.me, batch)
                except WireError:  # a message with no wire form: a bug here, not the link's fault
                    log.exception("peer link to region %d: batch of %d messages dropped", self.peer, len(batch))
                    continue
                try:
                    if link is not None and link[0].is_closing():
                        link = None  # the peer hung up (it died, or restarted) since the last frame
                    if link is None:
                        link = await self._connect()
                    writer, sealer = link
                    writer.write(_frame(sealer.seal(payload)))
                    await writer.drain()
                    self.sent_frames += 1
                except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError, FrameTooLong,
                        HandshakeError) as e:
                    # peer down or restarting (uvloop raises RuntimeError for a write on a transport it
                    # already closed), or not who it must be: drop this batch, reconnect next time
                    if isinstance(e, HandshakeError):
                        self.handshake_failures += 1
                        if _every_power_of_two(self.handshake_failures):
                            log.warning("peer link to region %d: %s", self.peer, e)
                    if link is not None:
                        link[0].close()
                    link = None
                    await asyncio.sleep(0.05)
                except Exception:  # never let the pump die: a dead link would starve the peer for good
                    log.exception("peer link to region %d: batch of %d messages dropped", self.peer, len(batch))
                    if link is not None:
                        link[0].close()
                    link = None
        finally:
            if link is not None:
                link[0].close()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

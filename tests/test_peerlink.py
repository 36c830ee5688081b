"""Region-to-region links: token first, then framed message lists, nothing from strangers."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from load.peerlink import MAX_FRAME, PeerListener, PeerSender, _frame


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(cond: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_messages_arrive_in_order_and_a_wrong_token_delivers_nothing() -> None:
    async def main() -> None:
        got: list[Any] = []
        port = _free_port()
        listener = PeerListener("s3cret", got.extend)
        await listener.start(port)
        good, bad = PeerSender(port, "s3cret"), PeerSender(port, "guess")
        for i in range(500):
            good.send(("ship", i))
            bad.send(("forged", i))
            if i % 50 == 0:
                await asyncio.sleep(0)  # let frames go out in several writes
        await _until(lambda: len(got) == 500 and listener.refused >= 1)
        assert got == [("ship", i) for i in range(500)]
        assert good.sent_frames > 1
        await good.close()
        await bad.close()
        await listener.close()

    asyncio.run(main())


def test_an_oversized_or_truncated_frame_closes_the_connection_without_delivering() -> None:
    async def main() -> None:
        got: list[Any] = []
        port = _free_port()
        listener = PeerListener("t", got.extend)
        await listener.start(port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_frame(b"t") + struct.pack(">I", MAX_FRAME + 1) + b"x" * 16)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the listener hung up
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_frame(b"t") + struct.pack(">I", 100) + b"short")
        writer.close()
        await asyncio.sleep(0.1)
        assert got == []
        await listener.close()

    asyncio.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the gateways run on uvloop
def test_a_sender_survives_its_peer_restarting(loop: str) -> None:
    """A batch sent while the peer is down is dropped (the node's resends cover it); the
    link reconnects to the restarted peer by itself, however the old connection died."""
    async def main() -> None:
        port = _free_port()
        sender = PeerSender(port, "t")
        sender.send("lost")  # nobody listening yet
        await asyncio.sleep(0.2)
        got: list[Any] = []
        listener = PeerListener("t", got.extend)
        await listener.start(port)
        sender.send("first")
        await _until(lambda: got == ["first"])
        for w in list(listener._open):  # die like a killed process: reset, not a clean close
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await listener.close()
        await asyncio.sleep(0.1)
        for k in range(3):  # the old connection is dead: these may be lost
            sender.send(f"during-{k}")
            await asyncio.sleep(0.05)
        got2: list[Any] = []
        listener2 = PeerListener("t", got2.extend)
        await listener2.start(port)
        for _ in range(100):
            sender.send("again")
            await asyncio.sleep(0.02)
            if "again" in got2:
                break
        assert "again" in got2 and "lost" not in got + got2
        await sender.close()
        await listener2.close()

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())

"""Region-to-region links: a handshake per region key, sealed wire-codec frames, nothing from strangers.

Every attack here (a stranger, a stolen region id, a region speaking for another, garbage,
oversized, truncated, replayed, reordered and altered frames, a silent connection, a flood
of connections) delivers nothing, and the listener goes on serving its real peers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from load.peerauth import (
    ConnectorHandshake,
    FrameSealer,
    HandshakeError,
    ListenerHandshake,
    PeerKeys,
    check_confirmation,
    generate,
)
from load.peerlink import PRE_AUTH_MAX, PeerListener, PeerSender, _frame, _read_frame
from replication.messages import ClientRequest, Heartbeat, PeerFrame
from replication.wire import encode, encode_peer_frame
from tests.support.no_pickle import ROOT, check_no_pickle

PRIVATE, PUBLIC = generate(3)
KEYS = [PeerKeys.load(r, PRIVATE[r], PUBLIC) for r in range(3)]


def hb(sender: int, n: int) -> Heartbeat:
    return Heartbeat(sender, n, 1, (0, 0, 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


async def _closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True once the listener hung up on this connection (whatever it wrote before)."""
    try:
        await asyncio.wait_for(reader.read(), timeout)  # reads to the end of the stream
    except ConnectionError:
        pass
    except TimeoutError:
        return False
    return True


async def _handshake_as(keys: PeerKeys, port: int, listener: int = 0) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, FrameSealer]:
    """A raw client that completes the handshake as `keys.me`: what an attacker holding
    that region's key (or the region itself) can do."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    shake = ConnectorHandshake(keys, listener)
    writer.write(_frame(shake.hello()))
    proof, key = shake.finish(await _read_frame(reader, PRE_AUTH_MAX))
    writer.write(_frame(proof))
    await writer.drain()
    check_confirmation(key, await _read_frame(reader, PRE_AUTH_MAX))
    return reader, writer, FrameSealer(key)


def run(main: Callable[[PeerListener, int, list[Any]], Coroutine[Any, Any, None]], **options: Any) -> None:
    """Region 0 listens; the test attacks it; a real sender from region 1 must still get through."""
    async def outer() -> None:
        got: list[Any] = []
        port = _free_port()
        listener = PeerListener(KEYS[0], got.extend, **options)
        await listener.start(port)
        try:
            await main(listener, port, got)
            honest = PeerSender(port, KEYS[1], 0)
            honest.send(hb(1, 999))
            await _until(lambda: hb(1, 999) in got)
            await honest.close()
        finally:
            await listener.close()

    asyncio.run(outer())


def test_messages_arrive_in_order_from_an_authenticated_peer() -> None:
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        sender = PeerSender(port, KEYS[1], 0)
        for i in range(500):
            sender.send(hb(1, i))
            if i % 50 == 0:
                await asyncio.sleep(0)  # let frames go out in several writes
        await _until(lambda: len(got) == 500)
        assert got == [hb(1, i) for i in range(500)]
        assert sender.sent_frames > 1 and listener.refused == 0
        await sender.close()

    run(main)


def test_a_stranger_claiming_a_region_without_its_key_delivers_nothing() -> None:
    """The old shared token let any holder in; here a region id is worth nothing without its key."""
    stranger_private, _ = generate(1)
    impostor = PeerKeys(1, PeerKeys.load(0, stranger_private[0], [_pub(stranger_private[0])]).private, KEYS[1].public)

    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        sender = PeerSender(port, impostor, 0)
        sender.send(hb(1, 1))
        await _until(lambda: listener.refused >= 1 and sender.handshake_failures >= 1)
        assert sender.sent_frames == 0
        with pytest.raises(HandshakeError, match="cannot prove it is region 1"):
            shake, lst = ConnectorHandshake(impostor, 0), ListenerHandshake(KEYS[0])
            proof, _ = shake.finish(lst.reply(shake.hello()))
            lst.finish(proof)
        await sender.close()
        assert got == []

    run(main)


def _pub(private_hex: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from load.peerauth import public_bytes

    return public_bytes(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex)).public_key()).hex()


def test_a_sender_never_talks_to_an_impostor_listener() -> None:
    """A process that took region 0's port (it died) cannot sign as region 0: the sender
    stops before sending its proof or any frame."""
    stranger_private, _ = generate(1)
    fake = PeerKeys(0, PeerKeys.load(0, stranger_private[0], [_pub(stranger_private[0])]).private, KEYS[0].public)
    shake = ConnectorHandshake(KEYS[1], 0)
    with pytest.raises(HandshakeError, match="cannot prove it is region 0"):
        shake.finish(ListenerHandshake(fake).reply(shake.hello()))

    async def main() -> None:
        got: list[Any] = []
        port = _free_port()
        impostor = PeerListener(fake, got.extend)
        await impostor.start(port)
        sender = PeerSender(port, KEYS[1], 0)
        sender.send(hb(1, 1))
        await _until(lambda: sender.handshake_failures >= 1)
        assert got == [] and sender.sent_frames == 0
        await sender.close()
        await impostor.close()

    asyncio.run(main())


def test_a_region_cannot_speak_for_another() -> None:
    """Region 2 holds its own key and is a real peer, yet its frames may only carry region 2's
    messages: a frame saying it is region 1's, or holding a message in region 1's name, or a
    client request (which only a region's own gateway hands its node), is dropped whole, and
    region 2's own messages still arrive on the same link. Without the identity check (the
    listener trusting the frame's own `sender`), the forged frames would be delivered."""
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        reader, writer, sealer = await _handshake_as(KEYS[2], port)
        import numpy as np

        from cext.layout import TRANSFER_DTYPE

        forged = [encode(PeerFrame(1, [hb(1, 5)])),  # the frame claims region 1
                  encode_peer_frame(2, [hb(2, 6), hb(1, 7)]),  # one message in region 1's name
                  encode(PeerFrame(2, [ClientRequest(1, np.zeros(1, TRANSFER_DTYPE))]))]  # not a peer message
        for frame in forged:
            writer.write(_frame(sealer.seal(frame)))
        writer.write(_frame(sealer.seal(encode_peer_frame(2, [hb(2, 8)]))))
        await writer.drain()
        await _until(lambda: got == [hb(2, 8)])
        assert listener.dropped == 3
        writer.close()

    run(main)


@pytest.mark.parametrize("attack", ["garbage", "oversized length", "truncated hello", "silence", "huge first frame"])
def test_strangers_before_the_handshake_get_nothing_and_cost_little(attack: str) -> None:
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if attack == "garbage":
            writer.write(os.urandom(2000))
        elif attack == "oversized length":
            writer.write(struct.pack(">I", PRE_AUTH_MAX + 1) + b"x" * 100)  # refused before reading on
        elif attack == "truncated hello":
            writer.write(_frame(ConnectorHandshake(KEYS[1], 0).hello())[:40])
        elif attack == "huge first frame":
            writer.write(struct.pack(">I", 64 << 20) + b"\0" * 4096)  # the old limit before the token
        await writer.drain()
        # silence and a truncated hello wait for the deadline; the others are closed long before it
        assert await _closed(reader, timeout=5.0)
        assert listener.refused == 1 and got == []
        writer.close()

    run(main, handshake_timeout=0.3 if attack in ("silence", "truncated hello") else 30.0)


def test_a_flood_of_connections_cannot_lock_out_a_real_peer() -> None:
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        await _until(lambda: len(listener._pending) <= 4)
        evicted = [await _closed(r, 1.0) for r, _ in silent[:16]]
        assert all(evicted), "the oldest pending connections were evicted"
        for _, w in silent:
            w.close()

    run(main, max_pending=4, handshake_timeout=30.0)


def test_replayed_reordered_altered_and_truncated_frames_are_not_delivered() -> None:
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        # replay within a connection: frame 0 again
        reader, writer, sealer = await _handshake_as(KEYS[1], port)
        first = _frame(sealer.seal(encode_peer_frame(1, [hb(1, 1)])))
        writer.write(first + first)
        await writer.drain()
        assert await _closed(reader)
        assert got == [hb(1, 1)] and listener.rejected == 1
        # reordered: frame 1 before frame 0
        reader, writer, sealer = await _handshake_as(KEYS[1], port)
        a, b = sealer.seal(encode_peer_frame(1, [hb(1, 2)])), sealer.seal(encode_peer_frame(1, [hb(1, 3)]))
        writer.write(_frame(b) + _frame(a))
        assert await _closed(reader)
        # altered: one bit flipped
        reader, writer, sealer = await _handshake_as(KEYS[1], port)
        sealed = bytearray(sealer.seal(encode_peer_frame(1, [hb(1, 4)])))
        sealed[5] ^= 1
        writer.write(_frame(bytes(sealed)))
        assert await _closed(reader)
        # truncated: half a frame, then the connection ends
        reader, writer, sealer = await _handshake_as(KEYS[1], port)
        writer.write(_frame(sealer.seal(encode_peer_frame(1, [hb(1, 5)])))[:30])
        writer.close()
        await asyncio.sleep(0.1)
        assert got == [hb(1, 1)] and listener.rejected == 3

    run(main)


def test_a_recorded_connection_replayed_whole_is_refused() -> None:
    """Everything a real sender wrote on one connection, captured and sent again on a new
    one: the listener's fresh nonce and key make the recorded proof worthless."""
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        captured = bytearray()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", port)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
                while data := await src.read(65536):
                    if record:
                        captured.extend(data)
                    dst.write(data)
                dst.close()

            await asyncio.gather(pump(reader, up_w, True), pump(up_r, writer, False), return_exceptions=True)

        tap = await asyncio.start_server(relay, "127.0.0.1", 0)
        sender = PeerSender(tap.sockets[0].getsockname()[1], KEYS[1], 0)
        sender.send(hb(1, 42))
        await _until(lambda: got == [hb(1, 42)])
        await sender.close()
        tap.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bytes(captured))
        await writer.drain()
        assert await _closed(reader)
        assert got == [hb(1, 42)] and listener.refused == 1

    run(main)


def test_a_second_link_from_a_peer_replaces_the_first() -> None:
    async def main(listener: PeerListener, port: int, got: list[Any]) -> None:
        r1, w1, _ = await _handshake_as(KEYS[2], port)
        r2, w2, s2 = await _handshake_as(KEYS[2], port)
        assert await _closed(r1)
        w2.write(_frame(s2.seal(encode_peer_frame(2, [hb(2, 1)]))))
        await _until(lambda: got == [hb(2, 1)])
        w2.close()

    run(main)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the gateways run on uvloop
def test_a_sender_survives_its_peer_restarting(loop: str) -> None:
    """A batch sent while the peer is down is dropped (the node's resends cover it); the
    link reconnects, handshake and all, to the restarted peer by itself, however the old
    connection died."""
    async def main() -> None:
        port = _free_port()
        sender = PeerSender(port, KEYS[1], 0)
        sender.send(hb(1, 0))  # nobody listening yet: lost
        await asyncio.sleep(0.2)
        got: list[Any] = []
        listener = PeerListener(KEYS[0], got.extend)
        await listener.start(port)
        sender.send(hb(1, 1))
        await _until(lambda: got == [hb(1, 1)])
        for w in list(listener._open):  # die like a killed process: reset, not a clean close
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await listener.close()
        await asyncio.sleep(0.1)
        for k in range(3):  # the old connection is dead: these may be lost
            sender.send(hb(1, 10 + k))
            await asyncio.sleep(0.05)
        got2: list[Any] = []
        listener2 = PeerListener(KEYS[0], got2.extend)
        await listener2.start(port)
        for _ in range(100):
            sender.send(hb(1, 2))
            await asyncio.sleep(0.02)
            if hb(1, 2) in got2:
                break
        assert hb(1, 2) in got2 and hb(1, 0) not in got + got2
        await sender.close()
        await listener2.close()

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def test_keys_must_match_their_region() -> None:
    with pytest.raises(ValueError, match="not the one its peers know"):
        PeerKeys.load(1, PRIVATE[0], PUBLIC)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "load").glob("*.py")))
def test_nothing_in_the_live_surface_unpickles(path: str) -> None:
    """The links used to `pickle.loads` every frame: a token holder ran a shell command in a region."""
    check_no_pickle(path)

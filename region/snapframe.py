"""How a durable store writes a snapshot: one checksummed blob, cut into chunks, and a header.

A region's snapshot holds its engine (a few hundred bytes per transfer: gigabytes at ten
million transfers), more than one database value should or can hold (a Cassandra mutation
is at most half a commit-log segment), so it is stored as chunks of `CHUNK_BYTES` and a
header naming them. The blob is

    ``MAGIC || u64 len(meta) || meta || engine``

where *meta* is the snapshot without its engine, encoded by `replication.wire` (never
pickle), and *engine* is the engine's own snapshot format. The header (`SnapshotHeader`)
holds the position and chain value the snapshot covers, the chunk count, the blob's length
and its sha256; a store writes the chunks first and the header last, so a snapshot whose
header is not there was never taken (a torn write: the older snapshot and the full log
stand), and one whose chunks do not add up to its header's digest is damaged: it is
refused with `CorruptStoreError`, never loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from ledger.errors import CorruptStoreError
from replication.snapbuffer import HandedOverBuffer, handed_over
from replication.snapshot import NodeSnapshot
from replication.wire import WireError, decode, encode

MAGIC = b"GLS1"  # geoledger region snapshot, framing version 1
CHUNK_BYTES = 1 << 20
MAX_META_BYTES = 1 << 31  # quorum: each Raft log's snapshot slice sits in the meta frame
_LEN = struct.Struct("<Q")


class SnapshotHeader(NamedTuple):
    """What a store keeps beside a snapshot's chunks: where it is, and how to check it."""

    position: int
    chain: bytes
    chunks: int
    length: int
    digest: bytes


class FramedSnapshot:
    """A snapshot as the chunks a store writes (made as they are written) and their header."""

    def __init__(self, snapshot: NodeSnapshot) -> None:
        meta = encode(dataclasses.replace(snapshot, engine=b""), max_frame=MAX_META_BYTES)
        self._parts = (MAGIC + _LEN.pack(len(meta)) + meta, snapshot.engine)
        digest = hashlib.sha256()
        for part in self._parts:
            digest.update(part)
        length = sum(len(p) for p in self._parts)
        self.header = SnapshotHeader(snapshot.position, snapshot.chain, -(-length // CHUNK_BYTES), length,
                                     digest.digest())

    def chunks(self) -> Iterator[bytes]:
        """The blob in `header.chunks` pieces of `CHUNK_BYTES` (the last one shorter)."""
        views = [memoryview(p) for p in self._parts]
        pending: list[memoryview] = []
        size = 0
        for view in views:
            while len(view):
                take = view[:CHUNK_BYTES - size]
                view = view[len(take):]
                pending.append(take)
                size += len(take)
                if size == CHUNK_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
        if pending:
            yield b"".join(pending)


class _Stream:
    """The blob a snapshot's chunks hold, read front to back and hashed as it passes: no
    chunk is kept, so the blob is never in memory as a list of chunks."""

    def __init__(self, header: SnapshotHeader, chunks: Iterable[bytes],
                 refuse: Callable[[str], CorruptStoreError]) -> None:
        self._header, self._chunks, self._refuse = header, iter(chunks), refuse
        self._digest = hashlib.sha256()
        self._rest = memoryview(b"")  # the part of the newest chunk not read yet
        self._count = self._at = 0  # chunks and bytes that came

    def _next(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        h = self._header
        if self._count == h.chunks or self._at + len(chunk) > h.length:
            raise self._refuse(f"it has more than the {h.chunks} chunks ({h.length} bytes) its header names")
        self._digest.update(chunk)
        self._count += 1
        self._at += len(chunk)
        self._rest = memoryview(chunk)
        return True

    def readinto(self, into: memoryview) -> int:
        """Fill `into` from the stream; how many bytes it filled (fewer: the stream ended)."""
        done = 0
        while done < len(into):
            if not self._rest and not self._next():
                break
            take = min(len(self._rest), len(into) - done)
            into[done:done + take] = self._rest[:take]
            self._rest = self._rest[take:]
            done += take
        return done

    def finish(self) -> None:
        """Read what is left, then refuse a snapshot with chunks or bytes missing, or whose
        bytes fail the header's digest."""
        self._rest = memoryview(b"")
        while self._next():
            self._rest = memoryview(b"")
        h = self._header
        if self._count != h.chunks or self._at != h.length:
            raise self._refuse(f"{self._count} of its {h.chunks} chunks ({self._at} of {h.length} bytes) are there")
        if self._digest.digest() != h.digest:
            raise self._refuse("its stored bytes fail their checksum")


def read_snapshot(header: SnapshotHeader, chunks: Iterable[bytes], where: str) -> NodeSnapshot:
    """The snapshot `chunks` (in order) hold; CorruptStoreError naming `where` and the
    snapshot if anything is missing, extra, damaged or not a snapshot of that position.

    Memory is what sets how large a region can restart, so the blob is never held whole
    (at ten million transfers it is gigabytes, and its meta frame holds the retained
    entries: about as much again). The chunks are read in order and hashed as they pass,
    into one buffer: first the meta frame, which is decoded at once (`replication.wire`
    refuses hostile bytes with WireError; what it gives is a copy), then, over it, the
    engine's snapshot. The snapshot's `engine` is a read-only view of that buffer, which the
    engine copies once into its own rows, giving the buffer's pages back as it goes
    (`replication.snapbuffer`). Nothing is used, and no error but a missing or
    damaged chunk's is reported, before the last chunk is in and the digest is checked:
    a damaged snapshot is refused, with the errors in the order the header, the chunks, the
    digest, the framing and the decoding are checked, before any of it reaches a node."""
    def refuse(why: str) -> CorruptStoreError:
        return CorruptStoreError(f"{where}: the snapshot at record {header.position} cannot be loaded: {why}")

    if not 0 <= header.length <= header.chunks * CHUNK_BYTES or header.chunks != -(-header.length // CHUNK_BYTES):
        raise refuse(f"its header claims {header.chunks} chunks for {header.length} bytes")
    stream = _Stream(header, chunks, refuse)
    head = bytearray(len(MAGIC) + _LEN.size)
    meta_len = engine_len = 0
    wrong: str | None = None  # why the framing is wrong: said once the digest is known
    if stream.readinto(memoryview(head)) < len(head) or head[:len(MAGIC)] != MAGIC:
        wrong = "it is not a framed region snapshot"
    else:
        (meta_len,) = _LEN.unpack_from(head, len(MAGIC))
        if len(head) + meta_len > header.length:
            wrong = "its state runs past its end"
        else:
            engine_len = header.length - len(head) - meta_len
    snap: NodeSnapshot | None = None
    failed: Exception | None = None  # what decoding raised, if not WireError
    view = memoryview(b"")
    if wrong is None:
        blob = _buffer(max(meta_len, engine_len), refuse)
        if stream.readinto(memoryview(blob)[:meta_len]) < meta_len:
            stream.finish()  # chunks are missing: that is the error
        try:
            snap = decode(memoryview(blob)[:meta_len], (NodeSnapshot,), max_frame=MAX_META_BYTES)
        except WireError as e:
            wrong = f"it does not decode: {e}"
        except Exception as e:  # damaged bytes may fail anywhere: the digest decides what is said
            failed = e
        view = memoryview(blob)[:engine_len]  # the engine goes over the decoded meta frame
        stream.readinto(view)
    stream.finish()
    if failed is not None:
        raise failed
    if wrong is not None or snap is None:
        raise refuse(wrong or "it does not decode")
    if (snap.position, snap.chain) != (header.position, header.chain):
        raise refuse(f"it says it covers the records before {snap.position}, its header says {header.position}")
    snap.engine = view.toreadonly()  # type: ignore[assignment]  # a bytes-like view: see the docstring
    return snap


def _buffer(length: int, refuse: Callable[[str], CorruptStoreError]) -> HandedOverBuffer | bytearray:
    """Zeroed, writable memory of `length` bytes, its pages touched only as they are
    written: an anonymous map whose pages the engine's restore gives back as it copies
    them (`replication.snapbuffer`; a bytearray when it is empty: a map cannot be). A
    header that claims more than the host can map is refused, not an OSError."""
    if not length:
        return bytearray()
    try:
        return handed_over(length)
    except (OSError, OverflowError, ValueError) as e:
        raise refuse(f"its header claims {length:,} bytes, more than can be held ({e})") from None


__all__ = ["CHUNK_BYTES", "MAGIC", "FramedSnapshot", "SnapshotHeader", "read_snapshot"]

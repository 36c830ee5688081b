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
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ledger.errors import CorruptStoreError
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


def read_snapshot(header: SnapshotHeader, chunks: Iterable[bytes], where: str) -> NodeSnapshot:
    """The snapshot `chunks` (in order) hold; CorruptStoreError naming `where` and the
    snapshot if anything is missing, extra, damaged or not a snapshot of that position."""
    def refuse(why: str) -> CorruptStoreError:
        return CorruptStoreError(f"{where}: the snapshot at record {header.position} cannot be loaded: {why}")

    if not 0 <= header.length <= header.chunks * CHUNK_BYTES or header.chunks != -(-header.length // CHUNK_BYTES):
        raise refuse(f"its header claims {header.chunks} chunks for {header.length} bytes")
    parts: list[bytes] = []
    digest = hashlib.sha256()
    at = 0
    for chunk in chunks:  # checked as they come; the blob is only ever joined once, past its frame
        if len(parts) == header.chunks or at + len(chunk) > header.length:
            raise refuse(f"it has more than the {header.chunks} chunks ({header.length} bytes) its header names")
        digest.update(chunk)
        parts.append(chunk)
        at += len(chunk)
    if len(parts) != header.chunks or at != header.length:
        raise refuse(f"{len(parts)} of its {header.chunks} chunks ({at} of {header.length} bytes) are there")
    if digest.digest() != header.digest:
        raise refuse("its stored bytes fail their checksum")
    head = len(MAGIC) + _LEN.size
    first = parts[0] if parts else b""
    if first[:len(MAGIC)] != MAGIC or len(first) < head:
        raise refuse("it is not a framed region snapshot")
    (meta_len,) = _LEN.unpack_from(first, len(MAGIC))
    if head + meta_len > header.length:
        raise refuse("its state runs past its end")
    engine_at = head + meta_len
    views, skip = [], 0
    for part in parts:  # the meta frame and the engine, each joined once from the chunks' views
        views.append(memoryview(part))
        skip += len(part)
        if skip >= engine_at:
            break
    meta = b"".join(views)[head:engine_at]
    k = len(views) - 1
    engine_parts: list[memoryview] = [memoryview(parts[k])[len(parts[k]) - (skip - engine_at):],
                                      *[memoryview(p) for p in parts[k + 1:]]]
    del parts, views
    try:
        snap: NodeSnapshot = decode(meta, (NodeSnapshot,), max_frame=MAX_META_BYTES)
    except WireError as e:
        raise refuse(f"it does not decode: {e}") from None
    if (snap.position, snap.chain) != (header.position, header.chain):
        raise refuse(f"it says it covers the records before {snap.position}, its header says {header.position}")
    snap.engine = b"".join(engine_parts)
    return snap


__all__ = ["CHUNK_BYTES", "MAGIC", "FramedSnapshot", "SnapshotHeader", "read_snapshot"]

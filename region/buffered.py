"""What the durable region stores share: record framing, loading, and buffered writes.

On disk a record is ``(index, blob, chain)``; the blob is ``MAGIC || sha256(frame) || frame``,
where the frame is the record encoded by `replication.wire` (never pickle). Opening a store
reads every record back and refuses, with `CorruptStoreError` naming the store and the
record: a blob that is not framed so, whose checksum fails or that does not decode to a
record type; a hole in the index sequence; a chain value other than the one recomputed
from the records before it. An entry that decodes but fails its *own* checksum is not an
open error: it is damage `scrub` finds and peers repair (see `region.store`).

Writes are buffered: `append` / `replace` / `corrupt` change the records at once and queue
the encoded record; `flush` writes the queue in one backend write. Appends (the event loop's
thread) and a flush (possibly a worker thread) may overlap: the queue is swapped under a
lock and flushes are serialised, so a record is written in a later flush than any record
appended before it. A failed flush puts its records back in the queue (a newer version of
the same index queued meanwhile wins), raises `StoreError`, and a later flush writes them.

A snapshot (`save_snapshot`) is written as chunks and a header (`region.snapframe`): the
chunks a few at a time (flushes may run between), then, in one backend write, the header
and the removal of the older snapshot and of the records it covers. A store opens on its
newest header: records before its position, other snapshots' chunks and headers are what a
crash left behind and are removed; its snapshot is read and checked at once (damage is a
`CorruptStoreError`), and handed to the first `load_snapshot` (recovery), then dropped from
memory: later loads read it again.
"""

from __future__ import annotations

import hashlib
import threading
from abc import abstractmethod
from collections.abc import Iterable

from ledger.errors import CorruptStoreError, StoreError
from region.snapframe import FramedSnapshot, SnapshotHeader, read_snapshot
from region.store import RegionStore, chain_next
from replication.log import Entry, Record
from replication.snapshot import NodeSnapshot
from replication.wire import RECORD_TYPES, WireError, decode, encode

MAGIC = b"GLR1"  # geoledger region record, framing version 1
_DIGEST = 32

Row = tuple[int, bytes, bytes]
"""(index, blob, chain): one stored record."""
CHUNKS_PER_WRITE = 16
"""Snapshot chunks written per backend write (flushes of records may run between them)."""


def frame_record(payload: object) -> bytes:
    """A record's stored bytes: magic, the sha256 of its wire frame, the frame."""
    frame = encode(payload)
    return MAGIC + hashlib.sha256(frame).digest() + frame


def unframe_record(blob: bytes) -> object:
    """The record in `blob` (`frame_record`'s output); ValueError saying what is wrong."""
    head = len(MAGIC) + _DIGEST
    if len(blob) < head or blob[:len(MAGIC)] != MAGIC:
        raise ValueError("not a framed region record (an older, pickled store?)")
    frame = memoryview(blob)[head:]
    if hashlib.sha256(frame).digest() != blob[len(MAGIC):head]:
        raise ValueError("its stored bytes fail their checksum")
    try:
        return decode(frame, RECORD_TYPES)
    except WireError as e:
        raise ValueError(f"it does not decode: {e}") from None


class BufferedRegionStore(RegionStore):
    """A durable region store: a backend writes `Row`s; this class does the rest.

    A backend calls `_open(rows, header)` with its stored rows and its newest snapshot
    header once its connection is up, and implements `_write` (all rows durably, or raise
    having written none or some: a later `_write` of the same rows must then be harmless),
    `_release` (close the connection, drop the writer lock) and the snapshot's parts:
    `_write_chunks`, `_commit_snapshot`, `_read_chunks`. `where` names the store in every
    error message.
    """

    where: str

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self._mu = threading.Lock()  # guards _dirty and the records' order
        self._io = threading.Lock()  # one flush at a time, and close
        self._dirty: dict[int, tuple[bytes, bytes]] = {}  # index -> (blob, chain), the newest version
        self._closed = False
        self._header: SnapshotHeader | None = None
        self._loaded: NodeSnapshot | None = None  # read at open, until recovery takes it

    # -------------------------------------------------------------- opening
    def _open(self, rows: Iterable[Row], header: SnapshotHeader | None = None) -> None:
        """Load the newest snapshot and the stored rows after it (in index order), checking
        the snapshot's bytes, the rows' framing, holes and the chain. Rows before the
        snapshot's position are skipped: a crash cut their removal short."""
        if header is not None:
            self._loaded = read_snapshot(header, self._read_chunks(header), self.where)
            self._header, self.base, self.base_chain = header, header.position, header.chain
        head = self.base_chain
        for idx, blob, chain in rows:
            if idx < self.base:
                continue
            n = self.end
            if idx != n:
                raise CorruptStoreError(f"{self.where}: record {n} is missing" if idx > n else
                                        f"{self.where}: record {idx} is stored twice or out of order")
            try:
                payload = unframe_record(blob)
            except ValueError as e:
                raise CorruptStoreError(f"{self.where}: record {idx} cannot be read: {e}") from None
            head = chain_next(head, payload)
            if chain != head:
                raise CorruptStoreError(f"{self.where}: record {idx}: its chain value does not match the "
                                        "chain recomputed from the records before it")
            self.records.append(Record(payload, chain))
        self.head = head

    # -------------------------------------------------------------- the snapshot
    @property
    def has_snapshot(self) -> bool:
        return self._header is not None

    def load_snapshot(self) -> NodeSnapshot | None:
        with self._io:
            self._check_open()
            loaded, self._loaded = self._loaded, None
            if loaded is not None or self._header is None:
                return loaded
            return read_snapshot(self._header, self._read_chunks(self._header), self.where)

    def save_snapshot(self, snapshot: NodeSnapshot) -> None:
        """Chunks first (a few per backend write), then the header together with dropping
        what it covers: a crash before the header leaves the store as it was."""
        with self._mu:
            self._check_open()
            self._check_fits(snapshot)
        framed = FramedSnapshot(snapshot)  # may raise WireError: nothing written yet
        batch: list[bytes] = []
        written = 0
        for chunk in framed.chunks():
            batch.append(chunk)
            if len(batch) == CHUNKS_PER_WRITE:
                written = self._write_snapshot_chunks(snapshot.position, written, batch)
                batch = []
        if batch:
            self._write_snapshot_chunks(snapshot.position, written, batch)
        with self._io:
            self._check_open()
            try:
                self._commit_snapshot(framed.header, self.base if self._header is not None else None)
            except Exception as e:
                raise StoreError(f"{self.where}: writing the snapshot at record {snapshot.position} failed; the "
                                 f"store keeps its older snapshot and every record ({type(e).__name__}: {e})") from e
            with self._mu:
                self._drop_before(snapshot)
                for idx in [i for i in self._dirty if i < snapshot.position]:
                    del self._dirty[idx]
                self._header, self._loaded = framed.header, None

    def _save_snapshot(self, snapshot: NodeSnapshot) -> None:  # pragma: no cover - save_snapshot is overridden
        raise NotImplementedError

    def _write_snapshot_chunks(self, position: int, first: int, chunks: list[bytes]) -> int:
        with self._io:
            self._check_open()
            try:
                self._write_chunks(position, first, chunks)
            except Exception as e:
                raise StoreError(f"{self.where}: writing the snapshot at record {position} failed; the store "
                                 f"keeps its older snapshot and every record ({type(e).__name__}: {e})") from e
        return first + len(chunks)

    # -------------------------------------------------------------- changes (queued)
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.where} is closed")

    def append(self, payload: object) -> None:
        blob = frame_record(payload)  # first: a record that cannot be encoded changes nothing
        with self._mu:
            self._check_open()
            super().append(payload)
            self._dirty[self.end - 1] = (blob, self.head)

    def replace(self, index: int, entry: Entry) -> None:
        blob = frame_record(entry)
        with self._mu:
            self._check_open()
            super().replace(index, entry)
            self._dirty[index] = (blob, self._at(index).chain)

    def corrupt(self, index: int) -> None:
        """Chaos: the damaged entry is written back too, so a restart finds it damaged as well."""
        with self._mu:
            self._check_open()
            super().corrupt(index)
            rec = self._at(index)
            self._dirty[index] = (frame_record(rec.payload), rec.chain)

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    # -------------------------------------------------------------- writing
    def flush(self) -> None:
        with self._io:
            if self._closed:
                if self._dirty:
                    raise StoreError(f"{self.where} is closed with {len(self._dirty)} records not written")
                return
            with self._mu:
                dirty, self._dirty = self._dirty, {}
            if not dirty:
                return
            try:
                self._write([(idx, blob, chain) for idx, (blob, chain) in sorted(dirty.items())])
            except Exception as e:
                with self._mu:
                    for idx, version in dirty.items():
                        self._dirty.setdefault(idx, version)  # a newer version queued meanwhile wins
                raise StoreError(f"{self.where}: writing {len(dirty)} records failed; they stay pending "
                                 f"for the next flush ({type(e).__name__}: {e})") from e

    def close(self) -> None:
        """Flush, then release the backend even if that flush failed (its records are lost
        with this process: they were never acknowledged as durable). Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._io:
                if not self._closed:
                    self._closed = True
                    self._release()

    @abstractmethod
    def _write(self, rows: list[Row]) -> None:
        """Write `rows` (index order) durably; raise if any may not be."""

    @abstractmethod
    def _release(self) -> None:
        """Close the backend and drop the writer lock."""

    @abstractmethod
    def _write_chunks(self, position: int, first: int, chunks: list[bytes]) -> None:
        """Write chunks `first`.. of the snapshot at `position` (invisible until its header is)."""

    @abstractmethod
    def _commit_snapshot(self, header: SnapshotHeader, older: int | None) -> None:
        """Write `header` (the snapshot now counts), then remove the snapshot at `older` (if
        any) and the records before `header.position`. Atomic where the backend can be; else
        what is left over is what `_open` skips and removes."""

    @abstractmethod
    def _read_chunks(self, header: SnapshotHeader) -> Iterable[bytes]:
        """The chunks of the snapshot `header` names, in order (as many as are stored)."""


__all__ = ["MAGIC", "BufferedRegionStore", "Row", "frame_record", "unframe_record"]

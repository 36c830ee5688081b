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
"""

from __future__ import annotations

import hashlib
import threading
from abc import abstractmethod
from collections.abc import Iterable

from ledger.errors import CorruptStoreError, StoreError
from region.store import GENESIS, RegionStore, chain_next
from replication.log import Entry, Record
from replication.wire import RECORD_TYPES, WireError, decode, encode

MAGIC = b"GLR1"  # geoledger region record, framing version 1
_DIGEST = 32

Row = tuple[int, bytes, bytes]
"""(index, blob, chain): one stored record."""


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

    A backend calls `_open(rows)` with its stored rows once its connection is up, and
    implements `_write` (all rows durably, or raise having written none or some: a later
    `_write` of the same rows must then be harmless) and `_release` (close the connection,
    drop the writer lock). `where` names the store in every error message.
    """

    where: str

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self._mu = threading.Lock()  # guards _dirty and the records' order
        self._io = threading.Lock()  # one flush at a time, and close
        self._dirty: dict[int, tuple[bytes, bytes]] = {}  # index -> (blob, chain), the newest version
        self._closed = False

    # -------------------------------------------------------------- opening
    def _open(self, rows: Iterable[Row]) -> None:
        """Load the stored rows (in index order), checking framing, holes and the chain."""
        head = GENESIS
        for idx, blob, chain in rows:
            n = len(self.records)
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

    # -------------------------------------------------------------- changes (queued)
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.where} is closed")

    def append(self, payload: object) -> None:
        blob = frame_record(payload)  # first: a record that cannot be encoded changes nothing
        with self._mu:
            self._check_open()
            super().append(payload)
            self._dirty[len(self.records) - 1] = (blob, self.head)

    def replace(self, index: int, entry: Entry) -> None:
        blob = frame_record(entry)
        with self._mu:
            self._check_open()
            super().replace(index, entry)
            self._dirty[index] = (blob, self.records[index].chain)

    def corrupt(self, index: int) -> None:
        """Chaos: the damaged entry is written back too, so a restart finds it damaged as well."""
        with self._mu:
            self._check_open()
            super().corrupt(index)
            rec = self.records[index]
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


__all__ = ["MAGIC", "BufferedRegionStore", "Row", "frame_record", "unframe_record"]

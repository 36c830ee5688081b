"""`region.snapframe.read_snapshot`: the blob is read as a stream of chunks, never held whole.

What a store hands it (and what damage it must refuse) is tested per store in
`tests/support/region_store.py`; here, the reading itself: wherever the chunks' edges fall
(inside the frame's head, the meta frame, the engine), the snapshot comes back equal, and
the engine is a read-only view the engines restore from, not a copy of the blob.
"""

from __future__ import annotations

import hashlib
import mmap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import Engine, PyEngine
from cext.snapshot import parse_snapshot
from ledger.errors import CorruptStoreError
from region.snapframe import CHUNK_BYTES, FramedSnapshot, SnapshotHeader, read_snapshot
from replication.snapbuffer import give_back_of, handed_over
from tests.support.records import same_snapshot, sample_snapshot

ENGINE = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 17)
"""Engine bytes of a blob of three chunks (the last one short)."""


def _framed() -> tuple[bytes, SnapshotHeader, object]:
    snap = sample_snapshot(4, bytes(32), ENGINE)
    framed = FramedSnapshot(snap)
    return b"".join(framed.chunks()), framed.header, snap


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_the_snapshot_comes_back_wherever_the_chunk_edges_fall(data: st.DataObject) -> None:
    blob, header, snap = _framed()
    first = data.draw(st.integers(1, len(blob) - 2))
    second = data.draw(st.integers(first + 1, len(blob) - 1))
    pieces = [blob[:first], blob[first:second], blob[second:]]
    got = read_snapshot(header, pieces, "test")
    assert same_snapshot(got, snap) and bytes(got.engine) == ENGINE  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # a view of the buffer read into: nothing may write it
        got.engine[0] = 1  # type: ignore[index]


def test_a_blob_with_a_byte_too_many_or_too_few_is_refused() -> None:
    blob, header, _ = _framed()
    chunks = [blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)]
    with pytest.raises(CorruptStoreError, match="more than the 3 chunks"):
        read_snapshot(header, [*chunks[:2], chunks[2] + b"x"], "test")
    with pytest.raises(CorruptStoreError, match="3 of its 3 chunks"):
        read_snapshot(header, [*chunks[:2], chunks[2][:-1]], "test")
    with pytest.raises(CorruptStoreError, match="1 of its 3 chunks"):
        read_snapshot(header, chunks[:1], "test")  # the engine's bytes never come


def test_a_header_claiming_more_than_can_be_mapped_is_refused() -> None:
    blob, header, _ = _framed()
    huge = 1 << 62
    lying = header._replace(length=huge, chunks=-(-huge // CHUNK_BYTES))
    with pytest.raises(CorruptStoreError, match="cannot be loaded"):
        read_snapshot(lying, [blob[:CHUNK_BYTES]], "test")


@pytest.mark.parametrize("engine_cls", [Engine, PyEngine])
def test_both_engines_restore_from_the_view_a_store_hands_them(engine_cls: type) -> None:
    source = engine_cls()
    engine_bytes = source.snapshot()
    snap = sample_snapshot(4, bytes(32), engine_bytes)
    framed = FramedSnapshot(snap)
    got = read_snapshot(framed.header, framed.chunks(), "test")
    assert isinstance(got.engine, memoryview)
    restored = engine_cls()
    restored.restore(got.engine)
    assert restored.digest() == source.digest()
    assert hashlib.sha256(got.engine).digest() == hashlib.sha256(engine_bytes).digest()


@pytest.mark.parametrize("engine_cls", [Engine, PyEngine])
def test_a_restore_gives_back_every_row_byte_it_copied_and_keeps_its_copy(engine_cls: type) -> None:
    """The store's buffer returns pages the engine has copied (zeros afterwards): the
    engine's rows are its own copy, so it does not care."""
    source = _engine_with_transfers(engine_cls)
    data = source.snapshot()
    buf = handed_over(len(data))
    buf[:] = data
    told: list[tuple[int, int]] = []

    def give_back(start: int, length: int) -> None:
        told.append((start, length))
        buf.give_back(start, length)

    restored = engine_cls()
    restored.restore(memoryview(buf).toreadonly(), give_back)
    assert restored.digest() == source.digest()
    assert told[0][0] == len(data) - sum(p.nbytes for p in parse_snapshot(data)[3])  # the header is kept
    assert all(a + n == b for (a, n), (b, _) in zip(told, told[1:], strict=False))  # in order, no gap
    assert told[-1][0] + told[-1][1] == len(data)  # up to the end (no failed ids here)
    page = -(-told[0][0] // mmap.PAGESIZE) * mmap.PAGESIZE  # the first whole page of rows
    assert len(data) > page + mmap.PAGESIZE and bytes(buf[page:page + mmap.PAGESIZE]) == bytes(mmap.PAGESIZE)


def test_a_replica_spends_a_store_read_snapshot_once() -> None:
    """`Replica.restore` hands the view's buffer to the engine to give back, then empties
    the snapshot's engine: restoring from it again is refused, not a silent zero ledger."""
    from replication.accounts import AccountMap
    from replication.config import Mode, NodeConfig
    from replication.replica import Replica

    config = NodeConfig(2, 0, Mode.ASYNC, AccountMap(2, np.arange(11) % 2), 10**6)
    books = Replica(config)
    snap = sample_snapshot(4, bytes(32), books.engine.snapshot())
    framed = FramedSnapshot(snap)
    read = read_snapshot(framed.header, framed.chunks(), "test")
    assert give_back_of(read.engine) is not None and give_back_of(snap.engine) is None
    replica = Replica(config)
    replica.restore(read)
    assert replica.engine.digest() == books.engine.digest() and read.engine == b""
    with pytest.raises(ValueError, match="truncated"):
        Replica(config).restore(read)
    Replica(config).restore(snap)  # bytes are never spent
    assert snap.engine == books.engine.snapshot()


def _engine_with_transfers(engine_cls: type) -> object:
    from replication.accounts import AccountMap, genesis

    accounts, deposits = genesis(AccountMap(2, np.arange(200) % 2), 10**6, enforce_flags=False)
    e = engine_cls()
    e.create_accounts(accounts, accounts["timestamp"].copy())
    e.create_transfers(deposits, deposits["timestamp"].copy())
    return e

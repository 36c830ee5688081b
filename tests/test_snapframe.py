"""`region.snapframe.read_snapshot`: the blob is read as a stream of chunks, never held whole.

What a store hands it (and what damage it must refuse) is tested per store in
`tests/support/region_store.py`; here, the reading itself: wherever the chunks' edges fall
(inside the frame's head, the meta frame, the engine), the snapshot comes back equal, and
the engine is a read-only view the engines restore from, not a copy of the blob.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import Engine, PyEngine
from ledger.errors import CorruptStoreError
from region.snapframe import CHUNK_BYTES, FramedSnapshot, SnapshotHeader, read_snapshot
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

"""`RegionStoreTestCase`: what every region store must do, proven once, run per store.

As `eventsourcing` proves its recorders (one abstract case, `create_recorder` per backend),
`tests/test_region_stores.py` subclasses this once per store (memory, SQLite, Cassandra)
and says how to open its store and how to reach into what it stored (to damage it the way
a disk or an operator would). Cases about stored bytes, flush failures and a second writer
are in `DurableRegionStoreTestCase`, which the SQLite and Cassandra cases subclass: the
memory store's records exist only as objects.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ledger.errors import CorruptStoreError, StoreError, StoreLockedError
from region.buffered import MAGIC
from region.snapframe import CHUNK_BYTES, SnapshotHeader
from region.store import GENESIS, RegionStore
from replication.log import Entry
from replication.messages import Heartbeat
from replication.raft import HardState
from replication.snapshot import NodeSnapshot
from replication.wire import WireError, decode, encode
from tests.support.records import entry, every_record_kind, extreme_rows, same_payload, same_snapshot, sample_snapshot

BIG_ENGINE = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 17)
"""An engine snapshot of three chunks (the last one short)."""


class RegionStoreTestCase(ABC):
    """Subclass per store: `create_store`, and for a durable store the hooks below."""

    durable: ClassVar[bool] = True
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    @pytest.fixture(autouse=True)
    def _case(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        self.tmp_path, self.monkeypatch = tmp_path, monkeypatch
        self._opened: list[RegionStore] = []
        self.set_up()
        yield
        for s in self._opened:
            s.close()
        self.tear_down()

    def set_up(self) -> None:  # noqa: B027 - optional hook
        """Before each test (e.g. pick a fresh keyspace)."""

    def tear_down(self) -> None:  # noqa: B027 - optional hook
        """After each test, every store closed (e.g. drop the keyspace)."""

    @abstractmethod
    def create_store(self) -> RegionStore:
        """Open this test's store; called again, open it again (reopen after close)."""

    # hooks for durable stores: reach into what the store wrote (the store itself is closed)
    def stored_blob(self, index: int) -> bytes:
        raise NotImplementedError

    def write_stored(self, index: int, blob: bytes, chain: bytes) -> None:
        raise NotImplementedError

    def delete_stored(self, index: int) -> None:
        raise NotImplementedError

    def stored_chunks(self, position: int) -> list[bytes]:
        """The stored chunks of the snapshot at `position`, in order."""
        raise NotImplementedError

    def write_chunk(self, position: int, k: int, data: bytes) -> None:
        raise NotImplementedError

    def delete_chunk(self, position: int, k: int) -> None:
        raise NotImplementedError

    def write_header(self, header: SnapshotHeader) -> None:
        raise NotImplementedError

    def failing_writes(self, store: RegionStore) -> AbstractContextManager[None]:
        """While inside: the store's backend fails its writes (after having written some, if
        it can): a full disk, a write timeout."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def open(self) -> RegionStore:
        s = self.create_store()
        self._opened.append(s)
        return s

    def filled(self, payloads: list[object] | None = None) -> RegionStore:
        s = self.open()
        for p in every_record_kind() if payloads is None else payloads:
            s.append(p)
        s.flush()
        return s

    def reopen(self, s: RegionStore) -> RegionStore:
        s.close()
        return self.open()

    def refused_on_open(self, match: str) -> None:
        with pytest.raises(CorruptStoreError, match=match) as info:
            self.create_store()
        assert "region store" in str(info.value), "the error names the store"

    # ------------------------------------------------------------------ cases
    def test_every_record_kind_round_trips(self) -> None:
        payloads = every_record_kind()
        s = self.filled(payloads)
        assert not s.pending
        again = self.reopen(s)
        assert [type(r.payload) for r in again.records] == [type(p) for p in payloads]
        for got, want in zip(again.records, payloads, strict=True):
            assert same_payload(got.payload, want), (got.payload, want)
        assert again.records[1].payload.rows.tobytes() == extreme_rows().tobytes()  # type: ignore[attr-defined]
        assert all(r.payload.intact() for r in again.records if isinstance(r.payload, Entry))
        assert again.verify_chain() == (True, None) and again.scrub() == []

    def test_reopen_gives_identical_records_and_head_and_appends_continue_the_chain(self) -> None:
        s = self.filled()
        head, chains = s.head, [r.chain for r in s.records]
        assert head != GENESIS and chains[-1] == head
        s.append(entry(3))  # not flushed: close flushes it
        again = self.reopen(s)
        assert [r.chain for r in again.records][:-1] == chains and again.head == s.head
        again.append(entry(4))
        again.flush()
        third = self.reopen(again)
        assert len(third.records) == len(chains) + 2 and third.head == again.head
        assert third.verify_chain() == (True, None)

    def test_close_is_idempotent(self) -> None:
        s = self.filled()
        s.close()
        s.close()
        if self.durable:
            with pytest.raises(StoreError, match="closed"):
                s.append(entry(9))
        assert len(self.open().records) == len(every_record_kind())

    def test_replace_writes_a_repaired_copy_and_keeps_the_chain(self) -> None:
        s = self.filled()
        head = s.head
        s.corrupt(1)
        assert [i for i, *_ in s.scrub()] == [1]
        s.replace(1, entry(1))  # an intact copy, as a peer sends it
        assert s.scrub() == [] and s.head == head and s.verify_chain() == (True, None)
        again = self.reopen(s)
        assert again.scrub() == [] and again.verify_chain() == (True, None) and again.head == head
        assert same_payload(again.records[1].payload, entry(1))

    def test_replace_refuses_a_copy_that_would_break_the_chain(self) -> None:
        s = self.filled()
        before = s.records[1].payload
        for bad in (entry(7), HardState(1, None)):
            with pytest.raises(ValueError, match="record 1"):
                s.replace(1, bad)  # type: ignore[arg-type]
        assert s.records[1].payload is before and s.verify_chain() == (True, None)

    def test_corrupt_is_found_by_scrub_and_survives_reopen_as_repairable_damage(self) -> None:
        s = self.filled()
        stored = s.records[5].payload.checksum
        s.corrupt(5)
        # what it names is the record, its entry, and the checksum a repair must carry
        assert s.scrub() == [(5, 2, 1, 3, stored)]
        again = self.reopen(s)  # opens: the record decodes, only the entry's own checksum fails
        assert again.scrub() == [(5, 2, 1, 3, stored)]
        assert again.verify_chain() == (False, 5)
        with pytest.raises(ValueError, match="not an entry"):
            again.corrupt(0)

    def test_verify_chain_finds_the_first_bad_link(self) -> None:
        s = self.filled()
        assert s.verify_chain() == (True, None)
        s.records[3].chain = bytes(32)
        assert s.verify_chain() == (False, 3)

    # ------------------------------------------------------------------ snapshots (compaction)
    def snapshotted(self, at: int = 4, engine: bytes = BIG_ENGINE) -> tuple[RegionStore, NodeSnapshot]:
        s = self.filled()
        snap = sample_snapshot(at, s.chain_at(at), engine)
        s.save_snapshot(snap)
        return s, snap

    def test_a_snapshot_replaces_the_records_it_covers_and_survives_reopen(self) -> None:
        n = len(every_record_kind())
        s = self.filled()
        head, tail = s.head, [(r.chain, type(r.payload)) for r in s.records[4:]]
        snap = sample_snapshot(4, s.chain_at(4), BIG_ENGINE)
        s.save_snapshot(snap)
        assert (s.base, s.end, s.head, len(s.records)) == (4, n, head, n - 4)
        assert s.has_snapshot and same_snapshot(s.load_snapshot(), snap)
        again = self.reopen(s)
        assert (again.base, again.end, again.head, again.base_chain) == (4, n, head, snap.chain)
        assert [(r.chain, type(r.payload)) for r in again.records] == tail
        assert same_snapshot(again.load_snapshot(), snap) and again.verify_chain() == (True, None)
        again.append(entry(9))  # the chain carries on from the snapshot's value
        again.flush()
        third = self.reopen(again)
        assert (third.end, third.head) == (n + 1, again.head) and third.verify_chain() == (True, None)
        assert same_snapshot(third.load_snapshot(), snap)

    def test_a_newer_snapshot_replaces_the_older_and_indices_stay_absolute(self) -> None:
        s, _ = self.snapshotted(2, b"first")
        s.append(entry(9))
        newer = sample_snapshot(5, s.chain_at(5), b"second")
        s.save_snapshot(newer)
        again = self.reopen(s)
        assert (again.base, again.end) == (5, len(every_record_kind()) + 1)
        assert same_snapshot(again.load_snapshot(), newer)
        assert same_payload(again.records[-1].payload, entry(9))
        for gone in (0, 3, 4):
            with pytest.raises(ValueError, match=f"record {gone}: not in the store .* in its snapshot"):
                again.corrupt(gone)
        again.corrupt(5)  # an entry after the snapshot: index 5 is still record 5
        assert [i for i, *_ in again.scrub()] == [5] and again.entry_indices() == [5, 8]

    def test_a_snapshot_that_does_not_fit_changes_nothing(self) -> None:
        s = self.filled()
        head, n = s.head, len(s.records)
        for bad, why in ((sample_snapshot(4, bytes(32)), "chain value"),
                         (sample_snapshot(n + 1, s.head), "does not fit")):
            with pytest.raises(ValueError, match=why):
                s.save_snapshot(bad)
            assert (s.base, s.head, len(s.records), s.has_snapshot) == (0, head, n, False)
        s.save_snapshot(sample_snapshot(4, s.chain_at(4)))
        for bad, why in ((sample_snapshot(4, s.chain_at(4)), "already covers"),
                         (sample_snapshot(2, GENESIS), "does not fit")):
            with pytest.raises(ValueError, match=why):
                s.save_snapshot(bad)
        again = self.reopen(s)
        assert (again.base, again.head, len(again.records)) == (4, head, n - 4)


class DurableRegionStoreTestCase(RegionStoreTestCase):
    """What a store on a disk or a database must also do: refuse damaged, foreign or
    missing stored bytes on open, keep what a failed flush could not write, and admit one
    writer at a time. (The memory store has no stored bytes: it is the disk itself.)"""

    def test_a_flipped_stored_byte_is_refused_on_open(self) -> None:
        s = self.filled()
        s.close()
        blob = self.stored_blob(1)
        # flip a byte inside the entry's rows: the frame still decodes, to a damaged entry ...
        at = len(blob) - 200
        flipped = blob[:at] + bytes([blob[at] ^ 0x40]) + blob[at + 1:]
        decoded = decode(flipped[len(MAGIC) + 32:])
        assert isinstance(decoded, Entry) and not decoded.intact()
        # ... which only the record's frame checksum tells from bit rot on the way to disk
        self.write_stored(1, flipped, s.records[1].chain)
        self.refused_on_open("record 1 cannot be read: its stored bytes fail their checksum")

    def test_unreadable_records_are_refused_on_open(self) -> None:
        s = self.filled()
        s.close()
        chain = s.records[1].chain
        self.write_stored(1, b"\xde\xad\xbe\xef", chain)
        self.refused_on_open("record 1 cannot be read: not a framed region record")
        frame = b"\xc1" * 10  # never valid msgpack, with a good checksum
        self.write_stored(1, MAGIC + hashlib.sha256(frame).digest() + frame, chain)
        self.refused_on_open("record 1 cannot be read: it does not decode")
        frame = encode(Heartbeat(0, 1, 1, (1, 2)))  # a message, not a record
        self.write_stored(1, MAGIC + hashlib.sha256(frame).digest() + frame, chain)
        self.refused_on_open("record 1 cannot be read: it does not decode: Heartbeat is not allowed")

    def test_a_pickled_record_is_never_unpickled(self) -> None:
        s = self.filled()
        s.close()
        marker = self.tmp_path / "pwned"
        self.write_stored(1, pickle.dumps(_Exploit(str(marker))), s.records[1].chain)
        self.refused_on_open("record 1 cannot be read: not a framed region record")
        assert not marker.exists()

    def test_a_hole_in_the_records_is_refused(self) -> None:
        self.filled().close()
        self.delete_stored(2)
        self.refused_on_open("record 2 is missing")

    def test_a_chain_value_that_does_not_match_is_refused(self) -> None:
        s = self.filled()
        s.close()
        self.write_stored(4, self.stored_blob(4), s.records[3].chain)
        self.refused_on_open("record 4: its chain value does not match")

    def test_a_record_that_cannot_be_encoded_changes_nothing(self) -> None:
        s = self.filled()
        head, n = s.head, len(s.records)
        with pytest.raises(WireError):
            s.append(object())
        assert (s.head, len(s.records), s.pending) == (head, n, False)

    def test_a_failed_flush_keeps_its_records_pending_and_a_later_flush_writes_them_once(self) -> None:
        s = self.filled()
        extra = [entry(10 + k, rows=extreme_rows(256)) for k in range(5)]  # 160 KB: more than the free pages
        with self.failing_writes(s):
            for e in extra:
                s.append(e)
            with pytest.raises(StoreError, match="stay pending"):
                s.flush()
            assert s.pending and len(s.records) == len(every_record_kind()) + 5
        s.append(entry(20))  # appends carry on meanwhile
        s.flush()
        assert not s.pending
        again = self.reopen(s)
        assert len(again.records) == len(every_record_kind()) + 6
        assert [r.payload.seq for r in again.records[-6:]] == [10, 11, 12, 13, 14, 20]  # type: ignore[attr-defined]
        assert again.head == s.head and again.verify_chain() == (True, None)

    def test_a_second_writer_is_refused(self) -> None:
        s = self.filled()
        with pytest.raises(StoreLockedError, match=f"already open for writing by process {os.getpid()}"):
            self.create_store()
        s.append(entry(3))  # the first writer is unaffected
        s.close()
        assert len(self.open().records) == len(every_record_kind()) + 1


    # ------------------------------------------------------------------ damaged snapshots
    def test_a_damaged_or_truncated_snapshot_is_refused_on_open(self) -> None:
        s, _ = self.snapshotted()
        s.close()
        chunks = self.stored_chunks(4)
        assert len(chunks) == 3 and b"".join(chunks).endswith(BIG_ENGINE)
        c = chunks[1]
        self.write_chunk(4, 1, c[:10] + bytes([c[10] ^ 1]) + c[11:])
        self.refused_on_open("the snapshot at record 4 cannot be loaded: its stored bytes fail their checksum")
        self.write_chunk(4, 1, c)
        self.open().close()  # repaired: it opens again
        self.write_chunk(4, 2, chunks[2][:-1])
        self.refused_on_open("the snapshot at record 4 cannot be loaded: 3 of its 3 chunks .* are there")
        self.delete_chunk(4, 2)
        self.refused_on_open("the snapshot at record 4 cannot be loaded: 2 of its 3 chunks .* are there")

    def test_damage_anywhere_is_refused_for_its_checksum_once_every_chunk_is_read(self) -> None:
        """The blob is read and hashed as a stream (never held whole), and its meta frame is
        decoded before the engine's bytes arrive: still, damage in the last chunk, and damage
        in the meta frame that decodes or fails to, is refused for the checksum."""
        s, snap = self.snapshotted()
        s.close()
        chunks = self.stored_chunks(4)
        meta_len = int.from_bytes(chunks[0][4:12], "little")
        for k, at in ((2, len(chunks[2]) - 1), (0, 12 + meta_len // 2), (0, 12), (0, 5)):
            c = chunks[k]
            self.write_chunk(4, k, c[:at] + bytes([c[at] ^ 0x41]) + c[at + 1:])
            self.refused_on_open("the snapshot at record 4 cannot be loaded: its stored bytes fail their checksum")
            self.write_chunk(4, k, c)
        again = self.open()  # repaired: it opens, and its snapshot is the one saved
        assert same_snapshot(again.load_snapshot(), snap)
        again.close()

    def test_a_snapshot_that_is_not_one_is_never_unpickled(self) -> None:
        s, snap = self.snapshotted(4, b"engine")
        s.close()
        marker = self.tmp_path / "pwned"
        for blob, why in ((pickle.dumps(_Exploit(str(marker))), "it is not a framed region snapshot"),
                          (b"GLS1" + (10).to_bytes(8, "little") + b"\xc1" * 10, "it does not decode"),
                          (b"GLS1" + (1 << 40).to_bytes(8, "little"), "its state runs past its end")):
            # what an attacker with write access to the store could do: a blob and a header that agree
            self.write_chunk(4, 0, blob)
            self.write_header(SnapshotHeader(4, snap.chain, 1, len(blob), hashlib.sha256(blob).digest()))
            self.refused_on_open(f"the snapshot at record 4 cannot be loaded: {why}")
        assert not marker.exists()

    def test_chunks_without_a_header_are_a_torn_snapshot_and_change_nothing(self) -> None:
        s = self.filled()
        head = s.head
        s.close()
        self.write_chunk(4, 0, b"a snapshot whose header was never written")
        again = self.open()
        assert (again.base, again.head, len(again.records), again.has_snapshot) == (0, head, len(every_record_kind()),
                                                                                    False)
        assert again.load_snapshot() is None
        again.close()
        assert self.stored_chunks(4) == [], "what the crash left is cleaned up"


class _Exploit:
    """A pickle that, if ever loaded, creates a file: the store must refuse it unread."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (open, (self.path, "w"))

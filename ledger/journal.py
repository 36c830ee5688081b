"""The event-sourced book: one `Journal` aggregate whose events are committed batches.

A ledger's state is a fold of its batches, so the aggregate itself holds only what the
chain needs (the head hash and the last timestamp); the balances live in the columnar
engine that replays the same events. Each event carries the hash of the one before it,
which makes the log tamper-evident: `verify` recomputes the chain.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Transcoder

from ledger.transcoder import AttachmentTranscoder

JOURNAL_ID = UUID("6e1e6c8e-6765-4f6c-8564-676572000001")
GENESIS = bytes(32)
KIND_ACCOUNTS = 1
KIND_TRANSFERS = 2


def chain_hash(
    prev_hash: bytes, kind: int, expired_at: int, last_timestamp: int, rows: bytes,
    expired: bytes = b"", failed: bytes = b"",
) -> bytes:
    """The hash a batch carries. The expired and failed ids are hashed only when there are
    some, so that batches recorded before they existed keep their hashes."""
    h = hashlib.sha256(prev_hash)
    h.update(struct.pack("<BQQ", kind, expired_at, last_timestamp))
    h.update(rows)
    if expired or failed:
        h.update(struct.pack("<4sQQ", b"GLX2", len(expired), len(failed)))
        h.update(expired)
        h.update(failed)
    return h.digest()


class Journal(Aggregate):
    """The append-only book of one ledger store."""

    def __init__(self) -> None:
        self.head = GENESIS
        self.last_timestamp = 0

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return JOURNAL_ID

    class BatchEvent(Aggregate.Event):
        """A committed batch: the accepted rows, as the engine stored them.

        `expired_at` is the ledger time of the expiry sweep that ran first (0: none);
        `expired` the ids (16 bytes each) of the pending transfers it expired, in order;
        `failed` the ids of transfers that failed with a transient result (which can never
        be used again). Batches recorded before these existed read as empty.
        """

        kind: int
        rows: bytes
        expired_at: int
        last_timestamp: int
        prev_hash: bytes
        hash: bytes
        expired: bytes = b""
        failed: bytes = b""

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Journal)
            aggregate.head = self.hash
            aggregate.last_timestamp = self.last_timestamp

    class AccountsCreated(BatchEvent):
        pass

    class TransfersCommitted(BatchEvent):
        pass

    def record(
        self, kind: int, rows: bytes, expired_at: int, last_timestamp: int,
        expired: bytes = b"", failed: bytes = b"",
    ) -> None:
        event_class = Journal.AccountsCreated if kind == KIND_ACCOUNTS else Journal.TransfersCommitted
        self.trigger_event(
            event_class,
            kind=kind,
            rows=rows,
            expired_at=expired_at,
            last_timestamp=last_timestamp,
            prev_hash=self.head,
            hash=chain_hash(self.head, kind, expired_at, last_timestamp, rows, expired, failed),
            expired=expired,
            failed=failed,
        )



class JournalApplication(Application):
    """Holds the recorders; the use cases are `ledger.Ledger`'s methods."""

    name = "GeoLedger"
    is_snapshotting_enabled = True

    def construct_transcoder(self) -> Transcoder:
        transcoder = AttachmentTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

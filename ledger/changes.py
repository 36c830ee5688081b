"""The change stream (CDC): every committed batch, in commit order, resumable from a cursor.

The ledger's log *is* the change stream: each batch is one event of the journal aggregate,
numbered 2, 3, ... without gaps (version 1 opens the journal). A `Change` is one batch
decoded: the accounts created, the transfers committed, the pending transfers expired and
the transfer ids burnt by a transient failure. Its `cursor` is the batch's version.

A consumer stores the cursor of the last change it has processed and asks for
`changes(after=cursor)`; a crash before it stores the cursor means it sees those changes
again (at least once), never a gap. Changes are read from the store, so a `ChangeFeed`
in another process follows a ledger without loading its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cext.codec import row_to_account, row_to_transfer
from cext.layout import ACCOUNT_DTYPE, STATUS_NONE, STATUS_PENDING, TRANSFER_DTYPE
from ledger.errors import CorruptStoreError, LedgerClosedError, StoreError
from ledger.journal import JOURNAL_ID, KIND_ACCOUNTS, Journal, JournalApplication
from ledger.replay import CommittedBatch, id_rows
from ledger.types import AccountState, TransferFlags, TransferState
from ledger.url import environment_from_url

PAGE = 256
"""Batches read from the store per round trip while iterating."""


@dataclass(frozen=True, slots=True)
class Change:
    """One committed batch, as a consumer of the change stream sees it.

    `timestamp` is the ledger time of its last event. `transfers` are as committed (a
    pending transfer's `pending_status` is PENDING: later batches post, void or expire it);
    `expired` lists the pending transfers this batch expired, in order, their amounts
    released; `failed` the transfer ids that failed with a transient result in it.
    """

    cursor: int
    timestamp: int
    accounts: tuple[AccountState, ...]
    transfers: tuple[TransferState, ...]
    expired: tuple[int, ...]
    failed: tuple[int, ...]
    hash: str
    prev_hash: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; u128 values as decimal strings (JavaScript keeps every digit)."""
        return {
            "cursor": self.cursor,
            "timestamp": self.timestamp,
            "accounts": [_json(a) for a in self.accounts],
            "transfers": [_json(t) for t in self.transfers],
            "expired": [str(i) for i in self.expired],
            "failed": [str(i) for i in self.failed],
            "hash": self.hash,
            "prev_hash": self.prev_hash,
        }


_WIDE = {"id", "debit_account_id", "credit_account_id", "amount", "pending_id", "user_data_128", "user_data_64",
         "debits_pending", "debits_posted", "credits_pending", "credits_posted"}


def _json(state: AccountState | TransferState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in state.__slots__:
        value = getattr(state, name)
        if name == "pending_status":
            out[name] = value.name  # as the gateway's query results spell it
        else:
            out[name] = str(value) if name in _WIDE else int(value)
    return out


def to_change(batch: CommittedBatch) -> Change:
    """Decode one committed batch."""
    accounts: tuple[AccountState, ...] = ()
    transfers: tuple[TransferState, ...] = ()
    try:
        if batch.kind == KIND_ACCOUNTS:
            accounts = tuple(row_to_account(r) for r in np.frombuffer(batch.rows, ACCOUNT_DTYPE))
        else:
            rows = np.frombuffer(batch.rows, TRANSFER_DTYPE)
            transfers = tuple(
                row_to_transfer(r, STATUS_PENDING if int(r["flags"]) & TransferFlags.PENDING else STATUS_NONE)
                for r in rows
            )
        expired = tuple(_ids(batch.expired))
        failed = tuple(_ids(batch.failed))
    except ValueError as e:
        raise CorruptStoreError(f"undecodable batch: {e}", batch=batch.version) from None
    return Change(
        batch.version, batch.last_timestamp, accounts, transfers, expired, failed,
        batch.hash.hex(), batch.prev_hash.hex(),
    )


def _ids(data: bytes) -> list[int]:
    rows = id_rows(data)
    return [(int(hi) << 64) | int(lo) for lo, hi in zip(rows["id_lo"].tolist(), rows["id_hi"].tolist(), strict=True)]


def read_batches(app: JournalApplication, after: int = 0, limit: int | None = None) -> Iterator[CommittedBatch]:
    """Committed batches with version > `after`, oldest first, read `PAGE` at a time."""
    position, left = after, limit
    while left is None or left > 0:
        page = PAGE if left is None else min(PAGE, left)
        try:
            stored = app.recorder.select_events(JOURNAL_ID, gt=position or None, limit=page)
        except Exception as e:  # a closed pool, an unreachable store: the library's own types
            raise StoreError(f"cannot read the log: {e}") from e
        for record in stored:
            position = record.originator_version
            try:
                event = app.mapper.to_domain_event(record)
            except CorruptStoreError as e:
                raise CorruptStoreError(str(e), batch=record.originator_version) from None
            except Exception as e:  # the library wraps decode errors in its own types
                raise CorruptStoreError(f"undecodable record: {e}", batch=record.originator_version) from None
            if isinstance(event, Journal.BatchEvent):
                if left is not None:
                    left -= 1
                yield CommittedBatch(
                    event.originator_version, event.kind, event.rows, event.expired_at, event.last_timestamp,
                    event.prev_hash, event.hash, event.expired, event.failed,
                )
        if len(stored) < page:
            return


def read_changes(app: JournalApplication, after: int = 0, limit: int | None = None) -> Iterator[Change]:
    for batch in read_batches(app, after, limit):
        yield to_change(batch)


class ChangeFeed:
    """Follows a ledger's store from anywhere (another process, another host): its change
    stream and its `eventsourcing` notification log, without loading the ledger's state.

    >>> with ChangeFeed.open("sqlite:///bank.db") as feed:      # doctest: +SKIP
    ...     for change in feed.changes(after=cursor):
    ...         handle(change); cursor = change.cursor; save(cursor)
    """

    def __init__(self, app: JournalApplication) -> None:
        self._app = app
        self._closed = False

    @classmethod
    def open(cls, url: str) -> ChangeFeed:
        """A feed over the store at `url` (the forms `Ledger.open` takes)."""
        env = environment_from_url(url)
        try:
            return cls(JournalApplication(env=env))
        except Exception as e:
            raise StoreError(f"cannot open store: {e}") from e

    def changes(self, after: int = 0, *, limit: int | None = None) -> Iterator[Change]:
        """Committed batches after cursor `after`, oldest first (see `Ledger.changes`)."""
        if self._closed:
            raise LedgerClosedError("this change feed is closed")
        return read_changes(self._app, after, limit)

    @property
    def notification_log(self) -> Any:
        """The store's `eventsourcing` notification log (for `Follower.follow`)."""
        return self._app.notification_log

    def close(self) -> None:
        """Release the store; idempotent."""
        if not self._closed:
            self._closed = True
            self._app.close()

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Change", "ChangeFeed", "read_batches", "read_changes", "to_change"]

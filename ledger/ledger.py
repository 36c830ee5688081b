"""`Ledger`: the library API — TigerBeetle's accounts and transfers, event-sourced.

Each `create_accounts` / `create_transfers` call is one batch: the engine validates and
applies it against columnar state, and the accepted rows are recorded as one event through
the `eventsourcing` recorders before the call returns. If recording fails, the in-memory
state is rebuilt from the store, so the ledger never answers from a batch the store lacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, PersistenceError

import cext
from cext.codec import accounts_to_rows, row_to_account, transfers_to_rows
from cext.layout import ACCOUNT_DTYPE, TRANSFER_DTYPE
from ledger import queries
from ledger.errors import ConcurrentWriterError, CorruptStoreError, InvalidInputError, StoreError
from ledger.journal import (
    GENESIS,
    JOURNAL_ID,
    KIND_ACCOUNTS,
    KIND_TRANSFERS,
    Journal,
    JournalApplication,
    chain_hash,
)
from ledger.lock import WriterLock
from ledger.totals import ledger_totals
from ledger.types import (
    U64_MAX,
    U128_MAX,
    Account,
    AccountBalance,
    AccountState,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferState,
)
from ledger.url import environment_from_url

BATCH_MAX = 8190
"""Largest batch, as TigerBeetle's: bounded work per commit, bounded event size."""

SNAPSHOT_EVERY = 128
"""Batches between engine snapshots; reopening replays at most this many."""

Clock = Callable[[], int]

# Result codes are dense from 0, so a tuple lookup replaces a per-item enum call on the hot path.
_ACCOUNT_RESULTS = tuple(CreateAccountResult)
_TRANSFER_RESULTS = tuple(CreateTransferResult)
assert all(int(code) == i for i, code in enumerate(_ACCOUNT_RESULTS))
assert all(int(code) == i for i, code in enumerate(_TRANSFER_RESULTS))


@dataclass(frozen=True)
class CommittedBatch:
    """One recorded batch, as replicas and auditors see it."""

    version: int
    kind: int
    rows: bytes
    expired_at: int
    last_timestamp: int
    prev_hash: bytes
    hash: bytes


@dataclass
class VerifyReport:
    """What `Ledger.verify` found: `ok`, or the first bad batch and why."""

    ok: bool
    batches: int
    first_bad_batch: int | None = None
    problem: str | None = None
    totals: dict[int, dict[str, int]] = field(default_factory=dict)


class Ledger:
    """A double-entry ledger: `Ledger()` in memory, `Ledger.open(url)` on a durable store."""

    def __init__(self, *, clock: Clock | None = None, _env: dict[str, str] | None = None) -> None:
        self._clock: Clock = clock if clock is not None else time.time_ns
        if not callable(self._clock):
            raise InvalidInputError("clock must be a zero-argument callable returning int nanoseconds")
        self._lock = threading.RLock()
        self._statements = queries.StatementIndex()  # guarded by _lock
        self._reserved = 0
        self._writer_lock: WriterLock | None = None  # set by `open` for an SQLite file
        try:
            self._app = JournalApplication(env=_env or {"PERSISTENCE_MODULE": "eventsourcing.popo"})
        except PersistenceError as e:
            raise StoreError(f"cannot open store: {e}") from e
        self._load()

    @classmethod
    def open(cls, url: str, *, clock: Clock | None = None) -> Ledger:
        """Open (creating if new) the ledger stored at `url`; see `ledger.url` for forms.
        An SQLite file has one writer: a second opener gets `StoreLockedError` (`ledger.lock`)."""
        env = environment_from_url(url)
        path = env.get("SQLITE_DBNAME", "")
        lock = WriterLock(f"{path}.lock", f"sqlite ledger store {path}") if path and ":memory:" not in path else None
        try:
            led = cls(clock=clock, _env=env)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        led._writer_lock = lock
        return led

    def close(self) -> None:
        try:
            self._app.close()
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ commands
    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        """Create accounts; one result per input, in order (TigerBeetle semantics)."""
        _check_batch(accounts, Account)
        if not accounts:
            return []
        with self._lock:
            rows = accounts_to_rows(accounts)
            base = self._reserve_timestamps(len(rows))
            before = self._engine.n_accounts
            results = self._engine.create_accounts(rows, np.arange(base, base + len(rows), dtype=np.uint64))
            accepted = self._engine.accounts[before:]
            if len(accepted):
                self._record(KIND_ACCOUNTS, accepted.tobytes(), 0)
            return [_ACCOUNT_RESULTS[r] for r in results.tolist()]

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        """Create transfers; one result per input, in order (TigerBeetle semantics).

        Pending transfers whose timeout has passed (in ledger time) expire first.
        """
        _check_batch(transfers, Transfer)
        if not transfers:
            return []
        with self._lock:
            rows = transfers_to_rows(transfers)
            base = self._reserve_timestamps(len(rows))
            expired = self._engine.expire_pending(base)
            before = self._engine.n_transfers
            results = self._engine.create_transfers(rows, np.arange(base, base + len(rows), dtype=np.uint64))
            accepted = self._engine.transfers[before:]
            if len(accepted) or expired:
                self._record(KIND_TRANSFERS, accepted.tobytes(), base)
            return [_TRANSFER_RESULTS[r] for r in results.tolist()]

    # ------------------------------------------------------------------ queries
    def lookup_accounts(self, ids: Iterable[int]) -> list[AccountState]:
        """The accounts that exist among `ids`, in the order asked (missing ones left out)."""
        ids = _check_ids(ids, "ids")
        with self._lock:
            return queries.lookup_accounts(self._engine, ids)

    def lookup_transfers(self, ids: Iterable[int]) -> list[TransferState]:
        """The transfers that exist among `ids`, in the order asked (missing ones left out)."""
        ids = _check_ids(ids, "ids")
        with self._lock:
            return queries.lookup_transfers(self._engine, ids)

    def get_account_transfers(
        self,
        account_id: int,
        *,
        limit: int = 100,
        reverse: bool = False,
        timestamp_min: int = 0,
        timestamp_max: int = 0,
        debits: bool = True,
        credits: bool = True,
    ) -> list[TransferState]:
        """An account's statement page: its transfers in timestamp order (or reversed).

        Page on by passing the last timestamp seen + 1 as `timestamp_min` (or - 1 as
        `timestamp_max` when reversed), as with TigerBeetle's AccountFilter.
        """
        check_filter(account_id, limit, timestamp_min, timestamp_max)
        with self._lock:
            return queries.account_transfers(
                self._engine, account_id, limit=limit, reverse=reverse, timestamp_min=timestamp_min,
                timestamp_max=timestamp_max, debits=debits, credits=credits, index=self._statements,
            )

    def get_account_balances(
        self,
        account_id: int,
        *,
        limit: int = 100,
        reverse: bool = False,
        timestamp_min: int = 0,
        timestamp_max: int = 0,
    ) -> list[AccountBalance]:
        """Balances after each transfer of a `HISTORY` account (empty for other accounts)."""
        check_filter(account_id, limit, timestamp_min, timestamp_max)
        with self._lock:
            return queries.account_balances(
                self._engine, account_id, limit=limit, reverse=reverse,
                timestamp_min=timestamp_min, timestamp_max=timestamp_max,
            )

    def balance_at(self, account_id: int, timestamp: int) -> AccountState | None:
        """The account as it stood at ledger time `timestamp`, by replaying the log."""
        check_filter(account_id, 1, timestamp, 0)
        with self._lock:
            engine = cext.Engine()
            for batch in self.batches():
                apply_batch(engine, batch, until=timestamp)
            slot = engine.account_slot(account_id)
            return row_to_account(engine.accounts[slot]) if slot >= 0 else None

    def batches(self, after: int = 0) -> list[CommittedBatch]:
        """Committed batches with version > `after`, oldest first (for replicas, audits)."""
        out = []
        for stored in self._app.recorder.select_events(JOURNAL_ID, gt=after or None):
            try:
                event = self._app.mapper.to_domain_event(stored)
            except CorruptStoreError as e:
                raise CorruptStoreError(str(e), batch=stored.originator_version) from None
            except Exception as e:  # the library wraps decode errors in its own types
                raise CorruptStoreError(f"undecodable record: {e}", batch=stored.originator_version) from None
            if isinstance(event, Journal.BatchEvent):
                out.append(
                    CommittedBatch(
                        event.originator_version, event.kind, event.rows, event.expired_at,
                        event.last_timestamp, event.prev_hash, event.hash,
                    )
                )
        return out

    def digest(self) -> str:
        """Hex SHA-256 of the whole state: equal digests, equal books."""
        with self._lock:
            return self._engine.digest().hex()

    @property
    def head(self) -> str:
        """Hex hash of the last committed batch (the audit chain's head)."""
        return self._journal.head.hex()

    def verify(self) -> VerifyReport:
        """Recompute the hash chain, replay every batch, and check Σ debits = Σ credits."""
        with self._lock:
            engine = cext.Engine()
            prev, count = GENESIS, 0
            try:
                batches = self.batches()
            except CorruptStoreError as e:
                return VerifyReport(False, count, e.batch, str(e))
            for batch in batches:
                count += 1
                if batch.prev_hash != prev or batch.hash != chain_hash(
                    prev, batch.kind, batch.expired_at, batch.last_timestamp, batch.rows
                ):
                    return VerifyReport(False, count, batch.version, "hash chain broken")
                try:
                    apply_batch(engine, batch)
                except CorruptStoreError as e:
                    return VerifyReport(False, count, batch.version, str(e))
                prev = batch.hash
            totals = ledger_totals(engine.accounts)
            for ledger_id, t in totals.items():
                if t["debits_posted"] != t["credits_posted"] or t["debits_pending"] != t["credits_pending"]:
                    return VerifyReport(False, count, None, f"ledger {ledger_id} does not balance", totals)
            if engine.digest() != self._engine.digest():
                return VerifyReport(False, count, None, "live state differs from the replayed log", totals)
            return VerifyReport(True, count, None, None, totals)

    # ------------------------------------------------------------------ internals
    def _reserve_timestamps(self, n: int) -> int:
        now = self._clock()
        if type(now) is not int or now < 0:
            raise InvalidInputError(f"clock must return non-negative int nanoseconds, got {now!r}")
        base = max(now, self._journal.last_timestamp + 1, self._reserved + 1)
        if base + n > U64_MAX:
            raise InvalidInputError("ledger time would overflow u64 nanoseconds")
        self._reserved = base + n - 1
        return base

    def _record(self, kind: int, rows: bytes, expired_at: int) -> None:
        journal = self._journal
        journal.record(kind, rows, expired_at, self._reserved)
        # The library's event timestamp is metadata; take it from the ledger clock too.
        try:
            self._app.save(journal)
        except IntegrityError as e:
            self._load()
            raise ConcurrentWriterError(
                "another writer committed to this store; state reloaded, retry the batch"
            ) from e
        except Exception:
            self._load()
            raise
        if journal.version % SNAPSHOT_EVERY == 0:
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        assert self._app.snapshots is not None
        snapshot = Snapshot(
            originator_id=JOURNAL_ID,
            originator_version=self._journal.version,
            timestamp=_as_datetime(self._journal.last_timestamp),
            topic="ledger.journal:Journal",
            state={
                "engine": self._engine.snapshot(),
                "head": self._journal.head,
                "last_timestamp": self._journal.last_timestamp,
            },
        )
        self._app.snapshots.put([snapshot])

    def _load(self) -> None:
        """(Re)build the engine from the store: latest snapshot, then the tail of batches."""
        engine = cext.Engine()
        assert self._app.snapshots is not None
        try:
            snapshots = list(self._app.snapshots.get(JOURNAL_ID, desc=True, limit=1))
        except CorruptStoreError as e:
            raise CorruptStoreError(f"snapshot: {e}") from None
        if snapshots:
            snap = cast(Snapshot, snapshots[0])
            try:
                engine.restore(snap.state["engine"])
            except (ValueError, KeyError, TypeError) as e:
                raise CorruptStoreError(f"snapshot at batch {snap.originator_version}: {e}") from None
            journal = object.__new__(Journal)
            journal.__dict__.update(
                _id=JOURNAL_ID, _version=snap.originator_version, _created_on=snap.timestamp,
                _modified_on=snap.timestamp, _pending_events=[],
                head=snap.state["head"], last_timestamp=snap.state["last_timestamp"],
            )
            after = snap.originator_version
        else:
            journal = self._load_or_create_journal()
            after = 1
        for batch in self.batches(after):
            if batch.prev_hash != journal.head or batch.hash != chain_hash(
                journal.head, batch.kind, batch.expired_at, batch.last_timestamp, batch.rows
            ):
                raise CorruptStoreError("hash chain broken", batch=batch.version)
            apply_batch(engine, batch)
            journal.head, journal.last_timestamp = batch.hash, batch.last_timestamp
            journal.__dict__["_version"] = batch.version
        self._engine = engine
        self._journal = journal
        self._reserved = journal.last_timestamp

    def _load_or_create_journal(self) -> Journal:
        stored = self._app.recorder.select_events(JOURNAL_ID, limit=1)
        if stored:
            return self._app.repository.get(JOURNAL_ID, version=1)
        journal = Journal()
        try:
            self._app.save(journal)
        except IntegrityError:
            return self._app.repository.get(JOURNAL_ID, version=1)
        return journal


def apply_batch(engine: Any, batch: CommittedBatch, until: int | None = None) -> None:
    """Re-apply a recorded batch (replay, replicas); every row must succeed again, or the log is corrupt."""
    dtype = ACCOUNT_DTYPE if batch.kind == KIND_ACCOUNTS else TRANSFER_DTYPE
    if len(batch.rows) % dtype.itemsize:
        raise CorruptStoreError("row payload has a partial row", batch=batch.version)
    rows = np.frombuffer(batch.rows, dtype)
    if until is not None:
        rows = rows[rows["timestamp"] <= until]
    if batch.kind == KIND_ACCOUNTS:
        results = engine.create_accounts(rows, rows["timestamp"].copy())
    else:
        if batch.expired_at and (until is None or batch.expired_at <= until):
            engine.expire_pending(batch.expired_at)
        results = engine.create_transfers(rows, rows["timestamp"].copy())
    if results.any():
        bad = int(np.nonzero(results)[0][0])
        raise CorruptStoreError(
            f"row {bad} no longer applies (result {int(results[bad])})", batch=batch.version
        )


def _as_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _check_batch(items: Any, cls: type) -> None:
    if not isinstance(items, list | tuple):
        raise InvalidInputError(f"expected a list of {cls.__name__}, got {type(items).__name__}")
    if len(items) > BATCH_MAX:
        raise InvalidInputError(f"batch of {len(items)} exceeds the maximum of {BATCH_MAX}")
    for i, item in enumerate(items):
        if type(item) is not cls:
            raise InvalidInputError(f"expected {cls.__name__}, got {type(item).__name__}", index=i)


def _check_ids(ids: Iterable[int], name: str) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidInputError("expected an iterable of ints", field=name)
    out = list(ids)
    for i, value in enumerate(out):
        if type(value) is not int or not 0 <= value <= U128_MAX:
            raise InvalidInputError(f"id must be an int in 0..2^128-1, got {value!r}", field=name, index=i)
    return out


def check_filter(account_id: int, limit: int, timestamp_min: int, timestamp_max: int) -> None:
    _check_ids([account_id], "account_id")
    if type(limit) is not int or limit < 1:
        raise InvalidInputError(f"must be a positive int, got {limit!r}", field="limit")
    for name, value in (("timestamp_min", timestamp_min), ("timestamp_max", timestamp_max)):
        if type(value) is not int or not 0 <= value <= U64_MAX:
            raise InvalidInputError(f"must be an int in 0..2^64-1, got {value!r}", field=name)


__all__ = ["BATCH_MAX", "CommittedBatch", "Ledger", "VerifyReport", "apply_batch"]

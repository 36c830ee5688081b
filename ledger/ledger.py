"""`Ledger`: the library API — TigerBeetle's accounts and transfers, event-sourced.

Each `create_accounts` / `create_transfers` call is one batch: the engine validates and
applies it against columnar state, and what it changed is recorded as one event through
the `eventsourcing` recorders before the call returns. If recording fails, the in-memory
state is rebuilt from the store, so the ledger never answers from a batch the store lacks.

Ledger time comes from the injected clock, read only here, at the API boundary: every
event gets a timestamp strictly after the last one, below 2^63 ns. Pending transfers
expire by that time the way TigerBeetle's timer expires them: whichever call comes first
once a timeout has passed — a write or a read — commits the expiry (a batch of its own
when no write carries it), so every reader sees the amount released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.system import NotificationLog

import cext
from cext.codec import accounts_to_rows, row_to_account, transfers_to_rows
from cext.layout import TRANSFER_DTYPE
from ledger import queries
from ledger.changes import Change, read_batches, read_changes
from ledger.errors import (
    ConcurrentWriterError,
    CorruptStoreError,
    InvalidInputError,
    LedgerClosedError,
    StoreError,
)
from ledger.journal import GENESIS, JOURNAL_ID, KIND_ACCOUNTS, KIND_TRANSFERS, Journal, JournalApplication, chain_hash
from ledger.lock import WriterLock
from ledger.query_index import QueryIndex
from ledger.replay import CommittedBatch, apply_batch, expired_ids, id_rows, is_imported
from ledger.stores.sqlite_file import create_with_large_pages
from ledger.totals import ledger_totals
from ledger.types import (
    TIMESTAMP_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    AccountBalance,
    AccountState,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferState,
    by_value,
)
from ledger.url import environment_from_url

BATCH_MAX = 8190
"""Largest batch, as TigerBeetle's: bounded work per commit, bounded event size. Query
results are capped at it too, as TigerBeetle caps them at one message."""

SNAPSHOT_EVERY = 128
"""Fewest batches between engine snapshots."""
SNAPSHOT_TAIL = 1
"""A snapshot also waits until the rows recorded since the last one are at least
SNAPSHOT_TAIL times the rows that one held. Why: a snapshot writes the whole engine (about
3.8 s per million transfers here, mostly SQLite I/O), so taking one every 128 batches
whatever the ledger's size made a bulk load quadratic: a 1 M-transfer load spent 2.6 s of
its 4.4 s in one snapshot, and each further million wrote a larger one. Growing the gap
with the ledger writes each row about twice in snapshots over its life, whatever the size;
reopening replays at most max(128 batches, half the rows)."""

Clock = Callable[[], int]

# Result codes are dense from 0, so a tuple lookup replaces a per-item enum call on the hot path.
_ACCOUNT_RESULTS = by_value(CreateAccountResult)
_TRANSFER_RESULTS = by_value(CreateTransferResult)


@dataclass
class VerifyReport:
    """What `Ledger.verify` found: `ok`, or the first bad batch and why."""

    ok: bool
    batches: int
    first_bad_batch: int | None = None
    problem: str | None = None
    totals: dict[int, dict[str, int]] = field(default_factory=dict)


class Ledger:
    """A double-entry ledger: `Ledger()` in memory, `Ledger.open(url)` on a durable store.

    Safe to share between threads (calls are serialised). Use it as a context manager, or
    call `close()`: a closed ledger refuses every call with `LedgerClosedError`.
    """

    def __init__(self, *, clock: Clock | None = None, _env: dict[str, str] | None = None) -> None:
        self._clock: Clock = clock if clock is not None else time.time_ns
        if not callable(self._clock):
            raise InvalidInputError("clock must be a zero-argument callable returning int nanoseconds")
        self._lock = threading.RLock()
        self._closed = False
        self._statements = queries.StatementIndex()  # guarded by _lock
        self._account_index = QueryIndex("accounts")
        self._transfer_index = QueryIndex("transfers")
        self._reserved = 0
        self._writer_lock: WriterLock | None = None  # set by `open` for an SQLite file
        try:
            self._app = JournalApplication(env=_env or {"PERSISTENCE_MODULE": "eventsourcing.popo"})
        except PersistenceError as e:
            raise StoreError(f"cannot open store: {e}") from e
        self._load()

    @classmethod
    def open(cls, url: str, *, clock: Clock | None = None) -> Ledger:
        """Open (creating if new) the ledger stored at `url`: `memory://`,
        `sqlite:///relative.db`, `sqlite:////absolute.db` or
        `cassandra://host[,host2][:port]/keyspace?dc=..&rf=..&consistency=..` (see `ledger.url`).
        An SQLite file has one writer: a second opener gets `StoreLockedError` (`ledger.lock`)."""
        env = environment_from_url(url)
        path = env.get("SQLITE_DBNAME", "")
        lock = WriterLock(f"{path}.lock", f"sqlite ledger store {path}") if path and ":memory:" not in path else None
        try:
            if lock is not None:
                create_with_large_pages(path)
            led = cls(clock=clock, _env=env)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        led._writer_lock = lock
        return led

    def close(self) -> None:
        """Release the store (and its writer lock); every later call raises `LedgerClosedError`.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._app.close()
            finally:
                if self._writer_lock is not None:
                    self._writer_lock.release()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def __enter__(self) -> Ledger:
        """`with Ledger.open(url) as led: ...` closes the ledger at the end of the block."""
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ commands
    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        """Create accounts; one result per input, in order, in TigerBeetle's order of checks.

        A batch whose first account has `AccountFlags.IMPORTED` imports: every account in
        it must then carry its own past `timestamp` (see `Account`).
        """
        self._check_open()
        _check_batch(accounts, Account)
        if not accounts:
            return []
        with self._lock:
            self._check_open()
            self._tick()
            rows = accounts_to_rows(accounts)
            first = self._next_timestamp(len(rows))
            last = first + len(rows) - 1
            before = self._engine.n_accounts
            results = self._engine.create_accounts(rows, self._event_times(rows, KIND_ACCOUNTS, first), client=True)
            self._reserved = last
            accepted = self._engine.accounts[before:]
            if len(accepted):
                self._record(KIND_ACCOUNTS, accepted.tobytes(), 0)
            return [_ACCOUNT_RESULTS[r] for r in results.tolist()]

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        """Create transfers; one result per input, in order, in TigerBeetle's order of checks.

        Pending transfers whose timeout has passed (in ledger time) expire first. A
        transfer failing with a transient result (`CreateTransferResult.transient`) burns
        its id: retries answer `ID_ALREADY_FAILED`. A batch whose first transfer has
        `TransferFlags.IMPORTED` imports (see `Transfer`).
        """
        self._check_open()
        _check_batch(transfers, Transfer)
        if not transfers:
            return []
        return [_TRANSFER_RESULTS[r] for r in self._commit_transfers(transfers_to_rows(transfers)).tolist()]

    def create_transfer_rows(self, rows: np.ndarray) -> np.ndarray:
        """`create_transfers` for a batch already in the engine's row layout
        (`cext.layout.TRANSFER_DTYPE`, e.g. a bulk upload's bytes through `np.frombuffer`):
        the result codes (uint32, `CreateTransferResult` values), one per row, in order.

        Why: building a `Transfer` per row costs more than validating and committing it;
        bulk clients (payroll files, end-of-day runs) keep the engine's speed this way.
        Every field a row can hold is checked as `Transfer`'s are — by its width, which the
        layout guarantees — and the engine applies TigerBeetle's rules to it (a non-zero
        `timestamp` without `IMPORTED` is `TIMESTAMP_MUST_BE_ZERO`)."""
        self._check_open()
        if not isinstance(rows, np.ndarray) or rows.dtype != TRANSFER_DTYPE or rows.ndim != 1:
            raise InvalidInputError("expected a 1-d numpy array of cext.layout.TRANSFER_DTYPE rows")
        if len(rows) > BATCH_MAX:
            raise InvalidInputError(f"batch of {len(rows)} exceeds the maximum of {BATCH_MAX}")
        if not len(rows):
            return np.zeros(0, np.uint32)
        return self._commit_transfers(rows)

    def _commit_transfers(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            self._check_open()
            sweep = self._next_timestamp(len(rows) + self._engine.n_transfers)
            expired = self._engine.expire_pending(sweep)
            gone = expired_ids(self._engine) if expired else b""
            first = sweep + expired
            last = first + len(rows) - 1
            before, failed_before = self._engine.n_transfers, self._engine.n_failed
            results = self._engine.create_transfers(
                rows, self._event_times(rows, KIND_TRANSFERS, first), client=True
            )
            self._reserved = last
            accepted = self._engine.transfers[before:]
            failed = self._engine.failed[failed_before:]
            if len(accepted) or expired or len(failed):
                self._record(
                    KIND_TRANSFERS, accepted.tobytes(), sweep if expired else 0, gone, failed.tobytes()
                )
            return results  # type: ignore[no-any-return]

    def tick(self) -> int:
        """Run the expiry timer now: commit the expiry of every pending transfer whose
        timeout has passed by the clock. Returns how many expired. Every read does this
        first, so calling it is only needed to expire without reading."""
        self._check_open()
        with self._lock:
            self._check_open()
            return self._tick()

    # ------------------------------------------------------------------ reads
    def lookup_accounts(self, ids: Iterable[int]) -> list[AccountState]:
        """The accounts that exist among `ids`, in the order asked (missing ones left out)."""
        ids = _check_ids(ids, "ids")
        with self._reading():
            return queries.lookup_accounts(self._engine, ids)

    def lookup_transfers(self, ids: Iterable[int]) -> list[TransferState]:
        """The transfers that exist among `ids`, in the order asked (missing ones left out);
        a pending transfer's `pending_status` says whether it was posted, voided or expired."""
        ids = _check_ids(ids, "ids")
        with self._reading():
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
        user_data_128: int = 0,
        user_data_64: int = 0,
        user_data_32: int = 0,
        code: int = 0,
    ) -> list[TransferState]:
        """An account's statement page: its transfers in timestamp order (or reversed).

        TigerBeetle's AccountFilter: non-zero user_data / code fields filter too. Page on
        by passing the last timestamp seen + 1 as `timestamp_min` (or - 1 as
        `timestamp_max` when reversed).
        """
        _check_filter(account_id, limit, timestamp_min, timestamp_max)
        _check_user_data(user_data_128, user_data_64, user_data_32, code)
        with self._reading():
            return queries.account_transfers(
                self._engine, account_id, limit=limit, reverse=reverse, timestamp_min=timestamp_min,
                timestamp_max=timestamp_max, debits=debits, credits=credits, index=self._statements,
                user_data_128=user_data_128, user_data_64=user_data_64, user_data_32=user_data_32, code=code,
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
        """An account's balances after each of its transfers and expiries, in time order.

        Only accounts created with `AccountFlags.HISTORY` keep them: for any other account
        (or an unknown one) the answer is `[]`, as TigerBeetle's. For the balance of any
        account at a past time, see `balance_at`.
        """
        _check_filter(account_id, limit, timestamp_min, timestamp_max)
        with self._reading():
            return queries.account_balances(
                self._engine, account_id, limit=limit, reverse=reverse,
                timestamp_min=timestamp_min, timestamp_max=timestamp_max,
            )

    def query_accounts(self, query: QueryFilter | None = None, /, **fields: Any) -> list[AccountState]:
        """Accounts matching TigerBeetle's QueryFilter, by timestamp (see `QueryFilter`).

        Pass a `QueryFilter`, or its fields as keywords (`reverse=True` for the REVERSED
        flag): `led.query_accounts(ledger=840, user_data_64=7, limit=10)`. Indexed: the
        cost is the rows walked, not the size of the ledger.
        """
        query = _as_query(query, fields)
        with self._reading():
            slots = self._account_index.search(self._engine, query, BATCH_MAX)
            return queries.accounts_at(self._engine, slots.tolist())

    def query_transfers(self, query: QueryFilter | None = None, /, **fields: Any) -> list[TransferState]:
        """Transfers matching TigerBeetle's QueryFilter, by timestamp; as `query_accounts`."""
        query = _as_query(query, fields)
        with self._reading():
            slots = self._transfer_index.search(self._engine, query, BATCH_MAX)
            return queries.transfers_at(self._engine, slots.tolist())

    def balance_at(self, account_id: int, timestamp: int) -> AccountState | None:
        """The account as it stood at ledger time `timestamp` (ns), by replaying the log;
        None if it did not exist yet. Any account, HISTORY or not; costs a replay."""
        _check_ids([account_id], "account_id")
        if type(timestamp) is not int or not 0 <= timestamp <= U64_MAX:
            raise InvalidInputError(f"must be an int in 0..2^64-1 (ns of ledger time), got {timestamp!r}",
                                    field="timestamp")
        with self._reading():
            engine = cext.Engine()
            for batch in self.batches():
                apply_batch(engine, batch, until=timestamp)
            slot = engine.account_slot(account_id)
            return row_to_account(engine.accounts[slot]) if slot >= 0 else None

    # ------------------------------------------------------------------ the log
    def changes(self, after: int = 0, *, limit: int | None = None) -> Iterator[Change]:
        """The committed batches after cursor `after`, oldest first: the change stream.

        Each `Change` carries its `cursor`; a consumer stores the cursor of the last change
        it has processed and resumes with `changes(after=that)`. Delivery is at least once
        (a consumer that crashes before storing its cursor sees those changes again) and in
        commit order; de-duplicate by cursor. Runs the expiry timer first, so expiries due
        by the clock are in the stream. See docs/changes.md.
        """
        _check_cursor(after, limit)
        with self._reading():
            pass
        return read_changes(self._app, after, limit)

    @property
    def notification_log(self) -> NotificationLog:
        """The `eventsourcing` notification log of this ledger's events, for a process
        application to `follow` (see `ledger.follow.LedgerFollower`)."""
        self._check_open()
        return self._app.notification_log

    def batches(self, after: int = 0) -> list[CommittedBatch]:
        """Committed batches with version > `after`, oldest first (for replicas, audits)."""
        self._check_open()
        return list(read_batches(self._app, after))

    def digest(self) -> str:
        """Hex SHA-256 of the whole state: equal digests, equal books."""
        self._check_open()
        with self._lock:
            return self._engine.digest().hex()

    @property
    def head(self) -> str:
        """Hex hash of the last committed batch (the audit chain's head)."""
        self._check_open()
        return self._journal.head.hex()

    def verify(self) -> VerifyReport:
        """Recompute the hash chain, replay every batch, and check Σ debits = Σ credits."""
        self._check_open()
        with self._lock:
            engine = cext.Engine()
            prev, count = GENESIS, 0
            try:
                batches = self.batches()
            except CorruptStoreError as e:
                return VerifyReport(False, count, e.batch, str(e))
            for batch in batches:
                count += 1
                if batch.prev_hash != prev or batch.hash != _hash_of(prev, batch):
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
    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosedError("this ledger is closed; open it again to use it")

    def _reading(self) -> _Reading:
        self._check_open()
        return _Reading(self)

    def _tick(self) -> int:
        """Commit, as a batch of its own, the expiry of what is due by the clock."""
        due = self._engine.next_expiry()
        if not due:
            return 0
        sweep = self._next_timestamp(self._engine.n_transfers)
        if due > sweep:
            return 0
        expired = self._engine.expire_pending(sweep)
        self._reserved = sweep + expired - 1
        self._record(KIND_TRANSFERS, b"", sweep, expired_ids(self._engine))
        return expired

    def _next_timestamp(self, room: int) -> int:
        """The next ledger timestamp, leaving `room` more below 2^63 (checked, not used)."""
        now = self._clock()
        if type(now) is not int or now < 0:
            raise InvalidInputError(f"clock must return non-negative int nanoseconds, got {now!r}")
        first = max(now, self._journal.last_timestamp + 1, self._reserved + 1)
        if first + room > TIMESTAMP_MAX:
            raise InvalidInputError("ledger time would pass 2^63-1 ns (TigerBeetle's timestamp range)")
        return first

    @staticmethod
    def _event_times(rows: np.ndarray, kind: int, first: int) -> np.ndarray:
        """Event i at `first + i`; an import compares against the batch's last timestamp."""
        n = len(rows)
        if is_imported(rows, kind):
            return np.full(n, first + n - 1, np.uint64)
        return np.arange(first, first + n, dtype=np.uint64)

    def _record(self, kind: int, rows: bytes, expired_at: int, expired: bytes = b"", failed: bytes = b"") -> None:
        journal = self._journal
        journal.record(kind, rows, expired_at, self._reserved, expired, failed)
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
        if journal.version - self._snapshot_version >= SNAPSHOT_EVERY and (
                self._rows() - self._snapshot_rows >= self._snapshot_rows * SNAPSHOT_TAIL):
            self._take_snapshot()

    def _rows(self) -> int:
        return int(self._engine.n_transfers) + int(self._engine.n_accounts)

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
        self._snapshot_version, self._snapshot_rows = self._journal.version, self._rows()

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
            snapshot_rows = int(engine.n_transfers) + int(engine.n_accounts)
        else:
            journal = self._load_or_create_journal()
            after, snapshot_rows = 1, 0
        for batch in read_batches(self._app, after):
            if batch.prev_hash != journal.head or batch.hash != _hash_of(journal.head, batch):
                raise CorruptStoreError("hash chain broken", batch=batch.version)
            apply_batch(engine, batch)
            journal.head, journal.last_timestamp = batch.hash, batch.last_timestamp
            journal.__dict__["_version"] = batch.version
        self._engine = engine
        self._journal = journal
        self._reserved = journal.last_timestamp
        self._snapshot_version = after if snapshots else 0
        self._snapshot_rows = snapshot_rows

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


class _Reading:
    """A read: under the ledger's lock, after the expiry timer has run (TigerBeetle's timer
    has, by the time a read sees the state)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __enter__(self) -> None:
        self._ledger._lock.acquire()
        try:
            self._ledger._check_open()
            self._ledger._tick()
        except BaseException:
            self._ledger._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._ledger._lock.release()


def _hash_of(prev: bytes, batch: CommittedBatch) -> bytes:
    return chain_hash(prev, batch.kind, batch.expired_at, batch.last_timestamp, batch.rows, batch.expired, batch.failed)


def _as_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


_QUERY_FIELDS = {f.name for f in fields(QueryFilter)}


def _as_query(query: QueryFilter | None, given: dict[str, Any]) -> QueryFilter:
    if query is not None:
        if not isinstance(query, QueryFilter):
            raise InvalidInputError(f"expected a QueryFilter, got {type(query).__name__}", field="query")
        if given:
            raise InvalidInputError("pass a QueryFilter or keyword fields, not both", field=next(iter(given)))
        return query
    given = dict(given)
    reverse = given.pop("reverse", False)
    unknown = set(given) - _QUERY_FIELDS
    if unknown:
        raise InvalidInputError(f"not a QueryFilter field (known: {', '.join(sorted(_QUERY_FIELDS))})",
                                field=sorted(unknown)[0])
    if type(reverse) is not bool:
        raise InvalidInputError(f"must be a bool, got {reverse!r}", field="reverse")
    if reverse:
        given["flags"] = int(given.get("flags", 0)) | QueryFilterFlags.REVERSED
    return QueryFilter(**given)


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


def _check_filter(account_id: int, limit: int, timestamp_min: int, timestamp_max: int) -> None:
    _check_ids([account_id], "account_id")
    if type(limit) is not int or limit < 1:
        raise InvalidInputError(f"must be a positive int, got {limit!r}", field="limit")
    for name, value in (("timestamp_min", timestamp_min), ("timestamp_max", timestamp_max)):
        if type(value) is not int or not 0 <= value <= U64_MAX:
            raise InvalidInputError(f"must be an int in 0..2^64-1, got {value!r}", field=name)


def _check_user_data(user_data_128: int, user_data_64: int, user_data_32: int, code: int) -> None:
    for name, value, bits in (("user_data_128", user_data_128, 128), ("user_data_64", user_data_64, 64),
                              ("user_data_32", user_data_32, 32), ("code", code, 16)):
        if type(value) is not int or not 0 <= value < 1 << bits:
            raise InvalidInputError(f"must be an int in 0..2^{bits}-1, got {value!r}", field=name)


def _check_cursor(after: int, limit: int | None) -> None:
    if type(after) is not int or after < 0:
        raise InvalidInputError(f"must be a non-negative int cursor, got {after!r}", field="after")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidInputError(f"must be a positive int or None, got {limit!r}", field="limit")



__all__ = ["BATCH_MAX", "CommittedBatch", "Ledger", "VerifyReport", "apply_batch", "id_rows"]

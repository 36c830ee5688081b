"""The change stream: every committed batch, in order, resumable, at least once.

`Ledger.changes(after=cursor)` and `ChangeFeed` read the ledger's log; a consumer that
stores its cursor with its own state sees every batch, in commit order, and — once it
de-duplicates by cursor — applies each exactly once, through crashes of its own and of
the ledger's writer (a real process killed with SIGKILL). An `eventsourcing` process
application follows the same log through the library's notification log and tracking
records.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, event

from ledger import (
    Account,
    AccountFlags,
    ChangeFeed,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    Transfer,
    TransferFlags,
    TransferPendingStatus,
)
from ledger.follow import LedgerFollower
from tests.support.clock import FakeClock

R = CreateTransferResult
NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]


def tr(id: int, dr: int, cr: int, amount: int, flags: int = 0, **kw: int) -> Transfer:
    return Transfer(id=id, debit_account_id=dr, credit_account_id=cr, amount=amount, ledger=kw.pop("ledger", 1),
                    code=1, flags=int(flags), **kw)


def test_every_batch_is_a_change_in_commit_order(open_ledger: Callable[[], Ledger], clock: FakeClock) -> None:
    led = open_ledger()
    led.create_accounts([Account(id=1, ledger=1, code=1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
                         Account(id=2, ledger=1, code=1)])
    led.create_transfers([tr(10, 2, 1, 50), tr(11, 1, 2, 5, TransferFlags.PENDING, timeout=1)])
    led.create_transfers([tr(12, 1, 2, 500)])                 # fails: only its id is recorded (burnt)
    led.create_transfers([tr(13, 1, 2, 1, ledger=0)])         # fails, not transiently: nothing to record
    clock.now = led.lookup_transfers([11])[0].timestamp + NS  # the read commits the expiry
    assert led.lookup_transfers([11])[0].pending_status == TransferPendingStatus.EXPIRED
    led = open_ledger()  # as restored from the store (the reopen closes the first)
    changes = list(led.changes())
    assert [c.cursor for c in changes] == [2, 3, 4, 5]
    accounts, transfers, failed, expired = changes
    assert [a.id for a in accounts.accounts] == [1, 2] and accounts.transfers == ()
    assert [t.id for t in transfers.transfers] == [10, 11]
    assert transfers.transfers[1].pending_status == TransferPendingStatus.PENDING  # as committed
    assert (failed.transfers, failed.failed) == ((), (12,))
    assert (expired.transfers, expired.expired) == ((), (11,))
    assert [c.timestamp for c in changes] == sorted(c.timestamp for c in changes)
    assert all(b.prev_hash == a.hash for a, b in zip(changes, changes[1:], strict=False))
    # Resumable from any cursor, in pages.
    assert [c.cursor for c in led.changes(after=3)] == [4, 5]
    assert [c.cursor for c in led.changes(after=2, limit=2)] == [3, 4]
    assert list(led.changes(after=5)) == []
    line = json.loads(json.dumps(transfers.to_json()))
    assert line["transfers"][0]["amount"] == "50" and line["cursor"] == 3
    assert line["transfers"][1]["pending_status"] == "PENDING" and line["expired"] == []


@pytest.mark.parametrize("bad", [{"after": -1}, {"after": 1.0}, {"limit": 0}, {"after": "3"}])
def test_bad_cursors_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        Ledger().changes(**bad)


def test_a_change_feed_follows_another_process_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with Ledger.open(url) as led:
        led.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
        with ChangeFeed.open(url) as feed:
            assert [c.cursor for c in feed.changes()] == [2]
            led.create_transfers([tr(10, 1, 2, 3)])
            (change,) = feed.changes(after=2)
            assert [t.id for t in change.transfers] == [10]


# ----------------------------------------------------------------------------- crash and restart

WRITER = textwrap.dedent("""
    import sys, time
    from ledger import Account, Ledger, Transfer
    url, acks, first, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    led = Ledger.open(url)
    led.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    with open(acks, "a") as out:
        for b in range(batches):
            ids = range(first + 10 * b, first + 10 * b + 10)
            led.create_transfers([Transfer(id=i, debit_account_id=1, credit_account_id=2, amount=i,
                                           ledger=1, code=1) for i in ids])
            out.write(" ".join(map(str, ids)) + "\\n")
            out.flush()
            time.sleep(0.002)
""")


class Consumer:
    """A consumer of the change stream that stores its cursor with its state (one file,
    replaced atomically) every few changes, and may crash at any point in between."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path, self.rng = path, rng
        self.delivered: list[int] = []  # every cursor handed to it, duplicates included
        self.restart()

    def restart(self) -> None:
        saved = json.loads(self.path.read_text()) if self.path.exists() else {"cursor": 0, "applied": [], "ids": []}
        self.cursor, self.applied, self.ids = saved["cursor"], saved["applied"], saved["ids"]

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cursor": self.cursor, "applied": self.applied, "ids": self.ids}))
        os.replace(tmp, self.path)

    def run(self, feed: ChangeFeed) -> None:
        for change in feed.changes(after=self.cursor):
            self.delivered.append(change.cursor)
            if change.cursor <= self.cursor:
                continue  # de-duplication by cursor
            self.cursor = change.cursor
            self.applied.append(change.cursor)
            self.ids.extend(t.id for t in change.transfers)
            if self.rng.random() < 0.3:
                self.save()
            if self.rng.random() < 0.1:
                self.restart()  # a crash: whatever was not saved is lost, and delivered again
                return
        self.save()


def test_a_consumer_ends_with_exactly_the_committed_batches_through_crashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    acks = tmp_path / "acks.txt"
    consumer = Consumer(tmp_path / "consumer.json", random.Random(15))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def writer(first: int, batches: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", WRITER, url, str(acks), str(first), str(batches)],
                                env=env, cwd=REPO)

    first = writer(1_000, 10_000)
    deadline = time.monotonic() + 60
    while (not acks.exists() or len(acks.read_text().splitlines()) < 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    with ChangeFeed.open(url) as feed:
        for _ in range(5):
            consumer.run(feed)  # follows while the writer writes
        first.send_signal(signal.SIGKILL)  # the ledger's writer dies mid-run
        first.wait()
        for _ in range(5):
            consumer.run(feed)
        second = writer(1_000_000, 30)  # restarted: it reopens the store and carries on
        while second.poll() is None:
            consumer.run(feed)
        assert second.wait() == 0
        while consumer.cursor < max(c.cursor for c in feed.changes(after=consumer.cursor - 1)):
            consumer.run(feed)
        committed = [c for c in feed.changes()]

    acked = [int(i) for line in acks.read_text().splitlines() for i in line.split()]
    assert consumer.applied == [c.cursor for c in committed]          # every batch once, in order
    assert len(consumer.delivered) > len(set(consumer.delivered))    # ...though some were delivered twice
    in_store = [t.id for c in committed for t in c.transfers]
    assert consumer.ids == in_store and len(set(in_store)) == len(in_store)
    assert set(acked) <= set(in_store)                                # nothing acknowledged was lost
    assert Ledger.open(url).verify().ok


# ----------------------------------------------------------------------------- eventsourcing follower

class Tally(Aggregate):
    """What a follower keeps: the posted amount debited from one account."""

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.total = 0

    @staticmethod
    def create_id(account_id: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"tally/{account_id}")

    @event("Added")
    def add(self, amount: int) -> None:
        self.total += amount


class Tallies(LedgerFollower):
    """Sums the transfers debiting each account; fails once, on purpose, mid-stream."""

    fail_at: int | None = None

    def on_change(self, change: Any, processing_event: ProcessingEvent[Any]) -> None:
        if change.cursor == self.fail_at:
            raise RuntimeError("crash while processing")
        tallies: dict[int, Tally] = {}
        for t in change.transfers:
            if t.debit_account_id not in tallies:
                try:
                    tallies[t.debit_account_id] = self.repository.get(Tally.create_id(t.debit_account_id))
                except Exception:
                    tallies[t.debit_account_id] = Tally(t.debit_account_id)
            tallies[t.debit_account_id].add(t.amount)
        processing_event.collect_events(*tallies.values())


def test_a_process_application_follows_the_ledger_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "tallies.db")}
    with Ledger.open(url) as led:
        led.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2, 3)])
        for b in range(6):
            led.create_transfers([tr(100 * b + k, 1 + k % 3, 1 + (k + 1) % 3, 10 * b + k) for k in range(1, 6)])
        want = {a.id: a.debits_posted for a in led.lookup_accounts([1, 2, 3])}
        versions = [c.cursor for c in led.changes()]
    feed = ChangeFeed.open(url)
    crashing = Tallies(env=env)
    crashing.fail_at = versions[3]
    crashing.follow_ledger(feed.notification_log)
    with pytest.raises(RuntimeError, match="crash"):
        crashing.pull()
    crashing.close()
    restarted = Tallies(env=env)  # a new process: the tracking records say where to resume
    restarted.follow_ledger(feed.notification_log)
    restarted.pull()
    restarted.pull()  # nothing new: nothing done twice
    assert {i: restarted.repository.get(Tally.create_id(i)).total for i in (1, 2, 3)} == want
    restarted.close()
    feed.close()

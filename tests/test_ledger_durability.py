"""Store URLs, bad input at the boundary, corrupt records, crashes and snapshots (SQLite)."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger.ledger as ledger_module
import ledger.stores.sqlite_file as sqlite_file
from ledger import (
    Account,
    CorruptStoreError,
    CreateTransferResult,
    InvalidInputError,
    Ledger,
    StoreError,
    StoreURLError,
    Transfer,
)
from ledger.stores.sqlite_file import PAGE_SIZE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "url",
    [
        "postgres://localhost/x",
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///x.db?mode=ro",
        "memory://somewhere",
        "no-scheme-at-all",
        "sqlite:///no/such/dir/x.db",
    ],
)
def test_bad_store_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises((StoreURLError, StoreError)):
        Ledger.open(url)


def test_non_string_url_is_refused() -> None:
    with pytest.raises(StoreURLError):
        Ledger.open(42)  # type: ignore[arg-type]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    before = _sha(path)
    with pytest.raises(StoreError, match="not a geoledger store"):
        Ledger.open(f"sqlite:///{path}")
    assert _sha(path) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not a database at all" * 100)
    before = _sha(path)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Ledger.open(f"sqlite:///{path}")
    assert _sha(path) == before


FIELDS = ["id", "debit_account_id", "credit_account_id", "amount", "ledger", "code", "flags",
          "pending_id", "timeout", "user_data_128", "user_data_64", "user_data_32"]
BAD_VALUES = [-1, 1 << 128, 1.0, True, "5", None, b"1"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_every_transfer_field_rejects_wrong_types_and_ranges(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"id": 1, field: value}
    with pytest.raises(InvalidInputError, match=field):
        Transfer(**kwargs)  # type: ignore[arg-type]


@given(st.integers(min_value=1 << 128) | st.integers(max_value=-1))
def test_account_ids_out_of_u128_are_refused(value: int) -> None:
    with pytest.raises(InvalidInputError, match="id"):
        Account(id=value, ledger=1, code=1)


@pytest.mark.parametrize("field,bits", [("user_data_64", 64), ("user_data_32", 32), ("ledger", 32), ("code", 16)])
def test_narrow_fields_are_range_checked(field: str, bits: int) -> None:
    with pytest.raises(InvalidInputError, match=field):
        Account(**{"id": 1, "ledger": 1, "code": 1, field: 1 << bits})  # type: ignore[arg-type]


def _populated(path: Path, batches: int = 3) -> Ledger:
    led = Ledger.open(f"sqlite:///{path}")
    led.create_accounts([Account(id=i, ledger=1, code=1) for i in range(1, 11)])
    for b in range(batches):
        led.create_transfers(
            [Transfer(id=1000 * b + i + 1, debit_account_id=1 + i % 10, credit_account_id=1 + (i + 3) % 10,
                      amount=i + 1, ledger=1, code=1) for i in range(50)]
        )
    return led


def test_a_flipped_byte_on_disk_is_detected_and_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _populated(path).close()
    with sqlite3.connect(path) as conn:
        version, state = conn.execute(
            "SELECT originator_version, state FROM stored_events ORDER BY originator_version LIMIT 1 OFFSET 2"
        ).fetchone()
        corrupted = bytearray(state)
        corrupted[len(corrupted) // 2] ^= 0x40
        conn.execute("UPDATE stored_events SET state=? WHERE originator_version=?", (bytes(corrupted), version))
    with pytest.raises(CorruptStoreError, match=f"batch {version}") as info:
        Ledger.open(f"sqlite:///{path}")
    assert info.value.batch == version


def test_verify_names_the_first_bad_batch_when_the_chain_is_forged(tmp_path: Path) -> None:
    """A record rewritten with a valid checksum but a forged payload breaks the hash chain."""
    path = tmp_path / "ledger.db"
    led = _populated(path)
    assert led.verify().ok
    app = led._app  # the recorder is the only way in for a forger, too
    stored = app.recorder.select_events(ledger_module.JOURNAL_ID)
    target = stored[3]
    event = app.mapper.to_domain_event(target)
    rows = bytearray(event.rows)
    rows[48] ^= 1  # amount_lo of the first row
    event.__dict__["rows"] = bytes(rows)
    forged = app.mapper.to_stored_event(event)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE stored_events SET state=? WHERE originator_version=?",
                     (forged.state, target.originator_version))
    report = led.verify()
    assert not report.ok and report.first_bad_batch == target.originator_version
    assert report.problem == "hash chain broken"
    led.close()


def test_verify_catches_books_that_replay_but_do_not_balance(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The double-entry check is a defence of its own: were the engine ever to post one leg
    and not the other, the chain would still verify; the totals must not."""
    led = _populated(tmp_path / "ledger.db")
    assert led.verify().ok
    apply = ledger_module.apply_batch

    def one_legged(engine: object, batch: object, until: int | None = None) -> None:
        apply(engine, batch, until)
        engine.accounts["debits_posted_lo"][0] += 1  # type: ignore[attr-defined]

    monkeypatch.setattr(ledger_module, "apply_batch", one_legged)
    report = led.verify()
    assert not report.ok and report.problem == "ledger 1 does not balance"
    assert report.totals[1]["debits_posted"] != report.totals[1]["credits_posted"]
    led.close()


def test_verify_catches_a_live_state_that_drifted_from_the_log(tmp_path: Path) -> None:
    """What the ledger answers from memory must be what its log replays to: a balance
    changed in memory only (a bug, a stray write) is named, though the log itself is fine."""
    led = _populated(tmp_path / "ledger.db")
    led._engine.accounts["credits_posted_lo"][2] += 5
    report = led.verify()
    assert not report.ok and report.problem == "live state differs from the replayed log"
    led.close()


def _page_size(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(size)


def test_a_new_file_gets_large_pages_and_a_file_from_before_keeps_its_own(tmp_path: Path) -> None:
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with sqlite3.connect(old) as conn:  # as a ledger created before this release would be
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    for path in (new, old):
        led = _populated(path, batches=3)
        digest = led.digest()
        led.close()
        led = Ledger.open(f"sqlite:///{path}")
        assert led.digest() == digest and led.verify().ok
        led.close()
    assert _page_size(new) == PAGE_SIZE
    assert _page_size(old) == 4096


def test_a_file_that_cannot_be_created_is_a_store_error_and_holds_no_lock(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_failure(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    path = tmp_path / "ledger.db"
    with monkeypatch.context() as m:
        m.setattr(sqlite_file.sqlite3, "connect", disk_failure)
        with pytest.raises(StoreError, match="cannot create sqlite store .*disk I/O error"):
            Ledger.open(f"sqlite:///{path}")
    Ledger.open(f"sqlite:///{path}").close()  # the failed open released the writer lock


def test_reopen_from_a_snapshot_plus_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "SNAPSHOT_EVERY", 3)
    path = tmp_path / "ledger.db"
    led = _populated(path, batches=7)
    digest = led.digest()
    led.close()
    with sqlite3.connect(path) as conn:
        (snapshots,) = conn.execute("SELECT COUNT(*) FROM stored_snapshots").fetchone()
    assert snapshots >= 2
    again = Ledger.open(f"sqlite:///{path}")
    assert again.digest() == digest
    assert again.verify().ok
    again.close()


@pytest.mark.parametrize("tail,expected", [(1, [3, 6, 11, 21]), (0, [3, 6, 9, 12, 15, 18, 21, 24, 27, 30])])
def test_snapshots_space_out_as_the_ledger_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: int,
                                                  expected: list[int]) -> None:
    """Equal batches: a snapshot waits for as many new rows as the last one held, so a bulk
    load writes each row into about two snapshots, not one per 128 batches of its life
    (SNAPSHOT_TAIL = 0 is the old rule: the count grows with the ledger). Reopening still
    gives the same ledger."""
    monkeypatch.setattr(ledger_module, "SNAPSHOT_EVERY", 3)
    monkeypatch.setattr(ledger_module, "SNAPSHOT_TAIL", tail)
    path = tmp_path / "ledger.db"
    led = _populated(path, batches=30)  # 10 accounts, then 50 transfers a batch: 60 rows at the first snapshot,
    # so the next waits for 60 new rows (and 3 batches), then 210, then 460
    digest = led.digest()
    led.close()
    with sqlite3.connect(path) as conn:
        versions = [v for (v,) in conn.execute("SELECT originator_version FROM stored_snapshots ORDER BY 1")]
    again = Ledger.open(f"sqlite:///{path}")
    assert again.digest() == digest
    again.close()
    assert versions == expected


WRITER = textwrap.dedent(
    """
    import sys
    from ledger import Account, Ledger, Transfer
    led = Ledger.open(sys.argv[1])
    led.create_accounts([Account(id=i, ledger=1, code=1) for i in range(1, 101)])
    b = 0
    while True:
        ts = [Transfer(id=b * 1000 + i + 1, debit_account_id=1 + i % 100,
                       credit_account_id=1 + (i + 1) % 100, amount=1, ledger=1, code=1) for i in range(500)]
        assert not any(led.create_transfers(ts))
        print(b, flush=True)
        b += 1
    """
)


def test_kill_9_mid_batch_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{path}"],
        stdout=subprocess.PIPE, cwd=ROOT, text=True,
    )
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 60
    while acked < 15 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acked >= 15, "the writer did not get going"
    led = Ledger.open(f"sqlite:///{path}")
    found = led.lookup_transfers([b * 1000 + i + 1 for b in range(acked + 1) for i in range(500)])
    assert len(found) == (acked + 1) * 500
    report = led.verify()
    assert report.ok, report
    # Whatever was in flight is either wholly there or wholly absent.
    in_flight = led.lookup_transfers([(acked + 1) * 1000 + i + 1 for i in range(500)])
    assert len(in_flight) in (0, 500)
    assert led.create_transfers(
        [Transfer(id=10**9, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)]
    ) == [CreateTransferResult.OK]
    led.close()

"""One writer per `Ledger` SQLite file: a second opener, here or in another process, is refused.

Without the lock two writers both accept batches; each numbers its events from its own
view, and on reopen acknowledged transfers of one of them are gone (the issue's 5001-5003).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Account, Ledger, StoreError, Transfer
from ledger.errors import StoreLockedError

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_opener_in_this_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    first = Ledger.open(url)
    first.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    with pytest.raises(StoreLockedError, match=f"{tmp_path / 'bank.db'}.*already open for writing"):
        Ledger.open(url)
    assert issubclass(StoreLockedError, StoreError)
    first.create_transfers([Transfer(id=7, debit_account_id=1, credit_account_id=2, amount=5, ledger=1, code=1)])
    first.close()
    again = Ledger.open(url)  # closing released it
    assert [t.id for t in again.lookup_transfers([7])] == [7]
    again.close()


def test_another_process_is_refused_naming_the_holder_and_kill_9_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ledger import Ledger; "
         f"led = Ledger.open({f'sqlite:///{path}'!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError, match=f"by process {holder.pid} "):
            Ledger.open(f"sqlite:///{path}")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    Ledger.open(f"sqlite:///{path}").close()


def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)  # passes the URL check's read, fails the open
    with pytest.raises(StoreError):
        Ledger.open(f"sqlite:///{path}")
    path.unlink()
    Ledger.open(f"sqlite:///{path}").close()


def test_memory_stores_take_no_lock(tmp_path: Path) -> None:
    a, b = Ledger.open("sqlite:///:memory:"), Ledger.open("memory://")
    a.close()
    b.close()
    assert not list(tmp_path.iterdir())

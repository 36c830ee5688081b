"""What a new user runs into: closing, the context manager, clear errors, typing.

A closed ledger refuses reads and writes alike with `LedgerClosedError` (a `LedgerError`
with a message); `balance_at` names its own parameter; a second writer on a shared
Cassandra keyspace gets `ConcurrentWriterError` and can retry (an SQLite file has one
writer); `get_account_balances` of an account without HISTORY is `[]`; and a user's
script type-checks against the installed package (py.typed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ledger as ledger_package
from ledger import (
    Account,
    AccountFlags,
    ConcurrentWriterError,
    CreateAccountResult,
    InvalidInputError,
    Ledger,
    LedgerClosedError,
    LedgerError,
    QueryFilter,
    Transfer,
)
from tests.support.realparts import drop_keyspace, fresh_cassandra_url

CALLS: dict[str, Callable[[Ledger], Any]] = {
    "create_accounts": lambda led: led.create_accounts([Account(id=3, ledger=1, code=1)]),
    "create_transfers": lambda led: led.create_transfers([Transfer(id=9, debit_account_id=1, credit_account_id=2,
                                                                   amount=1, ledger=1, code=1)]),
    "lookup_accounts": lambda led: led.lookup_accounts([1]),
    "lookup_transfers": lambda led: led.lookup_transfers([1]),
    "get_account_transfers": lambda led: led.get_account_transfers(1),
    "get_account_balances": lambda led: led.get_account_balances(1),
    "query_accounts": lambda led: led.query_accounts(QueryFilter(ledger=1)),
    "query_transfers": lambda led: led.query_transfers(ledger=1),
    "balance_at": lambda led: led.balance_at(1, 1),
    "changes": lambda led: list(led.changes()),
    "batches": lambda led: led.batches(),
    "verify": lambda led: led.verify(),
    "digest": lambda led: led.digest(),
    "head": lambda led: led.head,
    "tick": lambda led: led.tick(),
    "notification_log": lambda led: led.notification_log,
    "enter": lambda led: led.__enter__(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_closed_ledger_refuses_reads_and_writes(open_ledger: Callable[[], Ledger], call: str) -> None:
    led = open_ledger()  # the fixture drops a Cassandra keyspace afterwards (closing twice is fine)
    led.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    led.close()
    led.close()  # idempotent
    assert led.closed
    with pytest.raises(LedgerClosedError, match="closed") as raised:
        CALLS[call](led)
    assert isinstance(raised.value, LedgerError)


def test_the_context_manager_closes(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'a.db'}") as led:
        assert led.create_accounts([Account(id=1, ledger=1, code=1)]) == [CreateAccountResult.OK]
    with pytest.raises(LedgerClosedError):
        led.lookup_accounts([1])
    with Ledger.open(f"sqlite:///{tmp_path / 'a.db'}") as again:
        assert [a.id for a in again.lookup_accounts([1])] == [1]


@pytest.mark.parametrize("value", [1.5, -1, 1 << 64, "1", None, True])
def test_balance_at_names_its_timestamp_parameter(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^timestamp: ") as raised:
        Ledger().balance_at(1, value)  # type: ignore[arg-type]
    assert raised.value.field == "timestamp"


@pytest.mark.cassandra
def test_a_second_writer_gets_a_typed_error_and_can_retry() -> None:
    """Two writers on one Cassandra keyspace (no file lock can reach across machines: an
    SQLite file's second opener is refused at open, see test_ledger_lock.py)."""
    url = fresh_cassandra_url()
    first, second = Ledger.open(url), Ledger.open(url)
    try:
        assert first.create_accounts([Account(id=1, ledger=1, code=1)]) == [CreateAccountResult.OK]
        with pytest.raises(ConcurrentWriterError, match="retry"):
            second.create_accounts([Account(id=2, ledger=1, code=1)])
        assert [a.id for a in second.lookup_accounts([1, 2])] == [1]  # reloaded; nothing of its own written
        assert second.create_accounts([Account(id=2, ledger=1, code=1)]) == [CreateAccountResult.OK]
    finally:
        first.close()
        second.close()
        drop_keyspace(url)


def test_balances_of_an_account_without_history_are_empty() -> None:
    led = Ledger()
    led.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1, flags=AccountFlags.HISTORY)])
    led.create_transfers([Transfer(id=5, debit_account_id=1, credit_account_id=2, amount=3, ledger=1, code=1)])
    assert led.get_account_balances(1) == []
    assert [b.credits_posted for b in led.get_account_balances(2)] == [3]
    at = led.balance_at(1, led.lookup_transfers([5])[0].timestamp)  # any account, at any time
    assert at is not None and at.debits_posted == 3


USER_SCRIPT = '''
from ledger import Account, CreateTransferResult, Ledger, Transfer

def pay(led: Ledger, amount: int) -> bool:
    (result,) = led.create_transfers([Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=amount,
                                               ledger=1, code=1)])
    return result == CreateTransferResult.OK

with Ledger() as led:
    led.create_accounts([Account(id=1, ledger=1, code=1)])
    ok: bool = pay(led, 5)
    wrong: str = led.lookup_accounts([1])[0].balance
'''


@pytest.mark.slow
def test_a_users_script_type_checks_against_the_installed_package(tmp_path: Path) -> None:
    """PEP 561: mypy uses an installed package's annotations only if it ships py.typed.
    The package is 'installed' into a fresh virtual environment's site-packages (links to
    the sources), next to the dependencies it imports."""
    for package in ("ledger", "cext"):
        assert (Path(ledger_package.__file__).parents[1] / package / "py.typed").is_file()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    source = Path(ledger_package.__file__).parents[1]
    for package in ("ledger", "cext"):
        (site / package).symlink_to(source / package)
    deps = Path(os.path.dirname(os.path.dirname(__import__("numpy").__file__)))
    (site / "deps.pth").write_text(f"{deps}\n")
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(python),
         "--cache-dir", str(tmp_path / "cache"), str(script)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    # Exactly the one planted mistake: a balance is an int. Nothing about missing stubs.
    assert "py.typed" not in run.stdout and "import-not-found" not in run.stdout, run.stdout
    assert run.stdout.count("error:") == 1, run.stdout
    assert 'user.py:12: error: Incompatible types in assignment (expression has type "int"' in run.stdout

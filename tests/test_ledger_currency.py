"""Multi-currency the TigerBeetle way: one ledger per currency, an exchange as a linked
chain through liquidity accounts. The worked example in docs/multi-currency.md runs as
written; Hypothesis checks that an exchange with a failing leg (either one) leaves every
account of every currency exactly as it was, and that one that succeeds moves exactly
its two amounts."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)

R = CreateTransferResult
USD, EUR = 840, 978
ALICE, BOB, BANK_USD, BANK_EUR, FUNDING_USD, FUNDING_EUR = 1, 2, 10, 11, 20, 21
DOC = Path(__file__).resolve().parents[1] / "docs" / "multi-currency.md"


def test_the_worked_example_runs_as_documented() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    exec(compile(code, str(DOC), "exec"), {})  # its own asserts check every outcome


def setup(alice: int, liquidity: int) -> Ledger:
    led = Ledger()
    limited = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert led.create_accounts([
        Account(id=ALICE, ledger=USD, code=1, flags=limited), Account(id=BOB, ledger=EUR, code=1),
        Account(id=BANK_USD, ledger=USD, code=2), Account(id=BANK_EUR, ledger=EUR, code=2, flags=limited),
        Account(id=FUNDING_USD, ledger=USD, code=3), Account(id=FUNDING_EUR, ledger=EUR, code=3),
    ]) == [CreateAccountResult.OK] * 6
    assert led.create_transfers([
        Transfer(id=1, debit_account_id=FUNDING_USD, credit_account_id=ALICE, amount=alice, ledger=USD, code=1),
        Transfer(id=2, debit_account_id=FUNDING_EUR, credit_account_id=BANK_EUR, amount=liquidity, ledger=EUR,
                 code=1),
    ]) == [R.OK, R.OK]
    return led


def snapshot(led: Ledger) -> dict[int, tuple[int, int, int, int]]:
    return {a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            for a in led.lookup_accounts([ALICE, BOB, BANK_USD, BANK_EUR, FUNDING_USD, FUNDING_EUR])}


@settings(max_examples=150, deadline=None)
@given(alice=st.integers(0, 10**6), liquidity=st.integers(0, 10**6), usd=st.integers(0, 2 * 10**6),
       rate_per_mille=st.integers(1, 2000), wrong_ledger=st.sampled_from([None, "usd", "eur"]))
def test_an_exchange_moves_both_currencies_or_neither(
    alice: int, liquidity: int, usd: int, rate_per_mille: int, wrong_ledger: str | None,
) -> None:
    led = setup(alice, liquidity)
    eur = usd * rate_per_mille // 1000
    before = snapshot(led)
    legs = [
        Transfer(id=100, debit_account_id=ALICE, credit_account_id=BANK_USD, amount=usd,
                 ledger=EUR if wrong_ledger == "usd" else USD, code=10, flags=TransferFlags.LINKED),
        Transfer(id=101, debit_account_id=BANK_EUR, credit_account_id=BOB, amount=eur,
                 ledger=USD if wrong_ledger == "eur" else EUR, code=10),
    ]
    results = led.create_transfers(legs)
    first_fails = wrong_ledger == "usd" or usd > alice
    second_fails = wrong_ledger == "eur" or eur > liquidity
    if not (first_fails or second_fails):
        assert results == [R.OK, R.OK]
        after = snapshot(led)
        assert after[ALICE][1] - before[ALICE][1] == usd and after[BANK_USD][3] - before[BANK_USD][3] == usd
        assert after[BANK_EUR][1] - before[BANK_EUR][1] == eur and after[BOB][3] - before[BOB][3] == eur
    else:
        assert R.LINKED_EVENT_FAILED in results and results != [R.OK, R.OK]
        assert snapshot(led) == before  # every account, of both currencies, untouched
        assert led.lookup_transfers([100, 101]) == []
    report = led.verify()
    assert report.ok
    for totals in report.totals.values():  # each currency balances on its own
        assert totals["debits_posted"] == totals["credits_posted"]

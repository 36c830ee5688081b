"""Hostile clients cannot break the books, and every defence is shown to matter.

The three ways a client broke a promised invariant on c1849b2 are regression tests here,
at the node (exact answers) and in whole runs (verdicts). For each defence, a run with the
defence switched off (`replication.admission.DEFENCES`, a test-only hook) must fail on the
very invariant the defence protects: a checker that cannot fail is no checker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.layout import TRANSFER_DTYPE
from replication.accounts import AccountMap, fund_id, transit_id
from replication.admission import DEFENCES
from replication.config import MS, NodeConfig
from replication.ids import CREDIT_BIT, GENESIS_BIT, transfer_id
from replication.messages import ClientRequest, Reply, Tick
from replication.node import RegionNode
from replication.outcomes import outcome_name
from simulator.run import run_scenario
from simulator.scenario import load_scenario

M64 = (1 << 64) - 1
AMAP = AccountMap(3, np.arange(13) % 3)  # customers 1..12; customer c is in unit c % 3
EDGES = (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, (1 << 64) + 1, 1 << 127, (1 << 128) - 1)
MODES = ("async", "unit", "escrow", "quorum")


def leader(mode: str, opening: int = 1000) -> RegionNode:
    """A one-region node that writes every unit (it leads and leases alone)."""
    n = RegionNode(NodeConfig(1, 0, mode, AMAP, opening))
    for t in range(0, 400 * MS, 50 * MS):
        n.handle(Tick(), t)
    return n


def row(tid: int, debit: int, credit: int, amount: int, flags: int = 0) -> np.ndarray:
    r = np.zeros(1, TRANSFER_DTYPE)
    for name, value in (("id", tid), ("debit_account_id", debit), ("credit_account_id", credit), ("amount", amount)):
        r[f"{name}_lo"], r[f"{name}_hi"] = value & M64, value >> 64
    r["ledger"], r["code"], r["flags"] = 156, 1, flags
    return r


def submit(n: RegionNode, rows: np.ndarray, t: int = 400 * MS) -> list[str]:
    replies = [e for e in n.handle(ClientRequest(1, rows), t) if isinstance(e, Reply)]
    return [outcome_name(int(c)) for c in replies[0].results]


def balance(n: RegionNode, account: int) -> int:
    acc = n.engine.accounts[n.engine.account_slot(account)]
    get = {f: (int(acc[f"{f}_hi"]) << 64) | int(acc[f"{f}_lo"]) for f in ("credits_posted", "debits_posted",
                                                                            "debits_pending")}
    return get["credits_posted"] - get["debits_posted"] - get["debits_pending"]


@pytest.fixture
def defences() -> Iterator[dict[str, bool]]:
    saved = dict(DEFENCES)
    yield DEFENCES
    DEFENCES.clear()
    DEFENCES.update(saved)


# ------------------------------------------------------------------ the three reproductions
@pytest.mark.parametrize("mode", MODES)
def test_an_amount_of_2_64_plus_1_is_refused_and_moves_nothing(mode: str) -> None:
    """Repro 1: admission read the low 64 bits, so 2^64 + 1 looked like 1 (escrow, async)."""
    n = leader(mode, opening=10_000_000)
    assert submit(n, row(transfer_id(0, 1), 3, 6, (1 << 64) + 1)) == ["EXCEEDS_CREDITS"]
    assert balance(n, 3) == 10_000_000 and n.engine.transfer_slot(transfer_id(0, 1)) < 0


@pytest.mark.parametrize("mode", MODES)
def test_a_client_cannot_take_a_credit_legs_id_so_the_credit_still_lands(mode: str) -> None:
    """Repro 2: id 2^127 + T (a same-unit transfer) made T's credit leg "already exist": the
    payer debited, the payee never credited, the money stuck in transit, every verdict OK."""
    n = leader(mode)
    t = transfer_id(0, 777)
    assert submit(n, row(CREDIT_BIT | t, 3, 6, 5)) == ["ID_IN_RESERVED_RANGE"]
    assert submit(n, row(GENESIS_BIT | 3, 3, 6, 5)) == ["ID_IN_RESERVED_RANGE"]
    assert submit(n, row(t, 3, 4, 1000)) == ["OK"]  # customer 3 (unit 0) pays customer 4 (unit 1)
    if mode in ("unit", "quorum"):  # the debit home owes the credit leg, sent on its next timer
        for k in range(10):
            n.handle(Tick(), 400 * MS + (k + 1) * 350 * MS)
    assert n.engine.transfer_slot(CREDIT_BIT | t) >= 0 and balance(n, 4) == 2000


@pytest.mark.parametrize("mode", ["unit", "quorum"])
def test_one_id_is_one_transfer_even_debiting_another_unit(mode: str) -> None:
    """Repro 3: the same id debiting customers of two units was acknowledged twice, in two logs."""
    n = leader(mode)
    t = transfer_id(0, 42)
    assert submit(n, row(t, 3, 6, 5)) == ["OK"]  # customer 3 is in unit 0: the id names it
    again = submit(n, row(t, 4, 7, 5))  # the same id, debiting customer 4 of unit 1
    assert again == ["EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID"]
    assert submit(n, row(transfer_id(0, 43), 4, 7, 5)) == ["ID_MUST_NAME_ITS_UNIT"]  # a new id, another unit
    assert submit(n, row(t, 3, 6, 5)) == ["EXISTS"]


@pytest.mark.parametrize("mode", MODES)
def test_the_banks_own_accounts_and_unnamed_units_are_refused(mode: str) -> None:
    n = leader(mode)
    got = submit(n, np.concatenate([row(transfer_id(0, 1), fund_id(0), 3, 5),
                                    row(transfer_id(0, 2), 3, transit_id(1), 5),
                                    row(42, 3, 6, 5), row(transfer_id(7, 3), 3, 6, 5)]))
    assert got == ["ACCOUNT_IS_BANK_INTERNAL", "ACCOUNT_IS_BANK_INTERNAL", "ID_MUST_NAME_ITS_UNIT",
                   "ID_MUST_NAME_ITS_UNIT"]


@pytest.mark.parametrize("mode", MODES)
def test_a_chain_across_units_is_refused_whole(mode: str) -> None:
    n = leader(mode)
    chain = np.concatenate([row(transfer_id(0, 1), 3, 6, 5, flags=1), row(transfer_id(1, 2), 4, 7, 5)])
    assert submit(n, chain) == ["LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT"] * 2
    assert n.engine.transfer_slot(transfer_id(0, 1)) < 0 and n.engine.transfer_slot(transfer_id(1, 2)) < 0


# ------------------------------------------------------------------ u128 edges, every mode
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(MODES),
       batch=st.lists(st.tuples(st.sampled_from(EDGES), st.integers(1, 12), st.integers(1, 12),
                                st.sampled_from(EDGES + (5, 50, 500)), st.integers(0, 2)), min_size=1, max_size=12))
def test_u128_edges_in_every_field_never_overdraw_nor_unbalance(mode: str, batch: list[Any]) -> None:
    """Ids, accounts and amounts at 0, 2^63, 2^64, 2^127 and 2^128-1 (the account ids offset
    by one of the edges): every answer is exact, customers never go below zero in a design
    that promises it, the books balance, and the node's own invariants hold."""
    n = leader(mode)
    rows = []
    for k, (edge, debit, credit, amount, shape) in enumerate(batch):
        tid = transfer_id(debit % 3, k + 1) if shape else edge
        d = debit if shape != 2 else debit + (edge & ~M64 if edge > M64 else edge)
        rows.append(row(tid, d, credit, amount))
    submit(n, np.concatenate(rows))
    n.invariants()
    if mode != "async":
        assert all(balance(n, c) >= 0 for c in range(1, 13))


# ------------------------------------------------------------------ defences off: the verdict fails
def _hostile_run(mode: str, attacks: tuple[str, ...], share: float = 0.25, seed: int = 5) -> dict[str, Any]:
    s = load_scenario("fuzz").with_mode(mode)
    s = replace(s, random_faults=0, workload=replace(s.workload, hostile=replace(s.workload.hostile, share=share,
                                                                                      attacks=attacks)))
    return run_scenario(s, seed)[1]


@pytest.mark.slow
@pytest.mark.parametrize(("defence", "mode", "attacks", "invariant"), [
    ("u128", "escrow", ("amount_extreme",), "no_overdraft"),
    ("reserved_ids", "unit+semi-sync", ("reserved_id",), "conservation"),
    ("bank_accounts", "quorum", ("bank_account",), "conservation"),
    ("id_units", "unit+semi-sync", ("reuse_different",), "exactly_once"),
    ("chains", "quorum", ("chain_straddle",), "atomic_chains"),
])
def test_each_defence_switched_off_fails_the_run_on_its_invariant(defences: dict[str, bool], defence: str, mode: str,
                                                                   attacks: tuple[str, ...], invariant: str) -> None:
    on = _hostile_run(mode, attacks)
    assert on["violated"] == [], {k: on["invariants"][k]["first_violation"] for k in on["violated"]}
    defences[defence] = False
    off = _hostile_run(mode, attacks)
    assert invariant in off["violated"], off["violated"]

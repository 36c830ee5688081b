"""Every checker fails when it should: broken books and histories, each caught by its own
invariant (and only then). A checker that cannot fail is not a checker.

A small real run gives honest books; each test breaks one thing in a copy of them — money
created, money moved out of the bank's fund, a credit leg lost, an id applied twice,
replicas that differ, a stored record flipped, an acknowledged transfer lost, a linked
chain applied in part, an account that ends overdrawn — and asks the checkers.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from replication.accounts import TRANSIT_BASE, fund_id
from replication.ids import CREDIT_BIT_HI
from simulator.checkers import check_all
from simulator.plan import shortened
from simulator.result import EngineRows, ReplicaSnapshot, RunResult
from simulator.run import run_scenario
from simulator.scenario import load_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def honest() -> RunResult:
    s = shortened(load_scenario("baseline"), 3.0, 2.0)
    s = replace(s, workload=replace(s.workload, rate=200, mix=replace(s.workload.mix, cross_unit=0.3)))
    sim, result = run_scenario(s, 1)
    assert result["violated"] == [] and all(v["ok"] for v in result["invariants"].values()), result["violated"]
    return sim


def tampered(sim: RunResult, region: int | None = None) -> tuple[RunResult, list[EngineRows]]:
    """A copy of the run whose replicas are plain rows the test may edit (all, or one region's)."""
    views: list[Any] = []
    for node in sim.nodes:
        views.append(ReplicaSnapshot(EngineRows(node.engine.accounts.copy(), node.engine.transfers.copy()),
                                     list(node.anomalies), list(node.heads), {}))
    out = copy.copy(sim)
    out.nodes = views
    out.stores = [copy.deepcopy(st) for st in sim.stores]
    out.ops = copy.deepcopy(sim.ops)
    out.plan = copy.copy(sim.plan)
    return out, [v.engine for v in views]


def failing(sim: RunResult) -> set[str]:
    return {k for k, v in check_all(sim).items() if not v["ok"]}


def _slot(rows: np.ndarray, account: int) -> int:
    return int(np.nonzero((rows["id_lo"] == account) & (rows["id_hi"] == 0))[0][0])


def test_money_created_breaks_conservation(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    engines[1].accounts["credits_posted_lo"][_slot(engines[1].accounts, 5)] += 1
    assert "conservation" in failing(sim)


def test_money_moved_out_of_the_banks_fund_breaks_conservation_though_the_books_balance(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    for e in engines:  # the same on every replica: debits still equal credits everywhere
        e.accounts["debits_posted_lo"][_slot(e.accounts, fund_id(0))] += 500
        e.accounts["credits_posted_lo"][_slot(e.accounts, 5)] += 500
    found = check_all(sim)["conservation"]
    assert not found["ok"] and "money supply" in found["first_violation"]["problem"]


def test_a_lost_credit_leg_breaks_conservation(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    tr = engines[2].transfers
    legs = np.nonzero((tr["id_hi"] & CREDIT_BIT_HI) != 0)[0]
    assert len(legs), "the honest run has cross-unit transfers"
    engines[2].transfers = np.delete(tr, legs[0])
    found = check_all(sim)["conservation"]
    assert not found["ok"] and found["first_violation"]["debit_legs_without_credit"]


def test_an_id_applied_twice_breaks_exactly_once(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    tr = engines[0].transfers
    engines[0].transfers = np.concatenate([tr, tr[-1:]])
    assert "exactly_once" in failing(sim)


def test_an_id_acknowledged_ok_twice_breaks_exactly_once(honest: RunResult) -> None:
    sim, _ = tampered(honest)
    acked = np.nonzero(sim.ops.ok_count == 1)[0]
    sim.ops.ok_count[acked[0]] = 2
    assert "exactly_once" in failing(sim)


def test_replicas_that_differ_break_convergence(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    tr = engines[1].transfers
    client = np.nonzero((tr["id_hi"] & CREDIT_BIT_HI) == 0)[0]
    engines[1].transfers = np.delete(tr, client[-1])
    assert "convergence" in failing(sim)


def test_a_flipped_record_breaks_the_audit_chain(honest: RunResult) -> None:
    sim, _ = tampered(honest)
    store = sim.stores[0]
    entries = [i for i, r in enumerate(store.records) if type(r.payload).__name__ == "Entry" and len(r.payload.rows)]
    store.corrupt(entries[0])
    assert "audit_chain" in failing(sim)


def test_a_lost_acknowledged_transfer_breaks_durability(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    from replication.ids import ids_of

    acked = np.nonzero(sim.ops.outcome == 1)[0]
    lost = sim.plan.transfer_ids(acked[:1])[0]
    for e in engines:
        keep = np.array([t != lost for t in ids_of(e.transfers)])
        e.transfers = e.transfers[keep]
    found = check_all(sim)["durability"]
    assert not found["ok"] and found["rpo"]["lost_acknowledged"] == 1
    assert lost in found["first_violation"]["transfer_ids"]


def test_a_chain_applied_in_part_breaks_atomic_chains(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    rows = sim.plan.rows.copy()
    from replication.ids import ids_of

    books = set(ids_of(engines[0].transfers))
    ids = sim.plan.transfer_ids(np.arange(sim.plan.n_ops))
    first = next(i for i in range(sim.plan.n_ops - 1) if ids[i] in books and ids[i + 1] in books)
    rows["flags"][first] |= 1  # the two were sent as one linked chain ...
    sim.plan = replace(sim.plan, rows=rows)
    second = ids[first + 1]
    for e in engines:  # ... and only the first is in the books
        e.transfers = e.transfers[np.array([t != second for t in ids_of(e.transfers)])]
    found = check_all(sim)["atomic_chains"]
    assert not found["ok"] and found["first_violation"]["transfer_ids"] == [ids[first], second]


def test_an_account_that_ends_overdrawn_is_reported_even_with_no_negative_moment_replayed(honest: RunResult) -> None:
    sim, engines = tampered(honest)
    for e in engines:  # no transfer shows it: the balance itself is wrong
        e.accounts["debits_posted_lo"][_slot(e.accounts, 7)] += 10 ** 9
        e.accounts["credits_posted_lo"][_slot(e.accounts, TRANSIT_BASE)] += 10 ** 9  # books still balance
    found = check_all(sim)["no_overdraft"]
    assert not found["ok"] and found["first_violation"]["account"] == 7
    assert found["first_violation"]["overdrawn_accounts"] >= 1


def test_the_honest_books_pass_every_checker(honest: RunResult) -> None:
    sim, _ = tampered(honest)
    assert failing(sim) == set()

"""Per-unit snapshots (the quorum mode's per-log compaction): installing a unit's slice from
one replica into another that is ahead or behind on *other* units makes exactly that unit
equal to the source and leaves everything else as it was; later entries of the unit then
apply identically on both. A slice of the wrong units is refused and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext import Engine
from cext.layout import TRANSFER_DTYPE
from ledger.types import TransferFlags
from replication.accounts import TRANSIT_BASE, AccountMap, genesis
from replication.state import balances, canonical_digest, transfer_ids
from replication.unit_state import export_units, install_units

N_UNITS = 3
AMAP = AccountMap(N_UNITS, np.arange(13) % N_UNITS)  # customers 1..12; customer c is in unit c % 3
PENDING, POST = int(TransferFlags.PENDING), int(TransferFlags.POST_PENDING_TRANSFER)


def fresh() -> Engine:
    accounts, deposits = genesis(AMAP, 1_000, enforce_flags=True)
    engine = Engine()
    engine.create_accounts(accounts, accounts["timestamp"].copy())
    engine.create_transfers(deposits, deposits["timestamp"].copy())
    return engine


def unit_stream(unit: int, steps: list[tuple[int, int, int, int]], base_id: int) -> list[np.ndarray]:
    """One unit's log: single rows touching only its accounts (transfers, debit legs,
    pendings and posts of its own pendings)."""
    customers = [c for c in range(1, 13) if c % N_UNITS == unit]
    out, pendings = [], []
    for i, (kind, a, b, amount) in enumerate(steps):
        row = np.zeros(1, TRANSFER_DTYPE)
        row["id_lo"] = base_id + i
        row["ledger"], row["code"] = 156, 1
        row["debit_account_id_lo"] = customers[a % len(customers)]
        row["credit_account_id_lo"] = customers[b % len(customers)]
        row["amount_lo"] = amount
        if kind == 1:  # a debit leg to another unit's customer, parked in this unit's transit
            row["user_data_128_lo"] = row["credit_account_id_lo"][0] + 1
            row["credit_account_id_lo"] = TRANSIT_BASE + unit
        elif kind == 2:
            row["flags"] = PENDING
            pendings.append(base_id + i)
        elif kind == 3 and pendings:
            row["flags"] = POST
            row["pending_id_lo"] = pendings.pop(0)
            row["debit_account_id_lo"] = row["credit_account_id_lo"] = row["amount_lo"] = 0
        out.append(row)
    return out


def play(engine: Engine, rows: list[np.ndarray], clock: list[int]) -> list[int]:
    results = []
    for row in rows:
        clock[0] += 1
        results += engine.create_transfers(row, np.array([clock[0]], np.uint64)).tolist()
    return results


steps = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 9), st.integers(1, 400)),
                 min_size=1, max_size=25)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=st.lists(steps, min_size=N_UNITS, max_size=N_UNITS), data=st.data())
def test_installing_a_units_slice_makes_that_unit_equal_and_leaves_the_rest(streams, data):  # type: ignore[no-untyped-def]
    logs = [unit_stream(u, s, 10_000 * (u + 1)) for u, s in enumerate(streams)]
    unit = data.draw(st.integers(0, N_UNITS - 1))
    source, target = fresh(), fresh()
    ca, cb = [100], [100]
    cut_a = [data.draw(st.integers(0, len(log))) for log in logs]
    cut_b = [data.draw(st.integers(0, len(log))) for log in logs]
    for u, log in enumerate(logs):  # each replica got each unit's log up to its own point
        play(source, log[: cut_a[u]], ca)
        play(target, log[: cut_b[u]], cb)
    before = balances(target)
    target_ids = set(transfer_ids(target))
    units = np.array([unit])
    install_units(target, AMAP, units, export_units(source, AMAP, units))

    mine = {a for a in balances(source) if AMAP.unit_of(a) == unit}
    after, src = balances(target), balances(source)
    for a in after:
        assert after[a] == (src[a] if a in mine else before[a]), a
    in_unit = {t for t in transfer_ids(source) if t >= 10_000 * (unit + 1) and t < 10_000 * (unit + 2)}
    kept = {t for t in target_ids if not (10_000 * (unit + 1) <= t < 10_000 * (unit + 2))}
    assert set(transfer_ids(target)) == in_unit | kept | {t for t in target_ids if t >> 62}
    # the rest of the unit's log now applies the same way on both
    rest = logs[unit][cut_a[unit]:]
    assert play(target, rest, [max(ca[0], cb[0])]) == play(source, rest, [max(ca[0], cb[0])])
    assert {a: v for a, v in balances(target).items() if a in mine} == {a: balances(source)[a] for a in mine}


def test_a_slice_of_other_units_is_refused_and_changes_nothing() -> None:
    source, target = fresh(), fresh()
    play(source, unit_stream(0, [(0, 1, 2, 50), (1, 0, 3, 20)], 10_000), [100])
    play(target, unit_stream(1, [(0, 1, 2, 70)], 20_000), [100])
    digest = canonical_digest(target)
    with pytest.raises(ValueError, match="accounts are not these units"):
        install_units(target, AMAP, np.array([1]), export_units(source, AMAP, np.array([0])))
    with pytest.raises(ValueError):
        install_units(target, AMAP, np.array([0]), b"not a snapshot")
    assert canonical_digest(target) == digest

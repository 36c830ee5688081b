"""A large topology in the simulator: 8 regions x 1,000 units x 1,000,000 customers runs,
keeps every promise, and is deterministic (the same seed gives the same trace digest).

A few thousand transfers over a short window: what is large here is the bank (accounts,
units, regions), which is what used to be slow (a scan of every customer per unit, genesis
rows built per replica). Wall time and memory at load are `python -m bench.sim_bench --large`.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _digest_of(scenario: Any, seed: int) -> str:
    from simulator.runtime import Simulation

    return Simulation(scenario, seed).run().result().digest()


def test_eight_regions_a_thousand_units_a_million_customers_is_deterministic() -> None:
    from dataclasses import replace

    from bench.sim_bench import LARGE, scenario
    from simulator.checkers import check_all
    from simulator.runtime import Simulation

    s = scenario(3_000, "unit+semi-sync", LARGE)
    s = replace(s, duration=3.0, quiesce=1.0, chaos=(replace(s.chaos[0], at=1.0, duration=1.0),))
    assert len(s.regions) == 8 and s.workload.customers == 1_000_000
    assert s.workload.units_per_region * len(s.regions) == 1_000
    # the same seed at the same time in a spawned process (its own hash seed, nothing shared)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        again = pool.apply_async(_digest_of, (s, 7))
        first = Simulation(s, 7).run().result()
        verdicts = check_all(first)
        assert not [k for k, v in verdicts.items() if v["promised"] and not v["ok"]]
        assert int((first.ops.outcome == 1).sum()) > 0
        assert again.get() == first.digest()

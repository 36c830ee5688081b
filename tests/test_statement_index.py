"""The statement index answers exactly as a scan of every transfer would, however the
engine changed in between: new batches, failed linked chains, expiries, a restore of an
older snapshot into the same engine, a different engine altogether."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext import Engine
from cext.codec_py import accounts_to_rows, transfers_to_rows
from ledger.queries import StatementIndex, account_transfers
from tests.support.engine_events import SETUP_ACCOUNTS, Events, timestamps

FILTERS = [
    {},
    {"reverse": True, "limit": 3},
    {"debits": False},
    {"credits": False, "reverse": True},
    {"debits": False, "credits": False},
]


def _agree(engine: object, index: StatementIndex, account_ids: list[int], where: str) -> None:
    for a in account_ids:
        ts = engine.transfers["timestamp"]  # type: ignore[attr-defined]
        mid = int(np.median(ts)) if len(ts) else 0
        for f in [*FILTERS, {"timestamp_min": mid}, {"timestamp_max": mid, "reverse": True}]:
            want = account_transfers(engine, a, **f)  # type: ignore[arg-type]
            got = account_transfers(engine, a, index=index, **f)  # type: ignore[arg-type]
            assert got == want, (where, a, f)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), setup=st.lists(st.sampled_from(SETUP_ACCOUNTS), min_size=5, max_size=8,
                                      unique_by=lambda a: a.id))
def test_index_matches_the_scan_after_every_step(data: st.DataObject, setup: list) -> None:  # type: ignore[type-arg]
    events = Events(data)
    engine = Engine()
    rows = accounts_to_rows(setup)
    engine.create_accounts(rows, timestamps(1, len(rows)))
    now = 1 + len(rows)
    index = StatementIndex()
    snapshots = [engine.snapshot()]
    ids = [a.id for a in setup]
    for i in range(data.draw(st.integers(1, 12), label="steps")):
        op = data.draw(st.sampled_from(["transfers", "transfers", "transfers", "expire", "snapshot", "rewind",
                                        "new engine"]))
        if op == "transfers":
            rows = transfers_to_rows([events.transfer() for _ in range(data.draw(st.integers(0, 16)))])
            engine.create_transfers(rows, timestamps(now, len(rows)))
            now += len(rows) + 1
        elif op == "expire":
            engine.expire_pending(now + 10**12)
            now += 10**12 + 1
        elif op == "snapshot":
            snapshots.append(engine.snapshot())
        elif op == "rewind":  # the same engine object, an older state (fewer or other transfers)
            engine.restore(data.draw(st.sampled_from(snapshots)))
        else:
            fresh = Engine()
            fresh.restore(engine.snapshot())
            engine = fresh
        _agree(engine, index, ids, f"step {i}: {op}")

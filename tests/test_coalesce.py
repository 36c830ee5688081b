"""A step's client requests, admitted as one batch (`replication.coalesce`), get exactly the
answers and books they get admitted one by one in the same step — in the designs that admit
row by row (unit, quorum), with linked chains, duplicate ids, two-phase transfers and the
bank's reserved ids among them. The designs that admit a batch against a local view (async,
escrow) do not merge, and the tests show why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext.codec import transfers_to_rows
from ledger import Transfer
from replication import coalesce
from replication.accounts import AccountMap, fund_id
from replication.config import MS, Mode, NodeConfig
from replication.ids import CREDIT_BIT, transfer_id
from replication.messages import ClientRequest, Reply, Tick
from replication.node import RegionNode

AMAP = AccountMap(3, np.arange(13) % 3)  # customers 1..12; customer c is in unit c % 3
NOW = 400 * MS
LINKED, PENDING, POST, VOID = 1, 2, 4, 8


def leader(mode: str) -> RegionNode:
    """A one-region node that writes every unit (it leads and leases alone)."""
    n = RegionNode(NodeConfig(1, 0, Mode(mode), AMAP, 1000))
    for t in range(0, NOW, 50 * MS):
        n.handle(Tick(), t)
    return n


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    debit = draw(st.integers(0, 13))
    local = draw(st.integers(1, 25))
    tid = draw(st.sampled_from([transfer_id(int(AMAP.customer_unit[debit]) if debit <= 12 else 0, local),
                                transfer_id(draw(st.integers(0, 2)), local), CREDIT_BIT | local]))
    flags = draw(st.sampled_from([0, 0, 0, LINKED, PENDING, POST, VOID]))
    pending = transfer_id(int(AMAP.customer_unit[debit]) if debit <= 12 else 0, draw(st.integers(1, 25)))
    return Transfer(id=tid, debit_account_id=0 if flags in (POST, VOID) else debit,
                    credit_account_id=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, fund_id(0)])),
                    amount=draw(st.sampled_from([0, 1, 200, 900, (1 << 128) - 1])), ledger=1, code=1, flags=flags,
                    pending_id=pending if flags in (POST, VOID) else 0)


def answers(node: RegionNode, requests: list[list[Transfer]]) -> dict[int, tuple[list[int], list[int]]]:
    """Each batch's (results, writers), from one step holding every request."""
    messages = [ClientRequest(i + 1, transfers_to_rows(batch)) for i, batch in enumerate(requests)]
    effects = node.handle_many(messages, NOW)
    effects += node.handle(Tick(), NOW + 50 * MS)
    replies = [e for e in effects if isinstance(e, Reply)]
    return {r.batch_id: (r.results.tolist(), [] if r.writers is None else r.writers.tolist()) for r in replies}


def books(node: RegionNode) -> Any:
    return node.engine.accounts.tobytes(), node.engine.n_transfers


def one_by_one(node: RegionNode) -> RegionNode:
    node.coalescer.merge = lambda messages: messages  # type: ignore[method-assign]
    return node


@pytest.mark.parametrize("mode", ["unit", "quorum"])
@settings(max_examples=60, deadline=None)
@given(requests=st.lists(st.lists(transfers(), min_size=1, max_size=4), min_size=2, max_size=8))
def test_merged_requests_answer_as_one_by_one(mode: str, requests: list[list[Transfer]]) -> None:
    merged, alone = leader(mode), one_by_one(leader(mode))
    got = answers(merged, requests)
    assert got == answers(alone, requests)
    assert sorted(got) == list(range(1, len(requests) + 1))  # every request answered, under its own id
    assert books(merged) == books(alone)


def test_plain_requests_are_merged_into_one() -> None:
    requests = [ClientRequest(i, transfers_to_rows([Transfer(id=transfer_id(0, i), debit_account_id=3,
                                                             credit_account_id=6, amount=1, ledger=1, code=1)]))
                for i in (1, 2, 3)]
    assert len(coalesce.Coalescer().merge(requests)) == 1


def test_a_request_ending_in_an_open_chain_stays_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard matters: merged across an open chain, the next request's transfer would join
    the chain (and its failure would fail both); switched off, the answers differ."""
    first = [Transfer(id=transfer_id(0, 1), debit_account_id=3, credit_account_id=6, amount=1, ledger=1, code=1,
                      flags=LINKED)]
    second = [Transfer(id=transfer_id(0, 2), debit_account_id=3, credit_account_id=6, amount=1, ledger=1, code=1)]
    want = answers(one_by_one(leader("unit")), [first, second])
    assert answers(leader("unit"), [first, second]) == want
    monkeypatch.setattr(coalesce, "_mergeable", lambda m: len(m.rows) > 0)
    assert answers(leader("unit"), [first, second]) != want


def test_designs_that_admit_against_a_view_do_not_merge() -> None:
    """Async sums a batch's debits against its local view before the engine runs, so a row
    that will fail still uses up credit: merged with it, another client's payment would be
    refused EXCEEDS_CREDITS where, one by one, it is not (found by the test above)."""
    assert leader("unit").coalescer.enabled and leader("quorum").coalescer.enabled
    assert not leader("async").coalescer.enabled and not leader("escrow").coalescer.enabled
    first = [Transfer(id=transfer_id(2, 1), debit_account_id=1, credit_account_id=0, amount=200, ledger=1, code=1)]
    second = [Transfer(id=transfer_id(2, 1), debit_account_id=1, credit_account_id=0, amount=900, ledger=1, code=1)]
    want = answers(leader("async"), [first, second])
    forced = leader("async")
    forced.coalescer.enabled = True
    assert answers(forced, [first, second]) != want

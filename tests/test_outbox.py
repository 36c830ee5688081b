"""`replication.outbox.CreditOutbox` against the scan it replaced.

The reference is the dict a debit home used to keep (id -> [seq, row, last sent]) and the
scan of every leg on every tick. Hypothesis drives both with the same operations — legs
owed (anew too), settled, replaced after a rebuild, ticks with `durable_seq` moving both
ways and time from instant 0 — and every tick must send the same legs in the same order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.outbox import CreditOutbox

EVERY = 10


class ScanOutbox:
    """What the unit design did before: a scan of every leg owed."""

    def __init__(self) -> None:
        self.legs: dict[int, list[Any]] = {}

    def owe(self, tid: int, seq: int, row: Any) -> None:
        self.legs[tid] = [seq, row, 0]

    def settle(self, tid: int) -> None:
        self.legs.pop(tid, None)

    def replace(self, tids: list[int]) -> None:
        previous, self.legs = self.legs, {}
        for tid in tids:
            self.legs[tid] = previous.get(tid) or [0, ("row", tid), 0]

    def due(self, now: int, durable_seq: int, every: int) -> list[Any]:
        out = []
        for leg in self.legs.values():
            seq, row, last = leg
            if (seq and seq > durable_seq) or (last and now - last < every):
                continue
            leg[2] = now
            out.append(row)
        return out


operation = st.one_of(
    st.tuples(st.just("owe"), st.integers(1, 12), st.integers(0, 6)),
    st.tuples(st.just("settle"), st.integers(1, 12)),
    st.tuples(st.just("replace"), st.lists(st.integers(1, 14), unique=True, max_size=8)),
    st.tuples(st.just("tick"), st.integers(0, 12), st.integers(0, 6)),
)


def run_both(ops: list[tuple[Any, ...]], outbox: CreditOutbox) -> None:
    ref, now = ScanOutbox(), 0
    for op in ops:
        if op[0] == "owe":
            ref.owe(op[1], op[2], ("row", op[1], op[2]))
            outbox.owe(op[1], op[2], ("row", op[1], op[2]))
        elif op[0] == "settle":
            ref.settle(op[1])
            outbox.settle(op[1])
        elif op[0] == "replace":
            ref.replace(op[1])
            outbox.replace((tid, ("row", tid)) for tid in op[1])
        else:
            assert outbox.due(now, op[2], EVERY) == ref.due(now, op[2], EVERY), (now, op)
            now += op[1]  # the first tick is at instant 0
        assert list(outbox) == list(ref.legs) and len(outbox) == len(ref.legs)
        assert list(outbox.owed()) == sorted((t, leg[0]) for t, leg in ref.legs.items())


@settings(max_examples=400, deadline=None)
@given(st.lists(operation, max_size=60))
def test_due_legs_are_what_a_scan_of_every_leg_finds(ops: list[tuple[Any, ...]]) -> None:
    run_both(ops, CreditOutbox())


class UnorderedOutbox(CreditOutbox):
    """A broken twin: the due legs in heap order rather than the order first owed."""

    def due(self, now: int, durable_seq: int, every: int) -> list[Any]:
        return sorted(super().due(now, durable_seq, every), key=repr, reverse=True)


def test_the_comparison_catches_legs_sent_out_of_order() -> None:
    ops: list[tuple[Any, ...]] = [("owe", 1, 0), ("owe", 2, 0), ("tick", 1, 0)]
    with pytest.raises(AssertionError):
        run_both(ops, UnorderedOutbox())
    run_both(ops, CreditOutbox())


def test_a_leg_waits_for_durability_then_for_its_resend_interval() -> None:
    box = CreditOutbox()
    box.owe(7, 3, "leg")
    assert box.due(100, 2, EVERY) == []  # entry 3 not durable yet
    assert box.due(101, 3, EVERY) == ["leg"]
    assert box.due(110, 3, EVERY) == []  # sent at 101: not again before 111
    assert box.due(111, 3, EVERY) == ["leg"]
    box.settle(7)
    assert box.due(200, 3, EVERY) == [] and not box and 7 not in box

"""The adaptive failure detector (`replication.detector`): its rule against a reference
model, and the outage it exists for: the survivors of a dead region whose loops stall for
a second at a time (group commits over a slow store, a loaded machine) must still promote.
With the detector fixed at `suspect_after` (the defence off) they never do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.config import MS, NodeConfig
from replication.detector import FailureDetector
from replication.messages import Message, Send, Tick
from replication.node import RegionNode
from tests.support.nodes import AMAP, T, of

BASE, CAP, MEMORY = 600 * MS, 5000 * MS, 10_000 * MS


def reference_limit(heard: list[int], now: int) -> int:
    """Twice the longest learnable gap heard within the memory, clamped to [BASE, CAP]."""
    gaps = [(b, b - a) for a, b in zip(heard, heard[1:], strict=False)]
    learnt = [g for t, g in gaps if BASE // 2 < g <= CAP and t >= now - MEMORY]
    return max(BASE, min(CAP, 2 * max(learnt))) if learnt else BASE


@given(st.lists(st.integers(0, 8000 * MS), max_size=40), st.integers(0, 20_000 * MS))
def test_the_limit_follows_the_reference_rule(steps: list[int], after: int) -> None:
    fd = FailureDetector(BASE, CAP, MEMORY)
    heard, now = [0], 0
    fd.start(7, now)
    for step in steps:
        now += step
        fd.heard(7, now)
        heard.append(now)
        assert fd.limit(7, now) == reference_limit(heard, now)
    now += after
    assert fd.limit(7, now) == reference_limit(heard, now)
    assert fd.suspects(7, now) == (after > reference_limit(heard, now))


def test_an_outage_longer_than_the_cap_is_not_learnt() -> None:
    """A healed partition must not slow the next detection."""
    fd = FailureDetector(BASE, CAP, MEMORY)
    fd.start(1, 0)
    fd.heard(1, 30_000 * MS)
    assert fd.limit(1, 30_000 * MS) == BASE
    assert fd.suspects(1, 30_000 * MS + BASE + 1)


def test_a_cap_at_or_below_the_base_is_a_fixed_timeout() -> None:
    for cap in (0, BASE // 2 + MS, BASE):
        fd = FailureDetector(BASE, cap, MEMORY)
        fd.start(1, 0)
        for k in range(1, 20):
            fd.heard(1, k * 550 * MS)
        assert fd.limit(1, 20 * 550 * MS) == BASE


class _StallingLoops:
    """Each live region's loop stalls `stall` out of every `period`, the two out of phase: it
    handles nothing meanwhile (no timer, no message), then everything that queued, at once."""

    def __init__(self, nodes: dict[int, RegionNode], stall: int, period: int) -> None:
        self.nodes, self.stall, self.period = nodes, stall, period
        self.phase = {r: k * period // 2 for k, r in enumerate(nodes)}
        self.inbox: dict[int, list[tuple[int, Message]]] = {r: [] for r in nodes}

    def step(self, now: int) -> None:
        for r, n in self.nodes.items():
            if (now - T + self.phase[r]) % self.period < self.stall:
                continue
            due = [m for t, m in self.inbox[r] if t <= now]
            self.inbox[r] = [(t, m) for t, m in self.inbox[r] if t > now]
            for send in of(n.handle_many([Tick(), *due], now), Send):
                if send.to in self.nodes:
                    self.inbox[send.to].append((now + 10 * MS, send.message))


def promoted_within(suspect_max: int, stall_ms: int, period_ms: int, limit_s: int = 30) -> float | None:
    """Region 1 is dead from the start; when does region 0 move its unit (None: never)?"""
    nodes = {r: RegionNode(NodeConfig(3, r, "unit", AMAP, 1000, suspect_max=suspect_max)) for r in (0, 2)}
    loops = _StallingLoops(nodes, stall_ms * MS, period_ms * MS)
    now = T
    while now < T + limit_s * 1000 * MS:
        now += 10 * MS
        loops.step(now)
        if nodes[0].design.routing.homes[1] != 1:
            return (now - T) / (1000 * MS)
    return None


@pytest.mark.parametrize(("stall_ms", "period_ms"), [(1000, 2000), (1500, 2500), (3000, 4000)])
def test_survivors_whose_loops_stall_for_seconds_still_promote(stall_ms: int, period_ms: int) -> None:
    assert promoted_within(5000 * MS, stall_ms, period_ms) is not None
    # the defence off (a fixed 600 ms timeout): each survivor suspects the other in every
    # stall, no decider keeps its majority long enough, the dead region's unit never moves
    assert promoted_within(0, stall_ms, period_ms) is None


def test_short_stalls_promote_with_either_detector() -> None:
    """Stalls shorter than `suspect_after` are what the fixed timeout was sized for."""
    assert promoted_within(0, 400, 2000) is not None
    assert promoted_within(5000 * MS, 400, 2000) is not None


@pytest.mark.parametrize("field", ["suspect_after", "suspect_memory"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_node_refuses_a_detector_that_cannot_wait(field: str, value: int) -> None:
    with pytest.raises(ValueError, match="suspect_after and suspect_memory must be positive"):
        NodeConfig(3, 0, "unit", AMAP, 1000, **{field: value})  # type: ignore[arg-type]

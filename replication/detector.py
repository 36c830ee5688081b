"""When a region suspects a peer: silence longer than the peer has lately been seen to go quiet.

A fixed timeout (`suspect_after`, 600 ms) fits a quiet network. On a loaded machine, or
behind a store whose commits stall for a second, a live peer's messages arrive in bursts
with seconds between them; the survivors of a real outage then suspect each other in
turn, no decider keeps a majority for long, and nobody promotes (seen with Ray actor
calls of 1-4 s over a cold Cassandra). Like Cassandra's and Akka's accrual detectors, this
one learns from the gaps it sees: a peer is suspected once its silence exceeds twice the
longest gap heard from it within `memory`, never less than `base` and never more than
`cap`. A gap longer than `cap` is an outage, not jitter, and is not learned (a healed
partition must not slow the next detection). Safety never rests on suspicion (leases and
votes carry it); a slower verdict only delays a promotion, a flapping one prevents it.
"""

from __future__ import annotations

from collections import deque


class FailureDetector:
    """Per peer: when it was last heard, and its recent long gaps (scenario clock, ns)."""

    def __init__(self, base: int, cap: int, memory: int) -> None:
        self.base, self.cap, self.memory = base, cap, memory
        self.last: dict[int, int] = {}
        self.gaps: dict[int, deque[tuple[int, int]]] = {}

    def start(self, peer: int, now: int) -> None:
        """Count silence from `now` for a peer never heard (a region starting up)."""
        self.last.setdefault(peer, now)

    def heard(self, peer: int, now: int) -> None:
        last = self.last.get(peer)
        if last is not None:
            gap = now - last
            if self.base // 2 < gap <= self.cap:  # shorter gaps never raise the limit
                self.gaps.setdefault(peer, deque()).append((now, gap))
        self.last[peer] = now

    def limit(self, peer: int, now: int) -> int:
        """How long `peer` may be silent before it is suspected."""
        gaps = self.gaps.get(peer)
        while gaps and gaps[0][0] < now - self.memory:
            gaps.popleft()
        if not gaps:
            return self.base
        return max(self.base, min(self.cap, 2 * max(g for _, g in gaps)))

    def suspects(self, peer: int, now: int) -> bool:
        return now - self.last.get(peer, now) > self.limit(peer, now)

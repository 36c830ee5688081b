"""A controllable clock for the ledger (ns): tests move it, never the wall clock."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)

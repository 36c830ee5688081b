"""The gateway's group committer: a blocking ledger gets one commit at a time; a backend
that batches on its own (a region node's step) gets every request at once — a lock held
across its awaited commit admitted one request per step and fsync (issue 16)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from load.groupcommit import GroupCommitter


class InFlight:
    """Counts the commits running at once (from the loop or from worker threads)."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._guard = threading.Lock()

    def enter(self) -> None:
        with self._guard:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._guard:
            self.now -= 1


def most_in_flight(commit: Callable[[list[int]], Any], seen: InFlight) -> int:
    """Five concurrent one-item requests through a committer without group commit."""
    async def run() -> list[list[int]]:
        committer: GroupCommitter[int, int] = GroupCommitter(commit, enabled=False)
        return await asyncio.gather(*(committer.submit([i]) for i in range(5)))

    assert asyncio.run(run()) == [[i] for i in range(5)]
    return seen.most


def test_requests_to_a_backend_that_batches_itself_are_in_flight_together() -> None:
    seen = InFlight()

    async def commit(items: list[int]) -> list[int]:
        seen.enter()
        await asyncio.sleep(0.01)
        seen.leave()
        return items

    assert most_in_flight(commit, seen) == 5


def test_a_blocking_ledger_gets_one_commit_at_a_time() -> None:
    seen = InFlight()

    def commit(items: list[int]) -> list[int]:
        seen.enter()
        time.sleep(0.01)
        seen.leave()
        return items

    assert most_in_flight(commit, seen) == 1

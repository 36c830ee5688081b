"""The gateway's group committer: a blocking ledger gets one commit at a time; a backend
that batches on its own (a region node's step) gets every request at once — a lock held
across its awaited commit admitted one request per step and fsync (issue 16)."""

from __future__ import annotations

import asyncio
import threading
import time

from load.groupcommit import GroupCommitter


def test_requests_to_a_backend_that_batches_itself_are_in_flight_together() -> None:
    inside = most = 0

    async def commit(items: list[int]) -> list[int]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        return items

    async def run() -> list[list[int]]:
        committer: GroupCommitter[int, int] = GroupCommitter(commit, enabled=False)
        return await asyncio.gather(*(committer.submit([i]) for i in range(5)))

    assert asyncio.run(run()) == [[i] for i in range(5)]
    assert most == 5


def test_a_blocking_ledger_gets_one_commit_at_a_time() -> None:
    inside = most = 0
    guard = threading.Lock()

    def commit(items: list[int]) -> list[int]:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)
        with guard:
            inside -= 1
        return items

    async def run() -> list[list[int]]:
        committer: GroupCommitter[int, int] = GroupCommitter(commit, enabled=False)
        return await asyncio.gather(*(committer.submit([i]) for i in range(5)))

    assert asyncio.run(run()) == [[i] for i in range(5)]
    assert most == 1

"""Group commit: many concurrent requests, one ledger batch.

A durable commit costs one fsync whatever its size, so the gateway's throughput lever is to
hold a request for at most `max_wait` seconds while others arrive and commit them together
(up to `max_batch` transfers). A request's transfers are never split across batches, and a
request whose last transfer is LINKED (an open chain) commits alone, so merging requests
never changes any request's results.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    items: Sequence[Item]
    alone: bool
    future: asyncio.Future[list[Result]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter(Generic[Item, Result]):
    """Queues requests and commits them in batches through `commit`.

    `commit` is either a coroutine function (a region node answers asynchronously) or a
    blocking function (a local SQLite ledger), which then runs in a worker thread.
    """

    def __init__(
        self,
        commit: Callable[[list[Item]], list[Result]] | Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        max_batch: int = 8190,
        max_wait: float = 0.002,
        enabled: bool = True,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.enabled = enabled
        self._queue: asyncio.Queue[_Pending[Item, Result]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        """One blocking commit at a time (a `Ledger` is one writer). A coroutine `commit`
        answers asynchronously and merges concurrent calls itself (a region node's step):
        holding a lock across it would admit one request per step and fsync."""
        self._batches_itself = inspect.iscoroutinefunction(commit)
        self._on_batch = on_batch

    async def submit(self, items: Sequence[Item], *, alone: bool = False) -> list[Result]:
        if not items:
            return []
        if not self.enabled or len(items) >= self.max_batch:
            if self._batches_itself:  # no lock: the backend merges concurrent requests on its own
                return await self._run([list(items)])
            async with self._lock:
                return await self._run([list(items)])
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        pending: _Pending[Item, Result] = _Pending(items, alone)
        await self._queue.put(pending)
        return await pending.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        carry: _Pending[Item, Result] | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            group = [first]
            size = len(first.items)
            if not first.alone:
                deadline = asyncio.get_running_loop().time() + self.max_wait
                while size < self.max_batch:
                    timeout = deadline - asyncio.get_running_loop().time()
                    try:
                        nxt = queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(queue.get(), timeout)
                    except (TimeoutError, asyncio.QueueEmpty):
                        break
                    if nxt.alone or size + len(nxt.items) > self.max_batch:
                        carry = nxt
                        break
                    group.append(nxt)
                    size += len(nxt.items)
            try:
                async with self._lock:
                    results = await self._run([list(p.items) for p in group])
            except Exception as e:  # every waiter learns the commit failed
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            offset = 0
            for p in group:
                if not p.future.done():
                    p.future.set_result(results[offset : offset + len(p.items)])
                offset += len(p.items)

    async def _run(self, parts: list[list[Item]]) -> list[Result]:
        merged = [item for part in parts for item in part]
        self._on_batch(len(merged))
        if inspect.iscoroutinefunction(self._commit):
            return await self._commit(merged)  # type: ignore[no-any-return]
        return await asyncio.get_running_loop().run_in_executor(None, self._commit, merged)  # type: ignore[arg-type]

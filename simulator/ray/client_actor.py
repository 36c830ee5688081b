"""The client actor: one region's clients of a Ray run, under the shared client rules.

It replays the region's share of the plan: each window's operations (the scenario's
`batch_ms`, at least `min_batch_ms`) go as one batch at the window's end, with a timeout.
What to do with a reply, a timeout or an UNAVAILABLE row is `simulator.clients.ClientBook`
— the deterministic runtime's clients follow the very same book — so the two histories
mean the same. A region that is dark gives no answer at all: the client waits out its
timeout, as it would for a data centre without power.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from replication.outcomes import EXISTS_CODE
from simulator.clients import RETRY_BACKOFF_S, Attempt, ClientBook, ClientRules
from simulator.clock import S
from simulator.ray.session import current_node_id
from simulator.ray.timebase import Timebase, swallow, wall_ns

PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class ClientSpec:
    region: int
    ops: np.ndarray  # global op indices of this region's clients, in plan order
    t: np.ndarray  # planned invoke times (scenario s)
    kind: np.ndarray
    rows: np.ndarray  # TRANSFER_DTYPE row per op (unused for reads)
    read_ids: np.ndarray  # account read, per op (reads only)
    starts: np.ndarray  # batch start offsets into `ops`
    batch_window: float
    duration: float
    end: float
    timeout_s: float
    rules: ClientRules
    time_scale: float
    duplicate: bool


class ClientActor:
    """A region's clients: submit each window's batch, follow the book, record history."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.book = ClientBook(spec.kind, spec.rows, spec.read_ids, spec.rules, on_acked=self._acked)
        self.regions: list[Any] = []
        self.tb = Timebase(0, spec.time_scale)
        self.tasks: set[asyncio.Task[None]] = set()
        self.lateness: list[float] = []
        self.dup_exists = 0
        self.dup_ok = 0
        self.pid = os.getpid()
        self.acked_by_second: dict[int, int] = {}

    async def ping(self) -> dict[str, Any]:
        return {"pid": self.pid, "node": current_node_id()}

    async def run(self, regions: list[Any], t0_ns: int, controller: Any = None) -> dict[str, Any]:
        sp = self.spec
        self.regions, self.tb = regions, Timebase(t0_ns, sp.time_scale)
        pusher = asyncio.ensure_future(self._push_progress(controller)) if controller is not None else None
        n = len(sp.ops)
        starts = sp.starts.tolist()
        w = sp.batch_window
        for k, a in enumerate(starts):
            b = starts[k + 1] if k + 1 < len(starts) else n
            at = min((np.floor(sp.t[a] / w) + 1) * w, sp.duration)
            await self.tb.sleep_until(at)
            self.lateness.append(self.tb.now_s() - at)
            self._spawn(self._attempt(np.arange(a, b), sp.region))
        await self.tb.sleep_until(sp.end)
        for task in list(self.tasks):
            task.cancel()
        if pusher is not None:
            pusher.cancel()
        self.book.finish(sp.end, np.full(n, sp.region))
        late = np.asarray(self.lateness) if self.lateness else np.zeros(1)
        return {"ops": sp.ops, "state": self.book.st, "submit_late_p99_s": float(np.percentile(late, 99)),
                "submit_late_max_s": float(late.max()), "batches": len(starts),
                "attempts_made": self.book.next_aid - 1, "dup_exists": self.dup_exists, "dup_ok": self.dup_ok,
                "pid": self.pid}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _acked(self, now_s: float, n: int) -> None:
        sec = max(0, int(now_s))
        self.acked_by_second[sec] = self.acked_by_second.get(sec, 0) + n

    async def _push_progress(self, controller: Any) -> None:
        """Acknowledged transfers per completion second, for a live view (`drill`)."""
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            if self.acked_by_second:
                batch, self.acked_by_second = self.acked_by_second, {}
                asyncio.ensure_future(swallow(controller.client_progress.remote(self.spec.region, batch)))

    async def _attempt(self, ops: np.ndarray, target: int) -> None:
        sp = self.spec
        a: Attempt = self.book.attempt(ops, target)
        deadline = wall_ns() + int(sp.timeout_s * sp.time_scale * S)
        handle = self.regions[target]
        ref = handle.submit.remote(a.rows, a.read_ids)
        if sp.duplicate:  # the same batch again, on purpose: the node must answer EXISTS
            self._spawn(self._duplicate(handle.submit.remote(a.rows, a.read_ids), a.transfers, deadline))
        reply = await self._answer(ref, deadline)
        if reply is None:
            delay = (deadline - wall_ns()) / S
            if delay > 0:
                await asyncio.sleep(delay)
            retry = self.book.timeout(a.aid, self.tb.now_s())
            if retry is not None:
                self._spawn(self._attempt(*retry))
            return
        again = self.book.reply(a.aid, reply[0], self.tb.now_s())
        if again is not None and len(again):
            self._spawn(self._retry(again, target))

    @staticmethod
    async def _answer(ref: Any, deadline: int) -> Any:
        try:
            return await asyncio.wait_for(ref, max(0.0, (deadline - wall_ns()) / S))
        except Exception:  # timeout, or the region's process died under the call
            return None

    async def _duplicate(self, ref: Any, transfers: np.ndarray, deadline: int) -> None:
        reply = await self._answer(ref, deadline)
        if reply is not None:
            codes = reply[0].astype(np.int32)
            self.book.duplicate_reply(transfers, reply[0])
            self.dup_exists += int((codes == EXISTS_CODE).sum())
            self.dup_ok += int((codes == 0).sum())

    async def _retry(self, ops: np.ndarray, r: int) -> None:
        await asyncio.sleep(RETRY_BACKOFF_S * self.spec.time_scale)
        live = self.book.still_open(ops)
        if len(live):
            await self._attempt(live, r)


__all__ = ["ClientActor", "ClientSpec"]

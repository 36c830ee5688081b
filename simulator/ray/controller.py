"""The chaos controller of a Ray run: the fault schedule on the wall clock, and telemetry.

It walks the schedule (fault starts and ends, in fault order at equal times, then a scrub
after the load), turns each into actions with the shared `simulator.faults`
dispatcher — the deterministic runtime's own — and carries them out with actor calls:
a crash is a real `ray.kill` of the region's process (Ray brings a new, dormant process
back; the controller `start`s it when the fault is over, and it replays its store and
catches up); a node loss switches the region's whole node off through the driver's power
switch (`simulator.ray.cluster`) and on again when the fault is over — Ray restarts the
region's actor on the new node, the only one with the region's resource (a node lost for
good, `returns = false`, stays off and its region is never started again); a pause holds the
region's inbox, a clock-skew changes its clock's rate, a corruption damages stored records,
link faults go to every region's network layer.
It also collects the telemetry regions push every 250 ms (lag samples, reports,
counters), so a killed region loses at most that much of it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from chaos import Fault
from simulator.clock import ClockState, S
from simulator.faults import ClockRate, Corrupt, Crash, FaultDispatcher, Fence, LinkFaults, Pause, Restart
from simulator.metrics import Histogram
from simulator.ray.region_actor import RegionSpec
from simulator.ray.session import current_node_id
from simulator.ray.timebase import Timebase, swallow, wall_ns
from simulator.runlog import RunLog, report_event

STATUS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ControllerSpec:
    names: tuple[str, ...]
    faults: tuple[Fault, ...]
    duration: float
    time_scale: float
    seed: int
    offsets_ns: tuple[int, ...]
    regions: tuple[RegionSpec, ...]  # what each region needs at every (re)start


class Controller:
    """Applies the fault schedule on the wall clock and collects the regions' telemetry."""

    def __init__(self, spec: ControllerSpec) -> None:
        self.spec = spec
        self.names = list(spec.names)
        self.tb = Timebase(0, spec.time_scale)
        self.regions: list[Any] = []
        self.down: set[int] = set()
        self.clocks = [ClockState(o) for o in spec.offsets_ns]
        self.incarnation = [0] * len(spec.names)
        self.pids: list[int] = [0] * len(spec.names)
        self.log = RunLog()
        self.dispatch = FaultDispatcher(self.names, list(spec.faults), self.log)
        self.crashes: list[dict[str, Any]] = []
        self.lag: list[np.ndarray] = []
        self.lag_at: list[tuple[np.ndarray, int, np.ndarray]] = []  # (scenario ns, region, lag ns)
        self.transit: dict[int, dict[int, int]] = {}  # second -> region -> money in transit
        self.acked_per_s: dict[int, dict[int, int]] = {}  # region -> second -> acked transfers (live view)
        self.lag_max_ms: dict[int, dict[int, float]] = {}  # receiving region -> second -> worst lag (live view)
        self.call_us = Histogram()
        self.loop_lag_us = Histogram()
        self.counters = dict.fromkeys(("sent", "dropped", "bytes", "handled", "calls"), 0)
        self.all_pids: set[int] = {os.getpid()}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.watchers: set[asyncio.Future[Any]] = set()  # open-ended watches, cancelled at collect
        self.errors: list[str] = []
        self.power_q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.power_waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.node_off: dict[int, asyncio.Task[Any]] = {}  # region -> its power-off, awaited before power-on
        # region -> the watch for Ray's restart of its killed process, awaited before its start:
        # under load Ray takes longer than a short fault lasts, and a restarting actor's calls fail
        self.coming_back: dict[int, asyncio.Task[Any]] = {}
        # regions restarted whose catch-up is not yet seen: the driver's settle waits for them,
        # or the run could end between a region catching up and this controller seeing it
        self.rejoining: set[int] = set()
        self.power_ids = itertools.count()

    async def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "node": current_node_id()}

    async def rejoining_regions(self) -> list[str]:
        return [self.names[r] for r in sorted(self.rejoining)]

    # ------------------------------------------------------------------ telemetry
    async def telemetry(self, t: dict[str, Any]) -> None:
        if len(t["lag_ns"]):
            self.lag.append(t["lag_ns"])
            self.lag_at.append((t["lag_t_ns"], t["region"], t["lag_ns"]))
            worst = self.lag_max_ms.setdefault(t["region"], {})
            for sec, ns in zip((t["lag_t_ns"] // S).tolist(), t["lag_ns"].tolist(), strict=True):
                worst[sec] = max(worst.get(sec, 0.0), ns / 1e6)
        for sec, value in t["transit"]:
            self.transit.setdefault(sec, {})[t["region"]] = value
        for at, target in sorted(t["detections"]):
            if self.dispatch.detected(target, t["region"], at):  # the first peer to suspect it
                for h in self.regions:
                    asyncio.ensure_future(swallow(h.unwatch.remote(target)))
        self.call_us.record(t["call_ns"] / 1000)
        self.loop_lag_us.record(np.maximum(t["loop_lag_ns"], 0) / 1000)
        self.log.reports.extend(t["reports"])
        for k in self.counters:
            self.counters[k] += t[k]

    async def take_telemetry(self, items: list[dict[str, Any]]) -> None:
        for t in items:
            await self.telemetry(t)

    async def client_progress(self, region: int, acked: dict[int, int]) -> None:
        mine = self.acked_per_s.setdefault(region, {})
        for sec, n in acked.items():
            mine[sec] = mine.get(sec, 0) + n

    # ------------------------------------------------------------------ the power line (driver side)
    async def power_request(self) -> dict[str, Any] | None:
        """The next node to switch off or on (`simulator.ray.cluster.PowerLine` long-polls);
        None: the run is over."""
        return await self.power_q.get()

    async def power_done(self, req_id: int, info: dict[str, Any]) -> None:
        fut = self.power_waiting.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(info)

    async def _power(self, op: str, r: int) -> dict[str, Any]:
        req_id = next(self.power_ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.power_waiting[req_id] = fut
        await self.power_q.put({"id": req_id, "op": op, "region": self.names[r]})
        return await fut

    # ------------------------------------------------------------------ the schedule
    def _start_args(self, r: int) -> tuple[Any, ...]:
        import ray

        me = ray.get_runtime_context().current_actor
        return (self.spec.regions[r], self.regions, me, self.tb.t0_ns, list(self.dispatch.active), self.clocks[r],
                self.incarnation[r])

    async def start_all(self, regions: list[Any], t0_ns: int, pids: list[int]) -> list[dict[str, Any]]:
        self.regions, self.tb, self.pids = regions, Timebase(t0_ns, self.spec.time_scale), list(pids)
        self.all_pids.update(pids)
        return list(await asyncio.gather(*(regions[r].start.remote(*self._start_args(r))
                                           for r in range(len(regions)))))

    async def run(self) -> None:
        """The schedule: fault starts and ends (in fault order at equal times), scrubs."""
        sp = self.spec
        events: list[tuple[float, int, str, int]] = []
        for i, f in enumerate(sp.faults):
            events.append((f.at, 2 * i, "start", i))
            events.append((min(f.end(), sp.duration), 2 * i + 1, "end", i))
        events.append((sp.duration + 1.0, 1 << 30, "scrub", -1))  # as the deterministic runtime
        for at, _, what, i in sorted(events):
            await self.tb.sleep_until(at)
            try:
                if what == "start":
                    await self._act(self.dispatch.start(i, self.tb.now_s()))
                    self._watch_for_detection()
                elif what == "end":
                    await self._act(self.dispatch.end(i, self.tb.now_s()))
                else:
                    for r in range(len(self.regions)):
                        if r not in self.down:
                            asyncio.ensure_future(swallow(self.regions[r].scrub.remote()))
            except Exception as e:  # keep the schedule going; the run reports it
                self.errors.append(f"{what} {i}: {e!r}")
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        """A fault's task that failed is in the run's result (`controller_errors`), not lost
        as an asyncio "exception was never retrieved" line in a worker's log."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(f"{getattr(task.get_coro(), '__qualname__', 'fault task')}: {task.exception()!r}")

    def _watch_for_detection(self) -> None:
        for target in self.dispatch.watching:
            for p, h in enumerate(self.regions):
                if p != target and p not in self.down:
                    asyncio.ensure_future(swallow(h.watch.remote(target)))

    async def _act(self, actions: list[Any]) -> None:
        import ray

        for a in actions:
            t = type(a)
            r = getattr(a, "region", -1)
            if t is Fence and r not in self.down:
                st = await _status(self.regions[r])
                if st is not None and st.get("lease_until"):
                    # the cut-off home stops writing when its lease runs out (on its own clock)
                    self.dispatch.fenced(r, st["now_s"] + max(0, st["lease_until"] - st["clock"]) / S)
            elif t is Crash:
                self.down.add(r)
                kind = "node-loss" if a.node else "crash"
                at = next(f.at for f in self.dispatch.active if f.kind == kind and f.target[0] == self.names[r])
                record = {"region": self.names[r], "fault": kind, "at": at, "killed_at": self.tb.now_s(),
                          "old_pid": self.pids[r], "killed_wall_ns": wall_ns()}
                self.crashes.append(record)
                if a.node and r in self.dispatch.gone:
                    record["returns"] = False
                    self.node_off[r] = self._spawn(self._node_gone(r, record))
                elif a.node:
                    self.node_off[r] = self._spawn(self._node_off(r, record))
                else:
                    ray.kill(self.regions[r], no_restart=False)
                    self.coming_back[r] = self._spawn(self._watch_restart(r, record))
            elif t is Restart:
                self.incarnation[r] += 1
                self._spawn(self._node_back(r) if a.node else self._restart(r))
            elif t is Pause:
                await self.regions[r].pause.remote(a.paused)
            elif t is ClockRate:
                self.clocks[r] = self.clocks[r].rebase(self.tb.now_ns(), a.rate)
                await self.regions[r].set_clock.remote(self.clocks[r])
            elif t is Corrupt:
                await self.regions[r].corrupt.remote(a.records, self.spec.seed)
                self._spawn(self._scrub_later(r))
            elif t is LinkFaults:
                for p, h in enumerate(self.regions):
                    if p not in self.down:
                        asyncio.ensure_future(swallow(h.set_faults.remote(list(a.active))))

    async def _scrub_later(self, r: int) -> None:
        await asyncio.sleep(0.2 * self.spec.time_scale)
        await swallow(self.regions[r].scrub.remote())

    async def _node_off(self, r: int, record: dict[str, Any]) -> None:
        """Switch the region's node off: every process on it dies at once, its actor with them."""
        info = await self._power("off", r)
        record["power_off"] = info
        if not info.get("ok"):
            self.errors.append(f"node-loss {self.names[r]}: power off failed: {info.get('error')}")

    async def _node_gone(self, r: int, record: dict[str, Any]) -> None:
        """Switch the region's node off for good. Nothing starts the region again; whether
        Ray brings its (dormant) process back anyway, and where, is recorded: pinned to its
        node's resource it cannot (no node has it), unpinned it lands on another node."""
        await self._node_off(r, record)
        # not one of `tasks`, which the schedule waits for: pinned, this watch never ends
        self.watchers.add(asyncio.ensure_future(self._watch_restart(r, record)))

    async def _node_back(self, r: int) -> None:
        """Fault over: the node back on; Ray restarts the region's actor there (dormant), then
        it starts as after a crash (replay from its store, catch up)."""
        off = self.node_off.pop(r, None)
        if off is not None:
            await asyncio.gather(off, return_exceptions=True)
        record = next(c for c in reversed(self.crashes) if c["region"] == self.names[r])
        record["power_on_at"] = self.tb.now_s()
        info = await self._power("on", r)
        record["power_on"] = info
        if not info.get("ok"):
            self.errors.append(f"node-loss {self.names[r]}: power on failed: {info.get('error')}")
            return
        await self._watch_restart(r, record)
        await self._restart(r)

    async def _watch_restart(self, r: int, record: dict[str, Any]) -> None:
        """When does Ray have the killed region's process back (dormant)? `_restart` waits for it."""
        for _ in range(600):
            try:
                info = await asyncio.wait_for(self.regions[r].ping.remote(), 5.0)
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if info["pid"] != record["old_pid"]:
                record["new_pid"] = info["pid"]
                record["new_node"] = info["node"]
                self.all_pids.add(info["pid"])
                record["process_back_wall_s"] = round((wall_ns() - record["killed_wall_ns"]) / S, 3)
                return
            await asyncio.sleep(0.05)

    async def _restart(self, r: int) -> None:
        """Fault over: start the new incarnation (replay from its store), then time its catch-up."""
        self.rejoining.add(r)
        try:
            await self._rejoin(r)
        finally:
            self.rejoining.discard(r)

    async def _rejoin(self, r: int) -> None:
        record = next(c for c in reversed(self.crashes) if c["region"] == self.names[r])
        record["restart_at"] = self.tb.now_s()
        back = self.coming_back.pop(r, None)
        if back is not None:
            await asyncio.gather(back, return_exceptions=True)
        began = wall_ns()
        info = await self.regions[r].start.remote(*self._start_args(r))
        self.down.discard(r)
        self.pids[r] = info["pid"]
        self.all_pids.add(info["pid"])
        record.update(replayed_records=info["records"], replay_s=round(info["replay_s"], 4),
                      started_wall_s=round((wall_ns() - began) / S, 3), up_at=self.tb.now_s())
        await swallow(self.regions[r].set_faults.remote(list(self.dispatch.active)))
        # caught up = holds every entry its peers held when it came back
        peers = [p for p in range(len(self.names)) if p != r and p not in self.down]
        if not peers:
            return  # nobody to catch up from
        answered: list[dict[str, Any]] = []
        while True:  # a status call times out under load: ask again (settle waits for this)
            answered = [s for s in await asyncio.gather(*(_status(self.regions[p]) for p in peers)) if s]
            if answered:
                break
            await asyncio.sleep(0.05)  # a peer that died answers at once: no busy loop
        target = np.max([s["heads"] for s in answered], axis=0)
        while True:
            st = await _status(self.regions[r])
            if st is not None and np.all(np.asarray(st["heads"]) >= target):
                record["caught_up_at"] = self.tb.now_s()
                self.dispatch.rejoined(r, record["caught_up_at"])
                record["catch_up_wall_s"] = round((wall_ns() - began) / S, 3)
                record["down_wall_s"] = round((wall_ns() - record["killed_wall_ns"]) / S, 3)
                return
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ results
    def _timeline_since(self, seen: tuple[int, int]) -> list[dict[str, Any]]:
        events = list(self.log.timeline[seen[0]:])
        for t, r, kind, detail in self.log.reports[seen[1]:]:
            ev = report_event(t, self.names[r], kind, detail)
            if ev is not None:
                events.append(ev)
        return sorted(events, key=lambda e: e["t"])

    async def live(self, second: int, seen: tuple[int, int]) -> dict[str, Any]:
        """What happened in scenario second `second` (acked, worst lag per region), and the
        timeline events that arrived since `seen` (counts of timeline entries and reports
        already handed out: both lists only grow), for a live display."""
        return {"t": second + 1,
                "throughput": {n: self.acked_per_s.get(r, {}).get(second, 0) for r, n in enumerate(self.names)},
                "lag_ms": {n: self.lag_max_ms.get(r, {}).get(second) for r, n in enumerate(self.names)},
                "events": self._timeline_since(seen), "seen": (len(self.log.timeline), len(self.log.reports))}

    async def collect(self) -> dict[str, Any]:
        for t in [*self.tasks, *self.watchers]:
            t.cancel()
        await self.power_q.put(None)  # the driver's power line can stop
        return {"fault_log": self.log.faults, "crashes": [{k: v for k, v in c.items() if not k.endswith("_ns")}
                                                          for c in self.crashes],
                "lag": self.lag, "lag_at": self.lag_at, "transit": self.transit, "timeline": self.log.timeline,
                "reports": self.log.reports, "counters": self.counters,
                "pids": sorted(self.all_pids), "errors": self.errors,
                "link_call_ms": self.call_us.summary_ms(), "event_loop_lag_ms": self.loop_lag_us.summary_ms()}


async def _status(handle: Any) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(handle.status.remote(), STATUS_TIMEOUT_S)  # type: ignore[no-any-return]
    except Exception:
        return None


__all__ = ["Controller", "ControllerSpec"]

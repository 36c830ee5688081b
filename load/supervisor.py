"""Restart a region process that exits when nobody asked it to.

A region stops itself when it can no longer keep its promises (a dead commit loop, a disk
that stays full: `region.driver`), and a process can die of anything else; either way its
peers carry on and its clients get 503 until it is back. The supervisor brings it back:
it polls the cluster's processes and restarts any that exited while not *expected* down
(`Cluster.kill`, the chaos driver's deliberate kill -9, and `stop_all` mark theirs).
A region that keeps dying (`max_restarts` within `window` seconds) is left down and
reported, not restarted in a tight loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Supervised(Protocol):
    """What the supervisor needs from a cluster (`load.cluster.Cluster`): processes by key
    (a region's index, or (region, k) for one of its HTTP workers)."""

    def exited_unexpectedly(self) -> list[tuple[Any, int]]: ...

    def start(self, key: Any) -> None: ...

    def region_name(self, key: Any) -> str: ...


class Supervisor(threading.Thread):
    def __init__(self, cluster: Supervised, *, poll: float = 0.2, max_restarts: int = 5, window: float = 60.0) -> None:
        super().__init__(daemon=True, name="region-supervisor")
        self.cluster = cluster
        self.poll = poll
        self.max_restarts = max_restarts
        self.window = window
        self.stopping = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.gave_up: set[Any] = set()
        self._recent: dict[Any, deque[float]] = {}
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopping.wait(self.poll):
            for region, code in self.cluster.exited_unexpectedly():
                if region in self.gave_up:
                    continue
                self._restart(region, code)

    def _restart(self, region: Any, code: int) -> None:
        now = time.monotonic()
        recent = self._recent.setdefault(region, deque())
        while recent and now - recent[0] > self.window:
            recent.popleft()
        name = self.cluster.region_name(region)
        if len(recent) >= self.max_restarts:
            self.gave_up.add(region)
            log.error("region %s exited with %d, its %d restart in %.0f s: left down", name, code,
                      len(recent) + 1, self.window)
            self.events.append({"t": round(now - self._t0, 3), "region": name, "event": f"exited ({code}), left down"})
            return
        recent.append(now)
        log.warning("region %s exited unexpectedly with %d: restarting it", name, code)
        try:
            self.cluster.start(region)
        except Exception as e:  # a failed restart is retried at the next poll
            log.error("restarting region %s failed: %s", name, e)
            return
        self.events.append({"t": round(now - self._t0, 3), "region": name,
                            "event": f"exited unexpectedly ({code}), restarted by the supervisor"})

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=5)


__all__ = ["Supervised", "Supervisor"]

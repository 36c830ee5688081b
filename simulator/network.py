"""The simulated WAN: per-pair latency, jitter, bandwidth, and the faults chaos puts on it.

Links are FIFO (like a TCP connection) unless a `reorder` fault is active on them;
bandwidth is a per-link serialisation queue. Partitions, loss, duplication, latency
spikes and reordering are recomputed from the set of active faults whenever it changes,
so overlapping faults compose. All randomness comes from the run's generator.
"""

from __future__ import annotations

import numpy as np

from chaos import Fault, blocked_links, links_of

MS = 1_000_000


class Network:
    def __init__(self, rtt_ms: list[list[float]], jitter_ms: float, bandwidth_mbps: float,
                 rng: np.random.Generator) -> None:
        self.n = len(rtt_ms)
        self.one_way = [[int(rtt_ms[i][j] * MS / 2) for j in range(self.n)] for i in range(self.n)]
        self.jitter = jitter_ms * MS
        self.ns_per_byte = 8_000.0 / bandwidth_mbps if bandwidth_mbps > 0 else 0.0
        self.rng = rng
        self.free_at = [[0] * self.n for _ in range(self.n)]
        self.last_arrival = [[0] * self.n for _ in range(self.n)]
        self.regions: list[str] = []
        self.active: list[Fault] = []
        self._recompute()
        self.sent = 0
        self.dropped = 0
        self.bytes = 0
        self._jit = np.zeros(0)
        self._uni = np.zeros(0)
        self._ji = 0
        self._ui = 0

    def set_faults(self, regions: list[str], active: list[Fault]) -> None:
        self.regions = regions
        self.active = list(active)
        self._recompute()

    def _recompute(self) -> None:
        n = self.n
        self.blocked = [[False] * n for _ in range(n)]
        self.extra = [[0] * n for _ in range(n)]
        self.loss = [[0.0] * n for _ in range(n)]
        self.dup = [[0.0] * n for _ in range(n)]
        self.reorder = [[0] * n for _ in range(n)]
        for f in self.active:
            if f.kind.startswith("partition"):
                for i, j in blocked_links(f, self.regions):
                    self.blocked[i][j] = True
            elif f.kind in ("latency", "loss", "duplicate", "reorder"):
                for i, j in links_of(f, self.regions):
                    if f.kind == "latency":
                        self.extra[i][j] += int(f.param("extra_ms") * MS)
                    elif f.kind == "loss":
                        self.loss[i][j] = 1 - (1 - self.loss[i][j]) * (1 - f.param("p"))
                    elif f.kind == "duplicate":
                        self.dup[i][j] = max(self.dup[i][j], f.param("p"))
                    else:
                        self.reorder[i][j] = max(self.reorder[i][j], int(f.param("extra_ms") * MS))

    def _jitter(self) -> float:
        if self._ji >= len(self._jit):
            self._jit = self.rng.exponential(1.0, 4096)
            self._ji = 0
        self._ji += 1
        return float(self._jit[self._ji - 1])

    def _uniform(self) -> float:
        if self._ui >= len(self._uni):
            self._uni = self.rng.random(4096)
            self._ui = 0
        self._ui += 1
        return float(self._uni[self._ui - 1])

    def transmit(self, i: int, j: int, size: int, now: int) -> list[int]:
        """Arrival times of a message sent now from i to j: [], [t] or [t, t2] (duplicated)."""
        self.sent += 1
        self.bytes += size
        if self.blocked[i][j] or (self.loss[i][j] and self._uniform() < self.loss[i][j]):
            self.dropped += 1
            return []
        start = max(now, self.free_at[i][j])
        tx = int(size * self.ns_per_byte)
        self.free_at[i][j] = start + tx
        arrival = start + tx + self.one_way[i][j] + self.extra[i][j] + int(self._jitter() * self.jitter)
        if self.reorder[i][j]:
            arrival += int(self._uniform() * self.reorder[i][j])
        else:
            arrival = max(arrival, self.last_arrival[i][j])
            self.last_arrival[i][j] = arrival
        out = [arrival]
        if self.dup[i][j] and self._uniform() < self.dup[i][j]:
            out.append(arrival + int(self._uniform() * 5 * MS))
        return out

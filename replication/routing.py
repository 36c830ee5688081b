"""The versioned routing table: unit -> home region, with epochs and fork points.

A table is immutable; a promotion makes a new one with `version + 1`. `forks` records,
for each demotion, the last sequence number of the old home's log that the new
configuration kept: that home's entries after it, written under an older version, are
*void* (lost, reported as RPO) and never merged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fork:
    origin: int
    kept_through: int  # last seq of `origin` kept
    version: int  # routing version that made the cut


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: int
    homes: tuple[int, ...]  # unit -> region index
    epochs: tuple[int, ...]  # unit -> epoch (bumped at each promotion)
    forks: tuple[Fork, ...] = ()

    @classmethod
    def initial(cls, n_units: int, n_regions: int) -> RoutingTable:
        """Units are spread round-robin over regions: unit u is homed at u mod R."""
        return cls(1, tuple(u % n_regions for u in range(n_units)), (1,) * n_units)

    def is_void(self, origin: int, seq: int, rv: int) -> bool:
        return any(f.origin == origin and seq > f.kept_through and rv < f.version for f in self.forks)

    def units_of(self, region: int) -> list[int]:
        return [u for u, h in enumerate(self.homes) if h == region]

    def required_heads(self, rv: int) -> dict[int, int]:
        """Entries written under version `rv` depend on these origins' prefixes."""
        need: dict[int, int] = {}
        for f in self.forks:
            if f.version <= rv:
                need[f.origin] = max(need.get(f.origin, 0), f.kept_through)
        return need

    def promote(self, moves: dict[int, int], kept: dict[int, int], version: int | None = None) -> RoutingTable:
        homes = list(self.homes)
        epochs = list(self.epochs)
        for unit, new_home in moves.items():
            homes[unit] = new_home
            epochs[unit] += 1
        v = self.version + 1 if version is None else version
        forks = self.forks + tuple(Fork(o, k, v) for o, k in sorted(kept.items()))
        return RoutingTable(v, tuple(homes), tuple(epochs), forks)


def preference(unit: int, n_regions: int) -> list[int]:
    """The unit's replica list, in promotion order: its initial home, then the next ones."""
    return [(unit + i) % n_regions for i in range(n_regions)]


def majority(n: int) -> int:
    return n // 2 + 1

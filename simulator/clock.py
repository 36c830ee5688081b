"""Region clocks as the runtimes model them: an offset from the start, a rate in a window.

A skewed region's clock is off from the start (offsets are never stepped mid-run: a
stepping clock defeats any lease, and NTP slews); a clock-skew fault changes its *rate*
for the fault's window. Both runtimes read node time through `ClockState.at`, so a skew
means the same thing in the deterministic simulator and on Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

S = 1_000_000_000
T0 = 1_700_000_000 * S
"""The node clocks' epoch: scenario time 0 reads as this on an unskewed region."""


@dataclass(frozen=True)
class ClockState:
    """A region's node clock: `T0 + offset + e0 + (scenario - v0) * rate` (ns)."""

    offset_ns: int = 0
    v0: int = 0
    e0: int = 0
    rate: float = 1.0

    def at(self, scenario_ns: int) -> int:
        return T0 + self.offset_ns + self.e0 + int((scenario_ns - self.v0) * self.rate)

    def rebase(self, scenario_ns: int, rate: float) -> ClockState:
        """The same clock from `scenario_ns` on, running at `rate`."""
        return ClockState(self.offset_ns, scenario_ns, self.e0 + int((scenario_ns - self.v0) * self.rate), rate)


__all__ = ["S", "T0", "ClockState"]

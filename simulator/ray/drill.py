"""`geoledger drill --runtime ray`: the drill's `Runtime` protocol on Ray.

A live runtime: it runs in real time and feeds the drill display one snapshot per
scenario second (acked writes per region, worst replication lag, events, the phase),
built with the drill's and report's own helpers from the same timeline dicts that end up
in `metrics.series.timeline`, so the live view and the final report cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from simulator.drill_view import Snapshot, phase_at
from simulator.ray.driver import run_scenario_ray
from simulator.run import write_outputs
from simulator.run_view import fault_windows, timeline_events
from simulator.scenario import Scenario


class RayRuntime:
    """`geoledger drill --runtime ray`: the drill's `Runtime` protocol (`simulator.drill`) on Ray.

    A live runtime: it runs in real time and feeds the drill display one snapshot per
    scenario second (acked writes per region, worst replication lag, events, the phase), built
    with the drill's and report's own helpers from the same timeline dicts that end up in
    `metrics.series.timeline`, so the live view and the final report cannot disagree.
    """

    name = "ray"
    live = True

    def __init__(self, address: str | None = None, time_scale: float = 1.0, **options: Any) -> None:
        self.address = address
        self.time_scale = time_scale
        self.options = options

    def run(self, scenario: Any, seed: int, out: Path, on_progress: Callable[[Any], None]) -> Path:
        live = _LiveDrillView(scenario, on_progress)
        sim, result = run_scenario_ray(scenario, seed, address=self.address, time_scale=self.time_scale,
                                       on_second=live.second, **self.options)
        write_outputs(sim, result, Path(out))
        return Path(out) / "result.json"


class _LiveDrillView:
    """Turns `on_second` views into `simulator.drill.Snapshot`s (phase, faults in force)."""

    def __init__(self, scenario: Scenario, on_progress: Callable[[Any], None]) -> None:
        self.s = scenario
        self.on_progress = on_progress
        self.timeline: list[dict[str, Any]] = []

    def _view(self, events: list[dict[str, Any]]) -> SimpleNamespace:
        """Just enough of a `simulator.report.RunView` for `fault_windows`, `timeline_events`
        and `simulator.drill.phase_at`, over the timeline recorded so far."""
        timeline = sorted(events, key=lambda e: e["t"])
        view = SimpleNamespace(series=lambda name: timeline if name == "timeline" else None,
                               regions=list(self.s.regions), duration=float(self.s.duration),
                               scenario={"chaos": [], "random_faults": 0}, metrics={}, notes=[])
        view.windows = fault_windows(view)  # type: ignore[arg-type]
        view.events = timeline_events(view)  # type: ignore[arg-type]
        return view

    def second(self, v: dict[str, Any]) -> None:
        self.timeline.extend(v["events"])
        view = self._view(self.timeline)
        new = self._view(v["events"]).events if v["events"] else []
        t = float(v["t"])
        faults = [f"{w.label} ({w.start:g}–{w.end:g} s)" for w in view.windows if w.start < t and w.end > t - 1]
        phase = phase_at(view, t - 1e-9)  # type: ignore[arg-type]
        self.on_progress(Snapshot(t=t, horizon=float(v["horizon"]), phase=phase, faults=faults,
                                  throughput=v["throughput"], lag_ms=v["lag_ms"], events=new))


__all__ = ["RayRuntime"]

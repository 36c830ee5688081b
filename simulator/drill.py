"""`geoledger drill`: rehearse a failover like an SRE would, with a pass/fail at the end.

A drill runs a scenario, shows live progress (phase, faults in force, throughput, lag),
then prints a runbook-style timeline — fault began, detected, promoted, writes resumed,
fenced, healed, rejoined — and the measured RTO and RPO against the scenario's ``[slo]``.
It exits non-zero when an SLO is missed or a promised invariant is violated, and can
write JUnit XML so a CI pipeline shows the drill as a test.

Why the runtime is a parameter: the deterministic runtime runs a whole scenario in a few
wall seconds on a virtual clock, so its "live" view is a paced replay of the run's
recorded outputs; a live runtime (Ray, later) runs in real time and calls ``on_progress``
as it goes. Both go through the same `Runtime` protocol and produce the same output
contract (result.json, history.jsonl, final_state.json), so the drill's verdict,
timeline, report and JUnit file are computed the same way for both. Add a runtime with
`register_runtime`.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from simulator.drill_view import ProgressFn, Snapshot, phase_at
from simulator.html import fmt_ms, fmt_num
from simulator.report import write_report
from simulator.run_view import Event, Incident, ReportError, RunView, SloCheck, load_run, runbook, slo_checks


class Runtime(Protocol):
    """Drives a scenario and writes the run outputs into ``out``.

    ``live`` runtimes call ``on_progress`` while they run; the others return when done and
    the drill replays snapshots derived from their outputs (`snapshots`).
    """

    name: str
    live: bool

    def run(self, scenario: Any, seed: int, out: Path, on_progress: ProgressFn) -> Path:
        """Run ``scenario`` (a `simulator.scenario.Scenario`) with ``seed``; return result.json's path."""
        ...


class DeterministicRuntime:
    """The virtual-clock simulator: whole run first, progress replayed from its outputs."""

    name = "deterministic"
    live = False

    def run(self, scenario: Any, seed: int, out: Path, on_progress: ProgressFn) -> Path:
        from simulator.run import run_scenario, write_outputs

        sim, result = run_scenario(scenario, seed)
        write_outputs(sim, result, out)
        return out / "result.json"


def _ray_runtime() -> Runtime:
    from simulator.ray import RayRuntime

    return RayRuntime(address=os.environ.get("RAY_ADDRESS"))  # type: ignore[return-value]


RUNTIMES: dict[str, Callable[[], Runtime]] = {"deterministic": DeterministicRuntime, "ray": _ray_runtime}


def register_runtime(name: str, factory: Callable[[], Runtime]) -> None:
    """Make ``--runtime NAME`` available (e.g. a Ray runtime, from its own module)."""
    RUNTIMES[name] = factory


def snapshots(view: RunView) -> Iterator[Snapshot]:
    """One snapshot per second of run time, derived from the outputs (for non-live runtimes)."""
    lag = view.series("replication_lag_ms")
    n = int(view.horizon + 0.999)
    lag_index: dict[int, int] = {}
    if lag is not None:
        for i, t in enumerate(lag["t"]):
            lag_index.setdefault(int(t), i)
    prev = -1.0
    for s in range(n):
        t = float(s + 1)
        tput = {}
        for name in view.regions:
            series = view.metrics["regions"][name]["acked_per_s"]
            tput[name] = int(series[s]) if s < len(series) else 0
        lag_now: dict[str, float | None] | None = None
        if lag is not None:
            at = lag_index.get(s)
            lag_now = {k: (v[at] if at is not None else None) for k, v in lag.items() if k != "t"}
        events = [e for e in view.events if prev < e.t <= t]
        faults = [f"{w.label} ({w.start:g}–{w.end:g} s)" for w in view.windows if w.start < t and w.end > s]
        yield Snapshot(t, view.horizon, phase_at(view, t - 1e-9), faults, tput, lag_now, events)
        prev = t


# ====================================================================== the terminal display
class Display:
    """A rich Live panel fed with snapshots; keeps the last few events on screen."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.events: list[Event] = []
        self.live = Live(self._render(None), console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> Display:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def status(self, text: str) -> None:
        self.live.update(Group(Text(self.title, style="bold"), Text(text, style="cyan")))

    def update(self, snap: Snapshot) -> None:
        self.events.extend(snap.events)
        self.live.update(self._render(snap))

    def _render(self, snap: Snapshot | None) -> Any:
        if snap is None:
            return Text(self.title, style="bold")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        bar = ProgressBar(total=snap.horizon, completed=min(snap.t, snap.horizon), width=40)
        grid.add_row("virtual time", Group(bar, Text(f"{snap.t:5.1f} / {snap.horizon:g} s")))
        style = "green" if snap.phase == "steady" else ("yellow" if snap.phase.startswith(("quiesce", "recover"))
                                                        else "red")
        grid.add_row("phase", Text(snap.phase, style=style))
        grid.add_row("faults in force", ", ".join(snap.faults) or "none")
        grid.add_row("acked writes/s", "  ".join(f"{k} {v:,}" for k, v in snap.throughput.items()))
        if snap.lag_ms is None:
            lag = Text("not recorded by this run (metrics.series.replication_lag_ms)", style="dim")
        else:
            lag = Text("  ".join(f"{k} {fmt_ms(v)} ms" if v is not None else f"{k} —" for k, v in snap.lag_ms.items()))
        grid.add_row("replication lag", lag)
        recent = self.events[-5:]
        grid.add_row("events", Text("\n".join(f"{e.t:8.3f}s  {e.event:<14} {e.region or '':<10} {e.detail}"
                                              for e in recent) or "—"))
        return Group(Text(self.title, style="bold"), grid)


# ====================================================================== the drill
@dataclass
class DrillOutcome:
    view: RunView
    incidents: list[Incident]
    checks: list[SloCheck]
    wall_s: float
    report: Path
    result_path: Path

    @property
    def violated(self) -> list[str]:
        return list(self.view.result["violated"])

    @property
    def missed(self) -> list[SloCheck]:
        return [c for c in self.checks if c.ok is False]

    @property
    def runtime_errors(self) -> list[str]:
        """What the runtime failed to do of the scenario (a region it could not restart, a
        node it could not power off): a drill whose faults did not happen as written
        proves nothing, whatever its invariants say."""
        return list((self.view.result.get("ray") or {}).get("controller_errors") or [])

    @property
    def passed(self) -> bool:
        return not self.violated and not self.missed and not self.runtime_errors

    def to_json(self) -> dict[str, Any]:
        r = self.view.result
        return {
            "scenario": r["scenario"]["name"], "mode": r["mode"], "seed": r["seed"], "runtime": r.get("runtime"),
            "passed": self.passed, "violated": self.violated, "runtime_errors": self.runtime_errors,
            "slo": [asdict(c) for c in self.checks],
            "incidents": [{"fault": inc.window.label, "at": inc.window.start, "end": inc.window.end,
                           "rto_s": inc.rto_s, "steps": [asdict(s) for s in inc.steps]} for inc in self.incidents],
            "report": self.report.name, "replay": r["replay"], "wall_s": round(self.wall_s, 3),
        }


def run_drill(scenario: Any, seed: int, out: Path, runtime: Runtime, console: Console,
              pace: float = 0.0) -> DrillOutcome:
    """Run, show progress, and evaluate. ``pace``: wall seconds to spend replaying the
    timeline of a non-live runtime (0: show the final state only)."""
    mode = scenario.mode_label
    title = f"drill {scenario.name} — {mode} — seed {seed} — runtime {runtime.name}"
    wall = time.perf_counter()
    with Display(console, title) as display:
        display.status("running on the virtual clock…" if not runtime.live else "starting…")
        result_path = runtime.run(scenario, seed, out, display.update)
        view = load_run(result_path)
        if not runtime.live:
            snaps = list(snapshots(view))
            delay = pace / len(snaps) if snaps and pace > 0 else 0.0
            for snap in snaps:
                display.update(snap)
                if delay:
                    time.sleep(delay)
    if not console.is_terminal:
        console.line()  # the last frame of a non-terminal Live ends without a newline
    wall = time.perf_counter() - wall
    report = write_report(result_path)
    return DrillOutcome(view, runbook(view), slo_checks(view), wall, report, result_path)


def print_outcome(console: Console, o: DrillOutcome) -> None:
    """The runbook, the SLO verdicts and the overall verdict, for the terminal."""
    r = o.view.result
    if not o.incidents:
        console.print("[dim]No faults injected: the drill measured steady-state SLOs only.[/dim]")
    for inc in o.incidents:
        rto = ""
        if inc.measured:
            rto = f" — RTO {fmt_num(inc.rto_s)} s" if inc.rto_s is not None else " — [red]never recovered[/red]"
        t = Table(title=f"runbook: {inc.window.label} at {inc.window.start:g} s{rto}", title_justify="left")
        t.add_column("t (s)", justify="right")
        t.add_column("since fault", justify="right")
        t.add_column("step")
        t.add_column("region")
        t.add_column("detail", overflow="fold")
        for s in inc.steps:
            if s.t is None:
                t.add_row("—", "", s.step, "", f"[dim]{s.detail}[/dim]")
            else:
                t.add_row(f"{s.t:.3f}", f"+{s.t - inc.window.start:.3f}", s.step, s.region or "", s.detail)
        console.print(t)
    t = Table(title="service levels", title_justify="left")
    for column in ("SLO", "target", "measured", "verdict", "note"):
        t.add_column(column, overflow="fold")
    for c in o.checks:
        v = "[dim]n/a[/dim]" if c.ok is None else ("[green]met[/green]" if c.ok else "[red]MISSED[/red]")
        t.add_row(c.name, c.target, c.measured, v, c.note)
    console.print(t)
    inv = r["invariants"]
    held = [k for k, v in inv.items() if v["ok"]]
    console.print(f"invariants held: {', '.join(held) or 'none'}")
    if o.view.not_promised_violations:
        console.print(f"[yellow]violated, not promised by {r['mode']}:[/yellow] "
                      f"{', '.join(o.view.not_promised_violations)}")
    if o.violated:
        console.print(f"[red bold]VIOLATED (promised): {', '.join(o.violated)}[/red bold]")
    for e in o.runtime_errors:
        console.print(f"[red bold]RUNTIME ERROR:[/red bold] {e}", soft_wrap=True, highlight=False)
    verdict = "[green bold]DRILL PASSED[/green bold]" if o.passed else "[red bold]DRILL FAILED[/red bold]"
    why = []
    if o.runtime_errors:
        why.append(f"the runtime did not carry out the scenario ({len(o.runtime_errors)} error(s))")
    if o.missed:
        why.append("SLO missed: " + ", ".join(c.name for c in o.missed))
    if o.violated:
        why.append("invariant violated: " + ", ".join(o.violated))
    console.print(f"{verdict} {'— ' + '; '.join(why) if why else ''}")
    console.print(f"report: {o.report}\nreplay: {r['replay']}", soft_wrap=True, highlight=False)


def junit_xml(o: DrillOutcome) -> str:
    """JUnit XML: one test case per invariant and per SLO, so CI shows what failed by name.
    Invariants a mode does not promise are reported as skipped when violated (visible, not red)."""
    r = o.view.result
    name = f"drill.{r['scenario']['name']}"
    suite = ET.Element("testsuite", name=name, time=f"{o.wall_s:.3f}")
    props = ET.SubElement(suite, "properties")
    for k, v in (("scenario", r["scenario"]["name"]), ("mode", r["mode"]), ("seed", r["seed"]),
                 ("runtime", r.get("runtime", "")), ("replay", r["replay"]), ("digest", r.get("digest", "")),
                 ("report", str(o.report))):
        ET.SubElement(props, "property", name=k, value=str(v))
    tests = failures = skipped = 0
    for inv, v in r["invariants"].items():
        case = ET.SubElement(suite, "testcase", classname=f"{name}.invariants", name=inv, time="0")
        tests += 1
        if not v["ok"] and v["promised"]:
            failures += 1
            f = ET.SubElement(case, "failure", type="InvariantViolated",
                              message=f"{inv} violated (promised by {r['mode']}); replay: {r['replay']}")
            f.text = json.dumps(v.get("first_violation"), indent=1, sort_keys=True, default=str)
        elif not v["ok"]:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{inv} violated, but {r['mode']} does not promise it")
    for c in o.checks:
        case = ET.SubElement(suite, "testcase", classname=f"{name}.slo", name=c.name, time="0")
        tests += 1
        if c.ok is False:
            failures += 1
            ET.SubElement(case, "failure", type="SloMissed",
                          message=f"{c.name}: measured {c.measured}, target {c.target}").text = c.note or None
        elif c.ok is None:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{c.measured}; target {c.target}")
    case = ET.SubElement(suite, "testcase", classname=f"{name}.runtime", name="scenario carried out", time="0")
    tests += 1
    if o.runtime_errors:
        failures += 1
        ET.SubElement(case, "failure", type="RuntimeError",
                      message=f"{len(o.runtime_errors)} fault action(s) failed").text = "\n".join(o.runtime_errors)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    out = ET.SubElement(suite, "system-out")
    out.text = runbook_text(o.incidents)
    root = ET.Element("testsuites", name="geoledger drill", tests=str(tests), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def runbook_text(incidents: Sequence[Incident]) -> str:
    lines = []
    for inc in incidents:
        lines.append(f"{inc.window.label} at {inc.window.start:g} s"
                     + (f" (RTO {fmt_num(inc.rto_s)} s)" if inc.measured else ""))
        for s in inc.steps:
            when = "      —    " if s.t is None else f"{s.t:9.3f} s"
            lines.append(f"  {when}  {s.step}: {s.region or ''} {s.detail}".rstrip())
    return "\n".join(lines) or "no faults injected"


def drill(scenario_name: str, *, seed: int | None = None, mode: str | None = None, runtime: str = "ray",
          out: str | Path | None = None, junit: str | Path | None = None, pace: float | None = None,
          console: Console | None = None) -> int:
    """The `geoledger drill` command: 0 passed, 1 SLO missed or invariant violated, 2 bad input."""
    from simulator.scenario import ScenarioError, load_scenario

    if console is None:
        console = Console()
        if not console.is_terminal:
            console.width = max(console.width, 120)  # CI logs: keep runbook rows on one line
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        scenario = load_scenario(scenario_name).with_mode(mode)
    except ScenarioError as e:
        err.print(f"[red]scenario error:[/red] {e}")
        return 2
    if runtime not in RUNTIMES:
        err.print(f"[red]unknown runtime {runtime!r}[/red] (available: {', '.join(RUNTIMES)})")
        return 2
    rt = RUNTIMES[runtime]()
    seed = scenario.seed if seed is None else seed
    label = scenario.mode_label
    out_dir = Path(out or f"runs/drill-{scenario.name}-{label}-{seed}")
    if pace is None:
        pace = 3.0 if console.is_terminal else 0.0
    try:
        outcome = run_drill(scenario, seed, out_dir, rt, console, pace)
    except ReportError as e:
        err.print(f"[red]the run's outputs are unusable:[/red] {e}")
        return 2
    print_outcome(console, outcome)
    (out_dir / "drill.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        Path(junit).write_text(junit_xml(outcome))
        console.print(f"junit: {junit}", soft_wrap=True, highlight=False)
    return 0 if outcome.passed else 1

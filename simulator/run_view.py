"""What a finished run says, read back from its outputs: the view every report is built on.

`RunView` is one run's result.json (validated against ``schemas/result.schema.json``), with
its history.jsonl and final_state.json when they are beside it, and what is derived from
them once: fault windows, the failover timeline, the runbook, the SLO checks and the
verdict. The single-run report, the comparison, the sweep and the drill all read runs
through it, so they cannot disagree about what happened. Bad input is a ``ReportError``
naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from chaos import NOT_RESTORED, fault_title
from replication.outcomes import UNAVAILABLE
from simulator.html import NOT_RECORDED, fmt_ms, fmt_num, fmt_pct, le, money
from simulator.run import answered_mask, availability

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"
OUTAGE_FAULTS = ("crash", "node-loss", "partition", "pause", "partition-bridge", "partition-partial")
"""Faults after which writes on the target's units must move (the ones `simulator.run.rto` measures)."""
NO_FAILOVER = ("async", "escrow")
"""Designs in which every region writes every account: nothing fails over, so they have no RTO."""


def fails_over(mode_label: str) -> bool:
    """Whether a design moves writes to another region when one fails (unit, quorum) —
    only then is "time to the first acknowledged write" a recovery time."""
    return mode_label.split("+")[0] not in NO_FAILOVER
TIMELINE_EVENTS = ("fault", "healed", "detected", "fenced", "promoted", "writes_resumed", "rejoined", "divergence")
RUNBOOK_STEPS = (  # (event, runbook wording)
    ("fault", "fault began"),
    ("detected", "failure detected"),
    ("fenced", "old home fenced (lease expired, stops accepting writes)"),
    ("promoted", "promoted: new home or new leader"),
    ("writes_resumed", "writes resumed on the affected accounts"),
    ("healed", "fault healed"),
    ("rejoined", "old home rejoined (caught up)"),
)


class ReportError(Exception):
    """Input a report cannot be made from (missing file, not a result.json, schema mismatch).

    The message names the file and, for schema problems, the JSON path, so the fix is obvious.
    """


# ====================================================================== loading and validation
def resolve_result_path(path: str | Path) -> Path:
    """A result.json path, or a run directory that contains one."""
    p = Path(path)
    if p.is_dir():
        p = p / "result.json"
    if not p.exists():
        raise ReportError(f"{p}: no such file (expected a result.json written by `geoledger simulate --out DIR`)")
    return p


def load_json(path: Path) -> Any:
    """Parse a JSON file, turning every failure into a ReportError that names the file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        hint = " — that is a run's history (JSON Lines); pass its result.json" if path.suffix == ".jsonl" else ""
        raise ReportError(f"{path}: not JSON ({e.msg} at line {e.lineno}, column {e.colno}){hint}") from None


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_result(result: Any, source: str = "result.json") -> None:
    """Check ``result`` against schemas/result.schema.json plus the cross-field rules a
    schema cannot state (series lengths, region names). Raises ReportError."""
    if not isinstance(result, dict):
        raise ReportError(f"{source}: not a geoledger result.json (top level is a {type(result).__name__}, "
                          "expected an object)")
    core = ("seed", "mode", "scenario", "invariants", "metrics", "replay")
    missing = [k for k in core if k not in result]
    if len(missing) > len(core) // 2:
        raise ReportError(f"{source}: not a geoledger result.json (missing {', '.join(missing)}); pass the "
                          "result.json a run wrote (geoledger simulate --out DIR writes DIR/result.json)")
    errors = sorted(_validator().iter_errors(result), key=lambda e: (len(e.absolute_path), list(map(str,
                                                                                                  e.absolute_path))))
    if errors:
        lines = [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors[:3]]
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ReportError(f"{source}: does not match schemas/result.schema.json: " + "; ".join(lines) + more)
    regions = result["scenario"]["regions"]
    for r in regions:
        if r not in result["metrics"]["regions"]:
            raise ReportError(f"{source}: metrics.regions: no entry for region {r!r} of the scenario")
    series = result["metrics"].get("series") or {}
    for name in ("replication_lag_ms", "transit_balance"):
        s = series.get(name)
        if s is None:
            continue
        n = len(s["t"])
        for key, values in s.items():
            if key == "t":
                continue
            if key not in regions and not (name == "transit_balance" and key == "value"):
                raise ReportError(f"{source}: metrics.series.{name}.{key}: not a region of this scenario "
                                  f"({', '.join(regions)})")
            if len(values) != n:
                raise ReportError(f"{source}: metrics.series.{name}.{key}: {len(values)} values for {n} times in t")
    for i, ev in enumerate(series.get("timeline") or []):
        for r in [ev.get("region"), *ev.get("target", [])]:
            if r is not None and r not in regions:
                raise ReportError(f"{source}: metrics.series.timeline[{i}]: unknown region {r!r}")


def _json_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_result(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read and validate a result.json (or a run directory). Returns (result, path to result.json)."""
    p = resolve_result_path(path)
    result = load_json(p)
    validate_result(result, str(p))
    return result, p


# ====================================================================== history.jsonl
OUTCOME_CODES = {"none": 0, "ok": 1, "fail": 2, "timeout": 3}


@dataclass
class HistoryView:
    """The client history, columnar: what each request's client saw, and when.

    Latency is computed here (not taken from result.json's histograms) because the report
    needs p95 and per-second percentiles that the summary does not keep.
    """

    regions: list[str]
    region: np.ndarray  # int16: region the client submitted to
    transfer: np.ndarray  # bool: a write (not a read)
    invoke: np.ndarray  # float64 s
    complete: np.ndarray  # float64 s, nan if never completed
    outcome: np.ndarray  # int8, OUTCOME_CODES
    unavailable: np.ndarray  # bool: result UNAVAILABLE (retries exhausted)

    @classmethod
    def load(cls, path: Path, regions: Sequence[str]) -> HistoryView:
        index = {r: i for i, r in enumerate(regions)}
        reg: list[int] = []
        tr: list[bool] = []
        inv: list[float] = []
        comp: list[float] = []
        out: list[int] = []
        unav: list[bool] = []
        loads = json.loads
        try:
            fh = path.open()
        except OSError as e:
            raise ReportError(f"{path}: cannot read: {e}") from None
        with fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = loads(line)
                    reg.append(index[d["region"]])
                    tr.append(d["op"] != "read")
                    inv.append(float(d["invoke_t"]))
                    ct = d["complete_t"]
                    comp.append(math.nan if ct is None else float(ct))
                    out.append(OUTCOME_CODES[d["outcome"]])
                    unav.append(d["result"] == "UNAVAILABLE")
                except (ValueError, KeyError, TypeError) as e:
                    raise ReportError(f"{path}:{lineno}: not a history record ({type(e).__name__}: {e})") from None
        return cls(list(regions), np.asarray(reg, np.int16), np.asarray(tr, bool), np.asarray(inv, float),
                   np.asarray(comp, float), np.asarray(out, np.int8), np.asarray(unav, bool))

    @property
    def latency_ms(self) -> np.ndarray:
        return (self.complete - self.invoke) * 1000.0

    def served(self) -> np.ndarray:
        """Writes that got an answer (timeouts excluded, as in result.json's latency figures)."""
        return self.transfer & (self.outcome != OUTCOME_CODES["timeout"]) & np.isfinite(self.complete)

    def latency_summary(self, region: int | None = None) -> dict[str, float | None]:
        sel = self.served() if region is None else self.served() & (self.region == region)
        return percentiles(self.latency_ms[sel])

    def per_second(self, horizon: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """p50/p95/p99/max latency (ms) of the writes issued in each second of virtual time."""
        sel = self.served()
        secs = np.floor(self.invoke[sel]).astype(np.int64)
        lat = self.latency_ms[sel]
        n = max(1, int(math.ceil(horizon)))
        lines = {k: np.full(n, np.nan) for k in ("p50", "p95", "p99", "max")}
        order = np.argsort(secs, kind="stable")
        secs, lat = secs[order], lat[order]
        bounds = np.searchsorted(secs, np.arange(n + 1))
        for s in range(n):
            chunk = lat[bounds[s]:bounds[s + 1]]
            if len(chunk):
                p = percentiles(chunk)
                for k in lines:
                    lines[k][s] = p[k]
        return np.arange(n) + 0.5, lines

    def answered(self) -> np.ndarray:
        return answered_mask(self.outcome, np.where(self.unavailable, UNAVAILABLE, 0),
                             OUTCOME_CODES["timeout"])

    def availability(self, windows: Sequence[FaultWindow], region: int | None = None) -> tuple[float | None,
                                                                                                float | None]:
        """`simulator.run.availability` (the one definition) of the writes issued inside / outside fault windows."""
        sel = self.transfer if region is None else self.transfer & (self.region == region)
        inside = np.zeros(len(self.invoke), bool)
        for w in windows:
            inside |= (self.invoke >= w.start) & (self.invoke < w.end)
        ok = self.answered()
        return availability(ok, sel, inside), availability(ok, sel, ~inside)

    def overall_availability(self) -> float | None:
        return availability(self.answered(), self.transfer)


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """Nearest-rank percentiles (like an HDR histogram's, without its bucket error)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    q = np.percentile(v, [50, 95, 99], method="inverted_cdf")
    return {"count": int(len(v)), "p50": round(float(q[0]), 3), "p95": round(float(q[1]), 3),
            "p99": round(float(q[2]), 3), "max": round(float(v.max()), 3)}


# ====================================================================== the derived view
@dataclass(frozen=True)
class FaultWindow:
    start: float
    end: float
    kind: str
    targets: tuple[str, ...]
    cause: str = ""  # the group fault this one is part of ("city-loss beijing"), if any
    returns: bool = True  # False: a node lost for good (`returns = false`), down to the end of the run

    @property
    def label(self) -> str:
        base = f"{fault_title(self.kind, {'returns': self.returns})} {','.join(self.targets)}"
        return f"{self.cause}: {base}" if self.cause else base

    @property
    def outage(self) -> bool:
        return self.kind in OUTAGE_FAULTS


@dataclass(frozen=True)
class Event:
    t: float
    event: str
    region: str | None
    detail: str
    source: str  # "series" (recorded by the run) or "derived" (inferred from result.json figures)


@dataclass(frozen=True)
class RunbookStep:
    step: str
    event: str
    t: float | None
    region: str | None
    detail: str


@dataclass
class Incident:
    """One fault and what the system did about it, in runbook order."""

    window: FaultWindow
    steps: list[RunbookStep]
    rto_s: float | None
    measured: bool  # an RTO was measured for it (outage faults only)


@dataclass(frozen=True)
class SloCheck:
    name: str
    target: str
    measured: str
    ok: bool | None  # None: informational (no target applies)
    note: str = ""


@dataclass
class RunView:
    """A run's outputs plus everything derived from them that reports, comparisons and
    drills show. Built by `load_run` (from files) or `view_of` (from an in-memory result)."""

    result: dict[str, Any]
    source: Path | None
    history: HistoryView | None = None
    history_note: str = ""
    transit_final: dict[str, int] | None = None
    windows: list[FaultWindow] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def scenario(self) -> dict[str, Any]:
        return self.result["scenario"]

    @property
    def regions(self) -> list[str]:
        return list(self.scenario["regions"])

    @property
    def duration(self) -> float:
        return float(self.scenario["duration"])

    @property
    def quiesce(self) -> float:
        return float(self.scenario["quiesce"])

    @property
    def horizon(self) -> float:
        return self.duration + self.quiesce

    @property
    def slo(self) -> dict[str, Any]:
        return self.scenario.get("slo") or {}

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result["metrics"]

    def series(self, name: str) -> Any:
        return (self.metrics.get("series") or {}).get(name)

    @property
    def timeline_recorded(self) -> bool:
        return self.series("timeline") is not None

    @property
    def not_promised_violations(self) -> list[str]:
        return [k for k, v in self.result["invariants"].items() if not v["ok"] and not v["promised"]]

    def plain_windows(self) -> list[tuple[float, float, str]]:
        return [(w.start, w.end, w.label) for w in self.windows]


def view_of(result: dict[str, Any], source: Path | None = None, *, history: bool = True,
            final_state: bool = True) -> RunView:
    """Derive a RunView from a validated result (history/final_state read beside ``source``)."""
    view = RunView(result, source)
    run_dir = source.parent if source is not None else None
    if history and run_dir is not None and (run_dir / "history.jsonl").exists():
        view.history = HistoryView.load(run_dir / "history.jsonl", view.regions)
    else:
        view.history_note = "history.jsonl not found beside result.json"
    if final_state and run_dir is not None and (run_dir / "final_state.json").exists():
        try:  # only feeds a footnote: a damaged file must not cost the whole report
            view.transit_final = _final_transit(load_json(run_dir / "final_state.json"))
        except ReportError as e:
            view.notes.append(f"final_state.json ignored: {e}")
    av = view.metrics.get("availability")
    if isinstance(av, dict) and av.get("overall") is None and view.history is not None:
        av["overall"] = view.history.overall_availability()  # results written before the metric existed
    view.windows = fault_windows(view)
    view.events = timeline_events(view)
    return view


def load_run(path: str | Path, *, history: bool = True, final_state: bool = True) -> RunView:
    result, p = load_result(path)
    return view_of(result, p, history=history, final_state=final_state)


def _final_transit(final_state: Any) -> dict[str, int] | None:
    """Money still in the transit accounts at the end, per replica (should be 0 after quiesce)."""
    from replication.accounts import TRANSIT_BASE, UNIT_MASK

    try:
        out = {}
        for region, data in final_state["regions"].items():
            total = 0
            for key, acc in data["accounts"].items():
                if TRANSIT_BASE <= int(key) <= TRANSIT_BASE + UNIT_MASK:
                    total += int(acc["credits_posted"]) - int(acc["debits_posted"])
            out[region] = total
        return out
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def fault_windows(view: RunView) -> list[FaultWindow]:
    """Faults as windows: from the recorded timeline when there is one (it includes faults
    drawn at random from the seed), else from the scenario's [[chaos]] list, clipped to the
    load window as the runtime does. A crash that is part of a city-loss is labelled so."""
    causes = {(round(float(f["at"]), 6), f["target"][0]): f"city-loss {f['city']}"
              for f in view.scenario.get("chaos", []) if f.get("city")}
    timeline = view.series("timeline")
    if timeline is not None:
        return [FaultWindow(float(e["t"]), view.duration if e.get("returns") is False else float(e["end"]), e["fault"],
                            tuple(e.get("target") or [e["region"]]),
                            causes.get((round(float(e["t"]), 6), (e.get("target") or [e["region"]])[0]), ""),
                            e.get("returns") is not False)
                for e in timeline if e["event"] == "fault"]
    out = []
    for f in view.scenario.get("chaos", []):
        if f["at"] >= view.duration:
            continue
        returns = f.get("returns") is not False
        out.append(FaultWindow(float(f["at"]), float(min(f["at"] + f["duration"], view.duration)) if returns
                               else float(view.duration), f["fault"], tuple(f["target"]),
                               causes.get((round(float(f["at"]), 6), f["target"][0]), ""), returns))
    if view.scenario.get("random_faults"):
        view.notes.append(f"{view.scenario['random_faults']} fault(s) were drawn at random from the seed; "
                          "result.json does not list them (no metrics.series.timeline), so they are not shaded.")
    return sorted(out, key=lambda w: (w.start, w.kind))


def timeline_events(view: RunView) -> list[Event]:
    """The failover timeline: recorded events when the run emitted them, otherwise what can
    be inferred from result.json (faults, promotions, the RTO's first acknowledged write)."""
    timeline = view.series("timeline")
    if timeline is not None:
        return sorted((Event(float(e["t"]), e["event"], e.get("region"), _detail_text(e), "series")
                       for e in timeline), key=lambda e: (e.t, TIMELINE_EVENTS.index(e.event)))
    regions = view.regions
    events: list[Event] = []
    for w in view.windows:
        events.append(Event(w.start, "fault", w.targets[0], w.label, "derived"))
        if w.returns:
            events.append(Event(w.end, "healed", w.targets[0], w.label, "derived"))
    for p in view.metrics.get("promotions", []):
        moves = p.get("moves") or {}
        by_home: dict[str, list[str]] = {}
        for unit, home in moves.items():
            name = regions[home] if isinstance(home, int) and 0 <= home < len(regions) else str(home)
            by_home.setdefault(name, []).append(str(unit))
        detail = "; ".join(f"units {','.join(u)} → {h}" for h, u in by_home.items()) or "routing change"
        detail += f" (routing v{p.get('version', '?')}, decided by {p.get('region', '?')})"
        lane = next(iter(by_home), p.get("region"))
        events.append(Event(float(p["t"]), "promoted", lane, detail, "derived"))
    for r in view.metrics.get("rto", []):
        if r.get("rto_s") is not None:
            events.append(Event(float(r["at"]) + float(r["rto_s"]), "writes_resumed", (r.get("target") or [None])[0],
                                f"first acknowledged write on accounts homed in {','.join(r['target'])} "
                                f"(RTO {r['rto_s']} s)", "derived"))
    return sorted(events, key=lambda e: (e.t, TIMELINE_EVENTS.index(e.event)))


def _detail_text(e: dict[str, Any]) -> str:
    d = e.get("detail")
    if e["event"] == "fault":
        kind = NOT_RESTORED if e["fault"] == "node-loss" and e.get("returns") is False else e["fault"]
        base = f"{kind} {','.join(e.get('target') or [e.get('region') or ''])}"
        return f"{base}: {d}" if d else base
    if d is None:
        return ""
    return d if isinstance(d, str) else json.dumps(d, sort_keys=True)


def incident_windows(windows: Sequence[FaultWindow]) -> list[tuple[FaultWindow, list[FaultWindow]]]:
    """Faults as incidents: the datacentres of one city-loss (same cause, same start) are one
    incident on every target, the way an SRE lives it; any other fault is its own."""
    groups: dict[Any, list[FaultWindow]] = {}
    for i, w in enumerate(windows):
        groups.setdefault((w.cause, w.start) if w.cause else i, []).append(w)
    out = []
    for members in groups.values():
        w = members[0]
        if len(members) > 1:
            targets = tuple(t for m in members for t in m.targets)
            w = FaultWindow(w.start, max(m.end for m in members), w.kind, targets, w.cause)
        out.append((w, members))
    return out


def runbook(view: RunView) -> list[Incident]:
    """Per incident, the runbook steps in time order; steps the run did not record are listed
    last as "not recorded" (or "not observed" when the timeline was recorded but the step
    never happened, e.g. no promotion in async mode). The RTO of a city-loss is its worst
    datacentre's (None, never recovered, if any of them never did)."""
    incidents = []
    rtos = view.metrics.get("rto", [])
    outage_starts = sorted(w.start for w in view.windows if w.outage)
    for w, members in incident_windows(view.windows):
        nxt = next((s for s in outage_starts if s > w.start), math.inf)
        steps: list[RunbookStep] = [RunbookStep("fault began", "fault", w.start, ",".join(w.targets), w.label)]
        if w.outage:
            for event, wording in RUNBOOK_STEPS[1:5] + RUNBOOK_STEPS[6:]:
                if event == "rejoined" and not w.returns:
                    continue  # a node lost for good: its old home never comes back to rejoin
                ev = next((e for e in view.events if e.event == event and w.start <= e.t < nxt), None)
                if ev is not None:
                    steps.append(RunbookStep(wording, event, ev.t, ev.region, ev.detail))
                else:
                    why = "not observed in the recorded timeline" if view.timeline_recorded else NOT_RECORDED
                    steps.append(RunbookStep(wording, event, None, None, why))
        steps.append(RunbookStep("fault healed", "healed", w.end, ",".join(w.targets), w.label) if w.returns else
                     RunbookStep("not restored: the node stays lost to the end of the run", "healed", w.end,
                                 ",".join(w.targets), w.label))
        known = sorted((s for s in steps if s.t is not None), key=lambda s: s.t)  # type: ignore[arg-type, return-value]
        unknown = [s for s in steps if s.t is None]
        matches = [r for m in members for r in rtos if abs(float(r["at"]) - m.start) < 1e-6
                   and r["fault"] == m.kind and tuple(r.get("target") or ()) == m.targets]
        values = [r["rto_s"] for r in matches]
        rto = None if not values or None in values else max(values)
        incidents.append(Incident(w, known + unknown, rto, bool(matches)))
    return incidents


def slo_checks(view: RunView) -> list[SloCheck]:
    """The scenario's [slo] targets against what the run measured.

    RPO has no [slo] key today: the target is 0 lost acknowledged transfers when the mode
    promises durability; an explicit ``slo.rpo_transfers`` (if the scenario format gains
    it) overrides that; otherwise RPO is informational.
    """
    slo, m = view.slo, view.metrics
    checks: list[SloCheck] = []
    rto_target = slo.get("rto_s")
    if m.get("rto") and not fails_over(view.result["mode"]):
        checks.append(SloCheck("RTO", le(rto_target, "s"), "no failover", None,
                               f"{view.result['mode']} writes every account in every region: nothing fails over"))
    elif m.get("rto"):
        causes = {(w.start, w.targets): w.cause for w in view.windows if w.cause}
        for r in m["rto"]:
            cause = causes.get((float(r["at"]), tuple(r["target"])))
            name = f"RTO {cause + ': ' if cause else ''}{r['fault']} {','.join(r['target'])} @{fmt_num(r['at'])} s"
            if r["rto_s"] is None:
                checks.append(SloCheck(name, le(rto_target, "s"), "never recovered", False if rto_target is not None
                                       else None, "no acknowledged write on the affected accounts after the fault"))
            else:
                ok = None if rto_target is None else r["rto_s"] <= rto_target
                checks.append(SloCheck(name, le(rto_target, "s"), f"{fmt_num(r['rto_s'])} s", ok))
    else:
        checks.append(SloCheck("RTO", le(rto_target, "s"), "no outage fault in this run", None))
    rpo = m["rpo"]
    lost = int(rpo["lost_acknowledged"])
    measured = f"{lost} acked transfer{'s' if lost != 1 else ''} lost"
    if rpo.get("window_s") is not None:
        measured += f" over {fmt_num(rpo['window_s'])} s"
    durability = view.result["invariants"].get("durability", {})
    if "rpo_transfers" in slo:
        checks.append(SloCheck("RPO", f"≤ {slo['rpo_transfers']} lost", measured, lost <= slo["rpo_transfers"]))
    elif durability.get("promised"):
        checks.append(SloCheck("RPO", "0 lost (the mode promises durability)", measured, lost == 0))
    else:
        checks.append(SloCheck("RPO", "none (the mode may lose acknowledged writes)", measured, None,
                               "informational: this mode does not promise RPO = 0"))
    if slo.get("p99_ms") is not None:
        p99 = m["latency_ms"].get("p99")
        checks.append(SloCheck("p99 write latency", le(slo["p99_ms"], "ms"), f"{fmt_ms(p99)} ms",
                               None if p99 is None else p99 <= slo["p99_ms"]))
    if slo.get("availability") is not None:
        av = m["availability"].get("overall")
        how = "writes answered (not UNAVAILABLE, not timed out), whole run"
        if av is None:
            vals = [x for x in m["availability"].values() if x is not None]
            av, how = (min(vals) if vals else None), "lower of in/out of fault windows (no overall figure recorded)"
        checks.append(SloCheck("availability", f"≥ {fmt_pct(slo['availability'])}", fmt_pct(av),
                               None if av is None else av >= slo["availability"], how))
    return checks


def verdict(view: RunView, checks: Sequence[SloCheck]) -> tuple[str, str]:
    """(level, headline): level is "pass", "warn" (an SLO missed, or an invariant the mode
    does not promise broke: true to the letter is not reassuring) or "fail" (a promised
    invariant broke)."""
    violated = view.result["violated"]
    missed = [c.name for c in checks if c.ok is False]
    if violated:
        return "fail", f"VIOLATED: {', '.join(violated)} — a promised invariant failed"
    parts = ["All promised invariants held"]
    if view.not_promised_violations:
        od = view.metrics.get("overdraft") or {}
        how = (f" ({fmt_num(od['accounts'])} account(s) overdrawn by {money(od['amount'])})"
               if "no_overdraft" in view.not_promised_violations and od.get("accounts") else "")
        parts.append(f"broken, and not promised by {view.result['mode']}: "
                     f"{', '.join(view.not_promised_violations)}{how}")
    if missed:
        parts.append(f"SLO missed: {', '.join(missed)}")
    if missed or view.not_promised_violations:
        return "warn", "; ".join(parts)
    return "pass", "All invariants held; every SLO met"

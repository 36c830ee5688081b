"""`geoledger compare`: one scenario, one seed, several replication modes, one report.

The architect's question is "what does each design cost, and what does it protect?", so
every mode runs the *same* workload and fault schedule (same scenario, same seed: the
plan and the nemesis are drawn from the seed before the mode matters), and the page puts
the numbers side by side: latency, throughput, RTO, RPO, invariant violations and WAN
messages per write, plus overlaid plots and a summary *generated from those numbers*
(no canned prose: a sentence appears only when the figures support it).

Output (``--out DIR``): ``DIR/compare.html``, ``DIR/compare.json``, and for each mode its
own run directory ``DIR/<mode>/`` with result.json, history.jsonl, final_state.json and
report.html — so any cell of the table can be traced to a full single-run report.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.decision import clock_word, design_lines, headline, measure, rto_text, section
from simulator.html import esc, figure, fmt_ms, fmt_num, fmt_pct, page, table
from simulator.run_view import ReportError, RunView, load_run, slo_checks


@dataclass
class ModeRun:
    mode: str  # as the user typed it (the directory name)
    view: RunView

    @property
    def label(self) -> str:
        return str(self.view.result["mode"])


# ====================================================================== modes and runs
def parse_modes(text: str, scenario_name: str) -> list[str]:
    """Split and validate ``--modes``; every mode is checked before any run starts, so a
    typo costs nothing. Modes that name the same design (``unit`` and ``unit+semi-sync`` in a
    semi-sync scenario) are run once."""
    from simulator.scenario import ScenarioError, load_scenario

    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise ReportError("--modes: give at least one mode, e.g. --modes async,unit,escrow")
    try:
        base = load_scenario(scenario_name)
    except ScenarioError as e:
        raise ReportError(f"scenario error: {e}") from None
    known = _mode_choices()
    out: list[str] = []
    labels: dict[str, str] = {}
    for m in modes:
        if known is not None and m not in known:
            raise ReportError(f"--modes: unknown mode {m!r} (expected one of {', '.join(known)})")
        try:
            s = base.with_mode(m)
        except ScenarioError as e:
            raise ReportError(f"--modes: {m!r}: {e}") from None
        label = s.mode_label
        if label in labels:
            continue  # the same design under another spelling
        labels[label] = m
        out.append(m)
    return out


def _mode_choices() -> tuple[str, ...] | None:
    """The modes `geoledger simulate --mode` accepts (one list for every command)."""
    try:
        from simulator.cli import MODE_CHOICES
    except ImportError:  # pragma: no cover - the simulator CLI is being reworked
        return None
    return tuple(MODE_CHOICES)


def run_one(job: tuple[str, str, int, str]) -> str:
    """Run one mode and write its outputs and report; top-level so a process pool can call it."""
    from simulator.report import write_report
    from simulator.run import run_scenario, write_outputs
    from simulator.scenario import load_scenario

    scenario_name, mode, seed, out = job
    scenario = load_scenario(scenario_name).with_mode(mode)
    sim, result = run_scenario(scenario, seed)
    write_outputs(sim, result, Path(out))
    write_report(Path(out))
    return out


def run_modes(scenario_name: str, modes: Sequence[str], seed: int | None, out: Path, jobs: int = 1,
              on_done: Callable[[str], None] | None = None) -> tuple[int, list[ModeRun]]:
    """Run every mode (``jobs`` processes; the machine may be shared, so 1 by default)."""
    from simulator.scenario import load_scenario

    if seed is None:
        seed = load_scenario(scenario_name).seed
    jobs_list = [(scenario_name, m, seed, str(out / m)) for m in modes]
    if jobs > 1 and len(jobs_list) > 1:
        with multiprocessing.get_context("spawn").Pool(min(jobs, len(jobs_list))) as pool:
            for done in pool.imap(run_one, jobs_list):
                if on_done:
                    on_done(Path(done).name)
    else:
        for job in jobs_list:
            run_one(job)
            if on_done:
                on_done(job[1])
    return seed, [ModeRun(m, load_run(out / m)) for m in modes]


# ====================================================================== figures and summary
def figures(view: RunView) -> dict[str, Any]:
    """The per-mode numbers the table, the summary and compare.json share."""
    m = view.metrics
    lat = dict(m["latency_ms"])
    if view.history is not None:
        lat["p95"] = view.history.latency_summary()["p95"]
    rtos = [r["rto_s"] for r in m.get("rto", [])]
    acked = m["acked_transfers"]
    net = m.get("network") or {}
    nod = view.result["invariants"].get("no_overdraft", {})
    overdrawn = (nod.get("first_violation") or {}).get("overdrawn_accounts") if not nod.get("ok", True) else None
    checks = slo_checks(view)
    rto = measure(view.result)["rto"]
    return {
        "mode": view.result["mode"],
        "digest": view.result.get("digest"),
        "ops": m["ops"],
        "acked_transfers": acked,
        "acked_per_s": m["acked_per_s"],
        "latency_ms": {k: lat.get(k) for k in ("p50", "p95", "p99", "max")},
        "availability": m["availability"],
        "rto_s": rtos,
        "rto_worst_s": (None if any(r is None for r in rtos) else max(rtos)) if rtos else None,
        "rto_status": rto["status"],  # no-outage | no-failover | failover | restart | never (decision._rto)
        "never_recovered": sum(1 for r in rtos if r is None),
        "rpo_lost": m["rpo"]["lost_acknowledged"],
        "rpo_window_s": m["rpo"].get("window_s"),
        "violated": list(view.result["violated"]),
        "violated_not_promised": view.not_promised_violations,
        "overdrawn_accounts": overdrawn,
        "wan_messages_per_write": round(net["messages"] / acked, 3) if acked and net else None,
        "wan_bytes_per_write": round(net["bytes"] / acked, 1) if acked and net else None,
        "replication_lag_ms": {k: m["replication_lag_ms"].get(k) for k in ("p50", "p99", "max")},
        "promotions": len(m.get("promotions", [])),
        "slo": [{"name": c.name, "target": c.target, "measured": c.measured, "ok": c.ok} for c in checks],
    }


def summary(figs: dict[str, dict[str, Any]], slo: dict[str, Any], has_outage: bool) -> list[str]:
    """Trade-off sentences derived from the figures: each appears only when the numbers
    show it (a tie is reported as a tie, a missing figure is not guessed)."""
    out: list[str] = []
    modes = list(figs)
    if len(modes) < 2:
        return [f"Only one mode ({modes[0]}) was run: nothing to compare."] if modes else []
    # correctness first: that is what the design is for
    clean = [m for m in modes if not figs[m]["violated"] and not figs[m]["violated_not_promised"]]
    for m in modes:
        f = figs[m]
        if f["violated"]:
            out.append(f"{m} broke a promise: {', '.join(f['violated'])} failed although the mode guarantees it "
                       "— a bug to replay, not a trade-off.")
        if f["violated_not_promised"]:
            what = ", ".join(f["violated_not_promised"])
            extra = f" ({f['overdrawn_accounts']} account(s) overdrawn)" if f["overdrawn_accounts"] else ""
            out.append(f"{m} let {what} fail{extra}; it does not promise {'it' if ',' not in what else 'them'}, "
                       "so this is the price of its speed, not a bug.")
    if clean and len(clean) < len(modes):
        out.append(f"Only {', '.join(clean)} kept every invariant on this workload and fault schedule.")
    elif len(clean) == len(modes):
        out.append("Every mode kept every invariant on this workload and fault schedule.")
    # latency: typical (p50) and tail (p99) can tell different stories (a fault dominates the tail)
    lat = {k: {m: figs[m]["latency_ms"][k] for m in modes if figs[m]["latency_ms"][k] is not None}
           for k in ("p50", "p99")}
    for k, what in (("p50", "Typical latency"), ("p99", "Tail latency")):
        vals = lat[k]
        if len(vals) < 2:
            continue
        lo, hi = min(vals, key=vals.__getitem__), max(vals, key=vals.__getitem__)
        if vals[hi] > 1.1 * vals[lo]:
            out.append(f"{what}: {lo} has the lowest {k} ({fmt_ms(vals[lo])} ms), {hi} the highest "
                       f"({fmt_ms(vals[hi])} ms, ×{vals[hi] / vals[lo]:.1f}).")
        else:
            out.append(f"{what}: {k} is within 10% across modes ({fmt_ms(vals[lo])}–{fmt_ms(vals[hi])} ms).")
    p99 = lat["p99"]
    if slo.get("p99_ms") is not None:
        over = [m for m, v in p99.items() if v > slo["p99_ms"]]
        if over:
            out.append(f"p99 above the {fmt_num(slo['p99_ms'])} ms SLO: {', '.join(over)}.")
    # throughput
    tput = {m: figs[m]["acked_per_s"] for m in modes}
    hi, lo = max(tput, key=tput.__getitem__), min(tput, key=tput.__getitem__)
    if tput[hi] > 0 and (tput[hi] - tput[lo]) / tput[hi] > 0.05:
        out.append(f"Throughput: {hi} acknowledged the most writes ({fmt_num(tput[hi])}/s), {lo} the fewest "
                   f"({fmt_num(tput[lo])}/s, {100 * (tput[lo] - tput[hi]) / tput[hi]:.0f}%).")
    else:
        out.append(f"Throughput is within 5% across modes ({fmt_num(tput[lo])}–{fmt_num(tput[hi])} acked writes/s): "
                   "the offered load, not the mode, set it.")
    # RTO: only designs that fail over have one (async and escrow never stop writing an account)
    if has_outage:
        fo = [m for m in modes if figs[m].get("rto_status", "failover") not in ("no-failover", "no-outage")]
        no_fo = [m for m in modes if figs[m].get("rto_status") == "no-failover"]
        worst = {m: figs[m]["rto_worst_s"] for m in fo}
        never = [m for m in fo if figs[m]["never_recovered"]]
        measured = {m: v for m, v in worst.items() if v is not None}
        if len(measured) >= 2:
            fast, slow = min(measured, key=measured.__getitem__), max(measured, key=measured.__getitem__)
            if measured[slow] > measured[fast] * 1.2 and measured[slow] - measured[fast] > 0.05:
                out.append(f"Recovery: {fast} resumed writes after {fmt_num(measured[fast])} s, {slow} after "
                           f"{fmt_num(measured[slow])} s (worst fault).")
            else:
                out.append(f"Recovery time is similar across the designs that fail over "
                           f"({fmt_num(min(measured.values()))}–{fmt_num(max(measured.values()))} s).")
        elif measured:
            (m1, v1), = measured.items()
            out.append(f"Recovery: {m1} resumed writes after {fmt_num(v1)} s (worst fault).")
        if no_fo:
            out.append(f"No failover in {', '.join(no_fo)}: every region writes every account, so there is no RTO "
                       "to measure (their clients in a failed region wait for it, which p99 and availability show).")
        restart = [m for m in fo if figs[m].get("rto_status") == "restart"]
        if restart:
            out.append(f"No promotion in {', '.join(restart)}: the affected accounts came back only with their "
                       "region (no majority was left to move them).")
        if never:
            out.append(f"Never resumed writes on the faulted region's accounts: {', '.join(never)}.")
        if slo.get("rto_s") is not None:
            miss = [m for m in fo if worst[m] is None or worst[m] > slo["rto_s"]]
            if miss:
                out.append(f"RTO above the {fmt_num(slo['rto_s'])} s SLO: {', '.join(miss)}.")
    # availability (the one figure), and where it went: inside the fault windows (the CAP choice)
    av = {m: figs[m]["availability"].get("overall") for m in modes}
    av = {m: v for m, v in av.items() if v is not None}
    if len(av) >= 2 and max(av.values()) - min(av.values()) > 0.001:
        worst_av = min(av, key=av.__getitem__)
        best = [m for m in av if av[m] == max(av.values())]
        during = figs[worst_av]["availability"].get("inside_faults")
        out.append(f"Availability: {worst_av} answered {fmt_pct(av[worst_av])} of all writes"
                   + (f" ({fmt_pct(during)} of those issued during faults)" if during is not None else "")
                   + f"; {', '.join(best)} {fmt_pct(max(av.values()))}.")
    if slo.get("availability") is not None:
        low = [m for m, v in av.items() if v < slo["availability"]]
        if low:
            out.append(f"Availability below the {fmt_pct(slo['availability'])} SLO: {', '.join(low)}.")
    # RPO
    lost = {m: figs[m]["rpo_lost"] for m in modes}
    losers = [m for m in modes if lost[m]]
    if losers:
        zero = [m for m in modes if not lost[m]]
        parts = [f"{m} lost {lost[m]} acknowledged write(s)"
                 + (f" within {fmt_num(figs[m]['rpo_window_s'])} s" if figs[m]["rpo_window_s"] is not None else "")
                 for m in losers]
        out.append("RPO: " + "; ".join(parts) + (f"; {', '.join(zero)} lost none." if zero else "."))
    else:
        out.append("RPO: no mode lost an acknowledged write in this run.")
    # WAN cost
    wan = {m: figs[m]["wan_messages_per_write"] for m in modes if figs[m]["wan_messages_per_write"]}
    if len(wan) >= 2:
        lean, heavy = min(wan, key=wan.__getitem__), max(wan, key=wan.__getitem__)
        if wan[heavy] > 1.1 * wan[lean]:
            out.append(f"WAN cost: {heavy} sends {wan[heavy]:.2f} cross-region messages per acknowledged write, "
                       f"×{wan[heavy] / wan[lean]:.1f} the leanest ({lean}, {wan[lean]:.2f}).")
        else:
            out.append(f"WAN cost is similar across modes ({min(wan.values()):.2f}–{max(wan.values()):.2f} "
                       "messages per acknowledged write).")
    # the trade-off in one line: the fastest mode (typical latency) against the fastest safe one
    p50 = lat["p50"]
    safe_fast = min((m for m in clean if m in p50), key=p50.__getitem__, default=None)
    if safe_fast is not None and len(p50) >= 2:
        fastest = min(p50, key=p50.__getitem__)
        close = all(safe_fast in v and v[safe_fast] <= 1.1 * min(v.values()) for v in (p50, p99))
        if close:
            top = max(modes, key=lambda m: figs[m]["acked_per_s"])
            fewer = 1 - figs[safe_fast]["acked_per_s"] / figs[top]["acked_per_s"] if figs[top]["acked_per_s"] else 0
            out.append(f"No latency price for safety on this run: {safe_fast} kept every invariant within 10% of the "
                       f"fastest p50 and p99 ({fmt_ms(p50[safe_fast])} / {fmt_ms(p99.get(safe_fast))} ms)"
                       + (f", but acknowledged {100 * fewer:.0f}% fewer writes than {top}." if fewer > 0.02 else "."))
        elif fastest == safe_fast:
            out.append(f"No trade-off on this run: {safe_fast} has the lowest p50 and kept every invariant.")
        else:
            out.append(f"Trade-off: {fastest} is fastest (p50 {fmt_ms(p50[fastest])} ms) but broke an invariant; the "
                       f"fastest mode that kept every invariant is {safe_fast} (p50 {fmt_ms(p50[safe_fast])} ms, "
                       f"×{p50[safe_fast] / p50[fastest]:.1f}).")
    ops = {figs[m]["ops"] for m in modes}
    if len(ops) > 1:
        out.append(f"Note: the modes did not run the same number of operations ({sorted(ops)}); the comparison "
                   "is not like for like.")
    return out


# ====================================================================== rendering
def render_compare(runs: Sequence[ModeRun], scenario: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
    """The comparison page and its JSON twin."""
    from simulator import plots

    figs = {r.label: figures(r.view) for r in runs}
    slo = scenario.get("slo") or {}
    has_outage = any(w.outage for r in runs for w in r.view.windows)
    lines = summary(figs, slo, has_outage)
    data = {
        "scenario": scenario["name"], "seed": seed, "modes": [r.mode for r in runs],
        "runs": [{"mode": r.mode, "label": r.label, "dir": r.mode, "replay": r.view.result["replay"],
                  **figs[r.label]} for r in runs],
        "summary": lines,
    }
    labels = [r.label for r in runs]
    rows = [measure(r.view.result) for r in runs]
    level, head = headline(rows, slo)
    data["decision"] = {"level": level, "headline": head, "designs": design_lines(rows, slo), "rows": rows}
    parts = [
        f"<h1>Comparing {esc(', '.join(labels))} on {esc(scenario['name'])} — seed {seed}</h1>",
        f'<p class="sub">{esc(scenario.get("description", ""))}</p>',
        section(rows, scenario),
        '<p class="note">Same scenario, same seed: every mode saw the same workload and the same fault schedule.</p>',
        "<h2>Summary</h2>",
        '<ul class="summary">' + "".join(f"<li>{esc(s)}</li>" for s in lines) + "</ul>",
        "<h2>Side by side</h2>",
        _side_by_side(runs, figs, slo),
        "<h2>Plots</h2>",
        _overlays(runs, plots, slo),
        "<h2>Runs</h2>",
        table(["mode", "report", "replay"],
              [[esc(r.label), f'<a href="{esc(r.mode)}/report.html">{esc(r.mode)}/report.html</a>',
                f'<code class="cmd">{esc(r.view.result["replay"])}</code>'] for r in runs], raw=True),
    ]
    return page(f"geoledger compare — {scenario['name']} — seed {seed}", "\n".join(parts)), data


def _best(values: dict[str, float | None], low: bool = True) -> set[str]:
    vals = {k: v for k, v in values.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if len(vals) < 2:
        return set()
    target = min(vals.values()) if low else max(vals.values())
    if all(v == target for v in vals.values()):
        return set()
    return {k for k, v in vals.items() if v == target}


def _side_by_side(runs: Sequence[ModeRun], figs: dict[str, dict[str, Any]], slo: dict[str, Any]) -> str:
    labels = [r.label for r in runs]
    rows: list[list[str]] = []

    def row(name: str, values: dict[str, Any], fmt: Callable[[Any], str], low: bool | None = True) -> None:
        best = _best(values, low) if low is not None else set()
        rows.append([esc(name)] + [f'<span class="ok">{fmt(values[m])}</span>' if m in best else fmt(values[m])
                                   for m in labels])

    clock = clock_word(runs[0].view.result) if runs else "virtual"
    for k in ("p50", "p95", "p99", "max"):
        row(f"write latency {k} (ms, {clock} time)", {m: figs[m]["latency_ms"][k] for m in labels}, fmt_ms)
    row("acked writes / s", {m: figs[m]["acked_per_s"] for m in labels}, fmt_num, low=False)
    av_target = f" (SLO ≥ {fmt_pct(slo['availability'])})" if slo.get("availability") is not None else ""
    row(f"availability: writes answered{av_target}", {m: figs[m]["availability"].get("overall") for m in labels},
        fmt_pct, low=False)
    row("  of those issued during faults", {m: figs[m]["availability"]["inside_faults"] for m in labels}, fmt_pct,
        low=False)
    rto_target = f" (SLO ≤ {fmt_num(slo['rto_s'])} s)" if slo.get("rto_s") is not None else ""
    rows_by_label = {r.label: measure(r.view.result) for r in runs}

    def rto_fmt(m: str) -> str:
        r = rows_by_label[m]
        st = r["rto"]["status"]
        if st in ("no-outage", "no-failover"):
            return f'<span class="na">{esc(rto_text(r))}</span>'
        if st == "never":
            return '<span class="bad">never</span>'
        bad = slo.get("rto_s") is not None and r["rto"]["worst_s"] > slo["rto_s"]
        return f'<span class="bad">{esc(rto_text(r))}</span>' if bad else esc(rto_text(r))

    rows.append([esc(f"RTO, worst fault{rto_target}")] + [rto_fmt(m) for m in labels])
    row("RPO: acked writes lost", {m: figs[m]["rpo_lost"] for m in labels}, fmt_num)

    def viol(m: str) -> str:
        f = figs[m]
        cells = [f'<span class="bad">{esc(v)}</span>' for v in f["violated"]]
        cells += [f'<span class="warn">{esc(v)} (not promised)</span>' for v in f["violated_not_promised"]]
        return "<br>".join(cells) or '<span class="ok">none</span>'

    rows.append(["invariant violations"] + [viol(m) for m in labels])
    row("WAN messages per acked write", {m: figs[m]["wan_messages_per_write"] for m in labels},
        lambda v: "—" if v is None else f"{v:.2f}")
    row("WAN bytes per acked write", {m: figs[m]["wan_bytes_per_write"] for m in labels}, fmt_num)
    row("replication lag p99 (ms)", {m: figs[m]["replication_lag_ms"]["p99"] for m in labels}, fmt_ms)
    row("promotions", {m: figs[m]["promotions"] for m in labels}, fmt_num, low=None)
    return (table(["figure", *labels], rows, cls="compare", raw=True)
            + '<p class="note">Best value per row in green (none when all are equal). WAN messages include '
              "heartbeats and log shipping between regions.</p>")


def _overlays(runs: Sequence[ModeRun], plots: Any, slo: dict[str, Any]) -> str:
    first = runs[0].view
    windows, duration, horizon = first.plain_windows(), first.duration, first.horizon
    out = []
    tput: dict[str, list[float]] = {}
    for r in runs:
        per = [r.view.metrics["regions"][name]["acked_per_s"] for name in r.view.regions]
        tput[r.label] = [float(sum(x)) for x in zip(*per, strict=False)]
    n = max(len(v) for v in tput.values())
    out.append(figure("cmp-throughput", "Throughput, all regions", "acknowledged writes per second, one line per mode",
                      plots.series_lines([i + 0.5 for i in range(n)], {k: v + [None] * (n - len(v))
                                                                       for k, v in tput.items()},
                                         windows, duration, "acked writes / s", "cmp-throughput", horizon=horizon)))
    with_hist = [r for r in runs if r.view.history is not None]
    if with_hist:
        p99: dict[str, Any] = {}
        t: Any = []
        for r in with_hist:
            t, lines = r.view.history.per_second(horizon)  # type: ignore[union-attr]
            p99[r.label] = lines["p99"].tolist()
        hline = (slo["p99_ms"], f"SLO p99 {slo['p99_ms']:g} ms") if slo.get("p99_ms") else None
        out.append(figure("cmp-latency", "p99 write latency over time", "writes issued in each second, one line per "
                          "mode", plots.series_lines(list(t), p99, windows, duration, "p99 latency (ms)", "cmp-latency",
                                                     log=True, horizon=horizon, hline=hline)))
        samples = {r.label: r.view.history.latency_ms[r.view.history.served()]  # type: ignore[union-attr]
                   for r in with_hist}
        out.append(figure("cmp-cdf", "Write latency distribution", "fraction of writes slower than x (log-log)",
                          plots.cdf(samples, "cmp-cdf", slo.get("p99_ms"))))
    else:
        for pid, title in (("cmp-latency", "p99 write latency over time"),
                           ("cmp-cdf", "Write latency distribution")):
            out.append(figure(pid, title, "from history.jsonl", None,
                              "history.jsonl not found in the mode directories."))
    lags = {r.label: r.view.series("replication_lag_ms") for r in runs}
    if all(v is not None for v in lags.values()):
        t = lags[runs[0].label]["t"]
        worst: dict[str, list[float | None]] = {}
        for label, s in lags.items():
            cols = [s[k] for k in s if k != "t"]
            worst[label] = [max((x for x in vals if x is not None), default=None) for vals in zip(*cols, strict=False)]
        out.append(figure("cmp-lag", "Replication lag", "largest lag over the receiving regions, per second",
                          plots.series_lines(t, worst, windows, duration, "lag (ms)", "cmp-lag", log=True,
                                             horizon=horizon)))
    else:
        missing = ", ".join(k for k, v in lags.items() if v is None)
        rows = "; ".join(f"{r.label} p99 {fmt_ms(r.view.metrics['replication_lag_ms'].get('p99'))} ms"
                         for r in runs)
        out.append(figure("cmp-lag", "Replication lag", "per mode over time", None,
                          f"no metrics.series.replication_lag_ms in {missing}. Whole-run: {rows}."))
    return "\n".join(out)


def write_compare(runs: Sequence[ModeRun], seed: int, out: Path) -> tuple[Path, Path]:
    scenario = runs[0].view.scenario
    html_text, data = render_compare(runs, scenario, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.html").write_text(html_text)
    (out / "compare.json").write_text(json.dumps(data, indent=2, default=str))
    return out / "compare.html", out / "compare.json"

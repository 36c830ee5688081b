"""sweep.html: the answer to a what-if on one page.

Reads only sweep.json's data (the measured rows), like every report. The page opens with
the decision (`simulator.decision`: which designs meet the scenario's SLOs, where in the
grid, what broke and what it cost), then a plot of each metric against each swept
parameter — a line per design through the median over seeds, the min–max band of the
seeds, marks where an invariant broke — then every point as a table.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from simulator.decision import (
    breakage,
    clock_word,
    cost_text,
    design_link,
    headline,
    misses,
    params_text,
    section,
    worst_of,
)
from simulator.html import esc, figure, fmt_ms, fmt_num, fmt_pct, money, page

MAX_TABLE_ROWS = 400
MAX_LINES_PER_PLOT = 8


# ====================================================================== folding rows
def _key(row: dict[str, Any]) -> str:
    return json.dumps(row["params"], sort_keys=True)


def fold_points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (point, design), folded over its seeds (`decision.worst_of`), in grid order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((_key(r), r["mode"]), []).append(r)
    return [{**worst_of(g), "params": g[0]["params"]} for g in groups.values()]


def fold_modes(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per design over the whole grid: its worst point and seed for each SLO figure."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["mode"], []).append(r)
    return [{**worst_of(g), "params": {}} for g in groups.values()]


def mode_lines(points: Sequence[dict[str, Any]], slo: dict[str, Any]) -> list[str]:
    """Per design: where in the grid it meets every SLO, where it misses which, what it
    broke, and its cost (the median point) — sentences only the rows can support."""
    out = []
    modes = list(dict.fromkeys(r["mode"] for r in points))
    for mode in modes:
        pts = [r for r in points if r["mode"] == mode]
        good = [r for r in pts if not misses(r, slo) and not r["violated"]]
        gridless = all(not r["params"] for r in pts)  # no --param: one point, the seeds are the spread
        if gridless:
            line = f"{mode}: {'meets every SLO' if good else 'does not meet every SLO'}"
        else:
            line = f"{mode}: meets every SLO at {len(good)} of {len(pts)} point(s)"
        if good and len(good) < len(pts):
            listed = "; ".join(params_text(r["params"]) for r in good[:6])
            line += f" ({listed}{'; …' if len(good) > 6 else ''})"
        missed: dict[str, list[str]] = {}
        for r in pts:
            for v in misses(r, slo):
                where = params_text(r["params"])
                missed.setdefault(v.slo, []).append(f"{where} ({v.measured})" if where else
                                                    f"({v.measured}, target {v.target})")
        for name, places in missed.items():
            line += (f"; misses {name} " + ("at " if not gridless else "") + "; ".join(places[:4])
                     + (f" and {len(places) - 4} more" if len(places) > 4 else ""))
        broke: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for r in pts:
            for name, promised, _ in breakage(r):
                broke.setdefault((name, promised), []).append(r)
        for (name, promised), rs in broke.items():
            extra = ""
            if name == "no_overdraft":
                worst = max(rs, key=lambda r: r["overdraft"]["accounts"])
                extra = (f", up to {fmt_num(worst['overdraft']['accounts'])} accounts overdrawn by "
                         f"{money(worst['overdraft']['amount'])}")
            at = "" if gridless else f" at {len(rs)} of {len(pts)} point(s)"
            line += f"; broke {name}{'' if promised else ' (not promised)'}{at}{extra}"
        out.append(line + f". Cost: {cost_text(_median_point(pts))}.")
    return out


def _median_point(pts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cost figures of a design at its median point (costs are medians over seeds already)."""
    r = dict(pts[0])
    for k in ("declined", "unavailable", "timeouts", "acked_per_s"):
        r[k] = statistics.median(p[k] for p in pts)
    r["latency_ms"] = {"p50": statistics.median(p["latency_ms"]["p50"] or 0 for p in pts), "p99": None}
    r["seeds"] = max(p.get("seeds", 1) for p in pts)
    return r


def decision_data(rows: Sequence[dict[str, Any]], scenario: dict[str, Any],
                  params: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The decision as data (sweep.json's "decision"), the page shows the same. ``params``
    are the swept keys and their values, as sweep.json lists them."""
    slo = scenario.get("slo") or {}
    points = fold_points(rows)
    level, text = headline(points, slo)
    return {
        "level": level, "headline": text, "designs": mode_lines(points, slo), "trends": trends(rows, params),
        "points": [{"params": r["params"], "mode": r["mode"], "seeds": r["seeds"],
                    "meets_every_slo": not misses(r, slo), "missed": [v.slo for v in misses(r, slo)],
                    "broke": [{"invariant": n, "promised": p, "what": t} for n, p, t in breakage(r)]}
                   for r in points],
    }


# ====================================================================== trends
TRENDS = (  # (metric id, words, unit, format, smallest change that counts)
    ("rto", "RTO", " s", fmt_num, 0.05),
    ("p99", "p99 latency", " ms", fmt_ms, 5.0),
    ("availability", "availability", "", fmt_pct, 0.001),
    ("rpo", "RPO", " lost", fmt_num, 1.0),
    ("throughput", "throughput", " acked/s", fmt_num, 0.0),
    ("declined", "declined payments", "", fmt_num, 1.0),
    ("unavailable", "UNAVAILABLE answers", "", fmt_num, 1.0),
)


def trends(rows: Sequence[dict[str, Any]], params: Sequence[dict[str, Any]]) -> list[str]:
    """How each headline metric moves along each numeric parameter, per design, from the
    medians over seeds (and over the other parameters): "grows", "falls", "varies" or
    "flat" — a change counts when it is over 10% and over a metric-sized floor."""
    value_of = {mid: fn for mid, _, fn, _, _ in METRICS}
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    out = []
    for p in params:
        key, xs = p["key"], p["values"]
        if len(xs) < 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs):
            continue
        xs = sorted(xs)
        still: list[str] = []
        for mid, words, unit, fmt, floor in TRENDS:
            parts = []
            moved = False
            for mode in modes:
                meds = []
                for x in xs:
                    vals = [float(v) for r in rows if r["mode"] == mode and r["params"][key] == x
                            for v in [value_of[mid](r)] if v is not None]
                    meds.append(statistics.median(vals) if vals else None)
                have = [m for m in meds if m is not None]
                if len(have) < 2:
                    continue
                lo, hi = min(have), max(have)
                first, last = have[0], have[-1]
                if hi - lo <= max(floor, 0.1 * max(abs(hi), abs(lo))):
                    parts.append(f"flat under {mode} ({fmt(lo)}{'' if lo == hi else '–' + fmt(hi)}{unit})")
                    continue
                moved = True
                steps = [b - a for a, b in zip(have, have[1:], strict=False)]
                word = "grows" if all(d >= 0 for d in steps) else "falls" if all(d <= 0 for d in steps) else "varies"
                parts.append(f"{word} under {mode} ({fmt(first)} → {fmt(last)}{unit} from {key}={xs[0]:g} to "
                             f"{xs[-1]:g})" if word != "varies" else f"varies under {mode} ({fmt(lo)}–{fmt(hi)}{unit})")
            if moved:
                out.append(f"{words} vs {key}: " + "; ".join(parts) + ".")
            elif parts:
                still.append(words)
        if still:
            out.append(f"Not moved by {key} (within 10%): {', '.join(still)}.")
    return out


# ====================================================================== plots
METRICS: tuple[tuple[str, str, Callable[[dict[str, Any]], Any], str | None, bool], ...] = (
    # (id, y label, value of a row, SLO key, percent axis)
    ("rto", "RTO, worst fault (s)",
     lambda r: r["rto"]["worst_s"] if r["rto"]["status"] in ("failover", "restart") else None, "rto_s", False),
    ("rpo", "RPO: acknowledged writes lost", lambda r: r["rpo_lost"], None, False),
    ("p99", "p99 write latency (ms, {clock} time)", lambda r: r["latency_ms"]["p99"], "p99_ms", False),
    ("p50", "p50 write latency (ms, {clock} time)", lambda r: r["latency_ms"]["p50"], None, False),
    ("availability", "availability (writes answered)", lambda r: r["availability"]["overall"], "availability",
     True),
    ("throughput", "acked writes / s", lambda r: r["acked_per_s"], None, False),
    ("declined", "declined payments (EXCEEDS_CREDITS)", lambda r: r["declined"], None, False),
    ("unavailable", "answered UNAVAILABLE", lambda r: r["unavailable"], None, False),
)


def _lines_for(rows: Sequence[dict[str, Any]], key: str, values: Sequence[Any],
               value_of: Callable[[dict[str, Any]], Any], metric: str) -> tuple[dict[str, Any], bool]:
    """Plot lines for one metric against parameter ``key``: per design, and per combination
    of the other parameters when that keeps the plot readable (else folded into the band)."""
    others = [k for k in (rows[0]["params"] if rows else {}) if k != key]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    combos = list(dict.fromkeys(json.dumps({k: r["params"][k] for k in others}, sort_keys=True) for r in rows))
    split = len(modes) * len(combos) <= MAX_LINES_PER_PLOT
    lines: dict[str, Any] = {}
    for mode in modes:
        for combo in (combos if split else [None]):
            label = mode
            if split and others:
                label += " · " + params_text(json.loads(combo or "{}"))
            d: dict[str, list[Any]] = {k: [] for k in ("median", "lo", "hi", "broken", "unpromised", "never")}
            for x in values:
                sel = [r for r in rows if r["mode"] == mode and r["params"][key] == x
                       and (combo is None or json.dumps({k: r["params"][k] for k in others}, sort_keys=True) == combo)]
                vals = [float(v) for v in map(value_of, sel) if v is not None]
                d["median"].append(statistics.median(vals) if vals else None)
                d["lo"].append(min(vals) if vals else None)
                d["hi"].append(max(vals) if vals else None)
                d["broken"].append(any(r["violated"] for r in sel))
                d["unpromised"].append(any(r["broken_not_promised"] for r in sel))
                d["never"].append(metric == "rto" and any(r["rto"]["status"] == "never" for r in sel))
            if any(v is not None for v in d["median"]) or any(d["never"]):
                lines[label] = d
    return lines, split or not others


def plots_section(data: dict[str, Any]) -> str:
    from simulator import plots

    rows = data["rows"]
    slo = data.get("slo") or {}
    clock = clock_word(rows[0]) if rows else "virtual"
    out = []
    for p in data["params"]:
        key, values = p["key"], p["values"]
        figs = []
        for mid, ylabel, value_of, slo_key, percent in METRICS:
            ylabel = ylabel.format(clock=clock)
            lines, split = _lines_for(rows, key, values, value_of, mid)
            pid = f"sweep-{_slug(key)}-{mid}"
            caption = "median over seeds, band min–max" + ("" if split else
                                                           "; the other parameters' values are folded into the band")
            if mid == "rto":
                skipped = sorted({r["mode"] for r in rows if r["rto"]["status"] == "no-failover"})
                if skipped:
                    caption += f"; {', '.join(skipped)} never fail over (no RTO)"
            if not lines:
                why = ("no design here fails over (async and escrow write every account everywhere)"
                       if mid == "rto" else "nothing measured")
                figs.append(figure(pid, f"{ylabel} vs {key}", caption, None, why))
                continue
            target = slo.get(slo_key) if slo_key else None
            hline = None
            if target is not None:
                shown = {"rto_s": f"≤ {fmt_num(target)} s", "p99_ms": f"≤ {fmt_num(target)} ms",
                         "availability": f"≥ {fmt_pct(target)}"}[str(slo_key)]
                hline = (float(target), f"SLO {shown}")
            svg = plots.sweep_metric(values, lines, key, ylabel, pid, hline=hline, percent=percent)
            figs.append(figure(pid, f"{ylabel} vs {key}", caption, svg))
        out.append(f"<h3>Against {esc(key)}</h3>")
        out.append('<div class="plots-grid">' + "\n".join(figs) + "</div>")
    if not data["params"]:
        out.append('<p class="note">No --param: one point per design, the seeds are the spread (see the table).</p>')
    return "\n".join(out)


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in key).strip("-")


# ====================================================================== tables
def point_matrix(points: Sequence[dict[str, Any]], slo: dict[str, Any]) -> str:
    """Points down, designs across: ✓ where a design met every SLO on every seed, else what it missed."""
    modes = list(dict.fromkeys(r["mode"] for r in points))
    keys = list(dict.fromkeys(_key(r) for r in points))
    by = {(_key(r), r["mode"]): r for r in points}
    head = "".join(f"<th>{design_link(m)}</th>" for m in modes)
    body = []
    for k in keys[:MAX_TABLE_ROWS]:
        cells = []
        for m in modes:
            r = by.get((k, m))
            if r is None:
                cells.append('<td class="na">—</td>')
                continue
            ms = misses(r, slo)
            broke = breakage(r)
            text = ('<span class="ok">✓ meets every SLO</span>' if not ms else
                    '<span class="bad">✗ ' + esc(", ".join(f"{v.slo} {v.measured}" for v in ms)) + "</span>")
            if broke:
                text += "<br>" + "<br>".join(f'<span class="{"bad" if p else "warn"}">broke {esc(n)}</span>'
                                             for n, p, _ in broke)
            cells.append(f"<td>{text}</td>")
        point = json.loads(k)
        body.append(f"<tr><td>{esc(params_text(point) or 'the scenario as written')}</td>{''.join(cells)}</tr>")
    more = (f'<p class="note">{len(keys) - MAX_TABLE_ROWS} more point(s) in sweep.json.</p>'
            if len(keys) > MAX_TABLE_ROWS else "")
    return (f'<table class="sweep-matrix"><thead><tr><th>point</th>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table>{more}")


def _spread(vals: list[float | None], fmt: Callable[[Any], str]) -> str:
    have = sorted(v for v in vals if v is not None)
    if not have:
        return "—"
    med = statistics.median(have)
    return fmt(med) if have[0] == have[-1] else f"{fmt(med)} ({fmt(have[0])}–{fmt(have[-1])})"


def rows_table(rows: Sequence[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((_key(r), r["mode"]), []).append(r)
    head = ["point", "design", "seeds", "RTO (s)", "RPO lost", "p99 ms", "availability", "acked/s", "declined",
            "UNAVAILABLE", "broke"]
    body = []
    for (k, mode), g in list(groups.items())[:MAX_TABLE_ROWS]:
        rto = [r["rto"]["worst_s"] if r["rto"]["status"] in ("failover", "restart") else None for r in g]
        never = sum(r["rto"]["status"] == "never" for r in g)
        rto_cell = _spread(rto, fmt_num) + (f" ({never} never)" if never else "")
        if all(r["rto"]["status"] == "no-failover" for r in g):
            rto_cell = "no failover"
        broke = sorted({n for r in g for n, _, _ in breakage(r)})
        body.append([esc(params_text(json.loads(k)) or "—"), esc(mode), ", ".join(str(r["seed"]) for r in g),
                     esc(rto_cell), esc(_spread([r["rpo_lost"] for r in g], fmt_num)),
                     esc(_spread([r["latency_ms"]["p99"] for r in g], fmt_ms)),
                     esc(_spread([r["availability"]["overall"] for r in g], fmt_pct)),
                     esc(_spread([r["acked_per_s"] for r in g], fmt_num)),
                     esc(_spread([r["declined"] for r in g], fmt_num)),
                     esc(_spread([r["unavailable"] for r in g], fmt_num)),
                     esc(", ".join(broke)) or '<span class="ok">nothing</span>'])
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    more = (f'<p class="note">{len(groups) - MAX_TABLE_ROWS} more in sweep.json.</p>'
            if len(groups) > MAX_TABLE_ROWS else "")
    return (f'<table class="sweep-rows"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>{more}'
            '<p class="note">Each cell: median over seeds (min–max when they differ).</p>')


# ====================================================================== the page
def render_sweep(data: dict[str, Any]) -> str:
    rows = data["rows"]
    scenario = data["base_scenario"]
    slo = data.get("slo") or {}
    points = fold_points(rows)
    grid = " × ".join([*(f"{p['key']} ∈ {{{', '.join(map(_fmt_value, p['values']))}}}" for p in data["params"]),
                       f"{len(data['modes'])} design(s)", f"{len(data['seeds'])} seed(s)"])
    parts = [
        f"<h1>Sweep of {esc(data['scenario'])}: {esc(', '.join(p['key'] for p in data['params']) or 'seeds only')}"
        "</h1>",
        f'<p class="sub">{esc(data.get("description", ""))}</p>',
        f'<p class="note">{esc(grid)} = {fmt_num(data["runs"])} runs on the deterministic runtime '
        f'(same seed, same trace). <code class="cmd">{esc(data.get("command", ""))}</code></p>',
        section(fold_modes(rows), scenario, lines=data["decision"]["designs"],
                banner=(data["decision"]["level"], data["decision"]["headline"])),
        "<h2>Where each design meets the SLOs</h2>",
        '<p class="note">Each cell folds the seeds: an SLO figure at its worst seed.</p>',
        point_matrix(points, slo),
        *(["<h3>How the metrics move</h3>",
           '<ul class="summary trends">' + "".join(f"<li>{esc(t)}</li>" for t in data["decision"]["trends"])
           + "</ul>"] if data["decision"].get("trends") else []),
        "<h2>Plots</h2>",
        plots_section(data),
        "<h2>Every point</h2>",
        rows_table(rows),
    ]
    title = f"geoledger sweep — {data['scenario']} — {', '.join(p['key'] for p in data['params']) or 'seeds'}"
    return page(title, "\n".join(parts))


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else (json.dumps(v) if isinstance(v, list) else str(v))

"""Run reports: one self-contained HTML page per run, next to the result.json it came from.

Who reads it: an architect deciding on a replication design and an SRE reviewing a drill.
So the page leads with the verdict (did the books stay correct?), then the SLOs (RTO,
RPO, p99, availability against the scenario's ``[slo]``), then the evidence: invariants
with counter-examples, per-region figures and plots.

Why it is built this way:

* **Self-contained and offline.** Plots are inline SVG (``simulator.plots``), styles are
  inline, and a Content-Security-Policy forbids every external load and every script, so
  the file shows the same thing in a mail attachment, a CI artefact or an air-gapped
  bank's browser — and a stray CDN link would be a visible console error, not a silent
  dependency.
* **Reads only the run outputs** (result.json, optionally history.jsonl and
  final_state.json beside it), never a live ``Simulation``: any runtime that writes the
  output contract (the deterministic one today, Ray later) gets the same report.
* **Optional series.** Figures that result.json does not carry yet are read from
  ``result["metrics"]["series"]`` when present (shape in ``schemas/result.schema.json``)
  and otherwise shown as an explicit "not recorded by this run" placeholder, never as an
  empty or invented chart.
* **Bad input is a ``ReportError``** with a message naming the file and the key; the CLI
  maps it to exit code 2.

The derived view (``RunView``: fault windows, failover timeline, runbook, SLO checks) is
``simulator.run_view``, shared with ``compare``, ``sweep`` and ``drill``; the HTML building
blocks are ``simulator.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simulator.html import (
    esc,
    figure,
    fmt_ms,
    fmt_num,
    fmt_pct,
    page,
    pre_json,
    status_badge,
    table,
)
from simulator.run_view import RunView, fails_over, load_run, runbook, slo_checks, verdict


# ====================================================================== the single-run report
def render_html(view: RunView) -> str:
    """The report page for one run (deterministic: the same outputs give the same bytes)."""
    from simulator import plots

    r = view.result
    sc = view.scenario
    checks = slo_checks(view)
    level, headline = verdict(view, checks)
    parts = [
        f"<h1>{esc(sc['name'])} — {esc(r['mode'])} — seed {esc(r['seed'])}</h1>",
        f'<p class="sub">{esc(sc.get("description", ""))}</p>',
        f'<div class="banner {level}" id="verdict" data-verdict="{level}">{esc(headline)}</div>',
        '<dl class="facts">',
        f"<dt>scenario</dt><dd>{esc(sc['name'])}</dd>",
        f"<dt>mode</dt><dd>{esc(r['mode'])}</dd>",
        f"<dt>seed</dt><dd>{esc(r['seed'])}</dd>",
        f"<dt>runtime</dt><dd>{esc(r.get('runtime', '?'))}</dd>",
        f"<dt>regions</dt><dd>{esc(', '.join(view.regions))}</dd>",
        f"<dt>load / quiesce</dt><dd>{fmt_num(view.duration)} s / {fmt_num(view.quiesce)} s</dd>",
        f"<dt>replay</dt><dd><code class=\"cmd\" id=\"replay\">{esc(r['replay'])}</code></dd>",
        f"<dt>trace digest</dt><dd><code>{esc(r.get('digest', ''))}</code></dd>",
        "</dl>",
    ]
    parts += [f'<p class="note">{esc(n)}</p>' for n in view.notes]
    parts.append("<h2>Service levels</h2>")
    parts.append(table(["SLO", "target", "measured", "verdict", "note"],
                       [[esc(c.name), esc(c.target), esc(c.measured), status_badge(c.ok), esc(c.note)] for c in checks],
                       cls="slo", raw=True))
    parts.append("<h2>Invariants</h2>")
    rows = []
    for name, v in r["invariants"].items():
        if v["ok"]:
            st = '<span class="ok">holds</span>'
        elif v["promised"]:
            st = '<span class="bad">VIOLATED</span>'
        else:
            st = '<span class="warn">violated (not promised)</span>'
        fv = v.get("first_violation")
        rows.append([esc(name), "yes" if v["promised"] else "no", st, pre_json(fv) if fv else ""])
    parts.append(table(["invariant", "promised by mode", "verdict", "first counter-example"], rows,
                       cls="invariants", raw=True))
    parts.append("<h2>Per region</h2>")
    parts.append(_region_table(view))
    parts.append(_failover_section(view))
    parts.append("<h2>Plots</h2>")
    parts.append(_plots(view, plots))
    parts.append("<h2>Run</h2>")
    parts.append(_run_facts(view))
    parts.append(f"<details><summary>result.json (the JSON this report was made from)</summary>"
                 f"{pre_json(r, limit=10**9)}</details>")
    title = f"geoledger report — {sc['name']} — {r['mode']} — seed {r['seed']}"
    return page(title, "\n".join(parts))


def _region_table(view: RunView) -> str:
    m = view.metrics
    h = view.history
    lag = view.series("replication_lag_ms")
    rows: list[list[str]] = []
    for i, name in enumerate(view.regions):
        reg = m["regions"][name]
        if h is not None:
            lat = h.latency_summary(i)
            av_in, av_out = h.availability(view.windows, i)
        else:
            lat = dict(reg.get("latency_ms", {}).get("transfer") or {})
            lat.setdefault("p95", None)
            av_in = av_out = None
        lag_cell = "—"
        if lag is not None and name in lag:
            vals = [x for x in lag[name] if x is not None]
            lag_cell = f"{fmt_ms(float(np.percentile(vals, 99)))} / {fmt_ms(max(vals))}" if vals else "—"
        acked = reg["acked_transfers"]
        rows.append([esc(name), fmt_num(acked), fmt_num(round(acked / view.duration, 1)),
                     *(fmt_ms(lat.get(k)) for k in ("p50", "p95", "p99", "max")),
                     fmt_pct(av_in), fmt_pct(av_out), lag_cell])
    tot = m["latency_ms"]
    p95 = h.latency_summary().get("p95") if h is not None else None
    av = m["availability"]
    lg = m["replication_lag_ms"]
    rows.append(["all regions", fmt_num(m["acked_transfers"]), fmt_num(m["acked_per_s"]), fmt_ms(tot.get("p50")),
                 fmt_ms(p95), fmt_ms(tot.get("p99")), fmt_ms(tot.get("max")), fmt_pct(av.get("inside_faults")),
                 fmt_pct(av.get("outside_faults")), f"{fmt_ms(lg.get('p99'))} / {fmt_ms(lg.get('max'))}"])
    headers = ["region", "acked writes", "writes/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "avail. in faults",
               "avail. outside", "repl. lag p99 / max ms"]
    clock = ("virtual time (the deterministic runtime's clock: simulated WAN, no CPU cost)"
             if view.result.get("runtime", "deterministic") == "deterministic" else "wall-clock time")
    note = (f"Latency in {clock}: writes submitted at the region, answered (timeouts excluded); "
            + ("computed from history.jsonl." if h is not None else
               f"{view.history_note}: per-region figures are result.json's 'transfer' kind, p95 and per-region "
               "availability unavailable.")
            + " Per-region replication lag "
            + ("from metrics.series (p99 / max of per-second values)." if lag is not None else
               "is not recorded by this run (metrics.series.replication_lag_ms); the last row is the whole run's."))
    return table(headers, rows, cls="regions", raw=True,
                 row_classes=[""] * len(view.regions) + ["total"]) + f'<p class="note">{esc(note)}</p>'


def _failover_section(view: RunView) -> str:
    incidents = runbook(view)
    out = ["<h2>Failover timeline</h2>"]
    if not incidents:
        out.append('<p class="note">No faults were injected in this run.</p>')
        return "\n".join(out)
    src = ("recorded by the run (metrics.series.timeline)" if view.timeline_recorded else
           "derived from result.json (faults from the scenario, promotions, RTO); detection, fencing and "
           "rejoin are not recorded by this run")
    out.append(f'<p class="note">Events {esc(src)}.</p>')
    for inc in incidents:
        rto = ""
        if inc.measured and not fails_over(view.result["mode"]):
            rto = " — no failover (every region writes every account)"
        elif inc.measured:
            rto = f" — RTO {fmt_num(inc.rto_s)} s" if inc.rto_s is not None else " — never recovered"
        out.append(f"<h3>{esc(inc.window.label)} at {fmt_num(inc.window.start)} s{esc(rto)}</h3>")
        rows = []
        for s in inc.steps:
            since = "" if s.t is None else f"+{s.t - inc.window.start:.3f} s"
            rows.append([esc(s.step), fmt_num(s.t) if s.t is not None else '<span class="na">—</span>', since,
                         esc(s.region or ""), esc(s.detail)])
        out.append(table(["step", "t (s)", "since fault", "region", "detail"], rows, cls="runbook", raw=True))
    return "\n".join(out)


def _plots(view: RunView, plots: Any) -> str:
    windows = view.plain_windows()
    m = view.metrics
    out = []
    per_region = {name: m["regions"][name]["acked_per_s"] for name in view.regions}
    out.append(figure("throughput", "Throughput per region",
                      "acknowledged writes per second (by completion second); fault windows shaded",
                      plots.throughput(per_region, windows, view.duration, view.horizon)))
    if view.history is not None:
        t, lines = view.history.per_second(view.horizon)
        svg = plots.latency(t, lines, windows, view.duration, view.slo.get("p99_ms"), view.horizon)
        out.append(figure("latency", "Write latency percentiles over time",
                          "p50 / p95 / p99 / max of writes issued in each second (history.jsonl)", svg))
    else:
        out.append(figure("latency", "Write latency percentiles over time", "from history.jsonl", None,
                          f"{view.history_note}; whole-run figures are in the table above."))
    lag = view.series("replication_lag_ms")
    lg = m["replication_lag_ms"]
    if lag is not None:
        lines = {k: v for k, v in lag.items() if k != "t"}
        out.append(figure("lag", "Replication lag", "per receiving region, from metrics.series.replication_lag_ms",
                          plots.series_lines(lag["t"], lines, windows, view.duration, "lag (ms)", "lag", log=True,
                                             horizon=view.horizon)))
    else:
        out.append(figure("lag", "Replication lag", "per region over time", None,
                          "result.json has no metrics.series.replication_lag_ms. Whole-run lag: "
                          f"p50 {fmt_ms(lg.get('p50'))} ms, p99 {fmt_ms(lg.get('p99'))} ms, "
                          f"max {fmt_ms(lg.get('max'))} ms over {fmt_num(lg.get('count'))} shipped entries."))
    tw = [(w.start, w.end, w.kind, w.targets) for w in view.windows]
    ev = [(e.t, e.event, e.region, e.detail) for e in view.events]
    caption = ("faults, detection, promotion, fencing, recovery per region"
               + ("" if view.timeline_recorded else " (derived from result.json: detection, fencing and rejoin "
                  "not recorded by this run)"))
    out.append(figure("timeline", "Failover timeline", caption,
                      plots.timeline(view.regions, tw, ev, view.duration, view.quiesce)))
    transit = view.series("transit_balance")
    if transit is not None:
        lines = {("all replicas" if k == "value" else k): v for k, v in transit.items() if k != "t"}
        out.append(figure("transit", "Money in transit", "balance of the transit accounts (minor units); "
                          "must return to 0 once every cross-unit credit leg has landed",
                          plots.series_lines(transit["t"], lines, windows, view.duration,
                                             "minor units", "transit", zero_line=True,
                                             horizon=view.horizon)))
    else:
        end = ""
        if view.transit_final is not None:
            end = " At the end of the run (final_state.json): " + ", ".join(
                f"{k} {v:,}" for k, v in view.transit_final.items()) + "."
        out.append(figure("transit", "Money in transit", "transit account balance over time", None,
                          "result.json has no metrics.series.transit_balance." + end))
    return "\n".join(out)


def _run_facts(view: RunView) -> str:
    r, m = view.result, view.metrics
    sc = view.scenario
    rows = []
    hs = r.get("history_summary") or {}
    if hs:
        rows.append(["operations", fmt_num(hs.get("operations"))])
        rows.append(["by outcome", ", ".join(f"{k} {fmt_num(v)}" for k, v in hs.get("by_outcome", {}).items())])
        rows.append(["write results", ", ".join(f"{k} {fmt_num(v)}" for k, v in hs.get("by_result", {}).items())])
        rows.append(["retried", fmt_num(hs.get("retried"))])
    net = m.get("network") or {}
    if net:
        per = net["messages"] / m["acked_transfers"] if m["acked_transfers"] else None
        per_text = fmt_num(round(per, 2)) if per else "—"
        rows.append(["WAN messages / bytes", f"{fmt_num(net['messages'])} / {fmt_num(net['bytes'])} "
                     f"(dropped {fmt_num(net.get('dropped'))}; {per_text} per acked write)"])
    rows.append(["divergence reports", fmt_num(m.get("divergence_reports", 0))])
    s = m.get("sim") or {}
    if s:
        rows.append(["simulated", f"{fmt_num(s.get('virtual_s'))} s virtual in {fmt_num(s.get('wall_s'))} s wall, "
                     f"{fmt_num(s.get('events'))} events"])
    out = table(["figure", "value"], rows, cls="facts-table")
    if sc.get("chaos"):
        chaos_rows = [[fmt_num(f["at"]), f["fault"], ",".join(f["target"]), fmt_num(f["duration"]),
                       ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("at", "fault", "target", "duration"))]
                      for f in sc["chaos"]]
        out += "<h3>Chaos schedule</h3>" + table(["at (s)", "fault", "target", "duration (s)", "parameters"],
                                                 chaos_rows)
    rtt = sc.get("rtt_ms")
    if rtt:
        out += "<h3>Round-trip times (ms)</h3>" + table(["", *view.regions],
                                                        [[a, *(fmt_num(x) for x in row)]
                                                         for a, row in zip(view.regions, rtt, strict=False)])
    return out


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Render the report for a run (result.json or its directory); default beside it as report.html."""
    view = load_run(path)
    assert view.source is not None
    target = Path(out) if out is not None else view.source.parent / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(view))
    return target

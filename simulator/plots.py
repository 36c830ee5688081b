"""Plots for run reports, as inline SVG strings (matplotlib, no pyplot, no browser JS).

Why SVG from matplotlib's object API: the report must open offline from one file, so
every chart is vector markup embedded in the HTML; the object API (``Figure`` without
``pyplot``) keeps no global state, so it is safe to call from any thread or process and
never needs a display. Rendering is made byte-for-byte deterministic (fixed hash salt, no
date metadata) so that the same run always gives the same report, and every SVG's ids are
prefixed with the plot's name so several plots can share one HTML document.

Nothing here knows about result.json: callers pass plain series. Fault windows are
``(start_s, end_s, label)`` tuples.
"""

from __future__ import annotations

import functools
import io
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

Window = tuple[float, float, str]
P = ParamSpec("P")

WIDTH_IN = 11.0
RC: Any = {  # rcParams for every report plot
    "svg.fonttype": "none",  # text stays text: small files, selectable, searchable
    "svg.hashsalt": "geoledger",  # deterministic clip-path/marker ids
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
FAULT_COLORS = {
    "crash": "#d62728", "node-loss": "#7f0000", "partition": "#ff7f0e", "partition-partial": "#ff7f0e",
    "partition-oneway": "#ff9f4a",
    "partition-bridge": "#e377c2", "pause": "#9467bd", "latency": "#bcbd22", "loss": "#bcbd22",
    "duplicate": "#bcbd22", "reorder": "#bcbd22", "clock-skew": "#17becf", "corrupt": "#8c564b",
}
EVENT_STYLE = {  # event -> (marker, color, label)
    "fault": ("v", "#d62728", "fault began"),
    "healed": ("^", "#2ca02c", "fault healed"),
    "detected": ("D", "#ff7f0e", "failure detected"),
    "fenced": ("s", "#7f7f7f", "old home fenced"),
    "promoted": ("*", "#1f77b4", "new home / leader"),
    "writes_resumed": ("o", "#2ca02c", "writes resumed"),
    "rejoined": ("P", "#9467bd", "rejoined"),
    "divergence": ("X", "#8c564b", "divergence reported"),
}


def _styled(fn: Callable[P, str]) -> Callable[P, str]:
    """Run a plot function under the report's rcParams (they apply when artists are made)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        with rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def color_for(i: int) -> str:
    """Stable colour per series index (tab10), so a region or mode keeps its colour in every plot."""
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
    return palette[i % len(palette)]


def _figure(height: float = 3.2, width: float = WIDTH_IN, top_in: float = 0.4) -> Figure:
    """A figure with fixed margins (in inches), so the time axes of every plot in a report
    line up vertically and a fault band reads straight down the page."""
    with rc_context(RC):
        fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - top_in / height)
    return fig


def to_svg(fig: Figure, plot_id: str) -> str:
    """The figure as an inline <svg> element: no XML prolog or DOCTYPE, ids namespaced by plot."""
    buf = io.StringIO()
    with rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    if ids:
        pattern = re.compile(r'(\bid="|url\(#|href="#)(' + "|".join(re.escape(i) for i in sorted(ids)) + r')\b')
        text = pattern.sub(lambda m: f"{m.group(1)}{plot_id}-{m.group(2)}", text)
    return text.replace("<svg ", f'<svg class="plot-svg" data-plot="{plot_id}" role="img" ', 1)


def _legend(ax: Any, ncols: int = 8) -> None:
    """Legend above the axes, so it never hides data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=ncols, fontsize=8, borderaxespad=0.2)


def _shade(ax: Any, windows: Sequence[Window], duration: float | None, label_faults: bool = True,
           horizon: float | None = None) -> None:
    """Fault windows as shaded bands (labelled once per kind), the end of load marked, and the
    x axis fixed to the whole run so every time plot of a report lines up."""
    seen: set[str] = set()
    for start, end, label in windows:
        kind = label.split(" ")[0]
        ax.axvspan(start, max(end, start + 0.05), color=FAULT_COLORS.get(kind, "#d62728"), alpha=0.13, lw=0,
                   label=(f"fault: {kind}" if label_faults and kind not in seen else None))
        seen.add(kind)
    if duration is not None:
        ax.axvline(duration, color="#555", lw=0.8, ls=":")
        ax.text(duration, 0.98, " load stops", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                color="#555")
    if horizon:
        ax.set_xlim(0, horizon)


@_styled
def throughput(per_region: Mapping[str, Sequence[float]], windows: Sequence[Window], duration: float,
               horizon: float | None = None, plot_id: str = "throughput") -> str:
    """Acknowledged transfers per second per region (by completion second), faults shaded."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(per_region.items()):
        v = np.asarray(values, float)
        ax.plot(np.arange(len(v)) + 0.5, v, color=color_for(i), lw=1.4, label=name)
    _shade(ax, windows, duration, horizon=horizon)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("acked writes / s")
    ax.set_ylim(bottom=0)
    _legend(ax)
    return to_svg(fig, plot_id)


@_styled
def latency(t: Sequence[float], lines: Mapping[str, Sequence[float]], windows: Sequence[Window],
            duration: float, slo_p99_ms: float | None, horizon: float | None = None,
            plot_id: str = "latency") -> str:
    """Latency percentiles (ms, log scale) of requests issued in each second; the p99 SLO as a line."""
    fig = _figure()
    ax = fig.add_subplot()
    styles = {"p50": ("#2ca02c", "-"), "p95": ("#ff7f0e", "-"), "p99": ("#d62728", "-"), "max": ("#7f7f7f", ":")}
    for i, (name, values) in enumerate(lines.items()):
        color, ls = styles.get(name, (color_for(i), "-"))
        v = np.asarray(values, float)
        ax.plot(np.asarray(t, float), np.where(v > 0, v, np.nan), color=color, ls=ls, lw=1.4, label=name,
                marker="." if len(v) < 40 else None)
    if slo_p99_ms:
        ax.axhline(slo_p99_ms, color="#d62728", lw=0.8, ls="--", label=f"SLO p99 {slo_p99_ms:g} ms")
    _shade(ax, windows, duration, horizon=horizon)
    ax.set_yscale("log")
    ax.set_xlabel("virtual time (s), by the second the request was issued")
    ax.set_ylabel("latency (ms)")
    _legend(ax)
    return to_svg(fig, plot_id)


@_styled
def series_lines(t: Sequence[float], lines: Mapping[str, Sequence[float | None]], windows: Sequence[Window],
                 duration: float, ylabel: str, plot_id: str, log: bool = False, zero_line: bool = False,
                 horizon: float | None = None, hline: tuple[float, str] | None = None) -> str:
    """Any set of time series on one axis: lag per region, transit balance, or one line per
    mode in a comparison. ``None``/NaN values leave gaps (nothing measured that second)."""
    fig = _figure()
    ax = fig.add_subplot()
    tt = np.asarray(t, float)
    for i, (name, values) in enumerate(lines.items()):
        v = np.array([np.nan if x is None else float(x) for x in values], float)
        if log:
            v = np.where(v > 0, v, np.nan)
        ax.plot(tt, v, color=color_for(i), lw=1.4, label=name, drawstyle="steps-post" if zero_line else "default",
                marker="." if len(v) < 40 else None)
    if zero_line:
        ax.axhline(0, color="#333", lw=0.8)
    if hline is not None:
        ax.axhline(hline[0], color="#d62728", lw=0.8, ls="--", label=hline[1])
    _shade(ax, windows, duration, horizon=horizon)
    if log:
        ax.set_yscale("log")
    elif not zero_line:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel(ylabel)
    _legend(ax)
    return to_svg(fig, plot_id)


@_styled
def timeline(regions: Sequence[str], windows: Sequence[tuple[float, float, str, Sequence[str]]],
             events: Sequence[tuple[float, str, str | None, str]], duration: float, quiesce: float,
             plot_id: str = "timeline") -> str:
    """Gantt-style failover timeline: a lane per region with its fault bars and event markers.

    ``windows`` are ``(start, end, kind, targets)``; ``events`` are ``(t, event, region, detail)``
    (region None: drawn on the top "run" lane). The first lane shows load and quiesce phases.
    Each marker carries its time, so the chart reads as a runbook without the table.
    """
    lanes = ["run", *regions]
    fig = _figure(height=1.3 + 0.5 * len(lanes))
    ax = fig.add_subplot()
    y = {name: len(lanes) - 1 - i for i, name in enumerate(lanes)}
    ax.broken_barh([(0, duration)], (y["run"] - 0.3, 0.6), color="#c7dcef")
    ax.broken_barh([(duration, quiesce)], (y["run"] - 0.3, 0.6), color="#e5e5e5")
    ax.text(duration / 2, y["run"], "load", ha="center", va="center", fontsize=8)
    ax.text(duration + quiesce / 2, y["run"], "quiesce", ha="center", va="center", fontsize=8)
    seen: set[str] = set()
    for start, end, kind, targets in windows:
        for target in targets:
            if target not in y:
                continue
            ax.broken_barh([(start, max(end - start, 0.05))], (y[target] - 0.3, 0.6),
                           color=FAULT_COLORS.get(kind, "#d62728"), alpha=0.55,
                           label=f"fault: {kind}" if kind not in seen else None)
            ax.text(start, y[target] + 0.34, f"{kind} {start:g}–{end:g} s", va="bottom", fontsize=7.5,
                    color="#222")
            seen.add(kind)
    last: dict[str, tuple[float, bool]] = {}  # lane -> (x of the last time label, was it below)
    close = (duration + quiesce) * 0.03
    for t, event, region, _detail in events:
        if event in ("fault", "healed"):
            continue  # drawn as the bars themselves
        marker, color, label = EVENT_STYLE.get(event, ("o", "#333", event))
        lane = region if region in y else "run"
        ax.plot([t], [y[lane]], marker=marker, color=color, ms=12 if marker == "*" else 9, ls="none", mec="white",
                mew=0.8, label=label if event not in seen else None, zorder=5)
        prev = last.get(lane)
        below = not (prev is not None and t - prev[0] < close and prev[1])  # flip side when crowded
        ax.text(t, y[lane] + (-0.34 if below else 0.34), f"{t:.2f}", ha="center", va="top" if below else "bottom",
                fontsize=7, color=color, zorder=6)
        last[lane] = (t, below)
        seen.add(event)
    if not windows:
        ax.text(duration / 2, y["run"] - 0.75, "no faults injected in this run", ha="center", fontsize=8,
                color="#555")
    ax.set_yticks([y[name] for name in lanes], lanes)
    ax.set_ylim(-0.8, len(lanes) - 0.2)
    ax.set_xlim(0, duration + quiesce)
    ax.set_xlabel("virtual time (s)")
    ax.grid(axis="y", visible=False)
    _legend(ax)
    return to_svg(fig, plot_id)


@_styled
def cdf(samples: Mapping[str, np.ndarray], plot_id: str = "latency-cdf", slo_p99_ms: float | None = None) -> str:
    """Latency distribution per mode as a complementary CDF (log-log): the tails are where
    modes differ, and a mean or a p50 hides them."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(samples.items()):
        v = np.sort(np.asarray(values, float))
        v = v[np.isfinite(v) & (v > 0)]
        if not len(v):
            continue
        frac = 1.0 - np.arange(len(v)) / len(v)
        step = max(1, len(v) // 2000)  # thin to keep the SVG small; keep the tail exact
        idx = np.unique(np.concatenate([np.arange(0, len(v), step), np.arange(max(0, len(v) - 200), len(v))]))
        ax.plot(v[idx], frac[idx], color=color_for(i), lw=1.4, label=name, drawstyle="steps-post")
    if slo_p99_ms:
        ax.axvline(slo_p99_ms, color="#d62728", lw=0.8, ls="--", label=f"SLO p99 {slo_p99_ms:g} ms")
    ax.axhline(0.01, color="#999", lw=0.6, ls=":")
    ax.text(1.0, 0.01, "p99 ", transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=7, color="#777")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of writes slower")
    _legend(ax)
    return to_svg(fig, plot_id)


@_styled
def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], ylabel: str,
                 plot_id: str) -> str:
    """One bar per (group, series), grouped along x: a figure per design compared side by
    side (e.g. p99 per region, a bar per region, a group per design). A missing value
    (None) leaves its slot empty and is marked "n/a" at the axis, never drawn as zero."""
    fig = _figure(height=3.0, width=5.6, top_in=0.55)
    ax = fig.add_subplot()
    x = np.arange(len(groups), dtype=float)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        pos = x - 0.4 + width * (i + 0.5)
        heights = np.array([np.nan if v is None else float(v) for v in values], float)
        ax.bar(pos, np.nan_to_num(heights), width * 0.92, color=color_for(i), label=name)
        for p, h in zip(pos, heights, strict=True):
            if not np.isfinite(h):
                ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=7, color="#555")
    ax.set_xticks(x, [textwrap.fill(g, 16) for g in groups], fontsize=8)  # long design names on two lines
    ax.set_ylabel(ylabel)
    _legend(ax, ncols=4)
    return to_svg(fig, plot_id)


@_styled
def sweep_metric(xs: Sequence[Any], lines: Mapping[str, Mapping[str, Sequence[Any]]], xlabel: str, ylabel: str,
                 plot_id: str, hline: tuple[float, str] | None = None, percent: bool = False) -> str:
    """One metric against one swept parameter: a line per design through the median over
    seeds, a band from the min to the max (the spread the seeds gave), and marks where a
    run broke an invariant: a red cross where one broke what its design promises, an orange
    ring where it broke something the design does not promise, a red triangle at the top
    where a run never recovered.

    ``xs`` are the parameter's values (numbers: a numeric axis, log when they span 20x or
    more; anything else: one slot per value). ``lines`` maps a label to ``median``, ``lo``,
    ``hi`` (None where nothing was measured) and the flags ``broken``, ``unpromised``,
    ``never`` per x."""
    fig = _figure(height=3.2, width=5.6, top_in=0.55)
    ax = fig.add_subplot()
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
    pos = np.asarray(xs, float) if numeric else np.arange(len(xs), dtype=float)
    seen: set[str] = set()
    top_marks: list[tuple[float, str]] = []
    for i, (name, d) in enumerate(lines.items()):
        color = color_for(i)
        med = np.array([np.nan if v is None else float(v) for v in d["median"]], float)
        lo = np.array([np.nan if v is None else float(v) for v in d["lo"]], float)
        hi = np.array([np.nan if v is None else float(v) for v in d["hi"]], float)
        ax.fill_between(pos, lo, hi, color=color, alpha=0.15, lw=0)
        ax.plot(pos, med, color=color, lw=1.6, marker="o", ms=4, label=name)
        for k in range(len(pos)):
            if d["broken"][k]:
                ax.plot([pos[k]], [med[k] if np.isfinite(med[k]) else 0], marker="X", color="#b3261e", ms=11,
                        mec="white", mew=0.8, ls="none", zorder=6,
                        label="promised invariant broken" if "broken" not in seen else None)
                seen.add("broken")
            elif d["unpromised"][k]:
                ax.plot([pos[k]], [med[k] if np.isfinite(med[k]) else 0], marker="o", mfc="none", mec="#e8710a",
                        mew=2.0, ms=12, ls="none", zorder=6,
                        label="broke an invariant it does not promise" if "unpromised" not in seen else None)
                seen.add("unpromised")
            if d["never"][k]:
                top_marks.append((float(pos[k]), color))
    if hline is not None:
        ax.axhline(hline[0], color="#d62728", lw=0.9, ls="--", label=hline[1])
    for x, color in top_marks:
        ax.plot([x], [1.0], transform=ax.get_xaxis_transform(), marker="^", color="#b3261e", mec=color, mew=1.2,
                ms=9, ls="none", clip_on=False, zorder=7, label="never recovered" if "never" not in seen else None)
        seen.add("never")
    if numeric and len(pos) > 1 and pos.min() > 0 and pos.max() / pos.min() >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(pos, [str(x) for x in xs])
    else:
        ax.set_xticks(pos, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if percent:
        ax.yaxis.set_major_formatter(lambda v, _: f"{v * 100:.4g}%")
    else:
        ax.set_ylim(bottom=0)
        highest = max((float(v) for d in lines.values() for v in d["hi"] if v is not None), default=0.0)
        if highest <= 0 and (hline is None or hline[0] <= 0):
            ax.set_ylim(0, 1)  # nothing measured above zero: say 0 plainly, not on a 0..0.05 scale
            ax.set_yticks([0, 1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _legend(ax, ncols=3)
    return to_svg(fig, plot_id)

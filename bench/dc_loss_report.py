"""The datacentre-loss comparison (`bench.dc_loss_bench`) as a page an architect reads.

One HTML file, offline (inline SVG, no script): what was lost and how, a decision table —
each design's promise when a datacentre goes with its region, and whether the run kept it
(RPO), how long Changchun's customers waited (RTO), what it cost while nothing failed
(p50/p99 per region) — then the same figures as plots. It reads only the bench's result
rows, so `python -m bench.dc_loss_report bench/results/dc_loss.json` renders a saved run
again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simulator.html import esc, figure, page, status_badge, table
from simulator.plots import grouped_bars

CAVEAT = ("All Cassandra nodes share one machine's loopback: cross-datacentre copies trail by milliseconds, "
          "not a WAN's tens, so a design without an RPO promise can measure 0 here by luck "
          "(tests/test_cassandra_datacentres.py cuts a datacentre off first and shows LOCAL_QUORUM losing "
          "acknowledged writes). Latencies are from two shared cores.")


def _kept(row: dict[str, Any]) -> bool | None:
    """Whether the run kept what the design promises about RPO (None: it promises nothing)."""
    if not row.get("promises_rpo0"):
        return None
    return row["rpo_lost_acknowledged"] == 0


def _decision(rows: Sequence[dict[str, Any]]) -> str:
    regions = list(rows[0]["latency_before_loss"]) if rows else []
    head = ["design", "promise when a datacentre is lost", "RPO: acknowledged, then lost", "promise kept",
            "RTO s", *(f"{r} p50 / p99 ms" for r in regions), "acknowledged"]
    body = []
    for row in rows:
        lat = [f"{esc(v['p50_ms'])} / {esc(v['p99_ms'])}" for v in row["latency_before_loss"].values()]
        rto = "never" if row["rto_s"] is None else f"{row['rto_s']:.2f}"
        body.append([esc(row["design"]), esc(row.get("promise", "—")), esc(row["rpo_lost_acknowledged"]),
                     status_badge(_kept(row), "kept", "BROKEN"), esc(rto), *lat, esc(row["acknowledged"])])
    return table(head, body, cls="decision", raw=True)


def _summary(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    answered = [r for r in rows if r["rto_s"] is not None]
    if answered:
        fastest = min(answered, key=lambda r: r["rto_s"])
        lines.append(f"Fastest back for the lost region's customers: <b>{esc(fastest['design'])}</b> "
                     f"({fastest['rto_s']:.2f} s).")
    broken = [r["design"] for r in rows if _kept(r) is False]
    lines.append("Every design that promises RPO 0 kept it." if not broken else
                 f"<b class='bad'>Broke its RPO promise: {esc(', '.join(broken))}.</b>")
    lucky = [r["design"] for r in rows if _kept(r) is None and r["rpo_lost_acknowledged"] == 0]
    if lucky:
        lines.append(f"Lost nothing without promising it (see the caveat): {esc(', '.join(lucky))}.")
    return "".join(f"<p>{line}</p>" for line in lines)


def render(rows: Sequence[dict[str, Any]], command: str) -> str:
    """The report page for the bench's result rows."""
    designs = [r["design"] for r in rows]
    regions = list(rows[0]["latency_before_loss"]) if rows else []
    rto = grouped_bars(designs, {"RTO (s)": [r["rto_s"] for r in rows]}, "seconds", "dc-rto")
    p99 = grouped_bars(designs, {reg: [r["latency_before_loss"][reg]["p99_ms"] for r in rows] for reg in regions},
                       "p99 latency (ms)", "dc-p99")
    body = (
        "<h1>A region lost with its datacentre</h1>"
        "<p>Changchun's region process and Changchun's Cassandra node die at once, under load. Storage-level "
        "replication (Cassandra keeps each region's keyspace in every datacentre; the runbook restores the "
        "region from another datacentre's copy) against application-level replication (each keyspace in its "
        "own datacentre only; the design fails over).</p>"
        f"<p><code>{esc(command)}</code></p>{_summary(rows)}{_decision(rows)}"
        f"<p class='mute'>{esc(CAVEAT)}</p>"
        "<div class='plots-grid'>"
        + figure("dc-rto", "Time to recover", "from the loss to the first acknowledgement to a Changchun customer",
                 rto)
        + figure("dc-p99", "What each design costs while nothing fails",
                 "p99 client latency per paying customer's region, before the loss", p99)
        + "</div>"
    )
    return page("geoledger — datacentre loss", body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render a saved bench.dc_loss_bench result as its HTML report.")
    ap.add_argument("result", type=Path, help="the bench's JSON (bench/results/dc_loss.json)")
    ap.add_argument("--out", type=Path, help="where to write the page (default: beside the JSON, .html)")
    args = ap.parse_args(argv)
    try:
        saved = json.loads(args.result.read_text())
        rows, command = saved["results"], saved.get("command", f"python -m bench.dc_loss_bench ({args.result})")
    except (OSError, ValueError, KeyError, TypeError) as e:
        ap.error(f"{args.result}: not a dc_loss_bench result ({e})")
    out = args.out or args.result.with_suffix(".html")
    out.write_text(render(rows, command))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The decision section that opens `compare` and `sweep` pages: which designs meet the
scenario's SLOs, what each one broke (promised or not, and by how much), what each one
promises against what the scenario put it through, and what each one cost the business.

Why a module of its own: the architect's answer must be read from the measured rows and
nothing else, the same way on a one-seed comparison and on a sweep of hundreds of runs.
So everything here works on *rows* (`measure(result)`: one run's figures, flat and
JSON-ready, as sweep.json stores them) and on rows folded over seeds (`worst_of`), never
on prose written by hand: a sentence appears only when a row supports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos import fault_title
from replication.config import INVARIANTS
from simulator.html import esc, fmt_ms, fmt_num, fmt_pct, money
from simulator.run_view import OUTAGE_FAULTS, fails_over

DOC = Path(__file__).resolve().parent.parent / "replication" / "README.md"
INVARIANT_ORDER = INVARIANTS


@dataclass(frozen=True)
class Design:
    label: str
    gist: str
    anchor: str  # heading anchor in replication/README.md


_QUORUM = "quorum-mode-each-unit-behind-its-own-raft-log-raftpy-quorumpy-unit_statepy"
DESIGNS: dict[str, Design] = {d.label: d for d in (
    Design("async", "any region writes against its local view and ships later", "modes"),
    Design("unit+async", "each unit written at its home region only, shipped later", "modes"),
    Design("unit+semi-sync", "each unit written at its home, acknowledged once a majority of regions holds it",
           "modes"),
    Design("escrow", "any region writes within its share of each balance", "escrow-design"),
    Design("quorum", "a Raft log per unit, led from the unit's home", _QUORUM),
    Design("quorum+unit", "a Raft log per unit, led from the unit's home", _QUORUM),
    Design("quorum+region", "a Raft log per home region", _QUORUM),
    Design("quorum+ledger", "one Raft log for the whole ledger, one leader", _QUORUM),
)}


def design(label: str) -> Design:
    return DESIGNS.get(label) or Design(label, "", "modes")


def design_link(label: str) -> str:
    d = design(label)
    return (f'<a href="{esc(DOC.as_uri())}#{esc(d.anchor)}" title="{esc(d.gist)}">{esc(label)}</a>')


# ====================================================================== one run -> one row
def measure(result: dict[str, Any]) -> dict[str, Any]:
    """A run's figures as one flat, JSON-ready row: what sweep.json stores per point and what
    every decision below reads. Only result.json is read (any runtime's)."""
    m, sc = result["metrics"], result["scenario"]
    inv = result["invariants"]
    hs = result.get("history_summary") or {}
    by_result = hs.get("by_result") or {}
    acked = m["acked_transfers"]
    net = m.get("network") or {}
    regions: dict[str, Any] = {}
    for name in sc["regions"]:
        reg = m["regions"][name]
        lat = reg.get("write_latency_ms") or (reg.get("latency_ms") or {}).get("transfer") or {}
        regions[name] = {"p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
                         "acked_per_s": round(reg["acked_transfers"] / float(sc["duration"]), 1)}
    av = dict(m["availability"])
    av.setdefault("overall", None)
    return {
        "mode": result["mode"], "seed": result["seed"], "runtime": result.get("runtime", "deterministic"),
        "digest": result.get("digest"), "slo": dict(sc.get("slo") or {}),
        "invariants": {k: {"promised": bool(v["promised"]), "ok": bool(v["ok"])} for k, v in inv.items()},
        "violated": list(result["violated"]),
        "broken_not_promised": [k for k, v in inv.items() if not v["ok"] and not v["promised"]],
        "overdraft": _overdraft(m, inv),
        "rpo_lost": int(m["rpo"]["lost_acknowledged"]),
        "rpo_window_s": m["rpo"].get("window_s"),
        "rto": _rto(result),
        "latency_ms": {"p50": m["latency_ms"].get("p50"), "p99": m["latency_ms"].get("p99")},
        "regions": regions,
        "acked_per_s": m["acked_per_s"],
        "availability": {k: av.get(k) for k in ("overall", "inside_faults", "outside_faults")},
        "declined": int(by_result.get("EXCEEDS_CREDITS", 0)),
        "unavailable": int(by_result.get("UNAVAILABLE", 0)),
        "timeouts": int((hs.get("by_outcome") or {}).get("timeout", 0)),
        "retried": int(hs.get("retried", 0)),
        "wan_messages_per_write": round(net["messages"] / acked, 3) if acked and net else None,
    }


def _overdraft(m: dict[str, Any], inv: dict[str, Any]) -> dict[str, Any]:
    od = m.get("overdraft")
    if od is not None:
        return {"accounts": int(od["accounts"]), "amount": int(od["amount"])}
    fv = (inv.get("no_overdraft") or {}).get("first_violation") or {}  # results written before the metric
    return {"accounts": int(fv.get("overdrawn_accounts", 1 if fv else 0)), "amount": None}


def _chaos_labels(sc: dict[str, Any]) -> dict[tuple[float, str], tuple[str, float]]:
    """(start, first target) -> (label, end) for the scenario's faults (ends clipped to the load)."""
    out = {}
    for f in sc.get("chaos", []):
        label = f"city-loss {f['city']}" if f.get("city") else fault_title(f["fault"], f)
        out[(round(float(f["at"]), 6), f["target"][0])] = (label, min(f["at"] + f["duration"], sc["duration"]))
    return out


def _rto(result: dict[str, Any]) -> dict[str, Any]:
    """Recovery, in words a runbook uses. `status`: "no-outage" (nothing went down),
    "no-failover" (a design where every region writes every account: the 5 ms such a
    design "takes" is not a recovery time), "failover" (a new home or leader took over
    during the fault), "restart" (nobody took over: writes came back with the region),
    "never" (no acknowledged write on the affected accounts after the fault)."""
    m, sc = result["metrics"], result["scenario"]
    labels = _chaos_labels(sc)
    faults = []
    for r in m.get("rto", []):
        label, end = labels.get((round(float(r["at"]), 6), r["target"][0]), (fault_title(r["fault"]), None))
        faults.append({"fault": label, "target": list(r["target"]), "at": r["at"], "end": end, "rto_s": r["rto_s"]})
    if not faults:
        return {"status": "no-outage", "worst_s": None, "faults": []}
    if not fails_over(result["mode"]):
        return {"status": "no-failover", "worst_s": None, "faults": faults}
    if any(f["rto_s"] is None for f in faults):
        return {"status": "never", "worst_s": None, "faults": faults}
    worst = max(f["rto_s"] for f in faults)
    promoted = any(f["at"] <= p["t"] < (f["end"] if f["end"] is not None else math.inf)
                   for p in m.get("promotions", []) for f in faults)
    return {"status": "failover" if promoted else "restart", "worst_s": worst, "faults": faults}


# ====================================================================== rows over seeds
def worst_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row standing for several seeds of the same design and parameters: each SLO figure
    at its worst seed (what a design must survive), invariants broken if any seed broke them,
    costs as the median. ``seeds`` says how many rows it folds."""
    first = rows[0]
    if len(rows) == 1:
        return {**first, "seeds": 1}

    def med(key: str) -> float:
        vals = sorted(float(r[key]) for r in rows)
        return vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2

    def worst(vals: list[Any], hi: bool = True) -> Any:
        have = [v for v in vals if v is not None]
        return (max(have) if hi else min(have)) if have else None

    statuses = [r["rto"]["status"] for r in rows]
    status = next((s for s in ("never", "failover", "restart", "no-failover", "no-outage") if s in statuses),
                  "no-outage")
    inv = {k: {"promised": v["promised"], "ok": all(r["invariants"][k]["ok"] for r in rows),
               "broken_seeds": sum(not r["invariants"][k]["ok"] for r in rows)}
           for k, v in first["invariants"].items()}
    amounts = [r["overdraft"]["amount"] for r in rows]
    return {
        **first, "seed": None, "seeds": len(rows), "digest": None,
        "invariants": inv,
        "violated": [k for k, v in inv.items() if v["promised"] and not v["ok"]],
        "broken_not_promised": [k for k, v in inv.items() if not v["promised"] and not v["ok"]],
        "overdraft": {"accounts": max(r["overdraft"]["accounts"] for r in rows),
                      "amount": None if None in amounts else max(amounts)},
        "rpo_lost": max(r["rpo_lost"] for r in rows),
        "rto": {"status": status, "worst_s": worst([r["rto"]["worst_s"] for r in rows]), "faults": []},
        "latency_ms": {k: worst([r["latency_ms"][k] for r in rows]) for k in ("p50", "p99")},
        "availability": {k: worst([r["availability"][k] for r in rows], hi=False)
                         for k in ("overall", "inside_faults", "outside_faults")},
        "acked_per_s": med("acked_per_s"), "declined": med("declined"), "unavailable": med("unavailable"),
        "timeouts": med("timeouts"),
    }


# ====================================================================== SLO verdicts
@dataclass(frozen=True)
class Verdict:
    slo: str  # RPO, RTO, p99, availability
    target: str
    measured: str
    ok: bool | None  # None: does not apply to this design or run
    note: str = ""


def clock_word(row: dict[str, Any]) -> str:
    return "virtual" if row.get("runtime", "deterministic") == "deterministic" else "wall-clock"


def rto_text(row: dict[str, Any], short: bool = False) -> str:
    rto = row["rto"]
    st = rto["status"]
    if st == "no-outage":
        return "no outage"
    if st == "no-failover":
        return "no failover" if short else "no failover (every region writes every account)"
    if st == "never":
        return "never recovered"
    text = f"{fmt_num(rto['worst_s'])} s"
    if st == "failover":
        return text + " (failover)"
    return text + (" (no promotion)" if short else " (no promotion: back when the region returned)")


def verdicts(row: dict[str, Any], slo: dict[str, Any]) -> list[Verdict]:
    """The scenario's SLOs against one (possibly folded) row. RPO's target is
    ``slo.rpo_transfers`` when the scenario sets one, else 0 lost for every design: an
    architect asking "RPO 0?" wants the measured answer, and the note says whether the
    design also guarantees it. A row measured under its own SLOs (a sweep of `slo.*` keys)
    is judged by those."""
    slo = row.get("slo") or slo
    out = []
    target = int(slo.get("rpo_transfers", 0))
    promised = row["invariants"].get("durability", {}).get("promised", False)
    out.append(Verdict("RPO", f"≤ {target} lost" if target else "0 lost", f"{fmt_num(row['rpo_lost'])} lost",
                       row["rpo_lost"] <= target,
                       "" if promised else "not guaranteed by this design"))
    rto_target = slo.get("rto_s")
    st, worst = row["rto"]["status"], row["rto"]["worst_s"]
    if st in ("no-outage", "no-failover") or rto_target is None:
        ok = None
    else:
        ok = st != "never" and worst is not None and worst <= rto_target
    out.append(Verdict("RTO", "no target" if rto_target is None else f"≤ {fmt_num(rto_target)} s",
                       rto_text(row, short=True), ok))
    p99, p99_target = row["latency_ms"]["p99"], slo.get("p99_ms")
    out.append(Verdict("p99", "no target" if p99_target is None else f"≤ {fmt_num(p99_target)} ms",
                       f"{fmt_ms(p99)} ms ({clock_word(row)})",
                       None if p99_target is None or p99 is None else p99 <= p99_target))
    av, av_target = row["availability"]["overall"], slo.get("availability")
    out.append(Verdict("availability", "no target" if av_target is None else f"≥ {fmt_pct(av_target)}", fmt_pct(av),
                       None if av_target is None or av is None else av >= av_target))
    return out


def misses(row: dict[str, Any], slo: dict[str, Any]) -> list[Verdict]:
    return [v for v in verdicts(row, slo) if v.ok is False]


# ====================================================================== what broke, in words
def broke_text(row: dict[str, Any], name: str) -> str:
    """What one broken invariant cost, in the reader's units."""
    if name == "no_overdraft":
        od = row["overdraft"]
        return f"overdrew {fmt_num(od['accounts'])} account(s) by {money(od['amount'])} in total"
    if name == "durability":
        return f"lost {fmt_num(row['rpo_lost'])} acknowledged write(s)"
    return {"conservation": "created or destroyed money", "exactly_once": "applied a transfer twice",
            "convergence": "left replicas with different books", "audit_chain": "failed its audit chain",
            "atomic_chains": "applied a linked chain in part"}.get(
                name, f"broke {name}")


def breakage(row: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(invariant, promised, what it cost) for every invariant the row broke."""
    seeds = row.get("seeds", 1)
    out = []
    for name in INVARIANT_ORDER:
        v = row["invariants"].get(name)
        if v is None or v["ok"]:
            continue
        text = broke_text(row, name)
        if seeds > 1:
            text += f" (worst of {seeds} seeds; broken in {v.get('broken_seeds', '?')})"
        out.append((name, v["promised"], text))
    return out


def headline(rows: Sequence[dict[str, Any]], slo: dict[str, Any]) -> tuple[str, str]:
    """(level, text) of the banner: `fail` when a design broke what it promises, `warn` when
    a design broke something it does not promise or missed an SLO, `pass` otherwise. The
    text says what broke and how much, so green never hides an overdraft."""
    parts: list[str] = []
    promised = [(r, b) for r in rows for b in breakage(r) if b[1]]
    unpromised = [(r, b) for r in rows for b in breakage(r) if not b[1]]
    missed = [(r, misses(r, slo)) for r in rows]
    missed = [(r, ms) for r, ms in missed if ms]
    if promised:
        parts.append("A promise broke: " + "; ".join(f"{_who(r)} {b[2]} ({b[0]}, which it promises)"
                                                    for r, b in promised) + ".")
    else:
        parts.append("No design broke a promise.")
    if unpromised:
        parts.append("Not promised, and broken: " + "; ".join(f"{_who(r)} {b[2]} ({b[0]})" for r, b in unpromised)
                     + ".")
    if missed:
        parts.append("SLO missed: " + "; ".join(f"{_who(r)} ({', '.join(v.slo for v in ms)})" for r, ms in missed)
                     + ".")
    if not unpromised and not missed and not promised:
        parts.append("Every invariant held and every SLO was met.")
    level = "fail" if promised else ("warn" if unpromised or missed else "pass")
    return level, " ".join(parts)


def _who(row: dict[str, Any]) -> str:
    params = row.get("params")
    return row["mode"] + (f" at {params_text(params)}" if params else "")


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_val(v)}" for k, v in params.items())


def _val(v: Any) -> str:
    return str(v).replace(" ", "") if isinstance(v, list) else (f"{v:g}" if isinstance(v, float) else str(v))


# ====================================================================== the section
def tested_by(scenario: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """What the scenario put each invariant through, read from the scenario and the rows, so
    a reader sees when a "held" means little (no double-spend probe, no outage, no retry)."""
    wl = scenario.get("workload") or {}
    mix = wl.get("mix") or {}
    spend = wl.get("spend_all") or {}
    chaos = scenario.get("chaos") or []
    outages = sorted({_fault_label(f) for f in chaos if f["fault"] in OUTAGE_FAULTS})
    retried = max((r.get("retried", 0) for r in rows), default=0)
    cross = (mix.get("cross_unit", 0) or 0) + (mix.get("cross_region", 0) or 0)
    probe = (f"{spend['accounts']} customers spend {fmt_pct(spend.get('fraction'))} of their balance from "
             f"{', '.join(spend.get('regions') or ['every region'])} at {fmt_num(spend.get('at'))} s"
             if spend.get("accounts") else "ordinary load only: no double-spend probe ([workload.spend_all])")
    if spend.get("accounts") and any(f["fault"].startswith("partition") for f in chaos):
        probe += ", during a partition"
    hostile = (wl.get("hostile") or {}).get("share", 0) or 0
    return {
        "conservation": ("cross-unit and cross-region transfers (money in transit)" if cross
                         else "no cross-unit transfers: nothing in transit"),
        "no_overdraft": probe,
        "exactly_once": f"{fmt_num(retried)} requests retried (most in one design)" if retried else
                        "no request was retried: not exercised",
        "convergence": f"{len(chaos)} fault(s) healed, then {fmt_num(scenario.get('quiesce'))} s of quiesce"
                       if chaos else "no faults: replicas only had to keep up",
        "durability": f"outage: {', '.join(outages)}" if outages else "no outage: nothing could be lost to a failover",
        "audit_chain": "every store replayed against the live books"
                       + (" after records were corrupted" if any(f["fault"] == "corrupt" for f in chaos) else ""),
        "atomic_chains": "hostile clients sent linked chains" if hostile else "no linked chains were sent",
    }


def _fault_label(f: dict[str, Any]) -> str:
    return f"city-loss {f['city']}" if f.get("city") else f"{fault_title(f['fault'], f)} {','.join(f['target'])}"


def promise_matrix(scenario: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    tested = tested_by(scenario, rows)
    head = ["invariant", "what this scenario put it through", *(design_link(r["mode"]) for r in rows)]
    body = []
    for name in INVARIANT_ORDER:
        cells = [esc(name), esc(tested[name])]
        for r in rows:
            v = r["invariants"].get(name)
            if v is None:
                cells.append('<span class="na">—</span>')
                continue
            word = "promised" if v["promised"] else "not promised"
            if v["ok"]:
                cells.append(f'{word} · <span class="ok">held</span>')
            else:
                cls = "bad" if v["promised"] else "warn"
                cells.append(f'{word} · <span class="{cls}">BROKE</span>: {esc(broke_text(r, name))}')
        body.append(cells)
    return _raw_table(head, body, "promises")


def _raw_table(head: list[str], body: list[list[str]], cls: str) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _mark(ok: bool | None) -> str:
    if ok is None:
        return '<span class="na">n/a</span>'
    return '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'


def design_lines(rows: Sequence[dict[str, Any]], slo: dict[str, Any]) -> list[str]:
    """One sentence per design: its SLO verdict, then its cost to the business (plain text)."""
    out = []
    for r in rows:
        ms = misses(r, slo)
        verdict = ("meets every SLO" if not ms else
                   "misses " + ", ".join(f"{v.slo} ({v.measured}, target {v.target})" for v in ms))
        broke = breakage(r)
        if broke:
            verdict += "; broke " + ", ".join(f"{n}{'' if p else ' (not promised)'}" for n, p, _ in broke)
        out.append(f"{_who(r)}: {verdict}. Cost: {cost_text(r)}.")
    return out


def cost_text(r: dict[str, Any]) -> str:
    seeds = r.get("seeds", 1)
    per = " (median per run)" if seeds > 1 else ""
    return (f"{fmt_num(r['declined'])} payments declined (EXCEEDS_CREDITS), {fmt_num(r['unavailable'])} answered "
            f"UNAVAILABLE, {fmt_num(r['timeouts'])} timed out{per}; p50 {fmt_ms(r['latency_ms']['p50'])} ms "
            f"({clock_word(r)}), {fmt_num(r['acked_per_s'])} acked writes/s")


def section(rows: Sequence[dict[str, Any]], scenario: dict[str, Any], matrix: bool = True,
            lines: list[str] | None = None, banner: tuple[str, str] | None = None) -> str:
    """The decision section (HTML): banner, SLO table with costs, one line per design, and
    the promise matrix. ``rows`` are measured rows, one per design (folded over seeds, or a
    whole sweep grid, when there are several); a sweep passes its own per-point ``lines``
    and ``banner``, which name where in the grid a design misses."""
    slo = scenario.get("slo") or {}
    level, text = banner or headline(rows, slo)
    slo_head = ["design", "meets the SLOs?"]
    names = ("RPO", "RTO", "p99", "availability")
    targets = {v.slo: v.target for v in verdicts(rows[0], slo)} if rows else {}
    slo_head += [f"{n} ({targets.get(n, '')})" for n in names]
    slo_head += ["broke (promised or not)", "cost: declined · UNAVAILABLE · timed out"]
    body = []
    for r in rows:
        vs = {v.slo: v for v in verdicts(r, slo)}
        ms = [v for v in vs.values() if v.ok is False]
        broke = breakage(r)
        if ms:
            meets = f'<span class="bad">no: {esc(", ".join(v.slo for v in ms))}</span>'
        elif broke:
            meets = f'<span class="warn">yes, but broke {esc(", ".join(n for n, _, _ in broke))}</span>'
        else:
            meets = '<span class="ok">yes</span>'
        cells = [design_link(r["mode"]), meets]
        for n in names:
            v = vs[n]
            note = f'<br><span class="na">{esc(v.note)}</span>' if v.note else ""
            cells.append(f"{_mark(v.ok)} {esc(v.measured)}{note}")
        cells.append("<br>".join(f'<span class="{"bad" if p else "warn"}">{esc(n)}</span>: {esc(t)}'
                                 for n, p, t in broke) or '<span class="ok">nothing</span>')
        cells.append(f"{fmt_num(r['declined'])} · {fmt_num(r['unavailable'])} · {fmt_num(r['timeouts'])}")
        body.append(cells)
    seeds = max((r.get("seeds", 1) for r in rows), default=1)
    note = ("Read from the measured runs. Availability: the share of writes that got an answer (any result but "
            "UNAVAILABLE or a client timeout) over the whole run, the one figure every page uses. "
            f"Latency is {clock_word(rows[0]) if rows else 'virtual'} time"
            + (" (simulated WAN, no CPU cost)" if rows and clock_word(rows[0]) == "virtual" else "")
            + ". RTO is the time from the fault to the first acknowledged write on the affected accounts; async and "
              "escrow never fail over (every region writes every account), so they have none. Cost: payments "
              "declined for lack of funds or share (EXCEEDS_CREDITS), writes answered UNAVAILABLE (retries "
              "exhausted), writes that timed out; per run"
            + (f"; SLO figures are the worst of the {seeds} runs folded into a row, costs their median"
               if seeds > 1 else "") + ".")
    parts = [
        f'<div class="banner {level}" id="verdict" data-verdict="{level}">{esc(text)}</div>',
        '<section id="decision"><h2>Decision</h2>',
        _raw_table(slo_head, body, "decision"),
        '<ul class="summary designs">' + "".join(f"<li>{esc(x)}</li>" for x in (lines or design_lines(rows, slo)))
        + "</ul>",
        f'<p class="note">{esc(note)}</p>',
    ]
    if matrix:
        parts += ["<h3>What each design promises, against what this scenario tested</h3>",
                  promise_matrix(scenario, rows)]
    parts.append("</section>")
    return "\n".join(parts)

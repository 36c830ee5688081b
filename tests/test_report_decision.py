"""The decision section of `compare` (and `sweep`): read from the measured rows, says what
broke and how much even where not promised, which designs miss which SLO, one availability
figure everywhere, and no "RTO" for a design that never fails over."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from simulator.decision import headline, measure, section, verdicts, worst_of
from simulator.run_view import HistoryView, load_run, slo_checks
from tests.support.reports import result_of, tiny_compare, tiny_run


def _overdrawn_from_final_state(run_dir: Path) -> tuple[int, int]:
    """Independent of the metric: customer accounts below zero in final_state.json, and by how much."""
    state = json.loads((run_dir / "final_state.json").read_text())
    worst = (0, 0)
    for data in state["regions"].values():
        neg = [int(a["credits_posted"]) - int(a["debits_posted"]) - int(a["debits_pending"])
               for a in data["accounts"].values() if "DEBITS_MUST_NOT_EXCEED_CREDITS" in a["flags"]]
        neg = [v for v in neg if v < 0]
        worst = max(worst, (len(neg), -sum(neg)), key=lambda x: x[1])
    return worst


def test_an_unpromised_overdraft_is_named_with_accounts_and_amount() -> None:
    run = tiny_run("async")
    row = measure(result_of(run))
    accounts, amount = _overdrawn_from_final_state(run)
    assert accounts > 0 and amount > 0  # the tiny scenario's double-spend probe works on async
    assert row["overdraft"] == {"accounts": accounts, "amount": amount}
    assert row["broken_not_promised"] == ["no_overdraft"] and row["violated"] == []
    level, text = headline([row], {})
    assert level == "warn"  # never a green banner over an overdraft
    assert f"async overdrew {accounts} account(s) by ¥{amount / 100:,.2f} in total (no_overdraft)" in text
    assert text.startswith("No design broke a promise. Not promised, and broken:")


@pytest.mark.slow
def test_compare_page_opens_with_the_decision() -> None:
    code, out = tiny_compare()
    assert code == 0
    html = (out / "compare.html").read_text()
    data = json.loads((out / "compare.json").read_text())
    banner = re.search(r'<div class="banner (\w+)" id="verdict" data-verdict="\w+">([^<]*)</div>', html)
    assert banner is not None and banner.group(1) == "warn"
    assert "async overdrew" in banner.group(2)
    assert html.index('id="verdict"') < html.index('id="decision"') < html.index("<h2>Summary</h2>")
    assert data["decision"]["level"] == "warn" and len(data["decision"]["rows"]) == 3
    # business cost per design, read from the runs' outcome counts
    for r in data["runs"]:
        by_result = json.loads((out / r["dir"] / "result.json").read_text())["history_summary"]["by_result"]
        line = next(x for x in data["decision"]["designs"] if x.startswith(r["label"] + ":"))
        assert f"{by_result.get('EXCEEDS_CREDITS', 0):,} payments declined (EXCEEDS_CREDITS)" in line
        assert f"{by_result.get('UNAVAILABLE', 0):,} answered UNAVAILABLE" in line
    # each design links to its description
    assert 'README.md#escrow-design"' in html and 'README.md#modes"' in html
    # the promise matrix: async does not promise no_overdraft and broke it
    matrix = html[html.index('<table class="promises">'):]
    matrix = matrix[:matrix.index("</table>")]
    assert "not promised · <span class=\"warn\">BROKE</span>: overdrew" in matrix
    assert "double-spend probe" not in matrix and "customers spend 80%" in matrix


def test_a_missed_slo_is_named_and_a_met_one_is_not() -> None:
    row = measure(result_of(tiny_run("unit+semi-sync")))
    rto = row["rto"]["worst_s"]
    assert row["rto"]["status"] == "failover" and rto is not None
    slo = {"rto_s": rto / 2, "p99_ms": 1e9, "availability": 0.5}
    row["slo"] = slo  # as if the scenario had asked for it (a row is judged by its own SLOs)
    level, text = headline([row], slo)
    assert level == "warn" and "SLO missed: unit+semi-sync (RTO)." in text
    html = section([row], {"slo": slo, "chaos": [], "workload": {}})
    assert '<span class="bad">no: RTO</span>' in html
    # the same run against a target it meets: nothing missed, green
    row["slo"] = {"rto_s": rto * 2}
    level, text = headline([row], {})
    assert level == "pass" and "every SLO was met" in text
    # a promised invariant broken is a failure whatever the SLOs say
    broken = copy.deepcopy(row)
    broken["invariants"]["conservation"]["ok"] = False
    broken["violated"] = ["conservation"]
    assert headline([broken], {})[0] == "fail"


def test_no_rto_for_a_design_that_never_fails_over() -> None:
    row = measure(result_of(tiny_run("async")))
    assert row["rto"]["status"] == "no-failover" and row["rto"]["worst_s"] is None
    rto = next(v for v in verdicts(row, {"rto_s": 0.001}) if v.slo == "RTO")
    assert rto.ok is None and rto.measured == "no failover"  # not 0.005 s, and not a miss
    checks = {c.name: c for c in slo_checks(load_run(tiny_run("async")))}
    assert checks["RTO"].measured == "no failover" and checks["RTO"].ok is None
    _, out = tiny_compare()
    html = (out / "compare.html").read_text()
    side = html[html.index("RTO, worst fault"):]
    side = side[:side.index("</tr>")]
    assert "no failover" in side


def test_one_availability_figure_everywhere() -> None:
    """result.json, the single-run SLO check, the history recomputation and the compare
    table all give the same number for the same run."""
    run = tiny_run("unit+semi-sync")
    result = result_of(run)
    overall = result["metrics"]["availability"]["overall"]
    view = load_run(run)
    hist = HistoryView.load(run / "history.jsonl", view.regions)
    writes = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    writes = [w for w in writes if w["op"] != "read"]
    by_hand = round(sum(w["outcome"] != "timeout" and w["result"] != "UNAVAILABLE" for w in writes) / len(writes), 5)
    assert overall == by_hand == hist.overall_availability()
    check = next(c for c in slo_checks(view) if c.name == "availability")
    assert check.measured == f"{overall * 100:.3f}".rstrip("0").rstrip(".") + "%"
    assert measure(result)["availability"]["overall"] == overall


def test_folding_seeds_keeps_the_worst_slo_figure_and_the_median_cost() -> None:
    base = measure(result_of(tiny_run("unit+semi-sync")))
    rows = []
    for k, (rto, p99, av, declined) in enumerate([(1.0, 50.0, 0.99, 10), (3.0, 20.0, 0.90, 30), (2.0, 90.0, 0.95, 20)]):
        r = copy.deepcopy(base)
        r.update(seed=k, declined=declined)
        r["rto"] = {"status": "failover", "worst_s": rto, "faults": []}
        r["latency_ms"] = {"p50": 1.0, "p99": p99}
        r["availability"] = {"overall": av, "inside_faults": av, "outside_faults": 1.0}
        rows.append(r)
    rows[1]["invariants"]["durability"]["ok"] = False
    folded = worst_of(rows)
    assert folded["seeds"] == 3 and folded["rto"]["worst_s"] == 3.0 and folded["latency_ms"]["p99"] == 90.0
    assert folded["availability"]["overall"] == 0.90 and folded["declined"] == 20
    assert folded["violated"] == ["durability"] and folded["invariants"]["durability"]["broken_seeds"] == 1
    assert np.isclose(folded["acked_per_s"], base["acked_per_s"])

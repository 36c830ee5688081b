"""`geoledger sweep`: the grid, hostile flags (exit 2, nothing run), determinism, the files.

Runs use the report tests' tiny scenario (4 s of load, a 1.5 s crash: ~0.6 s a run).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from replication.config import INVARIANTS as ALL_INVARIANTS
from simulator import sweep as sweep_mod
from simulator.scenario import parse_scenario, scenario_document
from simulator.sweep import SweepError, apply_override, build_grid, parse_param, parse_path, run_grid
from simulator.sweep_report import render_sweep
from tests.support.reports import cli, tiny_scenario, tiny_sweep

INVARIANTS = set(ALL_INVARIANTS)


# ---------------------------------------------------------------------- the grid and its files
@pytest.mark.slow
def test_sweep_writes_one_row_per_run_with_every_figure() -> None:
    code, out = tiny_sweep()
    assert code == 0
    data = json.loads((out / "sweep.json").read_text())
    assert data["params"] == [{"key": "node.suspect_ms", "values": [200, 800]}]
    assert data["modes"] == ["quorum", "async"] and data["seeds"] == [1, 2] and data["runs"] == len(data["rows"]) == 8
    assert [(r["params"]["node.suspect_ms"], r["mode"], r["seed"]) for r in data["rows"]] == [
        (v, m, s) for v in (200, 800) for m in ("quorum", "async") for s in (1, 2)]
    for r in data["rows"]:
        assert set(r["invariants"]) == INVARIANTS
        assert all(set(v) == {"promised", "ok"} for v in r["invariants"].values())
        assert set(r["regions"]) == {"changchun", "beijing", "shanghai"}
        assert all(x["p50_ms"] is not None and x["p99_ms"] is not None for x in r["regions"].values())
        assert r["rto"]["status"] in ("failover", "restart", "no-failover")
        for key in ("rpo_lost", "acked_per_s", "declined", "unavailable", "latency_ms", "availability", "wall_s"):
            assert key in r, key
        assert 0 <= r["availability"]["overall"] <= 1
    html = (out / "sweep.html").read_text()
    states = dict(re.findall(r'data-plot="(sweep-[^"]+)" data-state="(\w+)"', html))
    assert states["sweep-node-suspect-ms-rto"] == "svg" and states["sweep-node-suspect-ms-p99"] == "svg"
    assert len(states) == 8 and all(v == "svg" for v in states.values()), states
    assert html.index('id="verdict"') < html.index('id="decision"') < html.index("<h2>Plots</h2>")


@pytest.mark.slow
def test_rto_grows_with_the_detection_timeout() -> None:
    """The question the sweep exists for, answered by the rows and by the page."""
    _, out = tiny_sweep()
    data = json.loads((out / "sweep.json").read_text())
    rto = {v: statistics.median(r["rto"]["worst_s"] for r in data["rows"]
                                if r["mode"] == "quorum" and r["params"]["node.suspect_ms"] == v) for v in (200, 800)}
    assert rto[800] > rto[200] + 0.2, rto
    trend = next(t for t in data["decision"]["trends"] if t.startswith("RTO vs node.suspect_ms"))
    assert "grows under quorum" in trend
    # async never fails over: no RTO plotted for it, and the caption says why
    assert all(r["rto"]["status"] == "no-failover" for r in data["rows"] if r["mode"] == "async")
    html = (out / "sweep.html").read_text()
    fig = html[html.index('id="plot-sweep-node-suspect-ms-rto"'):]
    fig = fig[:fig.index("</figure>")]
    assert "async never fail over (no RTO)" in fig and ">quorum<" in fig and ">async<" not in fig


@pytest.mark.slow
def test_the_same_sweep_gives_the_same_rows_serial_or_parallel() -> None:
    grid = build_grid(str(tiny_scenario()), ["workload.rate=100,150"], "async,unit+semi-sync", 1)
    serial = run_grid(grid, jobs=1)
    parallel = run_grid(grid, jobs=2)

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in sweep_mod.WALL_FIELDS} for r in rows]

    assert strip(serial) == strip(parallel)
    assert len({r["digest"] for r in serial}) == 4  # four different runs, each reproduced exactly


@pytest.mark.slow
def test_a_design_that_misses_an_slo_is_named_where_it_misses() -> None:
    """The checker can fail: an RTO target no failover can meet, swept as a key like any other."""
    grid = build_grid(str(tiny_scenario()), ["slo.rto_s=0.05,30"], "unit+semi-sync", 1)
    rows = run_grid(grid)
    data = sweep_mod.sweep_data(grid, rows, 0.0, "test")
    d = data["decision"]
    assert d["level"] == "warn" and "unit+semi-sync at slo.rto_s=0.05 (RTO)" in d["headline"]
    assert [(p["params"]["slo.rto_s"], p["meets_every_slo"]) for p in d["points"]] == [(0.05, False), (30, True)]
    assert "meets every SLO at 1 of 2 point(s) (slo.rto_s=30); misses RTO at slo.rto_s=0.05" in d["designs"][0]
    html = render_sweep(data)
    assert "✗ RTO" in html and "✓ meets every SLO" in html


@pytest.mark.slow
def test_violations_are_marked_on_the_plots() -> None:
    _, out = tiny_sweep()
    data = json.loads((out / "sweep.json").read_text())
    clean = render_sweep(data)
    assert "promised invariant broken" not in clean
    hit = next(r for r in data["rows"] if r["mode"] == "quorum" and r["params"]["node.suspect_ms"] == 800)
    hit["violated"] = ["convergence"]
    hit["invariants"]["convergence"]["ok"] = False
    html = render_sweep(data)
    fig = html[html.index('id="plot-sweep-node-suspect-ms-p99"'):]
    assert "promised invariant broken" in fig[:fig.index("</figure>")]
    assert "broke convergence" in html


# ---------------------------------------------------------------------- overrides
def test_any_key_can_be_swept_through_the_loader() -> None:
    doc, name = scenario_document("region-outage")
    base = parse_scenario(doc, name)
    for key, value, check in [
        ("node.suspect_ms", 300, lambda s: s.node.suspect_ms == 300),
        ("node.lease_ms", 1500.0, lambda s: s.node.lease_ms == 1500),
        ("workload.rate", 250, lambda s: s.workload.rate == 250),
        ("workload.mix.cross_region", 0.4, lambda s: s.workload.mix.cross_region == 0.4),
        ("chaos[0].duration", 2.5, lambda s: s.chaos[0].duration == 2.5),
        ("regions.rtt_ms[0][1]", 40, lambda s: s.rtt_matrix()[0][1] == s.rtt_matrix()[1][0] == 40
         and s.rtt_matrix()[0][2] == base.rtt_matrix()[0][2]),
        ("regions.rtt_ms.beijing-shanghai", 80, lambda s: s.rtt_matrix()[1][2] == s.rtt_matrix()[2][1] == 80),
        ("slo.rto_s", 1.0, lambda s: s.slo.rto_s == 1.0),
    ]:
        d = json.loads(json.dumps(doc))
        apply_override(d, parse_param(f"{key}={value}").path, value, base)
        assert check(parse_scenario(d, name)), key


def test_topology_keys_reach_every_datacentre() -> None:
    doc, name = scenario_document("three-cities-five-dcs")
    base = parse_scenario(doc, name)
    d = json.loads(json.dumps(doc))
    apply_override(d, parse_path("regions.rtt_ms.beijing-shanghai"), 50, base)
    apply_override(d, parse_path("chaos[0].duration"), 3.0, base)
    s = parse_scenario(d, name)
    m = s.rtt_matrix()
    assert m[0][2] == m[1][3] == m[3][0] == 50 and m[0][4] == 40  # every Beijing-Shanghai pair, nothing else
    assert [(f.target, f.duration, f.label) for f in s.chaos] == [(("bj-dc1",), 3.0, "city-loss beijing"),
                                                                  (("bj-dc2",), 3.0, "city-loss beijing")]
    with pytest.raises(SweepError, match=r"by name pairs; sweep one of them, e\.g\. regions\.rtt_ms\."):
        apply_override(json.loads(json.dumps(doc)), parse_path("regions.rtt_ms[0][2]"), 9, base)


# ---------------------------------------------------------------------- hostile flags: exit 2, nothing runs
@pytest.mark.parametrize("args, message", [
    (["--param", "node.suspect_ms"], "expected KEY=V1,V2"),
    (["--param", "=1,2"], "expected KEY=V1,V2"),
    (["--param", "node.suspect_ms="], "expected KEY=V1,V2"),
    (["--param", "node.suspect_ms=1,,2"], "node.suspect_ms: an empty value"),
    (["--param", "node..suspect_ms=1"], "not a scenario key"),
    (["--param", "node.suspect_ms[=1"], "not a scenario key"),
    (["--param", "node.suspect_ms=300,300"], "value 300 given twice"),
    (["--param", "node.suspect_ms=300", "--param", "node.suspect_ms=400"], "given twice"),
    (["--param", "node.suspect_mss=300"], "node.suspect_mss: unknown key"),
    (["--param", "nod.suspect_ms=300"], "nod: unknown key"),
    (["--param", "node.suspect_ms=fast"], "node.suspect_ms: expected a number, got 'fast'"),
    (["--param", "node.suspect_ms=300,50"], r"node.suspect_ms=50: node.suspect_ms: must be longer than"),
    (["--param", "workload.mix.cross_region=-0.1"], "workload.mix.cross_region: must be a finite number >= 0"),
    (["--param", "workload.rate=0"], "workload.rate: must be > 0"),
    (["--param", "chaos[3].duration=1"], r"chaos\[3\] does not exist \(the scenario has 1"),
    (["--param", "chaos[0].durration=1"], r"chaos\[0\].durration: unknown parameter for 'crash'"),
    (["--param", "chaos[0].duration=-1"], r"'duration' > 0"),
    (["--param", "regions.rtt_ms[0][0]=5"], "indices must be two different regions in 0..2"),
    (["--param", "regions.rtt_ms[0][7]=5"], "indices must be two different regions"),
    (["--param", "regions.rtt_ms[0][1]=-5"], r"regions.rtt_ms\[0\]\[1\]: must be a number >= 0"),
    (["--param", "regions.rtt_ms.beijing-mars=5"], "not two known names"),
    (["--param", "node.heartbeat_ms=100,400", "--param", "node.suspect_ms=300,600"],
     r"node.heartbeat_ms=400.*node.suspect_ms=300: node.suspect_ms: must be longer than node.heartbeat_ms"),
    (["--param", "mode=async,unit"], "cannot be swept \\(use --modes\\)"),
    (["--param", "seed=1,2"], "cannot be swept \\(use --seeds\\)"),
    (["--param", "node.quorum_groups=unit,ledger"], "use --modes quorum\\+unit"),
    (["--param", "workload.spend_all.regions=[\"mars\"]"], "workload.spend_all.regions: unknown region 'mars'"),
    (["--modes", "async,quorum2"], "unknown mode 'quorum2'"),
    (["--seeds", "0"], "--seeds: between 1 and 10000"),
    (["--jobs", "0"], "--jobs: must be >= 1"),
])
def test_bad_flags_exit_2_naming_the_key_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              args: list[str], message: str) -> None:
    out = tmp_path / "o"
    argv = ["sweep", str(tiny_scenario()), "--out", str(out), *args]
    if "--modes" not in args:
        argv += ["--modes", "async"]
    assert cli(*argv) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "sweep error:" in err and re.search(message, err), err
    assert not out.exists()


def test_an_unwritable_out_exits_2_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert cli("sweep", str(tiny_scenario()), "--modes", "async", "--seeds", "1", "--out", str(blocker / "o")) == 2
    assert "--out" in capsys.readouterr().err


def test_unknown_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("sweep", "no-such-scenario", "--param", "node.suspect_ms=300") == 2
    assert "scenario 'no-such-scenario' not found" in capsys.readouterr().err


def test_two_keys_sweep_every_combination() -> None:
    grid = build_grid(str(tiny_scenario()), ["node.suspect_max_ms=0,5000", "node.commit_ms=0,500,1000"], "async", 1)
    points = list(grid.points())
    assert len(points) == grid.n_points == 6
    from simulator.scenario import parse_scenario

    got = {(s.node.suspect_max_ms, s.node.commit_ms)
           for s in (parse_scenario(grid.document(p, None), grid.name) for p in points)}
    assert got == {(a, b) for a in (0, 5000) for b in (0, 500, 1000)}


def test_huge_grids_are_refused_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = str(tiny_scenario())
    values = ",".join(str(100 + k) for k in range(101))
    with pytest.raises(SweepError, match=r"101 workload.rate x 101 workload.batch_ms x 1 modes x 3 seeds = 30,603 "
                                         r"runs, more than 10,000; pass --force"):
        build_grid(scenario, [f"workload.rate={values}", f"workload.batch_ms={values}"], "async", 3)
    with pytest.raises(SweepError, match="more than 1,000,000, even with --force"):
        build_grid(scenario, [f"workload.rate={values}", f"workload.batch_ms={values}",
                              f"workload.customers={values}"], "async", 3, force=True)
    monkeypatch.setattr(sweep_mod, "MAX_POINTS", 3)
    with pytest.raises(SweepError, match="4 runs, more than 3; pass --force"):
        build_grid(scenario, ["workload.rate=100,200"], "async", 2)
    assert build_grid(scenario, ["workload.rate=100,200"], "async", 2, force=True).n_runs == 4


def test_values_are_toml_literals() -> None:
    p = parse_param('regions.replicas=[2,2,1],[1,1,1]')
    assert p.values == ([2, 2, 1], [1, 1, 1])
    assert parse_param("workload.spend_all.regions=[\"changchun\", \"beijing\"]").values == (["changchun", "beijing"],)
    assert parse_param("chaos[0].target=beijing,shanghai").values == ("beijing", "shanghai")
    assert parse_param("node.drift=0.01,1e-3").values == (0.01, 0.001)
    assert parse_path('regions.rtt_ms."bj-dc1-sh-dc1"') == ("regions", "rtt_ms", "bj-dc1-sh-dc1")

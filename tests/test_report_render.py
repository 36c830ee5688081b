"""The single-run report: schema, content, placeholders, determinism, and bad input (exit 2).

Rendering in a real browser is in test_report_chromium.py; these tests read the HTML.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest

from simulator.report import render_html, write_report
from simulator.run_view import SCHEMA_PATH, ReportError, load_run, runbook, slo_checks, validate_result, view_of
from tests.support.reports import cli, result_of, tiny_run, with_series

PLOTS = ("throughput", "latency", "lag", "timeline", "transit")


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _plot_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)" data-state="([^"]+)"', html))


def _series_run(tmp_path: Path) -> Path:
    """A copy of the tiny run whose result.json carries metrics.series."""
    d = tmp_path / "with-series"
    shutil.copytree(tiny_run(), d)
    (d / "result.json").write_text(json.dumps(with_series(result_of(d))))
    return d


def test_real_results_match_the_schema() -> None:
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for mode in ("unit+semi-sync", "async"):
        jsonschema.validate(result_of(tiny_run(mode)), schema, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(with_series(result_of(tiny_run())), schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda r: r["metrics"].__setitem__("acked_per_s", "fast"), "metrics.acked_per_s"),
    (lambda r: r["invariants"]["conservation"].pop("ok"), "invariants.conservation"),
    (lambda r: r["metrics"]["rto"][0].__setitem__("rto_s", -1), "metrics.rto[0].rto_s"),
    (lambda r: r["metrics"]["series"]["timeline"].append({"t": 1, "event": "exploded", "region": None}),
     "metrics.series.timeline[7].event"),
    (lambda r: r["metrics"]["series"]["timeline"].append({"t": 1, "event": "fault", "region": "beijing"}),
     "metrics.series.timeline[7]"),
])
def test_schema_rejects_malformed_results(mutate, where: str) -> None:  # type: ignore[no-untyped-def]
    r = with_series(result_of(tiny_run()))
    mutate(r)
    with pytest.raises(ReportError, match=re.escape(where)):
        validate_result(r, "x/result.json")


def test_cross_field_rules_beyond_the_schema() -> None:
    r = with_series(result_of(tiny_run()))
    r["metrics"]["series"]["replication_lag_ms"]["beijing"].pop()
    with pytest.raises(ReportError, match=r"replication_lag_ms\.beijing: \d+ values for \d+ times"):
        validate_result(r)
    r = with_series(result_of(tiny_run()))
    r["metrics"]["series"]["replication_lag_ms"]["mars"] = r["metrics"]["series"]["replication_lag_ms"]["beijing"]
    with pytest.raises(ReportError, match="mars: not a region"):
        validate_result(r)


def test_report_without_series_shows_placeholders(tmp_path: Path) -> None:
    """A runtime that records no series (older runs, other runtimes) still gets a full report."""
    run = tmp_path / "no-series"
    shutil.copytree(tiny_run(), run)
    result = result_of(run)
    del result["metrics"]["series"]
    (run / "result.json").write_text(json.dumps(result))
    html = render_html(load_run(run))
    states = _plot_states(html)
    assert states == {"throughput": "svg", "latency": "svg", "lag": "missing", "timeline": "svg",
                      "transit": "missing"}
    assert html.count("not recorded by this run") >= 2
    assert "metrics.series.replication_lag_ms" in html and "metrics.series.transit_balance" in html
    # the verdict banner, the scenario, mode, seed and the replay command lead the page
    head = html[: html.index("<h2>")]
    assert 'data-verdict="pass"' in head
    assert "tiny-outage" in head and "unit+semi-sync" in head and "seed 7" in head
    assert "geoledger simulate tiny-outage --seed 7 --mode unit+semi-sync" in head
    # tables: SLOs, invariants, per region (p50/p95/p99/max, availability in and out of faults)
    for text in ("RTO crash beijing @1 s", "RPO", "p99 write latency", "availability", "conservation",
                 "audit_chain", "p95 ms", "avail. in faults", "avail. outside", "changchun", "all regions"):
        assert text in html, text
    # the runbook derived from result.json names what it cannot know
    assert "failure detected" in html and "derived from result.json" in html


def test_report_with_series_renders_every_plot(tmp_path: Path) -> None:
    view = load_run(_series_run(tmp_path))
    html = render_html(view)
    assert _plot_states(html) == dict.fromkeys(PLOTS, "svg")
    assert "recorded by the run (metrics.series.timeline)" in html
    steps = [s.event for s in runbook(view)[0].steps]
    assert steps == ["fault", "detected", "fenced", "promoted", "writes_resumed", "healed", "rejoined"]
    assert all(s.t is not None for s in runbook(view)[0].steps)


def test_async_report_shows_unpromised_violation_with_counter_example() -> None:
    view = load_run(tiny_run("async"))
    html = render_html(view)
    assert view.not_promised_violations == ["no_overdraft"]
    assert "violated (not promised)" in html
    fv = view.result["invariants"]["no_overdraft"]["first_violation"]
    assert f"&quot;account&quot;: {fv['account']}" in html  # the counter-example is shown, not hidden
    assert "the mode may lose acknowledged writes" in html  # async promises no RPO
    # never a green banner over an overdraft: it says what broke and how much
    od = view.metrics["overdraft"]
    assert od["accounts"] > 0
    assert 'data-verdict="warn"' in html
    assert (f"broken, and not promised by async: no_overdraft ({od['accounts']} account(s) overdrawn by "
            f"¥{od['amount'] / 100:,.2f})") in html


def test_report_is_self_contained_and_deterministic(tmp_path: Path) -> None:
    a = render_html(load_run(tiny_run()))
    b = render_html(load_run(tiny_run()))
    assert a == b
    assert "Content-Security-Policy" in a and "default-src 'none'" in a
    assert not re.search(r'\b(src|href)="(https?:)?//', a), "external resource referenced"
    assert "<script" not in a.lower() and "<link" not in a.lower()
    # several inline SVGs in one page: every id is unique
    ids = re.findall(r'\bid="([^"]+)"', a)
    assert len(ids) == len(set(ids))


def test_slo_checks_follow_the_scenario() -> None:
    view = load_run(tiny_run())
    checks = {c.name: c for c in slo_checks(view)}
    rto = checks["RTO crash beijing @1 s"]
    assert rto.ok is (view.metrics["rto"][0]["rto_s"] <= 3.0)
    assert checks["RPO"].ok is True and checks["RPO"].target.startswith("0 lost")
    r = result_of(tiny_run())
    r["scenario"]["slo"]["rto_s"] = 0.01
    r["metrics"]["rto"][0]["rto_s"] = None
    tight = {c.name: c for c in slo_checks(view_of(r))}
    assert tight["RTO crash beijing @1 s"].ok is False and tight["RTO crash beijing @1 s"].measured == "never recovered"


def test_report_cli_writes_beside_the_result(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    assert cli("report", str(run / "result.json")) == 0
    assert (run / "report.html").stat().st_size > 10_000
    assert cli("report", str(run), "-o", str(tmp_path / "x" / "r.html")) == 0
    assert (tmp_path / "x" / "r.html").exists()


def test_report_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", str(tmp_path / "nope.json")) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "garbage.json").write_text("{not json")
    assert cli("report", str(tmp_path / "garbage.json")) == 2
    assert "not JSON" in capsys.readouterr().err
    assert cli("report", str(tiny_run() / "final_state.json")) == 2
    assert "not a geoledger result.json" in capsys.readouterr().err
    r = result_of(tiny_run())
    r["metrics"]["latency_ms"]["p99"] = "slow"
    (tmp_path / "bad.json").write_text(json.dumps(r))
    assert cli("report", str(tmp_path / "bad.json")) == 2
    err = capsys.readouterr().err
    assert "metrics.latency_ms.p99" in err and "result.schema.json" in err
    assert not (tmp_path / "report.html").exists()


def test_write_report_reports_a_broken_history(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    with (run / "history.jsonl").open("a") as fh:
        fh.write('{"op": "transfer"}\n')
    with pytest.raises(ReportError, match=r"history\.jsonl:\d+: not a history record"):
        write_report(run)


def test_report_from_a_bare_result_json(tmp_path: Path) -> None:
    """Only result.json (no history, no final state): placeholders say what is missing."""
    shutil.copy(tiny_run() / "result.json", tmp_path / "result.json")
    html = write_report(tmp_path).read_text()
    states = _plot_states(html)
    assert states["throughput"] == "svg" and states["timeline"] == "svg"
    assert states["latency"] == "missing"
    assert "history.jsonl not found beside result.json" in html


def test_history_given_as_result_gets_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", str(tiny_run() / "history.jsonl"), "-o", str(tmp_path / "r.html")) == 2
    assert "pass its result.json" in capsys.readouterr().err


def test_the_simulator_records_every_series_the_report_plots() -> None:
    html = render_html(load_run(tiny_run()))
    assert _plot_states(html) == dict.fromkeys(PLOTS, "svg")
    events = [e["event"] for e in result_of(tiny_run())["metrics"]["series"]["timeline"]]
    assert events[0] == "fault" and {"detected", "promoted", "writes_resumed", "rejoined"} <= set(events)

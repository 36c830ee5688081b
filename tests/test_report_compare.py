"""`geoledger compare`: one scenario, one seed, several modes, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.compare import parse_modes, summary
from simulator.run_view import ReportError
from tests.support.reports import cli, tiny_compare, tiny_scenario


@pytest.mark.slow
def test_compare_writes_pages_and_one_run_per_mode() -> None:
    code, out = tiny_compare()
    assert code == 0  # async breaks only what it does not promise
    for mode in ("async", "unit", "escrow"):
        for name in ("result.json", "history.jsonl", "final_state.json", "report.html"):
            assert (out / mode / name).exists(), (mode, name)
    data = json.loads((out / "compare.json").read_text())
    assert data["modes"] == ["async", "unit", "escrow"]
    labels = [r["label"] for r in data["runs"]]
    assert labels == ["async", "unit+semi-sync", "escrow"]
    # the same workload under every mode
    assert len({r["ops"] for r in data["runs"]}) == 1
    html = (out / "compare.html").read_text()
    for text in ("write latency p99", "acked writes / s", "RTO, worst fault", "RPO: acked writes lost",
                 "invariant violations", "WAN messages per acked write", 'href="unit/report.html"'):
        assert text in html, text


@pytest.mark.slow
def test_compare_summary_comes_from_the_numbers() -> None:
    _, out = tiny_compare()
    data = json.loads((out / "compare.json").read_text())
    runs = {r["label"]: r for r in data["runs"]}
    text = " ".join(data["summary"])
    assert runs["async"]["violated_not_promised"] == ["no_overdraft"]
    assert f"async let no_overdraft fail ({runs['async']['overdrawn_accounts']} account(s) overdrawn)" in text
    wan = {k: r["wan_messages_per_write"] for k, r in runs.items()}
    heavy = max(wan, key=wan.__getitem__)
    assert f"WAN cost: {heavy} sends {wan[heavy]:.2f}" in text


def _fig(p99: float, tput: float = 100.0, violated: list[str] | None = None, np_: list[str] | None = None,
         rto: float | None = 1.0, lost: int = 0, wan: float = 2.0, avail: float = 1.0,
         rto_status: str = "failover") -> dict:
    return {"latency_ms": {"p50": p99 / 4, "p95": p99 / 2, "p99": p99, "max": p99 * 2}, "acked_per_s": tput,
            "violated": violated or [], "violated_not_promised": np_ or [], "overdrawn_accounts": 3 if np_ else None,
            "availability": {"overall": 1 - (1 - avail) / 2, "inside_faults": avail, "outside_faults": 1.0},
            "rto_s": [rto], "rto_worst_s": rto, "rto_status": rto_status,
            "never_recovered": int(rto is None), "rpo_lost": lost,
            "rpo_window_s": 0.5 if lost else None, "wan_messages_per_write": wan, "ops": 1000}


def test_summary_sentences_follow_the_figures() -> None:
    lines = summary({"async": _fig(20, np_=["no_overdraft"], lost=4, wan=1.0),
                     "unit+semi-sync": _fig(60, rto=2.5, wan=3.0, avail=0.8)}, {"p99_ms": 50, "rto_s": 2}, True)
    text = "\n".join(lines)
    assert "Tail latency: async has the lowest p99 (20.0 ms), unit+semi-sync the highest (60.0 ms, ×3.0)." in text
    assert "Typical latency: async has the lowest p50 (5.00 ms)" in text
    assert "p99 above the 50 ms SLO: unit+semi-sync." in text
    assert "RTO above the 2 s SLO: unit+semi-sync." in text
    assert "RPO: async lost 4 acknowledged write(s) within 0.5 s; unit+semi-sync lost none." in text
    assert "Trade-off: async is fastest (p50 5.00 ms) but broke an invariant" in text
    assert "unit+semi-sync (p50 15.0 ms, ×3.0)" in text
    assert "Throughput is within 5%" in text
    assert "Availability: unit+semi-sync answered 90% of all writes (80% of those issued during faults); " \
           "async 100%." in text
    # a different set of numbers gives different sentences
    lines = summary({"a": _fig(20, tput=200), "b": _fig(21, tput=100, violated=["conservation"])}, {}, False)
    text = "\n".join(lines)
    assert "b broke a promise: conservation" in text
    assert "Throughput: a acknowledged the most writes (200/s), b the fewest (100/s, -50%)." in text
    assert "No latency price for safety" in text and "Recovery" not in text


def test_designs_that_never_fail_over_have_no_rto_in_the_summary() -> None:
    """async's "0.0055 s" is the next write from another region, not a recovery: the summary
    neither ranks it against a failover nor counts it against the RTO SLO."""
    lines = summary({"async": _fig(5, rto=0.0055, rto_status="no-failover"),
                     "unit+semi-sync": _fig(60, rto=6.0), "quorum": _fig(50, rto=0.9)},
                    {"rto_s": 5, "availability": 0.99}, True)
    text = "\n".join(lines)
    assert "Recovery: quorum resumed writes after 0.9 s, unit+semi-sync after 6 s" in text
    assert "async resumed" not in text and "0.0055" not in text
    assert "No failover in async" in text
    assert "RTO above the 5 s SLO: unit+semi-sync." in text
    lines = summary({"a": _fig(5, avail=0.9), "b": _fig(5)}, {"availability": 0.99}, False)
    assert "Availability below the 99% SLO: a." in lines


def test_unknown_or_empty_modes_exit_2_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("compare", str(tiny_scenario()), "--modes", "async,quorum2", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "unknown mode 'quorum2'" in err and "async" in err
    assert not (tmp_path / "o").exists()
    assert cli("compare", str(tiny_scenario()), "--modes", " , ", "--out", str(tmp_path / "o")) == 2
    assert cli("compare", "no-such-scenario", "--modes", "async", "--out", str(tmp_path / "o")) == 2
    assert "not found" in capsys.readouterr().err


def test_modes_naming_one_design_run_once() -> None:
    assert parse_modes("unit, unit+semi-sync ,async", str(tiny_scenario())) == ["unit", "async"]
    with pytest.raises(ReportError, match="unknown mode"):
        parse_modes("unit+sync", str(tiny_scenario()))

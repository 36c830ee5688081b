"""The datacentre-loss report (`bench.dc_loss_report`): it says which promise each design
made, whether the run kept it, and flags a broken one — so a report of a bad run cannot
read as a good one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.dc_loss_report import main, render

REGIONS = ("changchun", "beijing", "shanghai")


def row(design: str, promises: bool, lost: int, rto: float | None) -> dict[str, Any]:
    latency = {r: {"p50_ms": 20.0 + i, "p99_ms": 90.0 + 10 * i} for i, r in enumerate(REGIONS)}
    return {"design": design, "promise": f"what {design} promises", "promises_rpo0": promises,
            "rpo_lost_acknowledged": lost, "rto_s": rto, "acknowledged": 1000, "latency_before_loss": latency}


def test_a_kept_promise_reads_kept_and_the_fastest_design_is_named() -> None:
    page = render([row("unit+semi-sync", True, 0, 1.2), row("quorum", True, 0, 0.9),
                   row("unit+async / LOCAL_QUORUM", False, 0, None)], "python -m bench.dc_loss_bench")
    assert "Every design that promises RPO 0 kept it." in page and "BROKEN" not in page
    assert "<b>quorum</b> (0.90 s)" in page
    assert "never" in page  # no acknowledgement to the lost region's customers afterwards
    assert "without promising it" in page and "unit+async / LOCAL_QUORUM" in page
    assert 'data-plot="dc-rto"' in page and 'data-plot="dc-p99"' in page and "<script" not in page


def test_a_broken_promise_is_flagged() -> None:
    page = render([row("unit+semi-sync", True, 3, 1.0), row("quorum", True, 0, 0.9)], "cmd")
    assert "BROKEN" in page and "Broke its RPO promise: unit+semi-sync." in page
    assert "Every design that promises RPO 0 kept it." not in page


def test_a_saved_result_renders_again_and_a_bad_file_is_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "dc_loss.json"
    saved.write_text(json.dumps({"command": "python -m bench.dc_loss_bench --rate 30",
                                 "results": [row("quorum", True, 0, 0.9)]}))
    assert main([str(saved)]) == 0
    assert "--rate 30" in saved.with_suffix(".html").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit) as stop:
        main([str(bad)])
    assert stop.value.code == 2 and "not a dc_loss_bench result" in capsys.readouterr().err

"""Reports in a real browser: headless Chromium loads each page with no console error, no
blocked or failed load and no script error, and every plot is present and non-empty.

Needs Chromium (`scripts/chromium install`); without it these tests skip locally and fail
in CI (GEOLEDGER_REQUIRE_REAL=1), through tests.realparts.require.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from simulator.report import write_report
from tests.support.reports import (
    check_in_chromium,
    require_chromium,
    result_of,
    screenshot,
    tiny_compare,
    tiny_run,
    tiny_sweep,
    with_series,
)

pytestmark = pytest.mark.slow


def _assert_clean(seen: dict, expect_svg: set[str], expect_missing: set[str]) -> None:
    assert seen["errors"] == [], seen["errors"]
    assert seen["console"] == [], seen["console"]
    plots = {p["id"]: p for p in seen["plots"]}
    assert set(plots) == expect_svg | expect_missing
    for pid in expect_svg:
        p = plots[pid]
        assert p["state"] == "svg", pid
        assert p["width"] > 600 and p["height"] > 150, (pid, p)  # laid out at a readable size
        assert p["shapes"] >= 10 and p["texts"] >= 5, (pid, p)  # lines/bars and axis labels drawn
    for pid in expect_missing:
        assert plots[pid]["state"] == "missing"
        assert plots[pid]["placeholder"].startswith("not recorded by this run"), pid


def test_report_renders_cleanly_and_screenshots(tmp_path: Path) -> None:
    require_chromium()
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    html = write_report(run)
    seen = check_in_chromium(html, tmp_path)
    _assert_clean(seen, {"throughput", "latency", "lag", "timeline", "transit"}, set())
    assert seen["verdict"] == "pass"
    png = screenshot(html, tmp_path / "report.png", tmp_path)
    img = imread(png)
    assert img.shape[0] == 3000 and img.shape[1] == 1400
    rgb = img[..., :3]
    ink = (rgb.min(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert ink > 0.03, f"screenshot looks blank ({ink:.3%} ink)"
    assert np.unique((rgb[::7, ::7] * 255).astype(np.uint8).reshape(-1, 3), axis=0).shape[0] > 50  # colours: plots


def test_report_with_series_renders_all_five_plots(tmp_path: Path) -> None:
    require_chromium()
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    (run / "result.json").write_text(json.dumps(with_series(result_of(run))))
    seen = check_in_chromium(write_report(run), tmp_path)
    _assert_clean(seen, {"throughput", "latency", "lag", "timeline", "transit"}, set())


def test_compare_page_renders_cleanly(tmp_path: Path) -> None:
    require_chromium()
    code, out = tiny_compare()
    assert code == 0
    seen = check_in_chromium(out / "compare.html", tmp_path)
    _assert_clean(seen, {"cmp-throughput", "cmp-latency", "cmp-cdf", "cmp-lag"}, set())


def test_the_check_catches_external_loads_and_script_errors(tmp_path: Path) -> None:
    """Negative control: a page that tries to reach the network or run a script is caught."""
    require_chromium()
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    seen = check_in_chromium(write_report(run), tmp_path,
                             inject='<img src="http://127.0.0.1:9/cdn.png"><script>undefinedFn()</script>')
    assert any("127.0.0.1:9" in e for e in seen["errors"]), seen["errors"]
    assert any("script-src" in e for e in seen["errors"]), seen["errors"]
    assert seen["console"], "Chromium logged nothing for a blocked load"


def test_sweep_page_renders_cleanly_and_screenshots(tmp_path: Path) -> None:
    """sweep.html as a person sees it: no error, every metric plotted, ink on the page."""
    require_chromium()
    _, out = tiny_sweep()
    seen = check_in_chromium(out / "sweep.html", tmp_path)
    metrics = ("rto", "rpo", "p99", "p50", "availability", "throughput", "declined", "unavailable")
    _assert_clean(seen, {f"sweep-node-suspect-ms-{m}" for m in metrics}, set())
    assert seen["verdict"] in ("pass", "warn")
    png = screenshot(out / "sweep.html", tmp_path / "sweep.png", tmp_path)
    rgb = imread(png)[..., :3]
    assert (rgb.min(axis=2) < 0.9).mean() > 0.03, "screenshot looks blank"

"""Shared helpers for the report/compare/drill tests (this module holds no tests).

Runs use a tiny scenario (3 regions, 4 s of load, a 1.5 s crash, a double-spend probe) so
the whole report suite stays well under its time budget on a shared 2-core machine;
each run is made once per session and reused.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_HOW = "install it with `scripts/chromium install` (Debian: apt-get install -y chromium)"

TINY_TOML = """
name = "tiny-outage"
description = "Tiny: Beijing crashes for 1.5 s while ten customers spend 80% from two regions."
mode = "unit"
ship = "semi-sync"
duration = 4.0
quiesce = 3.0
seed = 7

[regions]
names = ["changchun", "beijing", "shanghai"]

[workload]
customers = 300
units_per_region = 2
rate = 150
batch_ms = 10

[workload.spend_all]
at = 1.5
accounts = 10
fraction = 0.8
regions = ["changchun", "shanghai"]

[[chaos]]
at = 1.0
fault = "crash"
target = "beijing"
duration = 1.5

[slo]
p99_ms = 2500
availability = 0.9
rto_s = {rto_s}
"""


@cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="geoledger-report-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@cache
def tiny_scenario(rto_s: float = 3.0) -> Path:
    """The tiny scenario as a TOML file (``rto_s`` lets a test make the RTO SLO unmeetable)."""
    p = workdir() / f"tiny-outage-rto{rto_s:g}.toml"
    p.write_text(TINY_TOML.replace("{rto_s}", repr(float(rto_s))))
    return p


@cache
def tiny_run(mode: str = "unit+semi-sync") -> Path:
    """A run directory (result.json, history.jsonl, final_state.json) of the tiny scenario."""
    from simulator.run import run_scenario, write_outputs
    from simulator.scenario import load_scenario

    out = workdir() / f"run-{mode}"
    scenario = load_scenario(tiny_scenario()).with_mode(mode)
    sim, result = run_scenario(scenario, scenario.seed)
    write_outputs(sim, result, out)
    return out


def result_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "result.json").read_text())


def with_series(result: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``result`` carrying a plausible metrics.series block (the shape the
    simulator is asked to emit), so every plot of the report can be exercised today."""
    r = json.loads(json.dumps(result))
    sc = r["scenario"]
    regions = sc["regions"]
    n = int(sc["duration"] + sc["quiesce"])
    t = [float(i) for i in range(n)]
    lag: dict[str, Any] = {"t": t}
    for k, name in enumerate(regions):
        lag[name] = [None if (name == "beijing" and 1 <= i < 3) else round(10 + 5 * k + 3 * (i % 3), 1)
                     for i in range(n)]
    transit = {"t": t, "value": [0 if i in (0, n - 1) else 1000 * (i % 4) for i in range(n)]}
    f = sc["chaos"][0]
    at, end, target = f["at"], f["at"] + f["duration"], f["target"][0]
    timeline = [
        {"t": at, "event": "fault", "region": target, "fault": f["fault"], "target": f["target"], "end": end},
        {"t": at + 0.6, "event": "detected", "region": "changchun", "detail": "heartbeats missed"},
        {"t": at + 0.95, "event": "fenced", "region": target, "detail": {"lease_expired_at": at + 0.9}},
        {"t": at + 0.97, "event": "promoted", "region": "shanghai", "detail": "units 1,4 -> shanghai", "unit": 1},
        {"t": at + 1.2, "event": "writes_resumed", "region": "shanghai", "detail": "first acked write"},
        {"t": end, "event": "healed", "region": target, "detail": None},
        {"t": end + 0.4, "event": "rejoined", "region": target, "detail": "caught up to v2"},
    ]
    r["metrics"]["series"] = {"replication_lag_ms": lag, "transit_balance": transit, "timeline": timeline}
    return r


def cli(*argv: str) -> int:
    """Run a subcommand the way a user does (`geoledger.cli.main`, in this process)."""
    from geoledger.cli import main

    return main(list(argv))


# ---------------------------------------------------------------------- Chromium
def chromium_path() -> str | None:
    """A Chromium binary: $GEOLEDGER_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    env = os.environ.get("GEOLEDGER_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    from tests.support.realparts import require

    path = chromium_path()
    require("chromium", path is not None, CHROMIUM_HOW)
    assert path is not None
    return path


def _flags(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}"]


CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || e.type));
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI);
});
(function () {
  var ce = console.error;
  console.error = function () {
    window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    ce.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  setTimeout(function () {
    var plots = [];
    document.querySelectorAll('figure.plot').forEach(function (f) {
      var svg = f.querySelector('svg');
      var r = svg ? svg.getBoundingClientRect() : null;
      var ph = f.querySelector('.placeholder');
      plots.push({id: f.dataset.plot, state: f.dataset.state, width: r ? r.width : 0, height: r ? r.height : 0,
                  shapes: svg ? svg.querySelectorAll('path,line,polyline,rect,use').length : 0,
                  texts: svg ? svg.querySelectorAll('text').length : 0,
                  placeholder: ph ? ph.textContent.trim() : null});
    });
    var v = document.getElementById('verdict');
    var out = document.createElement('pre');
    out.id = '__report_check';
    out.textContent = JSON.stringify({errors: window.__errors, plots: plots, title: document.title,
                                      verdict: v ? v.dataset.verdict : null});
    document.body.appendChild(out);
  }, 50);
});
</script>"""


def check_in_chromium(html_path: Path, tmp: Path, inject: str = "") -> dict[str, Any]:
    """Load a page in headless Chromium and return what it saw: page errors (script errors,
    failed or CSP-blocked loads, console.error), console lines from Chromium's own log, and
    each plot's rendered size and element count.

    The check script is injected before the page's CSP <meta>, so the report itself stays
    script-free; ``inject`` adds markup at the start of <main> (negative controls)."""
    chromium = require_chromium()
    text = html_path.read_text()
    assert "<head>" in text
    text = text.replace("<head>", "<head>" + CHECK_SCRIPT, 1)
    if inject:
        text = text.replace("<main>", "<main>" + inject, 1)
    probe = html_path.parent / f".probe-{html_path.name}"
    probe.write_text(text)
    profile = tmp / "chromium-profile"
    try:
        proc = subprocess.run([chromium, *_flags(profile), "--enable-logging=stderr", "--v=0",
                               "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=60)
    finally:
        probe.unlink()
    start = proc.stdout.find('<pre id="__report_check">')
    assert start >= 0, f"the check script did not run (rc={proc.returncode}): {proc.stderr[-2000:]}"
    end = proc.stdout.index("</pre>", start)
    import html as _html

    seen = json.loads(_html.unescape(proc.stdout[start + len('<pre id="__report_check">'):end]))
    seen["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return seen


def screenshot(html_path: Path, png: Path, tmp: Path, size: str = "1400,3000") -> Path:
    chromium = require_chromium()
    proc = subprocess.run([chromium, *_flags(tmp / "chromium-profile"), f"--window-size={size}",
                           f"--screenshot={png}", html_path.as_uri()], capture_output=True, text=True, timeout=60)
    assert png.exists(), f"no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return png


@cache
def tiny_compare() -> tuple[int, Path]:
    """`geoledger compare` of the tiny scenario under async, unit and escrow: (exit code, DIR)."""
    out = workdir() / "compare"
    code = cli("compare", str(tiny_scenario()), "--modes", "async,unit,escrow", "--out", str(out))
    return code, out


@cache
def tiny_sweep() -> tuple[int, Path]:
    """The done-when sweep in miniature: RTO against the detection timeout, two seeds."""
    out = workdir() / "sweep"
    code = cli("sweep", str(tiny_scenario()), "--param", "node.suspect_ms=200,800", "--modes", "quorum,async",
               "--seeds", "2", "--out", str(out))
    return code, out

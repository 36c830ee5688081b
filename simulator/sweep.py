"""`geoledger sweep`: the architect's what-if, as one command and one page.

"What happens to RTO if we detect a failure in 300 ms instead of 600?" is a grid: some
scenario keys, each over a few values, times some designs, times some seeds. This module
turns ``--param KEY=V1,V2`` flags into that grid, checks every point *before* anything
runs, runs the points on the deterministic runtime (in parallel with ``--jobs``), and
writes ``sweep.json`` (one measured row per run, `simulator.decision.measure`) and
``sweep.html`` (`simulator.sweep_report`).

How an override is applied, and why: a point is the scenario's TOML document (its
``extends`` resolved) with the overrides written into it, then validated by the very
loader `geoledger simulate` uses (`simulator.scenario.parse_scenario`). So any key the
scenario format has can be swept, and a bad key or value gets the loader's message,
naming the key, before a single run starts. Keys are TOML paths: ``node.suspect_ms``,
``workload.mix.cross_region``, ``chaos[0].duration``, ``regions.rtt_ms[0][1]`` (a round
trip, so ``[1][0]`` is set too), ``regions.rtt_ms.beijing-shanghai`` (every pair of
datacentres that name pair covers). Values are TOML literals (``200``, ``0.5``,
``"beijing"``, ``[2,2,1]``); a bare word is a string.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_POINTS = 10_000  # runs refused above this unless --force: 10,000 runs is hours on a laptop
HARD_MAX_POINTS = 1_000_000  # refused even with --force (the grid itself would not fit in memory)
REFUSED = {  # keys a sweep must not set, and what to use instead
    "name": "the sweep keeps the scenario's name",
    "description": "the sweep keeps the scenario's description",
    "extends": "sweep the keys themselves",
    "mode": "use --modes",
    "ship": "use --modes unit+async,unit+semi-sync",
    "seed": "use --seeds",
    "node.quorum_groups": "use --modes quorum+unit,quorum+region,quorum+ledger",
}
_SEGMENT = re.compile(r'(?:^|\.)(?:([A-Za-z_][A-Za-z0-9_\-]*)|"([^"]+)")|\[(\d+)\]')


class SweepError(ValueError):
    """A sweep that cannot run: the message names the flag, key or value to fix."""


@dataclass(frozen=True)
class Param:
    key: str  # as typed
    path: tuple[str | int, ...]
    values: tuple[Any, ...]


# ====================================================================== --param parsing
def parse_path(key: str) -> tuple[str | int, ...]:
    """`chaos[0].duration` -> ("chaos", 0, "duration"); `regions.rtt_ms."bj-1-sh-1"` keeps the quoted name."""
    path: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(key):
        if m.start() != pos or (m.group(0).startswith(".") and not path):
            break
        name, quoted, index = m.groups()
        path.append(int(index) if index is not None else (name if name is not None else quoted))
        pos = m.end()
    if pos != len(key) or not path or not isinstance(path[0], str):
        raise SweepError(f"--param {key!r}: not a scenario key (write it as a TOML path: node.suspect_ms, "
                         "workload.mix.cross_region, chaos[0].duration, regions.rtt_ms[0][1])")
    return tuple(path)


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so `[2,2,1],[1,1,1]` is two values."""
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_value(text: str) -> Any:
    """A TOML literal (200, 0.5, "x", [2, 2, 1], true); anything else is taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_param(text: str) -> Param:
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise SweepError(f"--param {text!r}: expected KEY=V1,V2,... (e.g. --param node.suspect_ms=200,400,800)")
    path = parse_path(key)
    dotted = ".".join(str(p) for p in path)
    if dotted in REFUSED or str(path[0]) in REFUSED:
        raise SweepError(f"--param {key}: cannot be swept ({REFUSED.get(dotted) or REFUSED[str(path[0])]})")
    raw = split_values(rest)
    if any(not v for v in raw):
        raise SweepError(f"--param {key}: an empty value in {rest!r}")
    values = [parse_value(v) for v in raw]
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise SweepError(f"--param {key}: value {v!r} given twice")
        seen.append(v)
    return Param(key, path, tuple(values))


def parse_params(texts: Sequence[str]) -> list[Param]:
    params = [parse_param(t) for t in texts]
    keys = [p.path for p in params]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise SweepError(f"--param {params[i].key}: given twice (put every value in one --param)")
    return params


# ====================================================================== applying overrides
def _where(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def apply_override(doc: dict[str, Any], path: tuple[str | int, ...], value: Any, base: Any) -> None:
    """Write ``value`` at ``path`` in the scenario document ``doc`` (in place). ``base`` is
    the scenario as loaded, for keys whose value the file left to a default (an RTT matrix
    derived from city coordinates). Tables the file left out are created (their other keys
    keep their defaults); list indices must exist."""
    if path[:2] == ("regions", "rtt_ms") and len(path) > 2:
        _apply_rtt(doc, path, value, base)
        return
    node: Any = doc
    for i, seg in enumerate(path):
        last = i == len(path) - 1
        here = _where(path[: i + 1])
        if isinstance(seg, int):
            if not isinstance(node, list):
                raise SweepError(f"--param {_where(path)}: {_where(path[:i]) or 'the scenario'} is not a list")
            if seg >= len(node):
                raise SweepError(f"--param {_where(path)}: {here} does not exist (the scenario has {len(node)}: "
                                 f"{_where(path[:i])}[0..{len(node) - 1}])" if node else
                                 f"--param {_where(path)}: {_where(path[:i])} is empty in this scenario")
        elif not isinstance(node, dict):
            raise SweepError(f"--param {_where(path)}: {_where(path[:i])} is not a table")
        if last:
            node[seg] = value
        else:
            if isinstance(seg, str) and seg not in node:
                if isinstance(path[i + 1], int):
                    raise SweepError(f"--param {_where(path)}: the scenario has no {here} to index")
                node[seg] = {}
            node = node[seg]


def _apply_rtt(doc: dict[str, Any], path: tuple[str | int, ...], value: Any, base: Any) -> None:
    """RTT overrides: a matrix cell and its mirror (`[i][j]` is a round trip), or a name pair
    (every datacentre pair it covers). Works whichever form the file used, or none."""
    from simulator.scenario import ScenarioError, pair_cells

    key = _where(path)
    regions_tbl = doc.setdefault("regions", {})
    if not isinstance(regions_tbl, dict):
        raise SweepError(f"--param {key}: regions is not a table")
    current = regions_tbl.get("rtt_ms")
    rest = path[2:]
    n = len(base.regions)
    if len(rest) == 2 and all(isinstance(x, int) for x in rest):
        i, j = rest
        if isinstance(current, dict):
            raise SweepError(f"--param {key}: this scenario gives regions.rtt_ms by name pairs; sweep one of "
                             f"them, e.g. regions.rtt_ms.{next(iter(current), 'a-b')}")
        if not (0 <= int(i) < n and 0 <= int(j) < n) or i == j:
            raise SweepError(f"--param {key}: indices must be two different regions in 0..{n - 1}")
        matrix = [list(r) for r in (current if isinstance(current, list) else base.rtt_matrix())]
        matrix[int(i)][int(j)] = matrix[int(j)][int(i)] = value
        regions_tbl["rtt_ms"] = matrix
        return
    if len(rest) != 1 or not isinstance(rest[0], str):
        raise SweepError(f"--param {key}: write regions.rtt_ms[i][j] or regions.rtt_ms.NAME-NAME")
    try:
        _, cells = pair_cells(rest[0], base.regions, base.city_groups(), f"--param {key}")
    except ScenarioError as e:
        raise SweepError(str(e)) from None
    if isinstance(current, dict):
        regions_tbl["rtt_ms"] = {**current, rest[0]: value}
        return
    matrix = [list(r) for r in (current if isinstance(current, list) else base.rtt_matrix())]
    for a, b in cells:
        matrix[a][b] = value
    regions_tbl["rtt_ms"] = matrix


# ====================================================================== the grid
@dataclass(frozen=True)
class Grid:
    scenario: str  # name or path, as given
    name: str
    doc: dict[str, Any]
    params: tuple[Param, ...]
    modes: tuple[str, ...]  # as typed (validated, one per design)
    seeds: tuple[int, ...]

    @property
    def n_points(self) -> int:
        return math.prod(len(p.values) for p in self.params)

    @property
    def n_runs(self) -> int:
        return self.n_points * len(self.modes) * len(self.seeds)

    def points(self) -> Iterator[dict[str, Any]]:
        for combo in itertools.product(*(p.values for p in self.params)):
            yield {p.key: v for p, v in zip(self.params, combo, strict=True)}

    def document(self, point: dict[str, Any], base: Any) -> dict[str, Any]:
        """The scenario document with the point's values in place (a point may name only some
        of the parameters: each value is first checked alone)."""
        doc = copy.deepcopy(self.doc)
        for p in self.params:
            if p.key in point:
                apply_override(doc, p.path, point[p.key], base)
        return doc


def build_grid(scenario: str, params: Sequence[str], modes: str, seeds: int, start: int = 1,
               force: bool = False) -> Grid:
    """Parse and check everything; raise SweepError (exit 2) before anything runs."""
    from simulator.compare import parse_modes
    from simulator.run_view import ReportError
    from simulator.scenario import ScenarioError, parse_scenario, scenario_document

    try:
        doc, name = scenario_document(scenario)
        base = parse_scenario(doc, name)
    except ScenarioError as e:
        raise SweepError(f"scenario error: {e}") from None
    if not 1 <= seeds <= 10_000:
        raise SweepError(f"--seeds: between 1 and 10000 seeds, got {seeds}")
    if start < 0:
        raise SweepError(f"--start: a seed is >= 0, got {start}")
    try:
        mode_list = parse_modes(modes, scenario)
    except ReportError as e:
        raise SweepError(str(e)) from None
    grid = Grid(scenario, name, doc, tuple(parse_params(params)), tuple(mode_list),
                tuple(range(start, start + seeds)))
    n = grid.n_runs
    if n > HARD_MAX_POINTS or (n > MAX_POINTS and not force):
        shape = " x ".join([*(f"{len(p.values)} {p.key}" for p in grid.params), f"{len(grid.modes)} modes",
                            f"{len(grid.seeds)} seeds"])
        limit = (f"more than {HARD_MAX_POINTS:,}, even with --force" if n > HARD_MAX_POINTS else
                 f"more than {MAX_POINTS:,}; pass --force to run it anyway")
        raise SweepError(f"the grid is {shape} = {n:,} runs, {limit} (fewer values or seeds, or split the sweep)")
    check_points(grid, base)
    return grid


def check_points(grid: Grid, base: Any) -> None:
    """Every value alone, then every combination, through the scenario loader and every mode:
    a value the loader refuses is named with the point it belongs to."""
    from simulator.scenario import ScenarioError, parse_scenario

    def check(point: dict[str, Any]) -> None:
        try:
            doc = grid.document(point, base)
        except SweepError as e:
            raise SweepError(f"{e} (value {next(iter(point.values()))!r})" if len(point) == 1 else str(e)) from None
        try:
            s = parse_scenario(doc, grid.name)
            for m in grid.modes:
                s.with_mode(m)
        except ScenarioError as e:
            from simulator.decision import params_text

            raise SweepError(f"--param {params_text(point)}: {e}") from None

    for p in grid.params:
        for v in p.values:
            check({p.key: v})
    if len(grid.params) > 1:
        for point in grid.points():
            check(point)


# ====================================================================== running
def run_point(job: tuple[int, dict[str, Any], str, dict[str, Any], str, int]) -> tuple[int, dict[str, Any]]:
    """One run of the grid (top level, so a process pool can call it): the measured row."""
    from simulator.decision import measure
    from simulator.run import run_scenario
    from simulator.scenario import parse_scenario

    index, doc, name, point, mode, seed = job
    scenario = parse_scenario(doc, name).with_mode(mode)
    t0 = time.perf_counter()
    _, result = run_scenario(scenario, seed)
    row = {"run": index, "params": point, **measure(result), "wall_s": round(time.perf_counter() - t0, 3)}
    return index, row


def jobs_of(grid: Grid) -> list[tuple[int, dict[str, Any], str, dict[str, Any], str, int]]:
    from simulator.scenario import parse_scenario

    base = parse_scenario(grid.doc, grid.name)
    jobs: list[tuple[int, dict[str, Any], str, dict[str, Any], str, int]] = []
    for point in grid.points():
        doc = grid.document(point, base)
        for mode in grid.modes:
            for seed in grid.seeds:
                jobs.append((len(jobs), doc, grid.name, point, mode, seed))
    return jobs


def run_grid(grid: Grid, jobs: int = 1, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every point; rows come back in grid order whatever order the workers finish in."""
    import multiprocessing

    work = jobs_of(grid)
    rows: dict[int, dict[str, Any]] = {}
    if jobs > 1 and len(work) > 1:
        with multiprocessing.get_context("spawn").Pool(min(jobs, len(work))) as pool:
            for index, row in pool.imap_unordered(run_point, work):
                rows[index] = row
                if on_row:
                    on_row(row)
    else:
        for job in work:
            index, row = run_point(job)
            rows[index] = row
            if on_row:
                on_row(row)
    return [rows[i] for i in range(len(work))]


WALL_FIELDS = ("wall_s",)  # the only fields of a row that differ between two runs of the same sweep


def sweep_data(grid: Grid, rows: list[dict[str, Any]], wall_s: float, command: str) -> dict[str, Any]:
    """sweep.json: the grid, every measured row, and the decision read from them."""
    from simulator.scenario import parse_scenario
    from simulator.sweep_report import decision_data

    scenario = parse_scenario(grid.doc, grid.name).to_json()
    params = [{"key": p.key, "values": list(p.values)} for p in grid.params]
    return {
        "scenario": grid.name, "description": scenario["description"], "command": command,
        "runtime": "deterministic",
        "params": params,
        "modes": sorted({r["mode"] for r in rows}, key=[r["mode"] for r in rows].index),
        "seeds": list(grid.seeds), "points": grid.n_points, "runs": len(rows),
        "slo": scenario["slo"], "base_scenario": scenario,
        "decision": decision_data(rows, scenario, params),
        "rows": rows,
        "wall_s": round(wall_s, 3),
    }


def save_rows(rows: list[dict[str, Any]], out: Path) -> Path:
    """The measured rows, written the moment the runs end (sweep.json is rewritten whole by
    `write_sweep`): hours of runs are never lost to a failure while making the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"rows": rows}, indent=1, default=str))
    return out / "sweep.json"


def write_sweep(data: dict[str, Any], out: Path) -> tuple[Path, Path]:
    from simulator.sweep_report import render_sweep

    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "sweep.html").write_text(render_sweep(data))
    return out / "sweep.json", out / "sweep.html"

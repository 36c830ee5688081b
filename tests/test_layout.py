"""The layout the redesign promised stays true: small modules with one job, each package
saying what it is for, and the live path (`load/`, `region/`) independent of the simulator.

These read the source tree, so a change that breaks the layout fails here, not in review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "cext", "geoledger", "bench", "load", "replication", "region", "chaos", "simulator")
MAX_LINES = 750
"""About 700 lines, as the redesign asked; a little slack so that a docstring does not fail CI."""
TOO_BIG_ON_PURPOSE = {"ledger/stores/cassandra.py"}
"""The Cassandra recorder, sized like `eventsourcing`'s own postgres.py: one recorder, one file."""


def _sources(suffixes: tuple[str, ...] = (".py", ".pyx", ".pxi")) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*") if p.suffix in suffixes)


def test_no_module_is_over_about_700_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(big) <= TOO_BIG_ON_PURPOSE, f"split these by job: {big}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_its_job(package: str) -> None:
    init = ROOT / package / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring saying the package's job"


def test_a_live_region_loads_no_simulator() -> None:
    """What `geoledger serve` runs per region (gateway, node driver, stores, peer links)
    imports neither the simulator nor Ray nor Locust: the code proven by the simulator is
    the replication core both share, not a copy. (The load-suite runner, which replays a
    scenario's chaos schedule, may read scenarios.)"""
    live = "import load.region, load.gateway, load.cluster, load.supervisor, load.peerlink, region, replication"
    loaded = "sorted({m.split('.')[0] for m in sys.modules} & {'simulator', 'ray', 'locust'})"
    probe = f"{live}; import sys; print({loaded})"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _top_level_imports(path: Path, known: set[str]) -> set[str]:
    """Modules of ours imported when `path` is imported (statements at module level, not in
    functions, not under `if TYPE_CHECKING`): the edges that can make an import cycle."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:  # `from pkg import submodule` runs pkg's __init__ only once
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in known else node.module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return {m for m in found if m in known}


def test_no_import_cycles() -> None:
    paths = {_module_name(p): p for p in _sources((".py",))}
    known = set(paths)
    edges = {m: _top_level_imports(p, known) - {m} for m, p in paths.items()}
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            walk(m)
    assert cycles == []

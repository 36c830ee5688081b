"""A source file that could run what crossed a process boundary: pickle (or a cousin)
imported, or eval/exec/__import__ called. Shared by the wire and peer-link tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def check_no_pickle(path: str) -> None:
    """Fail if `path` (relative to the repository) imports pickle-like modules or calls eval/exec."""
    tree = ast.parse((ROOT / path).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
    assert not imported & {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"}, path
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"eval", "exec", "__import__"}, path

"""Hot paths of the ledger: batch validate+apply over columnar state, in Cython.

`Engine` is the compiled engine when the extension is built, else the pure-Python twin
(`cext.engine_py.PyEngine`), which has the same signature and gives identical results;
`COMPILED` tells which one is in use.
"""

from __future__ import annotations

from cext.engine_py import PyEngine

try:
    from cext._engine import CyEngine as Engine  # type: ignore[import-not-found]

    COMPILED = True
except ImportError:  # pragma: no cover - exercised only without the build
    Engine = PyEngine  # type: ignore[misc,assignment]
    COMPILED = False

__all__ = ["COMPILED", "Engine", "PyEngine"]

"""One local Ray per pytest session, shared by every test that needs Ray.

`tests/conftest.py` defines the session fixture `ray_local` over these functions: the first
test that asks for it starts Ray (a real local Ray, 127.0.0.1, a resource per region),
every other test gets the same one, and the fixture's teardown — after the last test of the
session, whatever the file order — shuts it down and fails the session if any process or
temp dir of it is left behind.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.realparts import require

RAY_HOW = "install it with pip install 'ray[default]' (and make sure ray.init() can start locally)"
LEFTOVER_GRACE_S = 15.0


def _ray_importable() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def start_ray() -> dict[str, Any]:
    """The session's Ray: {"session", "cm", "pids"} (`pids`: worker pids tests saw, to check)."""
    require("Ray", _ray_importable(), RAY_HOW)
    from simulator.ray import ray_session

    cm = ray_session(num_cpus=2)
    try:
        session = cm.__enter__()
    except Exception as e:  # pragma: no cover - depends on the machine
        require("Ray", False, f"ray.init() failed ({e!r}); {RAY_HOW}")
        raise
    return {"session": session, "cm": cm, "pids": set()}


def stop_ray_and_find_leftovers(state: dict[str, Any]) -> list[str]:
    """Shut the session's Ray down; what it left behind (processes, temp dirs), if anything."""
    session = state["session"]
    state["cm"].__exit__(None, None, None)
    if not session.owned:
        return []
    import ray

    if ray.is_initialized():
        return ["ray is still initialised after shutdown"]
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = session.leftovers(sorted(state["pids"]))
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = session.leftovers(sorted(state["pids"]))
    return list(left)

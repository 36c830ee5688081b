"""One local Ray per pytest session, shared by every test module that needs Ray.

A session fixture defined in a module and imported into two modules is two fixtures to
pytest (one per module), so the Ray session itself lives here, in module state: the first
`ray_local` to run starts it, every other one gets the same. The last test of the session
that uses Ray (`shutdown_and_check_leftovers`) shuts it down and looks for leftovers; a
module's "last" test that is not the session's last Ray user skips instead, so that a
later module still finds Ray up (one `ray.init` per session, in any file order).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realparts import require

RAY_HOW = "install it with pip install 'ray[default]' (and make sure ray.init() can start locally)"

_STATE: dict[str, Any] | None = None


def _ray_importable() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def ray_state() -> dict[str, Any]:
    """The session's Ray (started on first use): {"session", "cm", "pids", "closed"}."""
    global _STATE
    if _STATE is not None and not _STATE["closed"]:
        return _STATE
    require("Ray", _ray_importable(), RAY_HOW)
    from simulator.ray import ray_session

    cm = ray_session(num_cpus=2)
    try:
        session = cm.__enter__()
    except Exception as e:  # pragma: no cover - depends on the machine
        require("Ray", False, f"ray.init() failed ({e!r}); {RAY_HOW}")
        raise
    _STATE = {"session": session, "cm": cm, "pids": set(), "closed": False}
    return _STATE


def close_ray() -> None:
    if _STATE is not None and not _STATE["closed"]:
        _STATE["closed"] = True
        _STATE["cm"].__exit__(None, None, None)


def ray_local_fixture() -> Iterator[dict[str, Any]]:
    """The body of each module's session fixture `ray_local`:

        @pytest.fixture(scope="session")
        def ray_local() -> Iterator[dict[str, Any]]:
            yield from ray_local_fixture()

    (every module gets its own fixture; all of them share this module's one Ray)."""
    yield ray_state()
    close_ray()


def later_ray_users(request: pytest.FixtureRequest) -> list[str]:
    """Tests collected after the calling one that use `ray_local`."""
    items = list(request.session.items)
    me = request.node
    after = items[items.index(me) + 1:] if me in items else []
    return [it.nodeid for it in after if "ray_local" in getattr(it, "fixturenames", ())]


def shutdown_and_check_leftovers(request: pytest.FixtureRequest, state: dict[str, Any]) -> None:
    """Shut the session's Ray down and assert none of its processes is left (last Ray user only)."""
    later = later_ray_users(request)
    if later:
        pytest.skip(f"Ray is still needed by {len(later)} later test(s); the last one checks the shutdown")
    session = state["session"]
    if not session.owned:
        pytest.skip("Ray was started by someone else in this process")
    close_ray()
    import ray

    assert not ray.is_initialized()
    deadline = time.monotonic() + 15
    left = session.leftovers(sorted(state["pids"]))
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = session.leftovers(sorted(state["pids"]))
    assert not left, left

"""Shared fixtures and the test tiers.

Tiers (pytest markers, `make test-fast` runs none of the first four):
* `ray` — starts a real local Ray; `cassandra` — talks to the real Cassandra that
  `scripts/cassandra start` runs; `load` — real gateway processes and Locust;
* `slow` — a long simulation or property run (seconds to tens of seconds).
A test that needs a real part fails instead of skipping under `GEOLEDGER_REQUIRE_REAL=1`
(as CI runs), and so does the whole session if the compiled engine is missing: otherwise
the suite would quietly test the pure-Python twin only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger import Ledger
from tests.support.clock import FakeClock
from tests.support.realparts import drop_keyspace, fresh_cassandra_url, real_parts_required

TIERS = ("ray", "cassandra", "load", "slow")


def pytest_configure(config: pytest.Config) -> None:
    import cext

    if real_parts_required() and not cext.COMPILED:
        raise pytest.UsageError("the compiled Cython engine is not importable (GEOLEDGER_REQUIRE_REAL=1): "
                                "build it with `pip install -e .` (make install) so the suite tests it, "
                                "not only the pure-Python twin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses Ray or Cassandra through a fixture is in that tier without saying so."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "ray_local" in names:
            item.add_marker(pytest.mark.ray)
        callspec = getattr(item, "callspec", None)
        if "cassandra" in names or (callspec is not None and callspec.params.get("store_url") == "cassandra"):
            item.add_marker(pytest.mark.cassandra)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[dict[str, Any]]:
    """The session's one local Ray; its teardown (after the session's last test) fails the
    session if Ray left a process or a temp dir behind."""
    from tests.support.ray import start_ray, stop_ray_and_find_leftovers

    state = start_ray()
    yield state
    left = stop_ray_and_find_leftovers(state)
    assert not left, f"Ray left behind: {left}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "cassandra"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return fresh_cassandra_url()


@pytest.fixture
def open_ledger(store_url: str, clock: FakeClock) -> Iterator[Callable[[], Ledger]]:
    """Opens the test's store (again): reopening a durable store must restore its state. A
    store has one writer (`ledger.lock`), so the ledger opened before is closed first."""
    opened: list[Ledger] = []

    def _open() -> Ledger:
        if store_url == "memory://" and opened:
            return opened[0]
        if opened:
            opened[-1].close()
        led = Ledger.open(store_url, clock=clock)
        opened.append(led)
        return led

    yield _open
    for led in opened:
        led.close()
    if store_url.startswith("cassandra://"):
        drop_keyspace(store_url)


@pytest.fixture
def led(open_ledger: Callable[[], Ledger]) -> Ledger:
    return open_ledger()

"""Shared fixtures: a fresh ledger on each store the behavioural suite runs against."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from ledger import Ledger


class FakeClock:
    """A controllable clock for the ledger (ns); tests move it, never the wall clock."""

    def __init__(self, now: int = 1_700_000_000_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _cassandra_url() -> str:
    from tests.realparts import require_cassandra

    require_cassandra()
    return f"cassandra://127.0.0.1:9042/gl_{uuid.uuid4().hex[:16]}?dc=dc1&rf=1&consistency=ONE"


@pytest.fixture(params=["memory", "sqlite", "cassandra"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return _cassandra_url()


@pytest.fixture
def open_ledger(store_url: str, clock: FakeClock) -> Iterator[Callable[[], Ledger]]:
    """Opens the test's store (again): reopening a durable store must restore its state."""
    opened: list[Ledger] = []

    def _open() -> Ledger:
        if store_url == "memory://" and opened:
            return opened[0]
        led = Ledger.open(store_url, clock=clock)
        opened.append(led)
        return led

    yield _open
    for led in opened:
        led.close()
    if store_url.startswith("cassandra://"):
        _drop_keyspace(store_url)


def _drop_keyspace(url: str) -> None:
    """Per-test keyspaces would pile up on a small test heap and slow every schema change."""
    from cassandra.cluster import Cluster

    keyspace = url.split("/")[3].split("?")[0]
    cluster = Cluster(["127.0.0.1"], port=9042, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=30)
    finally:
        cluster.shutdown()


@pytest.fixture
def led(open_ledger: Callable[[], Ledger]) -> Ledger:
    return open_ledger()

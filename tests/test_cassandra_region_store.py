"""A region's durable store in Cassandra (`simulator.cassandra_store.CassandraStore`).

Unit tests against the real local Cassandra (`scripts/cassandra start`), then one Ray run
of `region-outage` with every region's store in its own keyspace: the killed region must
recover from Cassandra. Keyspaces are named per test session and dropped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from cext.layout import TRANSFER_DTYPE
from ledger.errors import CorruptStoreError, StoreURLError
from replication.log import Entry
from replication.routing import RoutingTable
from tests.ray_support import ray_local_fixture
from tests.realparts import CASSANDRA_HOST, CASSANDRA_PORT, require_cassandra

BASE = f"gltest{uuid.uuid4().hex[:8]}"
URL = f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/{BASE}?dc=dc1&rf=1"


@pytest.fixture(scope="session")
def ray_local() -> Iterator[dict[str, Any]]:
    """The session's one local Ray, shared with tests/test_ray_runtime.py."""
    yield from ray_local_fixture()


@pytest.fixture(scope="module")
def created() -> Iterator[list[str]]:
    """Regions whose keyspaces the tests create; all dropped at the end of the module."""
    regions: list[str] = []
    yield regions
    if regions:
        from simulator.cassandra_store import drop_region_keyspaces

        drop_region_keyspaces(URL, sorted(set(regions)))


@pytest.fixture
def cassandra(created: list[str]) -> list[str]:
    require_cassandra()
    return created


def _entry(seq: int, amount: int = 100) -> Entry:
    rows = np.zeros(2, TRANSFER_DTYPE)
    rows["id_lo"] = [seq * 10 + 1, seq * 10 + 2]
    rows["amount_lo"] = amount
    return Entry(0, seq, 1, 1_000 + seq, rows).seal()


def _raw(region: str, cql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    from ledger.stores.cassandra import CassandraDatastore
    from simulator.cassandra_store import cassandra_settings

    ds = CassandraDatastore(cassandra_settings(URL, region))
    try:
        return ds.execute(cql.format(ks=ds.keyspace), params)
    finally:
        ds.close()


def test_append_flush_reopen_roundtrip(cassandra: list[str]) -> None:
    from simulator.cassandra_store import CassandraStore

    cassandra.append("roundtrip")
    store = CassandraStore(URL, "roundtrip", fresh=True)
    assert store.keyspace == f"{BASE}_roundtrip" and store.records == []
    store.append(RoutingTable.initial(4, 2))
    for seq in (1, 2, 3):
        store.append(_entry(seq))
    assert store.pending
    store.flush()
    assert not store.pending
    store.append(_entry(4))
    store.close()  # flushes the last append
    again = CassandraStore(URL, "roundtrip")
    try:
        assert len(again.records) == 5
        assert again.head == store.head
        assert [r.chain for r in again.records] == [r.chain for r in store.records]
        assert isinstance(again.records[0].payload, RoutingTable)
        assert [r.payload.seq for r in again.records[1:]] == [1, 2, 3, 4]  # type: ignore[union-attr]
        assert again.verify_chain() == (True, None)
        # appending continues the chain where it stopped
        again.append(_entry(5))
        again.flush()
    finally:
        again.close()
    third = CassandraStore(URL, "roundtrip")
    assert len(third.records) == 6 and third.verify_chain() == (True, None)
    third.close()
    # fresh=True empties the region's table (a new run reusing the keyspace)
    fresh = CassandraStore(URL, "roundtrip", fresh=True)
    assert fresh.records == []
    fresh.close()


def test_replace_and_corrupt_are_persisted(cassandra: list[str]) -> None:
    from simulator.cassandra_store import CassandraStore

    cassandra.append("repair")
    store = CassandraStore(URL, "repair", fresh=True)
    for seq in (1, 2, 3):
        store.append(_entry(seq))
    store.flush()
    store.corrupt(1)
    store.close()
    damaged = CassandraStore(URL, "repair")
    assert [i for i, *_ in damaged.scrub()] == [1], "the damage reached Cassandra"
    damaged.replace(1, _entry(2))  # a repaired copy from a peer
    damaged.close()
    repaired = CassandraStore(URL, "repair")
    try:
        assert repaired.scrub() == [] and repaired.verify_chain() == (True, None)
        assert int(repaired.records[1].payload.rows["amount_lo"][0]) == 100  # type: ignore[union-attr]
    finally:
        repaired.close()


def test_unreadable_or_missing_records_raise_corrupt_store_error(cassandra: list[str]) -> None:
    from simulator.cassandra_store import CassandraStore

    cassandra.append("corrupt")
    store = CassandraStore(URL, "corrupt", fresh=True)
    for seq in (1, 2, 3):
        store.append(_entry(seq))
    store.close()
    _raw("corrupt", "UPDATE {ks}.records SET payload = 0xdeadbeef WHERE idx = 1")
    with pytest.raises(CorruptStoreError, match="record 1 cannot be read"):
        CassandraStore(URL, "corrupt")
    _raw("corrupt", "DELETE FROM {ks}.records WHERE idx = 1")
    with pytest.raises(CorruptStoreError, match="record 1 is missing"):
        CassandraStore(URL, "corrupt")
    import pickle

    _raw("corrupt", "UPDATE {ks}.records SET payload = %s, chain = %s WHERE idx = 1",
         (pickle.dumps({"not": "a record"}), bytes(32)))
    with pytest.raises(CorruptStoreError, match="record 1 is not a log record"):
        CassandraStore(URL, "corrupt")


@pytest.mark.parametrize("url", [
    "postgres://127.0.0.1/geoledger",
    "cassandra://127.0.0.1:9042/",
    "cassandra://127.0.0.1:99999/geoledger",
    "cassandra://127.0.0.1/geoledger?rf=zero",
    "cassandra://127.0.0.1/geoledger?colour=blue",
    "cassandra://127.0.0.1/geo-ledger",
])
def test_bad_url_raises_store_url_error(url: str) -> None:
    from simulator.cassandra_store import CassandraStore
    from simulator.ray import check_store

    with pytest.raises(StoreURLError):
        CassandraStore(url, "beijing")
    with pytest.raises(StoreURLError):
        check_store(url)


def test_store_argument_parsing() -> None:
    from simulator.cassandra_store import region_keyspace
    from simulator.ray import check_store

    assert check_store(None) is None and check_store("sqlite") is None
    assert check_store(URL) == URL
    with pytest.raises(StoreURLError, match="unknown store"):
        check_store("/tmp/stores")
    assert region_keyspace("geoledger", "Hong-Kong") == "geoledger_hong_kong"
    with pytest.raises(StoreURLError, match="48"):
        region_keyspace("k" * 40, "far-away-region")


def test_cli_rejects_store_without_ray_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    from geoledger.cli import main

    assert main(["simulate", "baseline", "--store", URL]) == 2
    assert "--store is only meaningful with --runtime ray" in capsys.readouterr().out
    assert main(["simulate", "baseline", "--runtime", "ray", "--store", "mysql://x/y"]) == 2
    assert "unknown store" in capsys.readouterr().out


def test_region_outage_on_ray_recovers_the_killed_region_from_cassandra(
        cassandra: list[str], ray_local: dict[str, Any]) -> None:
    from simulator.plan import shortened
    from simulator.ray import run_scenario_ray
    from simulator.scenario import load_scenario

    s = shortened(load_scenario("region-outage"), 12.0, 4.0)
    # Beijing killed at 3 s for 6 s: a cold Cassandra's first writes can stall a region's loop
    # for a second or more, and the promotion must still come before Beijing returns
    s = replace(s, workload=replace(s.workload, rate=300), chaos=(replace(s.chaos[0], at=3.0, duration=6.0),))
    cassandra.extend(s.regions)
    _, res = run_scenario_ray(s, 1, store=URL)
    ray_local["pids"].update(res["ray"]["pids"])
    broken = {k: v["first_violation"] for k, v in res["invariants"].items() if v["promised"] and not v["ok"]}
    assert not broken, broken
    assert res["violated"] == []
    assert res["ray"]["store"] == "cassandra"
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    assert res["metrics"]["promotions"], "Beijing's units must move while it is down"
    (crash,) = res["ray"]["crashes"]
    assert crash["region"] == "beijing"
    assert crash["new_pid"] != crash["old_pid"], "a real kill: a new process"
    assert crash["replayed_records"] > 0, "the restart replays its Cassandra keyspace"
    assert crash.get("caught_up_at") is not None, "and catches up from its peers"
    # every region's records are in its keyspace, and the killed region's chain is intact
    from simulator.cassandra_store import CassandraStore

    for name in s.regions:
        store = CassandraStore(URL, name)
        try:
            assert len(store.records) >= crash["replayed_records"] if name == "beijing" else store.records
            assert store.verify_chain() == (True, None)
        finally:
            store.close()

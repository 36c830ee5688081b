"""A region's durable store in Cassandra (`region.cassandra.CassandraRegionStore`) under a run.

What every region store does is proven by `RegionStoreTestCase` (tests/test_region_stores.py);
here: the store URL and its checks, and one Ray run of `region-outage` with every region's
store in its own keyspace on the real local Cassandra (`scripts/cassandra start`): the
killed region must recover from Cassandra. Keyspaces are named per test session and
dropped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from ledger.errors import StoreURLError
from tests.support.realparts import CASSANDRA_HOST, CASSANDRA_PORT, require_cassandra

pytestmark = pytest.mark.cassandra

BASE = f"gltest{uuid.uuid4().hex[:8]}"
URL = f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/{BASE}?dc=dc1&rf=1"


@pytest.fixture(scope="module")
def created() -> Iterator[list[str]]:
    """Regions whose keyspaces the tests create; all dropped at the end of the module."""
    regions: list[str] = []
    yield regions
    if regions:
        from region.cassandra import drop_region_keyspaces

        drop_region_keyspaces(URL, sorted(set(regions)))


@pytest.fixture
def cassandra(created: list[str]) -> list[str]:
    require_cassandra()
    return created


@pytest.mark.parametrize("url", [
    "postgres://127.0.0.1/geoledger",
    "cassandra://127.0.0.1:9042/",
    "cassandra://127.0.0.1:99999/geoledger",
    "cassandra://127.0.0.1/geoledger?rf=zero",
    "cassandra://127.0.0.1/geoledger?colour=blue",
    "cassandra://127.0.0.1/geo-ledger",
])
def test_bad_url_raises_store_url_error(url: str) -> None:
    from region.cassandra import CassandraRegionStore
    from simulator.ray import check_store

    with pytest.raises(StoreURLError):
        CassandraRegionStore(url, "beijing")
    with pytest.raises(StoreURLError):
        check_store(url)


def test_store_argument_parsing() -> None:
    from region.cassandra import region_keyspace
    from simulator.ray import check_store

    assert check_store(None) is None and check_store("sqlite") is None
    assert check_store(URL) == URL
    with pytest.raises(StoreURLError, match="unknown store"):
        check_store("/tmp/stores")
    assert region_keyspace("geoledger", "Hong-Kong") == "geoledger_hong_kong"
    with pytest.raises(StoreURLError, match="48"):
        region_keyspace("k" * 40, "far-away-region")


@pytest.mark.parametrize("url", [
    "cassandra://admin:s3cr%65t-pw@127.0.0.1:9042/",  # no keyspace
    "cassandra://admin:s3cret-pw@127.0.0.1:99999/geoledger",  # bad port
    "cassandra://admin:s3cret-pw@127.0.0.1/geoledger?colour=blue",  # unknown option
    "cassandra://admin:s3cret-pw@127.0.0.1/geo-ledger",  # bad keyspace
])
def test_a_password_in_the_url_never_appears_in_an_error(url: str) -> None:
    from ledger import Ledger
    from region.cassandra import CassandraRegionStore
    from simulator.ray import check_store

    for attempt in (lambda: CassandraRegionStore(url, "beijing"), lambda: check_store(url),
                    lambda: Ledger.open(url), lambda: Ledger.open(url.replace("cassandra:", "cassandr:"))):
        with pytest.raises(StoreURLError) as info:
            attempt()
        text = str(info.value)
        assert "s3cret" not in text and "s3cr%65t" not in text, text
        assert "admin:***@" in text or "127.0.0.1" in text


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

    s = shortened(load_scenario("region-outage"), 13.0, 4.0)
    # Beijing killed at 4 s for 8 s: a cold Cassandra's first writes can stall a region's loop
    # for seconds on a loaded CI machine (a kill before any record is stored replays nothing),
    # actor calls take a second and more, and the promotion must still come before Beijing returns
    s = replace(s, workload=replace(s.workload, rate=300), chaos=(replace(s.chaos[0], at=4.0, duration=8.0),))
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
    assert crash.get("caught_up_at") is not None, ("and catches up from its peers", crash, res["ray"].get("settle_s"))
    # every region's records are in its keyspace, and the killed region's chain is intact
    from region.cassandra import CassandraRegionStore

    for name in s.regions:
        store = CassandraRegionStore(URL, name)
        try:
            assert len(store.records) >= crash["replayed_records"] if name == "beijing" else store.records
            assert store.verify_chain() == (True, None)
        finally:
            store.close()


def test_a_lost_regions_keyspace_is_read_for_the_audit(cassandra: list[str]) -> None:
    """What the Ray driver does with the store of a region lost for good on a Cassandra store
    (`region.audit.read_for_audit`): the keyspace is read as the region reads it, and an entry
    damaged in it is the first bad record."""
    from region.audit import read_for_audit
    from region.cassandra import CassandraRegionStore
    from tests.support.records import every_record_kind

    cassandra.append("audited")
    store = CassandraRegionStore(URL, "audited", fresh=True)
    for p in every_record_kind():
        store.append(p)
    store.close()
    found = read_for_audit("unused.db", URL, "audited")
    assert found.verify_chain() == (True, None) and len(found.records) == len(every_record_kind())
    store = CassandraRegionStore(URL, "audited")
    store.corrupt(2)
    store.close()
    assert read_for_audit("unused.db", URL, "audited").verify_chain() == (False, 2)

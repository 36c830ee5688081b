"""Stores kept in three datacentres: the replication map and consistency in the store URL,
and restoring a region lost with its datacentre from another datacentre's copy.

Against the real three-node, three-datacentre Cassandra of
`scripts/cassandra start --dcs changchun,beijing,shanghai` (`make test` starts it; without
it these tests skip, or fail under GEOLEDGER_REQUIRE_REAL=1). A datacentre is lost the way
a power cut loses it: its node is SIGKILLed by the script (`stop --dc NAME --kill`), and cut
off by freezing its node (`pause --dc NAME`); every test gives the ring back afterwards.
What may be missing after a loss is measured from what each replica holds, not assumed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger import Account, CreateTransferResult, Ledger, StoreError, StoreURLError, Transfer
from ledger.stores import cassandra as cs
from region.cassandra import CassandraRegionStore
from tests.support.cassandra_dcs import (
    DC_ADDR,
    DCS,
    REPLICATION,
    create_probe_keyspaces,
    drop_keyspaces,
    kill_dc,
    pause_dc,
    require_cassandra_dcs,
    restore_ring,
    resume_dc,
    script,
    session,
    stored_indexes,
    url,
    wait_until,
    wait_until_down,
)
from tests.support.clock import FakeClock
from tests.support.realparts import cql_answers
from tests.support.records import entry

pytestmark = pytest.mark.cassandra

CHANGCHUN, BEIJING, SHANGHAI = DCS
PASSWORD = "s3cret-pw"


def fresh_base() -> str:
    return f"gldc{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ring() -> Iterator[list[str]]:
    """The whole three-datacentre ring; afterwards every node runs again (whatever the test
    did to them) and the keyspaces the test lists here are dropped."""
    require_cassandra_dcs()
    keyspaces: list[str] = []
    yield keyspaces
    restore_ring()
    if keyspaces:
        drop_keyspaces(keyspaces)


def keyspace_exists(name: str) -> bool:
    with session(BEIJING) as s:
        return s.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                         (name,)).one() is not None


def keyspace_replication(name: str) -> dict[str, str]:
    with session(BEIJING) as s:
        row = s.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (name,)).one()
        return dict(row.replication)


# ---------------------------------------------------------------------------- the URL


def test_the_url_carries_datacentre_replication_and_consistency() -> None:
    env = cs.environment_from_url(url("geoledger", BEIJING, "each_quorum"))
    assert env["CASSANDRA_DC"] == BEIJING
    assert env["CASSANDRA_REPLICATION"] == REPLICATION
    assert env["CASSANDRA_CONSISTENCY"] == "EACH_QUORUM"
    from eventsourcing.utils import Environment

    settings = cs.CassandraSettings.from_env(Environment(env=env))
    assert settings.replication == tuple((dc, 1) for dc in DCS)
    assert settings.replication_for(BEIJING) == dict.fromkeys(DCS, 1)
    assert settings.serial_consistency == "SERIAL", "paxos across datacentres when writes wait for all"
    default = cs.CassandraSettings.from_env(Environment(env=cs.environment_from_url(url("geoledger", BEIJING))))
    assert (default.consistency, default.serial_consistency) == ("LOCAL_QUORUM", "LOCAL_SERIAL")
    assert default.replication_for(BEIJING) == dict.fromkeys(DCS, 1)
    legacy = cs.CassandraSettings.from_env(Environment(env=cs.environment_from_url("cassandra://h/ks?dc=x&rf=3")))
    assert legacy.replication is None and legacy.replication_for("x") == {"x": 3}


HOSTILE = [
    ("dc=changchun&consistency=each_quarum", "invalid CASSANDRA_CONSISTENCY"),
    ("dc=changchun&consistency=", "empty consistency"),
    ("dc=changchun&consistency=serial", "invalid CASSANDRA_CONSISTENCY"),
    ("dc=changchun&replication=", "empty replication"),
    ("dc=changchun&replication=changchun", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:one", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:-1", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:%C2%B2", "is not 'datacentre:replicas'"),  # '²' is no count
    ("dc=changchun&replication=changchun:1,,beijing:1", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:1;DROP KEYSPACE system", "is not 'datacentre:replicas'"),
    ("dc=changchun&replication=changchun:0", "out of range"),
    ("dc=changchun&replication=changchun:10", "out of range"),
    ("dc=changchun&replication=changchun:" + "9" * 5000, "out of range"),
    ("dc=changchun&replication=changchun:1,changchun:2", "given twice"),
    ("dc=changchun&replication=changchun:1,chang%27chun:1", "invalid datacentre in the replication map"),
    ("dc=changchun&replication=" + ",".join(f"dc{k}:1" for k in range(33)), "1..32"),
    ("dc=changchun&rf=1000", "out of range"),
    ("dc=changchun&rf=1&replication=changchun:1", "not both"),
    ("dc=wuhan&replication=changchun:1,beijing:1", "holds no replica"),
    ("dc=chang%27chun:1}%20AND%20durable_writes", "invalid CASSANDRA_DC"),
    ("dc=changchun&replication=changchun:1&replication=beijing:1", "given twice"),
]


@pytest.mark.parametrize(("query", "needle"), HOSTILE, ids=[f"{n}-{k}" for k, (_, n) in enumerate(HOSTILE)])
@pytest.mark.parametrize("opener", ["parser", "Ledger.open", "region store"])
def test_a_hostile_datacentre_url_is_refused_clearly_without_its_password(
        query: str, needle: str, opener: str, tmp_path: object) -> None:
    """Refused before any connection (so nothing changes), saying what is wrong, and the
    password never appears: not as written, not decoded."""
    bad = f"cassandra://admin:{PASSWORD.replace('-', '%2D')}@127.0.0.2:9042/geoledger?{query}"
    open_it: dict[str, Callable[[], object]] = {
        "parser": lambda: cs.environment_from_url(bad),
        "Ledger.open": lambda: Ledger.open(bad),
        "region store": lambda: CassandraRegionStore(bad, "beijing"),
    }
    with pytest.raises(StoreURLError) as info:
        open_it[opener]()
    text = str(info.value)
    assert needle in text, text
    assert PASSWORD not in text and PASSWORD.replace("-", "%2D") not in text, text


# ---------------------------------------------------------------------------- the ring


def test_the_ring_has_one_node_per_datacentre(ring: list[str]) -> None:
    out = script("status", "--dcs")
    for dc in DCS:
        assert f"{DC_ADDR[dc]}" in out and any(line.split()[:1] == [dc] and line.endswith("up")
                                               for line in out.splitlines()), out
        assert any(line.startswith("UN") and DC_ADDR[dc] in line for line in out.splitlines()), out
    for dc in DCS:
        assert f"Datacenter: {dc}" in out
    from ledger.stores.cassandra_topology import nodes_per_dc

    with session(BEIJING) as s:
        assert nodes_per_dc(s.cluster.metadata.all_hosts()) == dict.fromkeys(DCS, 1)


def test_a_second_start_is_idempotent_and_make_test_stops_only_what_it_started(
        ring: list[str], tmp_path: Path) -> None:
    """`make test` runs `start --dcs ... --record FILE` and, at the end, `stop --recorded FILE`:
    on a whole ring the start starts nothing and records nothing, and the stop stops nothing.
    (That a start records the one node it did start: the restore test below.)"""
    record = tmp_path / "started"
    record.touch()  # as make test's mktemp leaves it
    script("start", "--dcs", ",".join(DCS), "--record", str(record))
    assert record.read_text() == ""
    assert "stopped: " in script("stop", "--recorded", str(record))
    assert not record.exists()
    assert all(cql_answers(DC_ADDR[dc]) for dc in DCS), "stop --recorded stopped a node it did not start"
    with pytest.raises(AssertionError, match="--record goes with --dcs"):
        script("start", "--record", str(record))


@pytest.mark.parametrize(("via", "replication", "needle"), [
    (CHANGCHUN, "changchun:1,atlantis:1", "which the cluster does not have"),
    (CHANGCHUN, "changchun:2,beijing:1,shanghai:1", "asks for 2 replicas in datacentre 'changchun', which has 1 node"),
    (CHANGCHUN, "beijing:1,shanghai:1", "this client's datacentre 'changchun' holds no replica"),
])
def test_a_replication_the_cluster_cannot_hold_is_refused_and_creates_nothing(
        ring: list[str], via: str, replication: str, needle: str) -> None:
    base = fresh_base()
    ring.extend([base, f"{base}_beijing"])
    bad = f"cassandra://admin:{PASSWORD}@{DC_ADDR[via]}:9042/{base}?replication={replication}"
    for attempt in (lambda: Ledger.open(bad), lambda: CassandraRegionStore(bad, "beijing")):
        with pytest.raises(StoreError) as info:
            attempt()
        assert needle in str(info.value) and PASSWORD not in str(info.value), str(info.value)
    assert not keyspace_exists(base) and not keyspace_exists(f"{base}_beijing")


def test_an_existing_keyspace_replicated_otherwise_is_refused_and_left_alone(ring: list[str]) -> None:
    base = fresh_base()
    ks = f"{base}_beijing"
    ring.append(ks)
    CassandraRegionStore(url(base, BEIJING), "beijing").close()
    before = keyspace_replication(ks)
    assert {k: v for k, v in before.items() if k != "class"} == dict.fromkeys(DCS, "1")
    narrower = f"cassandra://{DC_ADDR[BEIJING]}:9042/{base}?dc=beijing&replication=beijing:1,shanghai:1"
    with pytest.raises(StoreError, match="is replicated .* but the store asks for"):
        CassandraRegionStore(narrower, "beijing")
    assert keyspace_replication(ks) == before


# ---------------------------------------------------------------------------- restore


def test_a_region_lost_with_its_datacentre_is_restored_from_another(ring: list[str], clock: FakeClock,
                                                                    tmp_path: Path) -> None:
    """EACH_QUORUM: every record the store acknowledged is in every datacentre, so when
    Changchun's node dies (SIGKILL, as a power cut) its region store opens, whole and with
    its chain intact, through Beijing (and through Shanghai); the library's ledger too."""
    base, ledger_ks = fresh_base(), fresh_base()
    ring.extend([f"{base}_changchun", ledger_ks])
    store = CassandraRegionStore(url(base, CHANGCHUN, "each_quorum"), "changchun")
    acknowledged = []
    for batch in range(4):
        for i in range(25):
            store.append(entry(batch * 25 + i + 1))
        store.flush()  # returns: every record so far acknowledged by a majority in every DC
        acknowledged = list(store.records)
    led = Ledger.open(url(ledger_ks, CHANGCHUN, "each_quorum"), clock=clock)
    led.create_accounts([Account(id=1, ledger=156, code=10), Account(id=2, ledger=156, code=10)])
    assert led.create_transfers([Transfer(id=100 + i, debit_account_id=2, credit_account_id=1, amount=i + 1,
                                          ledger=156, code=1) for i in range(20)]) == [CreateTransferResult.OK] * 20
    balances = led.lookup_accounts([1, 2])
    led.close()

    kill_dc(CHANGCHUN)
    store.close()
    for survivor in (BEIJING, SHANGHAI):
        restored = CassandraRegionStore(url(base, survivor), "changchun")
        try:
            assert [r.chain for r in restored.records] == [r.chain for r in acknowledged]
            assert restored.verify_chain() == (True, None)
        finally:
            restored.close()
    restored_ledger = Ledger.open(url(ledger_ks, BEIJING), clock=clock)
    try:
        assert restored_ledger.lookup_accounts([1, 2]) == balances
        assert restored_ledger.verify().ok
        # and it takes writes in Beijing (LOCAL_QUORUM) while Changchun is gone
        assert restored_ledger.create_transfers([Transfer(id=200, debit_account_id=2, credit_account_id=1,
                                                          amount=5, ledger=156, code=1)]) == [CreateTransferResult.OK]
    finally:
        restored_ledger.close()
    record = tmp_path / "started"
    script("start", "--dcs", ",".join(DCS), "--record", str(record))
    assert record.read_text().split() == [CHANGCHUN], "the start records the node it started, only that one"


def test_datacentres_cut_off_one_by_one_then_the_writer_lost(ring: list[str]) -> None:
    """Changchun's regions write through three phases, then Changchun is lost with its disk:
    1. every datacentre up: records 0-49;
    2. Shanghai cut off (its node frozen, and convicted by Changchun's): records 50-99;
    3. Beijing cut off too: records 100-149.
    One region store at each consistency level, side by side (one loss serves both).

    LOCAL_QUORUM acknowledges all 150 (only Changchun's replica has to answer). Measured
    from the survivors' replicas, what each was cut off from died with Changchun: Beijing
    lacks 100-149, Shanghai 50-149. A restore through Shanghai at LOCAL_QUORUM (its replica
    alone) gets 0-49; at QUORUM (both survivors' replicas, merged) 0-99. EACH_QUORUM
    refuses phases 2 and 3 (the flushes fail, nothing is acknowledged), and every survivor
    holds everything it acknowledged."""
    base, probe = fresh_base(), fresh_base()
    levels = ("local_quorum", "each_quorum")
    region = {"local_quorum": "changchun_lq", "each_quorum": "changchun_eq"}
    ks = {level: f"{base}_{region[level]}" for level in levels}
    ring.extend([*ks.values(), *(f"{probe}_{dc}" for dc in DCS)])
    create_probe_keyspaces(probe, CHANGCHUN, (BEIJING, SHANGHAI))
    create_probe_keyspaces(probe, SHANGHAI, (CHANGCHUN,))
    stores = {level: CassandraRegionStore(url(base, CHANGCHUN, level), region[level]) for level in levels}
    acknowledged: dict[str, set[int]] = {level: set() for level in levels}

    def write(records: range) -> None:
        for level, store in stores.items():
            for i in records:
                store.append(entry(i + 1))
            with contextlib.suppress(StoreError):
                store.flush()
                acknowledged[level] = set(range(len(store.records)))

    def held(dc: str, level: str, records: range) -> None:
        """Observed, not assumed: `dc`'s replica has `records` before it is cut off."""
        wait_until(f"{dc} holding {level}'s records {records}",
                   lambda: stored_indexes(dc, ks[level]) >= set(records))

    write(range(0, 50))
    for level in levels:
        held(BEIJING, level, range(0, 50))
        held(SHANGHAI, level, range(0, 50))
    pause_dc(SHANGHAI)
    wait_until_down(CHANGCHUN, SHANGHAI, probe)
    write(range(50, 100))
    held(BEIJING, "local_quorum", range(0, 100))
    pause_dc(BEIJING)
    wait_until_down(CHANGCHUN, BEIJING, probe)
    write(range(100, 150))
    assert acknowledged == {"local_quorum": set(range(150)), "each_quorum": set(range(50))}, \
        "LOCAL_QUORUM acknowledges while cut off, EACH_QUORUM does not"
    assert stores["each_quorum"].pending, "the refused records stay queued"

    kill_dc(CHANGCHUN)
    resume_dc(BEIJING)
    resume_dc(SHANGHAI)
    for store in stores.values():
        with contextlib.suppress(StoreError):  # EACH_QUORUM: the refused records die with the region
            store.close()
    missing = {level: {dc: acknowledged[level] - stored_indexes(dc, ks[level]) for dc in (BEIJING, SHANGHAI)}
               for level in levels}
    assert missing == {"local_quorum": {BEIJING: set(range(100, 150)), SHANGHAI: set(range(50, 150))},
                       "each_quorum": {BEIJING: set(), SHANGHAI: set()}}, missing

    def restored_length(level: str, consistency: str) -> int:
        restored = CassandraRegionStore(url(base, SHANGHAI, consistency), region[level])
        try:
            assert restored.verify_chain() == (True, None)
            return len(restored.records)
        finally:
            restored.close()

    assert restored_length("each_quorum", "local_quorum") == 50
    assert restored_length("local_quorum", "local_quorum") == 50, "Shanghai's replica alone"
    # QUORUM (2 of the 3 replicas) through Shanghai, which was frozen when Changchun died: once
    # it has convicted Changchun it asks Beijing, not the dead node, for the second answer
    wait_until_down(SHANGHAI, CHANGCHUN, probe)
    assert restored_length("local_quorum", "quorum") == 100, "Beijing's and Shanghai's replicas merged"

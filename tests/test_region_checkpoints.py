"""Checkpoints (`replication.checkpoint`, `region.checkpoint`): a region restarted from its
store's snapshot and the records after it has exactly the state one that replayed every
record has; a duplicate that arrives after the records holding its original were compacted
away is still recognised; and the simulator's outcomes do not depend on checkpoints.

The random histories are the deterministic simulator's (every mode, with and without a
region crash); hypothesis picks where snapshots are taken.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.layout import TRANSFER_DTYPE
from ledger.types import CreateTransferResult
from region import checkpoint
from region.cassandra import CassandraRegionStore, drop_region_keyspaces
from region.sqlite import SqliteRegionStore
from region.store import MemoryRegionStore, RegionStore
from replication.accounts import AccountMap
from replication.config import Mode, NodeConfig
from replication.ids import transfer_id
from replication.log import Entry
from replication.messages import Checkpoint, ClientRequest, LoadBase, Persist, PersistRepair, Reply, Send, Ship
from replication.node import RegionNode
from replication.shipping import LogShipping
from replication.state import canonical_digest
from simulator.plan import shortened
from simulator.result import RunResult
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from tests.support.realparts import CASSANDRA_HOST, CASSANDRA_PORT, require_cassandra

T = 1_700_000_000_000_000_000
M64 = (1 << 64) - 1
AMAP = AccountMap(3, np.arange(13) % 3)  # customers 1..12; customer c is in unit c % 3, homed at region c % 3
EXISTS = int(CreateTransferResult.EXISTS)
CASSANDRA_URL = f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/glck{uuid.uuid4().hex[:8]}?dc=dc1&rf=1"
MODES = ["async", "unit+async", "unit+semi-sync", "escrow", "quorum", "quorum+region", "quorum+ledger"]


# ---------------------------------------------------------------------- what must survive a restart
def durable_state(node: RegionNode) -> dict[str, Any]:
    """Everything a restart must give back exactly: the books, and per design what decides
    its next moves (heads and sequence numbers, routing, escrow shares, credit legs owed,
    each Raft log's term, vote, commit and entries)."""
    d = node.design
    out: dict[str, Any] = {"books": canonical_digest(node.engine), "transfers": len(node.engine.transfers),
                           "anomalies": sorted(map(tuple, node.replica.anomalies)), "last_ts": node.replica.last_ts}
    if node.cfg.mode is Mode.QUORUM:
        out["raft"] = [(g.term, g.voted_for, g.commit, g.applied, g.offset, g.last_index,
                        [(e.seq, e.rv, e.checksum) for e in g.log])
                       for g in d.groups]
        return out
    out.update(heads=list(d.heads), next_seq=d.next_seq, routing=d.routing,
               quota=list(getattr(d, "quota", [])), owed=sorted(getattr(d, "outbox", {})))
    return out


def live_state(node: RegionNode) -> dict[str, Any]:
    """What a live node and one recovered from its store agree on (the rest is volatile: a
    live node's outbox shrinks as credit legs are acknowledged, which is not recorded)."""
    full = durable_state(node)
    return {k: full[k] for k in ("books", "transfers", "heads", "routing") if k in full}


# ---------------------------------------------------------------------- histories from the simulator
def scenario(name: str, mode: str, every: int, duration: float = 2.0) -> Any:
    s = shortened(load_scenario(name).with_mode(mode), duration, 2.0)
    return dataclasses.replace(s, node=dataclasses.replace(s.node, checkpoint_every=every))


@functools.cache
def history(name: str, mode: str, seed: int = 1) -> RunResult:
    """A run without checkpoints: each store holds every record the region ever wrote."""
    sim, result = run_scenario(scenario(name, mode, 0), seed)
    assert not result["violated"], result["violated"]
    assert all(s.base == 0 for s in sim.stores)
    return sim


def snapshot_then_recover(config: NodeConfig, records: list[Any], positions: list[int]) -> RegionNode:
    """A store holding `records`, checkpointed at each of `positions` in turn (as a runtime
    does), then a restart from it: its snapshot and the records after the last position."""
    store = MemoryRegionStore()
    for r in records:
        store.append(r.payload)
    for p in positions:
        checkpoint.take(config, store, Checkpoint(p))
    assert store.base == (positions[-1] if positions else 0)
    return RegionNode.recover(config, store)[0]


@pytest.mark.parametrize("mode", [m if m in ("async", "unit+semi-sync") else pytest.param(m, marks=pytest.mark.slow)
                                  for m in MODES])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_restart_from_a_snapshot_at_any_point_gives_the_state_every_record_gives(mode: str, data: Any) -> None:
    sim = history("baseline", mode)
    r = data.draw(st.integers(0, len(sim.stores) - 1), label="region")
    records = list(sim.stores[r].records)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records)), min_size=1, max_size=3), label="snapshots at"))
    config = sim.cfgs[r]
    replayed = RegionNode.recover(config, sim.stores[r])[0]
    restarted = snapshot_then_recover(config, records, cuts)
    assert durable_state(restarted) == durable_state(replayed)
    assert live_state(restarted) == live_state(sim.nodes[r]), "and what the region that never restarted has"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "unit+semi-sync", "escrow", "quorum"])
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(1, 10_000), every=st.integers(3, 40))
def test_checkpoints_change_no_outcome_of_a_run_with_a_region_crash(mode: str, seed: int, every: int) -> None:
    """The same seed with checkpoints every few records gives the same trace digest (every
    reply, every report) as without; the crashed region restarts from a snapshot and its
    records after it; at the end every region's store recovers its live state."""
    if mode == "quorum":  # each checkpoint rebuilds the Raft logs kept for the down region:
        every = max(every, 15)  # one every 3 of its ~15k records takes minutes, not seconds
    plain, plain_result = run_scenario(scenario("region-outage", mode, 0), seed)
    sim, result = run_scenario(scenario("region-outage", mode, every), seed)
    assert result["digest"] == plain_result["digest"]
    assert not result["violated"], result["violated"]
    assert any(s.base > 0 for s in sim.stores), "checkpoints were taken"
    assert not [x for x in sim.log.reports if x[2] == "checkpoint_failed"]
    for r, store in enumerate(sim.stores):
        recovered = RegionNode.recover(sim.cfgs[r], store)[0]
        whole = RegionNode.recover(plain.cfgs[r], plain.stores[r])[0]
        assert durable_state(recovered) == durable_state(whole)
        if sim.nodes[r] is not None:
            assert live_state(recovered) == live_state(sim.nodes[r])


@pytest.mark.slow
def test_checkpoints_change_no_outcome_of_a_baseline_run() -> None:
    """The fast twin of the test above: one mode, one seed."""
    plain = run_scenario(scenario("baseline", "unit+semi-sync", 0), 7)[1]
    sim, result = run_scenario(scenario("baseline", "unit+semi-sync", 25), 7)
    assert result["digest"] == plain["digest"] and not result["violated"]
    assert all(s.base > 0 and len(s.records) < 60 for s in sim.stores), [(s.base, len(s.records)) for s in sim.stores]


# ---------------------------------------------------------------------- exactly-once after compaction
class Runtime:
    """The smallest runtime: one node over one store, driven as `region.driver` drives it."""

    def __init__(self, config: NodeConfig, store: RegionStore) -> None:
        self.store = store
        self.node = RegionNode.recover(config, store)[0] if store.end or store.has_snapshot else RegionNode(config)

    def step(self, messages: list[Any], now: int) -> list[Any]:
        effects = self.node.handle_many(messages, now)
        for e in effects:
            if type(e) is Persist:
                self.store.append(e.record)
            elif type(e) is PersistRepair:
                self.store.replace(e.index, e.entry)
        self.store.flush()
        for e in effects:
            if type(e) is Checkpoint:
                assert checkpoint.perform(self.node, self.store, e) is None
            elif type(e) is LoadBase:
                snapshot = self.store.load_snapshot()
                assert snapshot is not None
                self.node.rebuild(snapshot)
        return effects


def client_rows(unit: int, first: int, n: int = 3) -> np.ndarray:
    """`n` transfers with ids first.. of `unit` (async: written where the unit is homed)."""
    out = np.zeros(n, TRANSFER_DTYPE)
    for i in range(n):
        full = transfer_id(unit, first + i)
        out[i]["id_lo"], out[i]["id_hi"] = full & M64, full >> 64
        out[i]["debit_account_id_lo"], out[i]["credit_account_id_lo"] = 3 + unit, 6 + unit
        out[i]["amount_lo"], out[i]["ledger"], out[i]["code"] = 1, 156, 1
    return out


def replies(effects: list[Any]) -> list[list[int]]:
    return [e.results.tolist() for e in effects if type(e) is Reply]


@pytest.fixture
def cassandra_region() -> Iterator[str]:
    """A fresh region name whose keyspace on the shared Cassandra node is dropped afterwards."""
    require_cassandra()
    region = f"ck{uuid.uuid4().hex[:12]}"
    yield region
    drop_region_keyspaces(CASSANDRA_URL, [region])


@pytest.mark.parametrize("where", ["memory", "sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def test_a_late_duplicate_is_recognised_after_compaction_and_after_a_restart(
        tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    """Exactly-once does not rest on records or entries kept in memory: the engine keeps
    every transfer (and its id index) in the snapshot, so a client's retry of an id whose
    records were compacted away is answered EXISTS; a peer's entry at or below the applied
    head is a duplicate by its sequence number, which the snapshot keeps per origin."""
    region = request.getfixturevalue("cassandra_region") if where == "cassandra" else ""

    def open_store() -> RegionStore:
        if where == "cassandra":
            return CassandraRegionStore(CASSANDRA_URL, region)
        return SqliteRegionStore(tmp_path / "region0.db") if where == "sqlite" else memory

    memory = MemoryRegionStore()
    config = NodeConfig(3, 0, Mode.ASYNC, AMAP, 1000, checkpoint_every=4)
    here, peer = Runtime(config, open_store()), Runtime(dataclasses.replace(config, me=1), MemoryRegionStore())
    ships = []
    for k in range(12):
        assert replies(here.step([ClientRequest(k, client_rows(0, 1 + 3 * k))], T + k)) == [[0, 0, 0]]
        sent = peer.step([ClientRequest(k, client_rows(1, 1 + 3 * k))], T + k)
        ships += [e.message for e in sent if type(e) is Send and e.to == 0 and type(e.message) is Ship]
    for s in ships:
        here.step([s], T + 100)
    assert here.node.design.heads[1] == 12
    assert here.store.base > 0, "checkpoints were taken"
    oldest = [e for e in here.node.design.applied]
    assert all(e.seq > 1 for e in oldest), "the first entries are no longer held in memory"
    assert not any(isinstance(r.payload, Entry) and r.payload.seq == 1 for r in here.store.records)
    def books(node: RegionNode) -> dict[str, Any]:
        return {k: v for k, v in durable_state(node).items() if k != "last_ts"}  # the clock's mark moves on

    before = books(here.node)

    def late_duplicates(rt: Runtime, batch: int) -> None:
        assert replies(rt.step([ClientRequest(batch, client_rows(0, 1))], T + 200)) == [[EXISTS] * 3]
        rt.step([ships[0], ships[1]], T + 201)  # the peer's first entries, shipped again
        assert books(rt.node) == before

    late_duplicates(here, 100)
    here.store.close()
    again = Runtime(config, open_store())
    assert again.store.base == here.store.base and again.store.has_snapshot
    late_duplicates(again, 101)
    again.store.close()


# ---------------------------------------------------------------------- keeping enough log for peers
def applied_by_every_peer(self: LogShipping) -> tuple[int, ...]:
    """The rule retention must not use: drop what every peer has applied (not yet covered
    by its snapshot, so its record may still rot and need a repair from us)."""
    return tuple(min((self.peer_heads[p][o] if p in self.peer_heads else 0 for p in self.peers), default=0)
                 for o in range(len(self.heads)))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["covered by every peer's snapshot", "applied by every peer"])
def test_entries_are_kept_until_every_peer_snapshot_covers_them(monkeypatch: pytest.MonkeyPatch, rule: str) -> None:
    """In a run with bit rot (fuzz), a region repairs a damaged record from a peer's copy.
    Were entries dropped once every peer had applied them, no peer would still hold the
    entry to repair: the record stays damaged and the store fails its audit."""
    if rule == "applied by every peer":
        monkeypatch.setattr(LogShipping, "retain_from", applied_by_every_peer)
    s = load_scenario("fuzz").with_mode("async")
    s = dataclasses.replace(s, node=dataclasses.replace(s.node, checkpoint_every=50))
    sim, result = run_scenario(s, 1)
    assert any(x[2] == "corruption" for x in sim.log.reports), "the run damages records"
    if rule == "applied by every peer":
        assert "audit_chain" in result["violated"]
    else:
        assert not result["violated"] and all(st.base > 0 for st in sim.stores)


def test_a_restarted_region_does_not_checkpoint_over_the_entries_it_wrote_before_its_crash() -> None:
    """The records a past life wrote after the store's snapshot hold entries a fork may still
    void: after a restart they are as unsettled as when they were written, so the first
    checkpoint stops before them until the settled heads pass them."""
    from replication.checkpoint import CheckpointPolicy

    def entry(origin: int, seq: int) -> Entry:
        return Entry(origin, seq, 1, T, np.zeros(0, TRANSFER_DTYPE)).seal()

    records = [entry(0, 7), entry(2, 5), entry(2, 6), entry(1, 3)]
    policy = CheckpointPolicy(every=1, every_bytes=0, position=10 + len(records), base=10)
    policy.note_stored(records, 10, voidable=True)
    assert policy.due([7, 0, 4], []) == 11  # origin 0's entry is settled, our own entry 5 is not
    policy.done(11)
    assert policy.due([7, 3, 6], []) == 14
    unvoidable = CheckpointPolicy(every=1, every_bytes=0, position=14, base=10)
    unvoidable.note_stored(records, 10, voidable=False)
    assert unvoidable.due(None, []) == 14


@pytest.mark.slow
def test_a_fuzzed_region_crash_with_checkpoints_keeps_every_promise() -> None:
    """Fuzz seed 9314 of `unit+semi-sync` with checkpoints every 50 records: Shanghai, cut off
    by loss, crashes; Changchun takes its units with a fork keeping Shanghai's entries through
    261. Restarted, Shanghai checkpointed at once over its own entries 262..291 (a restarted
    node had forgotten they were unsettled), then rebuilt its books from that checkpoint when
    it learnt of the fork: the voided transfers stayed in its books, and the clients' retries
    of them at Changchun were rejected as EXISTS on Shanghai (convergence)."""
    from simulator.cli import fuzz_results

    ((seed, violated, _, firsts),) = fuzz_results([("fuzz-checkpoints", "unit+semi-sync", 9314, True)], workers=1)
    assert violated == [], (seed, firsts)


@pytest.mark.slow
def test_fuzz_over_compacted_stores_keeps_every_promise() -> None:
    """Two seeds of `fuzz-checkpoints` (crashes and bit rot over stores compacted by
    checkpoints, Raft logs by snapshots) per family of designs, every node's invariants
    checked after every step. (`geoledger fuzz --scenario fuzz-checkpoints` for more.)"""
    from simulator.cli import fuzz_results

    jobs = [("fuzz-checkpoints", mode, seed, True) for mode in ("unit+semi-sync", "quorum", "escrow")
            for seed in range(1, 3)]
    failed = [(seed, firsts) for seed, violated, _, firsts in fuzz_results(jobs, workers=2) if violated]
    assert failed == []


@functools.cache
def compacted_history(mode: str) -> RunResult:
    """A quorum run whose logs take a Raft snapshot every 20 entries, without store checkpoints."""
    s = scenario("baseline", mode, 0)
    sim, result = run_scenario(dataclasses.replace(s, node=dataclasses.replace(s.node, snapshot_every=20)), 1)
    assert not result["violated"]
    return sim


def store_of(records: list[Any], damaged: Iterable[int] = ()) -> MemoryRegionStore:
    store = MemoryRegionStore()
    for r in records:
        store.append(r.payload)
    for index in damaged:
        store.corrupt(index)
    return store


@pytest.mark.parametrize("mode", ["quorum+ledger", pytest.param("quorum", marks=pytest.mark.slow)])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_a_checkpoint_over_damaged_records_is_refused_or_changes_nothing(mode: str, data: Any) -> None:
    """Rot anywhere before a checkpoint's position: the checkpoint is refused (the store
    unchanged), or taken, and then the store is whole and a restart from it has exactly the
    state a restart from the intact records has."""
    sim = compacted_history(mode)
    r = data.draw(st.integers(0, len(sim.stores) - 1), label="region")
    records = list(sim.stores[r].records)
    position = data.draw(st.integers(1, len(records)), label="checkpoint at")
    entries = [i for i, rec in enumerate(records[:position]) if type(rec.payload) is Entry]
    if not entries:
        return
    damaged = data.draw(st.sets(st.sampled_from(entries), min_size=1, max_size=4), label="damaged")
    store = store_of(records, damaged)
    try:
        checkpoint.take(sim.cfgs[r], store, Checkpoint(position))
    except checkpoint.CheckpointError as e:
        assert "is damaged" in str(e) and store.base == 0 and sorted(x[0] for x in store.scrub()) == sorted(damaged)
        return
    assert store.verify_chain() == (True, None) and store.scrub() == []
    restarted = RegionNode.recover(sim.cfgs[r], store)[0]
    assert durable_state(restarted) == durable_state(RegionNode.recover(sim.cfgs[r], store_of(records))[0])


def test_a_checkpoint_may_cover_a_damaged_record_only_if_a_raft_snapshot_supersedes_it() -> None:
    """Quorum mode: a damaged record whose entry a later snapshot record of its log covers is
    never read by a recovery, so a checkpoint over it is taken (and recovers the same state
    as the intact store); a damaged entry the log still needs refuses the checkpoint."""
    from replication.raft import Snapshot

    sim = compacted_history("quorum+ledger")
    config, records = sim.cfgs[0], list(sim.stores[0].records)
    snaps = [i for i, r in enumerate(records) if type(r.payload) is Snapshot]
    assert len(snaps) >= 2
    first_snap, last_snap = snaps[0], snaps[-1]
    covered = next(i for i, r in enumerate(records[:first_snap]) if type(r.payload) is Entry
                   and r.payload.seq <= records[first_snap].payload.index)
    needed = next(i for i in range(last_snap + 1, len(records)) if type(records[i].payload) is Entry)

    store = store_of(records, [covered])
    checkpoint.take(config, store, Checkpoint(first_snap + 1))
    assert store.verify_chain() == (True, None) and store.scrub() == []
    intact = store_of(records)
    assert durable_state(RegionNode.recover(config, store)[0]) == durable_state(RegionNode.recover(config, intact)[0])
    store = store_of(records, [needed])
    with pytest.raises(checkpoint.CheckpointError, match=f"record {needed} is damaged"):
        checkpoint.build(config, store, needed + 1)
    assert store.base == 0 and store.scrub()[0][0] == needed


# ---------------------------------------------------------------------- a live region (region.driver)
@pytest.mark.parametrize("group_commit", [True, False], ids=["group commit", "immediate"])
def test_a_live_region_checkpoints_and_restarts_from_its_snapshot(tmp_path: Path, group_commit: bool) -> None:
    """With group commit the checkpoint runs on a thread of its own while the region goes on."""
    import asyncio

    from ledger.types import CreateTransferResult as R
    from region.driver import LiveRegion
    from tests.support.live_region import CFG, pay, until_writable

    config = dataclasses.replace(CFG.node_config(0), checkpoint_every=5)
    path = tmp_path / "region.db"

    async def run(first: int, last: int) -> tuple[list[int], int, int]:
        live = LiveRegion(config, SqliteRegionStore(path), lambda *_: None, group_commit=group_commit)
        base = live.store.base
        await until_writable(live)
        outcomes = [int(await pay(live, n)) for n in range(first, last)]
        for _ in range(200):  # a checkpoint in flight on its thread: wait for it
            if live.stats.checkpoints:
                break
            await asyncio.sleep(0.01)
        assert live.stats.checkpoints and not live.stats.checkpoint_errors, live.stats.checkpoint_errors
        live.close()
        return outcomes, base, live.store.base

    first, base0, base1 = asyncio.run(run(1, 30))
    assert set(first) == {R.OK} and base0 == 0 and base1 > 0
    again, base2, _ = asyncio.run(run(1, 40))  # a restart from the snapshot; 1..29 are retries
    assert base2 == base1
    assert again[:29] == [R.EXISTS] * 29 and set(again[29:]) == {R.OK}

"""Running a scenario on Ray: launch the actors, wait, settle, collect, tear down.

`run_scenario_ray` is the Ray counterpart of `simulator.run.run_scenario`: the same plan
and fault schedule for the seed (`simulator.plan`), the same client rules and fault
dispatcher, and the same `RunResult` at the end, judged by the same checkers; the result
dict gains wall-clock RTOs and a `ray` section (wall times, crash timings, actor calls).

End of run: after the quiesce, the final state is taken once the replicas have settled
(same books, nothing owed; bounded by `settle_s`), because a real quiesce on a loaded
machine is not the exact one of the virtual clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chaos import check_after_loss
from region.store import GENESIS, MemoryRegionStore
from replication.log import Record
from replication.state import all_settled
from simulator.clients import OpState
from simulator.clock import S
from simulator.faults import lost_for_good
from simulator.metrics import Histogram
from simulator.plan import client_batches, plan_and_faults
from simulator.ray.client_actor import ClientActor, ClientSpec
from simulator.ray.cluster import PowerLine, PowerSwitch, local_cluster
from simulator.ray.controller import Controller, ControllerSpec
from simulator.ray.region_actor import RegionActor, RegionSpec
from simulator.ray.session import CONTROL_RESOURCE, RaySession, ray_session, resource_name
from simulator.ray.timebase import Timebase, wall_ns
from simulator.result import EngineRows, NetCounters, ReplicaSnapshot, RunResult
from simulator.runlog import RunLog, report_event
from simulator.runtime import client_rules, clock_offsets, node_configs
from simulator.scenario import Scenario
from simulator.workload import build_rows

REGION_SHARE, CLIENT_SHARE = 0.5, 0.25  # of a node's `region_<name>` resource: both fit in 1 unit
MIN_BATCH_MS = 20.0  # client window floor: an actor call costs ~0.3 ms of CPU at each end
SETTLE_S = 15.0
# a region whose restart is still under way (its process back, its store replayed, its catch-up
# seen) is waited for this much longer: on a loaded machine a Cassandra region's restart takes
# tens of seconds, and a final state taken halfway through it judges the machine, not the design
REJOIN_GRACE_S = 60.0
LIVE_DELAY_S = 0.6  # wall: a second's telemetry has arrived at the controller this long after it ends


def run_scenario_ray(
    scenario: Scenario,
    seed: int,
    *,
    address: str | None = None,
    out_dir: str | Path | None = None,
    time_scale: float = 1.0,
    progress: Callable[[str, float, float], None] | None = None,
    on_second: Callable[[dict[str, Any]], None] | None = None,
    duplicate: bool = False,
    min_batch_ms: float = MIN_BATCH_MS,
    fsync: bool = True,
    settle_s: float = SETTLE_S,
    num_cpus: int | None = None,
    store: str | None = None,
    power: PowerSwitch | None = None,
    pin_regions: bool = True,
) -> tuple[RunResult, dict[str, Any]]:
    """Run `scenario` on Ray; return (a Simulation-like object, the result dict).

    The result has `simulator.run.run_scenario`'s shape with `"runtime": "ray"` and a
    `"ray"` section (wall time, crash/restart/replay/catch-up timings, actor counts), so
    `simulator.run.write_outputs(sim, result, out)` writes the same three files.

    `address`: join this cluster (else `RAY_ADDRESS`, else a local Ray is started and shut
    down here; an already initialised Ray in this process is used as is). `out_dir`: keep
    each region's SQLite file under `out_dir/stores/` (otherwise a temp dir, removed).
    `time_scale`: wall seconds per scenario second (module docstring). `progress(phase,
    done, total)` is called about every 0.25 s of the run, in scenario seconds.
    `on_second(view)` is called once per scenario second, ~0.6 s after it ends (telemetry
    lag), with `{"t", "horizon", "throughput": {region: acked}, "lag_ms": {region: worst |
    None}, "events": [timeline events since the last call]}` — what a live display shows.
    `duplicate`: every message (peer batches, and client submits) is sent twice on purpose.
    `min_batch_ms`: clients submit a window's operations as one batch; the window is the
    scenario's `batch_ms`, but never shorter than this (scenario ms): an actor call costs
    CPU at both ends, and 5 ms windows at 300 ops/s carry 1-2 operations each. The plan
    (operations, times, ids) is the same; only how they are grouped into calls changes.
    `fsync`: commit with `synchronous=FULL` (survives power loss); False = `NORMAL`
    (survives a killed process, which is what a Ray crash is; no fsync on the hot path).
    `settle_s`: after the quiesce, wait up to this many wall seconds for the replicas to
    settle (equal log heads, no credit leg owed, nobody catching up) before the final state
    is taken (the deterministic runtime settles the same way, on virtual time): a quiesce on
    a loaded machine may need longer, and a check that fails only because the snapshot came
    too early says nothing about the design. How long it took is `ray.settle_s`; if it never
    settles the checkers judge the state as it is.
    `num_cpus`: for a local Ray started here (default: every core).
    `store`: each region's durable store. None or "sqlite": an SQLite file per region (as
    above); a Cassandra URL (``cassandra://host:9042/geoledger?dc=dc1&rf=1``): a keyspace
    ``<keyspace>_<region>`` per region (a Cassandra region store),
    emptied when the run starts and left in place after it; a killed region recovers from it.
    `power`: the switch a `node-loss` fault uses to take a region's node away and bring it
    back (`simulator.ray.cluster.LocalCluster` is one). A scenario with a node loss and no
    `address` runs on a `LocalCluster` started (and stopped) here; joining a cluster by
    address, it needs `power` for that cluster, and a control node (`geoledger_control`) for
    the controller and the clients, which must outlive any region's node. A node loss with
    `returns = false` is switched off and never on again: the lost region is left out of the
    settling and of the final snapshots (its books are gone with its node); its store is read
    from the disk the node left (`_RayRun.audit_lost_stores`) for the `audit_chain` checker,
    and the result's `ray.lost_store_audit` says what that read found.
    `pin_regions`: test-only. False places the region actors without their `region_<name>`
    resource (anywhere Ray likes, at launch and at a restart): the result's
    `ray.placement.check` shows where they went (`off_own_node`, `held`).
    """
    import ray

    opts = RayOptions(time_scale, duplicate, min_batch_ms, fsync, check_store(store), pin_regions)
    scenario = scenario.with_mode(None)
    check_after_loss(scenario.chaos)  # before any cluster starts (random faults: `plan_and_faults` checks them)
    wall0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if needs_power(scenario) and power is None:
            if address or os.environ.get("RAY_ADDRESS") or ray.is_initialized():
                raise ValueError("a node-loss fault on Ray needs a power switch for the cluster's nodes: pass "
                                 "power= (simulator.ray.cluster.LocalCluster is one), or run without an address "
                                 "to have a local multi-node cluster started for the run")
            cluster = stack.enter_context(local_cluster(scenario.regions))
            address, power = cluster.address, cluster
        session = stack.enter_context(ray_session(address, num_cpus=num_cpus, regions=scenario.regions))
        run = _RayRun(scenario, seed, opts, out_dir, power)
        try:
            run.launch()
            run.wait(progress, on_second)
            run.settle(settle_s)
            run.collect()
        finally:
            run.teardown()
    sim = run.result(time.perf_counter() - wall0, session)
    return sim, ray_result(sim)


def needs_power(scenario: Scenario) -> bool:
    """Whether the scenario's schedule takes a node away (`node-loss`; random faults never do)."""
    return any(f.kind == "node-loss" for f in scenario.chaos)


def check_store(store: str | None) -> str | None:
    """Validate a `store` argument: None for SQLite, else the Cassandra URL (StoreURLError if bad)."""
    from ledger.errors import StoreURLError

    if store is None or store.strip().lower() == "sqlite":
        return None
    from region.cassandra import cassandra_settings, is_cassandra_url

    if not is_cassandra_url(store):
        raise StoreURLError(f"unknown store {store!r}: expected 'sqlite' or a cassandra:// URL")
    cassandra_settings(store, "region")
    return store.strip()


def ray_result(sim: RunResult) -> dict[str, Any]:
    """The result dict (`simulator.run.result_of`), plus wall-clock RTOs and the Ray section."""
    from simulator.run import result_of

    result = result_of(sim, "ray")
    assert sim.ray is not None
    scale = sim.ray["time_scale"]
    for item in result["metrics"]["rto"]:
        item["rto_wall_s"] = round(item["rto_s"] * scale, 4) if item["rto_s"] is not None else None
    result["ray"] = sim.ray
    return result


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray (see `run_scenario_ray`)."""

    time_scale: float = 1.0
    duplicate: bool = False
    min_batch_ms: float = MIN_BATCH_MS
    fsync: bool = True
    store_url: str | None = None  # None: SQLite files; else a Cassandra URL
    pin: bool = True  # test-only False: no region_<name> resource on the region actors (see run_scenario_ray)

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.min_batch_ms < 0:
            raise ValueError(f"min_batch_ms must be >= 0, got {self.min_batch_ms}")


class _RayRun:
    """One run's actors and their lifecycle (launch, wait, collect, teardown)."""

    def __init__(self, scenario: Scenario, seed: int, opts: RayOptions, out_dir: str | Path | None,
                 power: PowerSwitch | None = None) -> None:
        import ray

        self.s, self.seed, self.opts = scenario, seed, opts
        self.scale, self.duplicate = opts.time_scale, opts.duplicate
        self.window = max(scenario.workload.batch_ms, opts.min_batch_ms) / 1000
        self.run_id = uuid.uuid4().hex[:10]
        self.names = list(scenario.regions)
        self.R = len(self.names)
        self.plan, self.faults = plan_and_faults(scenario, np.random.default_rng(seed))
        self.cfgs = node_configs(scenario, self.plan, seed)
        self.keep = out_dir is not None
        if out_dir is not None:
            self.store_dir = str(Path(out_dir).resolve() / "stores")
            self.local_dir: str | None = None
        else:
            self.store_dir = str(Path(tempfile.gettempdir()) / f"geoledger-ray-{self.run_id}")
            self.local_dir = self.store_dir
        resources = ray.cluster_resources()
        if needs_power(scenario):  # a node that just joined shows its resources a moment later
            deadline = time.monotonic() + 30
            while not self._can_lose_nodes(resources) and time.monotonic() < deadline:
                time.sleep(0.2)
                resources = ray.cluster_resources()
        self.pinned = opts.pin and all(resource_name(n) in resources for n in self.names)
        self.control = CONTROL_RESOURCE in resources
        self.gone = lost_for_good(self.faults, self.names)  # never back: not settled, not snapshotted
        self.region_nodes: dict[str, set[str]] = {n: set() for n in self.names}  # nodes advertising region_<n>
        if needs_power(scenario) and not self._can_lose_nodes(resources):
            raise ValueError("a node-loss fault needs every region pinned to a node of its own (a region_<name> "
                             f"resource each) and a control node ({CONTROL_RESOURCE!r}) for the controller and "
                             f"the clients; this cluster has {sorted(resources)}")
        self.power = power
        self.power_line: PowerLine | None = None
        self.placement: dict[str, Any] = {}
        self.offsets = clock_offsets(scenario, self.faults)
        self.regions: list[Any] = []
        self.clients: list[Any] = []
        self.controller: Any = None
        self.t0_ns = 0
        self.client_refs: list[Any] = []
        self.run_ref: Any = None
        self.pids: set[int] = set()
        self.start_info: list[dict[str, Any]] = []
        self.client_out: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any] | None] = []
        self.lost_stores: dict[int, Any] = {}  # region lost for good -> its store, read for the audit
        self.lost_audit: dict[str, Any] = {}
        self.ctl: dict[str, Any] = {}
        self.launch_s = 0.0
        self.settled: float | None = None

    def _can_lose_nodes(self, resources: dict[str, Any]) -> bool:
        return CONTROL_RESOURCE in resources and all(resource_name(n) in resources for n in self.names)

    def store_path(self, r: int) -> str:
        """Region `r`'s SQLite file (unused with a Cassandra store)."""
        return str(Path(self.store_dir) / f"region-{r}-{self.names[r]}.db")

    def actor_name(self, role: str) -> str:
        return f"geoledger-{self.run_id}-{role}"

    def _placement(self, region: str, share: float) -> dict[str, Any]:
        # Unpinned (test-only, or a cluster without the resources), Ray places the actor where
        # it likes. Measured on LocalCluster: it packs a run's region actors onto one node, and
        # a soft node affinity to the region's node is not kept either (Ray 2's actor
        # scheduler spills it), so "unpinned" is simply no constraint.
        return {"resources": {resource_name(region): share}} if self.pinned else {}

    def _see_region_nodes(self) -> None:
        """Which nodes advertise each region's resource (every one seen in the run, for the
        placement check: a node that came back is a new node with the same resource)."""
        import ray

        for n in ray.nodes():
            mine = [name for name in self.names if resource_name(name) in n.get("Resources", {})]
            if len(mine) == 1:  # a node of one region's own (a local Ray advertises them all on one node)
                self.region_nodes[mine[0]].add(str(n["NodeID"]))

    def placement_check(self, crashes: list[dict[str, Any]]) -> dict[str, Any]:
        """Where every region's process ran, against the nodes advertising its resource: a
        region restarted on a node that is not its own (another region's, the control node)
        is `off_own_node`; `held` is whether none was. A Ray with every region's resource on
        one node (the local one) has no node of a region's own, and nothing to check."""
        if not any(self.region_nodes.values()):
            return {"checked": False, "held": True, "off_own_node": {}}
        own = self.region_nodes  # a region no node of its own was seen for is not judged
        off = {n: node for n, node in self.placement.get("regions", {}).items() if own[n] and node not in own[n]}
        for c in crashes:
            node = c.get("new_node")
            if node is not None and own[c["region"]] and node not in own[c["region"]]:
                off[c["region"]] = node
        return {"checked": True, "held": not off, "off_own_node": off}

    def _control_placement(self, region: str | None) -> dict[str, Any]:
        """The controller and the clients: on the control node if there is one (they are the
        run's eyes and its users, and must outlive a region's node), else with their region."""
        if self.control:
            return {"resources": {CONTROL_RESOURCE: 0.01}}
        return {} if region is None else self._placement(region, CLIENT_SHARE)

    def launch(self) -> None:
        import ray

        began = time.perf_counter()
        s = self.s
        self._see_region_nodes()
        region_cls = ray.remote(RegionActor)
        client_cls = ray.remote(ClientActor)
        ctl_cls = ray.remote(Controller)
        rtt = s.rtt_matrix()
        timeout = s.workload.client_timeout_ms / 1000
        specs = tuple(
            RegionSpec(r, tuple(self.names), self.cfgs[r], rtt, s.jitter_ms, s.bandwidth_mbps, self.seed,
                       self.store_path(r), self.scale, self.duplicate,
                       2 * timeout * self.scale + 1.0, tuple(self.offsets), self.opts.fsync,
                       self.opts.store_url)
            for r, name in enumerate(self.names))
        for r, name in enumerate(self.names):
            self.regions.append(region_cls.options(
                name=self.actor_name(f"region-{name}"), num_cpus=0, max_restarts=-1, max_task_retries=0,
                max_concurrency=10_000, **self._placement(name, REGION_SHARE)).remote(r, name))
        plan = self.plan
        for r, name in enumerate(self.names):
            starts, ops = client_batches(plan, r, self.window)
            spec_c = ClientSpec(r, ops, plan.t[ops], plan.kind[ops], build_rows(plan, ops),
                                plan.debit[ops].astype(np.uint64), starts, self.window, s.duration,
                                s.duration + s.quiesce, timeout, client_rules(s), self.scale, self.duplicate)
            self.clients.append(client_cls.options(
                name=self.actor_name(f"client-{name}"), num_cpus=0, max_concurrency=10_000,
                **self._control_placement(name)).remote(spec_c))
        self.controller = ctl_cls.options(name=self.actor_name("controller"), num_cpus=0,
                                          max_concurrency=10_000, **self._control_placement(None)).remote(
            ControllerSpec(tuple(self.names), tuple(self.faults), s.duration, self.scale, self.seed,
                           tuple(self.offsets), specs))
        pings = ray.get([a.ping.remote() for a in [*self.regions, *self.clients, self.controller]], timeout=120)
        self.pids.update(p["pid"] for p in pings)
        region_pids = [p["pid"] for p in pings[: self.R]]
        self.placement = {"regions": {n: p["node"] for n, p in zip(self.names, pings[: self.R], strict=True)},
                          "clients": {n: p["node"] for n, p in zip(self.names, pings[self.R: 2 * self.R],
                                                                   strict=True)},
                          "controller": pings[-1]["node"]}
        if self.power is not None:
            self.power_line = PowerLine(self.controller, self.power)
            self.power_line.start()
        # t0 a little ahead: regions start (open stores, first heartbeats, leases) before load
        self.t0_ns = wall_ns() + int(0.5 * S)
        self.start_info = ray.get(self.controller.start_all.remote(self.regions, self.t0_ns, region_pids),
                                  timeout=60)
        self.run_ref = self.controller.run.remote()
        self.client_refs = [c.run.remote(self.regions, self.t0_ns, self.controller) for c in self.clients]
        self.launch_s = time.perf_counter() - began

    def wait(self, progress: Callable[[str, float, float], None] | None,
             on_second: Callable[[dict[str, Any]], None] | None = None) -> None:
        import ray

        tb = Timebase(self.t0_ns, self.scale)
        end = self.s.duration + self.s.quiesce
        horizon = int(np.ceil(end))
        pending = [*self.client_refs, self.run_ref]
        second, seen = 0, (0, 0)

        def emit(upto: float) -> None:
            nonlocal second, seen
            while on_second is not None and second < horizon and second + 1 <= upto:
                view = ray.get(self.controller.live.remote(second, seen), timeout=30)
                seen = view.pop("seen")
                on_second({**view, "horizon": end})
                second += 1

        while True:
            now = tb.now_s()
            if progress is not None:
                phase = "load" if now < self.s.duration else "quiesce"
                progress(phase, min(max(now, 0.0), end), end)
            emit(now - LIVE_DELAY_S / self.scale)
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
            for ref in ready:
                ray.get(ref)  # an actor that failed raises here, early
            if now >= end and not [r for r in pending if r in self.client_refs]:
                break
            if now >= end + 30 * self.scale + 30:
                raise TimeoutError("clients did not finish 30 s after the scenario's end")
            pause = min(0.25, max(0.01, (tb.wall_of(end) - wall_ns()) / S))
            if self.power_line is not None:
                self.power_line.serve(pause)  # a node to switch on is started from this thread
            else:
                time.sleep(pause)
        self.client_out = ray.get(self.client_refs, timeout=60)
        time.sleep(LIVE_DELAY_S)
        emit(float(horizon))

    def settle(self, limit_s: float) -> None:
        """Wait (bounded) until every replica holds the same books and owes nothing, and the
        controller has seen every restarted region catch up (its catch-up time is a figure).
        While a restart is still under way the bound is `limit_s + REJOIN_GRACE_S`."""
        import ray

        began = time.perf_counter()
        while True:
            sts = []
            for ref in [r.settle_status.remote() for k, r in enumerate(self.regions) if k not in self.gone]:
                try:
                    sts.append(ray.get(ref, timeout=5))
                except ray.exceptions.RayError:
                    sts.append(None)
            try:
                rejoining = bool(ray.get(self.controller.rejoining_regions.remote(), timeout=5))
            except ray.exceptions.RayError:
                rejoining = True  # no answer: not known to be done
            if not rejoining and all_settled(sts):
                self.settled = time.perf_counter() - began
                return
            if time.perf_counter() - began >= limit_s + (REJOIN_GRACE_S if rejoining else 0.0):
                return
            time.sleep(0.2)

    def collect(self) -> None:
        import ray

        refs = [None if k in self.gone else r.finish.remote(self.keep) for k, r in enumerate(self.regions)]
        snaps: list[dict[str, Any] | None] = []
        for ref in refs:
            try:
                snaps.append(None if ref is None else ray.get(ref, timeout=60))
            except ray.exceptions.RayError:
                snaps.append(None)
        self._see_region_nodes()
        self.snapshots = snaps
        self.audit_lost_stores()
        tel = [s["telemetry"] for s in snaps if s is not None]
        ray.get(self.controller.take_telemetry.remote(tel), timeout=30)
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(self.run_ref, timeout=10)
        self.ctl = ray.get(self.controller.collect.remote(), timeout=30)
        if self.power_line is not None:
            self.power_line.join(timeout=30)
        self.pids.update(self.ctl["pids"])
        self.pids.update(s["pid"] for s in snaps if s is not None)

    def audit_lost_stores(self) -> None:
        """Read the store of every region lost for good, for the `audit_chain` checker.

        Its node is gone and so is its actor: nothing of the region can hand its records
        over (`finish`), and the deterministic runtime, whose store object is the disk,
        audits a lost region's chain all the same. So the driver reads the disk the node
        left behind, as an operator does with a dead server's disk: mounted elsewhere, read
        only (`region.audit`: no lock, nothing written, damage reported rather than raised).
        A store "lives on its node", and on this machine every node's files are the one
        filesystem, so the file is at the path the region wrote it to; on a cluster of real
        machines that is the path of the node's disk once mounted where the driver runs
        (or shared storage; a Cassandra store is the database's, read as the region reads
        it). Done in `collect`, before `teardown` removes a temporary store directory."""
        from region.audit import read_for_audit

        for r in sorted(self.gone):
            began = time.perf_counter()
            store = read_for_audit(self.store_path(r), self.opts.store_url, self.names[r])
            ok, bad = store.verify_chain()
            self.lost_stores[r] = store
            self.lost_audit[self.names[r]] = {
                "store": "cassandra" if self.opts.store_url else self.store_path(r), "records": len(store.records),
                "ok": ok, "first_bad_record": bad, "problem": getattr(store, "problem", None),
                "read_s": round(time.perf_counter() - began, 4)}

    def teardown(self) -> None:
        import ray

        for a in [*self.clients, *self.regions, self.controller]:
            if a is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
        if self.local_dir:
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def _group_commit(self) -> dict[str, Any]:
        """Steps, commits and commit times of the final incarnations (a killed one's are lost)."""
        snaps = [x for x in self.snapshots if x]
        hist = Histogram()
        for x in snaps:
            hist.record(x["flush_ns"] / 1000)
        return {"steps": sum(x["steps"] for x in snaps), "commits": sum(x["flushes"] for x in snaps),
                "commit_ms": hist.summary_ms(), "sync": "FULL (fsync)" if self.opts.fsync else "NORMAL"}

    def result(self, wall_s: float, session: RaySession) -> RunResult:
        """The finished run, as the checkers and reports read any run."""
        plan = self.plan
        ops = OpState.new(plan.n_ops)
        for c in self.client_out:
            ops.put(c["ops"], c["state"])
        nodes: list[ReplicaSnapshot | None] = []
        stores: list[Any] = []  # a StoreView per region
        for r, snap in enumerate(self.snapshots):
            if snap is None:  # down at the end: a region lost for good's disk was read for the audit
                nodes.append(None)
                stores.append(self.lost_stores.get(r, MemoryRegionStore()))
                continue
            nodes.append(ReplicaSnapshot(EngineRows(snap["accounts"], snap["transfers"]), snap["anomalies"],
                                         snap["heads"], snap["status"]))
            recs = [Record(p, c) for p, c in snap["records"]]
            stores.append(MemoryRegionStore(recs, recs[-1].chain if recs else GENESIS))
        ctl = self.ctl
        counters = ctl["counters"]
        log = RunLog(reports=sorted(ctl["reports"], key=lambda x: x[0]), faults=ctl["fault_log"],
                     events=int(counters["handled"]), wall_s=round(wall_s, 3))
        for _, _, kind, detail in log.reports:
            if kind == "divergence":
                log.diverged.update(detail["transfer_ids"])
        log.lag_ns = np.concatenate(ctl["lag"]) if ctl["lag"] else np.zeros(0, np.int64)
        log.lag_at = sorted((max(0, int(t)), r, int(v)) for ts, r, vs in ctl["lag_at"]
                            for t, v in zip(ts.tolist(), vs.tolist(), strict=True))
        log.transit = [(float(k), [ctl["transit"][k].get(r) for r in range(self.R)]) for k in sorted(ctl["transit"])]
        log.timeline = list(ctl["timeline"])
        for t, r, kind, detail in log.reports:
            ev = report_event(t, self.names[r], kind, detail)
            if ev is not None:
                log.timeline.append(ev)
        s = self.s
        late = [c["submit_late_p99_s"] for c in self.client_out]
        info = {
            "time_scale": self.scale, "address": session.address, "pinned_by_resource": self.pinned,
            "control_node": self.control,
            "placement": {**self.placement, "check": self.placement_check(ctl["crashes"])},
            "lost_for_good": [self.names[r] for r in sorted(self.gone)],
            "lost_store_audit": self.lost_audit,
            "power": None if self.power_line is None else self.power_line.done,
            "wall_s": round(wall_s, 3), "launch_s": round(self.launch_s, 3), "duplicate": self.duplicate,
            "settle_s": None if self.settled is None else round(self.settled, 3),
            "client_window_ms": round(self.window * 1000, 3), "fsync": self.opts.fsync,
            "store": "cassandra" if self.opts.store_url else "sqlite",
            "actors": {"regions": self.R, "clients": len(self.clients), "controller": 1},
            "pids": sorted(self.pids), "crashes": ctl["crashes"], "controller_errors": ctl["errors"],
            "actor_calls": int(counters["calls"]),
            "link_call_ms": ctl["link_call_ms"], "event_loop_lag_ms": ctl["event_loop_lag_ms"],
            "client_submit_late_p99_s": round(max(late), 4) if late else None,
            "client_submit_late_max_s": round(max(c["submit_late_max_s"] for c in self.client_out), 4)
            if self.client_out else None,
            "dup_client_replies": {"exists": sum(c["dup_exists"] for c in self.client_out),
                                   "ok": sum(c["dup_ok"] for c in self.client_out)},
            "group_commit": self._group_commit(),
            "start": [{k: v for k, v in i.items() if k != "heads"} for i in self.start_info],
            "stores_kept": self.store_dir if self.keep else None,
        }
        net = NetCounters(int(counters["sent"]), int(counters["dropped"]), int(counters["bytes"]))
        return RunResult(s, self.seed, self.names, plan, ops, list(nodes), list(stores), self.cfgs, log, self.faults,
                         int((s.duration + s.quiesce) * S), net, _fingerprint(ops, log), info)


def _fingerprint(ops: OpState, log: RunLog) -> str:
    """Not a replay digest (real time is not reproducible): a fingerprint of the history."""
    h = hashlib.sha256()
    for a in (ops.outcome, ops.result, ops.ok_count):
        h.update(np.ascontiguousarray(a).tobytes())
    for _t, r, kind, _ in log.reports:
        h.update(f"{r}|{kind}".encode())
    return h.hexdigest()


__all__ = ["MIN_BATCH_MS", "SETTLE_S", "RayOptions", "check_store", "ray_result", "run_scenario_ray"]

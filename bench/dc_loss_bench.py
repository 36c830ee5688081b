"""A region lost together with its datacentre's Cassandra: storage-level against
application-level replication, in one table.

Three live regions (`region.driver.LiveRegion`, the code the HTTP gateways and the Ray
actors run; here in one process, peer messages through the wire codec and delayed by
half of `load.region.DEFAULT_RTT_MS`) keep their records in Cassandra region stores, each
through its own datacentre's node of the real three-datacentre Cassandra
(`scripts/cassandra start --dcs changchun,beijing,shanghai`). Clients of each region pay
other customers at a fixed rate, retrying the same id on the next region when theirs
does not answer. Then, at once, Changchun's region process dies (nothing it had not
replied to leaves it) and Changchun's Cassandra node is SIGKILLed (`scripts/cassandra
stop --dc changchun --kill`). Four designs:

* ``unit+async / LOCAL_QUORUM`` and ``unit+async / EACH_QUORUM``: storage-level
  replication. Every region's keyspace is kept in all three datacentres; the application
  does not fail over (suspicion never fires); after `detect_s` the runbook restores
  Changchun's region from Beijing's copy of its keyspace (same keyspace, opened through
  Beijing's node with ``dc=beijing``) and serves again. Under EACH_QUORUM no write can
  succeed while a datacentre is gone (each needs a replica in each), so the runbook also
  reopens every store at LOCAL_QUORUM (the survivors' regions restart from their stores).
* ``unit+semi-sync`` and ``quorum``: application-level replication. Each keyspace is kept
  in its own datacentre only (a region's disk dies with its datacentre); nothing is
  restored: the application's failover (new home / Raft leader) serves Changchun's units.

Measured, per design: RPO = transfers acknowledged to a client but missing from a final
replica after the run settles (the simulator's durability rule); RTO = from the loss to
the first acknowledgement to a Changchun customer afterwards; p50/p99 = client latency of
the transfers acknowledged before the loss (after a warm-up), per region of the paying customer (the design's
price while nothing fails). All nodes share one machine's loopback: Cassandra's
cross-datacentre traffic has no WAN delay, so EACH_QUORUM's latency here is a floor.

    python -m bench.dc_loss_bench [--rate 30] [--before 10] [--after 20] [--designs ...]

prints the table, writes `bench/results/dc_loss.json`, `.md` and `.html` (the report: `bench.dc_loss_report`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eventsourcing.persistence import DatabaseError

from bench.cassandra_dc_bench import ADDR, DCS, REPLICATION, SCRIPT, script
from bench.dc_loss_report import render
from cext.codec import transfers_to_rows
from ledger import Transfer
from ledger.errors import StoreError
from load.region import ServeConfig
from region.cassandra import CassandraRegionStore, drop_region_keyspaces
from region.driver import LiveRegion
from replication import wire
from replication.config import MS, NodeConfig
from replication.ids import ids_of, transfer_id
from replication.outcomes import ACKNOWLEDGED

LOST = 0
"""The region lost with its datacentre (Changchun)."""
NEVER = 10**9 * MS
"""A suspicion timeout that never fires: storage-level designs do not fail over."""
LEDGER = 156
SCHEMA_RETRIES = 5
"""Tries to create a region's keyspace while a restarted node catches up on the schema."""


@dataclass(frozen=True)
class Design:
    """One row of the comparison."""

    label: str
    mode: str
    ship: str
    consistency: str
    storage_replicated: bool  # keyspaces in every datacentre (restore from another) or only its own
    promise: str  # what the design promises when a datacentre is lost with its region (the report says it)
    promises_rpo0: bool

    def replication(self, dc: str) -> str:
        return REPLICATION if self.storage_replicated else f"{dc}:1"


DESIGNS = (
    Design("unit+async / LOCAL_QUORUM", "unit", "async", "local_quorum", True,
           "acknowledged once its own datacentre stored it; the other datacentres' copies trail it, so a write "
           "acknowledged just before the loss may exist nowhere else (no RPO promise)", False),
    Design("unit+async / EACH_QUORUM", "unit", "async", "each_quorum", True,
           "acknowledged once every datacentre stored it (RPO 0), so no write succeeds while one is gone: the "
           "runbook reopens every store at LOCAL_QUORUM to serve again", True),
    Design("unit+semi-sync", "unit", "semi-sync", "local_quorum", False,
           "acknowledged once a second region stored the entry (RPO 0); another region takes the lost "
           "region's units when its lease runs out", True),
    Design("quorum", "quorum", "semi-sync", "local_quorum", False,
           "acknowledged once a majority of regions stored it in Raft (RPO 0); a new leader takes over", True),
)


def store_url(base: str, design: Design, owner: str, via: str, consistency: str) -> str:
    """`owner`'s keyspace (``<base>_<owner>``) opened through datacentre `via`'s node."""
    return (f"cassandra://{ADDR[via]}:9042/{base}?dc={via}&replication={design.replication(owner)}"
            f"&consistency={consistency}")


@dataclass
class Op:
    """One client transfer: when it was first submitted, when (and by whom) acknowledged."""

    tid: int
    home: int
    t_submit: float
    t_ack: float | None = None
    attempts: int = 0


@dataclass
class Run:
    """Three live regions over Cassandra stores, their clients, and the loss."""

    design: Design
    base: str
    cfg: ServeConfig
    detect_s: float
    request_timeout: float = 1.0
    regions: list[LiveRegion | None] = field(default_factory=list)
    alive: list[bool] = field(default_factory=list)
    inflight: list[set[asyncio.Task[Any]]] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    t_loss: float | None = None
    t_measure: float = 0.0  # latency counts transfers submitted from here (after the warm-up)
    consistency: str = ""
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.cfg.regions)
        self.alive = [True] * n
        self.inflight = [set() for _ in range(n)]
        self.consistency = self.design.consistency
        self._loop = asyncio.get_running_loop()
        self._counter = 0

    def note(self, what: str) -> None:
        self.events.append((time.perf_counter(), what))

    # ---------------------------------------------------------------- regions
    def node_config(self, r: int) -> NodeConfig:
        cfg = self.cfg.node_config(r)
        return dataclasses.replace(cfg, suspect_after=NEVER) if self.design.storage_replicated else cfg

    def open_region(self, r: int, via: str, *, fresh: bool = False) -> LiveRegion:
        name = self.cfg.regions[r]
        url = store_url(self.base, self.design, name, via, self.consistency)
        for attempt in range(SCHEMA_RETRIES):
            try:
                return self._live(r, CassandraRegionStore(url, name, fresh=fresh))
            except (StoreError, DatabaseError) as e:  # a restarted node may not agree on the schema yet
                if "Unknown CF" not in str(e) or attempt == SCHEMA_RETRIES - 1:
                    raise
                time.sleep(2.0)
        raise AssertionError("unreachable")

    def _live(self, r: int, store: CassandraRegionStore) -> LiveRegion:
        def fatal(error: BaseException) -> None:
            if self.regions[r] is live and self.alive[r]:  # not a killed incarnation's last words
                self.failures.append(f"{self.cfg.regions[r]}: {error}")

        live = LiveRegion(self.node_config(r), store, self._transport(r), request_timeout=self.request_timeout,
                          group_commit=True, on_fatal=fatal)
        return live

    def _transport(self, src: int) -> Any:
        def send(to: int, message: Any, size: int) -> None:
            if self.alive[src] and self.regions[src] is not None:
                frame = wire.encode(message)  # a copy, as a real link makes one
                delay = self.cfg.rtt_ms[src][to] / 2 / 1000
                self._loop.call_later(delay, self._deliver, to, frame)
        return send

    def _deliver(self, to: int, frame: bytes) -> None:
        live = self.regions[to]
        if self.alive[to] and live is not None:
            live.deliver(wire.decode(frame))

    async def call(self, r: int, rows: np.ndarray) -> bool:
        """Submit to region `r`'s gateway; True if acknowledged. A dead region's client sees
        its connection refused or reset (ConnectionError), never a reply it did not send."""
        live = self.regions[r]
        if not self.alive[r] or live is None:
            raise ConnectionRefusedError(self.cfg.regions[r])
        task = asyncio.ensure_future(live.submit(rows))
        self.inflight[r].add(task)
        try:
            reply = await task
        except asyncio.CancelledError:
            if task.cancelled() and not self.alive[r]:
                raise ConnectionResetError(self.cfg.regions[r]) from None
            raise
        finally:
            self.inflight[r].discard(task)
        if not self.alive[r] or self.regions[r] is not live:
            raise ConnectionResetError(self.cfg.regions[r])
        return int(reply.results[0]) in ACKNOWLEDGED

    # ---------------------------------------------------------------- clients
    async def pay(self, home: int, rng: random.Random, deadline: float) -> None:
        n = len(self.cfg.regions)
        payer = rng.randrange(home + 1, self.cfg.customers + 1, n)  # homed at `home`
        payee = rng.randint(1, self.cfg.customers - 1)
        payee += payee >= payer  # anyone else (paying oneself is refused, and would be retried forever)
        self._counter += 1
        tid = transfer_id((payer - 1) % (n * self.cfg.units_per_region), self._counter)
        rows = transfers_to_rows([Transfer(id=tid, debit_account_id=payer, credit_account_id=payee,
                                           amount=rng.randint(1, 500), ledger=LEDGER, code=1)])
        op = Op(tid, home, time.perf_counter())
        self.ops.append(op)
        target = home
        while time.perf_counter() < deadline:
            op.attempts += 1
            try:
                if await self.call(target, rows):
                    op.t_ack = time.perf_counter()
                    return
            except ConnectionError:
                target = (target + 1) % n  # this gateway is gone: the next region's
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(0.05)  # UNAVAILABLE (timed out, never applied): same id again
            if target != home and self.alive[home] and self.regions[home] is not None:
                target = home

    async def clients(self, rate: float, seconds: float, seed: int) -> None:
        rngs = [random.Random(seed * 10 + r) for r in range(len(self.cfg.regions))]
        start = time.perf_counter()
        end = start + seconds
        tasks: list[asyncio.Task[None]] = []
        k = 0
        while time.perf_counter() < end:  # on a fixed schedule: a busy loop catches up, offers no less
            for r, rng in enumerate(rngs):
                tasks.append(asyncio.ensure_future(self.pay(r, rng, end + 30)))
            k += 1
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        await asyncio.gather(*tasks)

    # ---------------------------------------------------------------- the loss and the runbook
    async def lose(self, node_pid: int) -> None:
        """Changchun's Cassandra node (`node_pid`) and region process die at the same instant."""
        self.t_loss = time.perf_counter()
        os.kill(node_pid, signal.SIGKILL)
        dead = self.power_cut(LOST)
        self.note("loss: Changchun's region process and Cassandra node killed")
        await self._loop.run_in_executor(None, self.release, dead)
        if self.design.storage_replicated:
            await asyncio.sleep(max(0.0, self.t_loss + self.detect_s - time.perf_counter()))
            await self.restore()

    def power_cut(self, r: int) -> LiveRegion:
        """Region `r`'s process dies: nothing it holds leaves it any more (no reply, no
        message, no further store write is acknowledged); its clients' calls are reset."""
        live = self.regions[r]
        assert live is not None
        self.alive[r] = False
        live.pause(True)
        for task in list(self.inflight[r]):
            task.cancel()
        return live

    @staticmethod
    def release(live: LiveRegion) -> None:
        """What the kernel does for a dead process: its store's connection and writer lock
        go, with nothing flushed (the records it had queued were never acknowledged). The
        bench's regions share one process, so this is done by hand."""
        store = live.store
        assert isinstance(store, CassandraRegionStore)
        store._release()

    async def restore(self) -> None:
        """The storage-level runbook: Changchun's region from Beijing's copy of its keyspace;
        under EACH_QUORUM the other regions restart with their stores at LOCAL_QUORUM
        (no write can meet EACH_QUORUM while a datacentre is gone)."""
        self.note("runbook starts")
        reopen = [LOST]
        if self.consistency == "each_quorum":
            self.consistency = "local_quorum"
            reopen += [r for r in range(len(self.cfg.regions)) if r != LOST]
            stopped = [self.power_cut(r) for r in reopen[1:]]
            await asyncio.gather(*(self._loop.run_in_executor(None, self.release, live) for live in stopped))
            self.note("the other regions killed (to restart at LOCAL_QUORUM)")
        opened = await asyncio.gather(*(self._open_async(r, DCS[1] if r == LOST else DCS[r]) for r in reopen))
        for r, live in zip(reopen, opened, strict=True):
            self.regions[r] = live
            self.alive[r] = True
        self.note(f"Changchun restored from Beijing's copy ({len(opened[0].store.records)} records)"
                  + (", the others restarted at LOCAL_QUORUM" if len(reopen) > 1 else ""))

    async def _open_async(self, r: int, via: str) -> LiveRegion:
        name = self.cfg.regions[r]
        url = store_url(self.base, self.design, name, via, self.consistency)
        store = await self._loop.run_in_executor(None, lambda: CassandraRegionStore(url, name))
        return self._live(r, store)

    # ---------------------------------------------------------------- the end
    async def settle(self, guard_s: float) -> float:
        """Wait until the live replicas hold the same heads (or the guard passes)."""
        began = time.perf_counter()
        while time.perf_counter() - began < guard_s:
            heads = {tuple(live.node.heads) for live in self.live_regions()}
            if len(heads) == 1:
                break
            await asyncio.sleep(0.1)
        return time.perf_counter() - began

    def live_regions(self) -> list[LiveRegion]:
        return [live for r, live in enumerate(self.regions) if live is not None and self.alive[r]]

    def close(self) -> None:
        for live in self.live_regions():
            with contextlib.suppress(StoreError):
                live.close()


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    ms = np.array(samples) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def measure(run: Run, settle_s: float) -> dict[str, Any]:
    """RPO, RTO and latency of a finished run (see the module docstring)."""
    assert run.t_loss is not None
    books = [set(ids_of(live.node.engine.transfers)) for live in run.live_regions()]
    acked = [(op, op.t_ack) for op in run.ops if op.t_ack is not None]
    lost = [t for op, t in acked if any(op.tid not in b for b in books)]
    after = [t for op, t in acked if op.home == LOST and t > run.t_loss]
    names = run.cfg.regions
    latency = {names[r]: _percentiles([t - op.t_submit for op, t in acked
                                       if op.home == r and op.t_submit >= run.t_measure and t < run.t_loss])
               for r in range(len(names))}
    return {
        "design": run.design.label, "promise": run.design.promise, "promises_rpo0": run.design.promises_rpo0,
        "acknowledged": len(acked), "submitted": len(run.ops),
        "rpo_lost_acknowledged": len(lost),
        "rpo_window_s": round(max(lost) - min(lost), 3) if lost else 0.0,
        "rto_s": round(min(after) - run.t_loss, 3) if after else None,
        "unanswered": sum(op.t_ack is None for op in run.ops),
        "latency_before_loss": latency, "settle_s": round(settle_s, 2), "region_failures": run.failures,
        "events": [(round(t - run.t_loss, 3), what) for t, what in run.events],
    }


async def run_design(design: Design, args: argparse.Namespace, base: str) -> dict[str, Any]:
    cfg = ServeConfig(customers=args.customers)
    run = Run(design, base, cfg, args.detect)
    pid = node_pid(DCS[LOST])
    run.regions = [run.open_region(r, DCS[r], fresh=True) for r in range(len(cfg.regions))]
    load = asyncio.ensure_future(run.clients(args.rate, args.warmup + args.before + args.after, args.seed))
    run.t_measure = time.perf_counter() + args.warmup
    await asyncio.sleep(args.warmup + args.before)
    await run.lose(pid)
    await load
    settle_s = await run.settle(args.settle)
    result = measure(run, settle_s)
    run.close()
    return result


def node_pid(dc: str) -> int:
    """The pid of `dc`'s Cassandra node, from `scripts/cassandra status --dcs` (it must be up)."""
    out = subprocess.run([str(SCRIPT), "status", "--dcs"], capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[:1] == [dc] and fields[-1] == "up":
            return int(fields[2])
    raise RuntimeError(f"{dc}'s Cassandra node is not up:\n{out}")


def table(results: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table."""
    names = list(results[0]["latency_before_loss"]) if results else []
    head = ["design", "RPO (acked, lost)", "RTO s", *(f"{n} p50/p99 ms" for n in names), "acked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        lat = [f"{s['p50_ms']} / {s['p99_ms']}" for s in res["latency_before_loss"].values()]
        rto = "never" if res["rto_s"] is None else f"{res['rto_s']:.2f}"
        lines.append(f"| {res['design']} | {res['rpo_lost_acknowledged']} | {rto} | " + " | ".join(lat)
                     + f" | {res['acknowledged']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=30.0, help="transfers per second per region (default 30)")
    ap.add_argument("--warmup", type=float, default=10.0,
                    help="seconds of load first, not timed (a node restarted for the design starts cold)")
    ap.add_argument("--before", type=float, default=10.0, help="seconds of timed load before the loss")
    ap.add_argument("--after", type=float, default=20.0, help="seconds of load after the loss")
    ap.add_argument("--settle", type=float, default=15.0, help="at most this long for the replicas to settle")
    ap.add_argument("--detect", type=float, default=0.6,
                    help="seconds from the loss to the storage-level runbook (default: the failover's suspicion)")
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--designs", default=",".join(d.label for d in DESIGNS),
                    help="comma-separated design labels (default: all four)")
    ap.add_argument("--out", default="bench/results/dc_loss.json")
    args = ap.parse_args(argv)
    chosen = [d for d in DESIGNS if d.label in {s.strip() for s in args.designs.split(",")}]
    if not chosen or args.rate <= 0 or args.warmup < 0 or args.before <= 0 or args.after <= 0 or args.customers < 6:
        ap.error("--designs must name designs, --rate/--before/--after > 0, --warmup >= 0, --customers >= 6")
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    logging.getLogger("region.driver").setLevel(logging.CRITICAL + 1)  # killed incarnations' last words
    results = []
    for design in chosen:
        base = f"gldcl{uuid.uuid4().hex[:8]}"
        script("start", "--dcs", ",".join(DCS))  # the whole ring (the last design lost a node)
        try:
            results.append(asyncio.run(run_design(design, args, base)))
        finally:
            script("start", "--dcs", ",".join(DCS))
            for dc in DCS:  # each through its own datacentre (some are kept there only)
                drop_region_keyspaces(store_url(base, design, dc, dc, "local_quorum"), [dc])
        brief = {k: results[-1][k] for k in ("rpo_lost_acknowledged", "rto_s", "region_failures", "events")}
        print(f"{design.label}: {json.dumps(brief)}", flush=True)
    md = table(results)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.dc_loss_bench " + " ".join(argv or [])
    out.write_text(json.dumps({"command": command.strip(), "args": vars(args), "results": results}, indent=2) + "\n")
    report = render(results, command.strip())
    out.with_suffix(".html").write_text(report)
    out.with_suffix(".md").write_text(
        f"# A region lost with its datacentre\n\n`python -m bench.dc_loss_bench {' '.join(argv or [])}`\n\n"
        f"{md}\n\nRPO: acknowledged transfers missing from a final replica. RTO: loss to the first "
        "acknowledgement to a Changchun customer. p50/p99: client latency of the transfers acknowledged "
        "before the loss, by the paying customer's region.\n")
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

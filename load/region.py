"""A region gateway process: the HTTP API in front of a live `RegionNode`.

One process per region, so that `kill -9` takes a region down for real and a restart
recovers it from its SQLite file. Nodes talk to each other over persistent TCP links on
loopback (`load.peerlink`: each region proves itself with its own key, frames are sealed
and in the explicit wire codec, coalesced per peer and delayed by the configured one-way
latency). The internal HTTP endpoints (chaos, raw state) admit the operator role only
(`load.auth`). The run's config (`serve.json`) holds no secret: token digests and public
keys; a region's private key reaches its process through a pipe, never a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from cext.codec import transfers_to_rows
from cext.layout import join
from ledger import AccountState, Transfer, TransferState
from ledger.queries import StatementIndex, account_transfers, lookup_accounts, lookup_transfers
from ledger.types import U128_MAX
from load.auth import Role, TokenVerifier, roles
from load.gateway import create_app
from load.groupcommit import GroupCommitter
from load.hotpath import HotPath
from load.intake import Forwarder, IntakeBackend, IntakeClient, IntakeServer, socket_path, writer_outcomes
from load.limits import MAX_REQUEST_ITEMS
from load.metrics import GatewayMetrics
from load.peerauth import PeerKeys
from load.peerlink import PeerListener, PeerSender
from load.work import GatewayWork
from region.collector import settle_after_start
from region.driver import LiveRegion
from region.sqlite import SqliteRegionStore
from replication.accounts import AccountMap
from replication.config import Grouping, Mode, NodeConfig, Ship
from replication.state import canonical_digest

BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
PEER_PORT_OFFSET = 50
"""Peer links listen on base_port + 50 + region (HTTP gateways on base_port + region), unless
base_port is 0: then the cluster binds free ports and records them in the config."""
DEFAULT_RTT_MS = [[0.0, 12.0, 30.0], [12.0, 0.0, 26.0], [30.0, 26.0, 0.0]]
"""Changchun, Beijing, Shanghai: round trips over inland fibre, in ms."""


@dataclass
class ServeConfig:
    """Everything every region process of one `geoledger serve` agrees on."""

    regions: list[str] = field(default_factory=lambda: ["changchun", "beijing", "shanghai"])
    base_port: int = 8100
    mode: str = "unit"
    quorum_groups: str = "unit"
    ship: str = "semi-sync"
    customers: int = 1000
    units_per_region: int = 2
    opening_balance: int = 10_000_000
    rtt_ms: list[list[float]] = field(default_factory=lambda: [row[:] for row in DEFAULT_RTT_MS])
    data_dir: str = "serve-data"
    group_commit: bool = True
    workers: int = 1  # HTTP processes per region: the region's own, and workers - 1 more (`load.intake`)
    token_digests: dict[str, str] = field(default_factory=dict)  # role -> SHA-256 of its token (`load.auth`)
    peer_keys: list[str] = field(default_factory=list)  # each region's Ed25519 public key, hex (`load.peerauth`)
    http_ports: list[int] = field(default_factory=list)  # as bound by the cluster (empty: from base_port)
    peer_ports: list[int] = field(default_factory=list)

    def http_port(self, region: int) -> int:
        return self.http_ports[region] if self.http_ports else self.base_port + region

    def url(self, region: int) -> str:
        return f"http://127.0.0.1:{self.http_port(region)}"

    def peer_port(self, region: int) -> int:
        """The region's port for links from its peers (`load.peerlink`), beside its HTTP port."""
        return self.peer_ports[region] if self.peer_ports else self.base_port + PEER_PORT_OFFSET + region

    def amap(self) -> AccountMap:
        n_units = len(self.regions) * self.units_per_region
        customer_unit = np.zeros(self.customers + 1, np.int64)
        customer_unit[1:] = np.arange(self.customers) % n_units
        return AccountMap(n_units, customer_unit)

    def node_config(self, region: int) -> NodeConfig:
        return NodeConfig(len(self.regions), region, Mode(self.mode), self.amap(), self.opening_balance,
                          ship=Ship(self.ship), quorum_groups=Grouping(self.quorum_groups))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ServeConfig:
        return cls(**json.loads(path.read_text()))


class PeerTransport:
    """Node messages to peers (`load.peerlink`), with per-pair latency and chaos applied here."""

    def __init__(self, cfg: ServeConfig, keys: PeerKeys) -> None:
        self.cfg = cfg
        self.me = me = keys.me
        self.partitioned: set[int] = set()
        self.extra_ms: dict[int, float] = {}
        self._loop = asyncio.get_running_loop()
        self._links = {p: PeerSender(cfg.peer_port(p), keys, p) for p in range(len(cfg.regions)) if p != me}

    def __call__(self, to: int, message: Any, size: int) -> None:
        if to in self.partitioned:
            return
        delay = (self.cfg.rtt_ms[self.me][to] / 2 + self.extra_ms.get(to, 0.0)) / 1000
        self._loop.call_later(delay, self._enqueue, to, message)

    def _enqueue(self, to: int, message: Any) -> None:
        if to not in self.partitioned:
            self._links[to].send(message)

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()


class NodeBackend:
    """The gateway's view of its region: writes through the node, reads from the replica."""

    def __init__(self, cfg: ServeConfig, me: int) -> None:
        self.cfg = cfg
        self.me = me
        self.region = cfg.regions[me]
        self._live: LiveRegion | None = None
        self._statements = StatementIndex()  # used on the event loop only

    @property
    def live(self) -> LiveRegion:
        if self._live is None:
            raise RuntimeError("the region node has not started yet")
        return self._live

    def attach(self, live: LiveRegion) -> None:
        """The node needs a running event loop, so it is attached at server start-up."""
        self._live = live

    def create_accounts(self, accounts: list[Any]) -> list[Any]:
        raise NotImplementedError("in replicated mode accounts are provisioned by the run (customers 1..N)")

    creates_accounts = False
    batches_itself = True
    """The node's step is the batching layer: whatever arrived while the previous step's
    commit ran is one step, one entry (the gateway adds no group commit of its own)."""

    async def create_transfers(self, transfers: list[Transfer]) -> list[tuple[Any, str]]:
        """Each row's outcome and the region whose answer it is (the writer that committed
        it: the unit's home, the Raft leader of its log, or this region)."""
        results, writers = await self.submit_rows(transfers_to_rows(transfers))
        return writer_outcomes(results, writers, self.cfg.regions, self.me)

    async def submit_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(result, writer) per row, through the node: for this gateway and its workers."""
        reply = await self.live.submit(rows)
        writers = reply.writers if reply.writers is not None else np.full(len(rows), self.me, np.int16)
        return reply.results, writers

    async def create_transfer_rows(self, rows: np.ndarray) -> np.ndarray:
        """A bulk body's rows, straight to the node's step (it merges them with what else
        arrived); the codes only: a bulk answer does not name the writer."""
        reply = await self.live.submit(rows.copy())  # a writable copy: the body's view is read-only
        return np.asarray(reply.results, np.uint32)

    def lookup_accounts(self, ids: list[int]) -> list[AccountState]:
        return lookup_accounts(self.live.node.engine, ids)

    def lookup_transfers(self, ids: list[int]) -> list[TransferState]:
        return lookup_transfers(self.live.node.engine, ids)

    def get_account_transfers(self, account_id: int, **filters: Any) -> list[TransferState]:
        return account_transfers(self.live.node.engine, account_id, index=self._statements, **filters)

    def replication_lag(self) -> dict[str, float]:
        lag = self.live.stats.lag_ms
        return {"p99": float(np.percentile(lag, 99)) / 1000} if lag else {}

    def region_reports(self) -> dict[str, int]:
        return {} if self._live is None else dict(self._live.stats.report_counts)

    def failure(self) -> str | None:
        if self._live is None:
            return "starting: the region node is not running yet"
        return self._live.failure

    def close(self) -> None:
        if self._live is not None:
            self._live.close()


class ChaosIn(BaseModel):
    """What the chaos driver may change: who this region hears, how slowly, whether it stalls."""

    model_config = ConfigDict(extra="forbid")
    partition: list[Annotated[int, Field(ge=0, le=63)]] | None = Field(default=None, max_length=64)
    extra_latency_ms: dict[Annotated[int, Field(ge=0, le=63)], Annotated[float, Field(
        ge=0.0, le=60_000.0, allow_inf_nan=False)]] | None = Field(default=None, max_length=64)
    pause: bool | None = None


TransferIds = Annotated[list[Annotated[int, Field(ge=0, le=U128_MAX, strict=True)]],
                        Body(max_length=MAX_REQUEST_ITEMS)]


EXIT_REGION_FAILED = 70
"""The exit code of a region process whose region stopped (EX_SOFTWARE): restart me."""
FATAL_EXIT_DELAY = 0.5
"""Seconds a stopped region keeps answering /health with 503 before its process exits."""


def exit_process_soon(error: BaseException) -> None:
    """A stopped region's process ends, so that its supervisor restarts it from its disk. Not
    a graceful shutdown: the region already refuses everything, and `kill -9` is what its
    recovery is built for."""
    def end() -> None:
        sys.stderr.flush()
        os._exit(EXIT_REGION_FAILED)

    asyncio.get_running_loop().call_later(FATAL_EXIT_DELAY, end)


def build_region_app(cfg: ServeConfig, me: int, peer_private: str, peer_socket: socket.socket | None = None, *,
                     on_fatal: Callable[[BaseException], None] = exit_process_soon) -> FastAPI:
    """The region's public gateway plus its internal (operator-only) endpoints. The peer
    listener serves on `peer_socket` (bound by the cluster) or binds its configured port;
    `peer_private` is this region's own key (hex), which only this process holds. When the
    region stops (`region.driver`), `on_fatal` ends the process."""
    holder: dict[str, Any] = {}
    backend = NodeBackend(cfg, me)
    keys = PeerKeys.load(me, peer_private, cfg.peer_keys)

    async def start() -> None:
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        transport = PeerTransport(cfg, keys)
        store = SqliteRegionStore(Path(cfg.data_dir) / f"region-{me}-{cfg.regions[me]}.db")
        # With group commit the node steps on whatever arrived since its last step and
        # fsyncs off the event loop (one SQLite transaction per step); without it, every
        # message is its own step and its own fsync, on the loop (the comparison baseline).
        live = LiveRegion(cfg.node_config(me), store, transport, group_commit=cfg.group_commit, on_fatal=on_fatal)
        backend.attach(live)
        listener = PeerListener(keys, live.deliver_many)
        await listener.start(cfg.peer_port(me), sock=peer_socket)
        holder.update(transport=transport, live=live, listener=listener)
        if cfg.workers > 1:  # the region's other HTTP workers hand it rows and requests here
            intake = IntakeServer(socket_path(cfg.data_dir, me), backend.submit_rows, app,
                                  on_call=app.state.metrics.observe_intake)
            await intake.start()
            holder["intake"] = intake
        settle_after_start()  # region.collector: no full collections walking start-up's objects

    async def stop() -> None:
        if "intake" in holder:
            await holder["intake"].close()
        if "listener" in holder:
            await holder["listener"].close()
        if "transport" in holder:
            await holder["transport"].close()

    app = create_app(
        backend,  # type: ignore[arg-type]
        auth=TokenVerifier(cfg.token_digests), startup=start, shutdown=stop,
    )
    app.state.backend = backend
    n = len(cfg.regions)

    @app.post("/internal/chaos", openapi_extra=roles(Role.OPERATOR), tags=["internal"],
              summary="Chaos: partition this region from peers, slow its links, pause it")
    async def chaos(body: ChaosIn) -> dict[str, Any]:
        named = set(body.partition or ()) | set(body.extra_latency_ms or {})
        if any(p >= n or p == me for p in named):
            raise HTTPException(422, f"regions are 0..{n - 1}, and {me} is this one")
        transport: PeerTransport = holder["transport"]
        if body.partition is not None:
            transport.partitioned = set(body.partition)
        if body.extra_latency_ms is not None:
            transport.extra_ms = dict(body.extra_latency_ms)
        if body.pause is not None:
            holder["live"].pause(body.pause)
        return {"partitioned": sorted(transport.partitioned), "extra_latency_ms": transport.extra_ms}

    @app.get("/internal/state", openapi_extra=roles(Role.OPERATOR), tags=["internal"],
             summary="The replica's raw books, for verdicts that do not trust the gateway's own checks")
    async def state() -> dict[str, Any]:
        engine = holder["live"].node.engine
        rows = engine.accounts
        accounts = {
            str(join(r["id_lo"], r["id_hi"])): [
                join(r[f"{name}_lo"], r[f"{name}_hi"]) for name in BALANCES
            ]
            for r in rows
        }
        return {
            "region": cfg.regions[me],
            "digest": canonical_digest(engine),
            "accounts": accounts,
            "customers": cfg.customers,
            "transfers": int(engine.n_transfers),
            "status": holder["live"].node.status(),
            "audit": dict(zip(("ok", "first_bad_record"), holder["live"].store.verify_chain(), strict=True)),
        }

    @app.post("/internal/missing", openapi_extra=roles(Role.OPERATOR), tags=["internal"],
              summary="Which of these transfer ids this replica does not hold")
    async def missing(ids: TransferIds) -> dict[str, Any]:
        engine = holder["live"].node.engine
        return {"missing": [i for i in ids if engine.transfer_slot(i) < 0]}

    return app


def build_worker_app(cfg: ServeConfig, me: int) -> HotPath:
    """One of a region's extra HTTP workers (`load.intake`): the fast lane for the writes,
    committed through the region's intake, and every other request forwarded to the region."""
    client = IntakeClient(socket_path(cfg.data_dir, me))
    metrics = GatewayMetrics(cfg.regions[me])
    committer: GroupCommitter[Transfer, tuple[Any, str]] = GroupCommitter(
        IntakeBackend(client, cfg.regions, me).create_transfers, enabled=False)
    return HotPath(Forwarder(client), lanes=GatewayWork(committer, metrics).lanes(),
                   verifier=TokenVerifier(cfg.token_digests), metrics=metrics)

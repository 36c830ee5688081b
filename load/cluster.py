"""Region gateway processes: start, health-check, kill -9, restart, supervise, stop.

`geoledger serve` and `geoledger load` both run regions as separate OS processes, so that
chaos can kill one for real and its restart must recover from disk.

The cluster makes the run's secrets and hands out no more of them than each part needs:
the client tokens go to `credentials.json` (owner-only, `load.auth`) and reach the regions
only as digests in `serve.json`, which holds no secret; each region's private peer key
(`load.peerauth`) goes to that region's process alone, down its stdin. That pipe is also
the region's lifeline: when the cluster's process ends — `stop_all`, SIGTERM, or even kill
-9 — the pipe closes and the region stops itself, so no region outlives its `serve`.
A `Supervisor` restarts a region that exits unexpectedly (`load.supervisor`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from load import peerauth
from load.auth import Credentials, Role
from load.intake import socket_path
from load.region import PEER_PORT_OFFSET, ServeConfig
from load.supervisor import Supervisor

LISTEN_BACKLOG = 1024
MAX_WORKERS = 16
"""HTTP processes per region at most (`serve --workers`)."""
Process = int | tuple[int, int]
"""A region's own process (its index), or one of its HTTP workers ((region, k), k >= 1)."""

REGION_NAMES = ["changchun", "beijing", "shanghai", "shenzhen", "chengdu", "wuhan", "xian", "hangzhou"]


def default_config(regions: int, **overrides: object) -> ServeConfig:
    """A config for `regions` regions; RTTs beyond the default three grow with distance."""
    if not 1 <= regions <= len(REGION_NAMES):
        raise ValueError(f"--regions must be between 1 and {len(REGION_NAMES)}, got {regions}")
    cfg = ServeConfig(regions=REGION_NAMES[:regions])
    base = cfg.rtt_ms
    cfg.rtt_ms = [
        [base[i][j] if i < 3 and j < 3 else (0.0 if i == j else 10.0 + 6.0 * abs(i - j)) for j in range(regions)]
        for i in range(regions)
    ]
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown serve setting {key!r}")
        setattr(cfg, key, value)
    top = 65535 - PEER_PORT_OFFSET - len(REGION_NAMES)
    if cfg.base_port != 0 and not 1024 <= cfg.base_port <= top:
        raise ValueError(f"--base-port must be 0 (free ports) or in 1024..{top}, got {cfg.base_port}")
    return cfg


class ClusterError(RuntimeError):
    """The cluster could not start (a port in use, a region that never answered)."""


def _listen(port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise ClusterError(f"{what}: cannot listen on 127.0.0.1:{port} ({e.strerror}); choose another --base-port "
                           "(or 0 for free ports)") from None
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


class Cluster:
    """The region processes of one run. The cluster binds every region's ports itself and
    hands the sockets to its processes: no port is probed and released (another process
    could take it in between), and a region restarted after kill -9 gets its own ports back."""

    def __init__(self, cfg: ServeConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sockets: list[tuple[socket.socket, socket.socket]] = []
        base = cfg.base_port
        try:
            for r, name in enumerate(cfg.regions):
                http = _listen(base + r if base else 0, f"region {name}'s gateway")
                try:
                    peer = _listen(base + PEER_PORT_OFFSET + r if base else 0, f"region {name}'s peer links")
                except ClusterError:
                    http.close()
                    raise
                self.sockets.append((http, peer))
        except ClusterError:
            self.close_sockets()
            raise
        cfg.http_ports = [h.getsockname()[1] for h, _ in self.sockets]
        cfg.peer_ports = [p.getsockname()[1] for _, p in self.sockets]
        if cfg.workers > 1:  # the intake's Unix socket must fit its path: refuse before anything starts
            try:
                for r in range(len(cfg.regions)):
                    socket_path(cfg.data_dir, r)
            except ValueError as e:
                self.close_sockets()
                raise ClusterError(str(e)) from None
        self.credentials = Credentials.generate()
        cfg.token_digests = self.credentials.digests()
        self._peer_private, cfg.peer_keys = peerauth.generate(len(cfg.regions))
        self.credentials_path = workdir / "credentials.json"
        self.credentials.save(self.credentials_path, [cfg.url(r) for r in range(len(cfg.regions))])
        self.config_path = workdir / "serve.json"
        cfg.save(self.config_path)
        self.procs: dict[Process, subprocess.Popen[bytes]] = {}
        self.expected_down: set[Process] = set()
        self._lifelines: dict[Process, IO[bytes]] = {}
        self._lock = threading.RLock()  # start/kill/stop from the chaos driver and the supervisor
        self.supervisor: Supervisor | None = None

    def headers(self, role: Role = Role.OPERATOR) -> dict[str, str]:
        return self.credentials.header(role)

    def region_name(self, key: Process) -> str:
        if isinstance(key, tuple):
            return f"{self.cfg.regions[key[0]]} worker {key[1]}"
        return self.cfg.regions[key]

    def worker_pids(self, region: int) -> dict[int, int]:
        """k -> pid of the region's running HTTP workers."""
        with self._lock:
            return {key[1]: p.pid for key, p in self.procs.items()
                    if isinstance(key, tuple) and key[0] == region and p.poll() is None}

    def close_sockets(self) -> None:
        for http, peer in self.sockets:
            http.close()
            peer.close()
        self.sockets = []

    def start(self, key: Process) -> None:
        """Start a region's process (`key` its index) or one of its HTTP workers ((region, k))."""
        if isinstance(key, tuple):
            self._start_worker(*key)
            return
        region = key
        http, peer = self.sockets[region]
        with self._lock:
            old = self._lifelines.pop(region, None)
            if old is not None:
                old.close()
            log = open(self.workdir / f"region-{region}.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(
                [sys.executable, "-m", "load.cluster", "--config", str(self.config_path), "--region", str(region),
                 "--http-fd", str(http.fileno()), "--peer-fd", str(peer.fileno())],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
                pass_fds=(http.fileno(), peer.fileno()),
            )
            log.close()
            assert proc.stdin is not None
            proc.stdin.write(f"{self._peer_private[region]}\n".encode())
            proc.stdin.flush()  # kept open: the region's lifeline
            self._lifelines[region] = proc.stdin
            self.procs[region] = proc
            self.expected_down.discard(region)

    def _start_worker(self, region: int, k: int) -> None:
        """An extra HTTP worker of `region` (`load.intake`), accepting on the region's own
        listening socket; it holds no key, its stdin is only its lifeline."""
        http, _ = self.sockets[region]
        with self._lock:
            old = self._lifelines.pop((region, k), None)
            if old is not None:
                old.close()
            log = open(self.workdir / f"region-{region}-worker-{k}.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(
                [sys.executable, "-m", "load.cluster", "--config", str(self.config_path), "--region", str(region),
                 "--worker", str(k), "--http-fd", str(http.fileno())],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
                pass_fds=(http.fileno(),),
            )
            log.close()
            assert proc.stdin is not None
            self._lifelines[(region, k)] = proc.stdin
            self.procs[(region, k)] = proc
            self.expected_down.discard((region, k))

    def start_all(self, timeout: float = 60.0, *, supervise: bool = True) -> None:
        for r in range(len(self.cfg.regions)):
            self.start(r)
        for r in range(len(self.cfg.regions)):
            self.wait_healthy(r, timeout)
        for r in range(len(self.cfg.regions)):
            for k in range(1, self.cfg.workers):
                self.start((r, k))
        if supervise and self.supervisor is None:
            self.supervisor = Supervisor(self)
            self.supervisor.start()

    def exited_unexpectedly(self) -> list[tuple[Process, int]]:
        """(process, exit code) of every region process or worker that ended while nobody asked it to."""
        with self._lock:
            return [(r, p.returncode) for r, p in self.procs.items()
                    if r not in self.expected_down and p.poll() is not None]

    def wait_healthy(self, region: int, timeout: float = 60.0) -> float:
        """Seconds until the region's gateway answers /health; raises if it never does."""
        start = time.monotonic()
        url = f"{self.cfg.url(region)}/health"
        while time.monotonic() - start < timeout:
            proc = self.procs.get(region)
            if proc is not None and proc.poll() is not None and (self.supervisor is None or region in
                                                                  self.supervisor.gave_up):
                tail = (self.workdir / f"region-{region}.log").read_text(errors="replace")[-2000:]
                raise ClusterError(f"region {self.cfg.regions[region]} exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ClusterError(f"region {self.cfg.regions[region]} did not answer {url} within {timeout:.0f} s")

    def kill(self, region: int) -> None:
        """kill -9: no shutdown hooks, no flush; recovery must come from what is on disk. A
        deliberate kill: the supervisor leaves the region down until `start`."""
        with self._lock:
            self.expected_down.add(region)
            proc = self.procs.get(region)
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def chaos(self, region: int, **settings: object) -> dict[str, Any]:
        r = httpx.post(f"{self.cfg.url(region)}/internal/chaos", json=settings, headers=self.headers(), timeout=5.0)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        with self._lock:
            self.expected_down.update(self.procs)
            for lifeline in self._lifelines.values():
                lifeline.close()
            self._lifelines.clear()
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.close_sockets()


EXIT_ORPHANED = 75
"""A region's exit code when its cluster is gone (its lifeline closed)."""


def _watch_lifeline(stdin: IO[bytes]) -> None:
    """Stop this region (SIGTERM to itself: a graceful shutdown) once the cluster's end of
    stdin closes: its `serve` or `load` ended, however it ended."""
    def watch() -> None:
        try:
            while stdin.read(4096):
                pass
        except OSError:
            pass
        logging.getLogger(__name__).info("stdin closed: the cluster stopped (or died); stopping")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(EXIT_ORPHANED)  # still here: the graceful path hung

    threading.Thread(target=watch, daemon=True, name="lifeline").start()


def _serve_one(config: Path, region: int, http_fd: int, peer_fd: int) -> None:
    """One region's process, serving on the sockets its cluster bound for it."""
    import uvicorn

    from load.region import build_region_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    private = sys.stdin.buffer.readline().decode().strip()
    if not private:
        sys.exit("no peer key on stdin: region processes are started by geoledger serve/load")
    _watch_lifeline(sys.stdin.buffer)
    cfg = ServeConfig.load(config)
    http, peer = socket.socket(fileno=http_fd), socket.socket(fileno=peer_fd)
    server = uvicorn.Server(uvicorn.Config(build_region_app(cfg, region, private, peer_socket=peer),
                                           log_level="warning", access_log=False, loop="uvloop", http="httptools",
                                           # No proxy in front: trust no X-Forwarded-* header, and
                                           # spend nothing per answer on Server/Date headers.
                                           proxy_headers=False, server_header=False, date_header=False))
    del private
    server.run(sockets=[http])


def _serve_worker(config: Path, region: int, http_fd: int) -> None:
    """One of a region's extra HTTP workers, on the socket its region's process serves too."""
    import uvicorn

    from load.region import build_worker_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _watch_lifeline(sys.stdin.buffer)
    cfg = ServeConfig.load(config)
    http = socket.socket(fileno=http_fd)
    server = uvicorn.Server(uvicorn.Config(build_worker_app(cfg, region), log_level="warning", access_log=False,
                                           loop="uvloop", http="httptools", lifespan="on", proxy_headers=False,
                                           server_header=False, date_header=False))
    server.run(sockets=[http])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one region gateway process (started by geoledger serve/load)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--region", type=int, required=True)
    parser.add_argument("--http-fd", type=int, required=True, help="the gateway's listening socket (inherited)")
    parser.add_argument("--peer-fd", type=int, help="the peer links' listening socket (inherited; not for a worker)")
    parser.add_argument("--worker", type=int, default=0, help="k >= 1: the region's k-th extra HTTP worker")
    args = parser.parse_args()
    if args.worker:
        _serve_worker(args.config, args.region, args.http_fd)
    elif args.peer_fd is None:
        parser.error("a region's own process needs --peer-fd")
    else:
        _serve_one(args.config, args.region, args.http_fd, args.peer_fd)

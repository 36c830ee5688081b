"""Region gateway processes: start, health-check, kill -9, restart, stop.

`geoledger serve` and `geoledger load` both run regions as separate OS processes, so that
chaos can kill one for real and its restart must recover from disk.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from load.region import PEER_PORT_OFFSET, ServeConfig

LISTEN_BACKLOG = 1024

REGION_NAMES = ["changchun", "beijing", "shanghai", "shenzhen", "chengdu", "wuhan", "xian", "hangzhou"]


def default_config(regions: int, **overrides: object) -> ServeConfig:
    """A config for `regions` regions; RTTs beyond the default three grow with distance."""
    if not 1 <= regions <= len(REGION_NAMES):
        raise ValueError(f"--regions must be between 1 and {len(REGION_NAMES)}, got {regions}")
    cfg = ServeConfig(regions=REGION_NAMES[:regions], token=secrets.token_hex(16))
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
        self.config_path = workdir / "serve.json"
        cfg.save(self.config_path)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def close_sockets(self) -> None:
        for http, peer in self.sockets:
            http.close()
            peer.close()
        self.sockets = []

    def start(self, region: int) -> None:
        http, peer = self.sockets[region]
        log = open(self.workdir / f"region-{region}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[region] = subprocess.Popen(
            [sys.executable, "-m", "load.cluster", "--config", str(self.config_path), "--region", str(region),
             "--http-fd", str(http.fileno()), "--peer-fd", str(peer.fileno())],
            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
            pass_fds=(http.fileno(), peer.fileno()),
        )

    def start_all(self, timeout: float = 60.0) -> None:
        for r in range(len(self.cfg.regions)):
            self.start(r)
        for r in range(len(self.cfg.regions)):
            self.wait_healthy(r, timeout)

    def wait_healthy(self, region: int, timeout: float = 60.0) -> float:
        """Seconds until the region's gateway answers /health; raises if it never does."""
        start = time.monotonic()
        url = f"{self.cfg.url(region)}/health"
        while time.monotonic() - start < timeout:
            proc = self.procs.get(region)
            if proc is not None and proc.poll() is not None:
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
        """kill -9: no shutdown hooks, no flush; recovery must come from what is on disk."""
        proc = self.procs.get(region)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def chaos(self, region: int, **settings: object) -> None:
        httpx.post(f"{self.cfg.url(region)}/internal/chaos", json=settings,
                   headers={"x-geoledger-token": self.cfg.token}, timeout=5.0)

    def stop_all(self) -> None:
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


def _serve_one(config: Path, region: int, http_fd: int, peer_fd: int) -> None:
    """One region's process, serving on the sockets its cluster bound for it."""
    import uvicorn

    from load.region import build_region_app

    cfg = ServeConfig.load(config)
    http, peer = socket.socket(fileno=http_fd), socket.socket(fileno=peer_fd)
    server = uvicorn.Server(uvicorn.Config(build_region_app(cfg, region, peer_socket=peer), log_level="warning",
                                           access_log=False, loop="uvloop", http="httptools"))
    server.run(sockets=[http])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one region gateway process (started by geoledger serve/load)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--region", type=int, required=True)
    parser.add_argument("--http-fd", type=int, required=True, help="the gateway's listening socket (inherited)")
    parser.add_argument("--peer-fd", type=int, required=True, help="the peer links' listening socket (inherited)")
    args = parser.parse_args()
    _serve_one(args.config, args.region, args.http_fd, args.peer_fd)

"""Region gateway processes: start, health-check, kill -9, restart, stop.

`geoledger serve` and `geoledger load` both run regions as separate OS processes, so that
chaos can kill one for real and its restart must recover from disk.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from load.region import ServeConfig

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
    return cfg


class Cluster:
    """The region processes of one run."""

    def __init__(self, cfg: ServeConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "serve.json"
        cfg.save(self.config_path)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, region: int) -> None:
        log = open(self.workdir / f"region-{region}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[region] = subprocess.Popen(
            [sys.executable, "-m", "load.cluster", "--config", str(self.config_path), "--region", str(region)],
            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
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
                raise RuntimeError(f"region {self.cfg.regions[region]} exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"region {self.cfg.regions[region]} did not answer {url} within {timeout:.0f} s")

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


def _serve_one(config: Path, region: int) -> None:
    import uvicorn

    from load.region import build_region_app

    cfg = ServeConfig.load(config)
    uvicorn.run(
        build_region_app(cfg, region), host="127.0.0.1", port=cfg.base_port + region,
        log_level="warning", access_log=False, loop="uvloop", http="httptools",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one region gateway process (started by geoledger serve/load)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--region", type=int, required=True)
    args = parser.parse_args()
    _serve_one(args.config, args.region)

"""The Ray a run uses: started here (and shut down here, leaving nothing behind) or joined.

A local Ray is started with every core, a custom resource per region (so placement is
exercised exactly as on a cluster, where each node advertises `region_<name>`), Ray's
files in a temp dir of ours, and its services on 127.0.0.1 only: a laptop's Ray is not a
service for the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator.scenario import CITIES

RESOURCE_PREFIX = "region_"
CONTROL_RESOURCE = "geoledger_control"
"""A node advertising this is the run's control node: the chaos controller and every client
actor go there (the users' side of the network, which no region's node loss takes with it).
Without one, clients go with their region, and a `node-loss` cannot be run."""
LOCAL_HOST = "127.0.0.1"
LOCAL_SYSTEM_CONFIG = {"max_direct_call_object_size": 4 << 20}
"""A link batch or client batch of up to 4 MB goes inline with the call instead of through the
object store (a put, a location lookup and a fetch): one 1,000-row entry shipped to two peers
is ~260 KB, over Ray's 100 KB default. Applies to a Ray started here; a cluster has its own."""


def resource_name(region: str) -> str:
    """The custom resource that pins a region's actors to a cluster node."""
    return f"{RESOURCE_PREFIX}{region}"


@dataclass
class RaySession:
    """The Ray this process uses: started here (and shut down here) or joined."""

    owned: bool
    address: str | None
    temp_dir: str | None
    head_pids: list[int]

    def leftovers(self, worker_pids: list[int] | tuple[int, ...] = ()) -> list[str]:
        """What a clean shutdown must not leave: live processes we started, our temp dir."""
        import psutil

        out = [f"pid {p} still running" for p in {*self.head_pids, *worker_pids}
               if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if self.temp_dir and os.path.exists(self.temp_dir):
            out.append(f"temp dir {self.temp_dir} still there")
        return out


def current_node_id() -> str:
    """The Ray node this process runs on (for placement checks)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _ray_init_logging() -> dict[str, Any]:
    return {"logging_level": logging.ERROR, "log_to_driver": True, "configure_logging": True}


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                regions: tuple[str, ...] | list[str] = tuple(CITIES)) -> Iterator[RaySession]:
    """Use the Ray already initialised in this process, join `address` / `RAY_ADDRESS`, or
    start a local one (every core; a custom resource per region so placement is exercised
    exactly as on a cluster; Ray's files in a temp dir of ours, removed afterwards)."""
    import ray

    if ray.is_initialized():
        yield RaySession(False, address, None, [])
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    temp_dir = None
    if address:
        ray.init(address=address, **_ray_init_logging())
    else:
        temp_dir = tempfile.mkdtemp(prefix="glray-")  # short: Ray's socket paths must fit 107 bytes
        try:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False, _temp_dir=temp_dir,
                     _node_ip_address=LOCAL_HOST,
                     resources={resource_name(r): 1000.0 for r in regions}, _system_config=LOCAL_SYSTEM_CONFIG,
                     **_ray_init_logging())
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    session = RaySession(True, address, temp_dir, _head_pids())
    try:
        yield session
    finally:
        ray.shutdown()
        if temp_dir:
            _wait_dead(session.head_pids, 10.0)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _head_pids() -> list[int]:
    try:
        import ray

        node: Any = ray._private.worker._global_node  # the only way to see our own raylet/GCS pids
        return [p.process.pid for procs in node.all_processes.values() for p in procs if p.process is not None]
    except Exception:
        return []


def _wait_dead(pids: list[int], timeout: float) -> None:
    import psutil

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        time.sleep(0.1)


__all__ = ["CONTROL_RESOURCE", "LOCAL_SYSTEM_CONFIG", "RaySession", "current_node_id", "ray_session",
           "resource_name"]

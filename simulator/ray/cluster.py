"""A multi-node Ray cluster on this machine, with a power switch per region's node.

`LocalCluster` is `ray.cluster_utils.Cluster` (real raylets, real worker processes, one GCS)
laid out as a bank would lay out a drill: a control node advertising `geoledger_control`
(the driver, the chaos controller and the clients — the users' side of the network) and one
node per region advertising `region_<name>`, so each region's actor can only run there.

Its power switch is what a `node-loss` fault needs: `power_off(region)` kills every process
of the region's node at once with SIGKILL — the workers (the region's actor among them),
then the raylet and its agents — as a power cut would, with no goodbye to anyone;
`power_on(region)` starts a new node advertising the same resource, where Ray restarts the
region's actor (and nowhere else: no other node has the resource). The disk survives: the
region's store is a file on this machine, as a node's disk outlives its power.

The driver's `PowerLine` carries the controller's requests to the switch (the switch lives
in the driver's process, which owns the cluster; the controller is an actor).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from simulator.ray.session import CONTROL_RESOURCE, LOCAL_SYSTEM_CONFIG, resource_name

HEALTH_CONFIG = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                 "health_check_timeout_ms": 5000, "health_check_failure_threshold": 5}
"""The GCS declares a node whose raylet is gone dead after ~5 s (Ray's default is ~15 s): only
then does it restart the node's actors. A live raylet that is merely slow (a loaded 2-core
machine) has 5 s per check to answer, so it is not declared dead by mistake."""
NODE_UP_S = 60.0
MAIN_THREAD_WAIT_S = 120.0
OBJECT_STORE_BYTES = 80 << 20  # per node: Ray's floor is 75 MB; actor calls carry everything inline


class PowerSwitch(Protocol):
    """Switches a region's node off (every process on it, at once) and on again."""

    def power_off(self, region: str) -> dict[str, Any]: ...

    def power_on(self, region: str) -> dict[str, Any]: ...


class LocalCluster:
    """A control node plus one Ray node per region on this machine (module docstring)."""

    def __init__(self, regions: list[str] | tuple[str, ...], *, cpus_per_node: int = 1) -> None:
        from ray.cluster_utils import Cluster

        if len(set(regions)) != len(regions) or not regions:
            raise ValueError(f"regions must be distinct and not empty, got {list(regions)}")
        self.regions = list(regions)
        self.cpus = cpus_per_node
        self.temp_dir = tempfile.mkdtemp(prefix="glrc-")  # short: Ray's socket paths must fit 107 bytes
        self.nodes: dict[str, Any] = {}
        # Ray's own files (sessions, sockets, the "current cluster" address file that
        # `address="auto"` reads) go under our dir, not the machine-wide /tmp/ray
        self._saved_env = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.temp_dir
        os.makedirs(os.path.join(self.temp_dir, "ray"), exist_ok=True)
        try:
            self.cluster = Cluster(initialize_head=True, head_node_args={
                **self._common(), "resources": {CONTROL_RESOURCE: 1000.0},
                "_system_config": {**LOCAL_SYSTEM_CONFIG, **HEALTH_CONFIG}})
            for r in self.regions:
                self.nodes[r] = self._add(r)
            self.cluster.wait_for_nodes()
            for r in self.regions:
                self._wait_advertised(r)
        except BaseException:
            self.shutdown()
            raise

    def _common(self) -> dict[str, Any]:
        # no node_ip_address: a driver joining by address has a loopback address rewritten to
        # the machine's own (Ray's `canonicalize_bootstrap_address`), so the nodes listen
        # there, as the nodes of any Ray cluster do (SECURITY.md: Ray's ports)
        return {"num_cpus": self.cpus, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False}

    def _add(self, region: str) -> Any:
        args = {k: v for k, v in self._common().items() if k != "include_dashboard"}
        return self.cluster.add_node(**args, resources={resource_name(region): 1.0})

    def _wait_advertised(self, region: str) -> None:
        """Until the cluster's resource view has the region's node (a node is in the node
        table a moment before its resources are), so a run sees every region pinned."""
        end = time.monotonic() + NODE_UP_S
        while resource_name(region) not in self.cluster.global_state.cluster_resources():
            if time.monotonic() > end:
                raise TimeoutError(f"the node of region {region!r} did not come up in {NODE_UP_S:.0f} s")
            time.sleep(0.1)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def node_id(self, region: str) -> str | None:
        """The Ray node id of the region's node now (None while it is off)."""
        node = self.nodes.get(region)
        return None if node is None else str(node.node_id)

    def power_off(self, region: str) -> dict[str, Any]:
        """Every process of the region's node dies at once (SIGKILL): workers, raylet, agents."""
        import psutil

        node = self.nodes.pop(region, None)
        if node is None:
            raise RuntimeError(f"the node of region {region!r} is already off")
        began = time.perf_counter()
        pids = set()
        for procs in node.all_processes.values():
            for p in procs:
                if p.process is None:
                    continue
                pids.add(p.process.pid)
                with contextlib.suppress(psutil.Error):
                    pids.update(c.pid for c in psutil.Process(p.process.pid).children(recursive=True))
        for pid in pids:  # all at once, before anyone can notice the others are gone
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self.cluster.remove_node(node, allow_graceful=False)  # reaps what it started
        return {"killed_pids": len(pids), "node_id": str(node.node_id),
                "off_wall_s": round(time.perf_counter() - began, 3)}

    def power_on(self, region: str) -> dict[str, Any]:
        """A new node for the region, advertising its resource (Ray restarts its actor there)."""
        if region in self.nodes:
            raise RuntimeError(f"the node of region {region!r} is already on")
        began = time.perf_counter()
        self.nodes[region] = self._add(region)
        self._wait_advertised(region)
        return {"node_id": self.node_id(region), "on_wall_s": round(time.perf_counter() - began, 3)}

    def shutdown(self) -> None:
        """Every node of the cluster stopped, and its temp dir removed."""
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()
        if self._saved_env is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self._saved_env
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


@contextlib.contextmanager
def local_cluster(regions: list[str] | tuple[str, ...], *, cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    """A `LocalCluster` for the block, shut down (every process, its temp dir) after it."""
    cluster = LocalCluster(regions, cpus_per_node=cpus_per_node)
    try:
        yield cluster
    finally:
        cluster.shutdown()


class PowerLine(threading.Thread):
    """The driver's side of the power switch: takes the controller's requests (a long poll)
    and carries each out on the switch, then reports back. Ends when the controller says so
    (a `None` request) or is gone.

    Switching off happens on this thread. Switching on is handed to the driver's main thread
    (`serve`, called by the driver's wait loop): starting a Ray node sets signal handlers,
    which Python allows only there."""

    def __init__(self, controller: Any, switch: PowerSwitch) -> None:
        super().__init__(name="geoledger-power-line", daemon=True)
        self.controller = controller
        self.switch = switch
        self.done: list[dict[str, Any]] = []
        self.main_jobs: queue.Queue[tuple[str, list[dict[str, Any]], threading.Event]] = queue.Queue()

    def serve(self, timeout: float) -> None:
        """On the main thread: switch on a node the line handed over, or wait up to `timeout` s."""
        try:
            region, out, finished = self.main_jobs.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return
        out.append(_flip(self.switch.power_on, region))
        finished.set()

    def _on_main_thread(self, region: str) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        finished = threading.Event()
        self.main_jobs.put((region, out, finished))
        if not finished.wait(MAIN_THREAD_WAIT_S):
            return {"ok": False, "error": f"the driver's main thread did not switch the node on in "
                                          f"{MAIN_THREAD_WAIT_S:.0f} s"}
        return out[0]

    def run(self) -> None:
        import ray

        while True:
            try:
                req = ray.get(self.controller.power_request.remote())
            except Exception:
                return
            if req is None:
                return
            if req["op"] == "off":
                info = _flip(self.switch.power_off, req["region"])
            else:
                info = self._on_main_thread(req["region"])
            self.done.append({**req, **info})
            try:
                ray.get(self.controller.power_done.remote(req["id"], info))
            except Exception:
                return


def _flip(switch: Any, region: str) -> dict[str, Any]:
    """One switch operation as a report: a failure is recorded (the run goes on, the checkers judge)."""
    try:
        return {"ok": True, **switch(region)}
    except Exception as e:
        return {"ok": False, "error": repr(e)}


__all__ = ["HEALTH_CONFIG", "LocalCluster", "PowerLine", "PowerSwitch", "local_cluster"]

"""The Ray runtime: the same region nodes, scenarios, client rules, fault dispatcher and
checkers on a real distributed runtime (see `simulator/RAY.md`).

| module | what it holds |
| --- | --- |
| `region_actor` | a region: `LiveRegion` over its store, plus its outgoing network links |
| `client_actor` | a region's clients, under `simulator.clients.ClientBook` |
| `controller` | the fault schedule on the wall clock (`simulator.faults`), and telemetry |
| `session` | the Ray a run uses: started locally (127.0.0.1 only) or joined |
| `driver` | one run's lifecycle: launch, wait, settle, collect, the `RunResult` |
| `drill` | `geoledger drill --runtime ray` (live snapshots) |
| `timebase` | the scenario clock on wall time |
"""

from simulator.ray.drill import RayRuntime
from simulator.ray.driver import MIN_BATCH_MS, SETTLE_S, RayOptions, check_store, ray_result, run_scenario_ray
from simulator.ray.session import RaySession, ray_session, resource_name

__all__ = ["MIN_BATCH_MS", "SETTLE_S", "RayOptions", "RayRuntime", "RaySession", "check_store", "ray_result",
           "ray_session", "resource_name", "run_scenario_ray"]

"""A random nemesis: a fault schedule drawn from a seeded generator.

Deterministic: the same generator state gives the same schedule. Faults are kept
inside the load window and leave time to heal before the run quiesces.
"""

from __future__ import annotations

from typing import Any

from chaos.faults import FAULT_KINDS, Fault

DEFAULT_KINDS = tuple(k for k in FAULT_KINDS if k != "node-loss")
"""Every fault but `node-loss`: on Ray it needs a cluster whose nodes can be switched off (a
random schedule must run anywhere), and elsewhere it is the crash already drawn. Keeping the
list as it was also keeps every seed's schedule (and trace digest) as it was."""


def random_schedule(rng: Any, regions: list[str], duration: float, n_faults: int = 3,
                    kinds: tuple[str, ...] = DEFAULT_KINDS) -> list[Fault]:
    """`rng` is a numpy Generator (the run's single PRNG)."""
    faults: list[Fault] = []
    n = len(regions)
    for _ in range(n_faults):
        kind = str(kinds[int(rng.integers(len(kinds)))])
        if kind in ("partition-partial", "partition-oneway") and n < 2:
            continue
        if kind == "partition-bridge" and n < 3:
            kind = "partition"
        at = round(float(rng.uniform(0.1, 0.7)) * duration, 3)
        length = round(float(rng.uniform(0.05, 0.3)) * duration, 3)
        perm = [regions[int(i)] for i in rng.permutation(n)]
        arity = FAULT_KINDS[kind][0]
        if arity == "2":
            target = tuple(perm[:2])
        elif arity == "1+" and kind == "partition":
            target = tuple(perm[: int(rng.integers(1, max(2, (n + 1) // 2)))]) if n > 1 else ()
        else:
            target = (perm[0],)
        if not target:
            continue
        params: dict[str, Any] = {}
        if kind == "latency":
            params["extra_ms"] = round(float(rng.uniform(20, 400)), 1)
        elif kind in ("loss", "duplicate"):
            params["p"] = round(float(rng.uniform(0.05, 0.5)), 3)
        elif kind == "reorder":
            params["extra_ms"] = round(float(rng.uniform(5, 80)), 1)
        elif kind == "clock-skew":
            params["offset_ms"] = round(float(rng.uniform(-2000, 2000)), 1)
            params["drift_ppm"] = round(float(rng.uniform(-5000, 5000)), 1)
        elif kind == "corrupt":
            params["records"] = int(rng.integers(1, 4))
        faults.append(Fault(at, kind, target, length, params))
    return sorted(faults, key=lambda f: (f.at, f.kind, f.target))

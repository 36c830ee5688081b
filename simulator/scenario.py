"""Scenarios: regions, latency, mode, workload, chaos, duration and SLOs, from TOML.

A scenario file is validated strictly: an unknown key or a value of the wrong type or
range is a `ScenarioError` naming the key (`workload.mix.cross_unti: unknown key ...`),
because a typo silently ignored would make a drill measure something else.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chaos import Fault, FaultError, validate_fault
from replication.config import DESIGN_LABELS, Grouping, Ship, design_label, parse_design

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

# name: (latitude, longitude) — inland-China fibre RTTs are derived from these.
CITIES: dict[str, tuple[float, float]] = {
    "changchun": (43.82, 125.32),
    "beijing": (39.90, 116.40),
    "shanghai": (31.23, 121.47),
    "guangzhou": (23.13, 113.26),
    "chengdu": (30.57, 104.07),
    "wuhan": (30.59, 114.31),
    "xian": (34.34, 108.94),
    "shenzhen": (22.54, 114.06),
}


class ScenarioError(ValueError):
    """A scenario that cannot run: names the offending key."""


def fibre_rtt_ms(a: str, b: str) -> float:
    """Round trip over fibre: great-circle x 1.5 route factor at 200 km/ms, plus 1 ms of gear."""
    if a == b:
        return 0.0
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, CITIES[x])) for x in (a, b))
    d = 2 * 6371 * math.asin(math.sqrt(math.sin((la2 - la1) / 2) ** 2
                                       + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2))
    return round(2 * d * 1.5 / 200 + 1.0, 2)


@dataclass(frozen=True)
class Mix:
    same_unit: float = 0.55
    cross_unit: float = 0.15
    cross_region: float = 0.10
    two_phase: float = 0.05
    read: float = 0.15


@dataclass(frozen=True)
class SpendAll:
    """Customers spending close to their whole balance from several regions at once."""

    at: float = 0.0
    accounts: int = 0
    fraction: float = 0.8
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    customers: int = 3000
    units_per_region: int = 4
    rate: float = 1000.0  # client operations per second, per region
    opening_balance: int = 1_000_000
    zipf: float = 0.8
    amount_max_fraction: float = 0.005
    travel: float = 0.05  # share of operations submitted away from the customer's home region
    batch_ms: float = 5.0
    client_timeout_ms: float = 1500.0
    max_attempts: int = 8
    mix: Mix = field(default_factory=Mix)
    spend_all: SpendAll = field(default_factory=SpendAll)


@dataclass(frozen=True)
class NodeParams:
    heartbeat_ms: float = 100.0
    suspect_ms: float = 600.0
    lease_ms: float = 1000.0
    drift: float = 0.01
    tick_ms: float = 50.0
    quorum_groups: str = "unit"  # quorum: a Raft log per "unit" or per home "region" (led there), or one "ledger"
    snapshot_every: int = 1000  # quorum: entries a log applies between snapshots (log compaction)
    commit_ms: float = 0.0  # virtual time a region's group commit takes (arrivals meanwhile form the next step)


@dataclass(frozen=True)
class Slo:
    p99_ms: float = 500.0
    availability: float = 0.99
    rto_s: float = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str = "baseline"
    description: str = ""
    regions: tuple[str, ...] = ("changchun", "beijing", "shanghai")
    rtt_ms: tuple[tuple[float, ...], ...] = ()
    jitter_ms: float = 1.0
    bandwidth_mbps: float = 1000.0
    intra_rtt_ms: float = 0.5
    replicas: tuple[int, ...] = ()  # quorum: replicas per region (regions.replicas = [2, 2, 1]); empty = one each
    mode: str = "unit"
    ship: str = "semi-sync"
    duration: float = 20.0
    quiesce: float = 10.0
    seed: int = 1
    workload: Workload = field(default_factory=Workload)
    node: NodeParams = field(default_factory=NodeParams)
    chaos: tuple[Fault, ...] = ()
    random_faults: int = 0
    slo: Slo = field(default_factory=Slo)

    def rtt_matrix(self) -> list[list[float]]:
        if self.rtt_ms:
            return [list(r) for r in self.rtt_ms]
        return [[fibre_rtt_ms(a, b) for b in self.regions] for a in self.regions]

    @property
    def mode_label(self) -> str:
        """The design's name as every report shows it: `unit+semi-sync`, `quorum+ledger`, ..."""
        return design_label(self.mode, self.ship, self.node.quorum_groups)

    def with_mode(self, mode: str | None, ship: str | None = None) -> Scenario:
        """`unit+async` / `unit+semi-sync` set the shipping; `quorum+unit` / `quorum+region` /
        `quorum+ledger` set the Raft groups (one per unit, per home region, or one log)."""
        _check_choice(ship or self.ship, tuple(s.value for s in Ship), "ship")
        _check_choice(self.node.quorum_groups, tuple(g.value for g in Grouping), "node.quorum_groups")
        label = mode or self.mode
        _check_choice(label, DESIGN_LABELS, "mode")
        m, sh, groups = parse_design(label, ship or self.ship, self.node.quorum_groups)
        return replace(self, mode=m.value, ship=sh.value, node=replace(self.node, quorum_groups=groups.value))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "regions": list(self.regions),
            "rtt_ms": self.rtt_matrix(), "replicas": list(self.replicas) or [1] * len(self.regions),
            "mode": self.mode, "ship": self.ship, "duration": self.duration,
            "quiesce": self.quiesce, "workload": _asdict(self.workload), "node": _asdict(self.node),
            "chaos": [f.to_json() for f in self.chaos], "random_faults": self.random_faults,
            "slo": _asdict(self.slo),
        }


def _asdict(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _asdict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_asdict(x) for x in obj]
    return obj


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ScenarioError(f"{key}: must be one of {list(choices)}, got {value!r}")


def _build(cls: type, data: dict[str, Any], where: str, nested: dict[str, type] | None = None) -> Any:
    """Dataclass from a TOML table: unknown keys and wrong types are errors naming the key."""
    nested = nested or {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: expected a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise ScenarioError(f"{path}: unknown key (expected one of {sorted(known)})")
        if key in nested:
            kwargs[key] = _build(nested[key], value, path)
            continue
        default = getattr(defaults, key)
        kwargs[key] = _coerce(value, default, path)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ScenarioError(f"{path}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if type(value) is not int:
            raise ScenarioError(f"{path}: expected an integer, got {value!r}")
        if value < 0:
            raise ScenarioError(f"{path}: must be >= 0, got {value}")
        return value
    if isinstance(default, float):
        if type(value) not in (int, float):
            raise ScenarioError(f"{path}: expected a number, got {value!r}")
        if value < 0 or not math.isfinite(value):
            raise ScenarioError(f"{path}: must be a finite number >= 0, got {value}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ScenarioError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ScenarioError(f"{path}: expected a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def parse_scenario(data: dict[str, Any], name: str = "scenario") -> Scenario:
    data = dict(data)
    wl = data.pop("workload", {})
    regions_tbl = data.pop("regions", {})
    chaos_list = data.pop("chaos", [])
    flat: dict[str, Any] = {}
    if regions_tbl:
        if not isinstance(regions_tbl, dict):
            raise ScenarioError("regions: expected a table with 'names' (and optionally rtt_ms, jitter_ms, ...)")
        allowed = {"names", "rtt_ms", "jitter_ms", "bandwidth_mbps", "intra_rtt_ms", "replicas"}
        for key, value in regions_tbl.items():
            if key not in allowed:
                raise ScenarioError(f"regions.{key}: unknown key (expected one of {sorted(allowed)})")
            flat["regions" if key == "names" else key] = value
    data.setdefault("name", name)
    s = _build(Scenario, {**data, **flat}, "", {"node": NodeParams, "slo": Slo})
    if wl:
        if not isinstance(wl, dict):
            raise ScenarioError("workload: expected a table")
        w = _build(Workload, {k: v for k, v in wl.items() if k not in ("mix", "spend_all")}, "workload")
        mix = _build(Mix, wl.get("mix", {}), "workload.mix")
        spend = _build(SpendAll, wl.get("spend_all", {}), "workload.spend_all")
        s = replace(s, workload=replace(w, mix=mix, spend_all=spend))
    _validate(s)
    faults = []
    if not isinstance(chaos_list, list):
        raise ScenarioError("chaos: expected an array of tables ([[chaos]])")
    for i, item in enumerate(chaos_list):
        where = f"chaos[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a table")
        item = dict(item)
        try:
            at = item.pop("at")
            kind = item.pop("fault")
            target = item.pop("target")
            duration = item.pop("duration")
        except KeyError as e:
            raise ScenarioError(f"{where}.{e.args[0]}: missing (a fault needs at, fault, target, duration)") from None
        if isinstance(target, str):
            target = [target]
        f = Fault(float(at), str(kind), tuple(target), float(duration), item)
        try:
            validate_fault(f, list(s.regions), where)
        except FaultError as e:
            raise ScenarioError(str(e)) from None
        faults.append(f)
    return replace(s, chaos=tuple(sorted(faults, key=lambda f: f.at)))


def _validate(s: Scenario) -> None:
    n = len(s.regions)
    if not 1 <= n <= 8 and not s.rtt_ms:
        raise ScenarioError(f"regions.names: between 1 and 8 regions with built-in RTTs, got {n}")
    if len(set(s.regions)) != n:
        raise ScenarioError("regions.names: region names must be unique")
    if not s.rtt_ms:
        for r in s.regions:
            if r not in CITIES:
                raise ScenarioError(f"regions.names: no built-in coordinates for {r!r}; give regions.rtt_ms "
                                    f"(known: {sorted(CITIES)})")
    else:
        if len(s.rtt_ms) != n or any(len(row) != n for row in s.rtt_ms):
            raise ScenarioError(f"regions.rtt_ms: must be a {n}x{n} matrix")
        for i in range(n):
            for j in range(n):
                v = s.rtt_ms[i][j]
                if type(v) not in (int, float) or v < 0:
                    raise ScenarioError(f"regions.rtt_ms[{i}][{j}]: must be a number >= 0, got {v!r}")
    _check_choice(s.mode, ("async", "unit", "escrow", "quorum"), "mode")
    _check_choice(s.ship, ("async", "semi-sync"), "ship")
    _validate_replicas(s)
    w = s.workload
    if w.customers < 2:
        raise ScenarioError("workload.customers: need at least 2 customers")
    if w.units_per_region < 1:
        raise ScenarioError("workload.units_per_region: must be >= 1")
    if w.opening_balance < 1 or w.opening_balance >= 1 << 50:
        raise ScenarioError("workload.opening_balance: must be in 1..2^50")
    if not 0 < w.amount_max_fraction <= 1:
        raise ScenarioError("workload.amount_max_fraction: must be in (0, 1]")
    if w.travel > 1:
        raise ScenarioError("workload.travel: must be in [0, 1]")
    if w.batch_ms <= 0:
        raise ScenarioError("workload.batch_ms: must be > 0")
    if w.max_attempts < 1:
        raise ScenarioError("workload.max_attempts: must be >= 1")
    mix = w.mix
    if sum(getattr(mix, f.name) for f in fields(mix)) <= 0:
        raise ScenarioError("workload.mix: at least one share must be > 0")
    for r in w.spend_all.regions:
        if r not in s.regions:
            raise ScenarioError(f"workload.spend_all.regions: unknown region {r!r}")
    if w.spend_all.accounts > w.customers // 2:
        raise ScenarioError("workload.spend_all.accounts: at most half of the customers")
    if s.node.lease_ms <= s.node.heartbeat_ms:
        raise ScenarioError("node.lease_ms: must be longer than node.heartbeat_ms")
    _check_choice(s.node.quorum_groups, tuple(g.value for g in Grouping), "node.quorum_groups")
    if s.node.snapshot_every < 1:
        raise ScenarioError("node.snapshot_every: must be >= 1")
    if not 0 <= s.node.commit_ms <= 1000:
        raise ScenarioError("node.commit_ms: must be in [0, 1000]")
    if s.duration <= 0:
        raise ScenarioError("duration: must be > 0")


def _validate_replicas(s: Scenario) -> None:
    """Replicas per region (the quorum mode's votes). No region may hold a majority on its
    own: losing it would lose acknowledged writes, which the quorum mode promises never to."""
    if not s.replicas:
        return
    n = len(s.regions)
    if len(s.replicas) != n:
        raise ScenarioError(f"regions.replicas: one count per region ({n}), got {len(s.replicas)}")
    for name, k in zip(s.regions, s.replicas, strict=True):
        if type(k) is not int or not 1 <= k <= 9:
            raise ScenarioError(f"regions.replicas: {name}: a count in 1..9, got {k!r}")
    total = sum(s.replicas)
    for name, k in zip(s.regions, s.replicas, strict=True):
        if n > 1 and 2 * k > total:
            raise ScenarioError(f"regions.replicas: {name} alone holds {k} of {total} replicas, a majority; "
                                "losing that region would lose acknowledged writes")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (`scenarios/NAME.toml`) or by path."""
    p = Path(name_or_path)
    if not p.exists():
        p = SCENARIO_DIR / f"{name_or_path}.toml"
    if not p.exists():
        known = sorted(x.stem for x in SCENARIO_DIR.glob("*.toml"))
        raise ScenarioError(f"scenario {str(name_or_path)!r} not found (known: {known})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    return parse_scenario(data, p.stem)


def list_scenarios() -> list[str]:
    return sorted(x.stem for x in SCENARIO_DIR.glob("*.toml"))

"""Scenarios: regions, latency, mode, workload, chaos, duration and SLOs, from TOML.

A scenario file is validated strictly: an unknown key or a value of the wrong type or
range is a `ScenarioError` naming the key (`workload.mix.cross_unti: unknown key ...`),
because a typo silently ignored would make a drill measure something else.

Two layers, so that a sweep can change any key and still go through the same checks:
the *document* (the TOML tables, `extends` resolved by deep merge: `scenario_document`)
and the validated `Scenario` built from it (`parse_scenario`). Banks describe sites, not
abstract regions, so `[regions]` may group the datacentres (each one runs a region node)
into `cities`, give round-trip times by name pair (`"beijing-shanghai" = 27`), and a
`city-loss` fault takes every datacentre of a city down at once (expanded here into one
`crash` per datacentre: the runtimes only ever see faults they know).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chaos import GROUP_FAULTS, Fault, FaultError, check_after_loss, expand_group, stays_down, validate_fault
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


MAX_VIRTUAL_S = 86_400  # a virtual day: heartbeats and ticks cost events even with no load
MAX_OPS = 20_000_000  # operations planned up front, in memory
MAX_CUSTOMERS = 5_000_000


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


ATTACKS = ("amount_extreme", "account_u128", "reserved_id", "bank_account", "foreign_unit_id", "reuse_same",
           "reuse_different", "retry_elsewhere", "zero_unknown", "chain_straddle", "foreign_pending")
"""What a hostile client tries (`simulator.hostile`)."""


@dataclass(frozen=True)
class Hostile:
    """A share of the clients that attack the bank's rules rather than pay anyone."""

    share: float = 0.0  # hostile operations per normal one, per region
    attacks: tuple[str, ...] = ()  # empty: every kind in ATTACKS


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
    hostile: Hostile = field(default_factory=Hostile)


@dataclass(frozen=True)
class NodeParams:
    heartbeat_ms: float = 100.0
    suspect_ms: float = 600.0
    # the detector adapts to the gaps it hears, up to this silence (<= suspect_ms: fixed)
    suspect_max_ms: float = 5000.0
    lease_ms: float = 1000.0
    drift: float = 0.01
    tick_ms: float = 50.0
    quorum_groups: str = "unit"  # quorum: a Raft log per "unit" or per home "region" (led there), or one "ledger"
    snapshot_every: int = 1000  # quorum: entries a log applies between snapshots (log compaction)
    # Store records between a region's checkpoints (replication.checkpoint); 0, the default here,
    # never: a run is short, and the Ray runtime hands the checkers a store's records only.
    checkpoint_every: int = 0
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
    cities: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (city, its datacentres); empty = a city per region
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

    def city_groups(self) -> dict[str, tuple[str, ...]]:
        """Every city and its datacentres (regions), in region order; a region that no city
        lists is a city of its own (the plain three-region scenarios)."""
        listed = {dc for _, dcs in self.cities for dc in dcs}
        groups = {city: dcs for city, dcs in self.cities}
        for r in self.regions:
            if r not in listed:
                groups[r] = (r,)
        order = {r: i for i, r in enumerate(self.regions)}
        return dict(sorted(groups.items(), key=lambda kv: min(order[d] for d in kv[1])))

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
            **({"cities": {c: list(d) for c, d in self.city_groups().items()}} if self.cities else {}),
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
    """A validated Scenario from a scenario document (the TOML tables, `extends` already
    resolved: see `scenario_document`). Every error names the key it is about."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario: expected a table, got {type(data).__name__}")
    data = dict(data)
    if "extends" in data:
        raise ScenarioError("extends: resolve it first (load_scenario / scenario_document do)")
    wl = data.pop("workload", {})
    regions_tbl = data.pop("regions", {})
    chaos_list = data.pop("chaos", [])
    flat: dict[str, Any] = {}
    cities_raw: Any = None
    rtt_pairs: dict[str, Any] | None = None
    if regions_tbl:
        if not isinstance(regions_tbl, dict):
            raise ScenarioError("regions: expected a table with 'names' (and optionally rtt_ms, jitter_ms, ...)")
        allowed = {"names", "rtt_ms", "jitter_ms", "bandwidth_mbps", "intra_rtt_ms", "replicas", "cities"}
        for key, value in regions_tbl.items():
            if key not in allowed:
                raise ScenarioError(f"regions.{key}: unknown key (expected one of {sorted(allowed)})")
            if key == "cities":
                cities_raw = value
            elif key == "rtt_ms" and isinstance(value, dict):
                rtt_pairs = value
            else:
                flat["regions" if key == "names" else key] = value
    data.setdefault("name", name)
    s = _build(Scenario, {**data, **flat}, "", {"node": NodeParams, "slo": Slo})
    if wl:
        if not isinstance(wl, dict):
            raise ScenarioError("workload: expected a table")
        w = _build(Workload, {k: v for k, v in wl.items() if k not in ("mix", "spend_all", "hostile")}, "workload")
        mix = _build(Mix, wl.get("mix", {}), "workload.mix")
        spend = _build(SpendAll, wl.get("spend_all", {}), "workload.spend_all")
        hostile = _build(Hostile, wl.get("hostile", {}), "workload.hostile")
        s = replace(s, workload=replace(w, mix=mix, spend_all=spend, hostile=hostile))
    if len(set(s.regions)) != len(s.regions):
        raise ScenarioError("regions.names: region names must be unique")
    if cities_raw is not None:
        s = replace(s, cities=_parse_cities(cities_raw, s.regions))
    if rtt_pairs is not None:
        s = replace(s, rtt_ms=rtt_from_pairs(rtt_pairs, s.regions, s.city_groups()))
    _validate(s)
    if not isinstance(chaos_list, list):
        raise ScenarioError("chaos: expected an array of tables ([[chaos]])")
    faults: list[Fault] = []
    where: list[str] = []
    for i, item in enumerate(chaos_list):
        expanded = _faults_of(item, f"chaos[{i}]", s)
        faults += expanded
        where += [f"chaos[{i}]"] * len(expanded)
    lost = [w for f, w in zip(faults, where, strict=True) if stays_down(f)]
    if {f.target[0] for f in faults if stays_down(f)} >= set(s.regions):
        raise ScenarioError("chaos: every region's node is lost for good (returns = false): nobody would be "
                            "left to serve or to judge")
    if lost and s.random_faults:
        raise ScenarioError(f"random_faults: not with a node lost for good ({lost[0]}, returns = false): a random "
                            "fault may land on the lost region after it is gone; list the faults in [[chaos]]")
    try:
        check_after_loss(faults, where)
    except FaultError as e:
        raise ScenarioError(str(e)) from None
    return replace(s, chaos=tuple(sorted(faults, key=lambda f: f.at)))


def _faults_of(item: Any, where: str, s: Scenario) -> list[Fault]:
    """One [[chaos]] table as runtime faults: a group fault (`city-loss`) becomes one fault
    per datacentre of its city, same start and duration, each labelled with the city."""
    if not isinstance(item, dict):
        raise ScenarioError(f"{where}: expected a table")
    item = dict(item)
    try:
        at, kind, target, duration = (item.pop(k) for k in ("at", "fault", "target", "duration"))
    except KeyError as e:
        raise ScenarioError(f"{where}.{e.args[0]}: missing (a fault needs at, fault, target, duration)") from None
    for key, value in (("at", at), ("duration", duration)):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ScenarioError(f"{where}.{key}: expected a number of seconds, got {value!r}")
    if not isinstance(kind, str):
        raise ScenarioError(f"{where}.fault: expected a fault name, got {kind!r}")
    if isinstance(target, str):
        target = [target]
    if not isinstance(target, list) or not all(isinstance(t, str) for t in target):
        raise ScenarioError(f"{where}.target: expected a region name or a list of them, got {target!r}")
    if "city" in item and kind == "crash":
        raise ScenarioError(f"{where}.city: set by fault = \"city-loss\" (one crash per datacentre), not by hand")
    try:
        if kind in GROUP_FAULTS:
            groups = s.city_groups()
            if len(target) != 1 or target[0] not in groups:
                raise ScenarioError(f"{where}.target: {kind!r} takes one city, got {target!r} "
                                    f"(cities: {sorted(groups)})")
            faults = expand_group(Fault(float(at), kind, tuple(target), float(duration), item),
                                  groups[target[0]], where)
        else:
            faults = [Fault(float(at), kind, tuple(target), float(duration), item)]
        for f in faults:
            validate_fault(f, list(s.regions), where)
    except FaultError as e:
        raise ScenarioError(str(e)) from None
    return faults


def _parse_cities(raw: Any, regions: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`[regions] cities = { beijing = ["bj-dc1", "bj-dc2"], ... }`: the datacentres of each city."""
    if not isinstance(raw, dict):
        raise ScenarioError("regions.cities: expected a table: city = [its datacentres, named in regions.names]")
    seen: dict[str, str] = {}
    out = []
    for city, dcs in raw.items():
        where = f"regions.cities.{city}"
        if not isinstance(dcs, list) or not dcs or not all(isinstance(d, str) for d in dcs):
            raise ScenarioError(f"{where}: expected a non-empty list of datacentre names, got {dcs!r}")
        for dc in dcs:
            if dc not in regions:
                raise ScenarioError(f"{where}: unknown datacentre {dc!r} (regions.names: {list(regions)})")
            if dc in seen:
                raise ScenarioError(f"{where}: {dc!r} is already in city {seen[dc]!r}")
            seen[dc] = city
        if city in regions and dcs != [city]:
            raise ScenarioError(f"{where}: a city may share its name only with its one datacentre")
        out.append((city, tuple(dcs)))
    return tuple(out)


def _split_pair(key: str, names: set[str], where: str) -> tuple[str, str]:
    """`"changchun-beijing"` -> ("changchun", "beijing"); names may contain '-' themselves,
    so every split point is tried and exactly one must give two known names."""
    splits = [(key[:i], key[i + 1:]) for i, ch in enumerate(key) if ch == "-"]
    found = [(a, b) for a, b in splits if a in names and b in names]
    if not found:
        raise ScenarioError(f"{where}: not two known names joined by '-' (known: {sorted(names)})")
    if len(found) > 1:
        raise ScenarioError(f"{where}: ambiguous, reads as {' or '.join(f'{a!r} and {b!r}' for a, b in found)}")
    return found[0]


def pair_cells(key: str, regions: tuple[str, ...], cities: dict[str, tuple[str, ...]],
               where: str) -> tuple[int, list[tuple[int, int]]]:
    """What an RTT key like `"beijing-shanghai"` covers: (specificity, the (i, j) region index
    pairs, both directions). Specificity counts the datacentre names in it (a datacentre pair
    beats a datacentre-city pair beats a city pair)."""
    names = set(regions) | set(cities)
    members = {**{c: set(d) for c, d in cities.items()}, **{r: {r} for r in regions}}
    a, b = _split_pair(str(key), names, where)
    if a == b and len(members[a]) == 1:
        raise ScenarioError(f"{where}: a datacentre's round trip to itself is 0 (give pairs of two names)")
    idx = {r: i for i, r in enumerate(regions)}
    covered = [(idx[x], idx[y]) for x in members[a] for y in members[b] if x != y]
    return (a in regions) + (b in regions), sorted(set(covered + [(j, i) for i, j in covered]))


def rtt_from_pairs(pairs: dict[str, Any], regions: tuple[str, ...],
                   cities: dict[str, tuple[str, ...]]) -> tuple[tuple[float, ...], ...]:
    """The RTT matrix from measured round trips by name: `"beijing-shanghai" = 27` (cities:
    every pair of their datacentres), `"beijing-beijing" = 1.2` (between the datacentres of
    one city), `"bj-dc1-sh-dc2" = 29` (one datacentre pair). The most specific entry wins;
    every pair of datacentres must be covered, and two equally specific entries that
    disagree are an error, so a typo cannot silently fall back to a default."""
    best: dict[tuple[int, int], tuple[int, float, str]] = {}  # (i, j) -> (specificity, ms, key)
    for key, value in pairs.items():
        where = f'regions.rtt_ms."{key}"'
        if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
            raise ScenarioError(f"{where}: must be a number of milliseconds >= 0, got {value!r}")
        spec, covered = pair_cells(str(key), regions, cities, where)
        for i, j in covered:
            have = best.get((i, j))
            if have is not None and have[0] == spec and have[1] != float(value):
                raise ScenarioError(f"{where}: disagrees with \"{have[2]}\" ({have[1]:g} ms) on "
                                    f"{regions[i]}-{regions[j]}")
            if have is None or spec >= have[0]:
                best[(i, j)] = (spec, float(value), str(key))
    n = len(regions)
    for i in range(n):
        for j in range(i + 1, n):
            if (i, j) not in best:
                a, b = regions[i], regions[j]
                ca = next(c for c, d in cities.items() if a in d)
                cb = next(c for c, d in cities.items() if b in d)
                hint = f'"{ca}-{cb}" or ' if (ca, cb) != (a, b) else ""
                raise ScenarioError(f'regions.rtt_ms: no round-trip time between {a} and {b} (give {hint}"{a}-{b}")')
    return tuple(tuple(0.0 if i == j else best[(i, j)][1] for j in range(n)) for i in range(n))


def _validate(s: Scenario) -> None:
    n = len(s.regions)
    if not 1 <= n <= 8 and not s.rtt_ms:
        raise ScenarioError(f"regions.names: between 1 and 8 regions with built-in RTTs, got {n}")
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
    if w.rate <= 0:
        raise ScenarioError("workload.rate: must be > 0 operations per second per region")
    if w.batch_ms < 0.1:
        raise ScenarioError("workload.batch_ms: must be >= 0.1")
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
    if not 0 <= w.hostile.share <= 0.5:
        raise ScenarioError("workload.hostile.share: hostile operations per normal one, in [0, 0.5]")
    for a in w.hostile.attacks:
        if a not in ATTACKS:
            raise ScenarioError(f"workload.hostile.attacks: unknown attack {a!r} (expected some of {list(ATTACKS)})")
    for key in ("heartbeat_ms", "tick_ms"):
        if getattr(s.node, key) < 1:
            raise ScenarioError(f"node.{key}: must be >= 1 ms (a timer firing more often only burns the run's time)")
    if s.node.lease_ms <= s.node.heartbeat_ms:
        raise ScenarioError("node.lease_ms: must be longer than node.heartbeat_ms")
    if s.node.suspect_ms <= s.node.heartbeat_ms:
        raise ScenarioError(f"node.suspect_ms: must be longer than node.heartbeat_ms ({s.node.heartbeat_ms:g}): "
                            f"a peer is suspected after it missed heartbeats, got {s.node.suspect_ms:g}")
    if s.node.suspect_max_ms > 600_000:
        raise ScenarioError(f"node.suspect_max_ms: the longest silence the failure detector may learn to wait "
                            f"out, at most 600000 (<= suspect_ms: a fixed timeout), got {s.node.suspect_max_ms:g}")
    if s.node.drift >= 1:
        raise ScenarioError("node.drift: a clock rate error bound, must be < 1")
    _check_choice(s.node.quorum_groups, tuple(g.value for g in Grouping), "node.quorum_groups")
    if s.node.snapshot_every < 1:
        raise ScenarioError("node.snapshot_every: must be >= 1")
    if s.node.checkpoint_every < 0:
        raise ScenarioError("node.checkpoint_every: must be >= 0 (0: never)")
    if not 0 <= s.node.commit_ms <= 1000:
        raise ScenarioError("node.commit_ms: must be in [0, 1000]")
    if s.duration <= 0:
        raise ScenarioError("duration: must be > 0")
    if s.duration + s.quiesce > MAX_VIRTUAL_S:
        raise ScenarioError(f"duration: load plus quiesce at most {MAX_VIRTUAL_S:,} s of virtual time, got "
                            f"{s.duration + s.quiesce:,g}")
    ops = w.rate * s.duration * n
    if ops > MAX_OPS:
        raise ScenarioError(f"workload.rate: rate x duration x regions = {ops:,.0f} operations, more than the "
                            f"{MAX_OPS:,} a run can hold; lower the rate or the duration")
    if w.customers > MAX_CUSTOMERS:
        raise ScenarioError(f"workload.customers: at most {MAX_CUSTOMERS:,}, got {w.customers:,}")


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


MAX_EXTENDS = 16


def _find(name_or_path: str | Path, near: Path | None = None) -> Path:
    """A scenario file: a path (relative to ``near``, the extending file's folder, first),
    with or without .toml, or a name under scenarios/."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if near is not None:
        candidates = [near / text, near / f"{text}.toml", *candidates]
    candidates.append(SCENARIO_DIR / f"{text}.toml")
    for p in candidates:
        if p.is_file():
            return p
    known = sorted(x.stem for x in SCENARIO_DIR.glob("*.toml"))
    raise ScenarioError(f"scenario {text!r} not found (known: {known})")


def _read(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot read: {e}") from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: tables merge key by key, anything else (numbers, strings,
    arrays, the [[chaos]] list) is replaced whole, so `chaos = []` removes the faults."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def scenario_document(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The scenario's TOML document with every `extends` resolved, and its name (file stem).

    `extends = "baseline"` (a name under scenarios/, or a path relative to the file) takes
    that scenario and deep-merges this file over it; `name` and `description` are never
    inherited. A cycle (a extends b extends a) is an error naming the chain."""
    p = _find(name_or_path)
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    while True:
        real = p.resolve()
        if real in chain:
            names = " -> ".join(x.stem for x in [*chain, real])
            raise ScenarioError(f"{chain[0].name}: extends: cycle {names}")
        if len(chain) >= MAX_EXTENDS:
            raise ScenarioError(f"{chain[0].name}: extends: more than {MAX_EXTENDS} levels")
        chain.append(real)
        data = _read(p)
        parent = data.pop("extends", None)
        layers.append(data)
        if parent is None:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise ScenarioError(f"{p.name}: extends: expected a scenario name or path, got {parent!r}")
        p = _find(parent, near=p.parent)
    doc = layers[-1]
    for layer in reversed(layers[:-1]):
        doc = deep_merge({k: v for k, v in doc.items() if k not in ("name", "description")}, layer)
    return doc, chain[0].stem


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (`scenarios/NAME.toml`) or by path."""
    doc, name = scenario_document(name_or_path)
    return parse_scenario(doc, name)


def list_scenarios() -> list[str]:
    return sorted(x.stem for x in SCENARIO_DIR.glob("*.toml"))

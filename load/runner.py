"""`geoledger load`: start the region gateways, run Locust headless, break things, judge.

The verdict does not trust the gateways' own claims: it reads every acknowledged transfer
id the Locust clients logged, then each region's raw books (`/internal/state`) after the
run quiesces, and checks durability (every ack present on every replica), conservation,
no overdraft and convergence itself.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from load.cluster import MAX_WORKERS, Cluster, default_config
from load.cpu import CpuMeter, limits
from replication.accounts import TRANSIT_BASE
from replication.config import DESIGN_LABELS, Mode, Ship, design_label, promises

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PROGRESS_EVERY_S = 1.0
EXPLAIN = {
    "requests": "HTTP requests Locust made, from its final statistics once every user stopped (its "
                "'Aggregated' row: every endpoint, retries included)",
    "requests_per_s": "requests / Locust's run time",
    "results": "answers the clients got per transfer, by result code: one per transfer per answer (a batch "
               "request counts each of its transfers, a retry counts again), so a transfer answered OK and "
               "then EXISTS on a retry counts twice",
    "acked": "distinct transfer ids the clients were told are in the books (OK or EXISTS): what the "
             "durability invariant checks on every replica",
    "acked_per_s": "acked / the run's wall-clock load time",
    "limits": "what bounded the run: Little's law (in-flight requests = requests/s x mean latency, at most the "
              "users), how busy the machine's CPUs were (bound_by: cpu from 90%; locust when its processes each "
              "kept 90% of a core busy), and CPU seconds per 1,000 acknowledged transfers for each region process "
              "and for Locust",
    "gateway_requests": "client requests the gateways counted (their /metrics, every region; None when a "
                        "region restarted during the run and lost its counters)",
}
"""What load.json's figures mean (written beside them, as `explain`)."""
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number (seconds), or Locust's `-t` forms: `30s`, `5m`, `1h`, `1h30m`, `2m30s`."""
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or match is None:
            raise ValueError(f"duration {text!r}: use seconds (30) or Locust's form (30s, 5m, 1h, 1h30m)") from None
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = float(3600 * h + 60 * m + s)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"duration {text!r} must be a positive number of seconds")
    return seconds


@dataclass
class LoadOptions:
    users: int = 20
    spawn_rate: float = 10.0
    duration: float = 20.0
    regions: int = 3
    mode: str = "unit"
    ship: str = "semi-sync"
    quorum_groups: str = "unit"
    hostile: int = 0  # weight of the hostile Locust user class (normal classes weigh 10 together)
    customers: int = 600
    chaos: str | None = None
    shape: str | None = None
    out: Path = Path("load-run")
    base_port: int = 8100
    group_commit: bool = True
    processes: int = 1
    workers: int = 1  # HTTP processes per region (`serve --workers`)
    slo_p99_ms: float | None = None
    slo_min_acked_per_s: float | None = None
    quiesce: float = 30.0
    events: list[dict[str, Any]] = field(default_factory=list)
    progress: Callable[[dict[str, Any]], None] | None = None
    """Called about once a second while Locust runs (`progress_of`: users, requests/s, failures, chaos events)."""

    def validate(self) -> None:
        problems = []
        if self.users < 1:
            problems.append("--users must be >= 1")
        if self.spawn_rate <= 0:
            problems.append("--spawn-rate must be > 0")
        if self.duration <= 0:
            problems.append("--duration must be > 0")
        if self.mode not in {m.value for m in Mode} or self.ship not in {s.value for s in Ship}:
            problems.append(f"--mode must be one of {', '.join(DESIGN_LABELS)}")
        if not 0 <= self.hostile <= 1000:
            problems.append("--hostile must be a weight in 0..1000")
        if self.customers < 10 * self.regions:
            problems.append("--customers must be at least 10 per region")
        if self.shape not in (None, "ramp", "spike", "soak"):
            problems.append("--shape must be ramp, spike or soak")
        if not 1 <= self.workers <= MAX_WORKERS:
            problems.append(f"--workers must be between 1 and {MAX_WORKERS}")
        if problems:
            raise ValueError("; ".join(problems))


def _chaos_schedule(name: str, regions: list[str]) -> list[tuple[float, str, int, float, dict[str, Any]]]:
    """The scenario's fault schedule, mapped onto this run's regions by name (or index)."""
    from simulator.scenario import load_scenario

    scenario = load_scenario(name)
    plan = []
    for fault in scenario.chaos:
        target = fault.target[0]
        index = regions.index(target) if target in regions else list(scenario.regions).index(target)
        if index >= len(regions):
            raise ValueError(f"chaos scenario {name!r} targets region {target!r}, beyond --regions {len(regions)}")
        params = {"extra_ms": fault.param("extra_ms")} if fault.kind == "latency" else dict(fault.params)
        plan.append((float(fault.at), fault.kind, index, float(fault.duration), params))
    return sorted(plan, key=lambda f: f[0])


class ChaosDriver(threading.Thread):
    """Applies a fault schedule to the running gateway processes, on the wall clock."""

    def __init__(self, cluster: Cluster, schedule: list[tuple[float, str, int, float, dict[str, Any]]],
                 events: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.schedule = schedule
        self.events = events
        self.t0 = time.monotonic()
        self.stop = threading.Event()

    def log(self, what: str, region: int, **detail: Any) -> None:
        self.events.append({"t": round(time.monotonic() - self.t0, 3), "event": what,
                            "region": self.cluster.cfg.regions[region], **detail})

    def run(self) -> None:
        actions: list[tuple[float, str, int, dict[str, Any]]] = []
        for at, kind, region, duration, params in self.schedule:
            actions.append((at, f"{kind}:start", region, params))
            actions.append((at + duration, f"{kind}:end", region, params))
        actions.sort(key=lambda a: a[0])
        peers = range(len(self.cluster.cfg.regions))
        for at, action, region, params in actions:
            if self.stop.wait(max(0.0, at - (time.monotonic() - self.t0))):
                return
            kind, phase = action.split(":")
            try:
                if kind in ("crash", "node-loss") and phase == "start":  # a region process is its node here
                    self.cluster.kill(region)
                    self.log("killed (kill -9)", region)
                elif kind in ("crash", "node-loss"):
                    self.cluster.start(region)
                    took = self.cluster.wait_healthy(region)
                    self.log("restarted", region, seconds_to_healthy=round(took, 3))
                elif kind.startswith("partition"):
                    cut = [] if phase == "end" else [p for p in peers if p != region]
                    self.cluster.chaos(region, partition=cut)
                    for p in peers:
                        if p != region:
                            self.cluster.chaos(p, partition=[] if phase == "end" else [region])
                    self.log(f"partition {phase}", region)
                elif kind == "latency":
                    extra = 0.0 if phase == "end" else float(params["extra_ms"])
                    self.cluster.chaos(region, extra_latency_ms={str(p): extra for p in peers if p != region})
                    self.log(f"latency {phase}", region, extra_ms=extra)
                elif kind == "pause":
                    self.cluster.chaos(region, pause=phase == "start")
                    self.log(f"pause {phase}", region)
                else:
                    self.log(f"{kind} {phase} (not applicable to gateway processes, skipped)", region)
            except (httpx.HTTPError, RuntimeError) as e:
                self.log(f"{kind} {phase} failed: {e}", region)


def progress_of(out: Path, events: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """Where the run stands: the last Aggregated row Locust wrote to its history CSV (every
    second), and the chaos events so far."""
    now: dict[str, Any] = {"t": round(time.monotonic() - started, 1), "users": 0, "requests_per_s": 0.0,
                           "requests": 0, "failures": 0, "chaos_events": len(events),
                           "last_chaos": events[-1]["event"] + " " + events[-1]["region"] if events else None}
    path = out / "locust_stats_history.csv"
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return now
    header = next(csv.reader(lines[:1]), [])
    for line in reversed(lines[1:]):
        row = dict(zip(header, next(csv.reader([line])), strict=False))
        if row.get("Name") == "Aggregated":
            now.update(users=int(row.get("User Count") or 0),
                       requests_per_s=round(float(row.get("Requests/s") or 0), 1),
                       requests=int(row.get("Total Request Count") or 0),
                       failures=int(row.get("Total Failure Count") or 0))
            break
    return now


def _locust(opts: LoadOptions, cluster: Cluster, ack_log: Path) -> int:
    cfg = cluster.cfg
    env = dict(os.environ)
    env.update(
        GEOLEDGER_GATEWAYS=",".join(cfg.url(r) for r in range(len(cfg.regions))),
        GEOLEDGER_CREDENTIALS=str(cluster.credentials_path),
        GEOLEDGER_CUSTOMERS=str(opts.customers),
        GEOLEDGER_UNITS=str(len(cfg.regions) * cfg.units_per_region),
        GEOLEDGER_ACK_LOG=str(ack_log),
        GEOLEDGER_CHAIN_LOG=str(opts.out / "chains.log"),
        GEOLEDGER_RESULT_LOG=str(opts.out / "results.log"),
        GEOLEDGER_STATS_FILE=str(opts.out / "locust_final.json"),
        GEOLEDGER_HOSTILE=str(opts.hostile),
        GEOLEDGER_USERS=str(opts.users),
        GEOLEDGER_DURATION=str(opts.duration),
    )
    if opts.shape:
        env["GEOLEDGER_SHAPE"] = opts.shape
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(opts.users), "-r", str(opts.spawn_rate), "-t", f"{max(1, round(opts.duration))}s",
        "--csv", str(opts.out / "locust"), "--csv-full-history", "--html", str(opts.out / "locust.html"),
        "--host", cfg.url(0), "--stop-timeout", "5", "--exit-code-on-error", "0",
    ]
    if opts.processes > 1:
        cmd += ["--processes", str(opts.processes)]
    started = time.monotonic()
    with open(opts.out / "locust.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    return proc.wait(timeout=PROGRESS_EVERY_S)
                except subprocess.TimeoutExpired:
                    if opts.progress is not None:
                        opts.progress(progress_of(opts.out, opts.events, started))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _states(cluster: Cluster) -> list[dict[str, Any]]:
    cfg = cluster.cfg
    return [httpx.get(f"{cfg.url(r)}/internal/state", headers=cluster.headers(), timeout=10).json()
            for r in range(len(cfg.regions))]


def _quiesce(cluster: Cluster, seconds: float) -> tuple[list[dict[str, Any]], float]:
    """Poll until every replica has the same digest (or time runs out)."""
    start = time.monotonic()
    states = _states(cluster)
    while len({s["digest"] for s in states}) > 1 and time.monotonic() - start < seconds:
        time.sleep(0.5)
        states = _states(cluster)
    return states, time.monotonic() - start


def verify(cluster: Cluster, states: list[dict[str, Any]], acked: list[int], mode: str,
           ship: str, chains: list[list[int]] | None = None) -> dict[str, Any]:
    """The invariants object of result.json, computed from raw replica state."""
    cfg = cluster.cfg
    headers = cluster.headers()
    promised = promises(mode, ship)
    inv: dict[str, Any] = {}

    missing: dict[str, list[int]] = {}
    for r in range(len(cfg.regions)):
        gone: list[int] = []
        for i in range(0, len(acked), 5000):
            gone += httpx.post(f"{cfg.url(r)}/internal/missing", json=acked[i : i + 5000], headers=headers,
                               timeout=30).json()["missing"]
        if gone:
            missing[cfg.regions[r]] = gone[:10]
    inv["durability"] = {"ok": not missing, "promised": promised["durability"],
                         "first_violation": {"missing_acked_transfers": missing} if missing else None,
                         "acked_checked": len(acked)}

    unbalanced = []
    supply = cfg.customers * cfg.opening_balance
    for s in states:
        totals = [sum(b[k] for b in s["accounts"].values()) for k in range(4)]
        if totals[0] != totals[2] or totals[1] != totals[3]:
            unbalanced.append({"region": s["region"], "debits_pending": totals[0], "debits_posted": totals[1],
                               "credits_pending": totals[2], "credits_posted": totals[3]})
        # customers and transit accounts hold exactly what genesis issued: nobody minted money
        held = sum(b[3] - b[1] for a, b in s["accounts"].items()
                   if int(a) <= s["customers"] or TRANSIT_BASE <= int(a) < TRANSIT_BASE + (1 << 20))
        if held != supply:
            unbalanced.append({"region": s["region"], "problem": "money supply changed", "held": held,
                               "issued": supply})
    inv["conservation"] = {"ok": not unbalanced, "promised": True,
                           "first_violation": unbalanced[0] if unbalanced else None}

    overdrawn = []
    for s in states:
        for account_id, (dp, dpo, _cp, cpo) in s["accounts"].items():
            if int(account_id) <= s["customers"] and dp + dpo > cpo:
                overdrawn.append({"region": s["region"], "account": int(account_id), "debits": dp + dpo,
                                  "credits_posted": cpo})
                break
    inv["no_overdraft"] = {"ok": not overdrawn, "promised": promised["no_overdraft"],
                           "first_violation": overdrawn[0] if overdrawn else None}

    digests = {s["region"]: s["digest"] for s in states}
    converged = len(set(digests.values())) == 1
    inv["convergence"] = {"ok": converged, "promised": True,
                          "first_violation": None if converged else {"digests": digests}}
    anomalies = {s["region"]: s["status"]["anomalies"] for s in states if s["status"]["anomalies"]}
    inv["exactly_once"] = {"ok": not anomalies, "promised": True,
                           "first_violation": {"anomalies": anomalies} if anomalies else None}
    broken = {s["region"]: s["audit"] for s in states if not s["audit"]["ok"]}
    inv["audit_chain"] = {"ok": not broken, "promised": True, "first_violation": broken or None}
    inv["atomic_chains"] = _atomic_chains(cluster, chains or [])
    return inv


def _atomic_chains(cluster: Cluster, chains: list[list[int]]) -> dict[str, Any]:
    """Every linked chain the clients sent is in every replica's books whole, or not at all."""
    cfg = cluster.cfg
    headers = cluster.headers()
    ids = sorted({t for chain in chains for t in chain})
    partial: list[dict[str, Any]] = []
    for r in range(len(cfg.regions)):
        missing: set[int] = set()
        for i in range(0, len(ids), 5000):
            missing.update(httpx.post(f"{cfg.url(r)}/internal/missing", json=ids[i:i + 5000], headers=headers,
                                      timeout=30).json()["missing"])
        partial += [{"region": cfg.regions[r], "chain": chain} for chain in chains
                    if 0 < sum(t in missing for t in chain) < len(chain)]
    return {"ok": not partial, "promised": True, "first_violation": partial[0] if partial else None,
            "chains_checked": len(chains)}


def _locust_summary(out: Path) -> dict[str, Any]:
    """Locust's final statistics (`locust_final.json`, written by the locustfile once every
    user stopped); its --csv file only if that is missing (an older locustfile)."""
    final = out / "locust_final.json"
    if final.exists():
        stats = json.loads(final.read_text())
        posts = [e for e in stats["by_name"] if e["method"] == "POST" and e["requests"]]
        return {"requests": stats["requests"], "failures": stats["failures"],
                "requests_per_s": round(stats["requests_per_s"], 1), "avg_ms": stats.get("avg_ms"),
                "p50_ms": max((e["p50_ms"] for e in posts), default=None),
                "p99_ms": max((e["p99_ms"] for e in posts), default=None),
                "requests_by_name": {e["name"]: e["requests"] for e in stats["by_name"]}}
    return csv_summary(out)


def csv_summary(out: Path) -> dict[str, Any]:
    stats = out / "locust_stats.csv"
    if not stats.exists():
        return {"requests": 0, "failures": 0, "p50_ms": None, "p99_ms": None, "requests_per_s": 0.0, "avg_ms": None}
    with open(stats) as f:
        rows = list(csv.DictReader(f))
    agg = next((r for r in rows if r["Name"] == "Aggregated"), None)
    transfers = [r for r in rows if r["Type"] == "POST"]
    if agg is None:
        return {"requests": 0, "failures": 0, "p50_ms": None, "p99_ms": None, "requests_per_s": 0.0, "avg_ms": None}
    p99 = max((float(r["99%"]) for r in transfers if r["99%"] not in ("", "N/A")), default=None)
    p50 = max((float(r["50%"]) for r in transfers if r["50%"] not in ("", "N/A")), default=None)
    by_name = {r["Name"]: int(r["Request Count"]) for r in rows if r["Name"] != "Aggregated"}
    return {"requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
            "p50_ms": p50, "p99_ms": p99, "requests_per_s": round(float(agg["Requests/s"]), 1),
            "avg_ms": float(agg["Average Response Time"]), "requests_by_name": by_name}


def _results(path: Path) -> dict[str, int]:
    """The transfer results every Locust process counted (one JSON line each, as it quit)."""
    total: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                total.update(json.loads(line)["results"])
    return dict(total.most_common())


NOT_CLIENT_ROUTES = ("/internal/", "/health", "/metrics")
"""Routes the run itself calls (probes, scrapes, the verdict's reads), not Locust's users."""


def gateway_requests(cluster: Cluster) -> int | None:
    """Client requests (not /health, /metrics or /internal) the gateways counted, summed over
    regions; None if a region restarted (its counters started again)."""
    from prometheus_client.parser import text_string_to_metric_families

    from load.auth import Role

    total = 0
    for r in range(len(cluster.cfg.regions)):
        try:
            text = httpx.get(f"{cluster.cfg.url(r)}/metrics", headers=cluster.headers(Role.AUDITOR), timeout=10).text
        except httpx.HTTPError:
            return None
        total += sum(int(sample.value) for family in text_string_to_metric_families(text)
                     if family.name == "geoledger_requests" for sample in family.samples
                     if sample.name == "geoledger_requests_total"
                     and not sample.labels["route"].startswith(NOT_CLIENT_ROUTES)
                     and sample.labels["route"] != "unmatched")
    return total


def files_written(out: Path) -> list[str]:
    """Every file a run wrote under `out` (the region stores' directory as one entry)."""
    return sorted(str(p.relative_to(out)) + ("/" if p.is_dir() else "") for p in out.iterdir())


LOCUST_WINDOW_S = 10.0
"""Locust's history rows give percentiles over the last 10 s of responses."""


def steady_p99_ms(out: Path, warm_up_s: float) -> float | None:
    """The worst transfer endpoint's p99 once the load is steady: Locust's windowed p99 per
    endpoint, from every history row that starts `warm_up_s` plus one window into the run
    (so no response from the ramp-up is in it). None if the run is too short for that."""
    path = out / "locust_stats_history.csv"
    if not path.exists():
        return None
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["Type"] == "POST" and r["99%"] not in ("", "N/A")]
    if not rows:
        return None
    start = min(int(r["Timestamp"]) for r in rows)
    steady = [float(r["99%"]) for r in rows if int(r["Timestamp"]) - start >= warm_up_s + LOCUST_WINDOW_S]
    return max(steady) if steady else None


def run_load(opts: LoadOptions) -> dict[str, Any]:
    opts.validate()
    opts.out.mkdir(parents=True, exist_ok=True)
    cfg = default_config(opts.regions, mode=opts.mode, ship=opts.ship, quorum_groups=opts.quorum_groups,
                         customers=opts.customers,
                         base_port=opts.base_port, group_commit=opts.group_commit, workers=opts.workers,
                         data_dir=str(opts.out / "data"))
    schedule = _chaos_schedule(opts.chaos, cfg.regions) if opts.chaos else []
    cluster = Cluster(cfg, opts.out)
    ack_log = opts.out / "acked.log"
    for stale in (ack_log, opts.out / "chains.log", opts.out / "results.log", opts.out / "locust_final.json"):
        stale.unlink(missing_ok=True)
    try:
        cluster.start_all()
        time.sleep(1.5)  # first heartbeat rounds: homes take their leases
        driver = ChaosDriver(cluster, schedule, opts.events)
        driver.start()
        started = time.monotonic()
        meter = CpuMeter({cluster.region_name(r): p.pid for r, p in cluster.procs.items()})
        meter.start()
        _locust(opts, cluster, ack_log)
        elapsed = time.monotonic() - started
        cpu = meter.read({cluster.region_name(r): p.pid for r, p in cluster.procs.items()})
        driver.stop.set()
        driver.join(timeout=5)
        for r, proc in list(cluster.procs.items()):  # a region still down at the end comes back to heal
            if proc.poll() is not None and isinstance(r, int):
                cluster.start(r)
                cluster.wait_healthy(r)
        states, quiesced = _quiesce(cluster, opts.quiesce)
        acked = sorted({int(line.split()[0]) for line in ack_log.read_text().splitlines()}) if ack_log.exists() else []
        chain_log = opts.out / "chains.log"
        chains = ([[int(t) for t in line.split()] for line in chain_log.read_text().splitlines() if line.strip()]
                  if chain_log.exists() else [])
        invariants = verify(cluster, states, acked, opts.mode, opts.ship, chains)
        restarted = bool(opts.events) or bool(cluster.supervisor and cluster.supervisor.events)
        counted = None if restarted else gateway_requests(cluster)
    finally:
        cluster.stop_all()
    summary = _locust_summary(opts.out)
    violated = [k for k, v in invariants.items() if v["promised"] and not v["ok"]]
    slo_missed = []
    if opts.slo_p99_ms is not None and (summary["p99_ms"] is None or summary["p99_ms"] > opts.slo_p99_ms):
        slo_missed.append(f"p99 {summary['p99_ms']} ms > {opts.slo_p99_ms} ms")
    acked_per_s = len(acked) / elapsed if elapsed else 0.0
    if opts.slo_min_acked_per_s is not None and acked_per_s < opts.slo_min_acked_per_s:
        slo_missed.append(f"acked/s {acked_per_s:.0f} < {opts.slo_min_acked_per_s:.0f}")
    result = {
        "mode": design_label(opts.mode, opts.ship, opts.quorum_groups),
        "regions": cfg.regions,
        "users": opts.users,
        "duration_s": round(elapsed, 1),
        "group_commit": opts.group_commit,
        "acked": len(acked),
        "acked_per_s": round(acked_per_s, 1),
        "p50_ms": _round(summary["p50_ms"]),
        "p99_ms": _round(summary["p99_ms"]),
        "p99_steady_ms": _round(steady_p99_ms(opts.out, opts.users / opts.spawn_rate)),
        "requests": summary["requests"],
        "failures": summary["failures"],
        "requests_per_s": summary["requests_per_s"],
        "gateway_requests": counted,
        "limits": limits(opts.users, summary.get("avg_ms"), summary["requests_per_s"], cpu, len(acked),
                         opts.processes),
        "results": _results(opts.out / "results.log"),
        "requests_by_name": summary.get("requests_by_name", {}),
        "hostile_weight": opts.hostile,
        "quiesce_s": round(quiesced, 1),
        "chaos": opts.chaos,
        "chaos_events": opts.events,
        "supervisor_restarts": cluster.supervisor.events if cluster.supervisor is not None else [],
        "invariants": invariants,
        "slo_missed": slo_missed,
        "verdict": "ok" if not violated and not slo_missed else violated + slo_missed,
        "explain": EXPLAIN,
    }
    (opts.out / "load.json").write_text("{}")  # so that the list of files names it
    result["files"] = files_written(opts.out)
    (opts.out / "load.json").write_text(json.dumps(result, indent=2))
    return result


def _round(ms: float | None) -> float | None:
    """Latencies to 0.1 ms: Locust's own resolution is 1 ms above 100 ms, finer below."""
    return None if ms is None else round(ms, 1)

"""Run a scenario and produce the output contract: result.json, history.jsonl, final_state.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ledger.types import AccountFlags, TransferFlags
from replication.accounts import CUSTOMER_FLAGS
from replication.ids import ids_of
from replication.outcomes import UNAVAILABLE, outcome_name
from replication.state import BALANCE_FIELDS, canonical_digest
from simulator.checkers import check_all
from simulator.clients import OUT_OK, OUT_TIMEOUT, OUTCOMES
from simulator.hostile import attack_name
from simulator.metrics import Histogram
from simulator.result import RunResult
from simulator.runtime import run_simulation
from simulator.scenario import Scenario
from simulator.workload import KIND_NAMES, KIND_READ


def availability(answered: np.ndarray, writes: np.ndarray, during: np.ndarray | None = None) -> float | None:
    """THE availability figure, the one every report, comparison, sweep and SLO uses: the
    share of writes (transfers, not reads) that got an answer, of those issued in
    ``during`` (default: the whole run). An answer is any result but a client timeout or
    UNAVAILABLE (retries exhausted): a declined payment (EXCEEDS_CREDITS) was served.
    Restricted to fault windows (or outside them) it is the same figure over fewer writes,
    which is why reports name those "during faults" and never just "availability"."""
    sel = writes if during is None else writes & during
    d = int(sel.sum())
    return round(int((answered & sel).sum()) / d, 5) if d else None


def answered_mask(outcome: np.ndarray, result: np.ndarray, timeout_outcome: int = OUT_TIMEOUT) -> np.ndarray:
    """Which operations got an answer, in `availability`'s sense."""
    return (outcome != timeout_outcome) & (result != UNAVAILABLE)

def run_scenario(scenario: Scenario, seed: int, *, check_invariants: bool = False) -> tuple[RunResult, dict[str, Any]]:
    """Run on the deterministic runtime: the finished run and its `result.json` contents.
    `check_invariants`: every node's invariants after every step (slower; raises
    `InvariantViolation` at the first broken one)."""
    scenario = scenario.with_mode(None)
    sim = run_simulation(scenario, seed, check_invariants=check_invariants)
    return sim, result_of(sim, "deterministic")


def result_of(sim: RunResult, runtime: str) -> dict[str, Any]:
    """The `result.json` contents of a finished run, the same for every runtime: verdicts
    from the checkers, metrics, the history summary, and how to replay it."""
    scenario = sim.s
    invariants = check_all(sim)
    finals = [canonical_digest(n.engine) if n is not None else None for n in sim.nodes]
    h = hashlib.sha256(sim.digest().encode())
    for d in finals:
        h.update(str(d).encode())
    replay = f"geoledger simulate {scenario.name} --seed {sim.seed} --mode {scenario.mode_label}"
    result: dict[str, Any] = {
        "seed": sim.seed,
        "mode": scenario.mode_label,
        "runtime": runtime,
        "scenario": scenario.to_json(),
        "digest": h.hexdigest(),
        "invariants": invariants,
        "metrics": metrics(sim, invariants),
        "history_summary": history_summary(sim),
        "final_digests": dict(zip(sim.regions, finals, strict=True)),
        "replay": replay if runtime == "deterministic" else f"{replay} --runtime {runtime}",
    }
    result["violated"] = [k for k, v in invariants.items() if v["promised"] and not v["ok"]]
    return result


def metrics(sim: RunResult, invariants: dict[str, Any]) -> dict[str, Any]:
    plan, o = sim.plan, sim.ops
    done = o.status == 1
    lat_us = (o.complete_t - plan.t) * 1e6
    transfers = plan.kind != KIND_READ
    acked = (o.outcome == OUT_OK) & transfers
    per_region: dict[str, Any] = {}
    secs = int(np.ceil(sim.s.duration + sim.s.quiesce))
    for r, name in enumerate(sim.regions):
        mine = plan.region == r
        tput = np.bincount(np.floor(o.complete_t[acked & mine]).astype(np.int64), minlength=secs)[:secs]
        lat: dict[str, Any] = {}
        for k, kname in enumerate(KIND_NAMES):
            sel = mine & done & (plan.kind == k) & (o.outcome != OUT_TIMEOUT)
            if sel.any():
                hist = Histogram()
                hist.record(lat_us[sel])
                lat[kname] = hist.summary_ms()
        writes = Histogram()
        writes.record(lat_us[mine & done & transfers & (o.outcome != OUT_TIMEOUT)])
        per_region[name] = {
            "acked_transfers": int((acked & mine).sum()),
            "acked_per_s": tput.tolist(),
            "latency_ms": lat,
            "write_latency_ms": writes.summary_ms(),
        }
    all_hist = Histogram()
    all_hist.record(lat_us[done & transfers & (o.outcome != OUT_TIMEOUT)])
    lag = Histogram()
    lag.record(np.asarray(sim.log.lag_ns, float) / 1000)
    windows = [(a, b) for a, b, f in sim.fault_windows]
    inside = np.zeros(plan.n_ops, bool)
    for a, b in windows:
        inside |= (plan.t >= a) & (plan.t < b)
    available = answered_mask(o.outcome, o.result)
    wall = sim.log.wall_s
    virtual = sim.end / 1e9
    return {
        "ops": int(plan.n_ops),
        "acked_transfers": int(acked.sum()),
        "acked_per_s": round(float(acked.sum()) / sim.s.duration, 1),
        "latency_ms": all_hist.summary_ms(),
        "regions": per_region,
        "replication_lag_ms": lag.summary_ms(),
        "availability": {
            "overall": availability(available, transfers),
            "inside_faults": availability(available, transfers, inside),
            "outside_faults": availability(available, transfers, ~inside),
        },
        "overdraft": overdraft(sim),
        "rto": rto(sim),
        "rpo": invariants["durability"]["rpo"],
        "divergence_reports": sum(1 for *_, k, _ in sim.log.reports if k == "divergence"),
        "promotions": [{"t": round(t, 3), "region": sim.regions[r], **{k: v for k, v in d.items() if k != "kept"}}
                       for t, r, k, d in sim.log.reports if k == "promotion"],
        "network": {"messages": sim.net.sent, "dropped": sim.net.dropped, "bytes": sim.net.bytes},
        "series": series(sim, secs),
        "sim": {"events": sim.log.events, "virtual_s": virtual, "wall_s": round(wall, 3), "settle_s": sim.log.settle_s,
                "virtual_to_wall": round(virtual / wall, 2) if wall else None,
                "transfers_per_wall_s": round(float(transfers.sum()) / wall, 1) if wall else None},
    }


def series(sim: RunResult, secs: int) -> dict[str, Any]:
    """Per-second series for the report: lag per receiving region, money in transit, timeline."""
    lag: dict[str, Any] = {"t": list(range(secs))}
    worst = np.full((sim.R, secs), -1.0)
    for t, r, ns in sim.log.lag_at:
        k = min(int(t // 1_000_000_000), secs - 1)
        worst[r, k] = max(worst[r, k], ns / 1e6)
    for r, name in enumerate(sim.regions):
        lag[name] = [round(float(v), 3) if v >= 0 else None for v in worst[r]]
    transit: dict[str, Any] = {"t": [t for t, _ in sim.log.transit], "value": []}
    for r, name in enumerate(sim.regions):
        transit[name] = [views[r] for _, views in sim.log.transit]
    for _, views in sim.log.transit:
        seen = [v for v in views if v is not None]
        transit["value"].append(seen[0] if seen else None)
    timeline = sorted(sim.log.timeline, key=lambda e: (e["t"], e["event"]))
    return {"replication_lag_ms": lag, "transit_balance": transit, "timeline": timeline}


def overdraft(sim: RunResult) -> dict[str, Any]:
    """How much the books overdrew, whether or not the mode promised it would not: customer
    accounts (DEBITS_MUST_NOT_EXCEED_CREDITS) below zero at the end and the total below
    zero, on the replica that shows the most (after quiesce they agree)."""
    n = sim.plan.amap.n_customers
    worst: dict[str, Any] = {"accounts": 0, "amount": 0, "region": None}
    for r, node in enumerate(sim.nodes):
        if node is None:
            continue
        acc = node.engine.accounts
        ids = acc["id_lo"].astype(np.int64)
        avail = (acc["credits_posted_lo"].astype(object) - acc["debits_posted_lo"].astype(object)
                 - acc["debits_pending_lo"].astype(object))
        bad = ((ids >= 1) & (ids <= n)) & np.array([a < 0 for a in avail], bool)
        amount = -int(sum(avail[bad])) if bad.any() else 0
        if amount > worst["amount"]:
            worst = {"accounts": int(bad.sum()), "amount": amount, "region": sim.regions[r]}
    return worst


def rto(sim: RunResult) -> list[dict[str, Any]]:
    """Per outage-type fault: time from the fault to the first acknowledged write on the
    accounts it affected (units homed, at the start, in the faulted regions)."""
    plan, o = sim.plan, sim.ops
    out = []
    amap = plan.amap
    dunit = amap.customer_unit[np.clip(plan.debit, 0, amap.n_customers)]
    for start, _end, f in sim.fault_windows:
        if f.kind not in ("crash", "node-loss", "partition", "pause", "partition-bridge", "partition-partial"):
            continue
        targets = {sim.regions.index(x) for x in f.target}
        affected = np.isin(dunit % sim.R, list(targets))
        sel = affected & (plan.t >= start) & (o.outcome == OUT_OK) & (plan.kind != KIND_READ)
        first = float(o.complete_t[sel].min()) if sel.any() else None
        out.append({"fault": f.kind, "target": list(f.target), "at": start,
                    "rto_s": round(first - start, 4) if first is not None else None})
    return out


def history_summary(sim: RunResult) -> dict[str, Any]:
    plan, o = sim.plan, sim.ops
    by_outcome = {OUTCOMES[k]: int((o.outcome == k).sum()) for k in range(1, 4)}
    by_kind = {KIND_NAMES[k]: int((plan.kind == k).sum()) for k in range(len(KIND_NAMES))}
    codes, counts = np.unique(o.result[plan.kind != KIND_READ], return_counts=True)
    by_result = {_code_name(int(c)): int(n) for c, n in zip(codes, counts, strict=True)}
    return {"operations": int(plan.n_ops), "by_outcome": by_outcome, "by_kind": by_kind, "by_result": by_result,
            "retried": int((o.attempts > 1).sum())}


def _code_name(code: int) -> str:
    return outcome_name(code)


def _flag_names(flags: int, enum: Any) -> list[str]:
    return [m.name for m in enum if m.value and flags & m.value]


def write_outputs(sim: RunResult, result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=_json_default))
    _write_history(sim, out / "history.jsonl")
    _write_final_state(sim, out / "final_state.json")


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, set | tuple):
        return list(x)
    raise TypeError(type(x).__name__)


def _write_history(sim: RunResult, path: Path) -> None:
    """One line per operation, what the client sent as it sent it (u128 values exact, a
    hostile attempt with its attack named) and what it got."""
    plan, o = sim.plan, sim.ops
    names: dict[int, str] = {}
    rows = plan.rows
    cols = [plan.kind.tolist(), plan.debit.tolist(), ids_of(rows), ids_of(rows, "debit_account_id"),
            ids_of(rows, "credit_account_id"), ids_of(rows, "amount"), ids_of(rows, "pending_id"),
            rows["flags"].tolist(), plan.attack.tolist(), plan.region.tolist(), plan.t.tolist(),
            o.complete_t.tolist(), o.outcome.tolist(), o.result.tolist()]
    dumps = json.dumps
    with path.open("w") as fh:
        for i, (k, read, tid, d, c, a, p, f, att, g, t, ct, oc, res) in enumerate(zip(*cols, strict=True)):
            if res not in names:
                names[res] = _code_name(res)
            is_read = k == KIND_READ
            line = {
                "op": "read" if is_read else "transfer", "n": i + 1, "kind": KIND_NAMES[k], "id": 0 if is_read else tid,
                "debit": read if is_read else d, "credit": c, "amount": a, "ledger": 0 if is_read else 156,
                "flags": _flag_names(f, TransferFlags), "pending_id": p, "region": sim.regions[g],
                "invoke_t": round(t, 9), "complete_t": None if ct != ct else round(ct, 9), "outcome": OUTCOMES[oc],
                "result": "OK" if is_read and oc == OUT_OK else names[res],
            }
            if att:
                line["attack"] = attack_name(att)
            fh.write(dumps(line))
            fh.write("\n")


def _write_final_state(sim: RunResult, path: Path) -> None:
    from replication.state import transfer_ids

    n_cust = sim.plan.amap.n_customers
    regions = {}
    for r, node in enumerate(sim.nodes):
        if node is None:
            continue
        acc = node.engine.accounts
        ids = acc["id_lo"].tolist()
        cols = {f: acc[f + "_lo"].tolist() for f in BALANCE_FIELDS}
        accounts = {}
        for i, a in enumerate(ids):
            logical = CUSTOMER_FLAGS if 1 <= a <= n_cust else 0
            accounts[str(a)] = {**{f: cols[f][i] for f in BALANCE_FIELDS},
                                "flags": _flag_names(logical, AccountFlags)}
        regions[sim.regions[r]] = {"accounts": accounts, "applied_transfer_ids": transfer_ids(node.engine)}
    path.write_text(json.dumps({"regions": regions, "transfer_flags_known": [m.name for m in TransferFlags]}))

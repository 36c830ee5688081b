"""Invariant checkers: each returns its verdict and the first counter-example.

They read the final replicas (after heal and quiesce), the durable stores and the
client history — never the nodes' own opinion of themselves. A verdict is
`{"ok", "promised", "first_violation"}`; a counter-example names the seed, a virtual time
and the transfer ids, so `geoledger simulate --seed N` replays it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ledger.totals import ledger_totals
from replication.accounts import CREDIT_BIT_HI, TRANSIT_BASE
from replication.config import promises
from replication.node import RegionNode
from replication.state import canonical_digest
from simulator.clients import OUT_OK
from simulator.result import RunResult
from simulator.workload import KIND_READ


def _verdict(name: str, promised: dict[str, bool], violation: dict[str, Any] | None, seed: int,
             **extra: Any) -> dict[str, Any]:
    if violation is not None:
        violation = {"seed": seed, **violation}
    return {"ok": violation is None, "promised": promised[name], "first_violation": violation, **extra}


def _engines(sim: RunResult) -> list[Any]:
    return [n.engine if n is not None else None for n in sim.nodes]


def _ids(tr: np.ndarray) -> np.ndarray:
    """Client-space transfer ids (credit legs excluded)."""
    return tr["id_lo"][(tr["id_hi"] & CREDIT_BIT_HI) == 0]


def check_all(sim: RunResult) -> dict[str, dict[str, Any]]:
    promised = promises(sim.s.mode, sim.s.ship)
    seed = sim.seed
    t_end = sim.end / 1e9
    return {
        "conservation": _verdict("conservation", promised, conservation(sim, t_end), seed),
        "no_overdraft": _verdict("no_overdraft", promised, no_overdraft(sim), seed),
        "exactly_once": _verdict("exactly_once", promised, exactly_once(sim, t_end), seed),
        "convergence": _verdict("convergence", promised, convergence(sim, t_end), seed),
        "durability": _durability(sim, promised),
        "audit_chain": _verdict("audit_chain", promised, audit_chain(sim, t_end), seed),
    }


def conservation(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """Per ledger Σ debits = Σ credits on every replica; money in transit accounted for:
    every debit leg has its credit leg and vice versa, so the transit accounts net to 0."""
    n_units = sim.plan.amap.n_units
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            return {"region": sim.regions[r], "t": t_end, "problem": "region down at the end"}
        for ledger_id, t in ledger_totals(eng.accounts).items():
            if t["debits_posted"] != t["credits_posted"] or t["debits_pending"] != t["credits_pending"]:
                return {"region": sim.regions[r], "t": t_end, "ledger": ledger_id, "totals": t,
                        "problem": "debits != credits"}
        tr = eng.transfers
        credit = tr["credit_account_id_lo"]
        is_leg = (tr["id_hi"] & CREDIT_BIT_HI) != 0
        debit_legs = tr["id_lo"][(credit >= TRANSIT_BASE) & (credit < TRANSIT_BASE + n_units) & ~is_leg]
        credit_legs = tr["id_lo"][is_leg]
        orphan_debit = np.setdiff1d(debit_legs, credit_legs)
        orphan_credit = np.setdiff1d(credit_legs, debit_legs)
        if len(orphan_debit) or len(orphan_credit):
            acc = eng.accounts
            tran = (acc["id_lo"] >= TRANSIT_BASE) & (acc["id_lo"] < TRANSIT_BASE + n_units)
            held = int(acc["credits_posted_lo"][tran].astype(object).sum() - acc["debits_posted_lo"][tran]
                       .astype(object).sum())
            return {"region": sim.regions[r], "t": t_end, "problem": "money stuck in or created from transit",
                    "in_transit": held, "debit_legs_without_credit": orphan_debit[:10].tolist(),
                    "credit_legs_without_debit": orphan_credit[:10].tolist()}
    return None


def no_overdraft(sim: RunResult) -> dict[str, Any] | None:
    """Customer accounts (flag DEBITS_MUST_NOT_EXCEED_CREDITS) never spend more than they got."""
    n = sim.plan.amap.n_customers
    worst: dict[str, Any] | None = None
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            continue
        acc = eng.accounts
        ids = acc["id_lo"].astype(np.int64)
        cust = (ids >= 1) & (ids <= n)
        avail = (acc["credits_posted_lo"].astype(np.int64) - acc["debits_posted_lo"].astype(np.int64)
                 - acc["debits_pending_lo"].astype(np.int64))
        bad = np.nonzero(cust & (avail < 0))[0]
        for slot in bad[:20].tolist():
            a = int(ids[slot])
            found = _first_negative(sim, eng, a)
            if found is not None and (worst is None or found["t"] < worst["t"]):
                found.update(region=sim.regions[r], account=a, balance=int(avail[slot]),
                             overdrawn_accounts=int(len(bad)))
                worst = found
        if worst is not None:
            return worst
    return worst


def _first_negative(sim: RunResult, eng: Any, a: int) -> dict[str, Any] | None:
    tr = eng.transfers
    touches = (tr["debit_account_id_lo"] == a) | (tr["credit_account_id_lo"] == a)
    sel = tr[touches]
    sel = sel[np.argsort(sel["timestamp"], kind="stable")]
    bal = 0
    for row in sel:
        amt = int(row["amount_lo"])
        flags = int(row["flags"])
        if int(row["credit_account_id_lo"]) == a and not flags & 2:
            bal += amt
        elif int(row["debit_account_id_lo"]) == a and not flags & 12:
            bal -= amt
        if bal < 0:
            tid = int(row["id_lo"])
            ops = sim.ops
            debits = np.nonzero((sim.plan.debit == a) & (ops.outcome == OUT_OK)
                                & (sim.plan.kind != KIND_READ))[0]
            t = float(ops.complete_t[tid - 1]) if 0 < tid <= len(ops.complete_t) else 0.0
            return {"t": t, "transfer_ids": [tid],
                    "acknowledged_debits": [{"id": int(i + 1), "region": sim.regions[int(sim.plan.region[i])],
                                             "amount": int(sim.plan.amount[i]),
                                             "acked_at": round(float(ops.complete_t[i]), 6)}
                                            for i in debits[:6].tolist()]}
    return None


def exactly_once(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """No transfer id applied twice: per replica, across origins, across retries."""
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            continue
        tr = eng.transfers
        key = tr["id_lo"].astype(np.uint64) ^ (tr["id_hi"] * np.uint64(0x9E3779B97F4A7C15))
        uniq, counts = np.unique(key, return_counts=True)
        if (counts > 1).any():
            return {"region": sim.regions[r], "t": t_end, "problem": "duplicate transfer id in a replica"}
        node = sim.nodes[r]
        for origin, seq, _row, code in node.anomalies if node else []:
            if 34 <= code <= 44:
                return {"region": sim.regions[r], "t": t_end, "origin": sim.regions[origin], "seq": seq,
                        "problem": f"a shipped row already existed (result {code}): applied by two origins"}
    twice = [i for i in np.nonzero(sim.ops.ok_count > 1)[0].tolist() if (i + 1) not in sim.log.diverged]
    if twice:
        i = twice[0]
        return {"t": float(sim.ops.complete_t[i]), "transfer_ids": [i + 1],
                "problem": "the same transfer id was acknowledged OK twice"}
    return None


def convergence(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """After heal and quiesce, every replica holds the same books (canonical digest)."""
    engines = _engines(sim)
    digests = [canonical_digest(e) if e is not None else None for e in engines]
    for r, node in enumerate(sim.nodes):
        if node is not None and node.anomalies:
            origin, seq, row, code = node.anomalies[0]
            return {"region": sim.regions[r], "t": t_end, "origin": sim.regions[origin], "seq": seq,
                    "problem": f"replica rejected a shipped row (result {code})"}
    for r in range(1, len(digests)):
        if digests[r] != digests[0]:
            a, b = engines[0], engines[r]
            if a is None or b is None:
                return {"t": t_end, "problem": "a region is down at the end"}
            ia, ib = _ids(a.transfers), _ids(b.transfers)
            return {"t": t_end, "regions": [sim.regions[0], sim.regions[r]],
                    "only_in_first": np.setdiff1d(ia, ib)[:10].tolist(),
                    "only_in_second": np.setdiff1d(ib, ia)[:10].tolist(),
                    "heads": [sim.nodes[0].heads, sim.nodes[r].heads]}  # type: ignore[union-attr]
    return None


def _durability(sim: RunResult, promised: dict[str, bool]) -> dict[str, Any]:
    """Every acknowledged transfer is in the final books; what is missing is RPO loss."""
    o = sim.ops
    acked = np.nonzero((o.outcome == OUT_OK) & (sim.plan.kind != KIND_READ))[0]
    acked_ids = (acked + 1).astype(np.uint64)
    lost = np.zeros(0, np.int64)
    for eng in _engines(sim):
        if eng is None:
            continue
        missing = acked[~np.isin(acked_ids, _ids(eng.transfers))]
        lost = np.union1d(lost, missing)
    rpo: dict[str, float] = {"lost_acknowledged": int(len(lost))}
    if len(lost):
        times = o.complete_t[lost]
        rpo.update(window_s=round(float(times.max() - times.min()), 6), first_acked_at=round(float(times.min()), 6),
                   last_acked_at=round(float(times.max()), 6))
    violation = None
    if len(lost):
        i = int(lost[0])
        violation = {"seed": sim.seed, "t": float(o.complete_t[i]), "transfer_ids": (lost[:10] + 1).tolist(),
                     "lost": int(len(lost))}
    return {"ok": violation is None, "promised": promised["durability"], "first_violation": violation, "rpo": rpo}


def audit_chain(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """Each region's store verifies as a hash chain, and replaying it gives the live books."""
    for r, store in enumerate(sim.stores):
        ok, bad = store.verify_chain()
        if not ok:
            return {"region": sim.regions[r], "t": t_end, "record": bad, "problem": "hash chain or checksum"}
        node = sim.nodes[r]
        if node is None:
            continue
        replayed, _ = RegionNode.recover(sim.cfgs[r], store)
        if canonical_digest(replayed.engine) != canonical_digest(node.engine):
            return {"region": sim.regions[r], "t": t_end, "problem": "live state differs from the replayed store"}
    return None

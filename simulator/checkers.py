"""Invariant checkers: each returns its verdict and the first counter-example.

They read the final replicas (after heal and quiesce), the durable stores and the
client history — never the nodes' own opinion of themselves. A region the schedule takes
away for good (a node loss with `returns = false`) is down at the end by design: the
checkers judge the survivors (they must converge and hold every acknowledged transfer)
and still verify its store's chain where the run kept it; any other region down at the
end is a violation. A verdict is
`{"ok", "promised", "first_violation"}`; a counter-example names the seed, a virtual time
and the transfer ids, so `geoledger simulate --seed N` replays it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cext.layout import join
from ledger.totals import ledger_totals
from ledger.types import TransferFlags
from replication.accounts import TRANSIT_BASE
from replication.config import promises
from replication.ids import CREDIT_BIT, CREDIT_BIT_HI, ids_of
from replication.node import RegionNode
from replication.state import canonical_digest
from simulator.clients import OUT_OK
from simulator.faults import lost_for_good
from simulator.result import RunResult
from simulator.workload import KIND_READ

_PENDING = int(TransferFlags.PENDING)
_POST_OR_VOID = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)
_LINKED = int(TransferFlags.LINKED)


def _verdict(name: str, promised: dict[str, bool], violation: dict[str, Any] | None, seed: int,
             **extra: Any) -> dict[str, Any]:
    if violation is not None:
        violation = {"seed": seed, **violation}
    return {"ok": violation is None, "promised": promised[name], "first_violation": violation, **extra}


def _engines(sim: RunResult) -> list[Any]:
    return [n.engine if n is not None else None for n in sim.nodes]


def _survivors(sim: RunResult) -> list[int]:
    """The regions expected up at the end: every region but those lost for good."""
    gone = lost_for_good(sim.faults, sim.regions)
    return [r for r in range(sim.R) if r not in gone]


def _client_ids(tr: np.ndarray) -> set[int]:
    """The u128 ids of a replica's client transfers (credit legs, the bank's, excluded)."""
    return set(ids_of(tr[(tr["id_hi"] & CREDIT_BIT_HI) == 0]))


def _balances(acc: np.ndarray, name: str) -> list[int]:
    return [join(lo, hi) for lo, hi in zip(acc[f"{name}_lo"].tolist(), acc[f"{name}_hi"].tolist(), strict=True)]


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
        "atomic_chains": _verdict("atomic_chains", promised, atomic_chains(sim, t_end), seed),
    }


def conservation(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """No money created or destroyed, on every replica:
    * per ledger Σ debits = Σ credits (posted and pending);
    * money in transit is accounted for: every debit leg has its credit leg and vice versa;
    * the money supply is what genesis issued: customers and transit accounts together hold
      exactly the opening deposits (a client who could move money out of a unit's fund
      would leave the books balanced and still have created money)."""
    amap = sim.plan.amap
    n_units, n_cust = amap.n_units, amap.n_customers
    supply = n_cust * sim.s.workload.opening_balance
    engines = _engines(sim)
    for r in _survivors(sim):
        eng = engines[r]
        if eng is None:
            return {"region": sim.regions[r], "t": t_end, "problem": "region down at the end"}
        for ledger_id, t in ledger_totals(eng.accounts).items():
            if t["debits_posted"] != t["credits_posted"] or t["debits_pending"] != t["credits_pending"]:
                return {"region": sim.regions[r], "t": t_end, "ledger": ledger_id, "totals": t,
                        "problem": "debits != credits"}
        tr = eng.transfers
        credit = tr["credit_account_id_lo"]
        is_leg = (tr["id_hi"] & CREDIT_BIT_HI) != 0
        debit_leg = (credit >= TRANSIT_BASE) & (credit < TRANSIT_BASE + n_units) & (tr["credit_account_id_hi"] == 0)
        debit_legs = set(ids_of(tr[debit_leg & ~is_leg]))
        credit_legs = {tid & ~CREDIT_BIT for tid in ids_of(tr[is_leg])}
        orphan_debit, orphan_credit = debit_legs - credit_legs, credit_legs - debit_legs
        acc = eng.accounts
        customer = (acc["id_hi"] == 0) & (acc["id_lo"] >= 1) & (acc["id_lo"] <= n_cust)
        transit = (acc["id_hi"] == 0) & (acc["id_lo"] >= TRANSIT_BASE) & (acc["id_lo"] < TRANSIT_BASE + n_units)
        held = sum(_balances(acc[customer | transit], "credits_posted")) - sum(
            _balances(acc[customer | transit], "debits_posted"))
        in_transit = sum(_balances(acc[transit], "credits_posted")) - sum(_balances(acc[transit], "debits_posted"))
        if orphan_debit or orphan_credit:
            return {"region": sim.regions[r], "t": t_end, "problem": "money stuck in or created from transit",
                    "in_transit": in_transit, "debit_legs_without_credit": sorted(orphan_debit)[:10],
                    "credit_legs_without_debit": sorted(orphan_credit)[:10]}
        if held != supply:
            return {"region": sim.regions[r], "t": t_end, "problem": "money supply changed: customers and "
                    "transit hold other than what genesis issued", "held": held, "issued": supply}
    return None


def no_overdraft(sim: RunResult) -> dict[str, Any] | None:
    """Customer accounts (flag DEBITS_MUST_NOT_EXCEED_CREDITS) never spend more than they got.
    Judged on exact u128 balances; an account that ends overdrawn is reported whether or not
    replaying its transfers finds the moment it went below zero."""
    n = sim.plan.amap.n_customers
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            continue
        acc = eng.accounts
        cust = np.nonzero((acc["id_hi"] == 0) & (acc["id_lo"] >= 1) & (acc["id_lo"] <= n))[0]
        sub = acc[cust]
        avail = [c - d - p for c, d, p in zip(_balances(sub, "credits_posted"), _balances(sub, "debits_posted"),
                                              _balances(sub, "debits_pending"), strict=True)]
        bad = [i for i, v in enumerate(avail) if v < 0]
        if not bad:
            continue
        worst: dict[str, Any] | None = None
        for i in bad[:20]:
            a = int(sub["id_lo"][i])
            found = _first_negative(sim, eng, a) or {"t": sim.end / 1e9, "transfer_ids": [],
                                                     "note": "ends overdrawn; no replayed moment below zero"}
            if worst is None or found["t"] < worst["t"]:
                worst = {**found, "account": a, "balance": avail[i]}
        assert worst is not None
        worst.update(region=sim.regions[r], overdrawn_accounts=len(bad),
                     overdrawn_total=-sum(avail[i] for i in bad))
        return worst
    return None


def _first_negative(sim: RunResult, eng: Any, a: int) -> dict[str, Any] | None:
    tr = eng.transfers
    touches = (((tr["debit_account_id_lo"] == a) & (tr["debit_account_id_hi"] == 0))
               | ((tr["credit_account_id_lo"] == a) & (tr["credit_account_id_hi"] == 0)))
    sel = tr[touches]
    sel = sel[np.argsort(sel["timestamp"], kind="stable")]
    bal = 0
    for row in sel:
        amt = join(row["amount_lo"], row["amount_hi"])
        flags = int(row["flags"])
        if int(row["credit_account_id_lo"]) == a and not flags & _PENDING:
            bal += amt
        elif int(row["debit_account_id_lo"]) == a and not flags & _POST_OR_VOID:
            bal -= amt
        if bal < 0:
            tid = join(row["id_lo"], row["id_hi"])
            ops, plan = sim.ops, sim.plan
            debits = np.nonzero((plan.debit == a) & (ops.outcome == OUT_OK) & (plan.kind != KIND_READ))[0]
            op = int(row["id_lo"]) - 1
            t = float(ops.complete_t[op]) if 0 <= op < len(ops.complete_t) else 0.0
            return {"t": t, "transfer_ids": [tid],
                    "acknowledged_debits": [{"id": plan.transfer_ids(np.array([i]))[0],
                                             "region": sim.regions[int(plan.region[i])],
                                             "amount": int(plan.amount[i]),
                                             "acked_at": round(float(ops.complete_t[i]), 6)}
                                            for i in debits[:6].tolist()]}
    return None


def _ids_by_op(sim: RunResult) -> list[int]:
    plan = sim.plan
    return plan.transfer_ids(np.arange(plan.n_ops))


def exactly_once(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """No transfer id applied twice, or with two bodies: per replica, across origins, across
    retries, across every client that sent it (a hostile one reusing an honest one's id)."""
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            continue
        ids = ids_of(eng.transfers)
        if len(set(ids)) != len(ids):
            seen: set[int] = set()
            dup = next(t for t in ids if t in seen or seen.add(t))  # type: ignore[func-returns-value]
            return {"region": sim.regions[r], "t": t_end, "transfer_ids": [dup],
                    "problem": "duplicate transfer id in a replica"}
        node = sim.nodes[r]
        for origin, seq, _row, code in node.anomalies if node else []:
            if 34 <= code <= 44:
                return {"region": sim.regions[r], "t": t_end, "origin": sim.regions[origin], "seq": seq,
                        "problem": f"a shipped row already existed (result {code}): applied by two origins"}
    plan, ops = sim.plan, sim.ops
    oks: dict[int, int] = {}
    transfers = plan.kind != KIND_READ
    for op, tid in zip(np.nonzero(transfers & (ops.ok_count > 0))[0].tolist(),
                       plan.transfer_ids(np.nonzero(transfers & (ops.ok_count > 0))[0]), strict=True):
        oks[tid] = oks.get(tid, 0) + int(ops.ok_count[op])
    twice = sorted(t for t, n in oks.items() if n > 1 and t not in sim.log.diverged)
    if twice:
        first = next(i for i, t in enumerate(_ids_by_op(sim)) if t == twice[0])
        return {"t": float(ops.complete_t[first]), "transfer_ids": twice[:10],
                "problem": "the same transfer id was acknowledged OK twice"}
    return None


def convergence(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """After heal and quiesce, every replica holds the same books (canonical digest): every
    surviving one, when the schedule took a region away for good (it cannot converge)."""
    engines = _engines(sim)
    survivors = _survivors(sim)
    digests = {r: canonical_digest(engines[r]) if engines[r] is not None else None for r in survivors}
    for r, node in enumerate(sim.nodes):
        if node is not None and node.anomalies:
            origin, seq, row, code = node.anomalies[0]
            return {"region": sim.regions[r], "t": t_end, "origin": sim.regions[origin], "seq": seq,
                    "problem": f"replica rejected a shipped row (result {code})"}
    first = survivors[0]
    for r in survivors[1:]:
        if digests[r] != digests[first]:
            a, b = engines[first], engines[r]
            if a is None or b is None:
                return {"t": t_end, "problem": "a region is down at the end"}
            ia, ib = _client_ids(a.transfers), _client_ids(b.transfers)
            return {"t": t_end, "regions": [sim.regions[first], sim.regions[r]],
                    "only_in_first": sorted(ia - ib)[:10], "only_in_second": sorted(ib - ia)[:10],
                    "heads": [sim.nodes[first].heads, sim.nodes[r].heads]}
    return None


def _durability(sim: RunResult, promised: dict[str, bool]) -> dict[str, Any]:
    """Every acknowledged transfer is in the final books; what is missing is RPO loss."""
    o = sim.ops
    acked = np.nonzero((o.outcome == OUT_OK) & (sim.plan.kind != KIND_READ))[0]
    acked_ids = sim.plan.transfer_ids(acked)
    lost_ops: set[int] = set()
    for eng in _engines(sim):
        if eng is None:
            continue
        books = _client_ids(eng.transfers)
        lost_ops.update(op for op, tid in zip(acked.tolist(), acked_ids, strict=True) if tid not in books)
    lost = np.array(sorted(lost_ops), np.int64)
    rpo: dict[str, float] = {"lost_acknowledged": int(len(lost))}
    if len(lost):
        times = o.complete_t[lost]
        rpo.update(window_s=round(float(times.max() - times.min()), 6), first_acked_at=round(float(times.min()), 6),
                   last_acked_at=round(float(times.max()), 6))
    violation = None
    if len(lost):
        i = int(lost[0])
        violation = {"seed": sim.seed, "t": float(o.complete_t[i]),
                     "transfer_ids": sim.plan.transfer_ids(lost[:10]), "lost": int(len(lost))}
    return {"ok": violation is None, "promised": promised["durability"], "first_violation": violation, "rpo": rpo}


def atomic_chains(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """A linked chain is applied whole or not at all: in every replica's books, either every
    transfer of a chain the clients sent is there, or none is."""
    plan = sim.plan
    linked = np.nonzero((plan.rows["flags"] & _LINKED) != 0)[0]
    if not len(linked):
        return None
    chains: list[list[int]] = []
    for op in linked.tolist():  # a chain's rows are consecutive operations of one region, sent together
        if chains and chains[-1][-1] == op:
            chains[-1].append(op + 1)
        else:
            chains.append([op, op + 1])
    ids = {op: tid for op, tid in zip(range(plan.n_ops), _ids_by_op(sim), strict=True)}
    for r, eng in enumerate(_engines(sim)):
        if eng is None:
            continue
        books = _client_ids(eng.transfers)
        for chain in chains:
            members = [ids[op] for op in chain if op < plan.n_ops]
            present = [t in books for t in members]
            if any(present) and not all(present):
                return {"region": sim.regions[r], "t": t_end, "transfer_ids": members,
                        "applied": present, "problem": "a linked chain applied in part"}
    return None


def audit_chain(sim: RunResult, t_end: float) -> dict[str, Any] | None:
    """Each region's store verifies as a hash chain, and replaying it gives the live books (a
    region down at the end, lost for good, has no books: its store is only verified)."""
    for r, store in enumerate(sim.stores):
        ok, bad = store.verify_chain()
        if not ok:  # a store read for an audit (`region.audit`) says what it found
            return {"region": sim.regions[r], "t": t_end, "record": bad,
                    "problem": getattr(store, "problem", None) or "hash chain or checksum"}
        node = sim.nodes[r]
        if node is None:
            continue
        replayed, _ = RegionNode.recover(sim.cfgs[r], store)
        if canonical_digest(replayed.engine) != canonical_digest(node.engine):
            return {"region": sim.regions[r], "t": t_end, "problem": "live state differs from the replayed store"}
    return None

"""The workload: who pays whom, from where, when — generated up front, columnar.

Customers are homed in units, units in regions (round-robin, as the initial routing
table). Each region's clients arrive as a Poisson process; the debit account follows a
Zipf popularity among the region's own customers (a share `travel` comes from anywhere);
the credit account is in the same unit, another unit of the region, or another region.
Two-phase authorisations are followed by a post or a void from the same region.
`spend_all` customers are kept out of the normal traffic and then try to spend most of
their balance from several regions at the same moment: the double-spend probe. A
`hostile` share of the clients attacks the bank's rules instead (`simulator.hostile`).

Transfer ids name the unit whose writer applies them (`replication.ids`): in the designs
with one writer per unit (`unit`, `quorum`) the debit account's unit; in `async` and
`escrow` a unit homed in the region the client submits to (the debit account's unit if
it is homed there), so those designs still accept writes anywhere.

Everything is drawn from the run's single numpy Generator, so a seed fixes it all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cext.layout import TRANSFER_DTYPE
from ledger.types import TransferFlags
from replication.accounts import CODE, LEDGER, AccountMap
from replication.ids import ids_of, with_unit
from simulator.hostile import attacks
from simulator.scenario import Scenario

KIND_TRANSFER, KIND_PENDING, KIND_POST, KIND_VOID, KIND_READ = range(5)
KIND_NAMES = ("transfer", "pending", "post", "void", "read")
CAT_NAMES = ("same_unit", "cross_unit", "cross_region", "two_phase", "read", "spend_all", "hostile")
CAT_HOSTILE = CAT_NAMES.index("hostile")
SINGLE_WRITER_MODES = ("unit", "quorum")


@dataclass
class Plan:
    amap: AccountMap
    n_regions: int
    kind: np.ndarray  # uint8
    cat: np.ndarray  # uint8, index into CAT_NAMES
    region: np.ndarray  # int16: where the client submits
    t: np.ndarray  # float64 seconds
    debit: np.ndarray  # int64
    credit: np.ndarray  # int64
    amount: np.ndarray  # int64
    pending_ix: np.ndarray  # int64, -1 if none
    batches: list[tuple[np.ndarray, np.ndarray]]  # per region: (batch start offsets, op order)
    batch_window: float
    rows: np.ndarray  # TRANSFER_DTYPE: the row each transfer operation sends (reads: zeros)
    attack: np.ndarray  # uint8: the hostile attack an operation is (index into ATTACKS + 1), 0 if none

    @property
    def n_ops(self) -> int:
        return len(self.kind)

    def transfer_ids(self, ops: np.ndarray) -> list[int]:
        """The u128 transfer ids operations `ops` send."""
        return ids_of(self.rows[ops])


def make_plan(s: Scenario, rng: np.random.Generator) -> Plan:
    w = s.workload
    r = len(s.regions)
    n_units = r * w.units_per_region
    n = w.customers
    customer_unit = np.zeros(n + 1, np.int64)
    customer_unit[1:] = (np.arange(n) % n_units)
    amap = AccountMap(n_units, customer_unit)
    unit_home = np.arange(n_units) % r
    cust_region = unit_home[customer_unit]
    cust_region[0] = -1

    spend = w.spend_all
    reserved = np.zeros(n + 1, bool)
    if spend.accounts:
        chosen = rng.choice(np.arange(1, n + 1), size=spend.accounts, replace=False)
        reserved[chosen] = True
    else:
        chosen = np.zeros(0, np.int64)

    free = np.nonzero(~reserved)[0]
    free = free[free > 0]
    by_unit = group_by(customer_unit[free], n_units, free)
    by_region = [np.nonzero((cust_region == g) & ~reserved)[0] for g in range(r)]
    everyone = np.nonzero(~reserved)[0][1:]
    mix = w.mix
    shares = np.array([mix.same_unit, mix.cross_unit, mix.cross_region, mix.two_phase, mix.read], float)
    shares = shares / shares.sum()
    max_amount = max(1, int(w.opening_balance * w.amount_max_fraction))

    parts = []
    for g in range(r):
        count = int(rng.poisson(w.rate * s.duration))
        t = np.sort(rng.uniform(0.0, s.duration, count))
        cat = rng.choice(5, size=count, p=shares).astype(np.uint8)
        pool = by_region[g] if len(by_region[g]) else everyone
        ranks = np.arange(1, len(pool) + 1, dtype=float) ** -w.zipf
        popular = pool[rng.permutation(len(pool))]
        debit = popular[rng.choice(len(pool), size=count, p=ranks / ranks.sum())]
        travellers = rng.random(count) < w.travel
        debit[travellers] = everyone[rng.integers(0, len(everyone), int(travellers.sum()))]
        credit = _credit_for(debit, cat, amap, by_unit, unit_home, r, rng)
        amount = rng.integers(1, max_amount + 1, count)
        kind = np.where(cat == 3, KIND_PENDING, np.where(cat == 4, KIND_READ, KIND_TRANSFER)).astype(np.uint8)
        parts.append((np.full(count, g, np.int16), t, kind, cat, debit, credit, amount, np.full(count, -1)))

    # two-phase follow-ups: a post (70%) or void (30%) from the same region, later
    region = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    kind = np.concatenate([p[2] for p in parts])
    cat = np.concatenate([p[3] for p in parts])
    debit = np.concatenate([p[4] for p in parts])
    credit = np.concatenate([p[5] for p in parts])
    amount = np.concatenate([p[6] for p in parts])
    pend = np.nonzero(kind == KIND_PENDING)[0]
    follow_t = t[pend] + rng.uniform(0.05, 0.5, len(pend))
    keep = follow_t < s.duration
    pend, follow_t = pend[keep], follow_t[keep]
    follow_kind = np.where(rng.random(len(pend)) < 0.7, KIND_POST, KIND_VOID).astype(np.uint8)

    # the double-spend probe
    probe_regions = [s.regions.index(x) for x in spend.regions] or list(range(r))
    pr_region, pr_t, pr_debit, pr_credit, pr_amount = [], [], [], [], []
    for a in chosen.tolist():
        peers = by_unit[int(customer_unit[a])]
        for g in probe_regions:
            pr_region.append(g)
            pr_t.append(spend.at + float(rng.uniform(0, 0.05)))
            pr_debit.append(a)
            pr_credit.append(int(peers[int(rng.integers(len(peers)))]) if len(peers) else (a % n) + 1)
            pr_amount.append(int(w.opening_balance * spend.fraction))
    m = len(pr_region)

    region = np.concatenate([region, region[pend], np.asarray(pr_region, np.int16)])
    t = np.concatenate([t, follow_t, np.asarray(pr_t, float)])
    kind = np.concatenate([kind, follow_kind, np.full(m, KIND_TRANSFER, np.uint8)])
    cat = np.concatenate([cat, np.full(len(pend), 3, np.uint8), np.full(m, 5, np.uint8)])
    debit = np.concatenate([debit, debit[pend], np.asarray(pr_debit, np.int64)])
    credit = np.concatenate([credit, credit[pend], np.asarray(pr_credit, np.int64)])
    amount = np.concatenate([amount, amount[pend], np.asarray(pr_amount, np.int64)])
    pending_ix = np.concatenate([np.full(len(t) - len(pend) - m, -1), pend, np.full(m, -1)])
    tag = id_unit_tags(s, amap, unit_home, debit, region)
    rows = _rows(kind, debit, credit, amount, pending_ix, tag)
    attack = np.zeros(len(t), np.uint8)
    if w.hostile.share > 0:
        h = attacks(s, rng, amap, region, t, kind, rows, tag)
        n_normal = len(t)
        region = np.concatenate([region, h.region])
        t = np.concatenate([t, h.t])
        kind = np.concatenate([kind, h.kind])
        cat = np.concatenate([cat, np.full(len(h.t), CAT_HOSTILE, np.uint8)])
        debit = np.concatenate([debit, _clipped(h.rows, "debit_account_id")])
        credit = np.concatenate([credit, _clipped(h.rows, "credit_account_id")])
        amount = np.concatenate([amount, _clipped(h.rows, "amount")])
        pending_ix = np.concatenate([pending_ix, h.pending_ix])
        rows = np.concatenate([rows, h.rows])
        attack = np.concatenate([attack, h.attack])
        assert len(t) == n_normal + len(h.t)

    order = np.lexsort((region, t))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    pending_ix = pending_ix[order]
    has = pending_ix >= 0
    pending_ix[has] = inverse[pending_ix[has]]
    plan = Plan(amap, r, kind[order], cat[order], region[order], t[order], debit[order].astype(np.int64),
                credit[order].astype(np.int64), amount[order].astype(np.int64), pending_ix, [],
                w.batch_ms / 1000.0, rows[order], attack[order])
    for g in range(r):
        ops = np.nonzero(plan.region == g)[0]
        window = np.floor(plan.t[ops] / plan.batch_window).astype(np.int64)
        starts = np.nonzero(np.diff(window, prepend=-1))[0] if len(ops) else np.zeros(0, np.int64)
        plan.batches.append((starts, ops))
    return plan


def _credit_for(debit: np.ndarray, cat: np.ndarray, amap: AccountMap, by_unit: list[np.ndarray],
                unit_home: np.ndarray, r: int, rng: np.random.Generator) -> np.ndarray:
    n_units = amap.n_units
    dunit = amap.customer_unit[debit]
    target = dunit.copy()
    cross_unit = cat == 1
    cross_region = cat == 2
    per_region = n_units // r
    # another unit homed in the same region: shift by a multiple of r
    if per_region > 1:
        shift = rng.integers(1, per_region, int(cross_unit.sum())) * r
        target[cross_unit] = (dunit[cross_unit] + shift) % n_units
    if r > 1:
        shift = rng.integers(1, r, int(cross_region.sum()))
        target[cross_region] = (dunit[cross_region] + shift) % n_units
    credit = np.empty(len(debit), np.int64)
    for u, sel in enumerate(group_by(target, n_units)):
        if len(sel) == 0:
            continue
        pool = by_unit[u]
        credit[sel] = pool[rng.integers(0, len(pool), len(sel))]
    same = credit == debit
    if same.any():
        for i in np.nonzero(same)[0].tolist():
            pool = by_unit[int(target[i])]
            j = int(np.searchsorted(pool, debit[i]))
            credit[i] = pool[(j + 1) % len(pool)] if len(pool) > 1 else (debit[i] % amap.n_customers) + 1
    return credit


def group_by(keys: np.ndarray, n_groups: int, values: np.ndarray | None = None) -> list[np.ndarray]:
    """For each group 0..n_groups-1, the positions of `keys` equal to it (or `values` at those
    positions), ascending: `[np.nonzero(keys == g)[0] for g in range(n_groups)]`, in one
    stable sort instead of one pass over every key per group (1,000 units x 1,000,000
    customers is 10^9 comparisons that way)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n_groups + 1))
    picked = order if values is None else values[order]
    return [picked[bounds[g]:bounds[g + 1]] for g in range(n_groups)]


def id_unit_tags(s: Scenario, amap: AccountMap, unit_home: np.ndarray, debit: np.ndarray,
                 region: np.ndarray) -> np.ndarray:
    """The unit each operation's id names (module docstring): its debit account's unit in the
    single-writer designs; in `async` and `escrow`, a unit homed where it is submitted."""
    unit = amap.customer_unit[np.clip(debit, 0, amap.n_customers)]
    if s.mode in SINGLE_WRITER_MODES:
        return unit
    return np.where(unit_home[unit] == region, unit, region.astype(np.int64))


def _rows(kind: np.ndarray, debit: np.ndarray, credit: np.ndarray, amount: np.ndarray, pending_ix: np.ndarray,
          tag: np.ndarray) -> np.ndarray:
    """Each operation's transfer row. Ids: the operation's index plus one, in the unit `tag`
    names (a post or void names its pending by that pending's id)."""
    n = len(kind)
    rows = np.zeros(n, TRANSFER_DTYPE)
    rows["id_lo"] = np.arange(1, n + 1)
    rows["id_hi"] = with_unit(np.zeros(n, np.uint64), tag)
    rows["debit_account_id_lo"] = debit
    rows["credit_account_id_lo"] = credit
    rows["amount_lo"] = amount
    rows["ledger"] = LEDGER
    rows["code"] = CODE
    flags = np.zeros(n, np.uint16)
    flags[kind == KIND_PENDING] = int(TransferFlags.PENDING)
    flags[kind == KIND_POST] = int(TransferFlags.POST_PENDING_TRANSFER)
    flags[kind == KIND_VOID] = int(TransferFlags.VOID_PENDING_TRANSFER)
    rows["flags"] = flags
    has = pending_ix >= 0
    rows["pending_id_lo"][has] = rows["id_lo"][pending_ix[has]]
    rows["pending_id_hi"][has] = rows["id_hi"][pending_ix[has]]
    rows[kind == KIND_READ] = np.zeros(1, TRANSFER_DTYPE)
    return rows


def _clipped(rows: np.ndarray, field: str) -> np.ndarray:
    """A u128 column as int64 for the plan's summary columns (0 where it does not fit)."""
    lo, hi = rows[f"{field}_lo"], rows[f"{field}_hi"]
    return np.where((hi == 0) & (lo < np.uint64(1 << 63)), lo, 0).astype(np.int64)


def build_rows(plan: Plan, ops: np.ndarray) -> np.ndarray:
    """The client rows of planned operations."""
    return plan.rows[ops]

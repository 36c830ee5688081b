"""Order-independent views of a replica's state: what convergence and audits compare.

Replicas of the same books may hold the same transfers in different row orders (each
applies other origins' entries as they arrive), so the engine's byte digest is not the
right equality. The canonical digest is over accounts sorted by id with their balances,
and the sorted set of transfer ids: equal canonical digests, equal books.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def canonical_digest(engine) -> str:  # type: ignore[no-untyped-def]
    acc = engine.accounts
    order = np.lexsort((acc["id_lo"], acc["id_hi"]))
    cols = ["id_lo", "id_hi"] + [f"{f}_{w}" for f in BALANCE_FIELDS for w in ("lo", "hi")]
    h = hashlib.sha256()
    for c in cols:
        h.update(np.ascontiguousarray(acc[c][order]).tobytes())
    tr = engine.transfers
    t_order = np.lexsort((tr["id_lo"], tr["id_hi"]))
    h.update(np.ascontiguousarray(tr["id_lo"][t_order]).tobytes())
    h.update(np.ascontiguousarray(tr["id_hi"][t_order]).tobytes())
    return h.hexdigest()


def transfer_ids(engine) -> list[int]:  # type: ignore[no-untyped-def]
    tr = engine.transfers
    lo = tr["id_lo"].astype(object)
    hi = tr["id_hi"].astype(object)
    return sorted(int(h) << 64 | int(v) for v, h in zip(lo.tolist(), hi.tolist(), strict=True))


def balances(engine) -> dict[int, dict[str, int]]:  # type: ignore[no-untyped-def]
    acc = engine.accounts
    out: dict[int, dict[str, int]] = {}
    cols = {f: (acc[f + "_lo"].tolist(), acc[f + "_hi"].tolist()) for f in BALANCE_FIELDS}
    ids = acc["id_lo"].tolist()
    ids_hi = acc["id_hi"].tolist()
    for i, a in enumerate(ids):
        out[(ids_hi[i] << 64) | a] = {f: (cols[f][1][i] << 64) | cols[f][0][i] for f in BALANCE_FIELDS}
    return out


def settle_status(node) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What a run waits on before it is judged, for one region's node: its books' digest,
    the credit legs it still owes, whether it is catching up on units it gained."""
    return {"digest": canonical_digest(node.engine), "outbox": node.credit_legs_owed,
            "catching_up": bool(node.catching_up)}


def all_settled(statuses: list[dict[str, Any] | None]) -> bool:
    """Settled: every region expected up answered (None: down, or no answer), all hold the
    same books, and none owes a credit leg or is catching up. Both runtimes judge a run
    only once this holds (or their bounded wait ran out)."""
    if any(st is None for st in statuses):
        return False
    return (len({st["digest"] for st in statuses if st is not None}) <= 1
            and not any(st["outbox"] or st["catching_up"] for st in statuses if st is not None))

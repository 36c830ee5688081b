"""The hostile client: a share of the workload that attacks the bank's rules.

Every verdict is worth only what the clients tried. A bank must assume clients that send
the largest legal numbers, reuse ids, retry against another region in the middle of a
partition, and probe the bank's own id spaces and accounts. This component turns a share
of each region's traffic (`[workload.hostile] share`) into such attempts, drawn from the
run's one generator like everything else (same seed, same attacks), and the simulator
records every attempt in `history.jsonl` like any other operation, with its attack named.

| attack | what it sends | what the bank must answer |
| --- | --- | --- |
| `amount_extreme` | an amount of 2^63, 2^64, 2^64+1, 2^127 or 2^128-1 | never OK (EXCEEDS_CREDITS, OVERFLOWS_*) |
| `account_u128` | a customer's id plus 2^64 as debit or credit | *_ACCOUNT_NOT_FOUND |
| `reserved_id` | an id in the credit-leg or genesis range | ID_IN_RESERVED_RANGE |
| `bank_account` | a unit's fund or transit account as debit or credit | ACCOUNT_IS_BANK_INTERNAL |
| `foreign_unit_id` | an id naming no unit, or another unit than its debit's | ID_MUST_NAME_ITS_UNIT (unit, quorum) |
| `reuse_same` | a normal transfer again, same id and body, from another region | EXISTS (or OK once) |
| `reuse_different` | a transfer's id, another amount or debit | EXISTS_WITH_DIFFERENT_* (or wins once) |
| `retry_elsewhere` | a normal transfer again from another region, tens of ms later | EXISTS (or OK once) |
| `zero_unknown` | account 0 or an account that does not exist | *_MUST_NOT_BE_ZERO, *_NOT_FOUND |
| `chain_straddle` | two linked transfers whose ids or debits are in different units | the chain refused whole |
| `foreign_pending` | a post or void of another client's pending transfer | TigerBeetle's rules (anyone may post) |

Whatever is answered, every invariant the design promises must hold with these clients on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cext.layout import TRANSFER_DTYPE
from ledger.types import TransferFlags
from replication.accounts import AccountMap, fund_id, transit_id
from replication.ids import CREDIT_BIT, GENESIS_BIT, transfer_id
from simulator.scenario import ATTACKS, Scenario

KIND_TRANSFER, KIND_PENDING, KIND_POST, KIND_VOID = range(4)  # as simulator.workload's
EXTREME_AMOUNTS = (1 << 63, 1 << 64, (1 << 64) + 1, 1 << 127, (1 << 128) - 1)
HOSTILE_LOCAL_BASE = 1 << 100
"""Client parts of the ids hostile clients make up: far from the normal clients' ones."""
RETRY_WINDOW_S = 0.05
_LINKED = int(TransferFlags.LINKED)
_M64 = (1 << 64) - 1


@dataclass
class Attacks:
    """Hostile operations, columnar, in the plan's terms (before the plan orders them)."""

    region: np.ndarray
    t: np.ndarray
    kind: np.ndarray
    rows: np.ndarray  # TRANSFER_DTYPE
    attack: np.ndarray  # index into ATTACKS, plus one
    pending_ix: np.ndarray  # a foreign pending's plan index, else -1


def _set(row: np.ndarray, field: str, value: int) -> None:
    row[f"{field}_lo"] = value & _M64
    row[f"{field}_hi"] = value >> 64


def _get(row: np.ndarray, field: str) -> int:
    return (int(row[f"{field}_hi"]) << 64) | int(row[f"{field}_lo"])


def attacks(s: Scenario, rng: np.random.Generator, amap: AccountMap, normal_region: np.ndarray,
            normal_t: np.ndarray, normal_kind: np.ndarray, normal_rows: np.ndarray,
            tag_unit: np.ndarray) -> Attacks:
    """Hostile operations for every region: `share` of its normal count, attacks drawn from
    the scenario's list. They reuse normal operations' accounts, ids and pendings (the
    `normal_*` columns, indexed as the plan's own operations are)."""
    h = s.workload.hostile
    kinds = h.attacks or ATTACKS
    r = len(s.regions)
    pools = {name: np.nonzero(normal_kind == k)[0] for name, k in (("transfer", KIND_TRANSFER),
                                                                  ("pending", KIND_PENDING))}
    out_region: list[int] = []
    out_t: list[float] = []
    out_kind: list[int] = []
    out_rows: list[np.ndarray] = []
    out_attack: list[int] = []
    out_pending: list[int] = []
    counter = 0

    def fresh_id(unit: int) -> int:
        nonlocal counter
        counter += 1
        return transfer_id(unit, HOSTILE_LOCAL_BASE + counter)

    def emit(g: int, t: float, row: np.ndarray, attack: str, kind: int = KIND_TRANSFER, pending: int = -1) -> None:
        out_region.append(g)
        out_t.append(t)
        out_kind.append(kind)
        out_rows.append(row)
        out_attack.append(ATTACKS.index(attack) + 1)
        out_pending.append(pending)

    transfers = pools["transfer"]
    if not len(transfers):
        return _empty()
    for g in range(r):
        count = int(rng.poisson(h.share * float((normal_region == g).sum())))
        for _ in range(count):
            attack = kinds[int(rng.integers(len(kinds)))]
            ref = int(transfers[int(rng.integers(len(transfers)))])
            row = normal_rows[ref].copy()
            unit = int(tag_unit[ref])
            t = float(rng.uniform(0.0, s.duration))
            debit = _get(row, "debit_account_id")
            if attack == "amount_extreme":
                _set(row, "id", fresh_id(unit))
                _set(row, "amount", EXTREME_AMOUNTS[int(rng.integers(len(EXTREME_AMOUNTS)))])
            elif attack == "account_u128":
                _set(row, "id", fresh_id(unit))
                _set(row, "debit_account_id" if rng.random() < 0.5 else "credit_account_id", (1 << 64) + debit)
            elif attack == "reserved_id":
                _set(row, "id", (CREDIT_BIT | _get(row, "id")) if rng.random() < 0.5 else (GENESIS_BIT | debit))
            elif attack == "bank_account":
                _set(row, "id", fresh_id(unit))
                bank = fund_id(unit) if rng.random() < 0.5 else transit_id(unit)
                _set(row, "debit_account_id" if rng.random() < 0.5 else "credit_account_id", bank)
            elif attack == "foreign_unit_id":
                other = (unit + 1 + int(rng.integers(max(1, amap.n_units - 1)))) % amap.n_units
                _set(row, "id", fresh_id(other) if rng.random() < 0.7 else HOSTILE_LOCAL_BASE + counter + 1)
            elif attack in ("reuse_same", "retry_elsewhere"):
                g_ref = int(normal_region[ref])
                if attack == "retry_elsewhere":
                    t = min(float(normal_t[ref]) + float(rng.uniform(0.0, RETRY_WINDOW_S)), s.duration * 0.999)
                    emit((g_ref + 1 + int(rng.integers(max(1, r - 1)))) % r, t, row, attack)
                    continue
            elif attack == "reuse_different":
                if rng.random() < 0.5:
                    _set(row, "amount", _get(row, "amount") + 1)
                else:  # the same id, debiting a customer of another unit
                    other = 1 + (debit % amap.n_customers)
                    _set(row, "debit_account_id", other)
            elif attack == "zero_unknown":
                _set(row, "id", fresh_id(unit))
                bad = 0 if rng.random() < 0.5 else amap.n_customers + 1 + int(rng.integers(1000))
                _set(row, "debit_account_id" if rng.random() < 0.5 else "credit_account_id", bad)
            elif attack == "chain_straddle":
                other_ref = int(transfers[int(rng.integers(len(transfers)))])
                second = normal_rows[other_ref].copy()
                same_tag = rng.random() < 0.5  # one tag, a debit in another unit; or two tags
                _set(row, "id", fresh_id(unit))
                row["flags"] = int(row["flags"]) | _LINKED
                _set(second, "id", fresh_id(unit if same_tag else int(tag_unit[other_ref])))
                emit(g, t, row, attack)
                emit(g, t, second, attack)
                continue
            elif attack == "foreign_pending":
                pendings = pools["pending"]
                if not len(pendings):
                    continue
                p = int(pendings[int(rng.integers(len(pendings)))])
                pending = normal_rows[p]
                row = np.zeros(1, TRANSFER_DTYPE)[0]
                _set(row, "id", fresh_id(int(tag_unit[p])))
                _set(row, "pending_id", _get(pending, "id"))
                post = rng.random() < 0.5
                row["flags"] = int(TransferFlags.POST_PENDING_TRANSFER if post else TransferFlags.VOID_PENDING_TRANSFER)
                t = min(float(normal_t[p]) + float(rng.uniform(0.0, 0.3)), s.duration * 0.999)
                emit(g, t, row, attack, KIND_POST if post else KIND_VOID, p)
                continue
            emit(g, t, row, attack)
    if not out_rows:
        return _empty()
    return Attacks(np.asarray(out_region, np.int16), np.asarray(out_t, float), np.asarray(out_kind, np.uint8),
                   np.array(out_rows, TRANSFER_DTYPE), np.asarray(out_attack, np.uint8),
                   np.asarray(out_pending, np.int64))


def _empty() -> Attacks:
    return Attacks(np.zeros(0, np.int16), np.zeros(0), np.zeros(0, np.uint8), np.zeros(0, TRANSFER_DTYPE),
                   np.zeros(0, np.uint8), np.zeros(0, np.int64))


def attack_name(code: int) -> str | None:
    return ATTACKS[code - 1] if code else None


__all__ = ["EXTREME_AMOUNTS", "Attacks", "attack_name", "attacks"]

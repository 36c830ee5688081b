"""One enum for every answer a client can get for a row, from any runtime.

A row's outcome is either the ledger's own result (TigerBeetle's `CreateTransferResult`,
identical on every replica) or one of the replication layer's answers that are not ledger
outcomes: the region cannot take the write now (`UNAVAILABLE`: retry, same id), a
two-phase transfer across units (`CROSS_UNIT_TWO_PHASE`), or, recorded by clients, no
answer in time (`TIMEOUT`). One enum keeps ints, names and string compares from drifting
apart across the node, the gateways and the reports.
"""

from __future__ import annotations

import enum
from typing import Any

from ledger.types import CreateTransferResult

_EXTRA = {
    "UNAVAILABLE": 1001,  # this region cannot take the write now (no lease, no leader, cut off): retry, same id
    "CROSS_UNIT_TWO_PHASE": 1002,  # a two-phase transfer across units: no single writer can hold it
    "ID_IN_RESERVED_RANGE": 1003,  # the id sets a bit the bank reserves (credit legs, genesis)
    "ACCOUNT_IS_BANK_INTERNAL": 1004,  # the debit or credit account is a unit's fund or transit account
    "ID_MUST_NAME_ITS_UNIT": 1005,  # the id names no unit, or not the unit its writer writes
    "LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT": 1006,  # a linked chain whose ids name different units
    "TIMEOUT": 2000,  # recorded by clients: no answer in time
}


def _members() -> dict[str, int]:
    members = {r.name: int(r) for r in CreateTransferResult}
    clash = set(members) & set(_EXTRA) or set(members.values()) & set(_EXTRA.values())
    if clash:  # the ledger's codes and ours must never overlap
        raise RuntimeError(f"outcome codes clash with the ledger's: {clash}")
    return {**members, **_EXTRA}


Outcome: Any = enum.IntEnum("Outcome", _members(), module=__name__)  # type: ignore[misc]
"""Every `CreateTransferResult` member (same name, same value), then the replication layer's
own answers (`_EXTRA`: 1001.., and the clients' TIMEOUT, 2000)."""

UNAVAILABLE: int = Outcome["UNAVAILABLE"]
CROSS_UNIT_TWO_PHASE: int = Outcome["CROSS_UNIT_TWO_PHASE"]
ID_IN_RESERVED_RANGE: int = Outcome["ID_IN_RESERVED_RANGE"]
ACCOUNT_IS_BANK_INTERNAL: int = Outcome["ACCOUNT_IS_BANK_INTERNAL"]
ID_MUST_NAME_ITS_UNIT: int = Outcome["ID_MUST_NAME_ITS_UNIT"]
LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT: int = Outcome["LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT"]
TIMEOUT: int = Outcome["TIMEOUT"]
REFUSALS = (ID_IN_RESERVED_RANGE, ACCOUNT_IS_BANK_INTERNAL, ID_MUST_NAME_ITS_UNIT, LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT)
"""The replication layer's refusals of a client row: rules of the bank, final (not retried)."""
EXISTS_CODE = int(CreateTransferResult.EXISTS)
ACKNOWLEDGED = (int(CreateTransferResult.OK), EXISTS_CODE)
"""Results that tell a client its transfer is in the books."""


def outcome_name(code: int) -> str:
    """The name of any code a row can carry; an unknown code (a newer peer) by its number."""
    try:
        return str(Outcome(code).name)
    except ValueError:
        return f"CODE_{int(code)}"


__all__ = ["ACCOUNT_IS_BANK_INTERNAL", "ACKNOWLEDGED", "CROSS_UNIT_TWO_PHASE", "EXISTS_CODE", "ID_IN_RESERVED_RANGE",
           "ID_MUST_NAME_ITS_UNIT", "LINKED_CHAIN_MUST_STAY_IN_ONE_UNIT", "REFUSALS", "TIMEOUT", "UNAVAILABLE",
           "Outcome", "outcome_name"]

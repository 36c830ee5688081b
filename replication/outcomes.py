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

_EXTRA = {"UNAVAILABLE": 1001, "CROSS_UNIT_TWO_PHASE": 1002, "TIMEOUT": 2000}


def _members() -> dict[str, int]:
    members = {r.name: int(r) for r in CreateTransferResult}
    clash = set(members) & set(_EXTRA) or set(members.values()) & set(_EXTRA.values())
    if clash:  # the ledger's codes and ours must never overlap
        raise RuntimeError(f"outcome codes clash with the ledger's: {clash}")
    return {**members, **_EXTRA}


Outcome: Any = enum.IntEnum("Outcome", _members(), module=__name__)  # type: ignore[misc]
"""Every `CreateTransferResult` member (same name, same value), then UNAVAILABLE (1001),
CROSS_UNIT_TWO_PHASE (1002) and TIMEOUT (2000)."""

UNAVAILABLE: int = Outcome["UNAVAILABLE"]
CROSS_UNIT_TWO_PHASE: int = Outcome["CROSS_UNIT_TWO_PHASE"]
TIMEOUT: int = Outcome["TIMEOUT"]
EXISTS_CODE = int(CreateTransferResult.EXISTS)
ACKNOWLEDGED = (int(CreateTransferResult.OK), EXISTS_CODE)
"""Results that tell a client its transfer is in the books."""


def outcome_name(code: int) -> str:
    """The name of any code a row can carry; an unknown code (a newer peer) by its number."""
    try:
        return str(Outcome(code).name)
    except ValueError:
        return f"CODE_{int(code)}"


__all__ = ["ACKNOWLEDGED", "CROSS_UNIT_TWO_PHASE", "EXISTS_CODE", "TIMEOUT", "UNAVAILABLE", "Outcome", "outcome_name"]

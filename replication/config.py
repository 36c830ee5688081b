"""A region node's configuration: which design it runs and the protocol's timings.

Modes, shipping and Raft groupings are enums, not strings: a typo in a scenario file is
refused where the configuration is built, and every `match` on a mode is exhaustive.
What each design *promises* lives here too, once, because the simulator's checkers, the
load suite's verdict and the reports must all hold a run to the same promises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from replication.accounts import AccountMap

MS = 1_000_000
"""Nanoseconds per millisecond: node time is integer nanoseconds."""

INVARIANTS = ("conservation", "no_overdraft", "exactly_once", "convergence", "durability", "audit_chain",
              "atomic_chains")


class Mode(enum.StrEnum):
    """Where writes are accepted (ARCHITECTURE.md, replication modes)."""

    ASYNC = "async"
    UNIT = "unit"
    ESCROW = "escrow"
    QUORUM = "quorum"


class Ship(enum.StrEnum):
    """When a unit home answers: at once (`async`) or once a majority stores the entry."""

    ASYNC = "async"
    SEMI_SYNC = "semi-sync"


class Grouping(enum.StrEnum):
    """Quorum mode: a Raft log per unit, per home region, or one for the whole ledger."""

    UNIT = "unit"
    REGION = "region"
    LEDGER = "ledger"


DESIGN_LABELS = ("async", "unit", "unit+async", "unit+semi-sync", "escrow", "quorum", "quorum+unit", "quorum+region",
                 "quorum+ledger")
"""How users name a design: a mode, with its shipping (unit) or its Raft grouping (quorum)."""


def parse_design(label: str, ship: Ship | str = Ship.SEMI_SYNC,
                 groups: Grouping | str = Grouping.UNIT) -> tuple[Mode, Ship, Grouping]:
    """`unit+async` -> (UNIT, ASYNC, ...); a bare `unit` keeps `ship`, a bare `quorum` keeps
    `groups`. Only a unit home waits for replicas before replying, so other modes ship async."""
    if label not in DESIGN_LABELS:
        raise ValueError(f"design must be one of {DESIGN_LABELS}, got {label!r}")
    base, _, variant = label.partition("+")
    mode = Mode(base)
    if mode is Mode.QUORUM:
        return mode, Ship.ASYNC, Grouping(variant or groups)
    if mode is Mode.UNIT:
        return mode, Ship(variant or ship), Grouping(groups)
    return mode, Ship.ASYNC, Grouping(groups)


def design_label(mode: Mode | str, ship: Ship | str, groups: Grouping | str = Grouping.UNIT) -> str:
    """The design's name as every report shows it: `unit+semi-sync`, `quorum+ledger`, `escrow`."""
    mode = Mode(mode)
    if mode is Mode.UNIT:
        return f"unit+{Ship(ship).value}"
    if mode is Mode.QUORUM and Grouping(groups) is not Grouping.UNIT:
        return f"quorum+{Grouping(groups).value}"
    return mode.value


def _enum(kind: type[enum.StrEnum], value: object, what: str) -> enum.StrEnum:
    try:
        return kind(str(value))
    except ValueError:
        choices = tuple(m.value for m in kind)
        raise ValueError(f"{what} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True)
class NodeConfig:
    n_regions: int
    me: int
    mode: Mode
    amap: AccountMap
    opening_balance: int
    ship: Ship = Ship.ASYNC
    heartbeat_every: int = 100 * MS
    suspect_after: int = 600 * MS
    # the failure detector adapts to the gaps it hears (replication.detector), up to this
    # silence (suspect_after or less: a fixed timeout), over the gaps of the last suspect_memory
    suspect_max: int = 5000 * MS
    suspect_memory: int = 10_000 * MS
    lease: int = 1000 * MS
    drift: float = 0.01
    tick_every: int = 50 * MS
    credit_resend_every: int = 300 * MS
    quota_retry_every: int = 200 * MS
    pull_max: int = 256
    seed: int = 0  # quorum: seeds the Raft election timeouts (the node draws nothing else)
    snapshot_every: int = 1000  # quorum: applied entries between snapshots (log compaction)
    replicas: tuple[int, ...] = ()  # quorum: replicas (votes) per region, e.g. (2, 2, 1); empty = one each
    quorum_groups: Grouping = Grouping.UNIT  # quorum: a Raft log per unit, per home region, or one
    # Checkpoints (replication.checkpoint): the store's records are replaced by a snapshot of the
    # region's state once this many records (0: never) or bytes of records (0: no byte limit)
    # were written since the last one, so restart time and memory do not grow with history.
    checkpoint_every: int = 10_000
    checkpoint_bytes: int = 0

    def __post_init__(self) -> None:
        # Accept the strings scenario files and CLIs carry; hold enums from here on.
        object.__setattr__(self, "mode", _enum(Mode, self.mode, "mode"))
        object.__setattr__(self, "ship", _enum(Ship, self.ship, "ship"))
        object.__setattr__(self, "quorum_groups", _enum(Grouping, self.quorum_groups, "quorum_groups"))
        if not 0 <= self.me < self.n_regions:
            raise ValueError(f"me must be a region index below {self.n_regions}, got {self.me}")
        if self.lease <= self.heartbeat_every:
            raise ValueError("lease must be longer than the heartbeat interval")
        if self.suspect_after <= 0 or self.suspect_memory <= 0:
            raise ValueError("suspect_after and suspect_memory must be positive")
        if self.checkpoint_every < 0 or self.checkpoint_bytes < 0:
            raise ValueError("checkpoint_every and checkpoint_bytes must be >= 0 (0: no such limit)")


class InvariantViolation(AssertionError):
    """A node's internal state contradicts itself: a bug, caught where it happens.

    Checked after every step in tests and in `geoledger fuzz --check-invariants`, the way
    TigerBeetle's replica asserts its invariants after every message. The message names
    the invariant and the values that break it.
    """


def check(ok: bool, invariant: str, detail: object = "") -> None:
    if not ok:
        raise InvariantViolation(f"{invariant}: {detail}" if detail != "" else invariant)


def promises(mode: Mode | str, ship: Ship | str) -> dict[str, bool]:
    """What each design promises (checked every run). `quorum` promises all six."""
    p = dict.fromkeys(INVARIANTS, True)
    mode, ship = Mode(mode), Ship(ship)
    if mode is Mode.ASYNC:
        p["no_overdraft"] = False
        p["durability"] = False
    elif mode is Mode.ESCROW or (mode is Mode.UNIT and ship is Ship.ASYNC):
        p["durability"] = False
    return p


__all__ = ["DESIGN_LABELS", "INVARIANTS", "MS", "Grouping", "InvariantViolation", "Mode", "NodeConfig", "Ship", "check",
           "design_label", "parse_design", "promises"]

"""What the region-node tests share: a three-region account map, a start instant, and a
filter for one kind of effect."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from replication.accounts import AccountMap

T = 1_700_000_000_000_000_000
N_UNITS = 3  # one per region: unit u is homed at region u
AMAP = AccountMap(N_UNITS, np.arange(13) % N_UNITS)  # customers 1..12; customer c is in unit c % 3

E = TypeVar("E")


def of(effects: list[Any], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]

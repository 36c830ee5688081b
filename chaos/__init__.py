"""Fault models and schedules (nemeses) that any runtime applies."""

from chaos.faults import (
    FAULT_KINDS,
    GROUP_FAULTS,
    Fault,
    FaultError,
    blocked_links,
    expand_group,
    links_of,
    validate_fault,
)
from chaos.nemesis import random_schedule

__all__ = ["FAULT_KINDS", "GROUP_FAULTS", "Fault", "FaultError", "blocked_links", "expand_group", "links_of",
           "random_schedule", "validate_fault"]

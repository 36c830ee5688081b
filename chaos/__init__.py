"""Fault models and schedules (nemeses) that any runtime applies."""

from chaos.faults import (
    DOWN_FAULTS,
    FAULT_KINDS,
    FAULT_TITLES,
    GROUP_FAULTS,
    NOT_RESTORED,
    PROCESS_FAULTS,
    Fault,
    FaultError,
    blocked_links,
    check_after_loss,
    expand_group,
    fault_title,
    links_of,
    stays_down,
    validate_fault,
)
from chaos.nemesis import random_schedule

__all__ = ["DOWN_FAULTS", "FAULT_KINDS", "FAULT_TITLES", "GROUP_FAULTS", "NOT_RESTORED", "PROCESS_FAULTS", "Fault",
           "FaultError", "blocked_links", "check_after_loss", "expand_group", "fault_title", "links_of",
           "random_schedule", "stays_down", "validate_fault"]

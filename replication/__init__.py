"""Sans-IO region node: routing, log shipping, failover and the replication modes.

See `replication/README.md` for the design: who decides a promotion, how leases fence a
cut-off home, how escrow shares work, and what each mode promises.
"""

from replication.accounts import AccountMap
from replication.config import Grouping, Mode, NodeConfig, Ship, promises
from replication.log import Entry
from replication.node import RegionNode
from replication.outcomes import UNAVAILABLE, Outcome, outcome_name
from replication.routing import RoutingTable

__all__ = [
    "UNAVAILABLE", "AccountMap", "Entry", "Grouping", "Mode", "NodeConfig", "Outcome", "RegionNode",
    "RoutingTable", "Ship", "outcome_name", "promises",
]

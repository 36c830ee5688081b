"""Sans-IO region node: routing, log shipping, failover and the replication modes.

See `replication/README.md` for the design: who decides a promotion, how leases fence a
cut-off home, how escrow shares work, and what each mode promises.
"""

from replication.accounts import AccountMap
from replication.log import DurableStore, Entry
from replication.node import MODES, SHIPS, UNAVAILABLE, NodeConfig, RegionNode, result_name
from replication.routing import RoutingTable

__all__ = [
    "MODES", "SHIPS", "UNAVAILABLE", "AccountMap", "DurableStore", "Entry", "NodeConfig", "RegionNode",
    "RoutingTable", "result_name",
]

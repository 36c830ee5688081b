"""What runs one live region: the driver and the region stores behind one declared interface.

`replication` holds the sans-IO node; this package gives it a life under real time. The
driver (`region.driver.LiveRegion`) feeds a `RegionNode` the wall clock, timers and the
messages a transport delivers, and makes every record durable before anything that
depends on it leaves. The stores keep a region's hash-chained records:
`region.store.RegionStore` declares what every store does (and holds the chain logic),
`MemoryRegionStore` keeps them in memory (the deterministic simulator), and
`SqliteRegionStore` / `CassandraRegionStore` write them, encoded by `replication.wire`
and checksummed, through one buffered base (`region.buffered`), one writer per store
(`region.lock`). One abstract test case (`tests/support/region_store.py`) proves them all.
"""

from region.cassandra import CassandraRegionStore
from region.driver import LiveRegion, LiveStats, Transport
from region.sqlite import SqliteRegionStore
from region.store import MemoryRegionStore, RegionStore

__all__ = ["CassandraRegionStore", "LiveRegion", "LiveStats", "MemoryRegionStore", "RegionStore",
           "SqliteRegionStore", "Transport"]

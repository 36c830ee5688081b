"""Sans-IO region node: routing, log shipping, failover and the replication modes."""

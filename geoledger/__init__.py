"""The `geoledger` command line: a thin layer over the ledger, simulator and load packages."""

"""The live surface: HTTP gateways in front of region nodes, peer links, and the Locust
load suite that attacks them (users, shapes, the `geoledger load` runner and verdict)."""

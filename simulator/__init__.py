"""Runtimes that drive region nodes (deterministic and Ray), workloads, scenarios, checkers, reports."""

"""Benchmarks: each figure measured as a ratio against a baseline in the same run."""

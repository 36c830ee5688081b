"""Test support shared by several test modules (never imported from another test file)."""

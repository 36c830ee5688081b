"""Batch codec: the compiled one when built, else the pure-Python twin (same output)."""

from cext.codec_py import accounts_to_rows, row_to_account, row_to_transfer, transfers_to_rows

__all__ = ["accounts_to_rows", "row_to_account", "row_to_transfer", "transfers_to_rows"]

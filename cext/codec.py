"""Batch codec: the compiled packer when built, else the pure-Python twin (same bytes).

Packing objects into rows runs once per event on the write path, so it is compiled
(`cext._codec`); unpacking single rows into state objects serves lookups and stays in
Python. `COMPILED` tells which packer is in use.
"""

from __future__ import annotations

from cext.codec_py import row_to_account, row_to_transfer

try:
    from cext._codec import accounts_to_rows, transfers_to_rows  # type: ignore[import-not-found]

    COMPILED = True
except ImportError:  # pragma: no cover - exercised only without the build
    from cext.codec_py import accounts_to_rows, transfers_to_rows

    COMPILED = False

__all__ = ["COMPILED", "accounts_to_rows", "row_to_account", "row_to_transfer", "transfers_to_rows"]

"""The engine snapshot format, shared by both engines (and the quorum mode's unit slices).

A header with the row counts, then the row arrays as they are in memory. Version 1
(`GLENG1`) holds accounts, transfers, their meta rows and the balance history; version 2
(`GLENG2`) adds the ids of transfers that failed with a transient result. A snapshot
without failed ids is written as version 1, byte for byte what it always was, so that
snapshots taken by older code and by the replicas (which never record failures) keep
their bytes and digests.
"""

from __future__ import annotations

import struct

import numpy as np

from cext.layout import ACCOUNT_DTYPE, FAILED_DTYPE, HISTORY_DTYPE, META_DTYPE, TRANSFER_DTYPE

_MAGIC_V1 = b"GLENG1\0\0"
_MAGIC_V2 = b"GLENG2\0\0"
_HEAD_V1 = struct.Struct("<8sQQQ")
_HEAD_V2 = struct.Struct("<8sQQQQ")


def pack_snapshot(
    accounts: np.ndarray, transfers: np.ndarray, meta: np.ndarray, history: np.ndarray,
    failed: np.ndarray | None = None,
) -> bytes:
    """An engine snapshot of these rows (version 2 only if there are failed ids)."""
    parts = [accounts.tobytes(), transfers.tobytes(), meta.tobytes(), history.tobytes()]
    if failed is None or not len(failed):
        return b"".join([_HEAD_V1.pack(_MAGIC_V1, len(accounts), len(transfers), len(history)), *parts])
    head = _HEAD_V2.pack(_MAGIC_V2, len(accounts), len(transfers), len(history), len(failed))
    return b"".join([head, *parts, failed.tobytes()])


def parse_snapshot_all(data: bytes | memoryview) -> tuple[int, int, int, list[np.ndarray], np.ndarray]:
    """Counts, the four row arrays and the failed ids (views of `data`, which may itself be a
    view: nothing is copied); ValueError if not one."""
    magic = bytes(data[:8])
    if magic == _MAGIC_V1:
        head = _HEAD_V1
    elif magic == _MAGIC_V2:
        head = _HEAD_V2
    else:
        raise ValueError("not an engine snapshot" if len(data) >= 8 else "engine snapshot is truncated")
    if len(data) < head.size:
        raise ValueError("engine snapshot is truncated")
    if head is _HEAD_V1:
        _, n_accounts, n_transfers, n_history = head.unpack_from(data)
        n_failed = 0
    else:
        _, n_accounts, n_transfers, n_history, n_failed = head.unpack_from(data)
        if n_failed == 0:
            raise ValueError("engine snapshot v2 without failed ids")
    sizes = [
        (ACCOUNT_DTYPE, n_accounts),
        (TRANSFER_DTYPE, n_transfers),
        (META_DTYPE, n_transfers),
        (HISTORY_DTYPE, n_history),
        (FAILED_DTYPE, n_failed),
    ]
    if len(data) != head.size + sum(d.itemsize * n for d, n in sizes):
        raise ValueError("engine snapshot has the wrong length")
    arrays = []
    offset = head.size
    for dtype, n in sizes:
        arrays.append(np.frombuffer(data, dtype, n, offset))
        offset += dtype.itemsize * n
    return n_accounts, n_transfers, n_history, arrays[:4], arrays[4]


def parse_snapshot(data: bytes | memoryview) -> tuple[int, int, int, list[np.ndarray]]:
    """Split an engine snapshot into its counts and four row arrays (read-only views)."""
    n_accounts, n_transfers, n_history, parts, _ = parse_snapshot_all(data)
    return n_accounts, n_transfers, n_history, parts


__all__ = ["pack_snapshot", "parse_snapshot", "parse_snapshot_all"]

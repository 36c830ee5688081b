"""Memory a snapshot's engine bytes were read into, handed over with them.

A durable store reads a snapshot into one buffer (`region.snapframe`) and hands the snapshot
to recovery once (`RegionStore.load_snapshot`); its `engine` is a read-only view of that
buffer. The engine's restore copies those bytes into its own rows, gigabytes at ten
million transfers: holding the whole buffer until the copy ends is the books twice at the
restart's peak. So the buffer is an anonymous map that gives its pages back as the restore
copies them (`give_back`, Linux's MADV_DONTNEED: the pages read as zeros afterwards), and
`Replica.restore` empties the snapshot's `engine` once it has taken it: a snapshot whose
engine was spent cannot be restored twice by mistake (the empty bytes are refused).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np

_PAGE = mmap.PAGESIZE


class HandedOverBuffer(mmap.mmap):
    """An anonymous map whose pages a restore may give back once it has copied them
    (made by `handed_over`: private, so the pages given back are freed, not kept as a
    shared map's would be)."""

    def give_back(self, start: int, length: int) -> None:
        """Return the whole pages inside bytes `start` .. `start + length` to the system."""
        first = -(-start // _PAGE) * _PAGE
        end = (start + length) // _PAGE * _PAGE
        if end > first and hasattr(mmap, "MADV_DONTNEED"):
            self.madvise(mmap.MADV_DONTNEED, first, end - first)


def handed_over(length: int) -> HandedOverBuffer:
    """A zeroed `HandedOverBuffer` of `length` (> 0) bytes, its pages touched as written.
    OSError, OverflowError or ValueError if it cannot be mapped."""
    private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    if private:
        return HandedOverBuffer(-1, length, flags=private)
    return HandedOverBuffer(-1, length)  # pragma: no cover - not POSIX


def give_back_of(data: object) -> Callable[[int, int], None] | None:
    """`give_back` of the buffer `data` is a view of, from its first byte (the offsets a
    restore passes are `data`'s); None for anything else (bytes: nothing to give back)."""
    if not (isinstance(data, memoryview) and isinstance(data.obj, HandedOverBuffer) and data.nbytes):
        return None
    with memoryview(data.obj) as whole:
        if _start(whole) != _start(data):
            return None
    return data.obj.give_back


def _start(view: memoryview) -> int:
    return int(np.frombuffer(view, np.uint8).ctypes.data)


__all__ = ["HandedOverBuffer", "give_back_of", "handed_over"]

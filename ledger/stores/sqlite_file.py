"""How geoledger's SQLite files are laid out: 64 KiB pages.

A record is a batch — hundreds to thousands of transfers, tens to hundreds of KB — so with
SQLite's default 4 KiB pages every commit writes it as dozens of overflow pages, each its
own write into the WAL and again at the WAL's checkpoint. With 64 KiB pages a commit is a
few large writes: `python -m bench.bulk_bench` went from 460k to 702k durable transfers/s
over a `Ledger` gateway and from 563k to 706k over a region node (README, Benchmarks). The
price is paid by small commits: a commit of one small record writes a whole 64 KiB page to
the WAL. With group commit (the default) that was within noise in `python -m
bench.load_bench --only one_region` (3,923 against 3,990 acknowledged/s); with one commit
per request, 7% fewer (1,103 against 1,189). A page size is fixed when a file is created, so
an existing file keeps its own and opens as before.
"""

from __future__ import annotations

import os
import sqlite3

from ledger.errors import StoreError

PAGE_SIZE = 65536


def use_large_pages(conn: sqlite3.Connection) -> None:
    """Give a file this connection is about to create `PAGE_SIZE` pages (before WAL mode is
    set: that writes the header); on an existing file it changes nothing."""
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")


def create_with_large_pages(path: str) -> None:
    """Create the SQLite file at `path`, if it is absent or empty, with `PAGE_SIZE` pages in
    WAL mode, for a library (eventsourcing's recorder) that opens it with its defaults."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    try:
        conn = sqlite3.connect(path)
        try:
            use_large_pages(conn)
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot create sqlite store {path!r} ({e})") from None


__all__ = ["PAGE_SIZE", "create_with_large_pages", "use_large_pages"]

"""Store URLs (SQLAlchemy style) to `eventsourcing` environments.

`memory://`, `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///:memory:`,
`cassandra://host[,host2][:port]/keyspace?dc=..&rf=..&consistency=..`.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

from ledger.errors import StoreError, StoreURLError
from ledger.redact import redact

EXPECTED = "memory://, sqlite:///PATH (sqlite:////ABS/PATH) or cassandra://HOST[:PORT]/KEYSPACE"


def environment_from_url(url: str) -> dict[str, str]:
    """The eventsourcing environment that makes an application use the store at `url`. An
    error message never holds the URL's password (`ledger.redact`)."""
    try:
        return _environment(url)
    except (StoreURLError, StoreError) as e:
        if not isinstance(url, str):
            raise
        raise type(e)(redact(str(e), url)) from None


def _environment(url: str) -> dict[str, str]:
    if not isinstance(url, str):
        raise StoreURLError(f"store URL must be a str, got {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreURLError(f"malformed store URL {url!r}; expected {EXPECTED}")
    if scheme == "memory":
        if url != "memory://":
            raise StoreURLError(f"memory:// takes no host or path, got {url!r}")
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        return _sqlite_environment(url)
    if scheme == "cassandra":
        from ledger.stores.cassandra import environment_from_url as cassandra_environment

        return cassandra_environment(url)
    raise StoreURLError(f"unknown store scheme {scheme!r} in {url!r}; expected {EXPECTED}")


def _sqlite_environment(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreURLError(
            f"sqlite URLs have no host: use sqlite:///relative.db or sqlite:////abs.db, got {url!r}"
        )
    if parts.query or parts.fragment:
        raise StoreURLError(f"sqlite URLs take no query or fragment, got {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path or path.endswith("/"):
        raise StoreURLError(f"sqlite URL {url!r} names no database file")
    if path == ":memory:":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": "file::memory:?cache=shared"}
    check_sqlite_file(path)
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "10"}


LEDGER_TABLES = {"stored_events", "stored_snapshots"}


def check_sqlite_file(path: str) -> None:
    """Refuse, without writing to it, a file that is not empty and not a geoledger store."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise StoreError(f"directory {directory!r} of sqlite store {path!r} does not exist")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path!r} is not an SQLite database ({e})") from None
    if tables and not tables >= LEDGER_TABLES:
        raise StoreError(
            f"{path!r} is an SQLite database but not a geoledger store "
            f"(tables: {', '.join(sorted(tables))})"
        )

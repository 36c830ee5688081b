"""One rule for tests that need a real external part (Cassandra, Ray, Chromium, ...).

A test that needs a part calls ``require(part, available, how)``: when the part is not
available the test is SKIPPED with a message saying how to provide it, unless the
environment variable ``GEOLEDGER_REQUIRE_REAL=1`` is set (as CI does), in which case it
FAILS with the same message, so a missing part can never turn a CI run green.
"""

from __future__ import annotations

import os
import socket
import struct
import uuid

import pytest

REQUIRE_REAL_ENV = "GEOLEDGER_REQUIRE_REAL"

CASSANDRA_HOST = "127.0.0.1"
CASSANDRA_PORT = 9042
CASSANDRA_HOW = "start it with scripts/cassandra start"


def real_parts_required() -> bool:
    return os.environ.get(REQUIRE_REAL_ENV, "").strip() == "1"


def require(part: str, available: bool, how: str) -> None:
    """Skip (or, with GEOLEDGER_REQUIRE_REAL=1, fail) the calling test if ``part`` is missing."""
    if available:
        return
    message = f"{part} is not available: {how}"
    if real_parts_required():
        pytest.fail(f"{message} ({REQUIRE_REAL_ENV}=1, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def cql_answers(host: str = CASSANDRA_HOST, port: int = CASSANDRA_PORT, timeout: float = 2.0) -> bool:
    """True if a CQL server answers an OPTIONS request (protocol v4) on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            # version 4 request, flags 0, stream 0, opcode OPTIONS (0x05), body length 0
            sock.sendall(struct.pack(">BBhBi", 0x04, 0, 0, 0x05, 0))
            header = b""
            while len(header) < 9:
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    # response version 4 (0x84), opcode SUPPORTED (0x06)
    return header[0] == 0x84 and header[4] == 0x06


_cassandra_up: bool | None = None


def require_cassandra() -> None:
    """Require a Cassandra answering CQL on 127.0.0.1:9042 (checked once per session)."""
    global _cassandra_up
    if not _cassandra_up:
        _cassandra_up = cql_answers()
    require(f"Cassandra on {CASSANDRA_HOST}:{CASSANDRA_PORT}", _cassandra_up, CASSANDRA_HOW)


def fresh_cassandra_url() -> str:
    """A store URL for a keyspace of its own on the test Cassandra (which must be up)."""
    require_cassandra()
    return f"cassandra://{CASSANDRA_HOST}:{CASSANDRA_PORT}/gl_{uuid.uuid4().hex[:16]}?dc=dc1&rf=1&consistency=ONE"


def drop_keyspace(url: str) -> None:
    """Per-test keyspaces would pile up on a small test heap (a 512 MB node ran out of heap
    at about 80 of them) and slow every schema change."""
    from cassandra.cluster import Cluster

    keyspace = url.split("/")[3].split("?")[0]
    cluster = Cluster([CASSANDRA_HOST], port=CASSANDRA_PORT, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=30)
    finally:
        cluster.shutdown()

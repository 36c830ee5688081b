"""Which datacentres hold a Cassandra store, and how many copies each: the replication map.

A store URL names the client's datacentre (``dc=beijing``) and, for a keyspace kept in
several datacentres, the replication map
(``replication=changchun:1,beijing:1,shanghai:1``): the keyspace is created with
``NetworkTopologyStrategy`` and that many replicas in each datacentre. What the
consistency level then promises (`ledger.stores.cassandra` reads and writes at one level):

* ``LOCAL_QUORUM`` (the default): a majority of the replicas *in the client's datacentre*
  acknowledge; the other datacentres get the write asynchronously (and, if one is
  unreachable, as a hint stored on the coordinator). Fast and available while the local
  datacentre is, but a datacentre lost together with its disks can take acknowledged
  writes with it: those the others had not received yet.
* ``EACH_QUORUM``: a majority in *every* datacentre of the map acknowledges, so every
  acknowledged write survives the loss of any one datacentre, and a write fails
  (nothing acknowledged) while any datacentre is unreachable.

Restoring a region lost with its datacentre is opening its keyspace through another
datacentre: the same URL with that datacentre's host and ``dc=`` (see the README).

This module only parses and checks; it raises ``ValueError`` with the message the caller
reports (`ledger.stores.cassandra` turns it into its own typed errors). A datacentre name
is also written into CQL (the keyspace's replication), so only a plain name gets through.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

Replication = tuple[tuple[str, int], ...]
"""(datacentre, replicas) pairs, in the order given."""

MAX_RF_PER_DC = 9
"""More replicas of one keyspace in one datacentre than this is a typo, not a design."""
MAX_DATACENTRES = 32

_DC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_COUNT = re.compile(r"^[0-9]+\Z")  # ASCII digits only: str.isdigit() takes '²', which int() refuses


def check_dc_name(name: str, what: str = "datacentre") -> str:
    """`name` if it is a plain datacentre name (letters, digits, ``_ . -``; at most 64)."""
    if not _DC_NAME.match(name):
        msg = (f"invalid {what} {name!r}: a datacentre name is a letter or digit, then letters, digits, "
               "'_', '.' or '-' (at most 64 characters)")
        raise ValueError(msg)
    return name


def check_rf(value: int, where: str) -> int:
    """`value` if it is a sane replica count for one datacentre (1..MAX_RF_PER_DC)."""
    if not 1 <= value <= MAX_RF_PER_DC:
        msg = f"replication factor {value} for {where} is out of range: expected 1..{MAX_RF_PER_DC}"
        raise ValueError(msg)
    return value


def parse_replication(text: str) -> Replication:
    """``dc:rf,dc:rf,...`` as `Replication`; ValueError naming the first thing wrong."""
    items = text.split(",")
    if not text.strip() or len(items) > MAX_DATACENTRES:
        msg = (f"invalid replication map {text!r}: expected 1..{MAX_DATACENTRES} "
               "'datacentre:replicas' pairs separated by commas, e.g. changchun:1,beijing:1,shanghai:1")
        raise ValueError(msg)
    pairs: list[tuple[str, int]] = []
    for item in items:
        name, sep, count = (part.strip() for part in item.partition(":"))
        if not sep or not _COUNT.match(count):
            msg = f"invalid replication map {text!r}: {item.strip()!r} is not 'datacentre:replicas'"
            raise ValueError(msg)
        name = check_dc_name(name, "datacentre in the replication map")
        if any(name == seen for seen, _ in pairs):
            msg = f"invalid replication map {text!r}: datacentre {name!r} is given twice"
            raise ValueError(msg)
        replicas = int(count) if len(count) <= 3 else MAX_RF_PER_DC + 1  # 10**5000 need not be built
        pairs.append((name, check_rf(replicas, f"datacentre {name!r}")))
    return tuple(pairs)


def format_replication(replication: Replication) -> str:
    """The URL form of `replication` (what `parse_replication` reads)."""
    return ",".join(f"{dc}:{rf}" for dc, rf in replication)


def replication_cql(replication: Mapping[str, int]) -> str:
    """The CQL replication clause of a keyspace with `replication` (names already checked)."""
    per_dc = "".join(f", '{check_dc_name(dc)}': {int(rf)}" for dc, rf in replication.items())
    return f"{{'class': 'NetworkTopologyStrategy'{per_dc}}}"


def nodes_per_dc(hosts: Iterable[Any]) -> Counter[str]:
    """How many nodes each datacentre has, from the driver's host metadata (up or down)."""
    return Counter(str(h.datacenter) for h in hosts if h.datacenter)


def check_against_cluster(replication: Mapping[str, int], local_dc: str, nodes: Mapping[str, int]) -> None:
    """Refuse a replication the cluster cannot hold: a datacentre it does not have, more
    replicas than a datacentre has nodes (every write would then fail), or a client
    datacentre with no replica (``LOCAL_*`` levels would have nothing to wait for)."""
    known = ", ".join(f"{dc} ({n} node{'s' if n != 1 else ''})" for dc, n in sorted(nodes.items()))
    for dc, rf in replication.items():
        if dc not in nodes:
            msg = f"replication names datacentre {dc!r}, which the cluster does not have; its datacentres: {known}"
            raise ValueError(msg)
        if rf > nodes[dc]:
            msg = (f"replication asks for {rf} replicas in datacentre {dc!r}, which has {nodes[dc]} "
                   f"node{'s' if nodes[dc] != 1 else ''}: every write would fail; its datacentres: {known}")
            raise ValueError(msg)
    if local_dc not in replication:
        msg = (f"this client's datacentre {local_dc!r} holds no replica in the replication map "
               f"({format_replication(tuple(replication.items()))}): give dc= one of its datacentres")
        raise ValueError(msg)


def keyspace_factors(keyspace_metadata: Any) -> dict[str, int]:
    """Replicas per datacentre of an existing keyspace (``{"*": n}`` for SimpleStrategy)."""
    strategy = getattr(keyspace_metadata, "replication_strategy", None)
    per_dc = getattr(strategy, "dc_replication_factors", None)
    if isinstance(per_dc, Mapping):
        return {str(k): int(v) for k, v in per_dc.items()}
    rf = getattr(strategy, "replication_factor", None)
    return {"*": int(rf)} if rf is not None else {}


__all__ = ["MAX_DATACENTRES", "MAX_RF_PER_DC", "Replication", "check_against_cluster", "check_dc_name",
           "check_rf", "format_replication", "keyspace_factors", "nodes_per_dc", "parse_replication",
           "replication_cql"]

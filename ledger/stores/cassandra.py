"""Apache Cassandra persistence module for the ``eventsourcing`` library (9.5.x).

Set ``PERSISTENCE_MODULE=ledger.stores.cassandra`` (or use :func:`environment_from_url`)
and any eventsourcing ``Application`` stores its events in Cassandra, exactly as with
``eventsourcing.sqlite`` or ``eventsourcing.postgres``.

Settings (environment variables, optionally prefixed with the upper-cased application
name like every eventsourcing setting):

==============================  ===========================================================
``CASSANDRA_HOSTS``             comma-separated contact points (default ``127.0.0.1``)
``CASSANDRA_PORT``              CQL port (default ``9042``)
``CASSANDRA_KEYSPACE``          keyspace (default ``geoledger``), a CQL identifier
``CASSANDRA_DC``                local datacentre; routing uses only its nodes and a new
                                keyspace is replicated there (default: the contact point's DC)
``CASSANDRA_RF``                replication factor in that DC for a new keyspace (1)
``CASSANDRA_REPLICATION``       instead of ``CASSANDRA_RF``: replicas per datacentre of a new
                                keyspace, ``dc:rf,dc:rf`` (`ledger.stores.cassandra_topology`);
                                an existing keyspace must have exactly this replication
``CASSANDRA_CONSISTENCY``       consistency of reads and writes (``LOCAL_QUORUM``; ``EACH_QUORUM``
                                waits for a majority in every datacentre)
``CASSANDRA_SERIAL_CONSISTENCY`` paxos consistency of the lightweight transactions
                                (``LOCAL_SERIAL`` for ``LOCAL_*`` levels, else ``SERIAL``)
``CASSANDRA_CONNECT_TIMEOUT``   seconds to connect to a host before giving up (5)
``CASSANDRA_REQUEST_TIMEOUT``   seconds for one request, client side (12)
``CASSANDRA_USERNAME`` / ``CASSANDRA_PASSWORD``  optional password authentication
``ORIGINATOR_ID_TYPE``          ``uuid`` (default) or ``text``, as in eventsourcing.sqlite
``CREATE_TABLE``                create keyspace and tables on first open (default ``yes``)
==============================  ===========================================================

Design
======

Cassandra has no multi-partition transactions, yet eventsourcing needs three things:
several events (of several aggregates) written atomically or not at all, optimistic
concurrency on ``(originator_id, originator_version)``, and, for applications, a
gap-free totally ordered notification log.  This module gets all three from **one
commit log per events table** whose rows are claimed with Cassandra lightweight
transactions (Paxos), then **materialises** each committed row into query tables.

Tables (``<t>`` is the events table name, e.g. ``stored_events``; all in one keyspace
replicated with ``NetworkTopologyStrategy {dc: rf}``):

* ``<t>_log (bucket, seq) -> txn_id, first_id, events, tracking_name, tracking_id`` —
  the commit log.  ``seq`` = 1, 2, 3, ... numbers transactions; ``bucket = seq //
  10000`` bounds partition size.  A row holds *all* the events of one ``insert_events``
  call (and the tracking record of a process recorder).  Rows are immutable.
* ``<t> ((originator_id), originator_version) -> topic, state`` — aggregate sequences,
  read by ``select_events``.
* ``<t>_notifications ((bucket), id) -> originator_id, originator_version, topic,
  state`` — the application sequence, ``bucket = id // 10000``, read by
  ``select_notifications``.
* ``<t>_tracking (application_name) -> notification_id`` — read by a process
  recorder's ``max_tracking_id``.
* ``<prefix>_tracking (application_name) -> notification_id, writer`` — the
  stand-alone tracking recorder (its own LWT, see below).

The aggregate, application and process recorders all create and materialise the first
four tables (they differ only in what ``insert_events`` accepts and returns), so
whichever of them shares an events table can roll forward any row of its log; e.g.
``aggregate_recorder("events")`` and ``application_recorder()`` both use
``stored_events`` and never leave a gap in its notification log.

**Commit protocol** (``_commit``; at most one commit per log at a time inside a process,
guarded by a lock, so that threads do not fight over Paxos; across processes the LWT
decides):

1. Know the *head*: the last committed log row ``N`` (found with a ``SERIAL`` read of
   the last row of the last bucket, or remembered from this process's previous
   commit), and make sure it is materialised (step 4 applied to it; idempotent).
2. Check for conflicts against the materialised tables: none of the new
   ``(originator_id, originator_version)`` may exist in ``<t>`` (and, for a process
   recorder, the new tracking id must exceed the stored one), and the batch itself must
   not repeat a key.  A conflict raises eventsourcing's ``IntegrityError``.
3. Claim slot ``N + 1`` with ``INSERT ... IF NOT EXISTS``, the row carrying a fresh
   random ``txn_id`` and ``first_id = first_id(N) + len(events(N))``.  If another
   writer already has slot ``N + 1`` the LWT returns that row: materialise it, make it
   the head, go to 2.  (So conflicts with anything committed meanwhile are found.)
4. Materialise the committed row: write its events into ``<t>``, its tracking record
   into ``<t>_tracking`` and *then* its notifications into ``<t>_notifications``
   (ascending buckets, one single-partition batch each).  These are plain idempotent
   writes at ``CASSANDRA_CONSISTENCY`` with the deterministic write timestamp
   ``10**15 + seq``, so any writer may redo them at any time (roll-forward of a writer
   that died between steps 3 and 4), and redoing an *older* row can never overwrite a
   newer tracking position.

Why it is sound.  Slot ``k + 1`` is only ever claimed by a writer that has read slot
``k`` (steps 1/3) and materialised it (and, by induction, the writer of ``k``
materialised ``k - 1`` before claiming ``k``), so when slot ``N + 1`` is claimed every
row ``<= N`` is readable in the query tables and the step-2 check has seen every event
committed before.  Two writers can never both commit the same ``(originator_id,
originator_version)``: Paxos lets only one of them own slot ``N + 1``, and the loser
re-checks against the winner's events.  Reads and writes use the same consistency, so
``CASSANDRA_CONSISTENCY`` must make reads see acknowledged writes (``QUORUM`` /
``LOCAL_QUORUM`` / ``ALL``, or ``ONE`` with ``rf = 1``); weaker settings are refused.
With writers in more than one datacentre use ``QUORUM`` + ``SERIAL``; ``LOCAL_*``
levels (the default) are right when all writers of a keyspace are in one DC.

**Gap-free total order.** Notification ids are assigned in the log row itself:
``first_id(N + 1) = first_id(N) + len(events(N))``, starting at 1, and only the one
writer that wins slot ``N + 1`` assigns them, so ids are contiguous, never reused,
and in commit order (a transaction's events are consecutive, so sequences of two
concurrent transactions never interleave).

**A notification id never becomes visible before its events are readable.** Step 4
writes a row's events (and tracking) and waits for their acknowledgement *before*
writing its notifications, writes notification partitions in ascending id order, and
the writer of row ``N + 1`` finished materialising ``N`` before claiming ``N + 1``.
So whenever notification ``k`` is readable, the events of ``k`` and every notification
below ``k`` are readable too.  ``select_notifications`` additionally stops at the first
missing id (a writer still materialising, or one that died before step 4 whose row
the next writer will roll forward), so a reader can see a prefix that is too short,
never a gap that is later filled.

**Timeouts cannot double-apply.** The LWT of step 3 is never retried blindly: after
a write timeout, a client timeout, a lost connection, or even ``Unavailable`` (which
Paxos can report from its commit phase, after the value was chosen), the outcome is
unknown, so the
recorder reads slot ``N + 1`` at ``SERIAL`` consistency (which completes or
supersedes any in-flight Paxos proposal) and compares ``txn_id``: its own id means the
write happened (it is materialised and its notification ids returned, once); another
id means someone else won the slot (continue at step 2, where the recorder's own
events cannot be found, because they were never written); an empty slot is claimed
again with the *same* ``txn_id`` and content, so a late completion of the first
attempt and the retry are the same row.  A transaction therefore lands in at most one
slot.  If even the ``SERIAL`` reads keep failing, ``OperationalError`` says the outcome
is unknown; a caller who then retries with a new call gets ``IntegrityError`` if the
first one did commit — never a second copy.  Driver-level retries are enabled only for
idempotent statements (reads and the step-4 writes).

**Tracking.** A process recorder records tracking inside its log row (events and
tracking are one atomic commit); a tracking-only ``insert_tracking`` is a log row with
no events.  The stand-alone tracking recorder stores one row per upstream application,
advanced with compare-and-set LWTs (``IF NOT EXISTS``, then ``IF notification_id = ?
AND writer = ?``) carrying a random ``writer`` token so that an unknown outcome is
resolved the same way as above.  As in eventsourcing's single-row tracking, an id not
greater than the recorded one raises ``IntegrityError``.

Costs and limits.  Commits to one events table are serialised (as with
eventsourcing.postgres, which locks the table); a commit costs one Paxos round plus a
few reads and writes (about 4 ms on one local node).  With ``SERIAL`` and writers in
several datacentres every commit is a cross-DC Paxos round.  Snapshots (an aggregate
recorder) go through a log of their own.  Events are stored three times (log, aggregate
table, notification table).  One ``insert_events`` call is one log row, so it must fit
Cassandra's maximum mutation size (half the commit-log segment, 16 MiB by default).
The deterministic write timestamps (2001-09-09 + ``seq`` microseconds) need Cassandra's
timestamp guardrails (``minimum_timestamp_*_threshold``) left off, as they are by
default.  Subscriptions poll (``CassandraSubscription``), waking early for commits made
in the same process.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, unquote, urlsplit
from uuid import UUID, uuid4

from cassandra import (
    AlreadyExists,
    AuthenticationFailed,
    ConsistencyLevel,
    CoordinationFailure,
    DriverException,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    RequestValidationException,
    Unauthorized,
    Unavailable,
    WriteTimeout,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.connection import ConnectionException
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    RetryPolicy,
    TokenAwarePolicy,
    WriteType,
)
from cassandra.query import (
    BatchStatement,
    BatchType,
    PreparedStatement,
    dict_factory,
)
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    InfrastructureFactory,
    IntegrityError,
    ListenNotifySubscription,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool

from ledger.errors import StoreError, StoreURLError
from ledger.redact import redact
from ledger.stores.cassandra_topology import (
    Replication,
    check_against_cluster,
    check_dc_name,
    check_rf,
    format_replication,
    keyspace_factors,
    nodes_per_dc,
    parse_replication,
    replication_cql,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "CassandraAggregateRecorder",
    "CassandraApplicationRecorder",
    "CassandraConnectError",
    "CassandraDatastore",
    "CassandraFactory",
    "CassandraProcessRecorder",
    "CassandraSettings",
    "CassandraSettingsError",
    "CassandraSubscription",
    "CassandraTrackingRecorder",
    "Factory",
    "environment_from_url",
]

PERSISTENCE_MODULE = "ledger.stores.cassandra"

DEFAULT_HOSTS = "127.0.0.1"
DEFAULT_PORT = 9042
DEFAULT_KEYSPACE = "geoledger"
DEFAULT_RF = 1
DEFAULT_CONSISTENCY = "LOCAL_QUORUM"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 12.0

#: Log transactions per log partition, and notifications per notification partition.
#: Part of the on-disk format: recorded in the table comments and checked on open.
LOG_BUCKET_SIZE = 10_000
NOTIFICATION_BUCKET_SIZE = 10_000
FORMAT_TAG = "geoledger-cassandra-v1"

#: Base of the deterministic write timestamps of materialised rows (microseconds).
_TS_BASE = 10**15

#: Consistency levels accepted for reads and writes.
READ_WRITE_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
SERIAL_LEVELS = ("SERIAL", "LOCAL_SERIAL")
_WEAK_LEVELS = {"ONE": 1, "TWO": 2, "THREE": 3, "LOCAL_ONE": 1}

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MAX_NAME_LEN = 48  # Cassandra's limit for keyspace and table names.

#: Errors after which a write may or may not have been applied.
_UNCERTAIN = (WriteTimeout, OperationTimedOut, ConnectionException, CoordinationFailure)
#: For a lightweight transaction even these are treated as "outcome unknown": the
#: coordinator can report Unavailable from the Paxos commit phase, after the value was
#: accepted (and so decided).  Resolving costs a SERIAL read; being wrong costs a copy.
_LWT_UNCERTAIN = (*_UNCERTAIN, Unavailable, NoHostAvailable)

URL_PARAMETERS = {
    "dc": "CASSANDRA_DC",
    "rf": "CASSANDRA_RF",
    "replication": "CASSANDRA_REPLICATION",
    "consistency": "CASSANDRA_CONSISTENCY",
    "serial_consistency": "CASSANDRA_SERIAL_CONSISTENCY",
    "connect_timeout": "CASSANDRA_CONNECT_TIMEOUT",
    "request_timeout": "CASSANDRA_REQUEST_TIMEOUT",
}


class CassandraSettingsError(StoreError, ValueError):
    """A Cassandra setting (environment variable) has an invalid value."""


class CassandraConnectError(OperationalError, StoreError):
    """Cassandra cannot be reached or used (hosts down, keyspace missing, auth)."""


# ---------------------------------------------------------------------------- settings


def _check_identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value) or len(value) > _MAX_NAME_LEN:
        msg = (
            f"invalid {what} {value!r}: must be a CQL identifier (a letter, then letters, "
            f"digits or underscores, at most {_MAX_NAME_LEN} characters)"
        )
        raise CassandraSettingsError(msg)
    return value.lower()


def _parse_positive_int(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or str(number) != value.strip():
        msg = f"invalid {what} {value!r}: expected a positive integer"
        raise CassandraSettingsError(msg)
    return number


def _parse_timeout(value: str, what: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (0 < seconds <= 3600):
        msg = f"invalid {what} {value!r}: expected seconds, a number in (0, 3600]"
        raise CassandraSettingsError(msg)
    return seconds


def _parse_level(value: str, what: str, allowed: Sequence[str]) -> str:
    name = value.strip().upper()
    if name not in allowed:
        msg = f"invalid {what} {value!r}: expected one of {', '.join(allowed)}"
        raise CassandraSettingsError(msg)
    return name


def _parse_hosts(value: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in value.split(",") if h.strip())
    if not hosts:
        msg = "no Cassandra host given (CASSANDRA_HOSTS is empty)"
        raise CassandraSettingsError(msg)
    for host in hosts:
        if any(c.isspace() for c in host) or "/" in host or "@" in host:
            msg = f"invalid Cassandra host {host!r}"
            raise CassandraSettingsError(msg)
    return hosts


@dataclass(frozen=True)
class CassandraSettings:
    """Connection and consistency settings, validated."""

    hosts: tuple[str, ...] = (DEFAULT_HOSTS,)
    port: int = DEFAULT_PORT
    keyspace: str = DEFAULT_KEYSPACE
    dc: str | None = None
    rf: int = DEFAULT_RF
    consistency: str = DEFAULT_CONSISTENCY
    serial_consistency: str = "LOCAL_SERIAL"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    username: str | None = None
    password: str | None = None
    replication: Replication | None = None

    @property
    def where(self) -> str:
        return f"{','.join(self.hosts)}:{self.port}"

    def replication_for(self, dc: str) -> dict[str, int]:
        """Replicas per datacentre of a new keyspace, `dc` being this client's datacentre."""
        return dict(self.replication) if self.replication is not None else {dc: self.rf}

    @classmethod
    def from_env(cls, env: Environment) -> CassandraSettings:
        hosts = _parse_hosts(env.get("CASSANDRA_HOSTS") or DEFAULT_HOSTS)
        port_str = env.get("CASSANDRA_PORT") or str(DEFAULT_PORT)
        port = _parse_positive_int(port_str, "CASSANDRA_PORT")
        if port > 65535:
            msg = f"invalid CASSANDRA_PORT {port_str!r}: expected 1..65535"
            raise CassandraSettingsError(msg)
        keyspace = _check_identifier(env.get("CASSANDRA_KEYSPACE") or DEFAULT_KEYSPACE, "keyspace name")
        if keyspace.startswith("system"):
            msg = f"invalid keyspace name {keyspace!r}: system keyspaces are reserved"
            raise CassandraSettingsError(msg)
        dc = (env.get("CASSANDRA_DC") or "").strip() or None
        rf = _parse_positive_int(env.get("CASSANDRA_RF") or str(DEFAULT_RF), "CASSANDRA_RF")
        replication = _parse_topology(dc, rf, env.get("CASSANDRA_RF"), env.get("CASSANDRA_REPLICATION"))
        consistency = _parse_level(
            env.get("CASSANDRA_CONSISTENCY") or DEFAULT_CONSISTENCY,
            "CASSANDRA_CONSISTENCY",
            READ_WRITE_LEVELS,
        )
        default_serial = "LOCAL_SERIAL" if consistency.startswith("LOCAL_") else "SERIAL"
        serial = _parse_level(
            env.get("CASSANDRA_SERIAL_CONSISTENCY") or default_serial,
            "CASSANDRA_SERIAL_CONSISTENCY",
            SERIAL_LEVELS,
        )
        connect_timeout = _parse_timeout(
            env.get("CASSANDRA_CONNECT_TIMEOUT") or str(DEFAULT_CONNECT_TIMEOUT),
            "CASSANDRA_CONNECT_TIMEOUT",
        )
        request_timeout = _parse_timeout(
            env.get("CASSANDRA_REQUEST_TIMEOUT") or str(DEFAULT_REQUEST_TIMEOUT),
            "CASSANDRA_REQUEST_TIMEOUT",
        )
        return cls(
            hosts=hosts,
            port=port,
            keyspace=keyspace,
            dc=dc,
            rf=rf,
            consistency=consistency,
            serial_consistency=serial,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            username=env.get("CASSANDRA_USERNAME") or None,
            password=env.get("CASSANDRA_PASSWORD") or None,
            replication=replication,
        )


def _parse_topology(dc: str | None, rf: int, rf_given: str | None, text: str | None) -> Replication | None:
    """Check CASSANDRA_DC / CASSANDRA_RF / CASSANDRA_REPLICATION together; the map, if given."""
    try:
        if dc is not None:
            check_dc_name(dc, "CASSANDRA_DC")
        check_rf(rf, "CASSANDRA_RF")
        if not text:
            return None
        if rf_given:
            msg = "give CASSANDRA_RF (one datacentre) or CASSANDRA_REPLICATION (several), not both"
            raise ValueError(msg)
        replication = parse_replication(text)
    except ValueError as e:
        raise CassandraSettingsError(str(e)) from None
    if dc is not None and dc not in dict(replication):
        msg = (f"CASSANDRA_DC {dc!r} holds no replica in CASSANDRA_REPLICATION {format_replication(replication)!r}: "
               "the client's datacentre must be one of the map's")
        raise CassandraSettingsError(msg)
    return replication


def environment_from_url(url: str) -> dict[str, str]:
    """Parse ``cassandra://[user:password@]host[,host2][:port]/keyspace?dc=..&rf=..``.

    Returns the environment variables (``PERSISTENCE_MODULE`` included) that make an
    eventsourcing application use this module with those settings.  Query parameters:
    ``dc``, ``rf`` or ``replication`` (``dc:rf,dc:rf``), ``consistency``,
    ``serial_consistency``, ``connect_timeout``, ``request_timeout``.  Raises
    :class:`ledger.errors.StoreURLError` for a malformed URL.  The one parser of Cassandra
    store URLs: the region stores (`region.cassandra`) use it too.  An error quotes the
    URL with its password masked (`ledger.redact`).
    """
    try:
        return _environment_from_url(url)
    except StoreURLError as e:
        if not isinstance(url, str):
            raise
        raise StoreURLError(redact(str(e), url)) from None


def _environment_from_url(url: str) -> dict[str, str]:
    if not isinstance(url, str):
        msg = f"store URL must be a string, not {type(url).__name__}"
        raise StoreURLError(msg)
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:
        msg = f"malformed Cassandra URL {url!r}: {e}"
        raise StoreURLError(msg) from None
    if parts.scheme.lower() != "cassandra":
        msg = f"not a Cassandra URL (scheme {parts.scheme!r}, expected 'cassandra'): {url!r}"
        raise StoreURLError(msg)
    if parts.fragment:
        msg = f"Cassandra URL must not have a fragment: {url!r}"
        raise StoreURLError(msg)
    netloc = parts.netloc
    env: dict[str, str] = {"PERSISTENCE_MODULE": PERSISTENCE_MODULE}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        if not user or not sep:
            msg = f"Cassandra URL credentials must be 'user:password@': {url!r}"
            raise StoreURLError(msg)
        env["CASSANDRA_USERNAME"] = unquote(user)
        env["CASSANDRA_PASSWORD"] = unquote(password)
    hosts, port = _split_hosts_and_port(netloc, url)
    env["CASSANDRA_HOSTS"] = ",".join(hosts)
    env["CASSANDRA_PORT"] = str(port)

    path = parts.path
    keyspace = path[1:] if path.startswith("/") else path
    if not keyspace:
        msg = f"Cassandra URL has no keyspace (expected cassandra://host/keyspace): {url!r}"
        raise StoreURLError(msg)
    try:
        env["CASSANDRA_KEYSPACE"] = _check_identifier(unquote(keyspace), "keyspace name")
    except CassandraSettingsError as e:
        msg = f"{e} in {url!r}"
        raise StoreURLError(msg) from None

    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        query = [] if not parts.query else [("", parts.query)]
    seen: set[str] = set()
    for key, value in query:
        if key not in URL_PARAMETERS:
            msg = f"unknown parameter {key!r} in Cassandra URL {url!r}; known: {', '.join(sorted(URL_PARAMETERS))}"
            raise StoreURLError(msg)
        if key in seen:
            msg = f"parameter {key!r} given twice in Cassandra URL {url!r}"
            raise StoreURLError(msg)
        if not value.strip():  # "consistency=" must not quietly mean the default
            msg = f"empty {key} in Cassandra URL {url!r}"
            raise StoreURLError(msg)
        seen.add(key)
        env[URL_PARAMETERS[key]] = value
    # Validate all values the same way the factory will, but report as URL errors.
    try:
        settings = CassandraSettings.from_env(Environment(env=env))
    except CassandraSettingsError as e:
        msg = f"{e} in Cassandra URL {url!r}"
        raise StoreURLError(msg) from None
    for key, name in URL_PARAMETERS.items():
        if key in seen:
            value = getattr(settings, key)
            env[name] = format_replication(value) if key == "replication" else str(value)
    return env


def _split_hosts_and_port(netloc: str, url: str) -> tuple[list[str], int]:
    if not netloc:
        msg = f"Cassandra URL has no host: {url!r}"
        raise StoreURLError(msg)
    hosts: list[str] = []
    ports: set[int] = set()
    for item in netloc.split(","):
        if not item:
            msg = f"empty host in Cassandra URL {url!r}"
            raise StoreURLError(msg)
        port_str: str | None = None
        if item.startswith("["):  # [IPv6]:port
            host, sep, rest = item[1:].partition("]")
            if not sep or not host:
                msg = f"bad IPv6 host {item!r} in Cassandra URL {url!r}"
                raise StoreURLError(msg)
            if rest:
                if not rest.startswith(":"):
                    msg = f"bad host {item!r} in Cassandra URL {url!r}"
                    raise StoreURLError(msg)
                port_str = rest[1:]
        else:
            host, sep, port_part = item.partition(":")
            if sep:
                port_str = port_part
        if not host or not re.match(r"^[A-Za-z0-9._:-]+$", host):
            msg = f"bad host {host!r} in Cassandra URL {url!r}"
            raise StoreURLError(msg)
        if port_str is not None:
            if not port_str.isdigit() or not (1 <= int(port_str) <= 65535):
                msg = f"bad port {port_str!r} in Cassandra URL {url!r} (expected 1..65535)"
                raise StoreURLError(msg)
            ports.add(int(port_str))
        hosts.append(host)
    if len(ports) > 1:
        msg = f"all hosts of a Cassandra URL must use one port: {url!r}"
        raise StoreURLError(msg)
    return hosts, (ports.pop() if ports else DEFAULT_PORT)


# ---------------------------------------------------------------------------- driver


class _IdempotentOnlyRetryPolicy(RetryPolicy):
    """Retry what cannot double-apply: reads, and statements marked idempotent.

    Lightweight transactions are never retried by the driver; the recorders resolve
    their unknown outcomes themselves (see the module docstring).
    """

    def on_read_timeout(
        self,
        query: Any,
        consistency: Any,
        required_responses: int,
        received_responses: int,
        data_retrieved: bool,  # noqa: FBT001
        retry_num: int,
    ) -> tuple[int, Any]:
        if retry_num == 0 and received_responses >= required_responses:
            return self.RETRY, consistency
        return self.RETHROW, None

    def on_write_timeout(
        self,
        query: Any,
        consistency: Any,
        write_type: Any,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[int, Any]:
        idempotent = bool(query is not None and getattr(query, "is_idempotent", False))
        if retry_num == 0 and idempotent and write_type != WriteType.CAS:
            return self.RETRY, consistency
        return self.RETHROW, None

    def on_unavailable(
        self,
        query: Any,
        consistency: Any,
        required_replicas: int,
        alive_replicas: int,
        retry_num: int,
    ) -> tuple[int, Any]:
        # The coordinator did not start the request: safe to try another one.
        return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)

    def on_request_error(self, query: Any, consistency: Any, error: Exception, retry_num: int) -> tuple[int, Any]:
        idempotent = bool(query is not None and getattr(query, "is_idempotent", False))
        if retry_num == 0 and idempotent:
            return self.RETRY_NEXT_HOST, None
        return self.RETHROW, None


def _level(name: str) -> int:
    return cast(int, getattr(ConsistencyLevel, name))


def _translate(e: BaseException, what: str, where: str) -> PersistenceError:
    """Map a driver exception to eventsourcing's persistence exceptions."""
    if isinstance(e, PersistenceError):
        return e
    text = f"{what} on Cassandra at {where}: {type(e).__name__}: {e}"
    if isinstance(e, NoHostAvailable):
        return CassandraConnectError(text)
    if isinstance(e, (Unauthorized, AuthenticationFailed)):
        return CassandraConnectError(text)
    if isinstance(e, InvalidRequest):
        if "does not exist" in str(e) or "unconfigured table" in str(e).lower():
            return CassandraConnectError(text)
        return ProgrammingError(text)
    if isinstance(e, RequestValidationException):
        return ProgrammingError(text)
    if isinstance(e, (Unavailable, ReadTimeout, WriteTimeout, OperationTimedOut)):
        return OperationalError(text)
    if isinstance(e, (DriverException, ConnectionException)):
        return OperationalError(text)
    return DatabaseError(text)


class CassandraDatastore:
    """One driver ``Cluster``/``Session`` plus the per-log commit state of a process."""

    def __init__(
        self,
        settings: CassandraSettings,
        *,
        create_keyspace: bool = True,
        originator_id_type: Literal["uuid", "text"] = "uuid",
    ):
        self.settings = settings
        self.originator_id_type: Literal["uuid", "text"] = originator_id_type
        self.keyspace = settings.keyspace
        self.consistency = _level(settings.consistency)
        self.serial_consistency = _level(settings.serial_consistency)
        self._prepared: dict[str, PreparedStatement] = {}
        self._prepare_lock = threading.Lock()
        self._logs: dict[str, _LogState] = {}
        self._logs_lock = threading.Lock()
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        load_balancing = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.dc))
        profile = ExecutionProfile(
            load_balancing_policy=load_balancing,
            retry_policy=_IdempotentOnlyRetryPolicy(),
            consistency_level=self.consistency,
            serial_consistency_level=self.serial_consistency,
            request_timeout=settings.request_timeout,
            row_factory=dict_factory,
        )
        auth = None
        if settings.username is not None:
            auth = PlainTextAuthProvider(username=settings.username, password=settings.password or "")
        self.cluster = Cluster(
            contact_points=list(settings.hosts),
            port=settings.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=settings.connect_timeout,
            control_connection_timeout=settings.connect_timeout,
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 30.0),
            auth_provider=auth,
            idle_heartbeat_interval=15,
            idle_heartbeat_timeout=max(5.0, settings.request_timeout),
        )
        deadline = time.monotonic() + settings.connect_timeout * 2 + 2
        try:
            self.session: Session = self._connect(deadline)
        except BaseException:
            self.cluster.shutdown()
            raise
        try:
            self._open_keyspace(create=create_keyspace)
        except BaseException:
            self.close()
            raise
        # Shut the driver's threads down if the datastore is garbage-collected unclosed.
        self._finalizer = weakref.finalize(self, self.cluster.shutdown)

    def _connect(self, deadline: float) -> Session:
        result: dict[str, Any] = {}

        def connect() -> None:
            try:
                result["session"] = self.cluster.connect()
            except BaseException as e:  # noqa: BLE001
                result["error"] = e

        # The driver bounds each host by connect_timeout; the thread bounds the whole.
        thread = threading.Thread(target=connect, daemon=True, name="cassandra-connect")
        thread.start()
        thread.join(max(0.1, deadline - time.monotonic()))
        where = self.settings.where
        if thread.is_alive():
            msg = (
                f"cannot connect to Cassandra at {where}: no answer within "
                f"{self.settings.connect_timeout:g} s (CASSANDRA_CONNECT_TIMEOUT)"
            )
            raise CassandraConnectError(msg)
        if "error" in result:
            e = result["error"]
            detail: object = e
            if isinstance(e, NoHostAvailable):
                errors = e.errors
                if isinstance(errors, Mapping) and errors:
                    detail = "; ".join(f"{h}: {err}" for h, err in errors.items())
                dcs = sorted({str(h.datacenter) for h in self.cluster.metadata.all_hosts() if h.datacenter})
                if self.settings.dc is not None and dcs and self.settings.dc not in dcs:
                    detail = (
                        f"datacentre {self.settings.dc!r} (CASSANDRA_DC) is not in the cluster; "
                        f"its datacentres are: {', '.join(dcs)}"
                    )
            msg = f"cannot connect to Cassandra at {where}: {detail}"
            raise CassandraConnectError(msg) from None
        return cast(Session, result["session"])

    def _open_keyspace(self, *, create: bool) -> None:
        ks = self.keyspace
        meta = self.cluster.metadata
        dcs = sorted({str(h.datacenter) for h in meta.all_hosts() if h.datacenter})
        if self.settings.dc is not None and dcs and self.settings.dc not in dcs:
            msg = (
                f"datacentre {self.settings.dc!r} (CASSANDRA_DC) is not in the Cassandra "
                f"cluster at {self.settings.where}; its datacentres are: {', '.join(dcs)}"
            )
            raise CassandraConnectError(msg)
        if ks not in meta.keyspaces:
            if not create:
                msg = f"keyspace {ks!r} does not exist on Cassandra at {self.settings.where} (and CREATE_TABLE is off)"
                raise CassandraConnectError(msg)
            dc = self.settings.dc or self._contact_dc()
            if dc is None:
                msg = f"cannot tell the datacentre of {self.settings.where}; set CASSANDRA_DC"
                raise CassandraConnectError(msg)
            replication = self.settings.replication_for(dc)
            try:
                check_against_cluster(replication, dc, nodes_per_dc(meta.all_hosts()))
            except ValueError as e:
                msg = f"cannot create keyspace {ks!r} on Cassandra at {self.settings.where}: {e}"
                raise CassandraSettingsError(msg) from None
            self.execute_ddl(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication_cql(replication)}")
        elif self.settings.replication is not None:
            have = keyspace_factors(meta.keyspaces[ks])
            if have != dict(self.settings.replication):
                msg = (
                    f"keyspace {ks!r} on Cassandra at {self.settings.where} is replicated {have}, but the "
                    f"store asks for {dict(self.settings.replication)}: give its replication (or change it "
                    "with ALTER KEYSPACE and a repair first)"
                )
                raise CassandraSettingsError(msg)
        self._check_consistency_is_sound()

    def _contact_dc(self) -> str | None:
        hosts = list(self.cluster.metadata.all_hosts())
        for host in hosts:
            if host.is_up and host.datacenter and host.address in self.settings.hosts:
                return cast(str, host.datacenter)
        for host in hosts:
            if host.is_up and host.datacenter:
                return cast(str, host.datacenter)
        return None

    def _check_consistency_is_sound(self) -> None:
        level = self.settings.consistency
        if level not in _WEAK_LEVELS:
            return
        ks_meta = self.cluster.metadata.keyspaces.get(self.keyspace)
        if ks_meta is None:
            return
        factors = keyspace_factors(ks_meta)
        if level == "LOCAL_ONE":
            dc = self.settings.dc or self._contact_dc() or ""
            rf = factors.get(dc, factors.get("*", 1))
        else:
            rf = sum(factors.values()) or 1
        if 2 * _WEAK_LEVELS[level] <= rf:
            msg = (
                f"CASSANDRA_CONSISTENCY={level} is unsound for keyspace {self.keyspace!r} "
                f"(replication {factors}): reads could miss acknowledged writes and "
                "optimistic concurrency would be lost; use LOCAL_QUORUM or QUORUM"
            )
            raise CassandraSettingsError(msg)

    # -- execution helpers ----------------------------------------------------------

    def prepare(self, cql: str, *, idempotent: bool) -> PreparedStatement:
        key = f"{int(idempotent)}{cql}"
        prepared = self._prepared.get(key)
        if prepared is None:
            with self._prepare_lock:
                prepared = self._prepared.get(key)
                if prepared is None:
                    try:
                        prepared = self.session.prepare(cql)
                    except Exception as e:
                        raise _translate(e, "preparing a statement", self.settings.where) from e
                    prepared.is_idempotent = idempotent
                    self._prepared[key] = prepared
        return prepared

    def execute(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        consistency: int | None = None,
        what: str = "query",
    ) -> list[dict[str, Any]]:
        """Run one statement; map driver errors to eventsourcing's exceptions."""
        try:
            return list(self.execute_raw(statement, params, consistency=consistency))
        except _UNCERTAIN + (Unavailable, ReadTimeout, NoHostAvailable, DriverException) as e:
            raise _translate(e, what, self.settings.where) from e

    def execute_raw(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        consistency: int | None = None,
    ) -> Any:
        """Run one statement; driver exceptions propagate unchanged."""
        if self._closed:
            msg = "Cassandra datastore is closed"
            raise OperationalError(msg)
        if isinstance(statement, PreparedStatement):
            statement = statement.bind(params or ())
            params = None
        if consistency is not None:
            statement.consistency_level = consistency
        return self.session.execute(statement, params)

    def execute_all(self, statements: Iterable[Any], *, what: str = "write") -> list[list[dict[str, Any]]]:
        """Run statements concurrently and wait for all; first error wins."""
        if self._closed:
            msg = "Cassandra datastore is closed"
            raise OperationalError(msg)
        futures = [self.session.execute_async(s) for s in statements]
        results: list[list[dict[str, Any]]] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(list(future.result()))
            except Exception as e:  # noqa: BLE001
                if error is None:
                    error = e
        if error is not None:
            raise _translate(error, what, self.settings.where) from error
        return results

    def execute_ddl(self, cql: str) -> None:
        try:
            self.session.execute(cql, timeout=max(60.0, self.settings.request_timeout))
        except AlreadyExists:
            pass
        except Exception as e:
            raise _translate(e, f"schema change {cql.split('(')[0].strip()!r}", self.settings.where) from e

    def table_comment(self, table: str) -> str | None:
        ks_meta = self.cluster.metadata.keyspaces.get(self.keyspace)
        table_meta = ks_meta.tables.get(table) if ks_meta is not None else None
        if table_meta is None:
            return None
        return cast("str | None", table_meta.options.get("comment"))

    def log_state(self, table: str) -> _LogState:
        with self._logs_lock:
            state = self._logs.get(table)
            if state is None:
                state = self._logs[table] = _LogState()
            return state

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._logs_lock:
                for state in self._logs.values():
                    state.notify_all()
            if self._finalizer is not None:
                self._finalizer()
            else:
                self.cluster.shutdown()

    def __enter__(self) -> CassandraDatastore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


class _LogState:
    """Per-process state of one commit log: the writer lock and the known head."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.head: _Txn | None = None
        self.last_notification_bucket = 0
        self._listeners: set[threading.Event] = set()
        self._listeners_lock = threading.Lock()

    def add_listener(self, event: threading.Event) -> None:
        with self._listeners_lock:
            self._listeners.add(event)

    def remove_listener(self, event: threading.Event) -> None:
        with self._listeners_lock:
            self._listeners.discard(event)

    def notify_all(self) -> None:
        with self._listeners_lock:
            for event in self._listeners:
                event.set()


_EventTuple = tuple[str, int, str, bytes]


@dataclass(frozen=True)
class _Txn:
    """One commit-log row."""

    seq: int
    txn_id: UUID | None
    first_id: int
    events: tuple[_EventTuple, ...]
    tracking_name: str | None = None
    tracking_id: int | None = None

    @property
    def next_id(self) -> int:
        return self.first_id + len(self.events)

    @property
    def timestamp(self) -> int:
        return _TS_BASE + self.seq

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> _Txn:
        events = tuple((str(e[0]), int(e[1]), str(e[2]), bytes(e[3])) for e in (row.get("events") or ()))
        return cls(
            seq=int(row["seq"]),
            txn_id=row.get("txn_id"),
            first_id=int(row["first_id"]),
            events=events,
            tracking_name=row.get("tracking_name"),
            tracking_id=row.get("tracking_id"),
        )


_EMPTY_LOG = _Txn(seq=0, txn_id=None, first_id=1, events=())


# ---------------------------------------------------------------------------- recorders


def _table_name(name: str) -> str:
    """A valid Cassandra table name derived from ``name`` (lower case, <= 48 chars)."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower())
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "t_" + cleaned
    if len(cleaned) > _MAX_NAME_LEN:
        import hashlib

        digest = hashlib.sha1(cleaned.encode()).hexdigest()[:8]  # noqa: S324
        cleaned = cleaned[: _MAX_NAME_LEN - 9] + "_" + digest
    return cleaned


class CassandraRecorder(Recorder):
    def __init__(self, datastore: CassandraDatastore, **kwargs: Any):
        assert isinstance(datastore, CassandraDatastore)
        super().__init__(**kwargs)
        self.datastore = datastore
        self.ks = datastore.keyspace
        self.originator_id_type: Literal["uuid", "text"] = datastore.originator_id_type

    def construct_create_table_statements(self) -> list[str]:
        return []

    def create_table(self) -> None:
        for statement in self.construct_create_table_statements():
            self.datastore.execute_ddl(statement)

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        if self.originator_id_type == "uuid":
            return UUID(originator_id)
        return originator_id

    @staticmethod
    def originator_id_text(originator_id: UUID | str) -> str:
        return str(originator_id)

    def _execute_lwt(self, stmt: PreparedStatement, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run a lightweight transaction (a seam for fault-injection tests)."""
        return list(self.datastore.execute_raw(stmt, params))


class CassandraAggregateRecorder(CassandraRecorder, AggregateRecorder):
    """Aggregate sequences, written through the commit log (see module docstring)."""

    #: Whether ``insert_events`` returns notification ids / accepts ``tracking=``.
    #: Every recorder class creates and materialises all four tables, so that any of
    #: them can roll forward any log row of a table it shares with another class.
    returns_notification_ids = False
    accepts_tracking = False

    def __init__(
        self,
        datastore: CassandraDatastore,
        events_table_name: str = "stored_events",
        **kwargs: Any,
    ):
        super().__init__(datastore, **kwargs)
        self.events_table_name = _table_name(events_table_name)
        base = self.events_table_name
        self.log_table_name = _table_name(base + "_log")
        self.notifications_table_name = _table_name(base + "_notifications")
        self.process_tracking_table_name = _table_name(base + "_tracking")
        self._log = datastore.log_state(f"{self.ks}.{self.log_table_name}")
        ks = self.ks
        self._cql_insert_log = (
            f"INSERT INTO {ks}.{self.log_table_name} (bucket, seq, txn_id, first_id, events,"
            " tracking_name, tracking_id) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        self._cql_select_slot = f"SELECT * FROM {ks}.{self.log_table_name} WHERE bucket = ? AND seq = ?"
        self._cql_select_last_txn = (
            f"SELECT * FROM {ks}.{self.log_table_name} WHERE bucket = ? ORDER BY seq DESC LIMIT 1"
        )
        self._cql_probe_log_bucket = f"SELECT seq FROM {ks}.{self.log_table_name} WHERE bucket = ? LIMIT 1"
        self._cql_insert_event = (
            f"INSERT INTO {ks}.{self.events_table_name} (originator_id, originator_version,"
            " topic, state) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._cql_versions_in_range = (
            f"SELECT originator_version FROM {ks}.{self.events_table_name} WHERE "
            "originator_id = ? AND originator_version >= ? AND originator_version <= ?"
        )
        self._cql_insert_notification = (
            f"INSERT INTO {ks}.{self.notifications_table_name} (bucket, id, originator_id,"
            " originator_version, topic, state) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._cql_insert_process_tracking = (
            f"INSERT INTO {ks}.{self.process_tracking_table_name} (application_name,"
            " notification_id) VALUES (?, ?) USING TIMESTAMP ?"
        )
        self._cql_select_process_tracking = (
            f"SELECT notification_id FROM {ks}.{self.process_tracking_table_name} WHERE application_name = ?"
        )

    # -- schema ---------------------------------------------------------------------

    def construct_create_table_statements(self) -> list[str]:
        ks = self.ks
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ks}.{self.events_table_name} ("
            "originator_id text, originator_version bigint, topic text, state blob, "
            "PRIMARY KEY ((originator_id), originator_version)) "
            "WITH CLUSTERING ORDER BY (originator_version ASC) "
            f"AND comment = '{FORMAT_TAG} events'"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ks}.{self.log_table_name} ("
            "bucket bigint, seq bigint, txn_id uuid, first_id bigint, "
            "events frozen<list<frozen<tuple<text, bigint, text, blob>>>>, "
            "tracking_name text, tracking_id bigint, "
            "PRIMARY KEY ((bucket), seq)) WITH CLUSTERING ORDER BY (seq ASC) "
            f"AND comment = '{FORMAT_TAG} log bucket={LOG_BUCKET_SIZE}'"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ks}.{self.notifications_table_name} ("
            "bucket bigint, id bigint, originator_id text, originator_version bigint, "
            "topic text, state blob, PRIMARY KEY ((bucket), id)) "
            "WITH CLUSTERING ORDER BY (id ASC) "
            f"AND comment = '{FORMAT_TAG} notifications bucket={NOTIFICATION_BUCKET_SIZE}'"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ks}.{self.process_tracking_table_name} ("
            "application_name text PRIMARY KEY, notification_id bigint) "
            f"WITH comment = '{FORMAT_TAG} process tracking'"
        )
        return statements

    def create_table(self) -> None:
        super().create_table()
        for table, expected in (
            (self.log_table_name, f"{FORMAT_TAG} log bucket={LOG_BUCKET_SIZE}"),
            (self.notifications_table_name, f"{FORMAT_TAG} notifications bucket={NOTIFICATION_BUCKET_SIZE}"),
        ):
            comment = self.datastore.table_comment(table)
            if comment is not None and comment != expected:
                msg = (
                    f"table {self.ks}.{table} was not written by this version "
                    f"of {__name__} (comment {comment!r}, expected {expected!r})"
                )
                raise CassandraConnectError(msg)

    # -- writing --------------------------------------------------------------------

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking") if self.accepts_tracking else None
        if not stored_events and tracking is None:
            return [] if self.returns_notification_ids else None
        txn = self._commit(stored_events, tracking)
        if not self.returns_notification_ids:
            return None
        return list(range(txn.first_id, txn.next_id))

    def _commit(self, stored_events: Sequence[StoredEvent], tracking: Tracking | None) -> _Txn:
        events = tuple(
            (
                self.originator_id_text(s.originator_id),
                int(s.originator_version),
                str(s.topic),
                bytes(s.state),
            )
            for s in stored_events
        )
        keys = [(e[0], e[1]) for e in events]
        if len(set(keys)) != len(keys):
            msg = "the same (originator_id, originator_version) appears twice in one write"
            raise IntegrityError(msg)
        txn_id = uuid4()
        log = self._log
        with log.lock:
            # Invariant: log.head, when set, is committed *and* materialised.
            head = log.head
            if head is None:
                head = self._find_head()
                self._materialize(head)
                log.head = head
            contended = 0
            while True:
                self._check_conflicts(events, tracking)
                txn = _Txn(
                    seq=head.seq + 1,
                    txn_id=txn_id,
                    first_id=head.next_id,
                    events=events,
                    tracking_name=tracking.application_name if tracking else None,
                    tracking_id=tracking.notification_id if tracking else None,
                )
                other = self._claim(txn)
                if other is None:
                    log.head = None  # committed, not yet materialised
                    self._materialize_committed(txn)
                    log.head = txn
                    log.notify_all()
                    return txn
                # Lost the slot: roll the winner forward, then re-check against it.
                self._materialize(other)
                head = log.head = other
                contended += 1
                if contended % 8 == 0:
                    # Far behind (another process is busy): jump to the current head.
                    head = self._find_head(start_bucket=head.seq // LOG_BUCKET_SIZE)
                    self._materialize(head)
                    log.head = head

    def _claim(self, txn: _Txn, attempts: int = 5) -> _Txn | None:
        """LWT-insert ``txn`` at its slot. None if it is there now, else the winner."""
        ds = self.datastore
        stmt = ds.prepare(self._cql_insert_log, idempotent=False)
        params = (
            txn.seq // LOG_BUCKET_SIZE,
            txn.seq,
            txn.txn_id,
            txn.first_id,
            list(txn.events),
            txn.tracking_name,
            txn.tracking_id,
        )
        for _ in range(attempts):
            try:
                rows = self._execute_lwt(stmt, params)
            except _LWT_UNCERTAIN:
                # The write may or may not have happened: ask Paxos, by txn_id.
                existing = self._resolve_slot(txn.seq)
                if existing is None:
                    continue  # Not there: claim again with the same txn_id and content.
            except DriverException as e:  # e.g. InvalidRequest: not applied.
                raise _translate(e, "committing events", ds.settings.where) from e
            else:
                row = rows[0] if rows else {}
                if row.get("[applied]"):
                    return None
                existing = _Txn.from_row(row)
            if existing.txn_id == txn.txn_id:
                return None  # Our earlier, timed-out attempt did happen.
            return existing
        msg = (
            f"could not commit log slot {txn.seq} of {self.ks}.{self.log_table_name} on "
            f"{ds.settings.where}: {attempts} attempts timed out (Paxos contention or "
            "overload); nothing was written"
        )
        raise OperationalError(msg)

    def _resolve_slot(self, seq: int, attempts: int = 6) -> _Txn | None:
        ds = self.datastore
        stmt = ds.prepare(self._cql_select_slot, idempotent=True)
        delay = 0.2
        last: BaseException | None = None
        for _ in range(attempts):
            try:
                rows = list(ds.execute_raw(stmt, (seq // LOG_BUCKET_SIZE, seq), consistency=ds.serial_consistency))
            except (*_UNCERTAIN, Unavailable, ReadTimeout, NoHostAvailable) as e:
                last = e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            return _Txn.from_row(rows[0]) if rows else None
        msg = (
            f"outcome unknown: committing log slot {seq} of {self.ks}.{self.log_table_name} "
            f"timed out and its outcome could not be read back from {ds.settings.where} "
            f"({type(last).__name__}: {last}); retrying the same write is safe - a "
            "duplicate is refused with IntegrityError"
        )
        raise OperationalError(msg) from last

    def _find_head(self, start_bucket: int = 0) -> _Txn:
        """The last committed log row (SERIAL read), or the empty-log sentinel."""
        ds = self.datastore
        probe = ds.prepare(self._cql_probe_log_bucket, idempotent=True)

        def exists(bucket: int) -> bool:
            return bool(ds.execute(probe, (bucket,), what="reading the commit log"))

        last = _last_existing_bucket(exists, start_bucket)
        if last is None:
            return _EMPTY_LOG
        stmt = ds.prepare(self._cql_select_last_txn, idempotent=True)
        for bucket in (last + 1, last):
            rows = ds.execute(stmt, (bucket,), consistency=ds.serial_consistency, what="reading the log head")
            if rows:
                return _Txn.from_row(rows[0])
        return _EMPTY_LOG

    def _check_conflicts(self, events: Sequence[_EventTuple], tracking: Tracking | None) -> None:
        ds = self.datastore
        by_originator: dict[str, list[int]] = {}
        for originator_id, version, _, _ in events:
            by_originator.setdefault(originator_id, []).append(version)
        statements = []
        stmt = ds.prepare(self._cql_versions_in_range, idempotent=True)
        originators = list(by_originator.items())
        for originator_id, versions in originators:
            statements.append(stmt.bind((originator_id, min(versions), max(versions))))
        if tracking is not None:
            tstmt = ds.prepare(self._cql_select_process_tracking, idempotent=True)
            statements.append(tstmt.bind((tracking.application_name,)))
        results = ds.execute_all(statements, what="checking for conflicts")
        for (originator_id, versions), rows in zip(originators, results, strict=False):
            found = {int(r["originator_version"]) for r in rows} & set(versions)
            if found:
                msg = (
                    f"event {originator_id} version {min(found)} is already recorded "
                    f"in {self.ks}.{self.events_table_name}"
                )
                raise IntegrityError(msg)
        if tracking is not None:
            rows = results[-1]
            current = rows[0]["notification_id"] if rows else None
            if current is not None and current >= tracking.notification_id:
                msg = (
                    f"tracking {tracking.application_name} {tracking.notification_id} "
                    f"is not after the recorded position {current}"
                )
                raise IntegrityError(msg)

    def _materialize_committed(self, txn: _Txn) -> None:
        """Materialise our own just-committed row, retrying (it is idempotent)."""
        delay = 0.2
        for attempt in range(5):
            try:
                self._materialize(txn)
            except OperationalError as e:
                if attempt == 4:
                    msg = (
                        f"events committed in log slot {txn.seq} of {self.ks}.{self.log_table_name} "
                        f"but not yet readable ({e}); the next write to this table rolls them "
                        "forward - retrying this write would be refused with IntegrityError"
                    )
                    raise OperationalError(msg) from e
                time.sleep(delay)
                delay *= 2
            else:
                return

    def _materialize(self, txn: _Txn) -> None:
        """Write a committed log row into the query tables (idempotent)."""
        if txn.seq == 0:
            return
        ds = self.datastore
        ts = txn.timestamp
        statements: list[Any] = []
        insert_event = ds.prepare(self._cql_insert_event, idempotent=True)
        by_originator: dict[str, list[_EventTuple]] = {}
        for e in txn.events:
            by_originator.setdefault(e[0], []).append(e)
        for rows in by_originator.values():
            statements.append(self._batch(insert_event, [(oid, v, t, s, ts) for oid, v, t, s in rows]))
        if txn.tracking_name is not None:
            insert_tracking = ds.prepare(self._cql_insert_process_tracking, idempotent=True)
            statements.append(insert_tracking.bind((txn.tracking_name, txn.tracking_id, ts)))
        ds.execute_all(statements, what="writing events")
        if txn.events:
            insert_notification = ds.prepare(self._cql_insert_notification, idempotent=True)
            by_bucket: dict[int, list[tuple[Any, ...]]] = {}
            for i, (oid, v, t, s) in enumerate(txn.events):
                nid = txn.first_id + i
                by_bucket.setdefault(nid // NOTIFICATION_BUCKET_SIZE, []).append(
                    (nid // NOTIFICATION_BUCKET_SIZE, nid, oid, v, t, s, ts)
                )
            for bucket in sorted(by_bucket):  # ascending: never expose a gap
                ds.execute_all(
                    [self._batch(insert_notification, by_bucket[bucket])],
                    what="writing notifications",
                )

    def _batch(self, stmt: PreparedStatement, rows: Sequence[Sequence[Any]]) -> Any:
        if len(rows) == 1:
            return stmt.bind(rows[0])
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.datastore.consistency)
        batch.is_idempotent = True
        for row in rows:
            batch.add(stmt, row)
        return batch

    # -- reading --------------------------------------------------------------------

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        cql = f"SELECT originator_version, topic, state FROM {self.ks}.{self.events_table_name} WHERE originator_id = ?"
        params: list[Any] = [self.originator_id_text(originator_id)]
        if gt is not None:
            cql += " AND originator_version > ?"
            params.append(gt)
        if lte is not None:
            cql += " AND originator_version <= ?"
            params.append(lte)
        cql += " ORDER BY originator_version " + ("DESC" if desc else "ASC")
        if limit is not None:
            if limit <= 0:
                return []
            cql += " LIMIT ?"
            params.append(limit)
        stmt = self.datastore.prepare(cql, idempotent=True)
        rows = self.datastore.execute(stmt, params, what="selecting events")
        return [
            StoredEvent(
                originator_id=originator_id,
                originator_version=int(r["originator_version"]),
                topic=r["topic"],
                state=bytes(r["state"] or b""),
            )
            for r in rows
        ]


def _last_existing_bucket(exists: Any, start: int = 0) -> int | None:
    """Buckets fill in order 0, 1, 2, ...; find the last non-empty one."""
    if not exists(start):
        if start == 0:
            return None
        return _last_existing_bucket(exists, 0)
    lo, step = start, 1
    while exists(lo + step):
        lo += step
        step *= 2
    hi = lo + step  # lo exists, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if exists(mid):
            lo = mid
        else:
            hi = mid
    return lo


class CassandraApplicationRecorder(CassandraAggregateRecorder, ApplicationRecorder):
    returns_notification_ids = True

    def __init__(
        self,
        datastore: CassandraDatastore,
        events_table_name: str = "stored_events",
        **kwargs: Any,
    ):
        super().__init__(datastore, events_table_name, **kwargs)
        ks = self.ks
        self._cql_select_notifications = (
            "SELECT id, originator_id, originator_version, topic, state FROM "
            f"{ks}.{self.notifications_table_name} WHERE bucket = ? AND id >= ? AND id <= ? "
            "LIMIT ?"
        )
        self._cql_probe_notification_bucket = (
            f"SELECT id FROM {ks}.{self.notifications_table_name} WHERE bucket = ? LIMIT 1"
        )
        self._cql_max_notification = (
            f"SELECT id FROM {ks}.{self.notifications_table_name} WHERE bucket = ? ORDER BY id DESC LIMIT 1"
        )

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        expected = 1 if start is None else (start if inclusive_of_start else start + 1)
        expected = max(expected, 1)
        result: list[Notification] = []
        if limit <= 0 or (stop is not None and stop < expected):
            return result
        wanted = set(topics)
        ds = self.datastore
        stmt = ds.prepare(self._cql_select_notifications, idempotent=True)
        page = 1000
        while len(result) < limit and (stop is None or expected <= stop):
            bucket = expected // NOTIFICATION_BUCKET_SIZE
            hi = (bucket + 1) * NOTIFICATION_BUCKET_SIZE - 1
            if stop is not None:
                hi = min(hi, stop)
            fetch = min(page if wanted else limit - len(result), hi - expected + 1)
            rows = ds.execute(stmt, (bucket, expected, hi, fetch), what="selecting notifications")
            for r in rows:
                if r["id"] != expected:
                    return result  # in-progress materialisation: never expose a gap
                expected += 1
                if not wanted or r["topic"] in wanted:
                    result.append(
                        Notification(
                            id=int(r["id"]),
                            originator_id=self.convert_originator_id(r["originator_id"]),
                            originator_version=int(r["originator_version"]),
                            topic=r["topic"],
                            state=bytes(r["state"] or b""),
                        )
                    )
                    if len(result) >= limit:
                        return result
            if len(rows) < fetch and expected <= hi:
                break  # no more rows
        return result

    def max_notification_id(self) -> int | None:
        ds = self.datastore
        probe = ds.prepare(self._cql_probe_notification_bucket, idempotent=True)

        def exists(bucket: int) -> bool:
            return bool(ds.execute(probe, (bucket,), what="reading notifications"))

        last = _last_existing_bucket(exists, self._log.last_notification_bucket)
        if last is None:
            return None
        self._log.last_notification_bucket = last
        stmt = ds.prepare(self._cql_max_notification, idempotent=True)
        rows = ds.execute(stmt, (last,), what="reading the max notification id")
        return int(rows[0]["id"]) if rows else None

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return CassandraSubscription(recorder=self, gt=gt, topics=topics)


class CassandraSubscription(ListenNotifySubscription[CassandraApplicationRecorder]):
    """Polls the notification table; wakes at once for commits made in this process."""

    poll_interval = 0.25

    def __init__(
        self,
        recorder: CassandraApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._log_state = recorder._log  # noqa: SLF001
        self._log_state.add_listener(self._has_been_notified)
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._has_been_stopped:
            time.sleep(self.poll_interval)
            self._has_been_notified.set()

    def stop(self) -> None:
        self._log_state.remove_listener(self._has_been_notified)
        super().stop()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poller.join(timeout=2 * self.poll_interval + 1)


class CassandraTrackingRecorder(CassandraRecorder, TrackingRecorder):
    """Stand-alone tracking: one row per upstream application, advanced by CAS LWTs."""

    def __init__(
        self,
        datastore: CassandraDatastore,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ):
        super().__init__(datastore, **kwargs)
        self.tracking_table_name = _table_name(tracking_table_name)
        t = f"{self.ks}.{self.tracking_table_name}"
        self._cql_insert = f"INSERT INTO {t} (application_name, notification_id, writer) VALUES (?, ?, ?) IF NOT EXISTS"
        self._cql_advance = (
            f"UPDATE {t} SET notification_id = ?, writer = ? WHERE application_name = ? "
            "IF notification_id = ? AND writer = ?"
        )
        self._cql_select = f"SELECT notification_id, writer FROM {t} WHERE application_name = ?"

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.ks}.{self.tracking_table_name} ("
            "application_name text PRIMARY KEY, notification_id bigint, writer uuid) "
            f"WITH comment = '{FORMAT_TAG} tracking'"
        )
        return statements

    def insert_tracking(self, tracking: Tracking) -> None:
        ds = self.datastore
        name, new_id = tracking.application_name, tracking.notification_id
        token = uuid4()
        stmt = ds.prepare(self._cql_insert, idempotent=False)
        row = self._cas(stmt, (name, new_id, token), name, token)
        while row is not None:
            current, writer = row.get("notification_id"), row.get("writer")
            if current is not None and current >= new_id:
                msg = f"tracking {name} {new_id} is not after the recorded position {current}"
                raise IntegrityError(msg)
            stmt = ds.prepare(self._cql_advance, idempotent=False)
            row = self._cas(stmt, (new_id, token, name, current, writer), name, token)

    def _cas(self, stmt: PreparedStatement, params: Sequence[Any], name: str, token: UUID) -> dict[str, Any] | None:
        """None if our write is in place, else the current row."""
        ds = self.datastore
        try:
            rows = self._execute_lwt(stmt, params)
        except _LWT_UNCERTAIN:
            rows = []
        except Exception as e:
            raise _translate(e, "recording tracking", ds.settings.where) from e
        else:
            row = rows[0] if rows else {}
            if row.get("[applied]"):
                return None
            if row.get("writer") == token:
                return None  # a driver-level resend found our own earlier success
            return dict(row)
        # Unknown outcome: read at SERIAL; our token there means it happened.
        current = self._read_serial(name)
        if current is not None and current.get("writer") == token:
            return None
        return current if current is not None else {"notification_id": None, "writer": None}

    def _read_serial(self, name: str, attempts: int = 6) -> dict[str, Any] | None:
        ds = self.datastore
        stmt = ds.prepare(self._cql_select, idempotent=True)
        delay = 0.2
        last: BaseException | None = None
        for _ in range(attempts):
            try:
                rows = list(ds.execute_raw(stmt, (name,), consistency=ds.serial_consistency))
            except (*_LWT_UNCERTAIN, ReadTimeout) as e:
                last = e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            return dict(rows[0]) if rows else None
        msg = (
            f"outcome unknown: recording tracking for {name!r} timed out and could not be "
            f"read back from {ds.settings.where} ({type(last).__name__}: {last})"
        )
        raise OperationalError(msg) from last

    def max_tracking_id(self, application_name: str) -> int | None:
        ds = self.datastore
        stmt = ds.prepare(self._cql_select, idempotent=True)
        rows = ds.execute(stmt, (application_name,), what="reading tracking")
        value = rows[0]["notification_id"] if rows else None
        return int(value) if value is not None else None


class CassandraProcessRecorder(CassandraApplicationRecorder, ProcessRecorder):
    """Events and tracking committed together in one log row."""

    accepts_tracking = True

    def insert_tracking(self, tracking: Tracking) -> None:
        self._commit((), tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        ds = self.datastore
        stmt = ds.prepare(self._cql_select_process_tracking, idempotent=True)
        rows = ds.execute(stmt, (application_name,), what="reading tracking")
        value = rows[0]["notification_id"] if rows else None
        return int(value) if value is not None else None


# ---------------------------------------------------------------------------- factory


class CassandraFactory(InfrastructureFactory[CassandraTrackingRecorder]):
    CASSANDRA_HOSTS = "CASSANDRA_HOSTS"
    CASSANDRA_PORT = "CASSANDRA_PORT"
    CASSANDRA_KEYSPACE = "CASSANDRA_KEYSPACE"
    CASSANDRA_DC = "CASSANDRA_DC"
    CASSANDRA_RF = "CASSANDRA_RF"
    CASSANDRA_CONSISTENCY = "CASSANDRA_CONSISTENCY"
    CASSANDRA_SERIAL_CONSISTENCY = "CASSANDRA_SERIAL_CONSISTENCY"
    CASSANDRA_CONNECT_TIMEOUT = "CASSANDRA_CONNECT_TIMEOUT"
    CASSANDRA_REQUEST_TIMEOUT = "CASSANDRA_REQUEST_TIMEOUT"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"
    CREATE_TABLE = "CREATE_TABLE"

    aggregate_recorder_class = CassandraAggregateRecorder
    application_recorder_class = CassandraApplicationRecorder
    tracking_recorder_class = CassandraTrackingRecorder
    process_recorder_class = CassandraProcessRecorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        settings = CassandraSettings.from_env(self.env)
        originator_id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").lower()
        if originator_id_type not in ("uuid", "text"):
            msg = f"Invalid {self.ORIGINATOR_ID_TYPE} {originator_id_type!r}, must be 'uuid' or 'text'"
            raise CassandraSettingsError(msg)
        self.datastore = CassandraDatastore(
            settings,
            create_keyspace=self.env_create_table(),
            originator_id_type=cast(Literal["uuid", "text"], originator_id_type),
        )

    def env_create_table(self) -> bool:
        return bool(strtobool(self.env.get(self.CREATE_TABLE) or "yes"))

    def _prefix(self, default: str) -> str:
        return self.env.name.lower() or default

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        recorder = type(self).aggregate_recorder_class(
            datastore=self.datastore,
            events_table_name=self._prefix("stored") + "_" + purpose,
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def application_recorder(self) -> ApplicationRecorder:
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        cls: type[CassandraApplicationRecorder] = (
            resolve_topic(topic) if topic else type(self).application_recorder_class
        )
        assert issubclass(cls, CassandraApplicationRecorder)
        recorder = cls(datastore=self.datastore, events_table_name=self._prefix("stored") + "_events")
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def tracking_recorder(
        self, tracking_recorder_class: type[CassandraTrackingRecorder] | None = None
    ) -> CassandraTrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = resolve_topic(topic) if topic else type(self).tracking_recorder_class
        assert tracking_recorder_class is not None
        assert issubclass(tracking_recorder_class, CassandraTrackingRecorder)
        recorder = tracking_recorder_class(
            datastore=self.datastore,
            tracking_table_name=self._prefix("notification") + "_tracking",
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def process_recorder(self) -> ProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        cls: type[CassandraProcessRecorder] = resolve_topic(topic) if topic else type(self).process_recorder_class
        assert issubclass(cls, CassandraProcessRecorder)
        recorder = cls(datastore=self.datastore, events_table_name=self._prefix("stored") + "_events")
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def close(self) -> None:
        datastore = getattr(self, "datastore", None)
        if datastore is not None:
            datastore.close()


Factory = CassandraFactory

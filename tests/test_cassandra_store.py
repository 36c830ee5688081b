"""ledger.stores.cassandra against a real Cassandra (scripts/cassandra start).

eventsourcing's own abstract recorder test cases run unchanged against the module, plus
tests of the URL parser, of clear and bounded connection errors, of the commit protocol
(a timed-out write retried without a double insert, roll-forward after a writer died,
bucket boundaries, two "processes" racing) and of an Application end to end.

One fresh keyspace per run (dropped at the end); every test gets its own tables.
Without Cassandra on 127.0.0.1:9042 the Cassandra tests skip, or fail when
GEOLEDGER_REQUIRE_REAL=1 (see tests/realparts.py).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.tests import persistence as es_cases
from eventsourcing.utils import Environment

from ledger.errors import StoreError, StoreURLError
from ledger.stores import cassandra as cs
from tests.support.realparts import require_cassandra

pytestmark = pytest.mark.cassandra

HOST = "127.0.0.1"
PORT = 9042
KEYSPACE = f"gl_store_test_{uuid.uuid4().hex[:10]}"

_datastore: cs.CassandraDatastore | None = None


def base_env(**extra: str) -> dict[str, str]:
    env = {
        "PERSISTENCE_MODULE": "ledger.stores.cassandra",
        "CASSANDRA_HOSTS": HOST,
        "CASSANDRA_PORT": str(PORT),
        "CASSANDRA_KEYSPACE": KEYSPACE,
        "CASSANDRA_DC": "dc1",
        "CASSANDRA_RF": "1",
    }
    env.update(extra)
    return env


def shared_datastore() -> cs.CassandraDatastore:
    """One driver session for the whole module (connecting costs ~0.3 s)."""
    global _datastore
    require_cassandra()
    if _datastore is None:
        _datastore = cs.CassandraDatastore(cs.CassandraSettings.from_env(Environment(env=base_env())))
    return _datastore


def new_datastore() -> cs.CassandraDatastore:
    """A second, independent session: stands in for another process."""
    require_cassandra()
    return cs.CassandraDatastore(cs.CassandraSettings.from_env(Environment(env=base_env())))


def unique_table(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def teardown_module() -> None:
    global _datastore
    if _datastore is not None:
        try:
            _datastore.execute_ddl(f"DROP KEYSPACE IF EXISTS {KEYSPACE}")
        finally:
            _datastore.close()
            _datastore = None


def app_recorder(datastore: cs.CassandraDatastore | None = None, table: str | None = None) -> Any:
    recorder = cs.CassandraApplicationRecorder(datastore or shared_datastore(), table or unique_table("app"))
    recorder.create_table()
    return recorder


# ---------------------------------------------------------------------------- inherited cases


class TestCassandraAggregateRecorder(es_cases.AggregateRecorderTestCase):
    def create_recorder(self) -> cs.CassandraAggregateRecorder:
        recorder = cs.CassandraAggregateRecorder(shared_datastore(), unique_table("agg"))
        recorder.create_table()
        return recorder


class TestCassandraApplicationRecorder(es_cases.ApplicationRecorderTestCase[cs.CassandraApplicationRecorder]):
    def create_recorder(self) -> cs.CassandraApplicationRecorder:
        return app_recorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestCassandraNonInterleavingNotificationIDs(es_cases.NonInterleavingNotificationIDsBaseCase):
    insert_num = 500

    def create_recorder(self) -> cs.CassandraApplicationRecorder:
        return app_recorder()


class TestCassandraTrackingRecorder(es_cases.TrackingRecorderTestCase):
    def create_recorder(self) -> cs.CassandraTrackingRecorder:
        recorder = cs.CassandraTrackingRecorder(shared_datastore(), unique_table("trk"))
        recorder.create_table()
        return recorder


class TestCassandraProcessRecorder(es_cases.ProcessRecorderTestCase):
    def create_recorder(self) -> cs.CassandraProcessRecorder:
        recorder = cs.CassandraProcessRecorder(shared_datastore(), unique_table("proc"))
        recorder.create_table()
        return recorder


class _TrackingRecorderSubclass(cs.CassandraTrackingRecorder):
    pass


class TestCassandraInfrastructureFactory(es_cases.InfrastructureFactoryTestCase[cs.CassandraFactory]):
    def setUp(self) -> None:
        require_cassandra()
        self.env = Environment("TestCase", base_env())
        super().setUp()

    def expected_factory_class(self) -> type[cs.CassandraFactory]:
        return cs.CassandraFactory

    def expected_aggregate_recorder_class(self) -> type[cs.CassandraAggregateRecorder]:
        return cs.CassandraAggregateRecorder

    def expected_application_recorder_class(self) -> type[cs.CassandraApplicationRecorder]:
        return cs.CassandraApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[cs.CassandraTrackingRecorder]:
        return cs.CassandraTrackingRecorder

    def tracking_recorder_subclass(self) -> type[cs.CassandraTrackingRecorder]:
        return _TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[cs.CassandraProcessRecorder]:
        return cs.CassandraProcessRecorder


# ---------------------------------------------------------------------------- URL parsing


def test_environment_from_url_full() -> None:
    env = cs.environment_from_url(
        "cassandra://10.0.0.1,10.0.0.2:9142/Ledger_1?dc=eu&rf=3&consistency=local_quorum"
        "&serial_consistency=LOCAL_SERIAL&connect_timeout=2.5&request_timeout=7"
    )
    assert env == {
        "PERSISTENCE_MODULE": "ledger.stores.cassandra",
        "CASSANDRA_HOSTS": "10.0.0.1,10.0.0.2",
        "CASSANDRA_PORT": "9142",
        "CASSANDRA_KEYSPACE": "ledger_1",
        "CASSANDRA_DC": "eu",
        "CASSANDRA_RF": "3",
        "CASSANDRA_CONSISTENCY": "LOCAL_QUORUM",
        "CASSANDRA_SERIAL_CONSISTENCY": "LOCAL_SERIAL",
        "CASSANDRA_CONNECT_TIMEOUT": "2.5",
        "CASSANDRA_REQUEST_TIMEOUT": "7.0",
    }


def test_environment_from_url_minimal_and_credentials() -> None:
    assert cs.environment_from_url("cassandra://localhost/ks") == {
        "PERSISTENCE_MODULE": "ledger.stores.cassandra",
        "CASSANDRA_HOSTS": "localhost",
        "CASSANDRA_PORT": "9042",
        "CASSANDRA_KEYSPACE": "ks",
    }
    env = cs.environment_from_url("cassandra://u%40x:p%3Aw@[::1]:9043/ks")
    assert env["CASSANDRA_USERNAME"] == "u@x"
    assert env["CASSANDRA_PASSWORD"] == "p:w"
    assert env["CASSANDRA_HOSTS"] == "::1"
    assert env["CASSANDRA_PORT"] == "9043"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("cassandra:///ks", "no host"),
        ("cassandra://:9042/ks", "bad host"),
        ("cassandra://h1,,h2/ks", "empty host"),
        ("cassandra://host:notaport/ks", "bad port"),
        ("cassandra://host:0/ks", "bad port"),
        ("cassandra://host:70000/ks", "bad port"),
        ("cassandra://h1:9042,h2:9043/ks", "one port"),
        ("cassandra://host", "no keyspace"),
        ("cassandra://host/", "no keyspace"),
        ("cassandra://host/1ks", "invalid keyspace name"),
        ("cassandra://host/my-ks", "invalid keyspace name"),
        ("cassandra://host/ks/extra", "invalid keyspace name"),
        ("cassandra://host/" + "k" * 49, "invalid keyspace name"),
        ("cassandra://host/system_auth", "system keyspaces are reserved"),
        ("cassandra://host/ks?colour=red", "unknown parameter 'colour'"),
        ("cassandra://host/ks?dc=dc1&dc=dc2", "given twice"),
        ("cassandra://host/ks?consistency=MOSTLY", "invalid CASSANDRA_CONSISTENCY"),
        ("cassandra://host/ks?consistency=SERIAL", "invalid CASSANDRA_CONSISTENCY"),
        ("cassandra://host/ks?serial_consistency=QUORUM", "invalid CASSANDRA_SERIAL_CONSISTENCY"),
        ("cassandra://host/ks?rf=0", "invalid CASSANDRA_RF"),
        ("cassandra://host/ks?rf=-1", "invalid CASSANDRA_RF"),
        ("cassandra://host/ks?rf=two", "invalid CASSANDRA_RF"),
        ("cassandra://host/ks?rf=1.5", "invalid CASSANDRA_RF"),
        ("cassandra://host/ks?connect_timeout=0", "invalid CASSANDRA_CONNECT_TIMEOUT"),
        ("cassandra://host/ks?dc=", "empty dc"),
        ("cassandra://user@host/ks", "credentials"),
        ("cassandra://host/ks#frag", "fragment"),
        ("postgres://host/ks", "not a Cassandra URL"),
        ("host/ks", "not a Cassandra URL"),
    ],
)
def test_environment_from_url_rejects(url: str, needle: str) -> None:
    with pytest.raises(StoreURLError) as info:
        cs.environment_from_url(url)
    assert needle in str(info.value), str(info.value)


def test_environment_from_url_rejects_non_string() -> None:
    with pytest.raises(StoreURLError):
        cs.environment_from_url(None)  # type: ignore[arg-type]


def test_bad_env_settings_are_clear() -> None:
    with pytest.raises(cs.CassandraSettingsError, match="CASSANDRA_PORT"):
        cs.CassandraSettings.from_env(Environment(env={"CASSANDRA_PORT": "99999"}))
    with pytest.raises(cs.CassandraSettingsError, match="keyspace"):
        cs.CassandraSettings.from_env(Environment(env={"CASSANDRA_KEYSPACE": "bad name"}))
    settings = cs.CassandraSettings.from_env(Environment(env={"CASSANDRA_CONSISTENCY": "QUORUM"}))
    assert settings.serial_consistency == "SERIAL"


# ---------------------------------------------------------------------------- connection errors


HANG_GUARD_S = 60
"""A connect that does not give up: far beyond the configured timeouts (1-2 s), so a loaded
machine never trips it; what the tests assert is that the caller gets an error, not a hang."""


def test_unreachable_port_is_a_clear_error() -> None:
    with socket.socket() as bound:  # held for the whole test: bound, never listening, nobody else's
        bound.bind((HOST, 0))
        port = bound.getsockname()[1]
        env = base_env(CASSANDRA_PORT=str(port), CASSANDRA_CONNECT_TIMEOUT="2")
        started = time.monotonic()
        with pytest.raises(cs.CassandraConnectError) as info:
            InfrastructureFactory.construct(Environment(env=env))
        assert time.monotonic() - started < HANG_GUARD_S
    assert isinstance(info.value, OperationalError)
    assert isinstance(info.value, StoreError)
    assert f"{HOST}:{port}" in str(info.value)


def test_silent_server_times_out_within_connect_timeout() -> None:
    """A host that accepts TCP but never speaks CQL must not hang the caller."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(16)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        env = base_env(CASSANDRA_PORT=str(port), CASSANDRA_CONNECT_TIMEOUT="1")
        started = time.monotonic()
        with pytest.raises(cs.CassandraConnectError) as info:
            InfrastructureFactory.construct(Environment(env=env))
        elapsed = time.monotonic() - started
        assert elapsed < HANG_GUARD_S, elapsed
        assert f"{HOST}:{port}" in str(info.value)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_missing_keyspace_without_create_is_a_clear_error() -> None:
    require_cassandra()
    env = base_env(CASSANDRA_KEYSPACE="gl_does_not_exist_" + uuid.uuid4().hex[:8], CREATE_TABLE="no")
    with pytest.raises(cs.CassandraConnectError, match="does not exist"):
        InfrastructureFactory.construct(Environment(env=env))


def test_unknown_datacentre_is_a_clear_error() -> None:
    require_cassandra()
    env = base_env(CASSANDRA_DC="atlantis")
    with pytest.raises(cs.CassandraConnectError, match="'atlantis'.*dc1"):
        InfrastructureFactory.construct(Environment(env=env))


def test_missing_table_without_create_is_a_clear_error() -> None:
    require_cassandra()
    recorder = cs.CassandraApplicationRecorder(shared_datastore(), unique_table("nope"))
    with pytest.raises(cs.CassandraConnectError, match="nope"):
        recorder.select_notifications(None, 10)


def test_unsound_consistency_is_refused() -> None:
    require_cassandra()
    ks = "gl_rf3_" + uuid.uuid4().hex[:8]
    ds = shared_datastore()
    ds.execute_ddl(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}")
    try:
        env = base_env(CASSANDRA_KEYSPACE=ks, CASSANDRA_CONSISTENCY="ONE")
        with pytest.raises(cs.CassandraSettingsError, match="unsound"):
            InfrastructureFactory.construct(Environment(env=env))
    finally:
        ds.execute_ddl(f"DROP KEYSPACE IF EXISTS {ks}")


# ---------------------------------------------------------------------------- commit protocol


def _events(originator: uuid.UUID, versions: range, topic: str = "t") -> list[StoredEvent]:
    return [StoredEvent(originator, v, topic, f"state-{v}".encode()) for v in versions]


def _log_rows(recorder: cs.CassandraApplicationRecorder) -> list[dict[str, Any]]:
    ds = recorder.datastore
    return ds.execute(f"SELECT seq, txn_id, first_id FROM {recorder.ks}.{recorder.log_table_name}")


def test_timeout_after_a_write_that_happened_is_not_double_applied() -> None:
    from cassandra import OperationTimedOut

    recorder = app_recorder()
    real = recorder._execute_lwt
    calls: list[int] = []

    def lwt_then_timeout(stmt: Any, params: Any) -> Any:
        calls.append(1)
        real(stmt, params)  # the write really happens ...
        if len(calls) == 1:
            raise OperationTimedOut("simulated: reply lost after the write was applied")
        return real(stmt, params)

    recorder._execute_lwt = lwt_then_timeout
    a = uuid4()
    assert recorder.insert_events(_events(a, range(1, 3))) == [1, 2]
    assert len(calls) == 1  # resolved by a SERIAL read, not by writing again
    recorder._execute_lwt = real
    assert recorder.insert_events(_events(uuid4(), range(1, 2))) == [3]

    assert [r["seq"] for r in _log_rows(recorder)] == [1, 2]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2, 3]
    assert len(recorder.select_events(a)) == 2
    with pytest.raises(IntegrityError):  # a caller-level retry is refused, not doubled
        recorder.insert_events(_events(a, range(1, 3)))
    assert recorder.max_notification_id() == 3


def test_timeout_before_the_write_is_retried_once() -> None:
    from cassandra import WriteTimeout

    recorder = app_recorder()
    real = recorder._execute_lwt
    calls: list[int] = []

    def timeout_then_write(stmt: Any, params: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise WriteTimeout("simulated: CAS timed out before anything was accepted", write_type=5)
        return real(stmt, params)

    recorder._execute_lwt = timeout_then_write
    assert recorder.insert_events(_events(uuid4(), range(1, 4))) == [1, 2, 3]
    assert len(calls) == 2
    assert [r["seq"] for r in _log_rows(recorder)] == [1]


def test_unknown_outcome_then_caller_retry_gives_integrity_error_not_a_copy() -> None:
    from cassandra import OperationTimedOut

    recorder = app_recorder()
    real_lwt, real_resolve = recorder._execute_lwt, recorder._resolve_slot

    def lwt_then_timeout(stmt: Any, params: Any) -> Any:
        real_lwt(stmt, params)
        raise OperationTimedOut("simulated")

    def resolve_fails(seq: int, attempts: int = 6) -> Any:
        raise OperationalError("simulated: outcome unknown")

    recorder._execute_lwt, recorder._resolve_slot = lwt_then_timeout, resolve_fails
    a = uuid4()
    with pytest.raises(OperationalError, match="outcome unknown"):
        recorder.insert_events(_events(a, range(1, 3)))
    recorder._execute_lwt, recorder._resolve_slot = real_lwt, real_resolve
    with pytest.raises(IntegrityError):
        recorder.insert_events(_events(a, range(1, 3)))
    assert [r["seq"] for r in _log_rows(recorder)] == [1]
    assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 2]
    assert [e.originator_version for e in recorder.select_events(a)] == [1, 2]


def test_tracking_timeout_after_a_write_that_happened_is_not_double_applied() -> None:
    from cassandra import OperationTimedOut

    recorder: Any = cs.CassandraTrackingRecorder(shared_datastore(), unique_table("trk"))
    recorder.create_table()
    real = recorder._execute_lwt

    def lwt_then_timeout(stmt: Any, params: Any) -> Any:
        real(stmt, params)
        raise OperationTimedOut("simulated: reply lost after the write was applied")

    recorder._execute_lwt = lwt_then_timeout
    recorder.insert_tracking(Tracking("up", 1))  # resolved as done (our writer token)
    recorder.insert_tracking(Tracking("up", 2))  # the CAS path, same resolution
    recorder._execute_lwt = real
    assert recorder.max_tracking_id("up") == 2
    with pytest.raises(IntegrityError):
        recorder.insert_tracking(Tracking("up", 2))


def test_writer_dying_before_materialising_is_rolled_forward_without_a_gap() -> None:
    table = unique_table("crash")
    first = app_recorder(table=table)
    first.insert_events(_events(uuid4(), range(1, 3)))  # ids 1, 2

    def crash(txn: Any) -> None:
        raise KeyboardInterrupt("simulated crash after the commit, before materialising")

    first._materialize_committed = crash
    b = uuid4()
    with pytest.raises(KeyboardInterrupt):
        first.insert_events(_events(b, range(1, 3)))  # committed as ids 3, 4

    other_process = new_datastore()
    try:
        second = app_recorder(other_process, table)
        # Committed but not materialised: readers see the prefix, never a gap.
        assert [n.id for n in second.select_notifications(None, 10)] == [1, 2]
        assert second.max_notification_id() == 2
        # Re-inserting the crashed writer's events is a conflict: it did commit.
        with pytest.raises(IntegrityError):
            second.insert_events(_events(b, range(1, 2)))
        assert [e.originator_version for e in second.select_events(b)] == [1, 2]
        assert second.insert_events(_events(uuid4(), range(1, 2))) == [5]
        assert [n.id for n in second.select_notifications(None, 10)] == [1, 2, 3, 4, 5]
    finally:
        other_process.close()


def test_two_processes_race_without_duplicates_or_gaps() -> None:
    table = unique_table("race")
    stores = [new_datastore(), new_datastore()]
    try:
        recorders = [app_recorder(ds, table) for ds in stores]
        contested = uuid4()
        outcomes: list[str] = []
        lock = threading.Lock()

        start = threading.Barrier(2)

        def writer(recorder: Any, n: int) -> None:
            start.wait()
            for i in range(15):
                recorder.insert_events(_events(uuid4(), range(1, 1 + (i % 3) + 1)))
            try:
                recorder.insert_events(_events(contested, range(1, 3), topic=f"writer{n}"))
                result = "ok"
            except IntegrityError:
                result = "conflict"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=writer, args=(r, n)) for n, r in enumerate(recorders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict", "ok"]
        notifications = recorders[0].select_notifications(None, 1000)
        expected_total = 2 * sum((i % 3) + 1 for i in range(15)) + 2
        assert [n.id for n in notifications] == list(range(1, expected_total + 1))
        keys = [(n.originator_id, n.originator_version) for n in notifications]
        assert len(set(keys)) == len(keys)
        assert len(recorders[1].select_events(contested)) == 2
        assert recorders[1].max_notification_id() == expected_total
    finally:
        for ds in stores:
            ds.close()


def test_bucket_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cs, "LOG_BUCKET_SIZE", 3)
    monkeypatch.setattr(cs, "NOTIFICATION_BUCKET_SIZE", 4)
    table = unique_table("bkt")
    recorder = app_recorder(table=table)
    ids: list[int] = []
    for size in [1, 5, 2, 9, 1, 3, 4, 1]:  # crosses log and notification buckets
        ids.extend(recorder.insert_events(_events(uuid4(), range(size))))
    assert ids == list(range(1, 27))
    assert [n.id for n in recorder.select_notifications(None, 100)] == ids
    assert [n.id for n in recorder.select_notifications(7, 6)] == list(range(7, 13))
    assert [n.id for n in recorder.select_notifications(3, 100, stop=17, topics=["t"])] == list(range(3, 18))
    assert recorder.max_notification_id() == 26
    other_process = new_datastore()
    try:  # a fresh process finds the head by galloping over the buckets
        fresh = app_recorder(other_process, table)
        assert fresh.insert_events(_events(uuid4(), range(2))) == [27, 28]
        assert fresh.max_notification_id() == 28
    finally:
        other_process.close()


def test_process_recorder_tracking_only_and_conflicts() -> None:
    recorder = cs.CassandraProcessRecorder(shared_datastore(), unique_table("proc"))
    recorder.create_table()
    recorder.insert_tracking(Tracking("up", 5))
    assert recorder.max_tracking_id("up") == 5
    with pytest.raises(IntegrityError):
        recorder.insert_events(_events(uuid4(), range(1)), tracking=Tracking("up", 5))
    assert recorder.insert_events(_events(uuid4(), range(1)), tracking=Tracking("up", 6)) == [1]
    assert recorder.max_tracking_id("up") == 6
    assert recorder.has_tracking_id("up", 6)


# ---------------------------------------------------------------------------- application


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    @event("Credited")
    def credit(self, amount: int) -> None:
        self.balance += amount


class Bank(Application[uuid.UUID]):
    is_snapshotting_enabled = True


@pytest.fixture
def bank_env() -> Iterator[dict[str, str]]:
    require_cassandra()
    yield base_env()


def test_application_end_to_end(bank_env: dict[str, str]) -> None:
    app = Bank(env=bank_env)
    try:
        account = Account("ada")
        for amount in (10, 20, 30, 40):
            account.credit(amount)
        app.save(account)
        copy: Account = app.repository.get(account.id)
        assert copy.balance == 100
        assert copy.version == 5
        app.take_snapshot(account.id)
        assert app.snapshots is not None
        assert [s.originator_version for s in app.snapshots.get(account.id)] == [5]
        assert [n.id for n in app.recorder.select_notifications(None, 10)] == [1, 2, 3, 4, 5]
        assert app.recorder.max_notification_id() == 5
    finally:
        app.close()
    # Reopen: state comes back from Cassandra.
    again = Bank(env=bank_env)
    try:
        assert again.repository.get(account.id).balance == 100
    finally:
        again.close()


def test_environment_from_url_drives_an_application(monkeypatch: pytest.MonkeyPatch) -> None:
    require_cassandra()
    env = cs.environment_from_url(f"cassandra://{HOST}:{PORT}/{KEYSPACE}?dc=dc1&rf=1&consistency=ONE")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = Application[uuid.UUID](env={"CREATE_TABLE": "yes"})
    try:
        assert isinstance(app.factory, cs.CassandraFactory)
        account = Account("bob")
        app.save(account)
        assert app.repository.get(account.id).owner == "bob"
    finally:
        app.close()

"""The three-datacentre Cassandra (`scripts/cassandra start --dcs changchun,beijing,shanghai`)
for tests: where its nodes are, store URLs through any of them, and the chaos a test does
to one datacentre (kill, stop, pause its node) through the same script an SRE would use.

A test that takes a node away gives the ring back in its teardown (`restore_ring`: start
every node that is down, resume every paused one), so no test depends on running first.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.realparts import cql_answers, require

DCS = ("changchun", "beijing", "shanghai")
"""The datacentres, in `--dcs` order: node K listens on 127.0.0.(K+1)."""
DC_ADDR = {dc: f"127.0.0.{k + 2}" for k, dc in enumerate(DCS)}
REPLICATION = ",".join(f"{dc}:1" for dc in DCS)
PORT = 9042
START = f"scripts/cassandra start --dcs {','.join(DCS)}"

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cassandra"
SCRIPT_GUARD_S = 600
"""A hang guard for one script call (a node start takes 20-60 s on two busy cores)."""


def url(base: str, dc: str, consistency: str | None = None, *, userinfo: str = "") -> str:
    """A store URL for keyspace `base` through `dc`'s node, replicated to every datacentre."""
    query = f"dc={dc}&replication={REPLICATION}" + (f"&consistency={consistency}" if consistency else "")
    return f"cassandra://{userinfo}{DC_ADDR[dc]}:{PORT}/{base}?{query}"


STARTING_ENV = "GEOLEDGER_DCS_STARTING"
"""Set by `make test`, which starts the ring in the background: the file the start writes
its exit status to once it is done (its output beside it, in ``<file>.log``)."""
START_GUARD_S = 900.0
ANSWER_GUARD_S = 30.0


def wait_for_background_start(guard_s: float = START_GUARD_S) -> None:
    """If `make test` is starting the ring in the background, wait until it is done; an
    AssertionError with the start's output if it failed (or is still not done after the
    hang guard)."""
    path = os.environ.get(STARTING_ENV, "").strip()
    if not path:
        return
    status = Path(path)
    wait_until(f"the background `{START}` (make test)", status.exists, guard_s=guard_s)
    code = status.read_text().strip()
    if code != "0":
        log = Path(f"{path}.log")
        output = log.read_text()[-3000:] if log.exists() else "(no output kept)"
        raise AssertionError(f"the background `{START}` (make test) exited {code}:\n{output}")


def require_cassandra_dcs() -> None:
    """Require every datacentre node answering CQL (skip, or fail under GEOLEDGER_REQUIRE_REAL=1),
    after `make test`'s background start of the ring (if any) is done."""
    wait_for_background_start()
    # a node starved of CPU (a loaded CI machine) can miss one 2 s OPTIONS round trip:
    # only one that keeps not answering for ANSWER_GUARD_S is down
    deadline = time.monotonic() + ANSWER_GUARD_S
    while (down := [dc for dc in DCS if not cql_answers(DC_ADDR[dc], PORT)]) and time.monotonic() < deadline:
        time.sleep(1.0)
    require(f"the three-datacentre Cassandra (down: {', '.join(down)})", not down, f"start it with {START}")


def script(*args: str) -> str:
    """Run scripts/cassandra with the test's Python (for its CQL checks); its output."""
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=SCRIPT_GUARD_S, check=False)
    if done.returncode != 0:
        raise AssertionError(f"scripts/cassandra {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr[-3000:]}")
    return done.stdout


def kill_dc(dc: str) -> None:
    """A power cut: SIGKILL the datacentre's node (nothing drained, hints it held are gone with it)."""
    script("stop", "--dc", dc, "--kill")


def pause_dc(dc: str) -> None:
    """Freeze the node (SIGSTOP): to the other datacentres it is cut off mid-request."""
    script("pause", "--dc", dc)


def resume_dc(dc: str) -> None:
    script("resume", "--dc", dc)


def restore_ring() -> None:
    """Every node running and not paused, each seeing the others (idempotent: ~3 s if whole)."""
    script("start", "--dcs", ",".join(DCS))


@contextmanager
def session(dc: str) -> Iterator[Any]:
    """A driver session whose only coordinator is `dc`'s node."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import FallthroughRetryPolicy, WhiteListRoundRobinPolicy

    logging.getLogger("cassandra").setLevel(logging.ERROR)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([DC_ADDR[dc]]),
                               retry_policy=FallthroughRetryPolicy(), request_timeout=10)
    cluster = Cluster([DC_ADDR[dc]], port=PORT, protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def stored_indexes(dc: str, keyspace: str) -> set[int]:
    """The record indexes `dc`'s own replica holds of a region keyspace (read at LOCAL_ONE there)."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    with session(dc) as s:
        stmt = SimpleStatement(f"SELECT idx FROM {keyspace}.records", consistency_level=ConsistencyLevel.LOCAL_ONE)
        return {int(row.idx) for row in s.execute(stmt)}


def wait_until(what: str, done: Any, guard_s: float = 180.0, every_s: float = 0.5) -> None:
    """Poll `done()` until true; AssertionError naming `what` after the hang guard."""
    deadline = time.monotonic() + guard_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within the {guard_s:g} s hang guard")
        time.sleep(every_s)


def create_probe_keyspaces(probe: str, coordinator: str, others: tuple[str, ...]) -> None:
    """For `wait_until_down`: keyspace ``<probe>_<dc>`` kept in `coordinator` and `dc` only."""
    with session(coordinator) as s:
        for dc in others:
            s.execute(f"CREATE KEYSPACE IF NOT EXISTS {probe}_{dc} WITH replication = "
                      f"{{'class': 'NetworkTopologyStrategy', '{coordinator}': 1, '{dc}': 1}}", timeout=60)
            s.execute(f"CREATE TABLE IF NOT EXISTS {probe}_{dc}.probe (k int PRIMARY KEY)", timeout=60)


def wait_until_down(coordinator: str, dc: str, probe: str) -> None:
    """Wait until `coordinator`'s node has convicted `dc`'s node (its gossip says down): a
    write at ALL to ``<probe>_<dc>`` is then refused as Unavailable at once instead of
    timing out. From then on the coordinator sends that node nothing: what it owes it
    becomes hints on the coordinator's own disk."""
    from cassandra import ConsistencyLevel, Unavailable, WriteTimeout
    from cassandra.query import SimpleStatement

    with session(coordinator) as s:
        stmt = SimpleStatement(f"INSERT INTO {probe}_{dc}.probe (k) VALUES (1)", consistency_level=ConsistencyLevel.ALL)

        def refused() -> bool:
            try:
                s.execute(stmt)
            except Unavailable:
                return True
            except WriteTimeout:
                return False
            return False

        wait_until(f"{coordinator} convicting {dc}", refused)


def drop_keyspaces(names: list[str]) -> None:
    with session(DCS[0]) as s:
        for name in names:
            s.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


__all__ = ["DCS", "DC_ADDR", "PORT", "REPLICATION", "START", "STARTING_ENV", "create_probe_keyspaces",
           "drop_keyspaces", "kill_dc", "pause_dc", "require_cassandra_dcs", "restore_ring", "resume_dc", "script",
           "session", "stored_indexes", "url", "wait_for_background_start", "wait_until", "wait_until_down"]

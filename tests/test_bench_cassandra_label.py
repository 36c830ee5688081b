"""A Cassandra figure is called durable only when the node syncs its commit log first.

The bench used to report "durable Cassandra" measured on the test node's `periodic` commit
log (synced every 10 s): acknowledged writes there can vanish with the power.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.ledger_bench import label_cassandra

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("sync", "durable"), [("periodic 10000ms", False), ("group 2ms", True), ("batch", True),
                                               ("unknown", False)])
def test_only_a_synced_commit_log_makes_a_durable_figure(sync: str, durable: bool) -> None:
    out: dict[str, Any] = {}
    label_cassandra(out, (1234.5, sync))
    assert out["cassandra_per_s"] == 1234.5 and out["cassandra_commitlog_sync"] == sync
    assert out["cassandra_durable"] is durable
    assert out["durable_cassandra_per_s"] == (1234.5 if durable else None)
    none: dict[str, Any] = {}
    label_cassandra(none, None)
    assert none["durable_cassandra_per_s"] is None and none["cassandra_durable"] is False


@pytest.mark.parametrize(("args", "expected"), [([], "commitlog_sync: periodic"),
                                               (["--durable"], "commitlog_sync: group")])
def test_the_script_writes_a_synced_commit_log_when_asked(tmp_path: Path, args: list[str], expected: str) -> None:
    """`scripts/cassandra config` prints what `start` would write, starting nothing."""
    yaml = subprocess.run([str(ROOT / "scripts" / "cassandra"), "config", *args], capture_output=True, text=True,
                          check=True, env={"GEOLEDGER_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    assert expected in yaml.splitlines()
    assert not any(tmp_path.iterdir())


@pytest.mark.cassandra
def test_the_bench_reads_the_nodes_own_setting() -> None:
    from bench.ledger_bench import commitlog_sync
    from tests.support.realparts import require_cassandra

    require_cassandra()
    mode = commitlog_sync().split()[0]
    assert mode in ("periodic", "group", "batch")

"""A region with extra HTTP workers (`geoledger serve --workers`), as real processes: the
workers take writes off the region's process, and kill -9 of one loses nothing acknowledged."""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from load.auth import Role
from load.cluster import Cluster, ClusterError, default_config
from replication.ids import transfer_id

pytestmark = pytest.mark.load
CUSTOMERS = 300


def paying_clients(cluster: Cluster, acked: dict[int, str], stop: threading.Event, seed: int) -> None:
    """Pays until told to stop, a fresh connection per request (so the kernel spreads them over
    the region's processes), retrying each transfer with its id until it is answered."""
    amap, url, headers = cluster.cfg.amap(), cluster.cfg.url(0), cluster.headers(Role.PAYMENTS)
    rng = random.Random(seed)
    local = seed << 32
    while not stop.is_set():
        local += 1
        payer = rng.randint(1, CUSTOMERS)
        body = {"id": transfer_id(amap.unit_of(payer), local), "debit_account_id": payer,
                "credit_account_id": payer % CUSTOMERS + 1, "amount": 1, "ledger": 156, "code": 1}
        for _ in range(100):
            try:
                r = httpx.post(f"{url}/transfers", json=body, headers=headers, timeout=5)
            except httpx.HTTPError:  # the worker holding this connection was killed: same id again
                time.sleep(0.05)
                continue
            if r.status_code in (200, 201):
                acked[body["id"]] = r.json()["result"]
                break
            time.sleep(0.05)


def intake_submits(cluster: Cluster) -> float:
    text = httpx.get(f"{cluster.cfg.url(0)}/metrics", headers=cluster.headers(Role.AUDITOR), timeout=5).text
    found = re.search(r'geoledger_intake_calls_total\{kind="submit",region="changchun"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_workers_take_writes_and_a_killed_worker_loses_nothing_acknowledged(tmp_path: Path) -> None:
    cfg = default_config(1, base_port=0, customers=CUSTOMERS, data_dir=str(tmp_path / "data"), workers=3)
    cluster = Cluster(cfg, tmp_path)
    try:
        cluster.start_all()
        acked: dict[int, str] = {}
        stop = threading.Event()
        threads = [threading.Thread(target=paying_clients, args=(cluster, acked, stop, s)) for s in range(1, 5)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        victim = cluster.worker_pids(0)[1]
        os.kill(victim, signal.SIGKILL)  # mid-load, not through the cluster: an unexpected death
        time.sleep(2.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        deadline = time.monotonic() + 30
        while cluster.worker_pids(0).get(1) in (None, victim) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.worker_pids(0).get(1) not in (None, victim), "the supervisor did not restart the worker"
        assert len(acked) > 100 and set(acked.values()) <= {"OK", "EXISTS"}
        missing = httpx.post(f"{cfg.url(0)}/internal/missing", json=sorted(acked),
                             headers=cluster.headers(Role.OPERATOR), timeout=10).json()["missing"]
        assert missing == [], f"{len(missing)} acknowledged transfers are not in the books"
        assert intake_submits(cluster) > 0, "no write went through a worker"
    finally:
        cluster.stop_all()


def test_a_data_directory_too_long_for_the_intake_socket_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    cfg = default_config(1, base_port=0, data_dir=str(deep), workers=2)
    with pytest.raises(ClusterError, match="too long for a Unix socket"):
        Cluster(cfg, tmp_path)

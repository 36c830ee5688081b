"""Real Locust against real region gateway processes, ending in a consistency verdict."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from load.auth import Role
from load.runner import LoadOptions, run_load
from replication.config import INVARIANTS

pytestmark = pytest.mark.load


def test_a_short_load_run_acknowledges_and_verifies(tmp_path: Path) -> None:
    opts = LoadOptions(users=8, spawn_rate=8, duration=6, customers=300, out=tmp_path, base_port=0)
    result = run_load(opts)
    assert result["verdict"] == "ok", result["invariants"]
    assert result["acked"] > 50  # failed requests were retried with the same id; the verdict judges them
    saved = json.loads((tmp_path / "load.json").read_text())
    for key in ("acked_per_s", "p50_ms", "p99_ms", "requests", "failures", "verdict", "invariants"):
        assert key in saved
    assert set(saved["invariants"]) == set(INVARIANTS)
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "locust.html").exists()
    # requests are HTTP requests only: Locust's per-endpoint rows add up to them, the gateways
    # counted as many, and no per-result row (once "RESULT OK") is among Locust's statistics
    with open(tmp_path / "locust_stats.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["Type"] for r in rows if r["Name"] != "Aggregated"} <= {"GET", "POST"}
    assert saved["requests"] == sum(saved["requests_by_name"].values()) > 0
    assert saved["gateway_requests"] == saved["requests"], (saved["gateway_requests"], saved["requests"])
    assert saved["results"].get("OK", 0) > 0 and sum(saved["results"].values()) >= saved["acked"]
    assert set(saved["explain"]) >= {"requests", "results", "acked"}
    assert {"load.json", "acked.log", "results.log", "locust_final.json", "locust_stats.csv", "locust.html",
            "data/"} <= set(saved["files"])
    assert saved["files"] == sorted(p.name + ("/" if p.is_dir() else "") for p in tmp_path.iterdir())


def test_locust_worker_processes_log_every_acknowledgement(tmp_path: Path) -> None:
    """With Locust's --processes each worker buffers its acknowledgement log and hands it on
    as it quits: every OK or EXISTS answer is in the log the verdict reads, exactly once."""
    opts = LoadOptions(users=8, spawn_rate=8, duration=6, customers=300, out=tmp_path, base_port=0, processes=2)
    result = run_load(opts)
    assert result["verdict"] == "ok", result["invariants"]
    saved = json.loads((tmp_path / "load.json").read_text())
    workers = [json.loads(line) for line in (tmp_path / "results.log").read_text().splitlines()]
    assert len({w["pid"] for w in workers}) == 2
    assert saved["acked"] == saved["results"].get("OK", 0) + saved["results"].get("EXISTS", 0) > 50
    assert saved["gateway_requests"] == saved["requests"]


def test_a_missed_slo_fails_the_verdict(tmp_path: Path) -> None:
    opts = LoadOptions(users=4, spawn_rate=4, duration=4, customers=300, out=tmp_path,
                       base_port=0, slo_min_acked_per_s=1e9)
    result = run_load(opts)
    assert result["verdict"] != "ok" and result["slo_missed"]


def test_bad_load_options_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--users"):
        run_load(LoadOptions(users=0, out=tmp_path))
    assert not (tmp_path / "serve.json").exists()


def test_kill_9_of_a_region_gateway_with_hostile_clients_loses_no_acknowledged_transfer(tmp_path: Path) -> None:
    """region-outage's schedule on real processes: Beijing is kill -9'd at 6 s, restarted at 14 s,
    while hostile clients attack the bank's rules beside the normal ones."""
    opts = LoadOptions(users=10, spawn_rate=10, duration=18, customers=300, out=tmp_path,
                       base_port=0, chaos="region-outage", hostile=5)
    result = run_load(opts)
    events = [e["event"] for e in result["chaos_events"]]
    assert events[:2] == ["killed (kill -9)", "restarted"]
    assert result["acked"] > 50
    assert result["invariants"]["durability"]["ok"], result["invariants"]["durability"]
    assert result["verdict"] == "ok", result["invariants"]
    hostile = {k: v for k, v in result["requests_by_name"].items() if k.startswith("hostile:")}
    assert len(hostile) >= 5, hostile  # the hostile clients did attack
    assert result["invariants"]["atomic_chains"]["chains_checked"] > 0


@pytest.mark.parametrize("mode", ["unit", "quorum"])
def test_responses_name_the_region_that_wrote_the_transfer(tmp_path: Path, mode: str) -> None:
    """The debit account's unit's writer: its home (unit mode) or the leader of its Raft log,
    which settles at the home (quorum); for a post, the pending transfer's, even though the
    post names no account. Asked at another region."""
    import httpx

    from load.cluster import Cluster, default_config
    from replication.ids import transfer_id
    from replication.routing import RoutingTable

    cfg = default_config(3, mode=mode, ship="semi-sync" if mode == "unit" else "async",
                         base_port=0, customers=60, data_dir=str(tmp_path / "data"))
    homes = RoutingTable.initial(cfg.amap().n_units, 3).homes
    cluster = Cluster(cfg, tmp_path)
    try:
        cluster.start_all()
        amap = cfg.amap()
        customer = next(c for c in range(1, 61) if homes[amap.unit_of(c)] == 1)  # homed in Beijing
        merchant = next(c for c in range(customer + 1, 61) if amap.unit_of(c) == amap.unit_of(customer))
        ask = cfg.url(2)  # Shanghai's gateway
        pays = cluster.headers(Role.PAYMENTS)
        if mode == "quorum":  # each unit's log is handed to its home once the first elections settle
            headers = cluster.headers()
            for _ in range(200):
                leaders = [httpx.get(f"{cfg.url(r)}/internal/state", headers=headers, timeout=5)
                           .json()["status"]["writers"] for r in range(3)]
                if all(row == list(homes) for row in leaders):
                    break
                time.sleep(0.1)
            assert all(row == list(homes) for row in leaders), leaders
        unit = amap.unit_of(customer)
        hold_id, post_id = transfer_id(unit, 7001), transfer_id(unit, 7002)  # ids name the customer's unit
        hold = {"id": hold_id, "debit_account_id": customer, "credit_account_id": merchant, "amount": 10,
                "ledger": 156, "code": 2, "flags": 2, "timeout": 3600}  # the customers' ledger
        for _ in range(100):  # the cluster elects/leases first: UNAVAILABLE until then (retry, same id)
            r = httpx.post(f"{ask}/transfers", json=hold, timeout=5, headers=pays)
            if r.status_code != 503:
                break
            time.sleep(0.1)
        assert r.json()["result"] == "OK", r.text
        post = httpx.post(f"{ask}/transfers/{hold_id}/post", json={"id": post_id}, timeout=5, headers=pays).json()
        assert post["result"] == "OK"
        assert r.json()["region"] == "beijing" and post["region"] == "beijing"  # the unit's home wrote both
    finally:
        cluster.stop_all()


@pytest.mark.parametrize(("shape", "expected"), [("", []), ("ramp", ["Ramp"]), ("spike", ["Spike"]),
                                                 ("soak", ["Soak"])])
def test_locust_runs_the_shape_asked_for_and_none_otherwise(shape: str, expected: list[str]) -> None:
    """Without --shape, --users/--spawn-rate rule (a leftover shape class used to override
    them: all users at once). Loaded by Locust's own loader, in its own process (gevent)."""
    import os
    import subprocess
    import sys

    code = ("from locust.util.load_locustfile import load_locustfile\n"
            "_, shapes = load_locustfile('load/locustfile.py')\n"
            "print(','.join(sorted(type(s).__name__ for s in shapes)))")
    env = {**os.environ, "GEOLEDGER_SHAPE": shape}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip().splitlines()[-1:]
    assert [n for n in ",".join(out).split(",") if n] == expected


def test_locust_reads_the_credentials_file_and_honours_host(tmp_path: Path) -> None:
    """Pointed at `serve`'s credentials file, the suite sends its payments token and calls
    the file's gateways; `--host` outside them sends everything to that host."""
    import os
    import subprocess
    import sys

    from load.auth import Credentials

    creds = Credentials.generate()
    path = tmp_path / "credentials.json"
    creds.save(path, ["http://127.0.0.1:9100", "http://127.0.0.1:9101"])
    code = ("import json, locustfile as f\n"
            "print(json.dumps([f.GATEWAYS, f.BankUser.host, f.BankUser.default_headers, f.gateways_for(None),\n"
            "                  f.gateways_for('http://127.0.0.1:9101/'), f.gateways_for('http://elsewhere:8100')]))")
    env = {**os.environ, "GEOLEDGER_CREDENTIALS": str(path)}
    env.pop("GEOLEDGER_GATEWAYS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1] / "load").stdout.strip().splitlines()[-1]
    gateways, host, headers, default, listed, other = json.loads(out)
    assert gateways == default == listed == ["http://127.0.0.1:9100", "http://127.0.0.1:9101"]
    assert host == gateways[0] and other == ["http://elsewhere:8100"]
    assert headers == {"Authorization": f"Bearer {creds.tokens[Role.PAYMENTS]}"}


def test_steady_p99_leaves_out_the_ramp_up_and_short_runs(tmp_path: Path) -> None:
    from load.runner import steady_p99_ms

    assert steady_p99_ms(tmp_path, 2.0) is None  # no history at all
    header = "Timestamp,User Count,Type,Name,99%\n"
    rows = [f"{1000 + t},120,POST,pay,{900 if t < 12 else 30 + t % 3}\n" for t in range(30)]
    rows += [f"{1000 + t},120,GET,statement,{700}\n" for t in range(30)]  # reads are not transfers
    rows += [f"{1000 + t},120,POST,payroll,N/A\n" for t in range(30)]
    (tmp_path / "locust_stats_history.csv").write_text(header + "".join(rows))
    assert steady_p99_ms(tmp_path, 2.0) == 32.0  # rows from t = 2 + 10 s on; the ramp's 900 ms is out
    assert steady_p99_ms(tmp_path, 25.0) is None  # too short to have a steady window


def test_a_port_in_use_is_refused_with_its_number_and_nothing_is_left_bound(tmp_path: Path) -> None:
    import socket

    from load.cluster import Cluster, ClusterError, default_config

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        cfg = default_config(3, base_port=taken - 1, data_dir=str(tmp_path / "data"))  # region 1's port is taken
        with pytest.raises(ClusterError, match=f"127.0.0.1:{taken}"):
            Cluster(cfg, tmp_path)
        free = socket.socket()
        free.bind(("127.0.0.1", taken - 1))  # region 0's port was released again
        free.close()
    finally:
        holder.close()


def test_free_ports_are_bound_by_the_cluster_and_recorded_for_every_process(tmp_path: Path) -> None:
    from load.cluster import Cluster, default_config
    from load.region import ServeConfig

    cluster = Cluster(default_config(3, base_port=0, data_dir=str(tmp_path / "data")), tmp_path)
    try:
        ports = cluster.cfg.http_ports + cluster.cfg.peer_ports
        assert len(set(ports)) == 6 and 0 not in ports
        saved = ServeConfig.load(cluster.config_path)
        assert [saved.url(r) for r in range(3)] == [f"http://127.0.0.1:{p}" for p in cluster.cfg.http_ports]
    finally:
        cluster.stop_all()


def test_the_no_op_ceiling_is_measured_with_real_locust_against_the_gateways_server_stack() -> None:
    """The load bench's ceiling: real Locust against the no-op endpoint. Every request it
    made was answered (no failure), and the figures that read a gateway's run against it —
    requests/s, both processes' CPU per 1,000 requests, what bounded it — are all there."""
    from bench.http_ceiling import measure

    ceiling = measure(users=10, spawn_rate=10, duration_s=3)
    assert ceiling["requests"] > 0 and ceiling["failures"] == 0
    assert ceiling["requests_per_s"] > 0 and ceiling["p50_ms"] is not None
    per_k = ceiling["limits"]["cpu_s_per_1000_acked"]
    assert per_k["region noop"] is not None and per_k["region noop"] > 0 and per_k["locust"] > 0
    assert ceiling["limits"]["bound_by"] in ("cpu", "locust", "users")

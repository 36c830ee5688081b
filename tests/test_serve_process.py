"""The live surface as processes: `geoledger serve` and its regions against strangers and faults.

Reproductions of the issue-14 review, on real region processes: the peer port of a running
region takes garbage, forged handshakes and the 64 MiB half-frames that used to cost ~65 MB
of RSS each, and keeps serving; the largest legal request leaves the event loop responsive
(the old 31 MB batch held it 1.9 s); a region that dies unexpectedly is restarted, one the
chaos driver killed is not; SIGTERM (even kill -9) of `serve` leaves no region behind; the
credentials file is the owner's alone and `serve.json` holds no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from load.auth import Role
from load.cluster import Cluster, default_config
from load.peerauth import PeerKeys
from load.peerlink import PeerSender
from replication.ids import transfer_id
from replication.messages import Heartbeat

pytestmark = pytest.mark.load
ROOT = Path(__file__).resolve().parents[1]
U128_MAX = (1 << 128) - 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("serve")
    cfg = default_config(3, base_port=0, customers=600, data_dir=str(tmp / "data"))
    c = Cluster(cfg, tmp)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pay(cluster: Cluster, region: int, local: int, payer: int = 1) -> httpx.Response:
    amap = cluster.cfg.amap()
    body = {"id": transfer_id(amap.unit_of(payer), local), "debit_account_id": payer,
            "credit_account_id": payer + amap.n_units, "amount": 1, "ledger": 156, "code": 1}
    for _ in range(100):  # a region takes its lease over its first heartbeats (503 until then)
        r = httpx.post(f"{cluster.cfg.url(region)}/transfers", json=body, headers=cluster.headers(Role.PAYMENTS),
                       timeout=10)
        if r.status_code != 503:
            return r
        time.sleep(0.1)
    return r


def test_the_secrets_stay_with_their_owners(cluster: Cluster) -> None:
    creds = cluster.credentials_path
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    served = cluster.config_path.read_text()
    for token in cluster.credentials.tokens.values():
        assert token not in served
    for private in cluster._peer_private:
        assert private not in served
        for log in cluster.workdir.glob("region-*.log"):
            assert private not in log.read_text(errors="replace")
    assert set(json.loads(served)["token_digests"]) == {"payments", "auditor", "operator"}


def test_a_live_regions_peer_port_takes_garbage_forgeries_and_half_frames(cluster: Cluster) -> None:
    """Region 0 is attacked on its peer port while it serves; nothing it receives is applied,
    its memory does not balloon, and it goes on acknowledging transfers."""
    cfg = cluster.cfg
    pid = cluster.procs[0].pid
    before = rss_kb(pid)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    real_public = PeerKeys.load(0, cluster._peer_private[0], cfg.peer_keys).public
    forged_keys = PeerKeys(1, Ed25519PrivateKey.generate(), real_public)  # Beijing's id, not its key

    async def attack() -> None:
        port = cfg.peer_port(0)
        conns = []
        for _ in range(3):  # the review's three half-sent 64 MiB frames
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(struct.pack(">I", 64 << 20) + b"\0" * (1 << 20))
            conns.append((r, w))
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(os.urandom(5000))
        conns.append((r, w))
        forger = PeerSender(port, forged_keys, 0)  # claims to be Beijing, cannot sign as it
        forger.send(Heartbeat(1, 10**6, 10**6, (0, 0, 0)))
        for _ in range(100):
            if forger.handshake_failures:
                break
            await asyncio.sleep(0.05)
        assert forger.handshake_failures >= 1 and forger.sent_frames == 0
        await forger.close()
        for r, w in conns:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(r.read(), 5)  # the region hung up
            w.close()

    asyncio.run(attack())
    assert rss_kb(pid) - before < 20_000, "a stranger made the region buffer megabytes"
    assert httpx.get(f"{cfg.url(0)}/health").status_code == 200
    assert pay(cluster, 0, 1).json()["result"] == "OK"
    log = (cluster.workdir / "region-0.log").read_text(errors="replace")
    assert "peer link refused" in log


def test_the_largest_legal_request_leaves_the_event_loop_responsive(cluster: Cluster) -> None:
    """8,190 transfers at every field's maximum (about 3.9 MB of JSON), then 8,190 real
    payments, then a 31 MB body: the loop's thread never works more than a fraction of the
    lease without a break (`load.loopwatch`: CPU time, so a busy machine does not count),
    and /health keeps answering throughout."""
    cfg = cluster.cfg
    url = cfg.url(0)
    amap = cfg.amap()
    assert pay(cluster, 0, 2).status_code == 201
    big = {"id": U128_MAX - 1, "debit_account_id": U128_MAX, "credit_account_id": U128_MAX, "amount": U128_MAX,
           "ledger": 2**32 - 1, "code": 65535, "flags": 0, "pending_id": U128_MAX, "timeout": 2**32 - 1,
           "user_data_128": U128_MAX, "user_data_64": 2**64 - 1, "user_data_32": 2**32 - 1}
    payers = [c for c in range(1, 601) if cfg.regions[amap.unit_of(c) % 3] == cfg.regions[0]][:40]
    payments = [{"id": transfer_id(amap.unit_of(p), 10_000 + k), "debit_account_id": p,
                 "credit_account_id": p + amap.n_units, "amount": 1, "ledger": 156, "code": 1}
                for k in range(8190) for p in [payers[k % len(payers)]]]
    bodies = {"max-size": json.dumps([big] * 8190).encode(), "payments": json.dumps(payments).encode(),
              "31 MB": b"[" + b"1," * (15 << 20) + b"1]"}
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                t = time.perf_counter()
                assert h.get(f"{url}/health").status_code == 200
                health.append(time.perf_counter() - t)
                time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    statuses = {}
    try:
        busy_before = _loop_busy_over(cluster, 0.25)
        for name, body in bodies.items():
            r = httpx.post(f"{url}/transfers/batch", content=body, timeout=120,
                           headers={**cluster.headers(Role.PAYMENTS), "content-type": "application/json"})
            statuses[name] = r.status_code
            if name == "payments":
                assert sum(o["result"] == "OK" for o in r.json()) > 8000
        time.sleep(0.2)
        busy_after = _loop_busy_over(cluster, 0.25)
    finally:
        stop.set()
        prober.join(30)
    assert statuses == {"max-size": 200, "payments": 200, "31 MB": 413}
    assert busy_after == busy_before, "a request held the event loop's thread for over 250 ms of CPU"
    assert len(health) >= 5 and max(health) < 10, f"/health took {max(health):.1f} s"


def _loop_busy_over(cluster: Cluster, bound: float) -> int:
    text = httpx.get(f"{cluster.cfg.url(0)}/metrics", headers=cluster.headers(Role.AUDITOR)).text
    series = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("geoledger_event_loop_busy_seconds_")}
    labels = f'region="{cluster.cfg.regions[0]}"'
    total = series[f"geoledger_event_loop_busy_seconds_count{{{labels}}}"]
    within = series[f'geoledger_event_loop_busy_seconds_bucket{{le="{bound}",{labels}}}']  # prometheus_client's order
    return int(total - within)


def test_a_second_serve_on_the_same_data_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    """Two `serve`s on one --data used to both accept writes (and lose acknowledged transfers
    on restart); the second one's regions cannot take their stores' locks and it stops."""
    from load.cluster import ClusterError

    cfg = default_config(3, base_port=0, customers=600, data_dir=cluster.cfg.data_dir)
    second = Cluster(cfg, tmp_path)
    try:
        with pytest.raises(ClusterError, match="already open for writing by process"):
            second.start_all(timeout=60)
    finally:
        second.stop_all()
    assert pay(cluster, 0, 4).status_code in (200, 201)


def test_a_region_that_dies_unexpectedly_is_restarted_and_a_chaos_kill_is_not(cluster: Cluster) -> None:
    assert cluster.supervisor is not None
    old = cluster.procs[1].pid
    os.kill(old, signal.SIGKILL)  # not through the cluster: an unexpected death
    deadline = time.monotonic() + 30
    while cluster.procs[1].pid == old and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.procs[1].pid != old, "the supervisor did not restart Beijing"
    cluster.wait_healthy(1)
    events = [e["event"] for e in cluster.supervisor.events]
    assert any("restarted by the supervisor" in e for e in events), events
    cluster.kill(2)  # the chaos driver's deliberate kill -9
    time.sleep(1.5)
    assert cluster.procs[2].poll() is not None, "a deliberately killed region was restarted"
    cluster.start(2)
    cluster.wait_healthy(2)
    assert pay(cluster, 1, 3, payer=2).status_code in (200, 201)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.update(int(c) for c in (task / "children").read_text().split())
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], set[int], list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "geoledger.cli", "serve", "--regions", "2", "--base-port", "0",
                             "--data", str(tmp_path / "data")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "400"})
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "SIGTERM" in line:
            return proc, _children(proc.pid), lines
    proc.kill()
    raise AssertionError("serve did not start:\n" + "".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill -9"])
def test_stopping_serve_stops_every_region(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM used to end `serve` at once and leave its regions serving; kill -9 of `serve`
    now ends them too (their lifeline, stdin, closes)."""
    proc, regions, lines = _serve(tmp_path)
    try:
        assert len(regions) == 2 and all(_alive(p) for p in regions)
        text = "".join(lines)
        creds = tmp_path / "data" / "credentials.json"
        assert f"credentials: {creds}" in text and "Authorization: Bearer" in text
        for token in json.loads(creds.read_text())["tokens"].values():
            assert token not in text  # printed: how to use the tokens, never the tokens
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in regions) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in regions), "a region outlived its serve"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in regions:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


"""The machine's HTTP ceiling: what no gateway could beat here, measured in the same run.

A closed-loop Locust run on the same cores as the servers it loads measures the machine as
much as the servers. So the load bench also loads an endpoint that does nothing — it reads
the body and answers a fixed payment-sized JSON — served by the gateways' own server stack
(uvicorn with uvloop and httptools, the same options, one process) with the same users,
spawn rate, duration and wait time, and a payment-sized body. Its requests/s is the ceiling
for one-transfer requests on this machine: a gateway's figure is read against it, and a
target above it is out of reach of any server code on these cores (only more cores or
fewer requests, i.e. batches, move it).

    python -m bench.http_ceiling [--users N] [--duration S]   # prints the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench.servers import free_socket, wait_healthy
from load.cpu import CpuMeter, limits
from load.runner import csv_summary, steady_p99_ms

LOCUSTFILE = Path(__file__).with_name("ceiling_locustfile.py")
ANSWER = json.dumps({"id": "1" * 20, "result": "OK", "region": "changchun"}).encode()
"""A payment's answer, as long as the gateways' (`load.work`)."""
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]

Message = MutableMapping[str, Any]


async def noop_app(scope: Message, receive: Callable[[], Awaitable[Message]],
                   send: Callable[[Message], Awaitable[None]]) -> None:
    """Reads the request (its whole body) and answers `ANSWER` (201 to a POST, as a payment
    is answered; 200 to a GET, as the bench's wait for /health wants): no parsing, no work."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 201 if scope["method"] == "POST" else 200,
                "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def _serve(fd: int) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(noop_app, log_level="warning", access_log=False, loop="uvloop",
                                           http="httptools", lifespan="off", proxy_headers=False,
                                           server_header=False, date_header=False))
    server.run(sockets=[socket.socket(fileno=fd)])


def measure(users: int, spawn_rate: int, duration_s: float, processes: int = 1) -> dict[str, Any]:
    """Requests/s, p50/p99 (and steady p99) of the no-op endpoint under Locust (`processes`
    of it: one is what the load bench runs), with what bounded the run and the CPU seconds
    per 1,000 requests of the server and of Locust."""
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = subprocess.Popen([sys.executable, "-m", "bench.http_ceiling", "--serve-fd", str(sock.fileno())],
                              pass_fds=(sock.fileno(),))
    try:
        wait_healthy(url, server)
        meter = CpuMeter({"noop": server.pid})
        with tempfile.TemporaryDirectory(prefix="geoledger-ceiling-") as tmp:
            out = Path(tmp)
            meter.start()
            subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
                            "-u", str(users), "-r", str(spawn_rate), "-t", f"{max(1, round(duration_s))}s",
                            "--csv", str(out / "locust"), "--csv-full-history", "--host", url,
                            "--stop-timeout", "5", "--exit-code-on-error", "0"]
                           + (["--processes", str(processes)] if processes > 1 else []),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu = meter.read({"noop": server.pid})
            summary = csv_summary(out)
            steady = steady_p99_ms(out, users / spawn_rate)
    finally:
        server.terminate()
        server.wait(timeout=10)
        sock.close()
    requests = summary["requests"]
    return {"requests_per_s": summary["requests_per_s"], "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
            "p99_steady_ms": steady, "requests": requests, "failures": summary["failures"],
            "limits": limits(users, summary["avg_ms"], summary["requests_per_s"], cpu, requests, processes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=400, help="Locust users (closed loop, as the load bench)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--processes", type=int, default=1, help="Locust processes")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        _serve(args.serve_fd)
        return
    if args.users < 1 or args.processes < 1 or not 0 < args.duration < float("inf"):
        parser.error("--users and --processes must be at least 1, --duration a positive number of seconds")
    print(json.dumps(measure(args.users, max(60, args.users // 2), args.duration, args.processes), indent=2))


if __name__ == "__main__":
    main()

"""Server processes a benchmark starts: on a socket the bench binds first (so the port is
theirs from the start, no race for a free one) and waited for until they answer."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_socket() -> socket.socket:
    """A listening socket on a free loopback port, inheritable by a child process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until `url`/health answers 200; raises if `proc` exits or `timeout` passes first."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer /health within {timeout:.0f} s")


__all__ = ["free_socket", "wait_healthy"]

"""A region's gateway app in-process (region 0 of a run whose peers are not running), with
the run's credentials: for tests of the region app and of routes it serves."""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi.testclient import TestClient

from load import peerauth
from load.auth import Credentials, Role
from load.region import ServeConfig, build_region_app

CREDS = Credentials.generate()
HEADERS = {role: CREDS.header(role) for role in Role}


def region_app(tmp_path: Path, regions: list[str], fatal: list[BaseException] | None = None) -> TestClient:
    private, public = peerauth.generate(len(regions))
    socks = [socket.socket() for _ in regions]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
    cfg = ServeConfig(regions=regions, mode="unit", ship="async", customers=20, units_per_region=2,
                      data_dir=str(tmp_path / "data"), token_digests=CREDS.digests(), peer_keys=public,
                      peer_ports=[s.getsockname()[1] for s in socks], http_ports=[1] * len(regions))
    on_fatal = fatal.append if fatal is not None else _no_exit
    app = build_region_app(cfg, 0, private[0], peer_socket=socks[0], on_fatal=on_fatal)
    for s in socks[1:]:
        s.close()
    return TestClient(app, headers=HEADERS[Role.PAYMENTS])


def _no_exit(error: BaseException) -> None:
    raise AssertionError(f"the region stopped: {error}")

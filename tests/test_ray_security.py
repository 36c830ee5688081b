"""A local Ray started by geoledger admits only holders of its token.

Ray 2.60 binds its GCS and raylet ports on every interface and has no bind-address
setting, so the defence is Ray's token authentication, which a new local cluster turns
on (RAY_AUTH_MODE unset: a token generated into the user's owner-only ~/.ray). This
shows a process with the token joining and one with another token refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.ray


def _join(address: str, **env: str) -> subprocess.CompletedProcess[str]:
    probe = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print('joined')"
    return subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_a_stranger_without_the_token_cannot_join_the_local_ray(ray_local: dict[str, Any]) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    assert _join(address).stdout.strip() == "joined"  # the owner (its token file) gets in
    stranger = _join(address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token")
    assert stranger.returncode != 0 and "joined" not in stranger.stdout
    assert "Failed to connect" in stranger.stderr or "uthenticat" in stranger.stderr

"""Real Locust against real region gateway processes, ending in a consistency verdict."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from load.runner import LoadOptions, run_load


def _free_base_port(count: int = 3) -> int:
    for base in range(8400, 9400, 10):
        try:
            socks = []
            for i in range(count):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def test_a_short_load_run_acknowledges_and_verifies(tmp_path: Path) -> None:
    opts = LoadOptions(users=8, spawn_rate=8, duration=6, customers=300, out=tmp_path, base_port=_free_base_port())
    result = run_load(opts)
    assert result["verdict"] == "ok", result["invariants"]
    assert result["acked"] > 50  # failed requests were retried with the same id; the verdict judges them
    saved = json.loads((tmp_path / "load.json").read_text())
    for key in ("acked_per_s", "p50_ms", "p99_ms", "requests", "failures", "verdict", "invariants"):
        assert key in saved
    assert set(saved["invariants"]) == {"conservation", "no_overdraft", "exactly_once", "convergence",
                                        "durability", "audit_chain"}
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "locust.html").exists()


def test_a_missed_slo_fails_the_verdict(tmp_path: Path) -> None:
    opts = LoadOptions(users=4, spawn_rate=4, duration=4, customers=300, out=tmp_path,
                       base_port=_free_base_port(), slo_min_acked_per_s=1e9)
    result = run_load(opts)
    assert result["verdict"] != "ok" and result["slo_missed"]


def test_bad_load_options_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--users"):
        run_load(LoadOptions(users=0, out=tmp_path))
    assert not (tmp_path / "serve.json").exists()


def test_kill_9_of_a_region_gateway_loses_no_acknowledged_transfer(tmp_path: Path) -> None:
    """region-outage's schedule on real processes: Beijing is kill -9'd at 6 s, restarted at 14 s."""
    opts = LoadOptions(users=8, spawn_rate=8, duration=18, customers=300, out=tmp_path,
                       base_port=_free_base_port(), chaos="region-outage")
    result = run_load(opts)
    events = [e["event"] for e in result["chaos_events"]]
    assert events[:2] == ["killed (kill -9)", "restarted"]
    assert result["acked"] > 50
    assert result["invariants"]["durability"]["ok"], result["invariants"]["durability"]
    assert result["verdict"] == "ok", result["invariants"]

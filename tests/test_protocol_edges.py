"""Protocol arithmetic that every tested configuration happened to get right: majorities
over even vote totals, the lease's drift margin, and the CLI's exit code on a violation."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from replication.accounts import AccountMap
from replication.admission import DEFENCES
from replication.config import MS, NodeConfig
from replication.messages import HeartbeatAck, Tick
from replication.node import RegionNode
from replication.raft import RaftConfig, RaftNode

CFG = RaftConfig(election_min=600 * MS, election_max=1200 * MS, heartbeat_every=100 * MS)


@pytest.mark.parametrize(("n", "weights", "half", "more"), [
    (4, (), {0, 1}, {0, 1, 2}),  # 2 of 4 votes is not a majority, 3 of 4 is
    (2, (), {0}, {0, 1}),
    (2, (2, 2), {1}, {0, 1}),  # 2 of 4 weighted votes is not a majority
    (4, (1, 1, 3, 1), {2}, {2, 0}),  # 3 of 6 is not, 4 of 6 is
])
def test_a_majority_is_more_than_half_of_the_votes_even_when_they_split_evenly(n: int, weights: tuple[int, ...],
                                                                               half: set[int], more: set[int]) -> None:
    """With an even total, half the votes is not a majority: two such halves would not
    intersect, and two leaders could commit in one term."""
    raft = RaftNode(0, n, replace(CFG, weights=weights), random.Random(1))
    assert not raft.is_majority(half)
    assert raft.is_majority(more)


def test_a_homes_lease_ends_before_any_voters_grant_even_at_the_worst_drift() -> None:
    """The holder measures its lease from the round's send time, shortened by the drift
    bound; the voter's grant runs the full lease from receipt. A lease computed with
    (1 + drift) would outlive a grant: a new home could be promoted while the old one writes."""
    amap = AccountMap(3, np.arange(13) % 3)
    cfg = NodeConfig(3, 0, "unit", amap, 1000, lease=1000 * MS, drift=0.05)
    home = RegionNode(cfg)
    sent = 1_000 * MS
    home.handle(Tick(), sent)
    home.handle(HeartbeatAck(1, home.design.hb_round, True, None), sent + 7 * MS)
    assert home.lease_until == sent + int(cfg.lease * (1 - cfg.drift))
    # the voter granted at receipt (>= sent) for the full lease; with the home's clock running
    # `drift` fast, the home's lease still ends first
    voter_grant_ends = sent + cfg.lease
    assert home.lease_until * (1 + cfg.drift) - sent * cfg.drift < voter_grant_ends


@pytest.mark.slow
def test_simulate_exits_1_on_a_promised_violation(tmp_path: Path) -> None:
    """With a defence switched off, hostile clients break a promise, and the command says so
    (a CI job or an SRE's script reads the exit code, not the table)."""
    from geoledger.cli import build_parser
    from simulator.cli import cmd_simulate

    path = tmp_path / "hostile.toml"
    path.write_text('extends = "fuzz"\nrandom_faults = 0\n[workload.hostile]\nshare = 0.25\n'
                    'attacks = ["amount_extreme"]\n')
    saved = dict(DEFENCES)
    DEFENCES["u128"] = False
    try:
        args = build_parser().parse_args(["simulate", str(path), "--mode", "escrow", "--seed", "5",
                                          "--out", str(tmp_path / "out")])
        assert cmd_simulate(args) == 1
    finally:
        DEFENCES.update(saved)
    args = build_parser().parse_args(["simulate", str(path), "--mode", "escrow", "--seed", "5",
                                      "--out", str(tmp_path / "out2")])
    assert cmd_simulate(args) == 0

"""A peer's message that does not fit this region's configuration changes nothing.

The wire types a peer's messages; `replication.peercheck` judges their shape against the
receiving node (regions, units, Raft logs, accounts). Before it, a routing table with
too few homes or a heartbeat with too many heads stopped the region mid-step
(IndexError), and a routing table naming region 99 was adopted and persisted. Each misfit
here is refused with a report saying why, and the node is left exactly as a twin that
never saw it; with the check switched off, the same messages break the node.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.layout import TRANSFER_DTYPE
from replication import raft as r
from replication.config import MS, NodeConfig
from replication.log import Entry
from replication.messages import (
    Abort,
    Heartbeat,
    HeartbeatAck,
    Persist,
    Propose,
    Pull,
    QuotaRequest,
    RepairData,
    RepairRequest,
    Report,
    RoutingUpdate,
    Ship,
    ShipAck,
    Tick,
    Vote,
)
from replication.node import RegionNode
from replication.peercheck import PeerCheck
from replication.quorum import RaftBundle
from replication.routing import Fork, RoutingTable
from tests.support.nodes import AMAP, T, of

MODES = ("async", "unit", "escrow", "quorum")
BIG = (1 << 128) - 1
NO_ROWS = np.zeros(0, TRANSFER_DTYPE)


def entry(origin: int, seq: int, rv: int = 1, group: int = 0) -> Entry:
    return Entry(origin, seq, rv, T, NO_ROWS, group=group).seal()


# (name, message, what the refusal says): well typed, wrong for a 3-region, 3-unit node
MISFITS: list[tuple[str, Any, str]] = [
    ("a table for another unit count", Propose(1, RoutingTable(2, (1,), (2,))), "for 3 units"),
    ("a table naming region 99", RoutingUpdate(1, RoutingTable(5, (99, 1, 2), (2, 1, 1))), "home 99 names no region"),
    ("a table homing a unit at -1", Propose(1, RoutingTable(2, (-1, 1, 2), (2, 1, 1))), "home -1"),
    ("a fork of region 99", RoutingUpdate(1, RoutingTable(5, (1, 1, 2), (2, 1, 1), (Fork(99, 3, 5),))),
     "fork origin 99"),
    ("a fork from a later version", RoutingUpdate(1, RoutingTable(5, (1, 1, 2), (2, 1, 1), (Fork(0, 3, 9),))),
     "fork version 9"),
    ("a table at version 2^64", Propose(1, RoutingTable(1 << 64, (1, 1, 2), (2, 1, 1))), "routing version"),
    ("a zero epoch", Propose(1, RoutingTable(2, (1, 1, 2), (0, 1, 1))), "epoch 0"),
    ("an ack carrying a short table", HeartbeatAck(1, 1, True, RoutingTable(5, (0,), (1,))), "for 3 units"),
    ("heads for five regions", Heartbeat(1, 1, 1, (0, 0, 0, 0, 0)), "5 values, one per region wanted (3)"),
    ("heads for one region", Heartbeat(1, 1, 1, (0,)), "1 values, one per region wanted (3)"),
    ("a negative head", Heartbeat(1, 1, 1, (0, -5, 0)), "heads -5"),
    ("a head past 2^63", Heartbeat(1, 1, 1, (0, 1 << 63, 0)), "heads"),
    ("a snapshot cover for two regions", Heartbeat(1, 1, 1, (0, 0, 0), (1, 1)), "based has 2 values,"),
    ("a vote with one head", Vote(1, 2, True, (0,)), "1 values, one per region wanted (3)"),
    ("a ship of region 99", Ship(1, 99, []), "origin 99 names no region"),
    ("a ship of region -1", Ship(1, -1, []), "origin -1"),
    ("another region's entry in a ship", Ship(1, 1, [entry(2, 1)]), "region 2 travels in region 1's log"),
    ("an entry at sequence 0", Ship(1, 1, [entry(1, 0)]), "entry seq 0"),
    ("a Raft entry in a ship", Ship(1, 1, [entry(1, 1, group=2)]), "log 2 travels in log 0"),
    ("an ack of region 99", ShipAck(1, 99, 5), "origin 99"),
    ("a pull from -10", Pull(1, 0, -10), "after -10"),
    ("a pull past 2^63", Pull(1, 0, 1 << 63), "after"),
    ("an abort of version 2^64", Abort(1, 1 << 64), "version"),
    ("a repair of index -1", RepairRequest(1, 0, 1, -1), "index -1"),
    ("repair data at index -1", RepairData(-1, entry(0, 1)), "index -1"),
    ("an escrow request for account 2^128-1", QuotaRequest(1, BIG, 5), "not a customer account"),
    ("an escrow request for nothing", QuotaRequest(1, 1, 0), "need 0"),
]
RAFT_MISFITS: list[tuple[str, Any, str]] = [
    ("a vote request for log 99", r.RequestVote(1, 5, 0, 0, group=99), "log 99 does not exist"),
    ("an append to log -1", r.AppendEntries(1, 5, 0, 0, [], 0, group=-1), "log -1"),
    ("an append after index -3", r.AppendEntries(1, 5, -3, 0, [], 0), "prev_index -3"),
    ("a commit past 2^63", r.AppendEntries(1, 5, 0, 0, [], 1 << 63), "commit"),
    ("another log's entry in an append", r.AppendEntries(1, 5, 0, 0, [entry(1, 1, group=1)], 0), "log 1 travels"),
    ("a reply matching past 2^63", r.AppendReply(1, 1, True, 1 << 63), "match"),
    ("a snapshot of another log", r.InstallSnapshot(1, 5, r.Snapshot(3, 1, b"", group=1)), "snapshot of log 1"),
    ("a bundle hiding a misfit", RaftBundle([r.VoteReply(1, 1, True), r.TimeoutNow(1, 5, group=99)]), "log 99"),
]


def node(mode: str) -> RegionNode:
    """Region 0 of three, past its first tick."""
    n = RegionNode(NodeConfig(3, 0, mode, AMAP, 1000))
    n.handle(Tick(), T)
    return n


def state(n: RegionNode) -> tuple[Any, ...]:
    routing = getattr(n.design, "routing", None)
    return n.engine.digest(), tuple(n.heads), routing, n.replica.last_ts


def shape(effects: list[Any]) -> list[str]:
    """The effects' kinds and, for sends and records, what they carry."""
    return [type(e).__name__ + ":" + type(getattr(e, "message", getattr(e, "record", None))).__name__
            for e in effects]


def misfits(mode: str) -> list[tuple[str, Any, str]]:
    return MISFITS + (RAFT_MISFITS if mode == "quorum" else [])


@pytest.mark.parametrize("mode", MODES)
def test_a_misfit_is_refused_saying_why_and_changes_nothing(mode: str) -> None:
    for name, msg, why in misfits(mode):
        hit, twin = node(mode), node(mode)
        later = T + 300 * MS  # a tick in the same step: the rest of the step goes on
        effects = hit.handle_many([msg, Tick()], later)
        expected = twin.handle_many([Tick()], later)
        reports = [e for e in of(effects, Report) if e.kind == "peer_message_refused"]
        assert len(reports) == 1, (mode, name, effects)
        detail = reports[0].detail
        assert detail["message"] == type(msg).__name__ and detail["region"] == 0, (name, detail)
        assert why in detail["why"], (mode, name, detail["why"])
        assert shape([e for e in effects if e is not reports[0]]) == shape(expected), (mode, name)
        assert state(hit) == state(twin), (mode, name)


def test_real_messages_fit() -> None:
    """What regions of the same configuration send each other is never refused (the
    simulated runs of every mode check every message they deliver: tests/test_wire.py)."""
    check = PeerCheck(3, AMAP, 3)
    for msg in (Heartbeat(1, 1, 1, (0, 4, 0), (0, 0, 0)), Heartbeat(1, 1, 1, (0, 4, 0)), Ship(1, 1, [entry(1, 1)]),
                Ship(2, 0, [entry(0, 7, rv=3)]), Propose(1, RoutingTable.initial(3, 3).promote({0: 1}, {0: 4})),
                Vote(2, 2, True, (1, 2, 3), 0), r.AppendEntries(1, 2, 0, 0, [entry(2, 1, rv=2, group=2)], 0, group=2),
                RaftBundle([r.VoteReply(1, 1, True, group=1), r.AppendReply(1, 1, True, 3, group=2)]),
                QuotaRequest(1, AMAP.n_customers, BIG), RepairRequest(1, 2, 1, 0)):
        assert check.why_refused(msg) is None, msg


@pytest.mark.parametrize("mode", ["unit", "escrow"])
def test_with_the_check_off_the_same_messages_stop_or_poison_the_region(mode: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The defence matters: without it a step raises (a live region stops) or a misfit
    table is persisted (and survives restarts)."""
    monkeypatch.setattr(PeerCheck, "why_refused", lambda self, message: None)
    with pytest.raises(IndexError):
        node(mode).handle(Heartbeat(1, 1, 1, (0, 0, 0, 0, 0)), T + MS)
    with pytest.raises(IndexError):
        node(mode).handle(Ship(1, 99, []), T + MS)
    if mode == "unit":
        with pytest.raises(IndexError):
            node(mode).handle(Propose(1, RoutingTable(2, (1,), (2,))), T + MS)
        persisted = [e.record for e in of(node(mode).handle(RoutingUpdate(1, RoutingTable(5, (99, 1, 2), (2, 1, 1))),
                                                                 T + MS), Persist)]
        assert any(isinstance(p, RoutingTable) and 99 in p.homes for p in persisted)
    else:
        with pytest.raises(IndexError):
            node(mode).handle(QuotaRequest(1, BIG, 5), T + MS)


# ------------------------------------------------------------------ any shape at all
EDGE_INTS = st.sampled_from([0, 1, 2, 3, 99, -1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, BIG])
HEADS = st.lists(EDGE_INTS, max_size=5).map(tuple)
TABLES = st.builds(RoutingTable, EDGE_INTS, HEADS, HEADS,
                   st.lists(st.builds(Fork, EDGE_INTS, EDGE_INTS, EDGE_INTS), max_size=2).map(tuple))


def any_entry(origin: int, seq: int, rv: int, created: int, group: int, sealed: bool) -> Entry:
    """An entry as a peer may send it: sealed if its fields allow, or with no checksum."""
    e = Entry(origin, seq, rv, created, NO_ROWS, group=group)
    try:
        return e.seal() if sealed else e
    except struct.error:  # a field past 64 bits has no checksum
        return e


ENTRIES = st.lists(st.builds(any_entry, EDGE_INTS, EDGE_INTS, EDGE_INTS, EDGE_INTS, EDGE_INTS, st.booleans()),
                   max_size=3)
PEER = st.sampled_from([1, 2])
ANY_MESSAGE = st.one_of(
    st.builds(Heartbeat, PEER, EDGE_INTS, EDGE_INTS, HEADS, HEADS),
    st.builds(HeartbeatAck, PEER, EDGE_INTS, st.booleans(), st.none() | TABLES),
    st.builds(Propose, PEER, TABLES),
    st.builds(RoutingUpdate, PEER, TABLES),
    st.builds(Vote, PEER, EDGE_INTS, st.booleans(), HEADS, EDGE_INTS),
    st.builds(Ship, PEER, EDGE_INTS, ENTRIES),
    st.builds(ShipAck, PEER, EDGE_INTS, EDGE_INTS),
    st.builds(Pull, PEER, EDGE_INTS, EDGE_INTS),
    st.builds(Abort, PEER, EDGE_INTS),
    st.builds(QuotaRequest, PEER, EDGE_INTS, EDGE_INTS),
    st.builds(RepairRequest, PEER, EDGE_INTS, EDGE_INTS, EDGE_INTS),
    st.builds(r.RequestVote, PEER, EDGE_INTS, EDGE_INTS, EDGE_INTS, st.booleans(), st.booleans(), EDGE_INTS),
    st.builds(r.AppendEntries, PEER, EDGE_INTS, EDGE_INTS, EDGE_INTS, ENTRIES, EDGE_INTS, EDGE_INTS),
    st.builds(r.AppendReply, PEER, EDGE_INTS, st.booleans(), EDGE_INTS, EDGE_INTS),
)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(ANY_MESSAGE, min_size=1, max_size=4))
def test_no_peer_message_of_any_shape_makes_a_step_raise(mode: str, messages: list[Any]) -> None:
    """Whatever well-typed messages a peer sends, the step completes and the node's own
    invariants hold afterwards, through later ticks."""
    n = node(mode)
    n.handle_many(messages, T + MS)
    for k in range(1, 4):
        n.handle(Tick(), T + k * 200 * MS)
    n.invariants()


# ------------------------------------------------------------------ well shaped, out of place
def votes(effects: list[Any]) -> list[Vote]:
    return [e.message for e in effects if type(getattr(e, "message", None)) is Vote]


def test_out_of_place_proposals_win_no_vote_and_move_nothing() -> None:
    """A proposal that fits our shape but not the protocol's rules: one that demotes the
    voter itself, one for a version already in force, a second proposer for a version
    already voted for, one while we still grant the demoted home its lease."""
    base = RoutingTable.initial(3, 3)
    demote = {u: (h + 1) % 3 for u, h in enumerate(base.homes) if h == 1}  # region 1's units to region 2

    n = node("unit")
    [vote] = votes(n.handle(Propose(1, base.promote({0: 1}, {}, 2)), T + MS))  # moves our own unit away
    assert not vote.yes and n.design.routing == base

    n = node("unit")
    [vote] = votes(n.handle(Propose(2, base.promote(demote, {}, 1)), T + MS))  # the version in force
    assert not vote.yes and n.design.routing == base

    n = node("unit")
    assert votes(n.handle(Propose(2, base.promote(demote, {}, 2)), T + MS))[0].yes
    [vote] = votes(n.handle(Propose(1, base.promote({2: 0}, {}, 2)), T + 2 * MS))  # same version, another proposer
    assert not vote.yes and n.design.routing == base
    [again] = votes(n.handle(Propose(2, base.promote(demote, {}, 2)), T + 3 * MS))  # the first asks again
    assert again.yes and again.heads == votes(n.handle(Propose(2, base.promote(demote, {}, 2)), T + 4 * MS))[0].heads

    n = node("unit")
    acks = n.handle(Heartbeat(1, 1, 1, (0, 0, 0)), T + MS)  # we grant region 1 its lease
    assert any(type(getattr(e, "message", None)) is HeartbeatAck and e.message.grant for e in acks)
    [vote] = votes(n.handle(Propose(2, base.promote(demote, {}, 2)), T + 2 * MS))
    assert not vote.yes and vote.retry_in > 0 and n.design.routing == base

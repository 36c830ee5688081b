"""`replication.wire`: every registered type round-trips exactly; anything else is a `WireError`.

Values are drawn per field from the dataclasses' own type hints (independently of the
codec's decoders), with u128 extremes in int fields and transfer rows. Hostile frames —
garbage, truncations, unknown tags, extra or missing fields, wrong types, dtypes, shapes,
lengths, sizes, pickles — are refused with `WireError` and never produce an object. Last,
real traffic: every message and record of short simulated runs in each mode round-trips.
"""

from __future__ import annotations

import dataclasses
import pickle
import types
import typing
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cext.layout import TRANSFER_DTYPE
from replication import wire
from replication.log import Entry
from replication.messages import (
    ClientRequest,
    ForwardReply,
    Heartbeat,
    HeartbeatAck,
    PeerFrame,
    QuotaRequest,
    Send,
    Ship,
    ShipAck,
)
from replication.quorum import QForwardReply, RaftBundle
from replication.raft import RAFT_MESSAGES, AppendEntries, HardState
from replication.routing import Fork, RoutingTable
from replication.wire import REGISTRY, WireError, decode, encode
from tests.support.no_pickle import check_no_pickle
from tests.support.records import U128_EXTREMES, entry, extreme_rows

ROOT = Path(__file__).resolve().parent.parent
INT_EXTREMES = (*U128_EXTREMES, (1 << 64) - 1, 1 << 63, -1, -(1 << 63), -(1 << 63) - 1, -(1 << 128))
ints = st.one_of(st.sampled_from(INT_EXTREMES), st.integers(-(1 << 128), (1 << 128) - 1))
u64s = st.one_of(st.sampled_from((0, (1 << 64) - 1, 1 << 63)), st.integers(0, (1 << 64) - 1))
ARRAYS = {
    "rows": arrays(TRANSFER_DTYPE, st.integers(0, 6)),
    "reads": arrays(np.uint64, st.integers(0, 6)),
    "results": arrays(np.uint32, st.integers(0, 6)),
    "balances": arrays(np.uint64, st.tuples(st.integers(0, 4), st.just(8))),
}


def values(hint: Any, owner: type, name: str) -> st.SearchStrategy[Any]:
    """A strategy for a field of declared type `hint` (the test's own reading of the hints)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return ints
    if hint in (bool, str, bytes):
        return st.from_type(hint)
    if hint is np.ndarray:
        return ARRAYS[name]
    if hint is Any:  # RaftBundle.messages holds Raft messages; PeerFrame.messages, what peers send
        assert name == "messages" and owner in (RaftBundle, PeerFrame), (owner, name)
        kinds = RAFT_MESSAGES if owner is RaftBundle else (Heartbeat, ShipAck, ForwardReply, QuotaRequest, Ship)
        return st.one_of([instances(c) for c in kinds])
    if dataclasses.is_dataclass(hint):
        return instances(hint)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else values(a, owner, name) for a in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(values(args[0], owner, name), max_size=4).map(tuple)
    if origin is tuple:
        return st.tuples(*(values(a, owner, name) for a in args))
    if origin is list:
        return st.lists(values(args[0], owner, name), max_size=3)
    raise AssertionError(f"no strategy for {owner.__name__}.{name}: {hint}")


def instances(cls: type) -> st.SearchStrategy[Any]:
    if cls is Entry:  # its checksum packs the int fields as u64, and must be sealed to be intact
        grants = st.lists(st.tuples(ints, ints, ints), max_size=3).map(tuple)
        return st.builds(lambda o, s, r, c, rows, g, grp: Entry(o, s, r, c, rows, g, group=grp).seal(),
                         u64s, u64s, u64s, u64s, ARRAYS["rows"], grants, u64s)
    hints = typing.get_type_hints(cls)
    return st.builds(cls, *(st.deferred(_field_values(hints[f.name], cls, f.name)) for f in dataclasses.fields(cls)))


def _field_values(hint: Any, owner: type, name: str) -> typing.Callable[[], st.SearchStrategy[Any]]:
    return lambda: values(hint, owner, name)  # deferred: RaftBundle and Ship nest other registered types


def same(a: Any, b: Any) -> bool:
    """Deep equality that also checks types (tuple vs list) and arrays byte for byte."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def raw(*fields: Any) -> bytes:
    """A hand-made frame (to say exactly what a hostile peer sends)."""
    return msgpack.packb(list(fields), use_bin_type=True)


def arr(code: int, shape: list[int], data: Any) -> list[Any]:
    return [code, shape, data]


TAG = {cls: tag for tag, cls in REGISTRY.items()}


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("cls", list(REGISTRY.values()), ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_registered_type_round_trips(cls: type, data: st.DataObject) -> None:
    obj = data.draw(instances(cls))
    back = decode(encode(obj))
    assert same(back, obj), (back, obj)
    for a in _arrays(back):
        assert a.flags.writeable and a.flags.c_contiguous  # callers may write into them, as into unpickled ones


def _arrays(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if dataclasses.is_dataclass(obj):
        return [a for f in dataclasses.fields(obj) for a in _arrays(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [a for x in obj for a in _arrays(x)]
    return []


@settings(max_examples=60, deadline=None)
@given(e=instances(Entry))
def test_an_entry_is_still_intact_after_a_round_trip(e: Entry) -> None:
    back = decode(encode(Ship(0, e.origin, [e])), (Ship,)).entries[0]
    assert back.intact() and back.checksum == e.checksum


def test_u128_extremes_round_trip_exactly() -> None:
    for v in (*U128_EXTREMES, -(1 << 128)):
        assert decode(encode(QuotaRequest(1, v, v))) == QuotaRequest(1, v, v)
    grants = tuple((v, 1, v) for v in U128_EXTREMES)
    e = entry(1, rows=extreme_rows(8), grants=grants)
    back = decode(encode(e))
    assert back.grants == grants and back.rows.tobytes() == extreme_rows(8).tobytes() and back.intact()
    assert repr(back.grants) == repr(grants)  # the checksum hashes repr(grants)


def test_what_the_codec_cannot_carry_is_refused_on_encode() -> None:
    for bad in (object(), Send(1, Ship(0, 0, [])), {"sender": 1}, [ShipAck(0, 0, 0)]):
        with pytest.raises(WireError, match="not a registered wire type"):
            encode(bad)
    with pytest.raises(WireError, match=r"within \[-2\^128, 2\^128\)"):
        encode(QuotaRequest(1, 1 << 128, 0))
    with pytest.raises(WireError, match=r"ForwardReply.results: expected uint32 \(n,\), got dtype float64"):
        encode(ForwardReply(1, np.zeros(3)))
    with pytest.raises(WireError, match=r"ForwardReply.results: expected uint32 \(n,\), got dtype uint64"):
        encode(ForwardReply(1, np.zeros(3, np.uint64)))  # an allowed dtype, but not this field's
    with pytest.raises(WireError, match=r"QForwardReply.balances: expected uint64 \(n, 8\), got dtype uint64, "
                                        r"shape \(2, 3\)"):
        encode(QForwardReply(1, np.zeros(2, np.uint32), np.zeros((2, 3), np.uint64)))
    with pytest.raises(WireError, match="Entry.rows: expected TRANSFER_DTYPE"):
        encode(Ship(0, 0, [Entry(0, 1, 1, 1, [1, 2])]))  # type: ignore[arg-type]
    with pytest.raises(WireError, match="not a registered wire type"):
        encode(Heartbeat(0, 1, 1, (object(),)))  # type: ignore[arg-type]
    with pytest.raises(WireError, match="over the 100 limit"):
        encode(Ship(0, 0, [entry(1)]), max_frame=100)


# ------------------------------------------------------------------ hostile frames
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_is_a_wire_error_or_a_valid_registered_object(data: bytes) -> None:
    try:
        obj = decode(data)
    except WireError:
        return
    assert type(obj) in REGISTRY.values()  # a few random bytes can spell a frame, e.g. 0x91 0x02 = Tick()


def test_every_truncation_of_a_frame_is_refused() -> None:
    frame = encode(Ship(1, 2, [entry(1), entry(2, grants=((1 << 127, 0, 5),))]))
    for n in range(len(frame)):
        with pytest.raises(WireError):
            decode(frame[:n])
    with pytest.raises(WireError, match="not a frame"):
        decode(frame + b"\x00")  # trailing bytes


@pytest.mark.parametrize(("frame", "message"), [
    (raw(999, 1, 2), "unknown type tag 999"),
    (raw("Ship", 1, 2, []), "unknown type tag 'Ship'"),
    (raw(True, 1, 2, 3), "unknown type tag True"),
    (raw(), "expected a registered object"),
    (msgpack.packb({"tag": 6}), "not a frame"),  # maps: none anywhere
    (raw(TAG[ShipAck], 1, 2), "ShipAck has 3 fields, the frame gives 2"),
    (raw(TAG[ShipAck], 1, 2, 3, 4), "ShipAck has 3 fields, the frame gives 4"),
    (raw(TAG[ShipAck], 1, "2", 3), "ShipAck.origin: expected int, got str"),
    (raw(TAG[ShipAck], 1, 2.0, 3), "ShipAck.origin: expected int, got float"),
    (raw(TAG[ShipAck], 1, None, 3), "ShipAck.origin: expected int, got NoneType"),
    (raw(TAG[ShipAck], True, 2, 3), "ShipAck.sender: expected int, got bool"),
    (raw(TAG[HeartbeatAck], 1, 2, 1, None), "HeartbeatAck.grant: expected bool, got int"),
    (raw(TAG[HeartbeatAck], 1, 2, True, [TAG[ShipAck], 1, 2, 3]), "HeartbeatAck.routing: ShipAck is not allowed"),
    (raw(TAG[Heartbeat], 1, 2, 3, [1, None], []), r"Heartbeat.heads: \[1\]: expected int, got NoneType"),
    (raw(TAG[Heartbeat], 1, 2, 3, 7, []), "Heartbeat.heads: expected a sequence, got int"),
    (raw(TAG[HardState], 1, "me", 0), "HardState.voted_for: expected int, got str"),
    (raw(TAG[RoutingTable], 1, [0], [1], [[TAG[Fork], 0, 1]]), r"RoutingTable.forks: \[0\]: Fork has 3 fields"),
    (raw(TAG[RaftBundle], [[TAG[ShipAck], 1, 2, 3]]), r"RaftBundle.messages: \[0\]: ShipAck is not allowed"),
    (raw(TAG[RaftBundle], [[TAG[RaftBundle], []]]), r"RaftBundle.messages: \[0\]: RaftBundle is not allowed"),
    (raw(TAG[Ship], 1, 2, [[TAG[ShipAck], 1, 2, 3]]), r"Ship.entries: \[0\]: ShipAck is not allowed"),
    (raw(TAG[ForwardReply], 1, 5), "ForwardReply.results: expected an array"),
    (raw(TAG[ForwardReply], 1, arr(1, [1], bytes(128))), "ForwardReply.results: expected dtype uint32, got dtype"),
    (raw(TAG[ForwardReply], 1, arr(9, [1], bytes(4))), "expected dtype uint32, got dtype code 9"),
    (raw(TAG[ForwardReply], 1, arr(2, [2], bytes(7))), r"array of \(2,\) x 4 bytes holds 7 bytes"),
    (raw(TAG[ForwardReply], 1, arr(2, [2], bytes(9))), r"array of \(2,\) x 4 bytes holds 9 bytes"),
    (raw(TAG[ForwardReply], 1, arr(2, [-1], b"")), r"expected shape \(n,\)"),
    (raw(TAG[ForwardReply], 1, arr(2, [1, 1], bytes(4))), r"expected shape \(n,\)"),
    (raw(TAG[ForwardReply], 1, arr(2, [1 << 40], bytes(4))), r"expected shape \(n,\) with n <= "),
    (raw(TAG[ForwardReply], 1, arr(2, [1], "abcd")), "expected the array's raw bytes, got str"),
    (raw(TAG[QForwardReply], 1, arr(2, [0], b""), arr(3, [1, 3], bytes(24))), r"expected shape \(n, 8\)"),
    (raw(TAG[QuotaRequest], 1, msgpack.ExtType(1, (5).to_bytes(17, "little")), 0), "within 64 bits"),
    (raw(TAG[QuotaRequest], 1, msgpack.ExtType(1, bytes(16)), 0), "expected int, got extension 1"),
    (raw(TAG[QuotaRequest], 1, msgpack.ExtType(7, b"x"), 0), "expected int, got extension 7"),
    (raw(TAG[QuotaRequest], 1, msgpack.ExtType(1, bytes(18)), 0), "not a frame"),  # over the ext size limit
])
def test_a_hostile_frame_is_refused_saying_why(frame: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode(frame)


def test_rows_of_another_dtype_are_refused_in_an_entry() -> None:
    good = encode(entry(1))
    obj = msgpack.unpackb(good)
    obj[5] = arr(2, [128], bytes(512))  # same bytes, read as uint32
    with pytest.raises(WireError, match="Entry.rows: expected dtype TRANSFER_DTYPE"):
        decode(msgpack.packb(obj, use_bin_type=True))


def test_limits_refuse_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = encode(ClientRequest(1, extreme_rows(11)))
    monkeypatch.setattr(wire, "MAX_ARRAY_ROWS", 10)
    with pytest.raises(WireError, match="ClientRequest.rows: expected shape"):
        decode(frame)
    monkeypatch.undo()
    assert len(decode(frame).rows) == 11
    with pytest.raises(WireError, match=f"frame of {len(frame):,} bytes is over the 1,000 limit"):
        decode(frame, max_frame=1000)


def test_the_expected_types_are_enforced() -> None:
    frame = encode(Heartbeat(0, 1, 1, (1,)))
    with pytest.raises(WireError, match="Heartbeat is not allowed here"):
        decode(frame, wire.RECORD_TYPES)
    assert decode(frame, wire.MESSAGE_TYPES) == Heartbeat(0, 1, 1, (1,))
    with pytest.raises(WireError, match="AppendEntries is not allowed here"):
        decode(encode(AppendEntries(0, 1, 0, 0, [], 0)), (Ship,))


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    for payload in (pickle.dumps(Ship(0, 0, [entry(1)]), protocol=5), pickle.dumps(Exploit()),
                    pickle.dumps(Exploit(), protocol=0)):
        with pytest.raises(WireError):
            decode(payload)
    assert not marker.exists()


@pytest.mark.parametrize("path", ["replication/wire.py", *sorted(str(p.relative_to(ROOT))
                                                              for p in (ROOT / "region").glob("*.py"))])
def test_no_pickle_anywhere_on_the_codec_or_store_path(path: str) -> None:
    check_no_pickle(path)


# ------------------------------------------------------------------ real traffic
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "unit+semi-sync", "escrow", "quorum", "quorum+region"])
def test_every_message_and_record_of_a_simulated_run_round_trips(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from replication.messages import Persist, PersistRepair
    from replication.node import RegionNode
    from simulator.run import run_scenario
    from simulator.scenario import load_scenario

    seen: dict[str, int] = {}
    real = RegionNode.handle_many

    def handle_many(self: RegionNode, messages: Any, now: int) -> list[Any]:
        for m in messages:
            assert same(decode(encode(m), wire.MESSAGE_TYPES), m), m
            assert self.peer_check.why_refused(m) is None, m  # what same-configured peers send fits
        effects = real(self, messages, now)
        for e in effects:
            if type(e) is Send:
                obj, expect = e.message, wire.MESSAGE_TYPES
            elif type(e) is Persist:
                obj, expect = e.record, wire.RECORD_TYPES
            elif type(e) is PersistRepair:
                obj, expect = e.entry, (Entry,)
            else:
                continue
            assert same(decode(encode(obj), expect), obj), obj
            for o in (obj, *(obj.messages if type(obj) is RaftBundle else ())):
                seen[type(o).__name__] = seen.get(type(o).__name__, 0) + 1
        return effects

    monkeypatch.setattr(RegionNode, "handle_many", handle_many)
    s = load_scenario("region-outage").with_mode(mode)
    s = replace(s, duration=6.0, quiesce=3.0, workload=replace(s.workload, rate=150),
                chaos=(replace(s.chaos[0], at=2.0, duration=3.0),))  # Beijing down from 2 s to 5 s
    _, res = run_scenario(s, 1)
    assert res["violated"] == []
    want = {"Entry"} | ({"RaftBundle", "AppendEntries", "AppendReply", "RequestVote", "HardState", "CommitMark"}
                        if mode.startswith("quorum") else {"Ship", "Heartbeat", "HeartbeatAck"})
    if mode.startswith("unit"):
        want |= {"Propose", "Vote", "RoutingTable"}  # the outage's promotion
    assert want <= set(seen), seen


def test_a_peer_frame_speaks_for_its_sender_only() -> None:
    """A region cannot speak for another: a frame whose sender is not the authenticated
    peer, or that holds a message naming another sender, is refused whole; a client's
    request, a timer or a disk report never comes from a peer."""
    from replication.messages import Tick
    from replication.wire import decode_peer_frame, encode_peer_frame

    hb = Heartbeat(1, 5, 1, (0, 0, 0))
    assert decode_peer_frame(encode_peer_frame(1, [hb]), 1, 3) == [hb]
    with pytest.raises(WireError, match="says it is from region 1"):
        decode_peer_frame(encode_peer_frame(1, [hb]), 2, 3)
    with pytest.raises(WireError, match="in the name of region 0"):
        decode_peer_frame(encode_peer_frame(1, [Heartbeat(0, 5, 1, (0, 0, 0))]), 1, 3)
    for local in (Tick(), ClientRequest(1, np.zeros(0, TRANSFER_DTYPE))):
        with pytest.raises(WireError):
            decode_peer_frame(encode(PeerFrame(1, [local])), 1, 3)
    with pytest.raises(WireError):
        decode_peer_frame(encode_peer_frame(7, [Heartbeat(7, 5, 1, (0, 0, 0))]), 7, 3)  # no such region

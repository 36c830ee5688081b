"""The explicit codec for everything that leaves a process: peer frames and region records.

Nothing that crossed a process boundary or came from disk is unpickled. A frame is msgpack
holding exactly one *registered* dataclass, written as ``[tag, field, ...]`` (fields in
declaration order, all of them): the tag names the class from an explicit registry, and
decoding walks each field by its declared type (`typing.get_type_hints`), so a frame can
only produce the message and record types listed below, each field of its declared type.
An unknown tag, a missing or extra field, a value of the wrong type, an array of another
dtype or shape, or a frame or array over the limits raise `WireError`, and nothing is
constructed.

Values: ints of any sign up to 2^128 in magnitude (a u128 amount or id; beyond msgpack's
64 bits as an extension of 17 bytes, two's complement), bool, None, str, bytes, float,
tuples and lists (tuples come back where the field says tuple), nested registered
dataclasses, and numpy arrays as ``[dtype code, shape, raw bytes]`` with the dtype and
rank each field allows (`ARRAY_FIELDS`). Decoded arrays are writable copies, as unpickled
ones were (the node and engine may write into what they are given).

The codec does no I/O: a runtime frames and sends the bytes, a store checksums and writes them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any

import msgpack
import numpy as np

from cext.layout import TRANSFER_DTYPE
from replication import messages as m
from replication import quorum as q
from replication import raft as r
from replication.log import Entry
from replication.routing import Fork, RoutingTable
from replication.snapshot import SNAPSHOT_TYPES, NodeSnapshot, ShippingState

MAX_FRAME_BYTES = 256 << 20
"""Largest frame `encode` produces and `decode` accepts (a transport may pass a smaller one)."""
MAX_ARRAY_ROWS = 1 << 21
"""Most rows in one array (a client batch is at most 8,190; an entry joins a step's batches)."""

_INT_EXT = 1  # msgpack extension code of an int outside msgpack's 64-bit range
_INT_BYTES = 17  # two's complement, little-endian: every int in [-2^128, 2^128)
_INT_MIN, _INT_MAX = -(1 << 128), (1 << 128) - 1

# The registry: tag -> class. Tags are part of the format: never renumber or reuse one.
REGISTRY: dict[int, type] = {
    1: m.ClientRequest, 2: m.Tick, 3: m.Forward, 4: m.ForwardReply, 5: m.Ship, 6: m.ShipAck, 7: m.Pull,
    8: m.Heartbeat, 9: m.HeartbeatAck, 10: m.Propose, 11: m.Vote, 12: m.Query, 13: m.Abort,
    14: m.RoutingUpdate, 15: m.CreditLegs, 16: m.QuotaRequest, 17: m.Corrupted, 18: m.RepairRequest,
    19: m.RepairData,
    30: r.RequestVote, 31: r.VoteReply, 32: r.AppendEntries, 33: r.AppendReply, 34: r.InstallSnapshot,
    35: r.TimeoutNow, 36: r.HardState, 37: r.CommitMark, 38: r.Snapshot,
    50: q.QForward, 51: q.QForwardReply, 52: q.QCreditLegs, 53: q.RaftBundle,
    60: Entry, 61: RoutingTable, 62: Fork,
    70: m.PeerFrame,
    80: NodeSnapshot, 81: ShippingState, 82: r.RaftGroupState,
}
RECORD_TYPES: tuple[type, ...] = (Entry, RoutingTable, *r.RAFT_RECORDS)
"""What a region store holds (a `Persist` effect's record)."""
MESSAGE_TYPES: tuple[type, ...] = tuple(
    c for c in REGISTRY.values() if c not in (Entry, RoutingTable, Fork, m.PeerFrame, *r.RAFT_RECORDS, *SNAPSHOT_TYPES))
"""What a region receives from a peer or a client gateway (a store's snapshot is neither:
`decode(frame, (NodeSnapshot,))` is how a store reads one back)."""
PEER_MESSAGES: tuple[type, ...] = tuple(c for c in MESSAGE_TYPES if c not in (m.ClientRequest, m.Tick, m.Corrupted))
"""What a region may receive from another region: never a client's request, a timer or a
disk's report, which only the region's own driver hands its node."""

# Fields typed `Any`: which registered classes they may hold (the default would be any).
_ANY_FIELDS: dict[tuple[type, str], tuple[type, ...]] = {(q.RaftBundle, "messages"): r.RAFT_MESSAGES,
                                                         (m.PeerFrame, "messages"): PEER_MESSAGES}

# dtype code -> dtype; every array field names one, with its rank: None = 1-D, k = (n, k).
# Exactly the dtypes some field needs: a new array field fails at import until it is named here.
DTYPES: dict[int, np.dtype[Any]] = {1: TRANSFER_DTYPE, 2: np.dtype("<u4"), 3: np.dtype("<u8"), 4: np.dtype("<i2")}
_DTYPE_CODE = {dt: code for code, dt in DTYPES.items()}
ARRAY_FIELDS: dict[str, tuple[np.dtype[Any], int | None]] = {
    "rows": (TRANSFER_DTYPE, None),  # transfer rows
    "reads": (np.dtype("<u8"), None),  # account ids to read
    "results": (np.dtype("<u4"), None),  # one result code per row
    "balances": (np.dtype("<u8"), 8),  # per read: debits/credits pending/posted, u128 as (lo, hi) words
    "writers": (np.dtype("<i2"), None),  # per row: the region whose answer it is
}


class WireError(ValueError):
    """Bytes that are not a frame of this codec, or a value it cannot encode. Nothing was built."""


Decoder = Callable[[Any], Any]


def _kind(v: Any) -> str:
    if type(v) is msgpack.ExtType:
        return f"extension {v.code}"
    return type(v).__name__


# ------------------------------------------------------------------ encode
_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
_TAG_OF: dict[type, int] = {}
_ARRAY_SLOTS: dict[type, list[tuple[int, str, np.dtype[Any], int | None]]] = {}  # array fields, by position


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) >= 2:
        return attrgetter(*names)  # type: ignore[return-value]
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda o: (one(o),)
    return lambda o: ()


def _default(o: Any) -> Any:
    """msgpack calls this for whatever it cannot pack itself."""
    t = type(o)
    getter = _GETTERS.get(t)
    if getter is not None:
        values = getter(o)
        for i, name, want, width in _ARRAY_SLOTS.get(t, ()):  # refuse here what the peer would refuse
            a = values[i]
            if type(a) is not np.ndarray or a.dtype != want or a.ndim != (1 if width is None else 2) or (
                    width is not None and a.shape[1] != width):
                got = f"dtype {a.dtype}, shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise WireError(f"cannot encode {t.__name__}.{name}: expected {_dtype_name(want)} "
                                f"{'(n,)' if width is None else f'(n, {width})'}, got {got}")
        return (_TAG_OF[t], *values)
    if t is np.ndarray:
        code = _DTYPE_CODE.get(o.dtype)
        if code is None or o.ndim not in (1, 2):
            raise WireError(f"cannot encode an array of dtype {o.dtype} and shape {o.shape}")
        raw = np.ascontiguousarray(o).reshape(-1).view(np.uint8)
        return (code, o.shape, memoryview(raw))  # type: ignore[arg-type]  # numpy arrays are buffers
    if t is int:  # beyond msgpack's 64 bits
        if not _INT_MIN <= o <= _INT_MAX:
            raise WireError(f"cannot encode int {o}: wire ints are within [-2^128, 2^128)")
        return msgpack.ExtType(_INT_EXT, o.to_bytes(_INT_BYTES, "little", signed=True))
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise WireError(f"cannot encode a {t.__module__}.{t.__qualname__}: not a registered wire type")


def encode(obj: object, *, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    """One registered dataclass (and what it holds) as a frame. `WireError` if it has no encoding."""
    if type(obj) not in _TAG_OF:
        raise WireError(f"cannot encode a {type(obj).__qualname__}: not a registered wire type")
    try:
        frame: bytes = msgpack.packb(obj, default=_default, use_bin_type=True)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise WireError(f"cannot encode {type(obj).__qualname__}: {e}") from None
    if len(frame) > max_frame:
        raise WireError(f"{type(obj).__qualname__} encodes to {len(frame):,} bytes, over the {max_frame:,} limit")
    return frame


# ------------------------------------------------------------------ decode
def _int(v: Any) -> int:
    if type(v) is int:
        return v
    if type(v) is msgpack.ExtType and v.code == _INT_EXT and len(v.data) == _INT_BYTES:
        n = int.from_bytes(v.data, "little", signed=True)
        if -(1 << 63) <= n < (1 << 64):
            raise WireError("an int within 64 bits sent as an extension (not this codec's encoding)")
        return n
    raise WireError(f"expected int, got {_kind(v)}")


def _scalar(t: type) -> Decoder:
    def dec(v: Any) -> Any:
        if type(v) is not t:
            raise WireError(f"expected {t.__name__}, got {_kind(v)}")
        return v
    return dec


def _array(owner: type, name: str) -> Decoder:
    if name not in ARRAY_FIELDS:
        raise TypeError(f"wire: {owner.__name__}.{name} is an array field with no entry in ARRAY_FIELDS")
    want, width = ARRAY_FIELDS[name]

    def dec(v: Any) -> np.ndarray:
        if type(v) is not list or len(v) != 3:
            raise WireError(f"expected an array [dtype, shape, bytes], got {_kind(v)}")
        code, shape, raw = v
        dt = DTYPES.get(code) if type(code) is int else None
        if dt is None or dt != want:  # (never compare a dtype with None: numpy reads None as float64)
            raise WireError(f"expected dtype {_dtype_name(want)}, got dtype code {code!r}")
        rank = 1 if width is None else 2
        if (type(shape) is not list or len(shape) != rank or any(type(d) is not int for d in shape)
                or not 0 <= shape[0] <= MAX_ARRAY_ROWS or (width is not None and shape[1] != width)):
            expect = "(n,)" if width is None else f"(n, {width})"
            raise WireError(f"expected shape {expect} with n <= {MAX_ARRAY_ROWS:,}, got {shape!r}")
        if type(raw) is not bytes:
            raise WireError(f"expected the array's raw bytes, got {_kind(raw)}")
        n = shape[0] * (1 if width is None else width)
        if len(raw) != n * dt.itemsize:
            raise WireError(f"array of {tuple(shape)} x {dt.itemsize} bytes holds {len(raw)} bytes")
        # A bytearray copy is a memcpy (ndarray.copy of a structured dtype goes field by field).
        out = np.frombuffer(bytearray(raw), dt, n).reshape(shape)
        # The unpacked frame's copy goes now, not with the whole frame: a frame of many arrays
        # (a region snapshot's retained entries: gigabytes) holds one array twice at a time.
        v[2] = raw = None
        return out
    return dec


def _dtype_name(dt: np.dtype[Any]) -> str:
    return "TRANSFER_DTYPE" if dt == TRANSFER_DTYPE else str(dt)


def _optional(inner: Decoder) -> Decoder:
    return lambda v: None if v is None else inner(v)


def _seq(inner: Decoder, out: type) -> Decoder:
    def dec(v: Any) -> Any:
        if type(v) is not list:
            raise WireError(f"expected a sequence, got {_kind(v)}")
        if inner is _int and all(type(x) is int for x in v):
            return out(v)
        items: list[Any] = []
        try:
            for x in v:
                items.append(inner(x))
        except WireError as e:
            raise WireError(f"[{len(items)}]: {e}") from None
        return out(items)
    return dec


def _fixed(inners: tuple[Decoder, ...]) -> Decoder:
    def dec(v: Any) -> tuple[Any, ...]:
        if type(v) is not list or len(v) != len(inners):
            got = f"a list of {len(v)}" if type(v) is list else _kind(v)
            raise WireError(f"expected a tuple of {len(inners)}, got {got}")
        return tuple(d(x) for d, x in zip(inners, v, strict=True))
    return dec


class _Plan(typing.NamedTuple):
    """How to decode one registered class: its field names, the positions of its plain int
    fields (checked inline: most fields are), and every other field's position and decoder."""

    names: tuple[str, ...]
    ints: tuple[int, ...]
    others: tuple[tuple[int, Decoder], ...]


_PLANS: dict[type, _Plan] = {}


def _registered(allowed: tuple[type, ...]) -> Decoder:
    """A nested dataclass, one of `allowed`, as ``[tag, field, ...]``."""
    def dec(v: Any) -> Any:
        if type(v) is not list or not v:
            raise WireError(f"expected a registered object [tag, fields...], got {_kind(v)}")
        tag = v[0]
        cls = REGISTRY.get(tag) if type(tag) is int else None
        if cls is None:
            raise WireError(f"unknown type tag {tag!r}")
        if cls not in allowed:
            raise WireError(f"{cls.__name__} is not allowed here (expected {', '.join(c.__name__ for c in allowed)})")
        names, ints, others = _PLANS[cls]
        if len(v) != len(names) + 1:
            raise WireError(f"{cls.__name__} has {len(names)} fields, the frame gives {len(v) - 1}")
        args = v[1:]
        i = -1
        try:
            for i in ints:
                if type(args[i]) is not int:
                    args[i] = _int(args[i])
            for i, d in others:
                args[i] = d(args[i])
        except WireError as e:
            raise WireError(f"{cls.__name__}.{names[i]}: {e}") from None
        return cls(*args)
    return dec


def _compile(hint: Any, owner: type, name: str) -> Decoder:
    """The decoder for a field of declared type `hint`; TypeError (at import) if there is none."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return _int
    if hint in (bool, str, bytes, float):
        return _scalar(hint)
    if hint is np.ndarray:
        return _array(owner, name)
    if hint in _TAG_OF:
        return _registered((hint,))
    if hint is Any or hint is object:
        return _registered(_ANY_FIELDS.get((owner, name), tuple(REGISTRY.values())))
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _optional(_compile(inner, owner, name))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _seq(_compile(args[0], owner, name), tuple)
    if origin is tuple and args:
        return _fixed(tuple(_compile(a, owner, name) for a in args))
    if origin is list and len(args) == 1:
        return _seq(_compile(args[0], owner, name), list)
    raise TypeError(f"wire: no encoding for {owner.__name__}.{name}: {hint!r}")


def _build() -> None:
    for tag, cls in REGISTRY.items():
        _TAG_OF[cls] = tag
        _GETTERS[cls] = _getter(tuple(f.name for f in fields(cls)))
    for cls in REGISTRY.values():
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))
        decoders = [_compile(hints[n], cls, n) for n in names]
        _PLANS[cls] = _Plan(names, tuple(i for i, d in enumerate(decoders) if d is _int),
                            tuple((i, d) for i, d in enumerate(decoders) if d is not _int))
        slots = [(i, n, *ARRAY_FIELDS[n]) for i, n in enumerate(names) if hints[n] is np.ndarray]
        if slots:
            _ARRAY_SLOTS[cls] = slots


_build()
_ANY = _registered(tuple(REGISTRY.values()))
_TOP: dict[tuple[type, ...], Decoder] = {}


def decode(data: bytes | bytearray | memoryview, expect: tuple[type, ...] | None = None, *,
           max_frame: int = MAX_FRAME_BYTES) -> Any:
    """The object a frame holds, one of `expect` (default: any registered type), or `WireError`."""
    if len(data) > max_frame:
        raise WireError(f"frame of {len(data):,} bytes is over the {max_frame:,} limit")
    try:
        raw = msgpack.unpackb(data, use_list=True, raw=False, max_map_len=0, max_ext_len=_INT_BYTES,
                              max_bin_len=max_frame, max_str_len=max_frame)
    except Exception as e:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise WireError(f"not a frame: {type(e).__name__}: {e}") from None
    if expect is None:
        return _ANY(raw)
    dec = _TOP.get(expect)
    if dec is None:
        unknown = [c for c in expect if c not in _TAG_OF]
        if unknown:
            raise TypeError(f"wire: not registered: {unknown}")
        dec = _TOP.setdefault(expect, _registered(expect))
    return dec(raw)


def encode_peer_frame(sender: int, messages: list[Any]) -> bytes:
    """A region's messages to a peer, as one frame."""
    return encode(m.PeerFrame(sender, list(messages)))


def decode_peer_frame(data: bytes | bytearray | memoryview, sender: int, n_regions: int, *,
                      max_frame: int = MAX_FRAME_BYTES) -> list[Any]:
    """The messages of a frame from the authenticated peer `sender`. `WireError` if the
    frame is not a peer frame, comes from another region than the transport authenticated,
    or holds a message that names another sender than the frame's: nothing is delivered."""
    frame = decode(data, (m.PeerFrame,), max_frame=max_frame)
    if frame.sender != sender or not 0 <= sender < n_regions:
        raise WireError(f"a frame from region {sender} says it is from region {frame.sender}")
    for msg in frame.messages:
        msgs = msg.messages if type(msg) is q.RaftBundle else (msg,)
        for one in msgs:
            claimed = getattr(one, "sender", sender)
            if claimed != sender:
                raise WireError(f"region {sender} sent a {type(one).__name__} in the name of region {claimed}")
    return frame.messages


__all__ = ["ARRAY_FIELDS", "DTYPES", "MAX_ARRAY_ROWS", "MAX_FRAME_BYTES", "MESSAGE_TYPES", "PEER_MESSAGES",
           "RECORD_TYPES", "REGISTRY", "WireError", "decode", "decode_peer_frame", "encode", "encode_peer_frame"]

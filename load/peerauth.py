"""Who is on the other end of a peer link: one key per region, a handshake, sealed frames.

Why a key per region, not one shared secret: with a run-wide token every region (and
anyone holding the token) could open a link and speak for any other region — frames say
who sent them, and the receiver had only the frame's word for it. Here each region holds
only its own Ed25519 private key and every region's public key (`PeerKeys`); a region can
sign as itself and no one else, so a link is bound to the one region that proved it holds
that region's key, and `replication.wire.decode_peer_frame(data, sender=<that region>)`
refuses any frame or message claiming another sender.

The handshake (connector C opens the link to listener L; three messages, all fixed-size):

1. C → L: ``MAGIC, C, L, eC, nC`` — an ephemeral X25519 public key and a fresh nonce.
2. L → C: ``MAGIC, eL, nL, sign_L(transcript("listener"))``.
3. C → L: ``sign_C(transcript("connector"))``.
4. L → C: a confirmation sealed with the derived key (`confirmation`): L accepted C and
   holds the same key; C sends nothing before it.

The transcript binds the protocol, both region ids, both ephemeral keys and both nonces,
so a signature from one handshake is worthless in any other: a recorded handshake replayed
to a listener fails at step 3 (the listener's nonce and key are new), and a stranger who
cannot sign as C never gets past it. L signs too, so C never sends to an impostor
listening on L's port. Both sides then derive one key from the X25519 secret (HKDF-SHA256
over the nonces and the ids), and every frame C sends afterwards is sealed with AES-GCM
under that key with a frame counter as the nonce (`FrameSealer` / `FrameOpener`): a frame
injected into the TCP stream, replayed, reordered, cut short or altered fails to open,
and the listener drops the connection before decoding anything (the sender reconnects).
Sealing also keeps the books' traffic confidential on the wire.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROTOCOL = b"geoledger-peer/1"
MAGIC = b"GLP1"
_HELLO = struct.Struct(">4sHH32s32s")  # magic, connector, listener, ephemeral key, nonce
_REPLY = struct.Struct(">4s32s32s64s")  # magic, ephemeral key, nonce, signature
HELLO_SIZE, REPLY_SIZE, PROOF_SIZE = _HELLO.size, _REPLY.size, 64
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class HandshakeError(Exception):
    """The other end is not who it must be (or does not speak the protocol)."""


@dataclass(frozen=True)
class PeerKeys:
    """What one region holds: its own signing key and every region's public key, by index."""

    me: int
    private: Ed25519PrivateKey
    public: tuple[Ed25519PublicKey, ...]

    @classmethod
    def load(cls, me: int, private_hex: str, public_hex: list[str]) -> PeerKeys:
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
        public = tuple(Ed25519PublicKey.from_public_bytes(bytes.fromhex(h)) for h in public_hex)
        if not 0 <= me < len(public) or public_bytes(private.public_key()) != public_bytes(public[me]):
            raise ValueError(f"the private key given to region {me} is not the one its peers know")
        return cls(me, private, public)

    @property
    def regions(self) -> int:
        return len(self.public)


def public_bytes(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(*_RAW)


def generate(n_regions: int) -> tuple[list[str], list[str]]:
    """(private keys, public keys), hex, one per region: a run's identities."""
    keys = [Ed25519PrivateKey.generate() for _ in range(n_regions)]
    private = [k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption()).hex() for k in keys]
    return private, [public_bytes(k.public_key()).hex() for k in keys]


def _transcript(role: bytes, connector: int, listener: int, e_c: bytes, n_c: bytes, e_l: bytes, n_l: bytes) -> bytes:
    return b"|".join((PROTOCOL, role, struct.pack(">HH", connector, listener), e_c, n_c, e_l, n_l))


def _session_key(shared: bytes, connector: int, listener: int, n_c: bytes, n_l: bytes) -> bytes:
    info = PROTOCOL + b" frames " + struct.pack(">HH", connector, listener)
    return HKDF(SHA256(), 32, salt=n_c + n_l, info=info).derive(shared)


class ConnectorHandshake:
    """C's side: `hello()`, then `finish(reply)` returns (proof to send, the frame key)."""

    def __init__(self, keys: PeerKeys, listener: int) -> None:
        self.keys = keys
        self.listener = listener
        self._eph = X25519PrivateKey.generate()
        self._nonce = os.urandom(32)

    def hello(self) -> bytes:
        return _HELLO.pack(MAGIC, self.keys.me, self.listener, public_bytes(self._eph.public_key()), self._nonce)

    def finish(self, reply: bytes) -> tuple[bytes, bytes]:
        if len(reply) != REPLY_SIZE:
            raise HandshakeError(f"a reply of {len(reply)} bytes, expected {REPLY_SIZE}")
        magic, e_l, n_l, signature = _REPLY.unpack(reply)
        if magic != MAGIC:
            raise HandshakeError("the listener does not speak this protocol")
        me, e_c = self.keys.me, public_bytes(self._eph.public_key())
        try:
            self.keys.public[self.listener].verify(signature, _transcript(b"listener", me, self.listener, e_c,
                                                                          self._nonce, e_l, n_l))
        except InvalidSignature:
            raise HandshakeError(f"the listener cannot prove it is region {self.listener}") from None
        proof = self.keys.private.sign(_transcript(b"connector", me, self.listener, e_c, self._nonce, e_l, n_l))
        shared = self._eph.exchange(X25519PublicKey.from_public_bytes(e_l))
        return proof, _session_key(shared, me, self.listener, self._nonce, n_l)


class ListenerHandshake:
    """L's side: `reply(hello)` (checks who C claims to be), then `finish(proof)` returns
    (the authenticated connector, the frame key)."""

    def __init__(self, keys: PeerKeys) -> None:
        self.keys = keys
        self._eph = X25519PrivateKey.generate()
        self._nonce = os.urandom(32)
        self._hello: tuple[int, bytes, bytes] | None = None

    def reply(self, hello: bytes) -> bytes:
        if len(hello) != HELLO_SIZE:
            raise HandshakeError(f"a hello of {len(hello)} bytes, expected {HELLO_SIZE}")
        magic, connector, listener, e_c, n_c = _HELLO.unpack(hello)
        if magic != MAGIC:
            raise HandshakeError("not this protocol")
        if listener != self.keys.me:
            raise HandshakeError(f"a hello for region {listener} reached region {self.keys.me}")
        if not 0 <= connector < self.keys.regions or connector == self.keys.me:
            raise HandshakeError(f"a hello from region {connector}, which is no peer of region {self.keys.me}")
        self._hello = (connector, e_c, n_c)
        e_l = public_bytes(self._eph.public_key())
        signature = self.keys.private.sign(_transcript(b"listener", connector, self.keys.me, e_c, n_c, e_l,
                                                       self._nonce))
        return _REPLY.pack(MAGIC, e_l, self._nonce, signature)

    def finish(self, proof: bytes) -> tuple[int, bytes]:
        if self._hello is None:
            raise HandshakeError("a proof before a hello")
        connector, e_c, n_c = self._hello
        e_l = public_bytes(self._eph.public_key())
        try:
            self.keys.public[connector].verify(proof, _transcript(b"connector", connector, self.keys.me, e_c, n_c,
                                                                  e_l, self._nonce))
        except InvalidSignature:
            raise HandshakeError(f"the connector cannot prove it is region {connector}") from None
        try:
            shared = self._eph.exchange(X25519PublicKey.from_public_bytes(e_c))
        except ValueError:  # an all-zero shared secret: a low-order point, not a peer's key
            raise HandshakeError("a degenerate ephemeral key") from None
        return connector, _session_key(shared, connector, self.keys.me, n_c, self._nonce)


_CONFIRM_NONCE = b"\xff" * 12  # never a frame's: frames count up from 0
_CONFIRM = PROTOCOL + b" accepted"


def confirmation(key: bytes) -> bytes:
    """The listener's last handshake message: it accepted, and derived the same key."""
    return AESGCM(key).encrypt(_CONFIRM_NONCE, _CONFIRM, None)


def check_confirmation(key: bytes, data: bytes) -> None:
    try:
        if AESGCM(key).decrypt(_CONFIRM_NONCE, data, None) == _CONFIRM:
            return
    except InvalidTag:
        pass
    raise HandshakeError("the listener's confirmation does not match the handshake")


class FrameSealer:
    """Seals the connector's frames: AES-GCM, the frame's number as its nonce."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._n = 0

    def seal(self, frame: bytes) -> bytes:
        nonce = self._n.to_bytes(12, "big")
        self._n += 1
        return self._aead.encrypt(nonce, frame, None)


class FrameOpener:
    """Opens the listener's frames in order; `FrameRejected` for anything else."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._n = 0

    def open(self, sealed: bytes) -> bytes:
        try:
            frame = self._aead.decrypt(self._n.to_bytes(12, "big"), sealed, None)
        except InvalidTag:
            raise FrameRejected(f"frame {self._n} fails authentication (forged, replayed, reordered or cut)") from None
        self._n += 1
        return frame


class FrameRejected(Exception):
    """A sealed frame that did not come, in this order and unaltered, from the link's peer."""


__all__ = ["ConnectorHandshake", "FrameOpener", "FrameRejected", "FrameSealer",
           "HandshakeError", "ListenerHandshake", "PeerKeys", "check_confirmation", "confirmation",
           "generate", "public_bytes"]

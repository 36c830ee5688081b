"""The stored-record codec: JSON for small fields, raw bytes for row payloads, a CRC32 over all.

The library's JSON transcoder would base64 a megabyte of transfer rows per batch; here the
rows travel as they are, after a JSON header. The trailing CRC32 lets a flipped bit on disk
surface as `CorruptStoreError` on read instead of as wrong balances.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from eventsourcing.persistence import JSONTranscoder

from ledger.errors import CorruptStoreError

_MAGIC = b"GLX1"
_HEAD = struct.Struct("<4sII")
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_PLACEHOLDER = "__attachment__"


class AttachmentTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        attachments: list[bytes] = []
        header = super().encode(_detach(obj, attachments))
        parts = [_HEAD.pack(_MAGIC, len(header), len(attachments)), header]
        for blob in attachments:
            parts.append(_LEN.pack(len(blob)))
            parts.append(blob)
        body = b"".join(parts)
        return body + _CRC.pack(zlib.crc32(body))

    def decode(self, data: bytes) -> Any:
        data = bytes(data)
        if len(data) < _HEAD.size + _CRC.size:
            raise CorruptStoreError("stored record is truncated")
        body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
        if zlib.crc32(body) != crc:
            raise CorruptStoreError("stored record fails its checksum")
        magic, header_len, count = _HEAD.unpack_from(body)
        if magic != _MAGIC:
            raise CorruptStoreError("stored record is not a geoledger record")
        offset = _HEAD.size
        header = body[offset : offset + header_len]
        offset += header_len
        attachments = []
        for _ in range(count):
            (size,) = _LEN.unpack_from(body, offset)
            offset += _LEN.size
            attachments.append(body[offset : offset + size])
            offset += size
        if offset != len(body):
            raise CorruptStoreError("stored record has trailing bytes")
        return _attach(super().decode(header), attachments)


def _detach(obj: Any, attachments: list[bytes]) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        attachments.append(bytes(obj))
        return {_PLACEHOLDER: len(attachments) - 1}
    if isinstance(obj, dict):
        return {key: _detach(value, attachments) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_detach(value, attachments) for value in obj]
    return obj


def _attach(obj: Any, attachments: list[bytes]) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and _PLACEHOLDER in obj:
            index = obj[_PLACEHOLDER]
            if not isinstance(index, int) or not 0 <= index < len(attachments):
                raise CorruptStoreError("stored record refers to a missing attachment")
            return attachments[index]
        return {key: _attach(value, attachments) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_attach(value, attachments) for value in obj]
    return obj

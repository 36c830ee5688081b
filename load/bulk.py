"""The bulk body: transfers in the engine's own row layout, validated as strictly as JSON.

`POST /transfers/bulk` with `Content-Type: application/octet-stream` carries N transfers as
N rows of `cext.layout.TRANSFER_DTYPE` (128 bytes each, little-endian, every u128 as two
u64 words, low word first: TigerBeetle's transfer layout). Why a second body format: a
batch of 8,190 JSON transfers costs the gateway ~150 ms of Python (parse, a model per item,
a `Transfer` per item, rows again) for a commit the engine does in ~1 ms; rows cross the
process boundary as they are and are checked by numpy over whole columns.

Every rule the JSON body has, this body has, and nothing else is accepted:

* the body's length is a whole, non-zero multiple of 128 (422), at most
  `MAX_REQUEST_ITEMS` rows (413, before any byte is read: `BULK_BODY_MAX` in `BodyLimit`);
* `id` in 1..2^128-2 (JSON's `Id`), `flags` within `TRANSFER_FLAGS_KNOWN`, and `timestamp`
  zero — JSON has no `timestamp` field, so a row may not carry one either (422, naming the
  first bad row and field);
* every other field is any value its width holds (JSON's bounds are exactly the widths;
  amounts up to 2^128-1). There are no floats in a row, so no NaN by construction;
* the payments role's rule: no bank-internal account on either side (403, the same body
  as JSON's).

The answer (200, `application/octet-stream`) is TigerBeetle's: one 8-byte record
(index u32, result u32, little-endian) per transfer whose result is not `OK`, in order;
an empty body means every transfer was created. Result codes are `replication.outcomes`
values (`outcome_name` gives their names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cext.layout import TRANSFER_DTYPE
from ledger.types import TRANSFER_FLAGS_KNOWN
from load.auth import BANK_ACCOUNTS
from load.limits import MAX_REQUEST_ITEMS

ROW_BYTES = TRANSFER_DTYPE.itemsize
BULK_BODY_MAX = MAX_REQUEST_ITEMS * ROW_BYTES
"""The bulk route's body cap: exactly the largest legal batch."""
MEDIA_TYPE = "application/octet-stream"
RESULT_DTYPE = np.dtype([("index", "<u4"), ("result", "<u4")])
"""One record of the answer: a transfer's index in the body and its (non-OK) result."""
_M64 = np.uint64((1 << 64) - 1)
_BANK_LO, _BANK_HI = np.uint64(BANK_ACCOUNTS.start), np.uint64(BANK_ACCOUNTS.stop - 1)
assert BANK_ACCOUNTS.stop - 1 < 1 << 64  # bank accounts are one-word ids: the check below relies on it


@dataclass(frozen=True)
class BulkRefusal(Exception):
    """Why a bulk body is refused: the HTTP status and the JSON detail to answer with."""

    status: int
    detail: Any


def decode(body: bytes) -> np.ndarray:
    """The rows in `body`, or `BulkRefusal` (422) naming the first problem. The array is a
    read-only view of `body`: nothing is copied, and nothing can write into it."""
    if not body:
        raise BulkRefusal(422, _problem("body", "empty body: send 1 to 8,190 rows of 128 bytes"))
    if len(body) % ROW_BYTES:
        raise BulkRefusal(422, _problem("body", f"{len(body):,} bytes is not a whole number of {ROW_BYTES}-byte "
                                                "transfer rows (cext.layout.TRANSFER_DTYPE)"))
    rows = np.frombuffer(body, TRANSFER_DTYPE)
    if len(rows) > MAX_REQUEST_ITEMS:  # BodyLimit refuses it first; kept for any other caller
        raise BulkRefusal(413, f"{len(rows):,} rows: at most {MAX_REQUEST_ITEMS} per request")
    _check(rows, (rows["id_lo"] == 0) & (rows["id_hi"] == 0), "id", "must be at least 1")
    _check(rows, (rows["id_lo"] == _M64) & (rows["id_hi"] == _M64), "id", "must be below 2^128-1")
    _check(rows, rows["flags"] > TRANSFER_FLAGS_KNOWN, "flags", f"must be at most {TRANSFER_FLAGS_KNOWN}")
    _check(rows, rows["timestamp"] != 0, "timestamp", "must be 0 (the ledger stamps transfers)")
    return rows


def bank_accounts_named(rows: np.ndarray) -> list[tuple[int, str, int]]:
    """(index, field, account) of the first bank-internal account the rows name, if any
    (for `load.auth.refuse_bank_accounts`, which answers 403 for the payments role)."""
    for field in ("debit_account_id", "credit_account_id"):
        lo, hi = rows[f"{field}_lo"], rows[f"{field}_hi"]
        hit = np.flatnonzero((hi == 0) & (lo >= _BANK_LO) & (lo <= _BANK_HI))
        if len(hit):
            i = int(hit[0])
            return [(i, field, int(lo[i]))]
    return []


def encode_results(codes: np.ndarray) -> bytes:
    """TigerBeetle's answer: (index, result) for every code that is not 0 (`OK`)."""
    failed = np.flatnonzero(codes)
    out = np.empty(len(failed), RESULT_DTYPE)
    out["index"] = failed
    out["result"] = codes[failed]
    return out.tobytes()


def decode_results(body: bytes, count: int) -> np.ndarray:
    """A client's view of an answer: one result code per transfer sent (0 = `OK`)."""
    records = np.frombuffer(body, RESULT_DTYPE)
    codes = np.zeros(count, np.uint32)
    codes[records["index"]] = records["result"]
    return codes


def _check(rows: np.ndarray, bad: np.ndarray, field: str, msg: str) -> None:
    hit = np.flatnonzero(bad)
    if len(hit):
        i = int(hit[0])
        raise BulkRefusal(422, [{"type": "value_error", "loc": ["body", i, field],
                                 "msg": f"row {i}: {field} {msg}", "rows": int(len(hit))}])


def _problem(where: str, msg: str) -> list[dict[str, Any]]:
    return [{"type": "value_error", "loc": [where], "msg": msg}]


__all__ = ["BULK_BODY_MAX", "MEDIA_TYPE", "RESULT_DTYPE", "ROW_BYTES", "BulkRefusal", "bank_accounts_named",
           "decode", "decode_results", "encode_results"]

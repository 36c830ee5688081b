"""The pure-Python twin of the Cython engine: the reference semantics, written to be read.

It keeps exactly the same columnar state as `cext._engine.CyEngine` (the numpy rows of
`cext.layout`) and applies the same checks in TigerBeetle's order, one transfer at a time,
with Python ints for u128 arithmetic. Hypothesis tests hold the two to identical results
and identical state. Nothing here reads a clock: every timestamp is an argument.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np

from cext.layout import (
    ACCOUNT_DTYPE,
    HISTORY_DTYPE,
    META_DTYPE,
    STATUS_EXPIRED,
    STATUS_NONE,
    STATUS_PENDING,
    STATUS_POSTED,
    STATUS_VOIDED,
    TRANSFER_DTYPE,
    join,
    split,
)
from ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    NS_PER_S,
    TRANSFER_FLAGS_KNOWN,
    U64_MAX,
    U128_MAX,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferFlags,
)

A = CreateAccountResult
T = CreateTransferResult
AF = AccountFlags
TF = TransferFlags

_SNAPSHOT_MAGIC = b"GLENG1\0\0"


class _Scope:
    """What a linked chain must undo if one of its events fails."""

    def __init__(self, n_accounts: int, n_transfers: int, n_history: int) -> None:
        self.n_accounts = n_accounts
        self.n_transfers = n_transfers
        self.n_history = n_history
        self.balances: dict[int, tuple[int, ...]] = {}
        self.statuses: dict[int, int] = {}


class PyEngine:
    """Columnar ledger state plus batch validate+apply, in plain Python."""

    def __init__(self) -> None:
        self._accounts = np.zeros(16, ACCOUNT_DTYPE)
        self._transfers = np.zeros(16, TRANSFER_DTYPE)
        self._meta = np.zeros(16, META_DTYPE)
        self._history = np.zeros(16, HISTORY_DTYPE)
        self.n_accounts = 0
        self.n_transfers = 0
        self.n_history = 0
        self._account_index: dict[int, int] = {}
        self._transfer_index: dict[int, int] = {}
        self._scope: _Scope | None = None

    # ------------------------------------------------------------------ state views
    @property
    def accounts(self) -> np.ndarray:
        return self._accounts[: self.n_accounts]

    @property
    def transfers(self) -> np.ndarray:
        return self._transfers[: self.n_transfers]

    @property
    def meta(self) -> np.ndarray:
        return self._meta[: self.n_transfers]

    @property
    def history(self) -> np.ndarray:
        return self._history[: self.n_history]

    def account_slot(self, account_id: int) -> int:
        return self._account_index.get(account_id, -1)

    def transfer_slot(self, transfer_id: int) -> int:
        return self._transfer_index.get(transfer_id, -1)

    # ------------------------------------------------------------------ accounts
    def create_accounts(self, rows: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        return self._run_batch(rows, timestamps, self._create_account, A)

    def _create_account(self, row: Any, timestamp: int) -> int:
        a_id = join(row["id_lo"], row["id_hi"])
        flags = int(row["flags"])
        if flags & ~ACCOUNT_FLAGS_KNOWN & 0xFFFF:
            return A.RESERVED_FLAG
        if a_id == 0:
            return A.ID_MUST_NOT_BE_ZERO
        if a_id == U128_MAX:
            return A.ID_MUST_NOT_BE_INT_MAX
        slot = self._account_index.get(a_id)
        if slot is not None:
            e = self._accounts[slot]
            if flags != int(e["flags"]):
                return A.EXISTS_WITH_DIFFERENT_FLAGS
            if (row["user_data_128_lo"], row["user_data_128_hi"]) != (
                e["user_data_128_lo"],
                e["user_data_128_hi"],
            ):
                return A.EXISTS_WITH_DIFFERENT_USER_DATA_128
            if row["user_data_64"] != e["user_data_64"]:
                return A.EXISTS_WITH_DIFFERENT_USER_DATA_64
            if row["user_data_32"] != e["user_data_32"]:
                return A.EXISTS_WITH_DIFFERENT_USER_DATA_32
            if row["ledger"] != e["ledger"]:
                return A.EXISTS_WITH_DIFFERENT_LEDGER
            if row["code"] != e["code"]:
                return A.EXISTS_WITH_DIFFERENT_CODE
            return A.EXISTS
        if flags & AF.DEBITS_MUST_NOT_EXCEED_CREDITS and flags & AF.CREDITS_MUST_NOT_EXCEED_DEBITS:
            return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if row["ledger"] == 0:
            return A.LEDGER_MUST_NOT_BE_ZERO
        if row["code"] == 0:
            return A.CODE_MUST_NOT_BE_ZERO
        slot = self.n_accounts
        self._accounts = _ensure(self._accounts, slot + 1)
        new = self._accounts[slot]
        new["id_lo"], new["id_hi"] = row["id_lo"], row["id_hi"]
        new["user_data_128_lo"] = row["user_data_128_lo"]
        new["user_data_128_hi"] = row["user_data_128_hi"]
        new["user_data_64"] = row["user_data_64"]
        new["user_data_32"] = row["user_data_32"]
        new["ledger"], new["code"], new["flags"] = row["ledger"], row["code"], flags
        new["timestamp"] = timestamp
        self.n_accounts += 1
        self._account_index[a_id] = slot
        return A.OK

    # ------------------------------------------------------------------ transfers
    def create_transfers(self, rows: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        return self._run_batch(rows, timestamps, self._create_transfer, T)

    def _run_batch(self, rows: np.ndarray, timestamps: np.ndarray, create: Any, codes: Any) -> np.ndarray:
        """TigerBeetle's batch loop: linked chains commit or roll back as one."""
        n = len(rows)
        assert len(timestamps) == n
        results = np.zeros(n, np.uint32)
        chain: int | None = None
        broken = False
        for i in range(n):
            row = rows[i]
            linked = bool(int(row["flags"]) & 1)
            if linked and chain is None:
                chain = i
                self._scope = _Scope(self.n_accounts, self.n_transfers, self.n_history)
            if linked and i == n - 1:
                result = codes.LINKED_EVENT_CHAIN_OPEN
            elif broken:
                result = codes.LINKED_EVENT_FAILED
            else:
                result = create(row, int(timestamps[i]))
            if result != codes.OK and chain is not None and not broken:
                broken = True
                self._rollback()
                results[chain:i] = codes.LINKED_EVENT_FAILED
            results[i] = result
            if chain is not None and (not linked or result == codes.LINKED_EVENT_CHAIN_OPEN):
                self._scope = None
                chain = None
                broken = False
        return results

    def _create_transfer(self, row: Any, timestamp: int) -> int:
        t_id = join(row["id_lo"], row["id_hi"])
        flags = int(row["flags"])
        if flags & ~TRANSFER_FLAGS_KNOWN & 0xFFFF:
            return T.RESERVED_FLAG
        if t_id == 0:
            return T.ID_MUST_NOT_BE_ZERO
        if t_id == U128_MAX:
            return T.ID_MUST_NOT_BE_INT_MAX
        if flags & (TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER):
            return self._post_or_void(row, t_id, flags, timestamp)

        dr_id = join(row["debit_account_id_lo"], row["debit_account_id_hi"])
        cr_id = join(row["credit_account_id_lo"], row["credit_account_id_hi"])
        if dr_id == 0:
            return T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if dr_id == U128_MAX:
            return T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if cr_id == 0:
            return T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if cr_id == U128_MAX:
            return T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if cr_id == dr_id:
            return T.ACCOUNTS_MUST_BE_DIFFERENT
        if join(row["pending_id_lo"], row["pending_id_hi"]) != 0:
            return T.PENDING_ID_MUST_BE_ZERO
        if not flags & TF.PENDING and row["timeout"] != 0:
            return T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if row["ledger"] == 0:
            return T.LEDGER_MUST_NOT_BE_ZERO
        if row["code"] == 0:
            return T.CODE_MUST_NOT_BE_ZERO
        dr_slot = self._account_index.get(dr_id)
        if dr_slot is None:
            return T.DEBIT_ACCOUNT_NOT_FOUND
        cr_slot = self._account_index.get(cr_id)
        if cr_slot is None:
            return T.CREDIT_ACCOUNT_NOT_FOUND
        dr = self._accounts[dr_slot]
        cr = self._accounts[cr_slot]
        if dr["ledger"] != cr["ledger"]:
            return T.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if row["ledger"] != dr["ledger"]:
            return T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS

        existing = self._transfer_index.get(t_id)
        if existing is not None:
            return self._transfer_exists(row, flags, existing)
        if int(dr["flags"]) & AF.CLOSED:
            return T.DEBIT_ACCOUNT_ALREADY_CLOSED
        if int(cr["flags"]) & AF.CLOSED:
            return T.CREDIT_ACCOUNT_ALREADY_CLOSED

        dr_dp, dr_dpo, dr_cp, dr_cpo = _balances(dr)
        cr_dp, cr_dpo, cr_cp, cr_cpo = _balances(cr)
        amount = join(row["amount_lo"], row["amount_hi"])
        if flags & TF.BALANCING_DEBIT:
            amount = min(amount, max(0, dr_cpo - (dr_dpo + dr_dp)))
        if flags & TF.BALANCING_CREDIT:
            amount = min(amount, max(0, cr_dpo - (cr_cpo + cr_cp)))
        pending = bool(flags & TF.PENDING)
        if pending:
            if dr_dp + amount > U128_MAX:
                return T.OVERFLOWS_DEBITS_PENDING
            if cr_cp + amount > U128_MAX:
                return T.OVERFLOWS_CREDITS_PENDING
        if dr_dpo + amount > U128_MAX:
            return T.OVERFLOWS_DEBITS_POSTED
        if cr_cpo + amount > U128_MAX:
            return T.OVERFLOWS_CREDITS_POSTED
        if dr_dp + dr_dpo + amount > U128_MAX:
            return T.OVERFLOWS_DEBITS
        if cr_cp + cr_cpo + amount > U128_MAX:
            return T.OVERFLOWS_CREDITS
        timeout_ns = int(row["timeout"]) * NS_PER_S
        if timestamp + timeout_ns > U64_MAX:
            return T.OVERFLOWS_TIMEOUT
        if int(dr["flags"]) & AF.DEBITS_MUST_NOT_EXCEED_CREDITS and dr_dp + dr_dpo + amount > dr_cpo:
            return T.EXCEEDS_CREDITS
        if int(cr["flags"]) & AF.CREDITS_MUST_NOT_EXCEED_DEBITS and cr_cp + cr_cpo + amount > cr_dpo:
            return T.EXCEEDS_DEBITS

        self._save_balances(dr_slot)
        self._save_balances(cr_slot)
        if pending:
            _set_balances(dr, dr_dp + amount, dr_dpo, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp + amount, cr_cpo)
        else:
            _set_balances(dr, dr_dp, dr_dpo + amount, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp, cr_cpo + amount)
        expires_at = timestamp + timeout_ns if pending and timeout_ns else 0
        self._append_transfer(
            row, t_id, amount, timestamp, dr_slot, cr_slot,
            STATUS_PENDING if pending else STATUS_NONE, expires_at,
        )
        return T.OK

    def _transfer_exists(self, row: Any, flags: int, slot: int) -> int:
        e = self._transfers[slot]
        if flags != int(e["flags"]):
            return T.EXISTS_WITH_DIFFERENT_FLAGS
        if (row["debit_account_id_lo"], row["debit_account_id_hi"]) != (
            e["debit_account_id_lo"], e["debit_account_id_hi"]
        ):
            return T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if (row["credit_account_id_lo"], row["credit_account_id_hi"]) != (
            e["credit_account_id_lo"], e["credit_account_id_hi"]
        ):
            return T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        amount = join(row["amount_lo"], row["amount_hi"])
        stored = join(e["amount_lo"], e["amount_hi"])
        if flags & (TF.BALANCING_DEBIT | TF.BALANCING_CREDIT):
            # A balancing amount is an upper bound; the stored one is what was moved.
            if amount < stored:
                return T.EXISTS_WITH_DIFFERENT_AMOUNT
        elif amount != stored:
            return T.EXISTS_WITH_DIFFERENT_AMOUNT
        return self._exists_tail(row, e)

    def _exists_tail(self, row: Any, e: Any) -> int:
        if (row["user_data_128_lo"], row["user_data_128_hi"]) != (
            e["user_data_128_lo"], e["user_data_128_hi"]
        ):
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_128
        if row["user_data_64"] != e["user_data_64"]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if row["user_data_32"] != e["user_data_32"]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if row["timeout"] != e["timeout"]:
            return T.EXISTS_WITH_DIFFERENT_TIMEOUT
        if row["code"] != 0 and row["code"] != e["code"]:
            return T.EXISTS_WITH_DIFFERENT_CODE
        return T.EXISTS

    def _post_or_void(self, row: Any, t_id: int, flags: int, timestamp: int) -> int:
        post = bool(flags & TF.POST_PENDING_TRANSFER)
        if post and flags & TF.VOID_PENDING_TRANSFER:
            return T.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & (TF.PENDING | TF.BALANCING_DEBIT | TF.BALANCING_CREDIT):
            return T.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        pending_id = join(row["pending_id_lo"], row["pending_id_hi"])
        if pending_id == 0:
            return T.PENDING_ID_MUST_NOT_BE_ZERO
        if pending_id == U128_MAX:
            return T.PENDING_ID_MUST_NOT_BE_INT_MAX
        if pending_id == t_id:
            return T.PENDING_ID_MUST_BE_DIFFERENT
        if row["timeout"] != 0:
            return T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        p_slot = self._transfer_index.get(pending_id)
        if p_slot is None:
            return T.PENDING_TRANSFER_NOT_FOUND
        p = self._transfers[p_slot]
        if not int(p["flags"]) & TF.PENDING:
            return T.PENDING_TRANSFER_NOT_PENDING
        dr_id = join(row["debit_account_id_lo"], row["debit_account_id_hi"])
        cr_id = join(row["credit_account_id_lo"], row["credit_account_id_hi"])
        if dr_id and dr_id != join(p["debit_account_id_lo"], p["debit_account_id_hi"]):
            return T.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if cr_id and cr_id != join(p["credit_account_id_lo"], p["credit_account_id_hi"]):
            return T.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if row["ledger"] and row["ledger"] != p["ledger"]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if row["code"] and row["code"] != p["code"]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        p_amount = join(p["amount_lo"], p["amount_hi"])
        amount = join(row["amount_lo"], row["amount_hi"])
        # TigerBeetle >= 0.16: AMOUNT_MAX means "all of it"; a void may also leave it 0.
        if amount == U128_MAX or (not post and amount == 0):
            amount = p_amount
        if amount > p_amount:
            return T.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and amount < p_amount:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT

        # TigerBeetle: a post/void's user_data fields that are zero inherit the pending's.
        resolved = row.copy()
        for field in ("user_data_128_lo", "user_data_128_hi", "user_data_64", "user_data_32"):
            resolved[field] = p[field]
        if join(row["user_data_128_lo"], row["user_data_128_hi"]):
            resolved["user_data_128_lo"] = row["user_data_128_lo"]
            resolved["user_data_128_hi"] = row["user_data_128_hi"]
        if row["user_data_64"]:
            resolved["user_data_64"] = row["user_data_64"]
        if row["user_data_32"]:
            resolved["user_data_32"] = row["user_data_32"]

        existing = self._transfer_index.get(t_id)
        if existing is not None:
            e = self._transfers[existing]
            if flags != int(e["flags"]):
                return T.EXISTS_WITH_DIFFERENT_FLAGS
            if pending_id != join(e["pending_id_lo"], e["pending_id_hi"]):
                return T.EXISTS_WITH_DIFFERENT_PENDING_ID
            if amount != join(e["amount_lo"], e["amount_hi"]):
                return T.EXISTS_WITH_DIFFERENT_AMOUNT
            return self._exists_tail(resolved, e)

        status = int(self._meta[p_slot]["status"])
        if status == STATUS_POSTED:
            return T.PENDING_TRANSFER_ALREADY_POSTED
        if status == STATUS_VOIDED:
            return T.PENDING_TRANSFER_ALREADY_VOIDED
        expires_at = int(self._meta[p_slot]["expires_at"])
        if status == STATUS_EXPIRED or (expires_at and expires_at <= timestamp):
            return T.PENDING_TRANSFER_EXPIRED
        assert status == STATUS_PENDING

        dr_slot = int(self._meta[p_slot]["debit_slot"])
        cr_slot = int(self._meta[p_slot]["credit_slot"])
        dr = self._accounts[dr_slot]
        cr = self._accounts[cr_slot]
        dr_dp, dr_dpo, dr_cp, dr_cpo = _balances(dr)
        cr_dp, cr_dpo, cr_cp, cr_cpo = _balances(cr)
        assert dr_dp >= p_amount and cr_cp >= p_amount
        self._save_balances(dr_slot)
        self._save_balances(cr_slot)
        self._save_status(p_slot)
        posted = amount if post else 0
        # dp + dpo never grows here, so the overflow checks at pending time still hold.
        _set_balances(dr, dr_dp - p_amount, dr_dpo + posted, dr_cp, dr_cpo)
        _set_balances(cr, cr_dp, cr_dpo, cr_cp - p_amount, cr_cpo + posted)
        self._meta[p_slot]["status"] = STATUS_POSTED if post else STATUS_VOIDED
        for side in ("debit_account_id", "credit_account_id"):
            resolved[f"{side}_lo"] = p[f"{side}_lo"]
            resolved[f"{side}_hi"] = p[f"{side}_hi"]
        resolved["ledger"] = p["ledger"]
        resolved["code"] = p["code"]
        self._append_transfer(resolved, t_id, amount, timestamp, dr_slot, cr_slot, STATUS_NONE, 0)
        return T.OK

    # ------------------------------------------------------------------ expiry
    def expire_pending(self, now: int) -> int:
        """Void, in (expiry, slot) order, every pending transfer whose timeout has passed."""
        meta = self.meta
        due = np.nonzero(
            (meta["status"] == STATUS_PENDING) & (meta["expires_at"] != 0) & (meta["expires_at"] <= now)
        )[0]
        order = sorted(due.tolist(), key=lambda s: (int(meta[s]["expires_at"]), s))
        for p_slot in order:
            p = self._transfers[p_slot]
            amount = join(p["amount_lo"], p["amount_hi"])
            dr = self._accounts[int(meta[p_slot]["debit_slot"])]
            cr = self._accounts[int(meta[p_slot]["credit_slot"])]
            dr_dp, dr_dpo, dr_cp, dr_cpo = _balances(dr)
            cr_dp, cr_dpo, cr_cp, cr_cpo = _balances(cr)
            _set_balances(dr, dr_dp - amount, dr_dpo, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp - amount, cr_cpo)
            self._meta[p_slot]["status"] = STATUS_EXPIRED
        return len(order)

    # ------------------------------------------------------------------ bookkeeping
    def _append_transfer(
        self, row: Any, t_id: int, amount: int, timestamp: int,
        dr_slot: int, cr_slot: int, status: int, expires_at: int,
    ) -> None:
        slot = self.n_transfers
        self._transfers = _ensure(self._transfers, slot + 1)
        self._meta = _ensure(self._meta, slot + 1)
        self._transfers[slot] = row
        new = self._transfers[slot]
        new["amount_lo"], new["amount_hi"] = split(amount)
        new["timestamp"] = timestamp
        m = self._meta[slot]
        m["debit_slot"], m["credit_slot"] = dr_slot, cr_slot
        m["expires_at"], m["status"] = expires_at, status
        self.n_transfers += 1
        self._transfer_index[t_id] = slot
        for a_slot in (dr_slot, cr_slot):
            account = self._accounts[a_slot]
            if int(account["flags"]) & AF.HISTORY:
                self._append_history(account, timestamp)

    def _append_history(self, account: Any, timestamp: int) -> None:
        h_slot = self.n_history
        self._history = _ensure(self._history, h_slot + 1)
        h = self._history[h_slot]
        h["account_id_lo"], h["account_id_hi"] = account["id_lo"], account["id_hi"]
        h["timestamp"] = timestamp
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
            h[f"{name}_lo"], h[f"{name}_hi"] = account[f"{name}_lo"], account[f"{name}_hi"]
        self.n_history += 1

    def _save_balances(self, slot: int) -> None:
        if self._scope is not None and slot not in self._scope.balances:
            self._scope.balances[slot] = _balances(self._accounts[slot])

    def _save_status(self, slot: int) -> None:
        if self._scope is not None and slot not in self._scope.statuses:
            self._scope.statuses[slot] = int(self._meta[slot]["status"])

    def _rollback(self) -> None:
        scope = self._scope
        assert scope is not None
        for slot, balances in scope.balances.items():
            _set_balances(self._accounts[slot], *balances)
        for slot, status in scope.statuses.items():
            self._meta[slot]["status"] = status
        for slot in range(scope.n_transfers, self.n_transfers):
            del self._transfer_index[join(self._transfers[slot]["id_lo"], self._transfers[slot]["id_hi"])]
        for slot in range(scope.n_accounts, self.n_accounts):
            del self._account_index[join(self._accounts[slot]["id_lo"], self._accounts[slot]["id_hi"])]
        self._transfers[scope.n_transfers : self.n_transfers] = 0
        self._meta[scope.n_transfers : self.n_transfers] = 0
        self._accounts[scope.n_accounts : self.n_accounts] = 0
        self._history[scope.n_history : self.n_history] = 0
        self.n_transfers = scope.n_transfers
        self.n_accounts = scope.n_accounts
        self.n_history = scope.n_history
        self._scope = _Scope(self.n_accounts, self.n_transfers, self.n_history)

    # ------------------------------------------------------------------ snapshot / digest
    def digest(self) -> bytes:
        """SHA-256 of the whole state: equal digests mean equal books, row for row."""
        h = hashlib.sha256()
        for part in (self.accounts, self.transfers, self.meta, self.history):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.digest()

    def snapshot(self) -> bytes:
        return pack_snapshot(self.accounts, self.transfers, self.meta, self.history)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's; raises ValueError if it is not one."""
        n_accounts, n_transfers, n_history, parts = parse_snapshot(data)
        self.__init__()  # type: ignore[misc]
        self._accounts, self._transfers, self._meta, self._history = (np.array(p) for p in parts)
        self.n_accounts, self.n_transfers, self.n_history = n_accounts, n_transfers, n_history
        for slot in range(n_accounts):
            self._account_index[join(self._accounts[slot]["id_lo"], self._accounts[slot]["id_hi"])] = slot
        for slot in range(n_transfers):
            self._transfer_index[join(self._transfers[slot]["id_lo"], self._transfers[slot]["id_hi"])] = slot


def pack_snapshot(accounts: np.ndarray, transfers: np.ndarray, meta: np.ndarray, history: np.ndarray) -> bytes:
    """The engine's snapshot format: a header with the counts, then the four row arrays."""
    header = struct.pack("<8sQQQ", _SNAPSHOT_MAGIC, len(accounts), len(transfers), len(history))
    return b"".join([header, accounts.tobytes(), transfers.tobytes(), meta.tobytes(), history.tobytes()])


def parse_snapshot(data: bytes) -> tuple[int, int, int, list[np.ndarray]]:
    """Split an engine snapshot into its counts and row arrays (read-only views)."""
    header = struct.calcsize("<8sQQQ")
    if len(data) < header:
        raise ValueError("engine snapshot is truncated")
    magic, n_accounts, n_transfers, n_history = struct.unpack_from("<8sQQQ", data)
    if magic != _SNAPSHOT_MAGIC:
        raise ValueError("not an engine snapshot")
    sizes = [
        (ACCOUNT_DTYPE, n_accounts),
        (TRANSFER_DTYPE, n_transfers),
        (META_DTYPE, n_transfers),
        (HISTORY_DTYPE, n_history),
    ]
    if len(data) != header + sum(d.itemsize * n for d, n in sizes):
        raise ValueError("engine snapshot has the wrong length")
    parts = []
    offset = header
    for dtype, n in sizes:
        parts.append(np.frombuffer(data, dtype, n, offset))
        offset += dtype.itemsize * n
    return n_accounts, n_transfers, n_history, parts


def _ensure(array: np.ndarray, size: int) -> np.ndarray:
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), array.dtype)
    grown[: len(array)] = array
    return grown


def _balances(account: Any) -> tuple[int, int, int, int]:
    return (
        join(account["debits_pending_lo"], account["debits_pending_hi"]),
        join(account["debits_posted_lo"], account["debits_posted_hi"]),
        join(account["credits_pending_lo"], account["credits_pending_hi"]),
        join(account["credits_posted_lo"], account["credits_posted_hi"]),
    )


def _set_balances(account: Any, dp: int, dpo: int, cp: int, cpo: int) -> None:
    for name, value in (
        ("debits_pending", dp),
        ("debits_posted", dpo),
        ("credits_pending", cp),
        ("credits_posted", cpo),
    ):
        assert 0 <= value <= U128_MAX, (name, value)
        account[f"{name}_lo"], account[f"{name}_hi"] = split(value)

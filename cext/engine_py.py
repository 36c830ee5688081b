"""The pure-Python twin of the Cython engine: the reference semantics, written to be read.

It keeps exactly the same columnar state as `cext._engine.CyEngine` (the numpy rows of
`cext.layout`) and applies the same checks in TigerBeetle's (>= 0.16.4) order, one event
at a time, with Python ints for u128 arithmetic. Hypothesis tests hold the two to
identical results and identical state. Nothing here reads a clock: every timestamp is an
argument.

Rows reach an engine two ways, and `client` says which. Rows a client sent (`client=True`)
must carry a zero timestamp unless imported, and a transfer failing with a transient
result is remembered so that its id can never succeed later (`ID_ALREADY_FAILED`). Rows
being re-applied (a replay of the log, a replica applying shipped rows) carry the
timestamps they were committed with, and nothing is remembered for them: a replay never
fails, and the log records failed ids itself (`remember_failed`).

`timestamps[i]` is the ledger time of event i. An imported event keeps the timestamp in
its row and `timestamps[i]` is then the ledger's "now", which that timestamp must
precede; the ledger passes the batch's last timestamp there, as TigerBeetle compares an
import against the batch's timestamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from cext.layout import (
    ACCOUNT_DTYPE,
    FAILED_DTYPE,
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
from cext.rules_py import account_exists as _account_exists
from cext.rules_py import admit as _admit
from cext.rules_py import reopen as _reopen
from cext.rules_py import resolution_exists as _resolution_exists
from cext.snapshot import pack_snapshot, parse_snapshot, parse_snapshot_all
from ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    NS_PER_S,
    TIMESTAMP_MAX,
    TRANSFER_FLAGS_KNOWN,
    TRANSIENT_TRANSFER_RESULTS,
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
_TRANSIENT = frozenset(int(r) for r in TRANSIENT_TRANSFER_RESULTS)
_CLOSING = TF.CLOSING_DEBIT | TF.CLOSING_CREDIT


class _Scope:
    """What a linked chain must undo if one of its events fails."""

    def __init__(self, n_accounts: int, n_transfers: int, n_history: int) -> None:
        self.n_accounts = n_accounts
        self.n_transfers = n_transfers
        self.n_history = n_history
        self.accounts: dict[int, tuple[int, ...]] = {}  # slot -> four balances and flags
        self.statuses: dict[int, int] = {}


class PyEngine:
    """Columnar ledger state plus batch validate+apply, in plain Python."""

    def __init__(self) -> None:
        self._accounts = np.zeros(16, ACCOUNT_DTYPE)
        self._transfers = np.zeros(16, TRANSFER_DTYPE)
        self._meta = np.zeros(16, META_DTYPE)
        self._history = np.zeros(16, HISTORY_DTYPE)
        self._failed = np.zeros(16, FAILED_DTYPE)
        self.n_accounts = 0
        self.n_transfers = 0
        self.n_history = 0
        self.n_failed = 0
        self._account_index: dict[int, int] = {}
        self._transfer_index: dict[int, int] = {}
        self._failed_index: dict[int, int] = {}
        self._scope: _Scope | None = None
        self._last_expired = np.zeros(0, np.int64)

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

    @property
    def failed(self) -> np.ndarray:
        """Ids of transfers that failed with a transient result, in the order they failed."""
        return self._failed[: self.n_failed]

    @property
    def last_expired(self) -> np.ndarray:
        """Slots of the transfers the last `expire_pending` call expired, in its order."""
        return self._last_expired

    def account_slot(self, account_id: int) -> int:
        return self._account_index.get(account_id, -1)

    def transfer_slot(self, transfer_id: int) -> int:
        return self._transfer_index.get(transfer_id, -1)

    def transfer_slots(self, id_lo: np.ndarray, id_hi: np.ndarray) -> np.ndarray:
        """`transfer_slot` of each id given as its u64 words (int64, -1 where absent)."""
        if len(id_lo) != len(id_hi):
            raise ValueError("transfer_slots: id_lo and id_hi differ in length")
        get = self._transfer_index.get
        ids = (lo | hi << 64 for lo, hi in zip(np.asarray(id_lo, np.uint64).tolist(),
                                                           np.asarray(id_hi, np.uint64).tolist(), strict=True))
        return np.fromiter((get(i, -1) for i in ids), np.int64, len(id_lo))

    def failed_slot(self, transfer_id: int) -> int:
        return self._failed_index.get(transfer_id, -1)

    # ------------------------------------------------------------------ batches
    def create_accounts(self, rows: np.ndarray, timestamps: np.ndarray, *, client: bool = False) -> np.ndarray:
        """Results (uint32, one per row) of creating the accounts in `rows`."""
        return self._run_batch(rows, timestamps, client, self._create_account, A, int(AF.IMPORTED))

    def create_transfers(self, rows: np.ndarray, timestamps: np.ndarray, *, client: bool = False) -> np.ndarray:
        """Results (uint32, one per row) of creating the transfers in `rows`."""
        return self._run_batch(rows, timestamps, client, self._create_transfer, T, int(TF.IMPORTED))

    def _run_batch(
        self, rows: np.ndarray, timestamps: np.ndarray, client: bool, create: Any, codes: Any, imported_flag: int,
    ) -> np.ndarray:
        """TigerBeetle's batch loop: linked chains commit or roll back as one; the first
        event decides whether the batch imports; transient failures are remembered."""
        n = len(rows)
        assert len(timestamps) == n
        results = np.zeros(n, np.uint32)
        batch_imported = n > 0 and bool(int(rows[0]["flags"]) & imported_flag)
        chain: int | None = None
        broken = False
        for i in range(n):
            row = rows[i]
            flags = int(row["flags"])
            linked = bool(flags & 1)
            if linked and chain is None:
                chain = i
                self._scope = _Scope(self.n_accounts, self.n_transfers, self.n_history)
            if linked and i == n - 1:
                result = codes.LINKED_EVENT_CHAIN_OPEN
            elif broken:
                result = codes.LINKED_EVENT_FAILED
            else:
                now = int(timestamps[i])
                result = _admit(row, flags, now, batch_imported, imported_flag, client, codes)
                if result == codes.OK:
                    result = create(row, now)
            if result != codes.OK and chain is not None and not broken:
                broken = True
                self._rollback()
                results[chain:i] = codes.LINKED_EVENT_FAILED
            results[i] = result
            if client and codes is T and int(result) in _TRANSIENT:
                self._add_failed(join(row["id_lo"], row["id_hi"]))
            if chain is not None and (not linked or result == codes.LINKED_EVENT_CHAIN_OPEN):
                self._scope = None
                chain = None
                broken = False
        return results

    # ------------------------------------------------------------------ accounts
    def _create_account(self, row: Any, now: int) -> int:
        a_id = join(row["id_lo"], row["id_hi"])
        flags = int(row["flags"])
        if row["reserved"] != 0:
            return A.RESERVED_FIELD
        if flags & ~ACCOUNT_FLAGS_KNOWN & 0xFFFF:
            return A.RESERVED_FLAG
        if a_id == 0:
            return A.ID_MUST_NOT_BE_ZERO
        if a_id == U128_MAX:
            return A.ID_MUST_NOT_BE_INT_MAX
        slot = self._account_index.get(a_id)
        if slot is not None:
            return _account_exists(row, flags, self._accounts[slot])
        if flags & AF.DEBITS_MUST_NOT_EXCEED_CREDITS and flags & AF.CREDITS_MUST_NOT_EXCEED_DEBITS:
            return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        for name, code in (
            ("debits_pending", A.DEBITS_PENDING_MUST_BE_ZERO),
            ("debits_posted", A.DEBITS_POSTED_MUST_BE_ZERO),
            ("credits_pending", A.CREDITS_PENDING_MUST_BE_ZERO),
            ("credits_posted", A.CREDITS_POSTED_MUST_BE_ZERO),
        ):
            if row[f"{name}_lo"] or row[f"{name}_hi"]:
                return code
        if row["ledger"] == 0:
            return A.LEDGER_MUST_NOT_BE_ZERO
        if row["code"] == 0:
            return A.CODE_MUST_NOT_BE_ZERO
        timestamp = now
        if flags & AF.IMPORTED:
            timestamp = int(row["timestamp"])
            if self._regresses(timestamp, self.accounts, self.transfers):
                return A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
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

    @staticmethod
    def _regresses(timestamp: int, same_kind: np.ndarray, other_kind: np.ndarray) -> bool:
        """An imported timestamp must be later than every row of its own kind and equal to
        no row of the other kind (both arrays are in timestamp order)."""
        if len(same_kind) and timestamp <= int(same_kind[-1]["timestamp"]):
            return True
        k = int(np.searchsorted(other_kind["timestamp"], np.uint64(timestamp)))
        return k < len(other_kind) and int(other_kind[k]["timestamp"]) == timestamp

    # ------------------------------------------------------------------ transfers
    def _create_transfer(self, row: Any, now: int) -> int:
        t_id = join(row["id_lo"], row["id_hi"])
        flags = int(row["flags"])
        if flags & ~TRANSFER_FLAGS_KNOWN & 0xFFFF:
            return T.RESERVED_FLAG
        if t_id == 0:
            return T.ID_MUST_NOT_BE_ZERO
        if t_id == U128_MAX:
            return T.ID_MUST_NOT_BE_INT_MAX
        existing = self._transfer_index.get(t_id)
        if existing is not None:
            return self._transfer_exists(row, flags, self._transfers[existing])
        if t_id in self._failed_index:
            return T.ID_ALREADY_FAILED
        if flags & (TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER):
            return self._post_or_void(row, t_id, flags, now)

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
        pending = bool(flags & TF.PENDING)
        if not pending:
            if row["timeout"] != 0:
                return T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if flags & _CLOSING:
                return T.CLOSING_TRANSFER_MUST_BE_PENDING
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
        timestamp = now
        if flags & TF.IMPORTED:
            timestamp = int(row["timestamp"])
            if self._regresses(timestamp, self.transfers, self.accounts):
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
            if timestamp <= int(dr["timestamp"]):
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
            if timestamp <= int(cr["timestamp"]):
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
            if row["timeout"] != 0:
                return T.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
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
        if timeout_ns and timestamp + timeout_ns > TIMESTAMP_MAX:
            return T.OVERFLOWS_TIMEOUT
        if int(dr["flags"]) & AF.DEBITS_MUST_NOT_EXCEED_CREDITS and dr_dp + dr_dpo + amount > dr_cpo:
            return T.EXCEEDS_CREDITS
        if int(cr["flags"]) & AF.CREDITS_MUST_NOT_EXCEED_DEBITS and cr_cp + cr_cpo + amount > cr_dpo:
            return T.EXCEEDS_DEBITS

        self._save_account(dr_slot)
        self._save_account(cr_slot)
        if pending:
            _set_balances(dr, dr_dp + amount, dr_dpo, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp + amount, cr_cpo)
        else:
            _set_balances(dr, dr_dp, dr_dpo + amount, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp, cr_cpo + amount)
        if flags & TF.CLOSING_DEBIT:
            dr["flags"] = int(dr["flags"]) | AF.CLOSED
        if flags & TF.CLOSING_CREDIT:
            cr["flags"] = int(cr["flags"]) | AF.CLOSED
        expires_at = timestamp + timeout_ns if pending and timeout_ns else 0
        self._append_transfer(
            row, t_id, amount, timestamp, dr_slot, cr_slot,
            STATUS_PENDING if pending else STATUS_NONE, expires_at,
        )
        return T.OK

    def _transfer_exists(self, row: Any, flags: int, e: Any) -> int:
        """TigerBeetle's idempotency check: the first field that differs, in its order."""
        if flags != int(e["flags"]):
            return T.EXISTS_WITH_DIFFERENT_FLAGS
        pending_id = join(row["pending_id_lo"], row["pending_id_hi"])
        if pending_id != join(e["pending_id_lo"], e["pending_id_hi"]):
            return T.EXISTS_WITH_DIFFERENT_PENDING_ID
        if row["timeout"] != e["timeout"]:
            return T.EXISTS_WITH_DIFFERENT_TIMEOUT
        if flags & (TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER):
            p_slot = self._transfer_index.get(pending_id)
            return _resolution_exists(row, flags, e, None if p_slot is None else self._transfers[p_slot])
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
        if (row["user_data_128_lo"], row["user_data_128_hi"]) != (e["user_data_128_lo"], e["user_data_128_hi"]):
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_128
        if row["user_data_64"] != e["user_data_64"]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if row["user_data_32"] != e["user_data_32"]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if row["ledger"] != e["ledger"]:
            return T.EXISTS_WITH_DIFFERENT_LEDGER
        if row["code"] != e["code"]:
            return T.EXISTS_WITH_DIFFERENT_CODE
        return T.EXISTS

    def _post_or_void(self, row: Any, t_id: int, flags: int, now: int) -> int:
        post = bool(flags & TF.POST_PENDING_TRANSFER)
        if post and flags & TF.VOID_PENDING_TRANSFER:
            return T.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & (TF.PENDING | TF.BALANCING_DEBIT | TF.BALANCING_CREDIT | _CLOSING):
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
        # TigerBeetle >= 0.16: a post of AMOUNT_MAX, or a void of 0, means "all of it".
        if (post and amount == U128_MAX) or (not post and amount == 0):
            amount = p_amount
        if amount > p_amount:
            return T.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and amount < p_amount:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        status = int(self._meta[p_slot]["status"])
        if status == STATUS_POSTED:
            return T.PENDING_TRANSFER_ALREADY_POSTED
        if status == STATUS_VOIDED:
            return T.PENDING_TRANSFER_ALREADY_VOIDED
        expires_at = int(self._meta[p_slot]["expires_at"])
        if status == STATUS_EXPIRED or (expires_at and expires_at <= now):
            return T.PENDING_TRANSFER_EXPIRED
        assert status == STATUS_PENDING
        timestamp = now
        if flags & TF.IMPORTED:
            timestamp = int(row["timestamp"])
            if self._regresses(timestamp, self.transfers, self.accounts):
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        dr_slot = int(self._meta[p_slot]["debit_slot"])
        cr_slot = int(self._meta[p_slot]["credit_slot"])
        dr = self._accounts[dr_slot]
        cr = self._accounts[cr_slot]
        # The only movement a closed account still allows is voiding a pending transfer.
        if post and int(dr["flags"]) & AF.CLOSED:
            return T.DEBIT_ACCOUNT_ALREADY_CLOSED
        if post and int(cr["flags"]) & AF.CLOSED:
            return T.CREDIT_ACCOUNT_ALREADY_CLOSED

        dr_dp, dr_dpo, dr_cp, dr_cpo = _balances(dr)
        cr_dp, cr_dpo, cr_cp, cr_cpo = _balances(cr)
        assert dr_dp >= p_amount and cr_cp >= p_amount
        self._save_account(dr_slot)
        self._save_account(cr_slot)
        self._save_status(p_slot)
        posted = amount if post else 0
        # dp + dpo never grows here, so the overflow checks at pending time still hold.
        _set_balances(dr, dr_dp - p_amount, dr_dpo + posted, dr_cp, dr_cpo)
        _set_balances(cr, cr_dp, cr_dpo, cr_cp - p_amount, cr_cpo + posted)
        if not post:
            _reopen(p, dr, cr)
        self._meta[p_slot]["status"] = STATUS_POSTED if post else STATUS_VOIDED
        # The new transfer names the pending's accounts, ledger and code; its user data
        # fields that are zero take the pending's (TigerBeetle).
        resolved = row.copy()
        for name in ("debit_account_id_lo", "debit_account_id_hi", "credit_account_id_lo", "credit_account_id_hi",
                     "ledger", "code"):
            resolved[name] = p[name]
        if not join(row["user_data_128_lo"], row["user_data_128_hi"]):
            resolved["user_data_128_lo"], resolved["user_data_128_hi"] = p["user_data_128_lo"], p["user_data_128_hi"]
        for name in ("user_data_64", "user_data_32"):
            if not row[name]:
                resolved[name] = p[name]
        self._append_transfer(resolved, t_id, amount, timestamp, dr_slot, cr_slot, STATUS_NONE, 0)
        return T.OK

    # ------------------------------------------------------------------ expiry
    def next_expiry(self) -> int:
        """When the next pending transfer expires (ns of ledger time), or 0 if none will."""
        meta = self.meta
        live = meta["expires_at"][(meta["status"] == STATUS_PENDING) & (meta["expires_at"] != 0)]
        return int(live.min()) if len(live) else 0

    def expire_pending(self, now: int, limit: int = -1) -> int:
        """Void, in (expiry, slot) order, the pending transfers whose timeout has passed by
        `now` (at most `limit` of them if it is not negative); the i-th is stamped `now + i`
        in the balance history. Expiring a closing transfer re-opens its accounts."""
        meta = self.meta
        due = np.nonzero(
            (meta["status"] == STATUS_PENDING) & (meta["expires_at"] != 0) & (meta["expires_at"] <= now)
        )[0]
        order = sorted(due.tolist(), key=lambda s: (int(meta[s]["expires_at"]), s))
        if limit >= 0:
            order = order[:limit]
        for i, p_slot in enumerate(order):
            p = self._transfers[p_slot]
            amount = join(p["amount_lo"], p["amount_hi"])
            dr = self._accounts[int(meta[p_slot]["debit_slot"])]
            cr = self._accounts[int(meta[p_slot]["credit_slot"])]
            dr_dp, dr_dpo, dr_cp, dr_cpo = _balances(dr)
            cr_dp, cr_dpo, cr_cp, cr_cpo = _balances(cr)
            _set_balances(dr, dr_dp - amount, dr_dpo, dr_cp, dr_cpo)
            _set_balances(cr, cr_dp, cr_dpo, cr_cp - amount, cr_cpo)
            _reopen(p, dr, cr)
            self._meta[p_slot]["status"] = STATUS_EXPIRED
            self._history_for(dr, cr, min(now + i, U64_MAX))
        self._last_expired = np.array(order, np.int64)
        return len(order)

    # ------------------------------------------------------------------ failed ids
    def remember_failed(self, ids: np.ndarray) -> None:
        """Record transfer ids (FAILED_DTYPE rows) as failed, as a replay of the log does."""
        for row in np.asarray(ids, FAILED_DTYPE):
            self._add_failed(join(row["id_lo"], row["id_hi"]))

    def _add_failed(self, t_id: int) -> None:
        if t_id in self._failed_index:
            return
        slot = self.n_failed
        self._failed = _ensure(self._failed, slot + 1)
        self._failed[slot]["id_lo"], self._failed[slot]["id_hi"] = split(t_id)
        self._failed_index[t_id] = slot
        self.n_failed += 1

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
        self._history_for(self._accounts[dr_slot], self._accounts[cr_slot], timestamp)

    def _history_for(self, dr: Any, cr: Any, timestamp: int) -> None:
        for account in (dr, cr):
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

    def _save_account(self, slot: int) -> None:
        if self._scope is not None and slot not in self._scope.accounts:
            account = self._accounts[slot]
            self._scope.accounts[slot] = (*_balances(account), int(account["flags"]))

    def _save_status(self, slot: int) -> None:
        if self._scope is not None and slot not in self._scope.statuses:
            self._scope.statuses[slot] = int(self._meta[slot]["status"])

    def _rollback(self) -> None:
        scope = self._scope
        assert scope is not None
        for slot, (dp, dpo, cp, cpo, flags) in scope.accounts.items():
            _set_balances(self._accounts[slot], dp, dpo, cp, cpo)
            self._accounts[slot]["flags"] = flags
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
        for part in (self.accounts, self.transfers, self.meta, self.history, self.failed):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.digest()

    def snapshot(self) -> bytes:
        return pack_snapshot(self.accounts, self.transfers, self.meta, self.history, self.failed)

    def restore(self, data: bytes | memoryview, give_back: Callable[[int, int], None] | None = None) -> None:
        """Replace the state with a snapshot's (its bytes, or a view of them: the rows are
        copied); raises ValueError if it is not one. `give_back(start, length)` is told
        each part's bytes of `data` once they are copied (see `CyEngine.restore`)."""
        n_accounts, n_transfers, n_history, parts, failed = parse_snapshot_all(data)
        self.__init__()  # type: ignore[misc]
        copies = []
        at = len(data) - sum(p.nbytes for p in parts) - failed.nbytes  # the header's size
        for p in parts:
            copies.append(np.array(p))
            if give_back is not None and p.nbytes:
                give_back(at, p.nbytes)
            at += p.nbytes
        self._accounts, self._transfers, self._meta, self._history = copies
        self.n_accounts, self.n_transfers, self.n_history = n_accounts, n_transfers, n_history
        for slot in range(n_accounts):
            self._account_index[join(self._accounts[slot]["id_lo"], self._accounts[slot]["id_hi"])] = slot
        for slot in range(n_transfers):
            self._transfer_index[join(self._transfers[slot]["id_lo"], self._transfers[slot]["id_hi"])] = slot
        self.remember_failed(failed)


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


__all__ = ["PyEngine", "pack_snapshot", "parse_snapshot"]

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled engine: `CyEngine`, the Cython twin of `cext.engine_py.PyEngine`.

Same columnar state (the numpy rows of `cext.layout`), same checks in TigerBeetle's order,
same results, same snapshot bytes and digest; the Python twin is the reference and the
hypothesis tests hold the two to it. What differs is only how:

* the batch loop runs in C without the GIL, over C structs laid over the numpy buffers
  (declared field by field to match the dtypes, checked at import);
* u128 arithmetic uses the compiler's `unsigned __int128`; every sum is checked against
  2^128 - 1 before it is made, so an overflow is a result code, never a wrap;
* the id -> slot indexes are open-addressing hash tables (linear probing, backward-shift
  deletion so that a rolled-back chain removes its own entries without tombstones);
* pending transfers with a timeout sit in a binary min-heap on (expires_at, slot), so
  `expire_pending` and `next_expiry` cost one comparison when nothing is due (they run
  before every batch and every read of a ledger);
* ids that failed with a transient result (`client=True` batches only) have their own
  block of 16-byte rows and their own index, probed only when it is not empty.

Capacity (rows, index, heap, rollback journal) is reserved before each batch for the worst
case of that batch, so nothing in the loop allocates or touches a Python object. Rows live
in large reservations of address space (`_Rows`), so growing never copies or moves them.

Speed comes from memory, not arithmetic: per transfer the loop touches an input row, two
index cells and two account rows chosen at random, one cell of a large transfer index, and
appends 152 bytes. So the loop is software-pipelined (hashes and index cells fetched two
distances ahead, account rows one distance ahead), and appended rows are written with
streaming stores. Measured here (2 vCPUs shared with other jobs): 5.5-8M simple transfers/s
between 10,000 accounts in batches of 8190, against 25-30k/s for the twin
(`bench/engine_bench.py`).

One compiled module, one file per job: this file holds `CyEngine` (state, batch loop,
accounts, bookkeeping, expiry, snapshots); the `engine_*.pxi` files it includes hold the
constants and their import-time checks, the memory it owns (id index, expiry heap,
rollback journal, row blocks), the pure row checks, capacity reservation and the transfer
rules. Textual includes, not cimported modules, so that every call in the loop stays a
direct C call the compiler can inline (an A/B run of `measure_engines` at 1M transfers:
6.2M/s split against 5.6-5.7M/s before, i.e. no cost).
"""

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

import hashlib
import operator

import numpy as np

cimport numpy as cnp

from cext.layout import ACCOUNT_DTYPE, FAILED_DTYPE, HISTORY_DTYPE, META_DTYPE, TRANSFER_DTYPE
from cext.snapshot import pack_snapshot, parse_snapshot_all
from ledger.types import (
    ACCOUNT_FLAGS_KNOWN as _PY_ACCOUNT_FLAGS_KNOWN,
    TIMESTAMP_MAX as _PY_TIMESTAMP_MAX,
    TRANSFER_FLAGS_KNOWN as _PY_TRANSFER_FLAGS_KNOWN,
    TRANSIENT_TRANSFER_RESULTS as _PY_TRANSIENT,
    CreateAccountResult,
    CreateTransferResult,
)

cnp.import_array()

cdef extern from *:
    """
    typedef unsigned __int128 gl_u128;
    """
    ctypedef unsigned long long u128 "gl_u128"


include "engine_constants.pxi"
include "engine_memory.pxi"
include "engine_checks.pxi"


# --------------------------------------------------------------------------- the engine

@cython.final
cdef class CyEngine:
    """Columnar ledger state plus batch validate+apply, compiled; see `PyEngine` for the rules."""

    # Each row array is a numpy view of the whole of its _Rows block (capacity rows).
    cdef object _accounts
    cdef object _transfers
    cdef object _meta
    cdef object _history
    cdef object _failed
    cdef object _last_expired
    cdef _Rows _acc_rows
    cdef _Rows _tr_rows
    cdef _Rows _mt_rows
    cdef _Rows _hist_rows
    cdef _Rows _fail_rows
    cdef AccountRow* acc
    cdef TransferRow* tr
    cdef MetaRow* mt
    cdef HistoryRow* hist
    cdef FailedRow* fail
    cdef readonly Py_ssize_t n_accounts
    cdef readonly Py_ssize_t n_transfers
    cdef readonly Py_ssize_t n_history
    cdef readonly Py_ssize_t n_failed
    cdef IdIndex aidx
    cdef IdIndex tidx
    cdef IdIndex fidx
    cdef Heap heap
    # The open linked chain: where it started and what it changed.
    cdef bint in_scope
    cdef Py_ssize_t scope_accounts
    cdef Py_ssize_t scope_transfers
    cdef Py_ssize_t scope_history
    cdef SavedBalances* saved_bal
    cdef Py_ssize_t n_saved_bal
    cdef Py_ssize_t cap_saved_bal
    cdef SavedStatus* saved_st
    cdef Py_ssize_t n_saved_st
    cdef Py_ssize_t cap_saved_st
    # Set (under the GIL) while a batch runs without it: a second thread entering the
    # engine then gets an error instead of corrupting it. Like the twin, the engine is
    # for one thread at a time; the ledger serialises its calls.
    cdef bint busy

    def __cinit__(self) -> None:
        idx_init(&self.aidx, 16)
        idx_init(&self.tidx, 16)
        idx_init(&self.fidx, 16)
        self.heap.items = <HeapEntry*>malloc(16 * sizeof(HeapEntry))
        self.saved_bal = <SavedBalances*>malloc(16 * sizeof(SavedBalances))
        self.saved_st = <SavedStatus*>malloc(16 * sizeof(SavedStatus))
        if self.heap.items == NULL or self.saved_bal == NULL or self.saved_st == NULL:
            raise MemoryError()
        self.heap.cap = 16
        self.cap_saved_bal = 16
        self.cap_saved_st = 16
        self._acc_rows = _Rows(16 * sizeof(AccountRow), RESERVE_ACCOUNT_ROWS * sizeof(AccountRow))
        self._tr_rows = _Rows(16 * sizeof(TransferRow), RESERVE_ROWS * sizeof(TransferRow))
        self._mt_rows = _Rows(16 * sizeof(MetaRow), RESERVE_ROWS * sizeof(MetaRow))
        self._hist_rows = _Rows(16 * sizeof(HistoryRow), RESERVE_ROWS * sizeof(HistoryRow))
        self._fail_rows = _Rows(16 * sizeof(FailedRow), RESERVE_ACCOUNT_ROWS * sizeof(FailedRow))
        self._install(True, True, True, True)
        self._install_failed()
        self._last_expired = np.zeros(0, np.int64)

    def __dealloc__(self) -> None:
        idx_free(&self.aidx)
        idx_free(&self.tidx)
        idx_free(&self.fidx)
        free(self.heap.items)
        free(self.saved_bal)
        free(self.saved_st)

    cdef _install(self, bint accounts, bint transfers, bint meta, bint history):
        """(Re)build the numpy arrays over the row blocks that changed, and the pointers."""
        if accounts:
            self._accounts = np.frombuffer(self._acc_rows, ACCOUNT_DTYPE, self._acc_rows.nbytes // sizeof(AccountRow))
        if transfers:
            self._transfers = np.frombuffer(
                self._tr_rows, TRANSFER_DTYPE, self._tr_rows.nbytes // sizeof(TransferRow)
            )
        if meta:
            self._meta = np.frombuffer(self._mt_rows, META_DTYPE, self._mt_rows.nbytes // sizeof(MetaRow))
        if history:
            self._history = np.frombuffer(
                self._hist_rows, HISTORY_DTYPE, self._hist_rows.nbytes // sizeof(HistoryRow)
            )
        if accounts:
            self.acc = <AccountRow*>self._acc_rows.data
            self.aidx.keys = <const uint64_t*>self.acc
        if transfers:
            self.tr = <TransferRow*>self._tr_rows.data
            self.tidx.keys = <const uint64_t*>self.tr
        if meta:
            self.mt = <MetaRow*>self._mt_rows.data
        if history:
            self.hist = <HistoryRow*>self._hist_rows.data

    cdef _install_failed(self):
        self._failed = np.frombuffer(self._fail_rows, FAILED_DTYPE, self._fail_rows.nbytes // sizeof(FailedRow))
        self.fail = <FailedRow*>self._fail_rows.data
        self.fidx.keys = <const uint64_t*>self.fail

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

    def failed_slot(self, transfer_id: int) -> int:
        """The position of a failed transfer id among `failed`, or -1."""
        return self._slot(&self.fidx, transfer_id, FAILED_SHIFT)

    def account_slot(self, account_id: int) -> int:
        """The row of an account id, or -1."""
        return self._slot(&self.aidx, account_id)

    def transfer_slot(self, transfer_id: int) -> int:
        """The row of a transfer id, or -1."""
        return self._slot(&self.tidx, transfer_id)

    def transfer_slots(self, id_lo: np.ndarray, id_hi: np.ndarray) -> np.ndarray:
        """Rows of many transfer ids as u64 words (-1 where absent): one call a batch, not per id."""
        cdef const uint64_t[::1] lo = np.ascontiguousarray(id_lo, np.uint64)
        cdef const uint64_t[::1] hi = np.ascontiguousarray(id_hi, np.uint64)
        cdef Py_ssize_t i, n = lo.shape[0]
        if hi.shape[0] != n:
            raise ValueError("transfer_slots: id_lo and id_hi differ in length")
        out = np.empty(n, np.int64)
        cdef int64_t[::1] o = out
        with nogil:
            for i in range(n):
                o[i] = idx_find(&self.tidx, lo[i], hi[i]) if (lo[i] | hi[i]) else -1
        return out

    cdef int64_t _slot(self, IdIndex* ix, object id_, int shift=ROW_SHIFT) except? -2:
        cdef object v = operator.index(id_)  # numpy integers too, as dict lookups allow
        cdef uint64_t lo, hi
        if v <= 0 or v >> 128:
            return -1
        lo, hi = v & 0xFFFFFFFFFFFFFFFF, v >> 64
        return idx_find_hs(ix, mix128(lo, hi), lo, hi, shift)

    # ------------------------------------------------------------------ batches
    def create_accounts(self, rows: np.ndarray, timestamps: np.ndarray, *, client: bool = False) -> np.ndarray:
        """Results (uint32, one per row) of creating the accounts in `rows`; see `PyEngine`."""
        return self._batch(rows, timestamps, False, client)

    def create_transfers(self, rows: np.ndarray, timestamps: np.ndarray, *, client: bool = False) -> np.ndarray:
        """Results (uint32, one per row) of creating the transfers in `rows`; see `PyEngine`."""
        return self._batch(rows, timestamps, True, client)

    cdef object _batch(self, rows, timestamps, bint transfers, bint client):
        rows, ts, results = self._prepare(rows, timestamps, TRANSFER_DTYPE if transfers else ACCOUNT_DTYPE)
        cdef Py_ssize_t n = len(rows)
        cdef const void* r = cnp.PyArray_DATA(<cnp.ndarray>rows)
        cdef const uint64_t* t = <const uint64_t*>cnp.PyArray_DATA(<cnp.ndarray>ts)
        cdef uint32_t* out = <uint32_t*>cnp.PyArray_DATA(<cnp.ndarray>results)
        cdef size_t stride = sizeof(TransferRow) if transfers else sizeof(AccountRow)
        self._enter()
        try:
            if transfers:
                reserve_transfers(self, n)
                if client:
                    reserve_failed(self, n)
            else:
                reserve_accounts(self, n)
            reserve_journal(self, n)
            with nogil:
                self._run_batch(r, stride, t, out, n, transfers, client)
        finally:
            self.busy = False
        return results

    cdef int _enter(self) except -1:
        if self.busy:
            raise RuntimeError("CyEngine is already running a batch in another thread")
        self.busy = True
        return 0

    @staticmethod
    def _prepare(rows, timestamps, dtype):
        rows = np.asarray(rows)
        if rows.dtype != dtype:
            rows = rows.astype(dtype)
        rows = np.ascontiguousarray(rows)
        ts = np.ascontiguousarray(timestamps, dtype=np.uint64)
        if rows.ndim != 1 or ts.ndim != 1 or len(ts) != len(rows):
            raise ValueError("rows and timestamps must be 1-d and of the same length")
        return rows, ts, np.zeros(len(rows), np.uint32)

    cdef void _run_batch(
        self, const void* rows, size_t stride, const uint64_t* ts, uint32_t* out,
        Py_ssize_t n, bint transfers, bint client,
    ) noexcept nogil:
        """TigerBeetle's batch loop: linked chains commit or roll back as one; the first
        event decides whether the batch imports; transient failures are remembered."""
        cdef Py_ssize_t i, j
        cdef Py_ssize_t chain = -1
        cdef bint broken = False
        cdef bint linked
        cdef uint32_t result
        cdef const char* base = <const char*>rows
        cdef uint16_t flags
        cdef const TransferRow* ahead
        cdef int64_t peek
        # Hashes of (id, debit id, credit id) per transfer, computed once, 2D rows ahead.
        cdef uint32_t ring[3 * HASH_RING]
        cdef Py_ssize_t k
        cdef uint16_t imported_flag = TF_IMPORTED if transfers else AF_IMPORTED
        cdef bint batch_imported = False
        cdef const TransferRow* trow
        if n > 0:
            flags = (<const TransferRow*>base).flags if transfers else (<const AccountRow*>base).flags
            batch_imported = (flags & imported_flag) != 0
        if transfers:
            for j in range(min(n, 2 * PREFETCH_DISTANCE)):
                self._hash_ahead(<const TransferRow*>(base + j * stride), &ring[3 * (j & (HASH_RING - 1))])
        for i in range(n):
            if transfers:
                # Software pipelining: the index cells of the transfer 2D ahead and the
                # account rows of the one D ahead are in cache by the time they are used.
                if i + 4 * PREFETCH_DISTANCE < n:  # the input row itself, both lines
                    prefetch(base + (i + 4 * PREFETCH_DISTANCE) * stride)
                    prefetch(base + (i + 4 * PREFETCH_DISTANCE) * stride + 64)
                if i + 2 * PREFETCH_DISTANCE < n:
                    j = i + 2 * PREFETCH_DISTANCE
                    self._hash_ahead(<const TransferRow*>(base + j * stride), &ring[3 * (j & (HASH_RING - 1))])
                if i + PREFETCH_DISTANCE < n:
                    k = 3 * ((i + PREFETCH_DISTANCE) & (HASH_RING - 1))
                    peek = idx_peek_h(&self.aidx, ring[k + 1])
                    if peek >= 0:
                        prefetch_w(&self.acc[peek])
                    peek = idx_peek_h(&self.aidx, ring[k + 2])
                    if peek >= 0:
                        prefetch_w(&self.acc[peek])
                flags = (<const TransferRow*>(base + i * stride)).flags
            else:
                flags = (<const AccountRow*>(base + i * stride)).flags
            linked = (flags & 1) != 0
            if linked and chain < 0:
                chain = i
                self._scope_open()
            if linked and i == n - 1:
                result = R_LINKED_EVENT_CHAIN_OPEN
            elif broken:
                result = R_LINKED_EVENT_FAILED
            elif transfers:
                trow = <const TransferRow*>(base + i * stride)
                result = admit(flags, trow.timestamp, ts[i], batch_imported, imported_flag, client, True)
                if result == R_OK:
                    result = create_transfer(self, trow, ts[i], &ring[3 * (i & (HASH_RING - 1))])
            else:
                result = admit(flags, (<const AccountRow*>(base + i * stride)).timestamp, ts[i], batch_imported,
                               imported_flag, client, False)
                if result == R_OK:
                    result = self._create_account(<const AccountRow*>(base + i * stride), ts[i])
            if result != R_OK and chain >= 0 and not broken:
                broken = True
                self._rollback()
                for j in range(chain, i):
                    out[j] = R_LINKED_EVENT_FAILED
            out[i] = result
            if client and transfers and result != R_OK and is_transient(result):
                trow = <const TransferRow*>(base + i * stride)
                self._add_failed(trow.id_lo, trow.id_hi)
            if chain >= 0 and (not linked or result == R_LINKED_EVENT_CHAIN_OPEN):
                self.in_scope = False
                chain = -1
                broken = False
        store_fence()

    cdef inline void _hash_ahead(self, const TransferRow* row, uint32_t* hashes) noexcept nogil:
        """Hash a coming transfer's ids and prefetch their index cells."""
        hashes[0] = mix128(row.id_lo, row.id_hi)
        hashes[1] = mix128(row.debit_account_id_lo, row.debit_account_id_hi)
        hashes[2] = mix128(row.credit_account_id_lo, row.credit_account_id_hi)
        prefetch(&self.tidx.cells[hashes[0] & self.tidx.mask])
        prefetch(&self.aidx.cells[hashes[1] & self.aidx.mask])
        prefetch(&self.aidx.cells[hashes[2] & self.aidx.mask])

    # ------------------------------------------------------------------ accounts
    cdef uint32_t _create_account(self, const AccountRow* row, uint64_t now) noexcept nogil:
        cdef uint16_t flags = row.flags
        cdef int64_t slot
        cdef AccountRow* e
        cdef uint64_t timestamp = now
        if row.reserved != 0:
            return A_RESERVED_FIELD
        if flags & ~AF_KNOWN & 0xFFFF:
            return A_RESERVED_FLAG
        if row.id_lo == 0 and row.id_hi == 0:
            return A_ID_MUST_NOT_BE_ZERO
        if is_max(row.id_lo, row.id_hi):
            return A_ID_MUST_NOT_BE_INT_MAX
        slot = idx_find(&self.aidx, row.id_lo, row.id_hi)
        if slot >= 0:
            return account_exists(row, &self.acc[slot])
        if (flags & AF_DEBITS_MUST_NOT_EXCEED_CREDITS) and (flags & AF_CREDITS_MUST_NOT_EXCEED_DEBITS):
            return A_FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if row.debits_pending_lo != 0 or row.debits_pending_hi != 0:
            return A_DEBITS_PENDING_MUST_BE_ZERO
        if row.debits_posted_lo != 0 or row.debits_posted_hi != 0:
            return A_DEBITS_POSTED_MUST_BE_ZERO
        if row.credits_pending_lo != 0 or row.credits_pending_hi != 0:
            return A_CREDITS_PENDING_MUST_BE_ZERO
        if row.credits_posted_lo != 0 or row.credits_posted_hi != 0:
            return A_CREDITS_POSTED_MUST_BE_ZERO
        if row.ledger == 0:
            return A_LEDGER_MUST_NOT_BE_ZERO
        if row.code == 0:
            return A_CODE_MUST_NOT_BE_ZERO
        if flags & AF_IMPORTED:
            timestamp = row.timestamp
            if self._regresses(timestamp, False):
                return A_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        slot = self.n_accounts
        e = &self.acc[slot]
        memset(e, 0, sizeof(AccountRow))
        e.id_lo = row.id_lo
        e.id_hi = row.id_hi
        e.user_data_128_lo = row.user_data_128_lo
        e.user_data_128_hi = row.user_data_128_hi
        e.user_data_64 = row.user_data_64
        e.user_data_32 = row.user_data_32
        e.ledger = row.ledger
        e.code = row.code
        e.flags = flags
        e.timestamp = timestamp
        self.n_accounts += 1
        idx_put(&self.aidx, row.id_lo, row.id_hi, <uint64_t>slot)
        return R_OK

    cdef inline bint _regresses(self, uint64_t timestamp, bint transfer) noexcept nogil:
        """An imported timestamp must be later than every row of its own kind and equal to
        no row of the other kind (both are in timestamp order)."""
        if transfer:
            if self.n_transfers > 0 and timestamp <= self.tr[self.n_transfers - 1].timestamp:
                return True
            return has_timestamp(<const uint64_t*>self.acc, self.n_accounts, timestamp)
        if self.n_accounts > 0 and timestamp <= self.acc[self.n_accounts - 1].timestamp:
            return True
        return has_timestamp(<const uint64_t*>self.tr, self.n_transfers, timestamp)

    # ------------------------------------------------------------------ bookkeeping
    cdef inline void _append_meta_and_history(
        self, Py_ssize_t slot, uint32_t id_hash, uint32_t dr_slot, uint32_t cr_slot,
        uint8_t status, uint64_t expires_at, uint64_t timestamp,
    ) noexcept nogil:
        """The transfer row at `slot` is written; add its meta row, index entry, history."""
        cdef MetaRow* m = &self.mt[slot]
        memset(m, 0, sizeof(MetaRow))
        m.debit_slot = dr_slot
        m.credit_slot = cr_slot
        m.expires_at = expires_at
        m.status = status
        self.n_transfers += 1
        idx_put_hashed(&self.tidx, id_hash, <uint64_t>slot)
        if self.acc[dr_slot].flags & AF_HISTORY:
            self._append_history(&self.acc[dr_slot], timestamp)
        if self.acc[cr_slot].flags & AF_HISTORY:
            self._append_history(&self.acc[cr_slot], timestamp)

    cdef inline void _append_history(self, const AccountRow* a, uint64_t timestamp) noexcept nogil:
        cdef HistoryRow* h = &self.hist[self.n_history]
        h.account_id_lo = a.id_lo
        h.account_id_hi = a.id_hi
        h.timestamp = timestamp
        h.debits_pending_lo = a.debits_pending_lo
        h.debits_pending_hi = a.debits_pending_hi
        h.debits_posted_lo = a.debits_posted_lo
        h.debits_posted_hi = a.debits_posted_hi
        h.credits_pending_lo = a.credits_pending_lo
        h.credits_pending_hi = a.credits_pending_hi
        h.credits_posted_lo = a.credits_posted_lo
        h.credits_posted_hi = a.credits_posted_hi
        self.n_history += 1

    cdef inline void _add_failed(self, uint64_t lo, uint64_t hi) noexcept nogil:
        """Remember a failed transfer id; capacity was reserved before the batch."""
        cdef FailedRow* f
        if idx_find_hs(&self.fidx, mix128(lo, hi), lo, hi, FAILED_SHIFT) >= 0:
            return
        f = &self.fail[self.n_failed]
        f.id_lo = lo
        f.id_hi = hi
        idx_put(&self.fidx, lo, hi, <uint64_t>self.n_failed)
        self.n_failed += 1

    cdef inline void _scope_open(self) noexcept nogil:
        self.in_scope = True
        self.scope_accounts = self.n_accounts
        self.scope_transfers = self.n_transfers
        self.scope_history = self.n_history
        self.n_saved_bal = 0
        self.n_saved_st = 0

    cdef inline void _save_balances(self, Py_ssize_t slot) noexcept nogil:
        # Journal every save; restoring newest-first leaves the oldest (pre-chain) value.
        cdef SavedBalances* s = &self.saved_bal[self.n_saved_bal]
        s.slot = <uint64_t>slot
        memcpy(s.words, &self.acc[slot].debits_pending_lo, 8 * sizeof(uint64_t))
        s.flags = self.acc[slot].flags
        self.n_saved_bal += 1

    cdef inline void _save_status(self, Py_ssize_t slot) noexcept nogil:
        cdef SavedStatus* s = &self.saved_st[self.n_saved_st]
        s.slot = <uint64_t>slot
        s.status = self.mt[slot].status
        self.n_saved_st += 1

    cdef void _rollback(self) noexcept nogil:
        cdef Py_ssize_t k
        k = self.n_saved_bal
        while k > 0:
            k -= 1
            memcpy(&self.acc[self.saved_bal[k].slot].debits_pending_lo, self.saved_bal[k].words,
                   8 * sizeof(uint64_t))
            self.acc[self.saved_bal[k].slot].flags = <uint16_t>self.saved_bal[k].flags
        k = self.n_saved_st
        while k > 0:
            k -= 1
            self.mt[self.saved_st[k].slot].status = <uint8_t>self.saved_st[k].status
        k = self.n_transfers
        while k > self.scope_transfers:
            k -= 1
            idx_remove(&self.tidx, self.tr[k].id_lo, self.tr[k].id_hi)
        k = self.n_accounts
        while k > self.scope_accounts:
            k -= 1
            idx_remove(&self.aidx, self.acc[k].id_lo, self.acc[k].id_hi)
        memset(&self.tr[self.scope_transfers], 0,
               (self.n_transfers - self.scope_transfers) * sizeof(TransferRow))
        memset(&self.mt[self.scope_transfers], 0,
               (self.n_transfers - self.scope_transfers) * sizeof(MetaRow))
        memset(&self.acc[self.scope_accounts], 0,
               (self.n_accounts - self.scope_accounts) * sizeof(AccountRow))
        memset(&self.hist[self.scope_history], 0,
               (self.n_history - self.scope_history) * sizeof(HistoryRow))
        self.n_transfers = self.scope_transfers
        self.n_accounts = self.scope_accounts
        self.n_history = self.scope_history
        self._scope_open()

    # ------------------------------------------------------------------ expiry
    def next_expiry(self) -> int:
        """When the next pending transfer expires (ns of ledger time), or 0 if none will."""
        while self.heap.size > 0 and not heap_live(&self.heap.items[0], self.mt, <uint64_t>self.n_transfers):
            heap_pop(&self.heap)  # posted, voided or rolled back since it was pushed
        return self.heap.items[0].at if self.heap.size > 0 else 0

    def expire_pending(self, now: int, limit: int = -1) -> int:
        """Void, in (expiry, slot) order, the pending transfers whose timeout has passed by
        `now` (at most `limit` of them if it is not negative); the i-th is stamped `now + i`
        in the balance history. Expiring a closing transfer re-opens its accounts."""
        cdef uint64_t at = U64_MAX if now >= U64_MAX else <uint64_t>max(now, 0)
        cdef Py_ssize_t most = self.heap.size if limit < 0 else min(limit, self.heap.size)
        cdef Py_ssize_t count = 0
        cdef cnp.ndarray slots
        if now < 1 or most == 0 or self.heap.items[0].at > at:
            self._last_expired = np.zeros(0, np.int64)
            return 0  # the common case, before every batch
        self._enter()
        try:
            reserve_history(self, 2 * most)
            slots = np.zeros(most, np.int64)
            with nogil:
                count = self._expire(at, most, <int64_t*>cnp.PyArray_DATA(slots))
        finally:
            self.busy = False
        self._last_expired = slots[:count]
        return count

    cdef Py_ssize_t _expire(self, uint64_t now, Py_ssize_t most, int64_t* slots) noexcept nogil:
        cdef Py_ssize_t count = 0
        cdef HeapEntry top
        cdef const TransferRow* p
        cdef MetaRow* m
        cdef AccountRow* dr
        cdef AccountRow* cr
        cdef u128 amount, v
        cdef uint64_t stamp
        while count < most and self.heap.size > 0 and self.heap.items[0].at <= now:
            top = self.heap.items[0]
            heap_pop(&self.heap)
            if not heap_live(&top, self.mt, <uint64_t>self.n_transfers):
                continue
            p = &self.tr[top.slot]
            m = &self.mt[top.slot]
            amount = join128(p.amount_lo, p.amount_hi)
            dr = &self.acc[m.debit_slot]
            cr = &self.acc[m.credit_slot]
            v = join128(dr.debits_pending_lo, dr.debits_pending_hi) - amount
            dr.debits_pending_lo = <uint64_t>v
            dr.debits_pending_hi = <uint64_t>(v >> 64)
            v = join128(cr.credits_pending_lo, cr.credits_pending_hi) - amount
            cr.credits_pending_lo = <uint64_t>v
            cr.credits_pending_hi = <uint64_t>(v >> 64)
            reopen(p, dr, cr)
            m.status = STATUS_EXPIRED
            stamp = now + <uint64_t>count if now <= U64_MAX - <uint64_t>count else U64_MAX
            if dr.flags & AF_HISTORY:
                self._append_history(dr, stamp)
            if cr.flags & AF_HISTORY:
                self._append_history(cr, stamp)
            slots[count] = <int64_t>top.slot
            count += 1
        return count

    # ------------------------------------------------------------------ failed ids
    def remember_failed(self, ids: np.ndarray) -> None:
        """Record transfer ids (FAILED_DTYPE rows) as failed, as a replay of the log does."""
        cdef cnp.ndarray rows = np.ascontiguousarray(np.asarray(ids, FAILED_DTYPE))
        cdef Py_ssize_t n = len(rows)
        cdef const FailedRow* r = <const FailedRow*>cnp.PyArray_DATA(rows)
        cdef Py_ssize_t i
        self._enter()
        try:
            reserve_failed(self, n)
            for i in range(n):
                self._add_failed(r[i].id_lo, r[i].id_hi)
        finally:
            self.busy = False

    # ------------------------------------------------------------------ snapshot / digest
    def digest(self) -> bytes:
        """SHA-256 of the whole state: equal digests mean equal books, row for row."""
        h = hashlib.sha256()
        for part in (self.accounts, self.transfers, self.meta, self.history, self.failed):
            h.update(memoryview(np.ascontiguousarray(part)).cast("B"))
        return h.digest()

    def snapshot(self) -> bytes:
        return pack_snapshot(self.accounts, self.transfers, self.meta, self.history, self.failed)

    def restore(self, data, give_back=None) -> None:
        """Replace the state with a snapshot's; raises ValueError if it is not one.

        `data`: its bytes or any buffer of them, copied once into the rows (`copy_rows`).
        Everything that can fail (parsing, allocation) happens before the state is
        touched, so a failed restore leaves the engine as it was.
        """
        if self.busy:
            raise RuntimeError("CyEngine is running a batch in another thread")
        n_accounts, n_transfers, n_history, parts, failed = parse_snapshot_all(data)
        cdef Py_ssize_t k, n
        cdef Py_ssize_t n_failed = 0
        cdef IdIndex aidx, tidx, fidx
        cdef _Rows fail_rows
        cdef FailedRow* fail
        cdef const FailedRow* given
        cdef HeapEntry* heap_items
        cdef uint64_t heap_cap
        sizes = (n_accounts, n_transfers, n_transfers, n_history)
        reserves = (RESERVE_ACCOUNT_ROWS, RESERVE_ROWS, RESERVE_ROWS, RESERVE_ROWS)
        dtypes = (ACCOUNT_DTYPE, TRANSFER_DTYPE, META_DTYPE, HISTORY_DTYPE)
        blocks, arrays = [], []
        at = len(data) - sum(p.nbytes for p in parts) - failed.nbytes  # the header's size
        for part, n, reserve_rows, dtype in zip(parts, sizes, reserves, dtypes):
            block = _Rows(max(16, n) * dtype.itemsize, max(reserve_rows, 2 * n) * dtype.itemsize)
            at = copy_rows(block, np.ascontiguousarray(part), n * dtype.itemsize, give_back, at)
            blocks.append(block)
            arrays.append(np.frombuffer(block, dtype, (<_Rows>block).nbytes // dtype.itemsize))
        meta = arrays[2][:n_transfers]  # the copy: `data` may have been given back
        n_expiring = int(np.count_nonzero((meta["status"] == STATUS_PENDING) & (meta["expires_at"] != 0)))
        heap_cap = max(16, n_expiring)
        heap_items = <HeapEntry*>malloc(heap_cap * sizeof(HeapEntry))
        if heap_items == NULL:
            raise MemoryError()
        try:
            idx_init(&aidx, 2 * n_accounts)
        except MemoryError:
            free(heap_items)
            raise
        try:
            idx_init(&tidx, 2 * n_transfers)
        except MemoryError:
            free(heap_items)
            idx_free(&aidx)
            raise
        try:
            idx_init(&fidx, 2 * len(failed))
        except MemoryError:
            free(heap_items)
            idx_free(&aidx)
            idx_free(&tidx)
            raise
        # The failed ids go into their own block and index now (nothing else refers to them).
        fail_rows = _Rows(max(16, len(failed)) * sizeof(FailedRow),
                          max(RESERVE_ACCOUNT_ROWS, 2 * len(failed)) * sizeof(FailedRow))
        fail = <FailedRow*>fail_rows.data
        fidx.keys = <const uint64_t*>fail
        failed = np.ascontiguousarray(failed)
        given = <const FailedRow*>cnp.PyArray_DATA(<cnp.ndarray>failed)
        for k in range(len(failed)):
            if idx_find_hs(&fidx, mix128(given[k].id_lo, given[k].id_hi), given[k].id_lo, given[k].id_hi,
                           FAILED_SHIFT) < 0:
                fail[n_failed] = given[k]
                idx_put(&fidx, given[k].id_lo, given[k].id_hi, <uint64_t>n_failed)
                n_failed += 1

        # Commit: nothing below raises.
        idx_free(&self.aidx)
        idx_free(&self.tidx)
        idx_free(&self.fidx)
        free(self.heap.items)
        self.aidx = aidx
        self.tidx = tidx
        self.fidx = fidx
        self._fail_rows = fail_rows
        self._failed = np.frombuffer(fail_rows, FAILED_DTYPE, fail_rows.nbytes // sizeof(FailedRow))
        self.fail = fail
        self.n_failed = n_failed
        self._last_expired = np.zeros(0, np.int64)
        self.heap.items = heap_items
        self.heap.cap = heap_cap
        self.heap.size = 0
        self._acc_rows, self._tr_rows, self._mt_rows, self._hist_rows = blocks
        self._accounts, self._transfers, self._meta, self._history = arrays
        self.acc = <AccountRow*>self._acc_rows.data
        self.tr = <TransferRow*>self._tr_rows.data
        self.mt = <MetaRow*>self._mt_rows.data
        self.hist = <HistoryRow*>self._hist_rows.data
        self.aidx.keys = <const uint64_t*>self.acc
        self.tidx.keys = <const uint64_t*>self.tr
        self.n_accounts = n_accounts
        self.n_transfers = n_transfers
        self.n_history = n_history
        self.in_scope = False
        # Index tables were sized for a load of 1/2, so these puts never grow them.
        for k in range(n_accounts):
            # The twin's dict keeps the last slot of a duplicated id; so does this.
            idx_remove(&self.aidx, self.acc[k].id_lo, self.acc[k].id_hi)
            idx_put(&self.aidx, self.acc[k].id_lo, self.acc[k].id_hi, <uint64_t>k)
        for k in range(n_transfers):
            idx_remove(&self.tidx, self.tr[k].id_lo, self.tr[k].id_hi)
            idx_put(&self.tidx, self.tr[k].id_lo, self.tr[k].id_hi, <uint64_t>k)
        for k in range(n_transfers):
            if self.mt[k].status == STATUS_PENDING and self.mt[k].expires_at != 0:
                heap_push(&self.heap, self.mt[k].expires_at, <uint64_t>k)


include "engine_capacity.pxi"
include "engine_transfers.pxi"


# Last: the cpdef enum names exist in the module only once it is fully initialised.
_check_constants()

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


# --------------------------------------------------------------------------- row structs
# Field by field as in cext/layout.py; natural C alignment gives exactly the dtype offsets
# (verified against the dtypes at import, below).

from cext.rows cimport AccountRow, FailedRow, HistoryRow, MetaRow, TransferRow


def _check_layout() -> None:
    """Refuse to load if a struct drifted from its dtype: a silent mismatch corrupts rows."""
    cdef AccountRow a
    cdef TransferRow t
    cdef MetaRow m
    cdef HistoryRow h
    checks = [
        (ACCOUNT_DTYPE, sizeof(AccountRow), {
            "id_lo": <size_t>&a.id_lo - <size_t>&a,
            "debits_pending_lo": <size_t>&a.debits_pending_lo - <size_t>&a,
            "credits_posted_hi": <size_t>&a.credits_posted_hi - <size_t>&a,
            "user_data_128_lo": <size_t>&a.user_data_128_lo - <size_t>&a,
            "user_data_64": <size_t>&a.user_data_64 - <size_t>&a,
            "user_data_32": <size_t>&a.user_data_32 - <size_t>&a,
            "reserved": <size_t>&a.reserved - <size_t>&a,
            "ledger": <size_t>&a.ledger - <size_t>&a,
            "code": <size_t>&a.code - <size_t>&a,
            "flags": <size_t>&a.flags - <size_t>&a,
            "timestamp": <size_t>&a.timestamp - <size_t>&a,
        }),
        (TRANSFER_DTYPE, sizeof(TransferRow), {
            "id_lo": <size_t>&t.id_lo - <size_t>&t,
            "amount_lo": <size_t>&t.amount_lo - <size_t>&t,
            "pending_id_lo": <size_t>&t.pending_id_lo - <size_t>&t,
            "user_data_128_hi": <size_t>&t.user_data_128_hi - <size_t>&t,
            "user_data_64": <size_t>&t.user_data_64 - <size_t>&t,
            "user_data_32": <size_t>&t.user_data_32 - <size_t>&t,
            "timeout": <size_t>&t.timeout - <size_t>&t,
            "ledger": <size_t>&t.ledger - <size_t>&t,
            "code": <size_t>&t.code - <size_t>&t,
            "flags": <size_t>&t.flags - <size_t>&t,
            "timestamp": <size_t>&t.timestamp - <size_t>&t,
        }),
        (META_DTYPE, sizeof(MetaRow), {
            "debit_slot": <size_t>&m.debit_slot - <size_t>&m,
            "credit_slot": <size_t>&m.credit_slot - <size_t>&m,
            "expires_at": <size_t>&m.expires_at - <size_t>&m,
            "status": <size_t>&m.status - <size_t>&m,
            "pad": <size_t>&m.pad[0] - <size_t>&m,
        }),
        (HISTORY_DTYPE, sizeof(HistoryRow), {
            "account_id_lo": <size_t>&h.account_id_lo - <size_t>&h,
            "timestamp": <size_t>&h.timestamp - <size_t>&h,
            "debits_pending_lo": <size_t>&h.debits_pending_lo - <size_t>&h,
            "credits_posted_hi": <size_t>&h.credits_posted_hi - <size_t>&h,
        }),
    ]
    for dtype, size, offsets in checks:
        if dtype.itemsize != size:
            raise ImportError(f"cext._engine: struct size {size} != dtype size {dtype.itemsize}")
        for name, offset in offsets.items():
            if dtype.fields[name][1] != offset:
                raise ImportError(f"cext._engine: field {name} at {offset}, dtype says {dtype.fields[name][1]}")


_check_layout()


# --------------------------------------------------------------------------- constants
# Mirrors of ledger.types; checked against it at import so the two cannot drift.

cdef enum:
    STATUS_NONE = 0
    STATUS_PENDING = 1
    STATUS_POSTED = 2
    STATUS_VOIDED = 3
    STATUS_EXPIRED = 4

cdef enum:
    AF_LINKED = 1
    AF_DEBITS_MUST_NOT_EXCEED_CREDITS = 2
    AF_CREDITS_MUST_NOT_EXCEED_DEBITS = 4
    AF_HISTORY = 8
    AF_IMPORTED = 16
    AF_CLOSED = 32
    AF_KNOWN = 1 | 2 | 4 | 8 | 16 | 32

cdef enum:
    TF_LINKED = 1
    TF_PENDING = 2
    TF_POST = 4
    TF_VOID = 8
    TF_BALANCING_DEBIT = 16
    TF_BALANCING_CREDIT = 32
    TF_CLOSING_DEBIT = 64
    TF_CLOSING_CREDIT = 128
    TF_IMPORTED = 256
    TF_KNOWN = 511

# Result codes shared by both operations. (cpdef: importable by name, so that a test can
# compare every one with ledger.types.)
cpdef enum:
    R_OK = 0
    R_LINKED_EVENT_FAILED = 1
    R_LINKED_EVENT_CHAIN_OPEN = 2

# TigerBeetle's numeric values (ledger.types lists them in order of precedence).
cpdef enum:
    A_TIMESTAMP_MUST_BE_ZERO = 3
    A_RESERVED_FIELD = 4
    A_RESERVED_FLAG = 5
    A_ID_MUST_NOT_BE_ZERO = 6
    A_ID_MUST_NOT_BE_INT_MAX = 7
    A_FLAGS_ARE_MUTUALLY_EXCLUSIVE = 8
    A_DEBITS_PENDING_MUST_BE_ZERO = 9
    A_DEBITS_POSTED_MUST_BE_ZERO = 10
    A_CREDITS_PENDING_MUST_BE_ZERO = 11
    A_CREDITS_POSTED_MUST_BE_ZERO = 12
    A_LEDGER_MUST_NOT_BE_ZERO = 13
    A_CODE_MUST_NOT_BE_ZERO = 14
    A_EXISTS_WITH_DIFFERENT_FLAGS = 15
    A_EXISTS_WITH_DIFFERENT_USER_DATA_128 = 16
    A_EXISTS_WITH_DIFFERENT_USER_DATA_64 = 17
    A_EXISTS_WITH_DIFFERENT_USER_DATA_32 = 18
    A_EXISTS_WITH_DIFFERENT_LEDGER = 19
    A_EXISTS_WITH_DIFFERENT_CODE = 20
    A_EXISTS = 21
    A_IMPORTED_EVENT_EXPECTED = 22
    A_IMPORTED_EVENT_NOT_EXPECTED = 23
    A_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE = 24
    A_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE = 25
    A_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS = 26

cpdef enum:
    T_TIMESTAMP_MUST_BE_ZERO = 3
    T_RESERVED_FLAG = 4
    T_ID_MUST_NOT_BE_ZERO = 5
    T_ID_MUST_NOT_BE_INT_MAX = 6
    T_FLAGS_ARE_MUTUALLY_EXCLUSIVE = 7
    T_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 8
    T_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 9
    T_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 10
    T_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 11
    T_ACCOUNTS_MUST_BE_DIFFERENT = 12
    T_PENDING_ID_MUST_BE_ZERO = 13
    T_PENDING_ID_MUST_NOT_BE_ZERO = 14
    T_PENDING_ID_MUST_NOT_BE_INT_MAX = 15
    T_PENDING_ID_MUST_BE_DIFFERENT = 16
    T_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 17
    T_LEDGER_MUST_NOT_BE_ZERO = 19
    T_CODE_MUST_NOT_BE_ZERO = 20
    T_DEBIT_ACCOUNT_NOT_FOUND = 21
    T_CREDIT_ACCOUNT_NOT_FOUND = 22
    T_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 23
    T_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 24
    T_PENDING_TRANSFER_NOT_FOUND = 25
    T_PENDING_TRANSFER_NOT_PENDING = 26
    T_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 27
    T_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 28
    T_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 29
    T_PENDING_TRANSFER_HAS_DIFFERENT_CODE = 30
    T_EXCEEDS_PENDING_TRANSFER_AMOUNT = 31
    T_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 32
    T_PENDING_TRANSFER_ALREADY_POSTED = 33
    T_PENDING_TRANSFER_ALREADY_VOIDED = 34
    T_PENDING_TRANSFER_EXPIRED = 35
    T_EXISTS_WITH_DIFFERENT_FLAGS = 36
    T_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 37
    T_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 38
    T_EXISTS_WITH_DIFFERENT_AMOUNT = 39
    T_EXISTS_WITH_DIFFERENT_PENDING_ID = 40
    T_EXISTS_WITH_DIFFERENT_USER_DATA_128 = 41
    T_EXISTS_WITH_DIFFERENT_USER_DATA_64 = 42
    T_EXISTS_WITH_DIFFERENT_USER_DATA_32 = 43
    T_EXISTS_WITH_DIFFERENT_TIMEOUT = 44
    T_EXISTS_WITH_DIFFERENT_CODE = 45
    T_EXISTS = 46
    T_OVERFLOWS_DEBITS_PENDING = 47
    T_OVERFLOWS_CREDITS_PENDING = 48
    T_OVERFLOWS_DEBITS_POSTED = 49
    T_OVERFLOWS_CREDITS_POSTED = 50
    T_OVERFLOWS_DEBITS = 51
    T_OVERFLOWS_CREDITS = 52
    T_OVERFLOWS_TIMEOUT = 53
    T_EXCEEDS_CREDITS = 54
    T_EXCEEDS_DEBITS = 55
    T_IMPORTED_EVENT_EXPECTED = 56
    T_IMPORTED_EVENT_NOT_EXPECTED = 57
    T_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE = 58
    T_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE = 59
    T_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS = 60
    T_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT = 61
    T_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT = 62
    T_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO = 63
    T_CLOSING_TRANSFER_MUST_BE_PENDING = 64
    T_DEBIT_ACCOUNT_ALREADY_CLOSED = 65
    T_CREDIT_ACCOUNT_ALREADY_CLOSED = 66
    T_EXISTS_WITH_DIFFERENT_LEDGER = 67
    T_ID_ALREADY_FAILED = 68


def _check_constants() -> None:
    """Refuse to load if a code drifted from ledger.types (tests compare every name)."""
    if AF_KNOWN != _PY_ACCOUNT_FLAGS_KNOWN or TF_KNOWN != _PY_TRANSFER_FLAGS_KNOWN:
        raise ImportError("cext._engine: flag masks differ from ledger.types")
    A, T = CreateAccountResult, CreateTransferResult
    pairs = [
        (A_TIMESTAMP_MUST_BE_ZERO, A.TIMESTAMP_MUST_BE_ZERO), (A_EXISTS, A.EXISTS),
        (A_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS),
        (A_CODE_MUST_NOT_BE_ZERO, A.CODE_MUST_NOT_BE_ZERO), (T_EXISTS, T.EXISTS),
        (T_EXISTS_WITH_DIFFERENT_LEDGER, T.EXISTS_WITH_DIFFERENT_LEDGER), (T_ID_ALREADY_FAILED, T.ID_ALREADY_FAILED),
        (T_EXCEEDS_DEBITS, T.EXCEEDS_DEBITS), (T_PENDING_TRANSFER_EXPIRED, T.PENDING_TRANSFER_EXPIRED),
        (T_CLOSING_TRANSFER_MUST_BE_PENDING, T.CLOSING_TRANSFER_MUST_BE_PENDING),
        (T_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO, T.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO),
    ]
    if any(mine != int(theirs) for mine, theirs in pairs) or len(A) != 27 or len(T) != 69:
        raise ImportError("cext._engine: result codes differ from ledger.types")
    if TIMESTAMP_MAX != _PY_TIMESTAMP_MAX:
        raise ImportError("cext._engine: TIMESTAMP_MAX differs from ledger.types")
    if {int(c) for c in T if is_transient(int(c))} != {int(c) for c in _PY_TRANSIENT}:
        raise ImportError("cext._engine: transient results differ from ledger.types")


cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFFULL
cdef uint64_t TIMESTAMP_MAX = 0x7FFFFFFFFFFFFFFFULL
cdef uint64_t NS_PER_S = 1000000000ULL


cdef inline bint is_transient(uint32_t result) noexcept nogil:
    """TigerBeetle's transient results: the id can never be used again (ID_ALREADY_FAILED)."""
    return (
        result == T_DEBIT_ACCOUNT_NOT_FOUND or result == T_CREDIT_ACCOUNT_NOT_FOUND
        or result == T_PENDING_TRANSFER_NOT_FOUND or result == T_EXCEEDS_CREDITS
        or result == T_EXCEEDS_DEBITS or result == T_DEBIT_ACCOUNT_ALREADY_CLOSED
        or result == T_CREDIT_ACCOUNT_ALREADY_CLOSED
    )





cdef inline u128 join128(uint64_t lo, uint64_t hi) noexcept nogil:
    return ((<u128>hi) << 64) | <u128>lo


cdef inline u128 u128_max() noexcept nogil:
    return ~(<u128>0)


cdef inline bint is_max(uint64_t lo, uint64_t hi) noexcept nogil:
    return lo == U64_MAX and hi == U64_MAX


# --------------------------------------------------------------------------- row copies, prefetch

cdef extern from *:
    """
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* Copy a 128-byte row to its new slot. Transfer rows are appended and not read back
       soon, so where the target is 64-byte aligned they bypass the cache with streaming
       stores: no read for ownership of the fresh lines, no eviction of the account rows
       the loop keeps reusing (measured no slower than plain stores on this machine). */
    static inline void gl_append_row(void *dst, const void *src) {
    #if defined(__SSE2__)
        if (((uintptr_t)dst & 63) == 0) {
            const __m128i *s = (const __m128i *)src;
            __m128i *d = (__m128i *)dst;
            int k;
            for (k = 0; k < 8; k++) _mm_stream_si128(d + k, _mm_loadu_si128(s + k));
            return;
        }
    #endif
        memcpy(dst, src, 128);
    }
    /* A transfer row appended as given but for its amount and timestamp: the same
       streaming stores, without first copying the row to the stack (a 128-byte struct
       copy compiles to `rep movs`, which cost more than the rest of the append). */
    static inline void gl_append_transfer(void *dst, const void *src, uint64_t amount_lo,
                                          uint64_t amount_hi, uint64_t timestamp) {
    #if defined(__SSE2__)
        if (((uintptr_t)dst & 63) == 0) {
            const __m128i *s = (const __m128i *)src;
            __m128i *d = (__m128i *)dst;
            _mm_stream_si128(d + 0, _mm_loadu_si128(s + 0));
            _mm_stream_si128(d + 1, _mm_loadu_si128(s + 1));
            _mm_stream_si128(d + 2, _mm_loadu_si128(s + 2));
            _mm_stream_si128(d + 3, _mm_set_epi64x((long long)amount_hi, (long long)amount_lo));
            _mm_stream_si128(d + 4, _mm_loadu_si128(s + 4));
            _mm_stream_si128(d + 5, _mm_loadu_si128(s + 5));
            _mm_stream_si128(d + 6, _mm_loadu_si128(s + 6));
            _mm_stream_si128(d + 7, _mm_unpacklo_epi64(_mm_loadu_si128(s + 7),
                                                       _mm_cvtsi64_si128((long long)timestamp)));
            return;
        }
    #endif
        memcpy(dst, src, 128);
        memcpy((char *)dst + 48, &amount_lo, 8);
        memcpy((char *)dst + 56, &amount_hi, 8);
        memcpy((char *)dst + 120, &timestamp, 8);
    }
    /* A 128-byte row copied with vector moves (a struct assignment becomes `rep movs`). */
    static inline void gl_copy_row(void *dst, const void *src) {
        uint64_t *d = (uint64_t *)dst;
        const uint64_t *s = (const uint64_t *)src;
        int k;
        for (k = 0; k < 16; k++) d[k] = s[k];
    }
    /* Order the streaming stores of a batch before anything that follows it. */
    static inline void gl_store_fence(void) {
    #if defined(__SSE2__)
        _mm_sfence();
    #endif
    }
    #define GL_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #define GL_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1)
    """
    void append_row "gl_append_row"(void* dst, const void* src) noexcept nogil
    void append_transfer "gl_append_transfer"(
        void* dst, const void* src, uint64_t amount_lo, uint64_t amount_hi, uint64_t timestamp
    ) noexcept nogil
    void copy_row "gl_copy_row"(void* dst, const void* src) noexcept nogil
    void store_fence "gl_store_fence"() noexcept nogil
    void prefetch "GL_PREFETCH"(const void* p) noexcept nogil
    void prefetch_w "GL_PREFETCH_W"(const void* p) noexcept nogil


# --------------------------------------------------------------------------- id index
# Open addressing, linear probing, power-of-two capacity, load <= 1/2. A cell is 8 bytes:
# the low 32 bits of the id's hash (so probes rarely touch a row that is not the one, and
# a rehash never reads the rows) and slot + 1 (0 = empty). The id itself lives only in the
# row (`keys`: the account or transfer array, whose rows are 16 words with the id first,
# or the failed ids, 2 words each),
# which is read to confirm a match; for accounts that row is read next anyway. 8-byte
# cells keep the transfer index of 1M transfers at 16 MiB (on huge pages, see zalloc).

ctypedef struct IdIndex:
    uint64_t* cells
    uint64_t mask
    uint64_t count
    const uint64_t* keys  # row k's id is keys[k << shift], keys[(k << shift) + 1]; shift:
                          # ROW_SHIFT for rows, FAILED_SHIFT for failed ids (a constant per call site)
    void* block_base  # how `cells` was allocated (see zalloc)
    size_t block_len

cdef enum:
    ROW_SHIFT = 4  # 128-byte rows are 16 = 2^4 u64 words
    FAILED_SHIFT = 1  # failed ids are 2 words
    PREFETCH_DISTANCE = 8  # transfers ahead (see _run_batch); 5-16 measured alike
    HASH_RING = 32  # a power of two > 2 * PREFETCH_DISTANCE

cdef uint64_t CELL_SLOT = 0xFFFFFFFFULL


cdef inline uint32_t mix128(uint64_t lo, uint64_t hi) noexcept nogil:
    # For a fixed hi, lo -> lo ^ (hi * odd) is a bijection and so is hi -> it for a fixed lo,
    # so ids differing in one word only never collide in 64 bits; murmur3's fmix64 (also a
    # bijection) then spreads every input bit over the 32 bits kept.
    cdef uint64_t h = lo ^ (hi * 0x9E3779B97F4A7C15ULL)
    h ^= h >> 33
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 33
    return <uint32_t>h


cdef extern from *:
    """
    #include <stdlib.h>
    #include <stdint.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Zeroed memory for hash tables. Large ones are fresh anonymous mappings on
       2 MiB-aligned transparent huge pages: zero without a memset pass, and a random
       probe into a 64 MiB table does not miss the TLB each time (worth ~15% here). */
    static void *gl_zalloc(size_t bytes, void **base_out, size_t *len_out) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        const uintptr_t huge = (uintptr_t)1 << 21;
        if (bytes >= huge) {
            size_t len = bytes + huge;
            void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (base != MAP_FAILED) {
                uintptr_t start = ((uintptr_t)base + huge - 1) & ~(huge - 1);
                (void)madvise((void *)start, bytes & ~(huge - 1), MADV_HUGEPAGE);
                *base_out = base;
                *len_out = len;
                return (void *)start;
            }
        }
    #endif
        *base_out = NULL;
        *len_out = 0;
        return calloc(bytes ? bytes : 1, 1);
    }
    static void gl_zfree(void *p, void *base, size_t len) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (base != NULL) { (void)munmap(base, len); return; }
    #endif
        (void)base; (void)len;
        free(p);
    }
    """
    void* zalloc "gl_zalloc"(size_t nbytes, void** base_out, size_t* len_out) noexcept nogil
    void zfree "gl_zfree"(void* p, void* base, size_t length) noexcept nogil


cdef inline void idx_free(IdIndex* ix) noexcept nogil:
    zfree(ix.cells, ix.block_base, ix.block_len)
    ix.cells = NULL


cdef int idx_init(IdIndex* ix, uint64_t capacity) except -1:
    cdef uint64_t cap = 16
    while cap < capacity:
        cap <<= 1
    ix.cells = <uint64_t*>zalloc(cap * sizeof(uint64_t), &ix.block_base, &ix.block_len)
    if ix.cells == NULL:
        raise MemoryError()
    ix.mask = cap - 1
    ix.count = 0
    return 0


cdef inline int64_t idx_find_hs(
    const IdIndex* ix, uint32_t h, uint64_t lo, uint64_t hi, int shift
) noexcept nogil:
    """The slot of an id whose hash `h` is known, or -1, in rows of 2^shift words."""
    cdef uint64_t i = h & ix.mask
    cdef uint64_t c, s
    while True:
        c = ix.cells[i]
        if c == 0:
            return -1
        if <uint32_t>(c >> 32) == h:
            s = (c & CELL_SLOT) - 1
            if ix.keys[s << shift] == lo and ix.keys[(s << shift) + 1] == hi:
                return <int64_t>s
        i = (i + 1) & ix.mask


cdef inline int64_t idx_find_h(const IdIndex* ix, uint32_t h, uint64_t lo, uint64_t hi) noexcept nogil:
    """The slot of an id (in 128-byte rows) whose hash `h` is known, or -1."""
    return idx_find_hs(ix, h, lo, hi, ROW_SHIFT)


cdef inline int64_t idx_find(const IdIndex* ix, uint64_t lo, uint64_t hi) noexcept nogil:
    return idx_find_h(ix, mix128(lo, hi), lo, hi)


cdef inline int64_t idx_peek_h(const IdIndex* ix, uint32_t h) noexcept nogil:
    """The slot an id probably has (hash match, row not read), or -1: for prefetching only."""
    cdef uint64_t i = h & ix.mask
    cdef uint64_t c
    while True:
        c = ix.cells[i]
        if c == 0:
            return -1
        if <uint32_t>(c >> 32) == h:
            return <int64_t>((c & CELL_SLOT) - 1)
        i = (i + 1) & ix.mask


cdef inline void idx_put_hashed(IdIndex* ix, uint32_t h, uint64_t slot) noexcept nogil:
    cdef uint64_t i = h & ix.mask
    while ix.cells[i] != 0:
        i = (i + 1) & ix.mask
    ix.cells[i] = ((<uint64_t>h) << 32) | (slot + 1)
    ix.count += 1


cdef inline void idx_put(IdIndex* ix, uint64_t lo, uint64_t hi, uint64_t slot) noexcept nogil:
    """Insert an absent id; capacity was reserved before the batch."""
    idx_put_hashed(ix, mix128(lo, hi), slot)


cdef void idx_remove(IdIndex* ix, uint64_t lo, uint64_t hi) noexcept nogil:
    """Backward-shift deletion: later cells of the run move up, so no tombstones remain."""
    cdef uint64_t mask = ix.mask
    cdef uint32_t h = mix128(lo, hi)
    cdef uint64_t i = h & mask
    cdef uint64_t j, home, c, s
    while True:
        c = ix.cells[i]
        if c == 0:
            return  # absent: nothing to do
        if <uint32_t>(c >> 32) == h:
            s = (c & CELL_SLOT) - 1
            if ix.keys[s << ROW_SHIFT] == lo and ix.keys[(s << ROW_SHIFT) + 1] == hi:
                break
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        c = ix.cells[j]
        if c == 0:
            break
        home = (c >> 32) & mask
        # The cell at j may fill the hole at i only if its home is not in (i, j].
        if ((j - home) & mask) >= ((j - i) & mask):
            ix.cells[i] = c
            i = j
    ix.cells[i] = 0
    ix.count -= 1


cdef int idx_reserve(IdIndex* ix, uint64_t total) except -1:
    """Grow (and rehash) so that `total` ids keep the load at or under one half."""
    cdef uint64_t cap = ix.mask + 1
    cdef uint64_t new_cap = cap
    cdef uint64_t* old = ix.cells
    cdef void* old_base = ix.block_base
    cdef size_t old_len = ix.block_len
    cdef uint64_t k, c, i, new_mask
    while total * 2 > new_cap:
        new_cap <<= 1
    if new_cap == cap:
        return 0
    if new_cap > (1ULL << 32):
        raise MemoryError("id index is full (2^31 ids)")
    ix.cells = <uint64_t*>zalloc(new_cap * sizeof(uint64_t), &ix.block_base, &ix.block_len)
    if ix.cells == NULL:
        ix.cells = old
        ix.block_base = old_base
        ix.block_len = old_len
        raise MemoryError()
    new_mask = new_cap - 1
    ix.mask = new_mask
    with nogil:
        for k in range(cap):
            c = old[k]
            if c != 0:
                i = (c >> 32) & new_mask
                while ix.cells[i] != 0:
                    i = (i + 1) & new_mask
                ix.cells[i] = c
    zfree(old, old_base, old_len)
    return 0


# --------------------------------------------------------------------------- expiry heap
# Min-heap on (expires_at, slot) of pending transfers with a timeout. Entries go stale when
# the pending is posted/voided or its chain rolls back; they are checked against the meta
# row when popped, and dropped in bulk when the heap would otherwise have to grow.

ctypedef struct HeapEntry:
    uint64_t at
    uint64_t slot

ctypedef struct Heap:
    HeapEntry* items
    uint64_t size
    uint64_t cap


cdef inline bint heap_less(const HeapEntry* a, const HeapEntry* b) noexcept nogil:
    return a.at < b.at or (a.at == b.at and a.slot < b.slot)


cdef inline void heap_sift_down(Heap* h, uint64_t i) noexcept nogil:
    cdef uint64_t child
    cdef HeapEntry tmp
    while True:
        child = 2 * i + 1
        if child >= h.size:
            return
        if child + 1 < h.size and heap_less(&h.items[child + 1], &h.items[child]):
            child += 1
        if not heap_less(&h.items[child], &h.items[i]):
            return
        tmp = h.items[i]
        h.items[i] = h.items[child]
        h.items[child] = tmp
        i = child


cdef inline void heap_push(Heap* h, uint64_t at, uint64_t slot) noexcept nogil:
    """Capacity was reserved before the batch."""
    cdef uint64_t i = h.size
    cdef uint64_t parent
    cdef HeapEntry e
    e.at = at
    e.slot = slot
    h.size += 1
    while i > 0:
        parent = (i - 1) // 2
        if not heap_less(&e, &h.items[parent]):
            break
        h.items[i] = h.items[parent]
        i = parent
    h.items[i] = e


cdef inline void heap_pop(Heap* h) noexcept nogil:
    h.size -= 1
    if h.size > 0:
        h.items[0] = h.items[h.size]
        heap_sift_down(h, 0)


cdef inline bint heap_live(const HeapEntry* e, const MetaRow* meta, uint64_t n_transfers) noexcept nogil:
    return (
        e.slot < n_transfers
        and meta[e.slot].status == STATUS_PENDING
        and meta[e.slot].expires_at == e.at
    )


# --------------------------------------------------------------------------- rollback journal

ctypedef struct SavedBalances:
    uint64_t slot
    uint64_t words[8]  # the 8 balance words of an account row, in row order
    uint64_t flags  # and its flags (a closing transfer sets CLOSED)

ctypedef struct SavedStatus:
    uint64_t slot
    uint64_t status


# --------------------------------------------------------------------------- pure checks

cdef inline uint32_t admit(
    uint16_t flags, uint64_t row_timestamp, uint64_t now, bint batch_imported, uint16_t imported_flag,
    bint client, bint transfers,
) noexcept nogil:
    """The batch-level checks before an event's own (TigerBeetle's `execute_create`)."""
    cdef bint imported = (flags & imported_flag) != 0
    if imported != batch_imported:
        if imported:
            return T_IMPORTED_EVENT_NOT_EXPECTED if transfers else A_IMPORTED_EVENT_NOT_EXPECTED
        return T_IMPORTED_EVENT_EXPECTED if transfers else A_IMPORTED_EVENT_EXPECTED
    if imported:
        if row_timestamp == 0 or row_timestamp > TIMESTAMP_MAX:
            return T_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE if transfers else A_IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE
        if row_timestamp >= now:
            return (T_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE if transfers
                    else A_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE)
    elif client and row_timestamp != 0:
        return T_TIMESTAMP_MUST_BE_ZERO if transfers else A_TIMESTAMP_MUST_BE_ZERO
    return R_OK


cdef inline uint32_t account_exists(const AccountRow* a, const AccountRow* e) noexcept nogil:
    if a.flags != e.flags:
        return A_EXISTS_WITH_DIFFERENT_FLAGS
    if a.user_data_128_lo != e.user_data_128_lo or a.user_data_128_hi != e.user_data_128_hi:
        return A_EXISTS_WITH_DIFFERENT_USER_DATA_128
    if a.user_data_64 != e.user_data_64:
        return A_EXISTS_WITH_DIFFERENT_USER_DATA_64
    if a.user_data_32 != e.user_data_32:
        return A_EXISTS_WITH_DIFFERENT_USER_DATA_32
    if a.ledger != e.ledger:
        return A_EXISTS_WITH_DIFFERENT_LEDGER
    if a.code != e.code:
        return A_EXISTS_WITH_DIFFERENT_CODE
    return A_EXISTS


cdef inline uint32_t transfer_exists(
    const TransferRow* t, const TransferRow* e, const TransferRow* p
) noexcept nogil:
    """TigerBeetle's idempotency check: the first field that differs, in its order. `p` is
    the pending transfer a post/void `e` resolved (NULL if this replica lacks it)."""
    cdef u128 amount, stored
    cdef bint everything
    if t.flags != e.flags:
        return T_EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id_lo != e.pending_id_lo or t.pending_id_hi != e.pending_id_hi:
        return T_EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.timeout != e.timeout:
        return T_EXISTS_WITH_DIFFERENT_TIMEOUT
    amount = join128(t.amount_lo, t.amount_hi)
    stored = join128(e.amount_lo, e.amount_hi)
    if t.flags & (TF_POST | TF_VOID):
        # A resent post/void: its zero fields stand for what the pending had.
        if ((t.debit_account_id_lo != 0 or t.debit_account_id_hi != 0)
                and (t.debit_account_id_lo != e.debit_account_id_lo
                     or t.debit_account_id_hi != e.debit_account_id_hi)):
            return T_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if ((t.credit_account_id_lo != 0 or t.credit_account_id_hi != 0)
                and (t.credit_account_id_lo != e.credit_account_id_lo
                     or t.credit_account_id_hi != e.credit_account_id_hi)):
            return T_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        everything = amount == u128_max() if (t.flags & TF_POST) else amount == 0
        if everything:
            if p != NULL and stored != join128(p.amount_lo, p.amount_hi):
                return T_EXISTS_WITH_DIFFERENT_AMOUNT
        elif amount != stored:
            return T_EXISTS_WITH_DIFFERENT_AMOUNT
        if t.user_data_128_lo != 0 or t.user_data_128_hi != 0:
            if t.user_data_128_lo != e.user_data_128_lo or t.user_data_128_hi != e.user_data_128_hi:
                return T_EXISTS_WITH_DIFFERENT_USER_DATA_128
        elif p != NULL and (e.user_data_128_lo != p.user_data_128_lo or e.user_data_128_hi != p.user_data_128_hi):
            return T_EXISTS_WITH_DIFFERENT_USER_DATA_128
        if t.user_data_64 != 0:
            if t.user_data_64 != e.user_data_64:
                return T_EXISTS_WITH_DIFFERENT_USER_DATA_64
        elif p != NULL and e.user_data_64 != p.user_data_64:
            return T_EXISTS_WITH_DIFFERENT_USER_DATA_64
        if t.user_data_32 != 0:
            if t.user_data_32 != e.user_data_32:
                return T_EXISTS_WITH_DIFFERENT_USER_DATA_32
        elif p != NULL and e.user_data_32 != p.user_data_32:
            return T_EXISTS_WITH_DIFFERENT_USER_DATA_32
        if t.ledger != 0 and t.ledger != e.ledger:
            return T_EXISTS_WITH_DIFFERENT_LEDGER
        if t.code != 0 and t.code != e.code:
            return T_EXISTS_WITH_DIFFERENT_CODE
        return T_EXISTS
    if t.debit_account_id_lo != e.debit_account_id_lo or t.debit_account_id_hi != e.debit_account_id_hi:
        return T_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id_lo != e.credit_account_id_lo or t.credit_account_id_hi != e.credit_account_id_hi:
        return T_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if t.flags & (TF_BALANCING_DEBIT | TF_BALANCING_CREDIT):
        # A balancing amount is an upper bound; the stored one is what was moved.
        if amount < stored:
            return T_EXISTS_WITH_DIFFERENT_AMOUNT
    elif amount != stored:
        return T_EXISTS_WITH_DIFFERENT_AMOUNT
    if t.user_data_128_lo != e.user_data_128_lo or t.user_data_128_hi != e.user_data_128_hi:
        return T_EXISTS_WITH_DIFFERENT_USER_DATA_128
    if t.user_data_64 != e.user_data_64:
        return T_EXISTS_WITH_DIFFERENT_USER_DATA_64
    if t.user_data_32 != e.user_data_32:
        return T_EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger != e.ledger:
        return T_EXISTS_WITH_DIFFERENT_LEDGER
    if t.code != e.code:
        return T_EXISTS_WITH_DIFFERENT_CODE
    return T_EXISTS


cdef inline bint has_timestamp(const uint64_t* rows, Py_ssize_t n, uint64_t ts) noexcept nogil:
    """Whether one of `n` 128-byte rows in timestamp order (word 15) carries `ts`."""
    cdef Py_ssize_t lo = 0
    cdef Py_ssize_t hi = n
    cdef Py_ssize_t mid
    cdef uint64_t v
    while lo < hi:
        mid = (lo + hi) >> 1
        v = rows[(mid << ROW_SHIFT) + 15]
        if v < ts:
            lo = mid + 1
        elif v > ts:
            hi = mid
        else:
            return True
    return False


cdef inline void reopen(const TransferRow* p, AccountRow* dr, AccountRow* cr) noexcept nogil:
    """Voiding or expiring a closing transfer re-opens the accounts it closed."""
    if p.flags & TF_CLOSING_DEBIT:
        dr.flags &= ~AF_CLOSED
    if p.flags & TF_CLOSING_CREDIT:
        cr.flags &= ~AF_CLOSED


# --------------------------------------------------------------------------- row storage

cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Reserve `reserve` bytes of address space: no memory until a page is first touched
       (then zero-filled), page-aligned. Returns it, or NULL where this is not available
       (then: calloc). No transparent huge pages here, deliberately: rows are appended in
       order, so small pages cost few TLB misses, while huge pages made a fresh process
       2-3x slower on this VM (each 2 MiB fault compacts and zeroes at once): measured
       ~6M/s cold and warm without, 2-3.5M/s cold and 7.5M/s warm with. */
    static char *gl_map_rows(size_t reserve, void **base_out, size_t *len_out) {
    #if defined(__linux__) && defined(MAP_NORESERVE)
        void *base = mmap(NULL, reserve, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return NULL;
        *base_out = base;
        *len_out = reserve;
        return (char *)base;
    #else
        (void)reserve; (void)base_out; (void)len_out;
        return NULL;
    #endif
    }
    static void gl_unmap_rows(void *base, size_t len) {
    #if defined(__linux__) && defined(MAP_NORESERVE)
        (void)munmap(base, len);
    #else
        (void)base; (void)len;
    #endif
    }
    """
    char* map_rows "gl_map_rows"(size_t reserve, void** base_out, size_t* len_out) noexcept nogil
    void unmap_rows "gl_unmap_rows"(void* base, size_t length) noexcept nogil


@cython.final
cdef class _Rows:
    """The memory under one row array; numpy sees `nbytes` of it through the buffer protocol.

    It is a large reservation of address space, so growing is a change of `nbytes`: no
    copy, no move, and views handed out earlier stay valid (over the rows they covered).
    On a VM where touching fresh memory is the expensive part, copying (or realloc's
    remapping of huge pages) cost 30-300 ms per doubling at 1M transfers; now the only
    cost is the first touch of each new page. Past the
    reservation (or without mmap) a larger block is allocated and the rows copied; views
    of the old block then keep it, as the twin's views keep its old arrays.
    """

    cdef char* data
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t reserved
    cdef void* map_base
    cdef size_t map_len

    def __cinit__(self, Py_ssize_t nbytes, Py_ssize_t reserve) -> None:
        if reserve < nbytes:
            reserve = nbytes
        self.data = map_rows(<size_t>reserve, &self.map_base, &self.map_len)
        if self.data != NULL:
            self.reserved = reserve
        else:
            self.map_base = NULL
            self.data = <char*>calloc(nbytes if nbytes > 0 else 1, 1)
            if self.data == NULL:
                raise MemoryError()
            self.reserved = nbytes
        self.nbytes = nbytes

    def __dealloc__(self) -> None:
        if self.map_base != NULL:
            unmap_rows(self.map_base, self.map_len)
        else:
            free(self.data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.nbytes, 0, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass


# Rows of address space reserved per block: 64M transfers (8 GiB of transfer rows, 1.5 GiB
# of meta), 16M accounts; costless until touched, but not unlimited (mappings count
# against vm.max_map_count and RLIMIT_AS, and a process may hold many engines). A ledger
# that outgrows its reservation moves to one twice its size (one copy).
cdef Py_ssize_t RESERVE_ROWS = 1 << 26
cdef Py_ssize_t RESERVE_ACCOUNT_ROWS = 1 << 24


def _set_reservation(rows: int, account_rows: int) -> tuple[int, int]:
    """For tests: the reservation of engines created from now on; returns the old one."""
    global RESERVE_ROWS, RESERVE_ACCOUNT_ROWS
    old = (RESERVE_ROWS, RESERVE_ACCOUNT_ROWS)
    RESERVE_ROWS, RESERVE_ACCOUNT_ROWS = rows, account_rows
    return old


cdef _Rows _rows_grown(_Rows rows, Py_ssize_t keep, Py_ssize_t nbytes):
    """`rows` holding `nbytes` (in place if reserved), else a new block with `keep` copied."""
    cdef _Rows grown
    if nbytes <= rows.reserved:
        rows.nbytes = nbytes
        return rows
    grown = _Rows(nbytes, 2 * nbytes)
    memcpy(grown.data, rows.data, keep)
    return grown


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

    cdef int64_t _slot(self, IdIndex* ix, object id_, int shift=ROW_SHIFT) except? -2:
        cdef object v = operator.index(id_)  # numpy integers too, as dict lookups allow
        cdef uint64_t lo, hi
        if v <= 0 or v >> 128:
            return -1
        lo, hi = v & 0xFFFFFFFFFFFFFFFF, v >> 64
        return idx_find_hs(ix, mix128(lo, hi), lo, hi, shift)

    # ------------------------------------------------------------------ capacity
    cdef Py_ssize_t _new_capacity(self, Py_ssize_t cap, Py_ssize_t need) noexcept:
        return need if need > 2 * cap else 2 * cap

    # Each block is grown and re-installed on its own, and its capacity is read from its
    # installed array: if anything raises half-way (MemoryError), every pointer and array
    # still matches its block, and the next batch simply grows what is still short.

    cdef _reserve_accounts(self, Py_ssize_t extra):
        cdef Py_ssize_t cap = len(self._accounts)
        cdef Py_ssize_t need = self.n_accounts + extra
        if need > cap:
            self._acc_rows = _rows_grown(
                self._acc_rows,
                self.n_accounts * sizeof(AccountRow), self._new_capacity(cap, need) * sizeof(AccountRow),
            )
            self._install(True, False, False, False)
        idx_reserve(&self.aidx, self.aidx.count + extra)

    cdef _reserve_transfers(self, Py_ssize_t extra):
        cdef Py_ssize_t cap = len(self._transfers)
        cdef Py_ssize_t need = self.n_transfers + extra
        if need > cap:
            self._tr_rows = _rows_grown(
                self._tr_rows,
                self.n_transfers * sizeof(TransferRow), self._new_capacity(cap, need) * sizeof(TransferRow),
            )
            self._install(False, True, False, False)
        cap = len(self._meta)
        if need > cap:
            self._mt_rows = _rows_grown(
                self._mt_rows,
                self.n_transfers * sizeof(MetaRow), self._new_capacity(cap, need) * sizeof(MetaRow),
            )
            self._install(False, False, True, False)
        self._reserve_history(2 * extra)
        idx_reserve(&self.tidx, self.tidx.count + extra)
        self._reserve_heap(extra)

    cdef _reserve_failed(self, Py_ssize_t extra):
        cdef Py_ssize_t cap = len(self._failed)
        cdef Py_ssize_t need = self.n_failed + extra
        if need > cap:
            self._fail_rows = _rows_grown(
                self._fail_rows,
                self.n_failed * sizeof(FailedRow), self._new_capacity(cap, need) * sizeof(FailedRow),
            )
            self._install_failed()
        idx_reserve(&self.fidx, self.fidx.count + extra)

    cdef _reserve_history(self, Py_ssize_t extra):
        cdef Py_ssize_t cap = len(self._history)
        cdef Py_ssize_t need = self.n_history + extra
        if need > cap:
            self._hist_rows = _rows_grown(
                self._hist_rows,
                self.n_history * sizeof(HistoryRow), self._new_capacity(cap, need) * sizeof(HistoryRow),
            )
            self._install(False, False, False, True)

    cdef _reserve_heap(self, Py_ssize_t extra):
        cdef uint64_t k, kept
        cdef uint64_t new_cap
        cdef HeapEntry* items
        if self.heap.size + <uint64_t>extra <= self.heap.cap:
            return
        # Drop stale entries first: the heap grows only if the live ones need it.
        kept = 0
        for k in range(self.heap.size):
            if heap_live(&self.heap.items[k], self.mt, <uint64_t>self.n_transfers):
                self.heap.items[kept] = self.heap.items[k]
                kept += 1
        self.heap.size = kept
        if kept > 1:
            k = kept // 2
            while k > 0:
                k -= 1
                heap_sift_down(&self.heap, k)
        if kept + <uint64_t>extra <= self.heap.cap:
            return
        new_cap = self.heap.cap * 2
        if new_cap < kept + <uint64_t>extra:
            new_cap = kept + <uint64_t>extra
        items = <HeapEntry*>malloc(new_cap * sizeof(HeapEntry))
        if items == NULL:
            raise MemoryError()
        memcpy(items, self.heap.items, kept * sizeof(HeapEntry))
        free(self.heap.items)
        self.heap.items = items
        self.heap.cap = new_cap

    cdef _reserve_journal(self, Py_ssize_t n):
        cdef SavedBalances* b
        cdef SavedStatus* s
        if 2 * n > self.cap_saved_bal:
            b = <SavedBalances*>malloc(2 * n * sizeof(SavedBalances))
            if b == NULL:
                raise MemoryError()
            free(self.saved_bal)
            self.saved_bal = b
            self.cap_saved_bal = 2 * n
        if n > self.cap_saved_st:
            s = <SavedStatus*>malloc(n * sizeof(SavedStatus))
            if s == NULL:
                raise MemoryError()
            free(self.saved_st)
            self.saved_st = s
            self.cap_saved_st = n

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
                self._reserve_transfers(n)
                if client:
                    self._reserve_failed(n)
            else:
                self._reserve_accounts(n)
            self._reserve_journal(n)
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
                    result = self._create_transfer(trow, ts[i], &ring[3 * (i & (HASH_RING - 1))])
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

    # ------------------------------------------------------------------ transfers
    cdef uint32_t _create_transfer(
        self, const TransferRow* row, uint64_t now, const uint32_t* hashes
    ) noexcept nogil:
        """One transfer, in TigerBeetle's order of checks; `hashes`: of its id, debit, credit."""
        cdef uint16_t flags = row.flags
        cdef int64_t dr_slot, cr_slot, existing, p_slot
        cdef AccountRow* dr
        cdef AccountRow* cr
        cdef const TransferRow* e
        cdef u128 amount, avail, s, dr_dp, dr_dpo, dr_cp, dr_cpo, cr_dp, cr_dpo, cr_cp, cr_cpo
        cdef u128 MAX = u128_max()
        cdef uint64_t timeout_ns, expires_at
        cdef uint64_t timestamp = now
        cdef bint pending
        cdef Py_ssize_t slot

        if flags & ~TF_KNOWN & 0xFFFF:
            return T_RESERVED_FLAG
        if row.id_lo == 0 and row.id_hi == 0:
            return T_ID_MUST_NOT_BE_ZERO
        if is_max(row.id_lo, row.id_hi):
            return T_ID_MUST_NOT_BE_INT_MAX
        existing = idx_find_h(&self.tidx, hashes[0], row.id_lo, row.id_hi)
        if existing >= 0:
            e = &self.tr[existing]
            p_slot = -1
            if e.flags & (TF_POST | TF_VOID):
                p_slot = idx_find(&self.tidx, e.pending_id_lo, e.pending_id_hi)
            return transfer_exists(row, e, &self.tr[p_slot] if p_slot >= 0 else NULL)
        if self.fidx.count != 0 and idx_find_hs(&self.fidx, hashes[0], row.id_lo, row.id_hi, FAILED_SHIFT) >= 0:
            return T_ID_ALREADY_FAILED
        if flags & (TF_POST | TF_VOID):
            return self._post_or_void(row, flags, now, hashes[0])

        if row.debit_account_id_lo == 0 and row.debit_account_id_hi == 0:
            return T_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if is_max(row.debit_account_id_lo, row.debit_account_id_hi):
            return T_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if row.credit_account_id_lo == 0 and row.credit_account_id_hi == 0:
            return T_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if is_max(row.credit_account_id_lo, row.credit_account_id_hi):
            return T_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if (row.credit_account_id_lo == row.debit_account_id_lo
                and row.credit_account_id_hi == row.debit_account_id_hi):
            return T_ACCOUNTS_MUST_BE_DIFFERENT
        if row.pending_id_lo != 0 or row.pending_id_hi != 0:
            return T_PENDING_ID_MUST_BE_ZERO
        pending = (flags & TF_PENDING) != 0
        if not pending:
            if row.timeout != 0:
                return T_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if flags & (TF_CLOSING_DEBIT | TF_CLOSING_CREDIT):
                return T_CLOSING_TRANSFER_MUST_BE_PENDING
        if row.ledger == 0:
            return T_LEDGER_MUST_NOT_BE_ZERO
        if row.code == 0:
            return T_CODE_MUST_NOT_BE_ZERO
        dr_slot = idx_find_h(&self.aidx, hashes[1], row.debit_account_id_lo, row.debit_account_id_hi)
        if dr_slot < 0:
            return T_DEBIT_ACCOUNT_NOT_FOUND
        cr_slot = idx_find_h(&self.aidx, hashes[2], row.credit_account_id_lo, row.credit_account_id_hi)
        if cr_slot < 0:
            return T_CREDIT_ACCOUNT_NOT_FOUND
        dr = &self.acc[dr_slot]
        cr = &self.acc[cr_slot]
        if dr.ledger != cr.ledger:
            return T_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if row.ledger != dr.ledger:
            return T_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if flags & TF_IMPORTED:
            timestamp = row.timestamp
            if self._regresses(timestamp, True):
                return T_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
            if timestamp <= dr.timestamp:
                return T_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
            if timestamp <= cr.timestamp:
                return T_IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
            if row.timeout != 0:
                return T_IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
        if dr.flags & AF_CLOSED:
            return T_DEBIT_ACCOUNT_ALREADY_CLOSED
        if cr.flags & AF_CLOSED:
            return T_CREDIT_ACCOUNT_ALREADY_CLOSED

        dr_dp = join128(dr.debits_pending_lo, dr.debits_pending_hi)
        dr_dpo = join128(dr.debits_posted_lo, dr.debits_posted_hi)
        dr_cpo = join128(dr.credits_posted_lo, dr.credits_posted_hi)
        cr_dpo = join128(cr.debits_posted_lo, cr.debits_posted_hi)
        cr_cp = join128(cr.credits_pending_lo, cr.credits_pending_hi)
        cr_cpo = join128(cr.credits_posted_lo, cr.credits_posted_hi)
        amount = join128(row.amount_lo, row.amount_hi)
        if flags & TF_BALANCING_DEBIT:
            # min(amount, max(0, cpo - (dpo + dp))), with the sum taken as unbounded.
            s = dr_dpo + dr_dp
            avail = dr_cpo - s if (s >= dr_dpo and dr_cpo > s) else 0
            if avail < amount:
                amount = avail
        if flags & TF_BALANCING_CREDIT:
            s = cr_cpo + cr_cp
            avail = cr_dpo - s if (s >= cr_cpo and cr_dpo > s) else 0
            if avail < amount:
                amount = avail
        if pending:
            if amount > MAX - dr_dp:
                return T_OVERFLOWS_DEBITS_PENDING
            if amount > MAX - cr_cp:
                return T_OVERFLOWS_CREDITS_PENDING
        if amount > MAX - dr_dpo:
            return T_OVERFLOWS_DEBITS_POSTED
        if amount > MAX - cr_cpo:
            return T_OVERFLOWS_CREDITS_POSTED
        s = dr_dp + dr_dpo
        if s < dr_dp or amount > MAX - s:
            return T_OVERFLOWS_DEBITS
        s = cr_cp + cr_cpo
        if s < cr_cp or amount > MAX - s:
            return T_OVERFLOWS_CREDITS
        timeout_ns = <uint64_t>row.timeout * NS_PER_S
        if timeout_ns != 0 and (timestamp > TIMESTAMP_MAX or timeout_ns > TIMESTAMP_MAX - timestamp):
            return T_OVERFLOWS_TIMEOUT
        if (dr.flags & AF_DEBITS_MUST_NOT_EXCEED_CREDITS) and dr_dp + dr_dpo + amount > dr_cpo:
            return T_EXCEEDS_CREDITS
        if (cr.flags & AF_CREDITS_MUST_NOT_EXCEED_DEBITS) and cr_cp + cr_cpo + amount > cr_dpo:
            return T_EXCEEDS_DEBITS

        if self.in_scope:
            self._save_balances(dr_slot)
            self._save_balances(cr_slot)
        if pending:
            s = dr_dp + amount
            dr.debits_pending_lo = <uint64_t>s
            dr.debits_pending_hi = <uint64_t>(s >> 64)
            s = cr_cp + amount
            cr.credits_pending_lo = <uint64_t>s
            cr.credits_pending_hi = <uint64_t>(s >> 64)
        else:
            s = dr_dpo + amount
            dr.debits_posted_lo = <uint64_t>s
            dr.debits_posted_hi = <uint64_t>(s >> 64)
            s = cr_cpo + amount
            cr.credits_posted_lo = <uint64_t>s
            cr.credits_posted_hi = <uint64_t>(s >> 64)
        if flags & TF_CLOSING_DEBIT:
            dr.flags |= AF_CLOSED
        if flags & TF_CLOSING_CREDIT:
            cr.flags |= AF_CLOSED
        expires_at = timestamp + timeout_ns if (pending and timeout_ns != 0) else 0

        slot = self.n_transfers
        append_transfer(&self.tr[slot], row, <uint64_t>amount, <uint64_t>(amount >> 64), timestamp)
        self._append_meta_and_history(
            slot, hashes[0], <uint32_t>dr_slot, <uint32_t>cr_slot,
            STATUS_PENDING if pending else STATUS_NONE, expires_at, timestamp,
        )
        if expires_at != 0:
            heap_push(&self.heap, expires_at, <uint64_t>slot)
        return R_OK

    cdef uint32_t _post_or_void(
        self, const TransferRow* row, uint16_t flags, uint64_t now, uint32_t id_hash
    ) noexcept nogil:
        cdef bint post = (flags & TF_POST) != 0
        cdef int64_t p_slot
        cdef const TransferRow* p
        cdef u128 p_amount, amount, posted, v
        cdef MetaRow* pm
        cdef uint8_t status
        cdef uint32_t dr_slot, cr_slot
        cdef AccountRow* dr
        cdef AccountRow* cr
        cdef TransferRow out
        cdef Py_ssize_t slot
        cdef uint64_t timestamp = now

        if post and (flags & TF_VOID):
            return T_FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & (TF_PENDING | TF_BALANCING_DEBIT | TF_BALANCING_CREDIT | TF_CLOSING_DEBIT | TF_CLOSING_CREDIT):
            return T_FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if row.pending_id_lo == 0 and row.pending_id_hi == 0:
            return T_PENDING_ID_MUST_NOT_BE_ZERO
        if is_max(row.pending_id_lo, row.pending_id_hi):
            return T_PENDING_ID_MUST_NOT_BE_INT_MAX
        if row.pending_id_lo == row.id_lo and row.pending_id_hi == row.id_hi:
            return T_PENDING_ID_MUST_BE_DIFFERENT
        if row.timeout != 0:
            return T_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        p_slot = idx_find(&self.tidx, row.pending_id_lo, row.pending_id_hi)
        if p_slot < 0:
            return T_PENDING_TRANSFER_NOT_FOUND
        p = &self.tr[p_slot]
        if not (p.flags & TF_PENDING):
            return T_PENDING_TRANSFER_NOT_PENDING
        if ((row.debit_account_id_lo != 0 or row.debit_account_id_hi != 0)
                and (row.debit_account_id_lo != p.debit_account_id_lo
                     or row.debit_account_id_hi != p.debit_account_id_hi)):
            return T_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if ((row.credit_account_id_lo != 0 or row.credit_account_id_hi != 0)
                and (row.credit_account_id_lo != p.credit_account_id_lo
                     or row.credit_account_id_hi != p.credit_account_id_hi)):
            return T_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if row.ledger != 0 and row.ledger != p.ledger:
            return T_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if row.code != 0 and row.code != p.code:
            return T_PENDING_TRANSFER_HAS_DIFFERENT_CODE
        p_amount = join128(p.amount_lo, p.amount_hi)
        amount = join128(row.amount_lo, row.amount_hi)
        # TigerBeetle >= 0.16: a post of AMOUNT_MAX, or a void of 0, means "all of it".
        if (post and amount == u128_max()) or (not post and amount == 0):
            amount = p_amount
        if amount > p_amount:
            return T_EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and amount < p_amount:
            return T_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT

        pm = &self.mt[p_slot]
        status = pm.status
        if status == STATUS_POSTED:
            return T_PENDING_TRANSFER_ALREADY_POSTED
        if status == STATUS_VOIDED:
            return T_PENDING_TRANSFER_ALREADY_VOIDED
        if status == STATUS_EXPIRED or (pm.expires_at != 0 and pm.expires_at <= now):
            return T_PENDING_TRANSFER_EXPIRED
        if flags & TF_IMPORTED:
            timestamp = row.timestamp
            if self._regresses(timestamp, True):
                return T_IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS

        dr_slot = pm.debit_slot
        cr_slot = pm.credit_slot
        dr = &self.acc[dr_slot]
        cr = &self.acc[cr_slot]
        # The only movement a closed account still allows is voiding a pending transfer.
        if post and (dr.flags & AF_CLOSED):
            return T_DEBIT_ACCOUNT_ALREADY_CLOSED
        if post and (cr.flags & AF_CLOSED):
            return T_CREDIT_ACCOUNT_ALREADY_CLOSED
        if self.in_scope:
            self._save_balances(dr_slot)
            self._save_balances(cr_slot)
            self._save_status(p_slot)
        posted = amount if post else 0
        # dp + dpo never grows here, so the overflow checks at pending time still hold.
        v = join128(dr.debits_pending_lo, dr.debits_pending_hi) - p_amount
        dr.debits_pending_lo = <uint64_t>v
        dr.debits_pending_hi = <uint64_t>(v >> 64)
        v = join128(dr.debits_posted_lo, dr.debits_posted_hi) + posted
        dr.debits_posted_lo = <uint64_t>v
        dr.debits_posted_hi = <uint64_t>(v >> 64)
        v = join128(cr.credits_pending_lo, cr.credits_pending_hi) - p_amount
        cr.credits_pending_lo = <uint64_t>v
        cr.credits_pending_hi = <uint64_t>(v >> 64)
        v = join128(cr.credits_posted_lo, cr.credits_posted_hi) + posted
        cr.credits_posted_lo = <uint64_t>v
        cr.credits_posted_hi = <uint64_t>(v >> 64)
        if not post:
            reopen(p, dr, cr)
        pm.status = STATUS_POSTED if post else STATUS_VOIDED

        # The new transfer names the pending's accounts, ledger and code; its user data
        # fields that are zero take the pending's (TigerBeetle).
        slot = self.n_transfers
        copy_row(&out, row)
        out.debit_account_id_lo = p.debit_account_id_lo
        out.debit_account_id_hi = p.debit_account_id_hi
        out.credit_account_id_lo = p.credit_account_id_lo
        out.credit_account_id_hi = p.credit_account_id_hi
        if row.user_data_128_lo == 0 and row.user_data_128_hi == 0:
            out.user_data_128_lo = p.user_data_128_lo
            out.user_data_128_hi = p.user_data_128_hi
        if row.user_data_64 == 0:
            out.user_data_64 = p.user_data_64
        if row.user_data_32 == 0:
            out.user_data_32 = p.user_data_32
        out.ledger = p.ledger
        out.code = p.code
        out.amount_lo = <uint64_t>amount
        out.amount_hi = <uint64_t>(amount >> 64)
        out.timestamp = timestamp
        append_row(&self.tr[slot], &out)
        self._append_meta_and_history(slot, id_hash, dr_slot, cr_slot, STATUS_NONE, 0, timestamp)
        return R_OK

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
            self._reserve_history(2 * most)
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
            self._reserve_failed(n)
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

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's; raises ValueError if it is not one.

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
        for part, n, reserve_rows, dtype in zip(parts, sizes, reserves, dtypes):
            block = _Rows(max(16, n) * dtype.itemsize, max(reserve_rows, 2 * n) * dtype.itemsize)
            if n:
                memcpy((<_Rows>block).data, cnp.PyArray_DATA(<cnp.ndarray>np.ascontiguousarray(part)),
                       n * dtype.itemsize)
            blocks.append(block)
            arrays.append(np.frombuffer(block, dtype, (<_Rows>block).nbytes // dtype.itemsize))
        meta = parts[2]
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


# Last: the cpdef enum names exist in the module only once it is fully initialised.
_check_constants()

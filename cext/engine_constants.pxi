# Included by cext/_engine.pyx (one compiled module; the parts are split by job).
# Row structs and constants, each checked at import against cext.layout / ledger.types.

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

# Included by cext/_engine.pyx (one compiled module; the parts are split by job).
# Pure checks over rows (no engine state): batch admission, idempotency, timestamps.

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

# Included by cext/_engine.pyx (one compiled module; the parts are split by job).
# Creating a transfer, posting or voiding a pending one: TigerBeetle's checks, in its order.

cdef uint32_t create_transfer(
    CyEngine self, const TransferRow* row, uint64_t now, const uint32_t* hashes
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
        return post_or_void(self, row, flags, now, hashes[0])

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

cdef uint32_t post_or_void(
    CyEngine self, const TransferRow* row, uint16_t flags, uint64_t now, uint32_t id_hash
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

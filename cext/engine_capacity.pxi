# Included by cext/_engine.pyx (one compiled module; the parts are split by job).
# Capacity reserved before each batch for its worst case, so the loop never allocates.

cdef inline Py_ssize_t new_capacity(Py_ssize_t cap, Py_ssize_t need) noexcept:
    return need if need > 2 * cap else 2 * cap

# Each block is grown and re-installed on its own, and its capacity is read from its
# installed array: if anything raises half-way (MemoryError), every pointer and array
# still matches its block, and the next batch simply grows what is still short.

cdef reserve_accounts(CyEngine self, Py_ssize_t extra):
    cdef Py_ssize_t cap = len(self._accounts)
    cdef Py_ssize_t need = self.n_accounts + extra
    if need > cap:
        self._acc_rows = _rows_grown(
            self._acc_rows,
            self.n_accounts * sizeof(AccountRow), new_capacity(cap, need) * sizeof(AccountRow),
        )
        self._install(True, False, False, False)
    idx_reserve(&self.aidx, self.aidx.count + extra)

cdef reserve_transfers(CyEngine self, Py_ssize_t extra):
    cdef Py_ssize_t cap = len(self._transfers)
    cdef Py_ssize_t need = self.n_transfers + extra
    if need > cap:
        self._tr_rows = _rows_grown(
            self._tr_rows,
            self.n_transfers * sizeof(TransferRow), new_capacity(cap, need) * sizeof(TransferRow),
        )
        self._install(False, True, False, False)
    cap = len(self._meta)
    if need > cap:
        self._mt_rows = _rows_grown(
            self._mt_rows,
            self.n_transfers * sizeof(MetaRow), new_capacity(cap, need) * sizeof(MetaRow),
        )
        self._install(False, False, True, False)
    reserve_history(self, 2 * extra)
    idx_reserve(&self.tidx, self.tidx.count + extra)
    reserve_heap(self, extra)

cdef reserve_failed(CyEngine self, Py_ssize_t extra):
    cdef Py_ssize_t cap = len(self._failed)
    cdef Py_ssize_t need = self.n_failed + extra
    if need > cap:
        self._fail_rows = _rows_grown(
            self._fail_rows,
            self.n_failed * sizeof(FailedRow), new_capacity(cap, need) * sizeof(FailedRow),
        )
        self._install_failed()
    idx_reserve(&self.fidx, self.fidx.count + extra)

cdef reserve_history(CyEngine self, Py_ssize_t extra):
    cdef Py_ssize_t cap = len(self._history)
    cdef Py_ssize_t need = self.n_history + extra
    if need > cap:
        self._hist_rows = _rows_grown(
            self._hist_rows,
            self.n_history * sizeof(HistoryRow), new_capacity(cap, need) * sizeof(HistoryRow),
        )
        self._install(False, False, False, True)

cdef reserve_heap(CyEngine self, Py_ssize_t extra):
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

cdef reserve_journal(CyEngine self, Py_ssize_t n):
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

# Included by cext/_engine.pyx (one compiled module; the parts are split by job).
# Memory the engine owns: row copies, the id index, the expiry heap, the rollback journal, row blocks.

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
# Bytes a restore copies between calls of its `give_back` (the snapshot's buffer returns
# each step's pages while the next is copied: the books are not held twice).
cdef Py_ssize_t RESTORE_STEP = 1 << 26


cdef Py_ssize_t copy_rows(_Rows block, cnp.ndarray part, Py_ssize_t nbytes, object give_back,
                          Py_ssize_t at) except -1:
    """Copy a snapshot part's `nbytes` (at byte `at` of the snapshot) into `block`, a
    `RESTORE_STEP` at a time, telling `give_back(start, length)` (if not None) after each:
    a store's buffer then returns those pages (`replication.snapbuffer`). The next part's `at`."""
    cdef const char* src = <const char*>cnp.PyArray_DATA(part)
    cdef Py_ssize_t done = 0, step
    while done < nbytes:
        step = min(RESTORE_STEP, nbytes - done)
        memcpy(block.data + done, src + done, step)
        if give_back is not None:
            give_back(at + done, step)
        done += step
    return at + nbytes


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

# The C view of cext/layout.py's row dtypes, shared by the engine and the codec.
# Field by field as in cext/layout.py; natural C alignment gives exactly the dtype offsets
# (each extension verifies sizes and offsets against the dtypes at import).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

ctypedef struct AccountRow:
    uint64_t id_lo
    uint64_t id_hi
    uint64_t debits_pending_lo
    uint64_t debits_pending_hi
    uint64_t debits_posted_lo
    uint64_t debits_posted_hi
    uint64_t credits_pending_lo
    uint64_t credits_pending_hi
    uint64_t credits_posted_lo
    uint64_t credits_posted_hi
    uint64_t user_data_128_lo
    uint64_t user_data_128_hi
    uint64_t user_data_64
    uint32_t user_data_32
    uint32_t reserved
    uint32_t ledger
    uint16_t code
    uint16_t flags
    uint64_t timestamp

ctypedef struct TransferRow:
    uint64_t id_lo
    uint64_t id_hi
    uint64_t debit_account_id_lo
    uint64_t debit_account_id_hi
    uint64_t credit_account_id_lo
    uint64_t credit_account_id_hi
    uint64_t amount_lo
    uint64_t amount_hi
    uint64_t pending_id_lo
    uint64_t pending_id_hi
    uint64_t user_data_128_lo
    uint64_t user_data_128_hi
    uint64_t user_data_64
    uint32_t user_data_32
    uint32_t timeout
    uint32_t ledger
    uint16_t code
    uint16_t flags
    uint64_t timestamp

ctypedef struct MetaRow:
    uint32_t debit_slot
    uint32_t credit_slot
    uint64_t expires_at
    uint8_t status
    uint8_t pad[7]

ctypedef struct HistoryRow:
    uint64_t account_id_lo
    uint64_t account_id_hi
    uint64_t timestamp
    uint64_t debits_pending_lo
    uint64_t debits_pending_hi
    uint64_t debits_posted_lo
    uint64_t debits_posted_hi
    uint64_t credits_pending_lo
    uint64_t credits_pending_hi
    uint64_t credits_posted_lo
    uint64_t credits_posted_hi

ctypedef struct FailedRow:
    uint64_t id_lo
    uint64_t id_hi

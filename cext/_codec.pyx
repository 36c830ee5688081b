# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled batch codec: `Transfer`/`Account` objects -> columnar rows, as the twin.

Output is byte for byte that of `cext.codec_py` (tests hold it to that). The objects
were validated when constructed, so this only packs: each u128 becomes two u64 words.

Two things make it fast. Values are converted with the C API (a u128 that does not fit
in 64 bits goes through `_PyLong_AsByteArray`). And for objects whose type is exactly
`Transfer` or `Account` (frozen slotted dataclasses) the fields are read straight from
their slots, at offsets taken once from the classes' member descriptors, instead of
through `getattr`; anything else (a subclass, another CPython layout) takes the getattr
path, with the same result.
"""

from cpython.object cimport PyObject
from libc.stdint cimport uint16_t, uint32_t, uint64_t

import numpy as np

cimport numpy as cnp

from cext.layout import ACCOUNT_DTYPE, TRANSFER_DTYPE
from ledger.types import Account, Transfer

cnp.import_array()

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #include "structmember.h"

    /* A Python int (validated: 0 <= v < 2^128) as two u64 words; -1 with an exception
       set if it is not an int or does not fit. */
    static int gl_u128_words(PyObject *v, uint64_t *lo, uint64_t *hi) {
        unsigned long long x;
        unsigned char buf[16];
        if (!PyLong_Check(v)) {
            PyErr_Format(PyExc_TypeError, "expected an int, got %.100s", Py_TYPE(v)->tp_name);
            return -1;
        }
        x = PyLong_AsUnsignedLongLong(v);
        if (!(x == (unsigned long long)-1 && PyErr_Occurred())) {
            *lo = (uint64_t)x;
            *hi = 0;
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
    #if PY_VERSION_HEX >= 0x030D0000
        if (_PyLong_AsByteArray((PyLongObject *)v, buf, 16, 1, 0, 1) < 0) return -1;
    #else
        if (_PyLong_AsByteArray((PyLongObject *)v, buf, 16, 1, 0) < 0) return -1;
    #endif
        memcpy(lo, buf, 8);
        memcpy(hi, buf + 8, 8);
        return 0;
    }

    /* An unsigned value of at most `max`, else -1 with OverflowError (as numpy raises). */
    static int gl_uint(PyObject *v, unsigned long long max, uint64_t *out) {
        unsigned long long x;
        if (!PyLong_Check(v)) {
            PyErr_Format(PyExc_TypeError, "expected an int, got %.100s", Py_TYPE(v)->tp_name);
            return -1;
        }
        x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        if (x > max) {
            PyErr_Format(PyExc_OverflowError, "%llu is out of bounds (max %llu)", x, max);
            return -1;
        }
        *out = (uint64_t)x;
        return 0;
    }

    /* The byte offset of a slot's value in its objects, or -1 if `descr` is not a plain
       object slot (a member descriptor of type T_OBJECT_EX). */
    static Py_ssize_t gl_slot_offset(PyObject *descr) {
        PyMemberDef *m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
        return m->offset;
    }

    /* The object in a slot (borrowed), or NULL if unset. */
    static inline PyObject *gl_slot(PyObject *obj, Py_ssize_t offset) {
        return *(PyObject **)((char *)obj + offset);
    }
    """
    int u128_words "gl_u128_words"(object v, uint64_t* lo, uint64_t* hi) except -1
    int uint_value "gl_uint"(object v, unsigned long long max_value, uint64_t* out) except -1
    Py_ssize_t slot_offset "gl_slot_offset"(object descr)
    PyObject* slot_value "gl_slot"(object obj, Py_ssize_t offset)


from cext.rows cimport AccountRow, TransferRow

if sizeof(TransferRow) != TRANSFER_DTYPE.itemsize or sizeof(AccountRow) != ACCOUNT_DTYPE.itemsize:
    raise ImportError("cext._codec: row structs do not match cext.layout")
if TRANSFER_DTYPE.fields["flags"][1] != 118 or ACCOUNT_DTYPE.fields["flags"][1] != 118:
    raise ImportError("cext._codec: row structs do not match cext.layout")

TRANSFER_FIELDS = (
    "id", "debit_account_id", "credit_account_id", "amount", "pending_id", "user_data_128",
    "user_data_64", "user_data_32", "timeout", "ledger", "code", "flags", "timestamp",
)
ACCOUNT_FIELDS = ("id", "user_data_128", "user_data_64", "user_data_32", "ledger", "code", "flags", "timestamp")

cdef enum:
    N_TRANSFER_FIELDS = 13
    N_ACCOUNT_FIELDS = 8

cdef Py_ssize_t transfer_offsets[N_TRANSFER_FIELDS]
cdef Py_ssize_t account_offsets[N_ACCOUNT_FIELDS]
cdef bint transfer_slots_ok = True
cdef bint account_slots_ok = True


def _find_offsets() -> None:
    """Slot offsets of the fields, or fall back to getattr if a class is not as expected."""
    global transfer_slots_ok, account_slots_ok
    cdef Py_ssize_t k, off
    for k, name in enumerate(TRANSFER_FIELDS):
        off = slot_offset(Transfer.__dict__.get(name))
        transfer_offsets[k] = off
        if off < 0:
            transfer_slots_ok = False
    for k, name in enumerate(ACCOUNT_FIELDS):
        off = slot_offset(Account.__dict__.get(name))
        account_offsets[k] = off
        if off < 0:
            account_slots_ok = False


_find_offsets()


cdef inline object field(object obj, bint fast, Py_ssize_t offset, str name):
    cdef PyObject* v
    if fast:
        v = slot_value(obj, offset)
        if v != NULL:
            return <object>v
    return getattr(obj, name)


cdef inline object timestamp_field(object obj, bint fast, Py_ssize_t offset):
    """As `field`, but an object without a timestamp packs zero (the twin's getattr default)."""
    cdef PyObject* v
    if fast:
        v = slot_value(obj, offset)
        if v != NULL:
            return <object>v
    return getattr(obj, "timestamp", 0)


def transfers_to_rows(transfers) -> np.ndarray:
    """Rows (TRANSFER_DTYPE) for a sequence of `Transfer` (timestamp as given: zero unless imported)."""
    items = list(transfers) if not isinstance(transfers, (list, tuple)) else transfers
    cdef Py_ssize_t n = len(items)
    cdef cnp.ndarray out = np.zeros(n, TRANSFER_DTYPE)
    cdef TransferRow* rows = <TransferRow*>cnp.PyArray_DATA(out)
    cdef TransferRow* r
    cdef Py_ssize_t i
    cdef bint fast
    cdef uint64_t v
    cdef type transfer_type = Transfer
    for i in range(n):
        t = items[i]
        r = &rows[i]
        fast = transfer_slots_ok and type(t) is transfer_type
        u128_words(field(t, fast, transfer_offsets[0], "id"), &r.id_lo, &r.id_hi)
        u128_words(field(t, fast, transfer_offsets[1], "debit_account_id"),
                   &r.debit_account_id_lo, &r.debit_account_id_hi)
        u128_words(field(t, fast, transfer_offsets[2], "credit_account_id"),
                   &r.credit_account_id_lo, &r.credit_account_id_hi)
        u128_words(field(t, fast, transfer_offsets[3], "amount"), &r.amount_lo, &r.amount_hi)
        u128_words(field(t, fast, transfer_offsets[4], "pending_id"), &r.pending_id_lo, &r.pending_id_hi)
        u128_words(field(t, fast, transfer_offsets[5], "user_data_128"),
                   &r.user_data_128_lo, &r.user_data_128_hi)
        uint_value(field(t, fast, transfer_offsets[6], "user_data_64"), 0xFFFFFFFFFFFFFFFFULL, &r.user_data_64)
        uint_value(field(t, fast, transfer_offsets[7], "user_data_32"), 0xFFFFFFFFULL, &v)
        r.user_data_32 = <uint32_t>v
        uint_value(field(t, fast, transfer_offsets[8], "timeout"), 0xFFFFFFFFULL, &v)
        r.timeout = <uint32_t>v
        uint_value(field(t, fast, transfer_offsets[9], "ledger"), 0xFFFFFFFFULL, &v)
        r.ledger = <uint32_t>v
        uint_value(field(t, fast, transfer_offsets[10], "code"), 0xFFFFULL, &v)
        r.code = <uint16_t>v
        uint_value(field(t, fast, transfer_offsets[11], "flags"), 0xFFFFULL, &v)
        r.flags = <uint16_t>v
        uint_value(timestamp_field(t, fast, transfer_offsets[12]), 0xFFFFFFFFFFFFFFFFULL, &r.timestamp)
    return out


def accounts_to_rows(accounts) -> np.ndarray:
    """Rows (ACCOUNT_DTYPE) for a sequence of `Account`: zero balances, timestamp as given."""
    items = list(accounts) if not isinstance(accounts, (list, tuple)) else accounts
    cdef Py_ssize_t n = len(items)
    cdef cnp.ndarray out = np.zeros(n, ACCOUNT_DTYPE)
    cdef AccountRow* rows = <AccountRow*>cnp.PyArray_DATA(out)
    cdef AccountRow* r
    cdef Py_ssize_t i
    cdef bint fast
    cdef uint64_t v
    cdef type account_type = Account
    for i in range(n):
        a = items[i]
        r = &rows[i]
        fast = account_slots_ok and type(a) is account_type
        u128_words(field(a, fast, account_offsets[0], "id"), &r.id_lo, &r.id_hi)
        u128_words(field(a, fast, account_offsets[1], "user_data_128"), &r.user_data_128_lo, &r.user_data_128_hi)
        uint_value(field(a, fast, account_offsets[2], "user_data_64"), 0xFFFFFFFFFFFFFFFFULL, &r.user_data_64)
        uint_value(field(a, fast, account_offsets[3], "user_data_32"), 0xFFFFFFFFULL, &v)
        r.user_data_32 = <uint32_t>v
        uint_value(field(a, fast, account_offsets[4], "ledger"), 0xFFFFFFFFULL, &v)
        r.ledger = <uint32_t>v
        uint_value(field(a, fast, account_offsets[5], "code"), 0xFFFFULL, &v)
        r.code = <uint16_t>v
        uint_value(field(a, fast, account_offsets[6], "flags"), 0xFFFFULL, &v)
        r.flags = <uint16_t>v
        uint_value(timestamp_field(a, fast, account_offsets[7]), 0xFFFFFFFFFFFFFFFFULL, &r.timestamp)
    return out

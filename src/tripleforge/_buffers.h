/* What tripleforge's C modules share: growable byte buffers, their handover to Python without a
 * copy, and borrowing the buffers of a tuple of Python objects. Include after Python.h. */
#ifndef TRIPLEFORGE_BUFFERS_H
#define TRIPLEFORGE_BUFFERS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

typedef struct {
    char *p;
    size_t len, cap;
    size_t ready; /* bytes from p on whose pages buf_populate has asked for */
} Buf;

/* Fresh memory costs more in page faults than the writes into it (on the VMs measured, a page
 * fault a 4 KiB page: 0.12-0.15 s for 160 MiB, where asking the kernel for the pages 2 MiB at
 * a time took 0.07 s). So a large buffer asks for its pages ahead of the writes, a step at a
 * time, with MADV_POPULATE_WRITE (Linux 5.14); elsewhere, or where the kernel refuses, the
 * pages fault in one by one as before. Only a speed matter: nothing depends on it. */
#define POPULATE_STEP ((size_t)2 << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Ask for the pages of b's first `upto` bytes (within its capacity). */
static void buf_populate(Buf *b, size_t upto) {
    if (upto > b->cap) upto = b->cap;
    if (upto <= b->ready) return;
#ifdef __linux__
    if (b->cap >= POPULATE_STEP) {
        const uintptr_t page = 4096;
        uintptr_t lo = ((uintptr_t)b->p + b->ready) & ~(page - 1), hi = ((uintptr_t)b->p + upto) & ~(page - 1);
        if (lo < (uintptr_t)b->p) lo += page; /* a page shared with another block faults in as before */
        if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
    }
#endif
    b->ready = upto;
}

static int buf_grow(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    if (q != b->p && b->ready > b->len) b->ready = b->len; /* a moved block keeps its written pages */
    b->p = q;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap && buf_grow(b, n)) return -1;
    if (b->len + n > b->ready) buf_populate(b, b->len + n + POPULATE_STEP);
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static void free_block(PyObject *capsule) { free(PyCapsule_GetPointer(capsule, "tripleforge.block")); }

/* The buffer handed over as (address, size, owner): Python wraps it with pyarrow.foreign_buffer,
 * and the memory is freed when the last Arrow buffer over it goes. The Buf is empty after. */
static PyObject *hand_over(Buf *b) {
    if (!b->p && !(b->p = malloc(1))) return PyErr_NoMemory();
    PyObject *owner = PyCapsule_New(b->p, "tripleforge.block", free_block);
    if (!owner) return NULL; /* b->p stays the caller's to free */
    PyObject *out = Py_BuildValue("(KnN)", (unsigned long long)(uintptr_t)b->p, (Py_ssize_t)b->len, owner);
    b->p = NULL; /* the capsule owns it now, even if the tuple failed */
    b->len = b->cap = b->ready = 0;
    return out;
}

/* The buffers of a tuple's items, borrowed (release_buffers gives them back), or NULL with the
 * Python error set. */
static inline Py_buffer *borrow_buffers(PyObject *tuple, Py_ssize_t *count) {
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    Py_buffer *out = calloc((size_t)n + 1, sizeof(Py_buffer));
    if (!out) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, k), &out[k], PyBUF_SIMPLE)) {
            while (k--) PyBuffer_Release(&out[k]);
            free(out);
            return NULL;
        }
    }
    *count = n;
    return out;
}

static inline void release_buffers(Py_buffer *buffers, Py_ssize_t count) {
    if (!buffers) return;
    for (Py_ssize_t k = 0; k < count; k++) PyBuffer_Release(&buffers[k]);
    free(buffers);
}

#endif

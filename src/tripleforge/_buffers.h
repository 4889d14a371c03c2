/* What tripleforge's C modules share: growable byte buffers, their handover to Python without a
 * copy, and borrowing the buffers of a tuple of Python objects. Include after Python.h. */
#ifndef TRIPLEFORGE_BUFFERS_H
#define TRIPLEFORGE_BUFFERS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap && buf_grow(b, n)) return -1;
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
    b->len = b->cap = 0;
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

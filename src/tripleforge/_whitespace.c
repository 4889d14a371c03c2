/* hashing.normalize_text (Python's `\s+` runs -> one space, then strip) and the blank check over
 * a whole Arrow string_view array in one pass.
 *
 * Why C: texts are compared whitespace-normalized for masking, dedup and eval overlap, and on
 * code (newlines and indents in every text) Polars' regex rewrite runs at about the speed of a
 * Python loop. Here a text that normalizes to itself keeps its view, and so its bytes in the
 * input's buffers; only the texts that change are written, to a new buffer per thread.
 *
 * normalize(views, data_buffers, offset, length, validity, threads) -> None when no text
 * changes, else (changed, views, (data, ...)) with each buffer an (address, size, owner) block:
 * the output array has the input's offset and length, and its buffers are [validity, views,
 * *data_buffers, *data], each thread taking a slice of the texts.
 * normalized_hash(views, data_buffers, offset, length, validity, seed, threads) -> a uint64 per
 * text, the hash of its normalized form, in an (address, size, owner) block: masking and dedup
 * compare hashes first and normalized texts only where hashes agree, so most texts are never
 * written out normalized.
 * blank(views, data_buffers, offset, length, validity) -> bytes: 1 per text of whitespace only.
 * Whitespace is what str.isspace() says: \t \n \v \f \r, U+001C-U+001F, the space, U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (the tests check every
 * code point against Python).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Bytes of the whitespace character at p (valid UTF-8, n bytes left), or 0. */
static inline size_t space_at(const unsigned char *p, size_t n) {
    unsigned char b = p[0];
    if (b < 0x80) return (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x20) ? 1 : 0;
    if (b == 0xC2 && n >= 2) return p[1] == 0x85 || p[1] == 0xA0 ? 2 : 0;
    if (n < 3) return 0;
    if (b == 0xE1) return p[1] == 0x9A && p[2] == 0x80 ? 3 : 0;                      /* U+1680 */
    if (b == 0xE2) {
        if (p[1] == 0x80) return p[2] <= 0x8A || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF ? 3 : 0;
        return p[1] == 0x81 && p[2] == 0x9F ? 3 : 0;                                   /* U+205F */
    }
    if (b == 0xE3) return p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;                      /* U+3000 */
    return 0;
}

/* What a byte says about whitespace: 1 the space, 3 other ASCII whitespace, 4 the lead byte of
 * a multi-byte character that may be whitespace (checked with space_at), 0 none of these. */
static unsigned char KIND[256];

/* Whether bytes s[i:stop] hold whitespace other than a space followed by a non-space (s[n]
 * is never read: a space at n - 1 is caught before). */
static int odd_space_in(const unsigned char *s, size_t i, size_t stop, size_t n) {
    for (; i < stop; i++) {
        unsigned k = KIND[s[i]];
        if (k == 3 || (k == 1 && i + 1 < n && s[i + 1] == ' ') || ((k & 4) && space_at(s + i, n - i))) return 1;
    }
    return 0;
}

/* Whether normalizing changes s: any whitespace but a single space between two other
 * characters. 16 bytes at a time where SSE2 is there: a block without a control byte, a
 * non-ASCII byte or two spaces in a row (the common block of text) needs no closer look. */
static int changes(const unsigned char *s, size_t n) {
    if (!n) return 0;
    if (s[0] == ' ' || s[n - 1] == ' ') return 1;
    size_t i = 0;
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(' ');
    for (; i + 17 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i)), y = _mm_loadu_si128((const __m128i *)(s + i + 1));
        /* signed: `< 0x20` also takes every byte from 0x80 on */
        __m128i look = _mm_or_si128(_mm_and_si128(_mm_cmpeq_epi8(x, space), _mm_cmpeq_epi8(y, space)),
                                    _mm_cmplt_epi8(x, space));
        if (_mm_movemask_epi8(look) && odd_space_in(s, i, i + 16, n)) return 1;
    }
    if (n >= 16) { /* the last 16 bytes, overlapping what was looked at: no byte-by-byte tail */
        __m128i x = _mm_loadu_si128((const __m128i *)(s + n - 16)), y = _mm_srli_si128(x, 1);
        __m128i look = _mm_or_si128(_mm_and_si128(_mm_cmpeq_epi8(x, space), _mm_cmpeq_epi8(y, space)),
                                    _mm_cmplt_epi8(x, space));
        return _mm_movemask_epi8(look) && odd_space_in(s, n - 16, n, n);
    }
#endif
    return odd_space_in(s, i, n, n);
}

/* s normalized, appended to out: each whitespace run becomes one space, written branch-free
 * (a space overwritten or kept), and the runs at the ends go. */
static int write_normalized(const unsigned char *s, size_t n, Buf *out) {
    if (buf_grow(out, n)) return -1;
    char *start = out->p + out->len, *w = start;
    unsigned prev = 1;
    for (size_t i = 0; i < n;) {
        unsigned k = KIND[s[i]];
        if (k & 4) {
            size_t m = space_at(s + i, n - i);
            if (m) {
                *w = ' ';
                w += !prev;
                prev = 1;
                i += m;
                continue;
            }
            k = 0;
        }
        unsigned ws = k & 1, b = s[i];
        /* b, or the space for whitespace, without a branch to mispredict (w <= start + i: the
         * write stays within the n reserved bytes) */
        *w = (char)(b ^ ((b ^ ' ') & (0u - ws)));
        w += !(ws & prev);
        prev = ws;
        i++;
    }
    if (prev && w > start) w--; /* the trailing space */
    out->len += (size_t)(w - start);
    return 0;
}

/* The text of the 16-byte string view v (Arrow's layout: up to 12 bytes inline, else a buffer
 * index and offset into `buffers`): its bytes and length, or -1 for a view that is not valid. */
static inline int view_text(const unsigned char *v, const Py_buffer *buffers, Py_ssize_t nbuf,
                            const unsigned char **s, int32_t *len) {
    int32_t index, off;
    memcpy(len, v, 4);
    if (*len < 0) return -1;
    if (*len <= 12) {
        *s = v + 4;
        return 0;
    }
    memcpy(&index, v + 8, 4);
    memcpy(&off, v + 12, 4);
    if (index < 0 || index >= nbuf || off < 0 || (Py_ssize_t)off + *len > buffers[index].len) return -1;
    *s = (const unsigned char *)buffers[index].buf + off;
    return 0;
}

/* Whether an array of `length` texts from `offset` fits its views and validity (empty: no nulls);
 * else the Python error is set. */
static int fits(const Py_buffer *views, const Py_buffer *validity, Py_ssize_t offset, Py_ssize_t length) {
    if (offset >= 0 && length >= 0 && (offset + length) * 16 <= views->len
        && (!validity->len || (offset + length + 7) / 8 <= validity->len))
        return 1;
    PyErr_SetString(PyExc_ValueError, "views or validity shorter than the array");
    return 0;
}

/* The texts a function is called with: (views, data_buffers, offset, length, validity, ...)
 * of an Arrow string_view array, the slice [offset, offset + length) being looked at. */
typedef struct {
    Py_buffer views, validity;
    Py_buffer *data; /* the data buffers, borrowed */
    Py_ssize_t nbuf, offset, length;
} Texts;

/* After the arguments are parsed into t: borrow the data buffers and check the bounds; -1 with
 * the Python error set. texts_close undoes both, and the parse. */
static int texts_open(Texts *t, PyObject *data_list) {
    t->data = borrow_buffers(data_list, &t->nbuf);
    return t->data && fits(&t->views, &t->validity, t->offset, t->length) ? 0 : -1;
}

static void texts_close(Texts *t) {
    release_buffers(t->data, t->nbuf);
    PyBuffer_Release(&t->views);
    PyBuffer_Release(&t->validity);
}

static inline const unsigned char *texts_bits(const Texts *t) {
    return t->validity.len ? (const unsigned char *)t->validity.buf : NULL;
}

/* One thread's share: the texts [lo, hi) of the array, their rewritten bytes in `data`, whose
 * buffer index in the output array is `index`. */
typedef struct {
    const unsigned char *bits; /* validity, or NULL */
    const Py_buffer *inputs;   /* the input's data buffers */
    Py_ssize_t ninputs, lo, hi;
    unsigned char *views;      /* the output views: a copy of the input's, rewritten in place */
    int32_t index;
    Buf data;
    Py_ssize_t changed;
    int failed; /* 1 out of memory, 2 a view outside its buffer, 3 past 2 GiB */
} Share;

static void *normalize_share(void *arg) {
    Share *t = arg;
    for (Py_ssize_t at = t->lo; at < t->hi; at++) {
        unsigned char *v = t->views + at * 16;
        if (t->bits && !(t->bits[at >> 3] >> (at & 7) & 1)) continue;
        const unsigned char *s;
        int32_t len;
        if (view_text(v, t->inputs, t->ninputs, &s, &len)) {
            t->failed = 2;
            return NULL;
        }
        if (!changes(s, (size_t)len)) continue;
        t->changed++;
        size_t start = t->data.len;
        if (write_normalized(s, (size_t)len, &t->data)) {
            t->failed = 1;
            return NULL;
        }
        size_t n = t->data.len - start;
        if (t->data.len > INT32_MAX) {
            t->failed = 3;
            return NULL;
        }
        int32_t head[4] = {(int32_t)n, 0, 0, 0};
        if (n <= 12) { /* s may be this very view's inline bytes: head is written whole after */
            if (n) memcpy((char *)head + 4, t->data.p + start, n);
            t->data.len = start;
        } else {
            memcpy((char *)head + 4, t->data.p + start, 4);
            head[2] = t->index;
            head[3] = (int32_t)start;
        }
        memcpy(v, head, 16);
    }
    return NULL;
}

#define MAX_THREADS 16
#define MIN_SHARE 65536 /* texts: below this a thread costs more than it saves */

/* How many threads share `length` texts when `threads` are asked for. */
static int share_count(int threads, Py_ssize_t length) {
    int n = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (n > length / MIN_SHARE) n = length / MIN_SHARE > 0 ? (int)(length / MIN_SHARE) : 1;
    return n;
}

/* fn over the n shares (`stride` bytes apart), n - 1 of them on threads of their own and the
 * first on the calling thread (which also runs any share whose thread did not start). */
static void run_shares(void *(*fn)(void *), void *shares, size_t stride, int n) {
    pthread_t ids[MAX_THREADS];
    int started = 0;
    for (; started + 1 < n; started++) {
        if (pthread_create(&ids[started], NULL, fn, (char *)shares + stride * (size_t)(started + 1))) break;
    }
    for (int k = started + 1; k < n; k++) fn((char *)shares + stride * (size_t)k);
    fn(shares);
    for (int k = 0; k < started; k++) pthread_join(ids[k], NULL);
}

static PyObject *normalize(PyObject *self, PyObject *args) {
    (void)self;
    Texts t = {0};
    PyObject *data_list;
    int threads;
    if (!PyArg_ParseTuple(args, "y*O!nny*i", &t.views, &PyTuple_Type, &data_list, &t.offset, &t.length, &t.validity,
                          &threads))
        return NULL;
    Share share[MAX_THREADS];
    memset(share, 0, sizeof share);
    Buf out_views = {0};
    PyObject *result = NULL;
    if (texts_open(&t, data_list)) goto done;
    Py_ssize_t offset = t.offset, length = t.length, nbuf = t.nbuf;
    /* the output views start as the input's, with the same offset, so the validity fits too */
    size_t size = (size_t)(offset + length) * 16;
    if (buf_grow(&out_views, size)) {
        PyErr_NoMemory();
        goto done;
    }
    out_views.len = size;
    int n = share_count(threads, length);
    for (int k = 0; k < n; k++) {
        share[k] = (Share){texts_bits(&t), t.data, nbuf, offset + length * k / n,
                           offset + length * (k + 1) / n, (unsigned char *)out_views.p, (int32_t)(nbuf + k), {0}, 0, 0};
    }
    Py_BEGIN_ALLOW_THREADS
    if (size) memcpy(out_views.p, t.views.buf, size);
    run_shares(normalize_share, share, sizeof share[0], n);
    Py_END_ALLOW_THREADS
    Py_ssize_t changed = 0;
    int failed = 0;
    for (int k = 0; k < n; k++) {
        changed += share[k].changed;
        failed = failed ? failed : share[k].failed;
    }
    if (failed == 1) {
        PyErr_NoMemory();
    } else if (failed == 2) {
        PyErr_SetString(PyExc_ValueError, "a view points outside its data buffer");
    } else if (failed == 3) {
        PyErr_SetString(PyExc_OverflowError, "normalized texts pass 2 GiB in one share");
    } else if (!changed) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        PyObject *blocks = PyTuple_New(n);
        for (int k = 0; blocks && k < n; k++) {
            PyObject *b = hand_over(&share[k].data);
            if (!b) {
                Py_CLEAR(blocks);
                break;
            }
            PyTuple_SET_ITEM(blocks, k, b);
        }
        if (blocks) result = Py_BuildValue("(nNN)", changed, hand_over(&out_views), blocks);
    }
done:
    free(out_views.p);
    for (int k = 0; k < MAX_THREADS; k++) free(share[k].data.p);
    texts_close(&t);
    return result;
}

/* A 64-bit hash of n bytes, 16 a step, each folded in by a 64 x 64 -> 128-bit multiply. Equal
 * bytes give equal hashes; the callers compare texts exactly wherever hashes agree, so its
 * quality only decides how often they have to. */
static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t fold(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define K0 0x9E3779B97F4A7C15ull
#define K1 0xC2B2AE3D27D4EB4Full
#define K2 0x165667B19E3779F9ull

static inline uint64_t load32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* (The last step reads the last 16 bytes, or what there is, overlapping the step before: n is
 * part of the hash, so that is still a function of the bytes.) */
static uint64_t hash_bytes(const unsigned char *s, size_t n, uint64_t seed) {
    uint64_t h = fold(seed ^ K0, (uint64_t)n ^ K1), a, b;
    if (n > 16) {
        for (size_t i = 0; i + 16 < n; i += 16) h = fold(load64(s + i) ^ h, load64(s + i + 8) ^ K2);
        a = load64(s + n - 16);
        b = load64(s + n - 8);
    } else if (n >= 8) {
        a = load64(s);
        b = load64(s + n - 8);
    } else if (n >= 4) {
        a = load32(s);
        b = load32(s + n - 4);
    } else {
        a = n ? (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1] : 0;
        b = 0;
    }
    h = fold(a ^ h, b ^ K2);
    return fold(h ^ K0, K1);
}

/* One thread's share of normalized_hash: the texts [lo, hi) of the array. */
typedef struct {
    const unsigned char *bits; /* validity, or NULL */
    const unsigned char *views;
    const Py_buffer *inputs;
    Py_ssize_t ninputs, offset, lo, hi;
    uint64_t seed, *out; /* out[at - offset] for the text at `at` */
    Buf scratch;         /* a changed text, normalized */
    int failed;          /* 1 out of memory, 2 a view outside its buffer */
} HashShare;

static void *hash_share(void *arg) {
    HashShare *t = arg;
    const unsigned char *last = NULL; /* the view of the last text hashed */
    for (Py_ssize_t at = t->lo; at < t->hi; at++) {
        uint64_t *h = t->out + (at - t->offset);
        if (t->bits && !(t->bits[at >> 3] >> (at & 7) & 1)) {
            *h = t->seed; /* a null: any value will do, the callers never compare nulls */
            continue;
        }
        /* A view equal to the last one names the same bytes (an exploded column repeats a
         * query's view for each of its passages): its hash is the one just written. */
        if (last && !memcmp(last, t->views + at * 16, 16)) {
            *h = t->out[(last - t->views) / 16 - t->offset];
            continue;
        }
        last = t->views + at * 16;
        const unsigned char *s;
        int32_t len;
        if (view_text(t->views + at * 16, t->inputs, t->ninputs, &s, &len)) {
            t->failed = 2;
            return NULL;
        }
        if (changes(s, (size_t)len)) {
            t->scratch.len = 0;
            if (write_normalized(s, (size_t)len, &t->scratch)) {
                t->failed = 1;
                return NULL;
            }
            *h = hash_bytes((const unsigned char *)t->scratch.p, t->scratch.len, t->seed);
        } else {
            *h = hash_bytes(s, (size_t)len, t->seed);
        }
    }
    return NULL;
}

/* normalized_hash(views, data_buffers, offset, length, validity, seed, threads) -> block of
 * `length` uint64: each text's hash after normalizing (equal normalized texts, equal hashes),
 * without writing the normalized texts anywhere but a scratch buffer. */
static PyObject *normalized_hash(PyObject *self, PyObject *args) {
    (void)self;
    Texts t = {0};
    PyObject *data_list;
    unsigned long long seed;
    int threads;
    if (!PyArg_ParseTuple(args, "y*O!nny*Ki", &t.views, &PyTuple_Type, &data_list, &t.offset, &t.length, &t.validity,
                          &seed, &threads))
        return NULL;
    HashShare share[MAX_THREADS];
    memset(share, 0, sizeof share);
    Buf out = {0};
    PyObject *result = NULL;
    if (texts_open(&t, data_list)) goto done;
    Py_ssize_t offset = t.offset, length = t.length;
    if (buf_grow(&out, (size_t)length * 8)) {
        PyErr_NoMemory();
        goto done;
    }
    out.len = (size_t)length * 8;
    int n = share_count(threads, length);
    for (int k = 0; k < n; k++) {
        share[k] = (HashShare){texts_bits(&t), t.views.buf, t.data, t.nbuf, offset,
                               offset + length * k / n, offset + length * (k + 1) / n, seed, (uint64_t *)out.p, {0}, 0};
    }
    Py_BEGIN_ALLOW_THREADS
    run_shares(hash_share, share, sizeof share[0], n);
    Py_END_ALLOW_THREADS
    int failed = 0;
    for (int k = 0; k < n; k++) failed = failed ? failed : share[k].failed;
    if (failed == 1)
        PyErr_NoMemory();
    else if (failed == 2)
        PyErr_SetString(PyExc_ValueError, "a view points outside its data buffer");
    else
        result = hand_over(&out);
done:
    free(out.p);
    for (int k = 0; k < MAX_THREADS; k++) free(share[k].scratch.p);
    texts_close(&t);
    return result;
}

/* blank(views, data_buffers, offset, length, validity) -> bytes: 1 for each text made only of
 * whitespace (the empty text too), else 0, and 0 for a null (its view is not looked at: Polars
 * may leave a stale one there). Most texts settle at their first character. */
static PyObject *blank(PyObject *self, PyObject *args) {
    (void)self;
    Texts t = {0};
    PyObject *data_list;
    if (!PyArg_ParseTuple(args, "y*O!nny*", &t.views, &PyTuple_Type, &data_list, &t.offset, &t.length, &t.validity))
        return NULL;
    PyObject *out = NULL;
    if (texts_open(&t, data_list)) goto done;
    Py_ssize_t offset = t.offset, length = t.length;
    const unsigned char *bits = texts_bits(&t);
    out = PyBytes_FromStringAndSize(NULL, length);
    if (!out) goto done;
    unsigned char *mask = (unsigned char *)PyBytes_AS_STRING(out);
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_ssize_t at = offset + i;
        if (bits && !(bits[at >> 3] >> (at & 7) & 1)) {
            mask[i] = 0;
            continue;
        }
        const unsigned char *s, *v = (const unsigned char *)t.views.buf + at * 16;
        int32_t len;
        if (view_text(v, t.data, t.nbuf, &s, &len)) {
            bad = 1;
            break;
        }
        /* The first byte sits in the view (inline or as the prefix): an ASCII byte that is no
         * space settles the text without a read of its data, which lies anywhere in memory. */
        if (len && v[4] < 0x80 && !space_at(v + 4, 1)) {
            mask[i] = 0;
            continue;
        }
        size_t pos = 0, k;
        while (pos < (size_t)len && (k = space_at(s + pos, (size_t)len - pos))) pos += k;
        mask[i] = pos == (size_t)len;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_ValueError, "a view points outside its data buffer");
    }
done:
    texts_close(&t);
    return out;
}

static PyMethodDef methods[] = {
    {"blank", blank, METH_VARARGS,
     "blank(views, data_buffers, offset, length, validity) -> bytes: 1 per text made only of whitespace."},
    {"normalized_hash", normalized_hash, METH_VARARGS,
     "normalized_hash(views, data_buffers, offset, length, validity, seed, threads) -> (address, size, owner) "
     "of a uint64 per text: the hash of the text whitespace-normalized."},
    {"normalize", normalize, METH_VARARGS,
     "normalize(views, data_buffers, offset, length, validity, threads) -> None or (changed, views, datas): "
     "hashing.normalize_text over an Arrow string_view array."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_whitespace", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__whitespace(void) {
    for (int b = 0x09; b <= 0x0D; b++) KIND[b] = 3;
    for (int b = 0x1C; b <= 0x1F; b++) KIND[b] = 3;
    KIND[' '] = 1;
    KIND[0xC2] = KIND[0xE1] = KIND[0xE2] = KIND[0xE3] = 4;
    return PyModule_Create(&module);
}

/* A one-pass reader for the JSONL record files of tripleforge.formats (READ_SCHEMA).
 *
 * Why C: the JSONL conversions are bound by the JSON parse, and no installed reader both parses
 * fast and refuses a value of the wrong type (Polars and DuckDB coerce; Arrow's strict parse is
 * the slow half of the conversion). This reader knows the schema, so it parses each value
 * straight into its column's Arrow buffers in one pass, with the GIL released.
 *
 * It only ever says yes to files it reads exactly as Arrow's JSON reader does with READ_SCHEMA:
 * on anything outside that common shape (a value of another type, a duplicate key, an escaped
 * key, a record over several lines or two on one, invalid UTF-8, deep nesting, a number it would
 * round differently or not at all) it gives up (returns None) and formats.py reads the file the
 * way it always has, which also names the bad line. So it never has to explain an error, and a
 * give-up costs one wasted scan, never a different result.
 *
 * parse(buffer, start, end, index) reads the lines of buffer[start:end] (start at a line start,
 * end at a line end or the buffer's end; under 2 GiB, as string views hold 32-bit offsets) and
 * returns (lines seen, columns) or None. columns maps each READ_SCHEMA key to a tuple of buffers
 * handed over as (address, size, owner), in Arrow's layout (validity bitmaps, string views, int64
 * list offsets, values) for the types fast_jsonl.py builds them with, or to None when no record
 * of the range gives the key a value (all null); `line` holds each record's 1-based line number
 * within the range. Each string column has one data buffer, which its views name as buffer
 * `index`: the ranges' parts then join into one array that keeps every range's data buffer
 * where it is, and only the views are copied.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* buffers (see _buffers.h)                                                                    */

static inline int buf_i64(Buf *b, int64_t v) { return buf_put(b, &v, sizeof v); }
static inline int buf_f64(Buf *b, double v) { return buf_put(b, &v, sizeof v); }

/* Validity bitmap: bit i of the Arrow bitmap, least significant bit first. */
typedef struct {
    Buf bytes;
    int64_t n;
} Bits;

static inline int bits_put(Bits *b, int valid) {
    if ((b->n & 7) == 0) {
        if (b->bytes.len + 1 > b->bytes.cap && buf_grow(&b->bytes, 1)) return -1;
        b->bytes.p[b->bytes.len++] = 0;
    }
    if (valid) b->bytes.p[b->bytes.len - 1] |= (char)(1u << (b->n & 7));
    b->n++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* columns                                                                                     */

typedef struct { /* string_view: what Polars holds strings as, so it takes them without a copy */
    Bits valid;
    Buf views; /* 16 bytes per string */
    Buf data;  /* the bytes of the strings too long to sit in their view */
    int32_t index; /* data's index among the data buffers of the array the range's part joins */
} StrCol;

typedef struct { /* float64 or int64: 8-byte values */
    Bits valid;
    Buf values;
} NumCol;

typedef struct { /* large_list<string_view> or large_list<float64> */
    Bits valid;
    Buf offsets;
    StrCol str;
    NumCol num;
} ListCol;

typedef struct { /* large_list<struct<text: string_view, score: float64, pid: string_view>> */
    Bits valid;
    Buf offsets;
    Bits item_valid;
    StrCol text, pid;
    NumCol score;
} CandCol;

enum Kind { K_STR, K_INT, K_FLT, K_LSTR, K_LFLT, K_CAND };

/* READ_SCHEMA's keys, in its order */
static const char *const KEYS[] = {"query", "pos", "neg", "pos_scores", "neg_scores", "prompt", "type",
                                   "task", "passage", "label", "score", "qid", "pid", "candidates"};
static const enum Kind KINDS[] = {K_STR, K_LSTR, K_LSTR, K_LFLT, K_LFLT, K_STR, K_STR,
                                  K_STR, K_STR, K_INT, K_FLT, K_STR, K_STR, K_CAND};
#define NKEYS 14

typedef struct {
    StrCol str[NKEYS];
    NumCol num[NKEYS];
    ListCol list[NKEYS];
    CandCol cand;
    Buf line; /* int64 line numbers, one per record */
    /* A key with no value yet writes none of its nulls: a column a file never names (most of
     * READ_SCHEMA in any one file) costs nothing, and comes back as None. The first value
     * writes the nulls owed before it. */
    int started[NKEYS];
    int64_t owed[NKEYS];
} Reader;

static void strcol_free(StrCol *c) { free(c->valid.bytes.p); free(c->views.p); free(c->data.p); }
static void numcol_free(NumCol *c) { free(c->valid.bytes.p); free(c->values.p); }

static void reader_free(Reader *r) {
    for (int k = 0; k < NKEYS; k++) {
        strcol_free(&r->str[k]);
        numcol_free(&r->num[k]);
        free(r->list[k].valid.bytes.p);
        free(r->list[k].offsets.p);
        strcol_free(&r->list[k].str);
        numcol_free(&r->list[k].num);
    }
    free(r->cand.valid.bytes.p);
    free(r->cand.offsets.p);
    free(r->cand.item_valid.bytes.p);
    strcol_free(&r->cand.text);
    strcol_free(&r->cand.pid);
    numcol_free(&r->cand.score);
    free(r->line.p);
}

static int reader_init(Reader *r, int32_t index) {
    memset(r, 0, sizeof *r);
    for (int k = 0; k < NKEYS; k++) {
        r->str[k].index = r->list[k].str.index = index;
        if (buf_i64(&r->list[k].offsets, 0)) return -1;
    }
    r->cand.text.index = r->cand.pid.index = index;
    if (buf_i64(&r->cand.offsets, 0)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the parse; every function returns 0 on success, -1 to give up                               */

typedef struct {
    const unsigned char *p, *end;
    locale_t c_locale;
} Cursor;

/* JSON's whitespace but the CR, which a line may only end with (see read_lines) */
#define WS(ch) ((ch) == ' ' || (ch) == '\t')

static inline void skip_ws(Cursor *c) {
    while (c->p < c->end && WS(*c->p)) c->p++;
}

static inline int expect(Cursor *c, unsigned char ch) {
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 0;
    }
    return -1;
}

static int literal(Cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return -1;
    c->p += n;
    return 0;
}

static int hex4(const unsigned char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f') v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') v |= ch - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

static int put_utf8(Buf *out, uint32_t cp) {
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (unsigned char)cp; n = 1; }
    else if (cp < 0x800) { b[0] = 0xC0 | (cp >> 6); b[1] = 0x80 | (cp & 0x3F); n = 2; }
    else if (cp < 0x10000) { b[0] = 0xE0 | (cp >> 12); b[1] = 0x80 | ((cp >> 6) & 0x3F); b[2] = 0x80 | (cp & 0x3F); n = 3; }
    else { b[0] = 0xF0 | (cp >> 18); b[1] = 0x80 | ((cp >> 12) & 0x3F); b[2] = 0x80 | ((cp >> 6) & 0x3F); b[3] = 0x80 | (cp & 0x3F); n = 4; }
    return out ? buf_put(out, b, n) : 0;
}

/* Length of the valid UTF-8 sequence (as Python's strict decoder sees it: no overlong forms, no
 * surrogates, nothing past U+10FFFF) that starts at p, or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned char b0 = p[0];
    size_t n = (size_t)(end - p);
    if (b0 >= 0xC2 && b0 <= 0xDF) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (b0 == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (b0 == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (b0 == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (b0 == 0xF4 && p[1] >= 0x90) return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

/* The end of the run of bytes at p that a JSON string holds as they are (printable ASCII other
 * than the quote and the backslash): 16 at a time where SSE2 is there (every x86-64). */
static inline const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        /* signed: bytes 0x80-0xFF are negative, so `< 0x20` also catches every non-ASCII byte */
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                    _mm_cmplt_epi8(x, space));
        int mask = _mm_movemask_epi8(stop);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    return p;
}

/* A JSON string at c->p (its opening quote), decoded into `out` (NULL: only checked). */
static int string_value(Cursor *c, Buf *out) {
    if (expect(c, '"')) return -1;
    for (;;) {
        const unsigned char *run = c->p;
        c->p = plain_run(c->p, c->end);
        if (out && c->p > run && buf_put(out, run, (size_t)(c->p - run))) return -1;
        if (c->p >= c->end) return -1;
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            return 0;
        }
        if (ch < 0x20) return -1; /* a raw control character */
        if (ch >= 0x80) {
            size_t n = utf8_seq(c->p, c->end);
            if (!n || (out && buf_put(out, c->p, n))) return -1;
            c->p += n;
            continue;
        }
        /* a backslash escape */
        if (c->end - c->p < 2) return -1;
        unsigned char e = c->p[1];
        c->p += 2;
        char plain;
        switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (c->end - c->p < 4 || hex4(c->p, &cp)) return -1;
            c->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1; /* a lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || hex4(c->p + 2, &lo)) return -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                c->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (put_utf8(out, cp)) return -1;
            continue;
        }
        default: return -1;
        }
        if (out && buf_put(out, &plain, 1)) return -1;
    }
}

/* The extent of a JSON number at c->p (strict grammar); sets *is_int when it has neither a
 * fraction nor an exponent. */
static int number_token(Cursor *c, const unsigned char **start, int *is_int) {
    const unsigned char *p = c->p, *end = c->end;
    *start = p;
    *is_int = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return -1;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
    else return -1;
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        int negative = p < end && *p == '-';
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        int exponent = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) exponent = exponent < 1000 ? exponent * 10 + (*p - '0') : exponent;
        /* Arrow's parser refuses an exponent past 308 (plus the fraction's digits) whatever the
         * digits before it, so 0e309 too, which strtod reads as 0 */
        if (!negative && exponent > 308) return -1;
    }
    c->p = p;
    return 0;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

/* Clinger's fast path: a number of at most 15 digits without an exponent is an integer below 2^53
 * over a power of ten up to 1e15, both exact doubles, so one division gives the correctly rounded
 * value strtod would (x86-64 rounds each double operation). Returns 0 outside that case. */
static int simple_float(const unsigned char *p, const unsigned char *end, double *out) {
    int neg = *p == '-';
    p += neg;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) m = m * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, digits++, frac++) m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p != end || digits > 15) return 0; /* an exponent, or too many digits */
    double v = (double)m / POW10[frac];  /* frac <= digits <= 15 */
    *out = neg ? -v : v;
    return 1;
}

/* A JSON number as a double, correctly rounded (as Arrow's conversion is); gives up on one that
 * overflows, which Arrow refuses. *digits: how many digits an integer has, 0 for a number with a
 * fraction or an exponent. */
static int float_value(Cursor *c, double *out, int *digits) {
    const unsigned char *s;
    int is_int;
    char tmp[64];
    if (number_token(c, &s, &is_int)) return -1;
    *digits = is_int ? (int)(c->p - s) - (*s == '-') : 0;
    if (simple_float(s, c->p, out)) return 0;
    size_t n = (size_t)(c->p - s);
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *stop;
    double v = strtod_l(tmp, &stop, c->c_locale);
    if (stop != tmp + n || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* A JSON integer as int64; gives up on a fraction, an exponent or 19+ digits. */
static int int_value(Cursor *c, int64_t *out) {
    const unsigned char *s;
    int is_int;
    if (number_token(c, &s, &is_int) || !is_int) return -1;
    const unsigned char *p = s;
    int neg = *p == '-';
    if (neg) p++;
    if (c->p - p > 18) return -1;
    int64_t v = 0;
    while (p < c->p) v = v * 10 + (*p++ - '0');
    *out = neg ? -v : v;
    return 0;
}

static inline int is_null(Cursor *c) {
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

/* After a member of an array or object: 1 when `close` ends the container, 0 after a comma
 * (with the space before the next member skipped), -1 for anything else. */
static inline int member_end(Cursor *c, unsigned char close) {
    skip_ws(c);
    if (!expect(c, close)) return 1;
    if (expect(c, ',')) return -1;
    skip_ws(c);
    return 0;
}

/* An object's key and the colon after it: *key and *n are its bytes as written. A key spelled
 * with escapes is given up on (-1): Arrow decides what it names. */
static int object_key(Cursor *c, const unsigned char **key, size_t *n) {
    *key = c->p + 1;
    if (string_value(c, NULL)) return -1;
    *n = (size_t)(c->p - 1 - *key);
    if (memchr(*key, '\\', *n)) return -1;
    skip_ws(c);
    if (expect(c, ':')) return -1;
    skip_ws(c);
    return 0;
}

#define MAX_DEPTH 64

/* Any JSON value, checked and skipped (an unknown key's). */
static int skip_value(Cursor *c, int depth) {
    if (c->p >= c->end || depth > MAX_DEPTH) return -1;
    unsigned char ch = *c->p;
    if (ch == '"') return string_value(c, NULL);
    if (ch == 't') return literal(c, "true");
    if (ch == 'f') return literal(c, "false");
    if (ch == 'n') return literal(c, "null");
    if (ch == '[' || ch == '{') {
        unsigned char close = ch == '[' ? ']' : '}';
        c->p++;
        skip_ws(c);
        if (!expect(c, close)) return 0;
        for (int end = 0; !end;) {
            if (ch == '{') { /* an unknown key may be escaped: only checked as a string */
                if (string_value(c, NULL)) return -1;
                skip_ws(c);
                if (expect(c, ':')) return -1;
                skip_ws(c);
            }
            if (skip_value(c, depth + 1) || (end = member_end(c, close)) < 0) return -1;
        }
        return 0;
    }
    /* Arrow refuses a number past the float range under an unknown key too; an integer past
     * int64 is given up on as well, whatever Arrow would make of it */
    double v;
    int digits;
    return float_value(c, &v, &digits) || digits > 18 ? -1 : 0;
}

static int str_null(StrCol *col) {
    static const char zero[16] = {0};
    return bits_put(&col->valid, 0) || buf_put(&col->views, zero, 16);
}

/* The view of the string just decoded to the end of col->data, from `start` on: a string of up
 * to 12 bytes moves into its view; a longer one stays, its view holding its first 4 bytes, the
 * index of the range's data buffer and its offset there. */
static int str_view(StrCol *col, size_t start) {
    size_t len = col->data.len - start;
    if (col->data.len > INT32_MAX) return -1; /* offsets are 32-bit: fast_jsonl.py keeps ranges smaller */
    int32_t head[4] = {(int32_t)len, 0, 0, 0};
    if (len <= 12) {
        if (len) memcpy((char *)head + 4, col->data.p + start, len);
        col->data.len = start;
    } else {
        memcpy((char *)head + 4, col->data.p + start, 4);
        head[2] = col->index;
        head[3] = (int32_t)start;
    }
    return bits_put(&col->valid, 1) || buf_put(&col->views, head, 16);
}

/* a string or null into a string column */
static int str_item(Cursor *c, StrCol *col) {
    if (is_null(c)) return str_null(col);
    size_t start = col->data.len;
    return string_value(c, &col->data) || str_view(col, start);
}

static int num_null(NumCol *col) { return bits_put(&col->valid, 0) || buf_f64(&col->values, 0.0); }

static int flt_item(Cursor *c, NumCol *col) {
    double v;
    int digits;
    if (is_null(c)) return num_null(col);
    if (float_value(c, &v, &digits)) return -1;
    return bits_put(&col->valid, 1) || buf_f64(&col->values, v);
}

static int int_item(Cursor *c, NumCol *col) {
    int64_t v;
    if (is_null(c)) return num_null(col);
    if (int_value(c, &v)) return -1;
    return bits_put(&col->valid, 1) || buf_i64(&col->values, v);
}

/* One candidate object {text, score, pid} (other keys skipped), or null. */
static int candidate_item(Cursor *c, CandCol *col) {
    if (is_null(c)) {
        return bits_put(&col->item_valid, 0) || str_null(&col->text) || num_null(&col->score) || str_null(&col->pid);
    }
    if (expect(c, '{')) return -1;
    int seen[3] = {0, 0, 0};
    skip_ws(c);
    if (expect(c, '}')) {
        for (int end = 0; !end;) {
            const unsigned char *k;
            size_t n;
            if (object_key(c, &k, &n)) return -1;
            int slot = n == 4 && !memcmp(k, "text", 4) ? 0 : n == 5 && !memcmp(k, "score", 5) ? 1
                     : n == 3 && !memcmp(k, "pid", 3) ? 2 : -1;
            if (slot >= 0 && seen[slot]++) return -1; /* a key twice */
            int bad = slot == 0 ? str_item(c, &col->text) : slot == 1 ? flt_item(c, &col->score)
                    : slot == 2 ? str_item(c, &col->pid) : skip_value(c, 2);
            if (bad || (end = member_end(c, '}')) < 0) return -1;
        }
    }
    if ((!seen[0] && str_null(&col->text)) || (!seen[1] && num_null(&col->score)) || (!seen[2] && str_null(&col->pid)))
        return -1;
    return bits_put(&col->item_valid, 1);
}

/* A list value (or null, also when c is NULL: the key is missing) of the given kind. */
static int list_value(Cursor *c, enum Kind kind, ListCol *list, CandCol *cand) {
    Bits *valid = kind == K_CAND ? &cand->valid : &list->valid;
    Buf *offsets = kind == K_CAND ? &cand->offsets : &list->offsets;
    int64_t count = kind == K_CAND ? cand->item_valid.n : kind == K_LSTR ? list->str.valid.n : list->num.valid.n;
    if (!c || is_null(c)) return bits_put(valid, 0) || buf_i64(offsets, count);
    if (expect(c, '[')) return -1;
    skip_ws(c);
    if (expect(c, ']')) {
        for (int end = 0; !end; count++) {
            int bad = kind == K_CAND ? candidate_item(c, cand) : kind == K_LSTR ? str_item(c, &list->str)
                                                                                 : flt_item(c, &list->num);
            if (bad || (end = member_end(c, ']')) < 0) return -1;
        }
    }
    return bits_put(valid, 1) || buf_i64(offsets, count);
}

static size_t KEY_LENS[NKEYS];

static inline int key_slot(const unsigned char *k, size_t n) {
    for (int i = 0; i < NKEYS; i++) {
        if (KEY_LENS[i] == n && KEYS[i][0] == k[0] && !memcmp(KEYS[i], k, n)) return i;
    }
    return -1;
}

static int write_null(Reader *r, int k) {
    switch (KINDS[k]) {
    case K_STR: return str_null(&r->str[k]);
    case K_INT:
    case K_FLT: return num_null(&r->num[k]);
    default: return list_value(NULL, KINDS[k], &r->list[k], &r->cand);
    }
}

static int null_value(Reader *r, int k) {
    if (r->started[k]) return write_null(r, k);
    r->owed[k]++;
    return 0;
}

/* Before key k's first value: the nulls owed to the records before it. */
static int start_column(Reader *r, int k) {
    r->started[k] = 1;
    for (; r->owed[k]; r->owed[k]--) {
        if (write_null(r, k)) return -1;
    }
    return 0;
}

/* One record: an object (the caller checks that the line ends after it). */
static int record(Reader *r, Cursor *c) {
    int seen[NKEYS] = {0};
    if (expect(c, '{')) return -1;
    skip_ws(c);
    if (expect(c, '}')) {
        for (int end = 0; !end;) {
            const unsigned char *k;
            size_t n;
            if (object_key(c, &k, &n)) return -1;
            int slot = key_slot(k, n);
            int bad;
            if (slot < 0) {
                bad = skip_value(c, 1);
            } else if (seen[slot]++ || (!r->started[slot] && start_column(r, slot))) {
                return -1;
            } else {
                switch (KINDS[slot]) {
                case K_STR: bad = str_item(c, &r->str[slot]); break;
                case K_INT: bad = int_item(c, &r->num[slot]); break;
                case K_FLT: bad = flt_item(c, &r->num[slot]); break;
                default: bad = list_value(c, KINDS[slot], &r->list[slot], &r->cand);
                }
            }
            if (bad || (end = member_end(c, '}')) < 0) return -1;
        }
    }
    for (int k = 0; k < NKEYS; k++) {
        if (!seen[k] && null_value(r, k)) return -1;
    }
    return 0;
}

/* Every line of data[0:size]; returns the number of lines, or -1. No line is looked for ahead
 * of the parse: no token holds a raw newline (a string refuses every control character, and
 * whitespace here is only the space and the tab), so a line ends where its record does. */
static int64_t read_lines(Reader *r, const unsigned char *data, size_t size, locale_t loc) {
    Cursor c = {data, data + size, loc};
    int64_t line = 0;
    while (c.p < c.end) {
        line++;
        skip_ws(&c);
        if (c.p < c.end && *c.p == '{') {
            if (buf_i64(&r->line, line) || record(r, &c)) return -1;
            skip_ws(&c);
        }
        /* the line's end: a CR may come just before it; anywhere else Arrow's block splitter
         * takes a CR for a line end, and a record cut there is refused. Anything else after
         * the object Arrow would read as another record. */
        if (c.p < c.end && *c.p == '\r') c.p++;
        if (c.p < c.end && *c.p++ != '\n') return -1;
    }
    return line;
}

/* ------------------------------------------------------------------------------------------ */
/* Python side                                                                                 */

/* (validity bitmap, views, data) */
static PyObject *str_tuple(StrCol *c) {
    return Py_BuildValue("(NNN)", hand_over(&c->valid.bytes), hand_over(&c->views), hand_over(&c->data));
}

static PyObject *num_tuple(NumCol *c) { return Py_BuildValue("(NN)", hand_over(&c->valid.bytes), hand_over(&c->values)); }

static PyObject *columns_dict(Reader *r) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int k = 0; k < NKEYS; k++) {
        PyObject *v;
        ListCol *l = &r->list[k];
        if (!r->started[k]) {
            v = Py_None;
            Py_INCREF(v);
        } else switch (KINDS[k]) {
        case K_STR: v = str_tuple(&r->str[k]); break;
        case K_INT:
        case K_FLT: v = num_tuple(&r->num[k]); break;
        case K_LSTR: v = Py_BuildValue("(NNN)", hand_over(&l->valid.bytes), hand_over(&l->offsets), str_tuple(&l->str)); break;
        case K_LFLT: v = Py_BuildValue("(NNN)", hand_over(&l->valid.bytes), hand_over(&l->offsets), num_tuple(&l->num)); break;
        default:
            v = Py_BuildValue("(NNNNNN)", hand_over(&r->cand.valid.bytes), hand_over(&r->cand.offsets),
                              hand_over(&r->cand.item_valid.bytes), str_tuple(&r->cand.text),
                              num_tuple(&r->cand.score), str_tuple(&r->cand.pid));
        }
        if (!v || PyDict_SetItemString(d, KEYS[k], v)) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    PyObject *line = hand_over(&r->line);
    if (!line || PyDict_SetItemString(d, "line", line)) {
        Py_XDECREF(line);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(line);
    return d;
}

static locale_t c_locale;

static PyObject *parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t start, end;
    int index;
    if (!PyArg_ParseTuple(args, "y*nni", &view, &start, &end, &index)) return NULL;
    if (start < 0 || end > view.len || start > end || index < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "range outside the buffer");
        return NULL;
    }
    Reader *r = malloc(sizeof *r);
    if (!r || reader_init(r, (int32_t)index)) {
        if (r) reader_free(r);
        free(r);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    int64_t lines;
    Py_BEGIN_ALLOW_THREADS
    lines = read_lines(r, (const unsigned char *)view.buf + start, (size_t)(end - start), c_locale);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *out = NULL;
    if (lines < 0) {
        out = Py_None;
        Py_INCREF(out);
    } else {
        PyObject *cols = columns_dict(r);
        if (cols) out = Py_BuildValue("(LN)", (long long)lines, cols);
    }
    reader_free(r);
    free(r);
    return out;
}

/* join(buffers) -> (address, size, owner): the buffers one after another in a new block, copied
 * with the GIL released, so that a thread pool joins the columns side by side (the copy's cost
 * is mostly the first touch of the new pages). */
static PyObject *join(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &list)) return NULL;
    Py_ssize_t n = 0;
    Py_buffer *parts = borrow_buffers(list, &n);
    if (!parts) return NULL;
    size_t size = 0;
    for (Py_ssize_t k = 0; k < n; k++) size += (size_t)parts[k].len;
    Buf out = {0};
    PyObject *result = NULL;
    if (buf_grow(&out, size ? size : 1)) {
        PyErr_NoMemory();
    } else {
        Py_BEGIN_ALLOW_THREADS
        buf_populate(&out, size);
        for (Py_ssize_t k = 0; k < n; k++) {
            if (parts[k].len) memcpy(out.p + out.len, parts[k].buf, (size_t)parts[k].len);
            out.len += (size_t)parts[k].len;
        }
        Py_END_ALLOW_THREADS
        result = hand_over(&out);
    }
    free(out.p);
    release_buffers(parts, n);
    return result;
}

/* line_sources(prefix, lines) -> (views, data) or None: the texts prefix + decimal number for
 * each int64 of `lines` (a record's file:line), as the views and the one data buffer of an Arrow
 * string_view array, each block handed over as (address, size, owner); None for a negative
 * number or data past the views' 32-bit offsets. Polars builds the same texts from an integer
 * cast and a concatenation at several times the cost, and every pairs row carries one. */
static PyObject *line_sources(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer prefix, lines;
    if (!PyArg_ParseTuple(args, "y*y*", &prefix, &lines)) return NULL;
    size_t n = (size_t)lines.len / 8, most = (size_t)prefix.len + 20;
    Buf views = {0}, data = {0};
    PyObject *result = NULL;
    int fits = most <= INT32_MAX && (n < 2 || most <= INT32_MAX / n);
    if (fits && (buf_grow(&views, n ? n * 16 : 1) || buf_grow(&data, n ? n * most : 1))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    char digits[20];
    buf_populate(&views, n * 16);
    for (size_t i = 0; fits && i < n; i++) {
        if (data.len + most > data.ready) buf_populate(&data, data.len + most + POPULATE_STEP);
        int64_t line;
        memcpy(&line, (const char *)lines.buf + i * 8, 8);
        if (line < 0) {
            fits = 0;
            break;
        }
        int k = 20;
        do digits[--k] = (char)('0' + line % 10), line /= 10;
        while (line);
        /* written in place: past the data so far there is room for the longest text */
        char *text = data.p + data.len;
        memcpy(text, prefix.buf, (size_t)prefix.len);
        memcpy(text + prefix.len, digits + k, (size_t)(20 - k));
        int32_t len = (int32_t)prefix.len + 20 - k, offset = (int32_t)data.len, index = 0;
        unsigned char *v = (unsigned char *)views.p + i * 16;
        memset(v, 0, 16);
        memcpy(v, &len, 4);
        if (len <= 12) {
            memcpy(v + 4, text, (size_t)len);
        } else {
            memcpy(v + 4, text, 4);
            memcpy(v + 8, &index, 4);
            memcpy(v + 12, &offset, 4);
            data.len += (size_t)len;
        }
    }
    Py_END_ALLOW_THREADS
    views.len = n * 16;
    if (!fits) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        PyObject *v = hand_over(&views), *d = v ? hand_over(&data) : NULL;
        if (v && d) result = Py_BuildValue("(NN)", v, d);
        else Py_XDECREF(v);
    }
done:
    free(views.p);
    free(data.p);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&lines);
    return result;
}

static PyMethodDef methods[] = {
    {"join", join, METH_VARARGS, "join(buffers) -> (address, size, owner): the buffers one after another."},
    {"line_sources", line_sources, METH_VARARGS,
     "line_sources(prefix, lines) -> ((address, size, owner) of views, of data) or None: prefix + each number, "
     "as an Arrow string_view array."},
    {"parse", parse, METH_VARARGS,
     "parse(buffer, start, end, index) -> (lines, columns) or None: the READ_SCHEMA columns of "
     "the JSONL lines in buffer[start:end], as Arrow buffers; None where the reader gives up."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonl", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jsonl(void) {
    for (int k = 0; k < NKEYS; k++) KEY_LENS[k] = strlen(KEYS[k]);
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) return PyErr_NoMemory();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    /* the keys it reads, in order: the tests hold them to formats.READ_SCHEMA */
    PyObject *keys = PyTuple_New(NKEYS);
    if (!keys) {
        Py_DECREF(m);
        return NULL;
    }
    for (int k = 0; k < NKEYS; k++) {
        PyObject *s = PyUnicode_FromString(KEYS[k]);
        if (!s) {
            Py_DECREF(keys);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(keys, k, s);
    }
    if (PyModule_AddObject(m, "KEYS", keys)) {
        Py_DECREF(keys);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

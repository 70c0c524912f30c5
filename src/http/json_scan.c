/* json_scan.c: the request-body JSON scanner (json_scan.h). One byte-level
 * state machine with an explicit stack of container kinds; strings are
 * skipped a run at a time and decoded only where someone reads them (a
 * captured value, a key to match, the start of a text string). */
#include "http/json_scan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/utf8.h"

enum state {
    ST_TOP,       /* before the top-level value: '{' or '[' */
    ST_VALUE,     /* a value is due (after ':', or ',' in an array) */
    ST_ARR_FIRST, /* after '[': a value or ']' */
    ST_OBJ_FIRST, /* after '{': a key or '}' */
    ST_KEY,       /* after ',' in an object: a key */
    ST_COLON,     /* after a key: ':' */
    ST_AFTER,     /* after a value: ',' or the container's close */
    ST_END,       /* after the top-level value: only whitespace */
    ST_STRING,    /* inside a string (key or value) */
    ST_ESC,       /* after '\' in a string */
    ST_HEX,       /* inside \uXXXX, hex_left digits to go */
    ST_LOW_BS,    /* after a high surrogate: the '\' of its low half */
    ST_LOW_U,     /* then the 'u' */
    ST_UTF8,      /* inside a multi-byte UTF-8 sequence split across pieces */
    ST_NUMBER,    /* inside a number; num_part says where */
    ST_LITERAL,   /* inside true, false or null */
    ST_ERROR,     /* stopped: err says why */
};

enum num_part {
    N_SIGN,  /* after '-' */
    N_ZERO,  /* after a leading 0 */
    N_INT,   /* in the integer digits */
    N_DOT,   /* after '.' */
    N_FRAC,  /* in the fraction digits */
    N_E,     /* after 'e' */
    N_ESIGN, /* after the exponent's sign */
    N_EXP,   /* in the exponent digits */
};

enum sink {
    SINK_NONE,  /* decoded bytes are only counted */
    SINK_FIXED, /* kept up to sink_cap, the rest counted */
    SINK_KEYS,  /* appended to the top-level key set (grows) */
};

#define OFF(s, p) ((s)->pos + (size_t)((p) - (s)->piece))
#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define FOR_BITS(m, f) for (uint32_t m_ = (m); m_ && ((f) = __builtin_ctz(m_), 1); m_ &= m_ - 1)

/* Bytes a string may hold without a second look: printable ASCII but '"'
 * and '\'. */
static const unsigned char plain[256] = {
    [0x20] = 1,
    [0x21] = 1,
    [0x23 ... 0x5b] = 1,
    [0x5d ... 0x7f] = 1,
};

static bool fail(struct json_scan *s, size_t at, const char *fmt, ...) PRINTF_LIKE(3, 4);
static bool fail(struct json_scan *s, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->err_at = at;
    s->state = ST_ERROR;
    return false;
}

void json_scan_init(struct json_scan *s, const struct json_scan_spec *spec)
{
    memset(s, 0, offsetof(struct json_scan, keybuf));
    s->spec = spec;
    s->state = ST_TOP;
    s->keys = NULL;
    s->keys_len = s->keys_cap = s->key_start = 0;
    s->slots = NULL;
    s->nslots = s->nkeys = 0;
    s->key_at = NULL;
    s->key_at_cap = 0;
    size_t n = spec ? spec->n_fields : 0;
    for (size_t f = 0; f < n && f < JSON_SCAN_MAX_FIELDS; f++) {
        const char *p = spec->fields[f].path;
        size_t at = 0;
        int k = 0;
        while (k < JSON_SCAN_PATH_MAX) {
            size_t len = strcspn(p + at, ".");
            s->comp_off[f][k] = (uint8_t)at;
            s->comp_len[f][k] = (uint8_t)len;
            k++;
            if (p[at + len] != '.')
                break;
            at += len + 1;
        }
        s->npath[f] = (uint8_t)k;
    }
}

void json_scan_free(struct json_scan *s)
{
    free(s->keys);
    free(s->slots);
    free(s->key_at);
    s->keys = NULL;
    s->slots = NULL;
    s->key_at = NULL;
    s->keys_len = s->keys_cap = s->nslots = s->nkeys = s->key_at_cap = 0;
}

/* ---- decoded string bytes ---- */

static bool emit(struct json_scan *s, const void *p, size_t n)
{
    if (n == 0)
        return true;
    s->slen += n;
    if (!s->in_key && s->scalar_exact) { /* a captured value: its characters (speech bills them) */
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++)
            s->schars += (b[i] & 0xc0) != 0x80;
    }
    if (s->sink == SINK_FIXED) {
        if (s->sink_used < s->sink_cap) {
            size_t m = n < s->sink_cap - s->sink_used ? n : s->sink_cap - s->sink_used;
            memcpy(s->sink_buf + s->sink_used, p, m);
            s->sink_used += m;
        }
    } else if (s->sink == SINK_KEYS) {
        if (n > s->keys_cap - s->keys_len) {
            size_t cap = s->keys_cap ? s->keys_cap : 256;
            while (cap - s->keys_len < n)
                cap *= 2;
            char *k = realloc(s->keys, cap);
            if (!k)
                return fail(s, s->pos, "out of memory");
            s->keys = k;
            s->keys_cap = cap;
        }
        memcpy(s->keys + s->keys_len, p, n);
        s->keys_len += n;
    }
    return true;
}

static bool emit_cp(struct json_scan *s, uint32_t cp)
{
    unsigned char b[4];
    size_t n = utf8_encode(cp, b);
    if (cp == 0)
        s->str_nul = true;
    return emit(s, b, n);
}

/* Length of the UTF-8 sequence a lead byte starts, 0 if it cannot lead. */
static int utf8_len(unsigned char c)
{
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* A whole sequence of n bytes: no overlong form, no surrogate, <= U+10FFFF. */
static bool utf8_ok(const unsigned char *p, int n)
{
    uint32_t cp = p[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return false;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (n == 3)
        return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
    if (n == 4)
        return cp >= 0x10000 && cp <= 0x10ffff;
    return true; /* n == 2: 0xc2 and up are never overlong */
}

/* ---- values ---- */

static bool counting(const struct json_scan *s)
{
    return s->text_vd && !s->skip_vd;
}

static bool is_skip_key(const struct json_scan *s, const char *k, size_t n)
{
    for (size_t i = 0; s->spec && i < s->spec->n_skip_keys; i++)
        if (strlen(s->spec->skip_keys[i]) == n && memcmp(s->spec->skip_keys[i], k, n) == 0)
            return true;
    return false;
}

static void add_text(struct json_scan *s, size_t n)
{
    s->text_bytes = n > SIZE_MAX - s->text_bytes ? SIZE_MAX : s->text_bytes + n;
}

/* A value of type t starts at offset at: depth check, which fields it is,
 * text counting, and for a container a new level. */
static bool begin_value(struct json_scan *s, size_t at, enum json_scan_type t)
{
    if (s->depth >= JSON_SCAN_MAX_DEPTH)
        return fail(s, at, "nesting deeper than %d levels", JSON_SCAN_MAX_DEPTH);
    size_t vd = s->depth + 1;
    uint32_t km = s->pending_mask, exact = 0, child = 0;
    bool skip = s->pending_skip;
    s->pending_mask = 0;
    s->pending_skip = false;
    if (s->depth < ARRAY_LEN(s->level))
        s->level[s->depth].members++;
    if (vd == 1 && t == JSON_SCAN_OBJECT && s->spec) {
        size_t n =
            s->spec->n_fields < JSON_SCAN_MAX_FIELDS ? s->spec->n_fields : JSON_SCAN_MAX_FIELDS;
        child = n == 32 ? UINT32_MAX : (1u << n) - 1;
    }
    int f;
    FOR_BITS(km, f)
    {
        if (s->npath[f] == vd - 1) {
            exact |= 1u << f;
            s->v[f].type = t;
            s->v[f].start = at;
            if (s->spec->fields[f].text && !s->text_vd)
                s->text_vd = vd;
        } else if (t == JSON_SCAN_OBJECT) {
            child |= 1u << f;
        }
    }
    if (skip && counting(s))
        s->skip_vd = vd;
    if (t == JSON_SCAN_OBJECT || t == JSON_SCAN_ARRAY) {
        if (t == JSON_SCAN_OBJECT)
            s->kinds[s->depth / 8] |= (uint8_t)(1u << (s->depth % 8));
        else
            s->kinds[s->depth / 8] &= (uint8_t) ~(1u << (s->depth % 8));
        s->depth++;
        if (vd < ARRAY_LEN(s->level)) {
            s->level[vd].mask = child;
            s->level[vd].exact = exact;
            s->level[vd].members = 0;
        }
        if (vd == 1) {
            s->top = t;
            s->top_open = at;
        }
        return true;
    }
    s->scalar_exact = exact;
    s->scalar_start = at;
    return true;
}

/* The value at value depth vd ended just before offset end. */
static void end_text(struct json_scan *s, size_t vd)
{
    if (s->skip_vd == vd)
        s->skip_vd = 0;
    if (s->text_vd == vd)
        s->text_vd = 0;
}

static void end_container(struct json_scan *s, size_t at)
{
    size_t vd = s->depth;
    if (vd < ARRAY_LEN(s->level)) {
        int f;
        FOR_BITS(s->level[vd].exact, f)
        {
            s->v[f].end = at + 1;
            s->v[f].members = s->level[vd].members;
        }
    }
    if (vd == 1) {
        s->top_close = at;
        s->top_members = s->level[1].members;
    }
    end_text(s, vd);
    s->depth--;
    s->state = s->depth ? ST_AFTER : ST_END;
}

static void end_scalar(struct json_scan *s, size_t end, enum json_scan_type t, int64_t i, double d)
{
    int f;
    FOR_BITS(s->scalar_exact, f)
    {
        s->v[f].type = t;
        s->v[f].end = end;
        s->v[f].i = i;
        s->v[f].d = d;
    }
    if (counting(s) && (t == JSON_SCAN_INT || t == JSON_SCAN_REAL))
        add_text(s, 4); /* token-id arrays: about one token each */
    end_text(s, s->depth + 1);
    s->state = ST_AFTER;
}

/* ---- strings ---- */

static void begin_string(struct json_scan *s, bool key)
{
    s->in_key = key;
    s->str_nul = false;
    s->slen = 0;
    s->schars = 0;
    s->sink = SINK_NONE;
    s->sink_used = 0;
    s->state = ST_STRING;
    if (key) {
        if (s->depth == 1 && s->top == JSON_SCAN_OBJECT) {
            s->sink = SINK_KEYS;
            s->key_start = s->keys_len;
        } else if ((s->depth < ARRAY_LEN(s->level) && s->level[s->depth].mask) || counting(s)) {
            s->sink = SINK_FIXED;
            s->sink_buf = s->keybuf;
            s->sink_cap = sizeof(s->keybuf);
        }
        return;
    }
    /* text first: its data: URL check looks at all of textbuf */
    if (counting(s)) {
        s->sink = SINK_FIXED;
        s->sink_buf = s->textbuf;
        s->sink_cap = sizeof(s->textbuf);
    } else if (s->scalar_exact) {
        s->sink = SINK_FIXED;
        s->sink_buf = s->v[__builtin_ctz(s->scalar_exact)].str;
        s->sink_cap = JSON_SCAN_STR_MAX - 1;
    }
}

static uint64_t hash_key(const char *k, size_t n)
{
    /* FNV-1a, seeded by where this code was loaded (ASLR) so that a client
     * cannot aim many keys at one slot */
    static const char seed_anchor = 0;
    uint64_t h = 14695981039346656037ull ^ (uint64_t)(uintptr_t)&seed_anchor;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

/* keys is NULL until the first non-empty top-level key */
static const char *key_ptr(const struct json_scan *s, size_t off)
{
    return s->keys ? s->keys + off : "";
}

static size_t key_end(const struct json_scan *s, size_t idx)
{
    return idx + 1 < s->nkeys ? s->key_at[idx + 1] : s->key_start;
}

/* The top-level key just decoded at keys[key_start..keys_len]: refused if
 * seen before, else added to the set. */
static bool top_key(struct json_scan *s, size_t at)
{
    const char *k = key_ptr(s, s->key_start);
    size_t n = s->keys_len - s->key_start;
    if (s->nkeys * 2 >= s->nslots) {
        size_t ns = s->nslots ? s->nslots * 2 : 16;
        size_t *slots = calloc(ns, sizeof(*slots));
        if (!slots)
            return fail(s, at, "out of memory");
        for (size_t i = 0; i < s->nslots; i++) {
            if (!s->slots[i])
                continue;
            size_t idx = s->slots[i] - 1, st = s->key_at[idx];
            size_t j = hash_key(key_ptr(s, st), key_end(s, idx) - st) & (ns - 1);
            while (slots[j])
                j = (j + 1) & (ns - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->nslots = ns;
    }
    size_t j = hash_key(k, n) & (s->nslots - 1);
    for (; s->slots[j]; j = (j + 1) & (s->nslots - 1)) {
        size_t idx = s->slots[j] - 1, st = s->key_at[idx];
        if (key_end(s, idx) - st == n && memcmp(key_ptr(s, st), k, n) == 0)
            return fail(s, at, "duplicate member \"%.*s\"", (int)(n < 40 ? n : 40), k);
    }
    if (s->nkeys == s->key_at_cap) {
        size_t cap = s->key_at_cap ? s->key_at_cap * 2 : 16;
        size_t *a = realloc(s->key_at, cap * sizeof(*a));
        if (!a)
            return fail(s, at, "out of memory");
        s->key_at = a;
        s->key_at_cap = cap;
    }
    s->key_at[s->nkeys++] = s->key_start;
    s->slots[j] = s->nkeys;
    s->key_start = s->keys_len;
    return true;
}

/* The closing quote was at offset at. */
static bool end_string(struct json_scan *s, size_t at)
{
    if (s->in_key) {
        if (s->str_nul)
            return fail(s, at, "NUL byte in a member name");
        const char *k = s->keybuf;
        size_t n = s->slen;
        bool whole = true;
        if (s->sink == SINK_KEYS) {
            k = key_ptr(s, s->key_start);
            if (!top_key(s, at))
                return false;
        } else {
            whole = s->slen <= sizeof(s->keybuf);
        }
        size_t d = s->depth;
        uint32_t m = 0;
        if (whole && d <= JSON_SCAN_PATH_MAX && s->level[d].mask) {
            int f;
            FOR_BITS(s->level[d].mask, f)
            {
                const char *path = s->spec->fields[f].path;
                if (s->comp_len[f][d - 1] == n && memcmp(path + s->comp_off[f][d - 1], k, n) == 0)
                    m |= 1u << f;
            }
        }
        s->pending_mask = m;
        s->pending_skip = whole && counting(s) && is_skip_key(s, k, n);
        s->state = ST_COLON;
        return true;
    }
    int f;
    FOR_BITS(s->scalar_exact, f)
    {
        struct json_scan_value *v = &s->v[f];
        size_t kept = s->slen < JSON_SCAN_STR_MAX - 1 ? s->slen : JSON_SCAN_STR_MAX - 1;
        if (v->str != s->sink_buf)
            memcpy(v->str, s->sink_buf, kept);
        v->str[kept] = '\0';
        v->len = s->slen;
        v->chars = s->schars;
        v->nul = s->str_nul;
    }
    if (counting(s)) {
        /* a base64 data: URL is a file, not text */
        const char *t = s->sink_buf;
        size_t kept = s->sink_used;
        bool data_url = s->slen > 5 && kept >= 5 && memcmp(t, "data:", 5) == 0 &&
                        memmem(t, kept, ";base64,", 8);
        if (!data_url)
            add_text(s, s->slen);
    }
    return true;
}

/* In a string: a run of plain bytes at a time. Returns where it stopped. */
static const unsigned char *scan_string(struct json_scan *s, const unsigned char *p,
                                        const unsigned char *end)
{
    const unsigned char *run = p;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes a step while none is '"', '\\', a control or non-ASCII
         * (signed: 0x80-0xff are below 0x20 too) */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i stop =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                             _mm_cmplt_epi8(v, space));
            int m = _mm_movemask_epi8(stop);
            if (m) {
                p += __builtin_ctz((unsigned)m);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && plain[*p])
            p++;
        if (p == end)
            break;
        unsigned char c = *p;
        if (c >= 0x80) {
            int n = utf8_len(c);
            if (!n) {
                fail(s, OFF(s, p), "invalid UTF-8 byte 0x%02x", c);
                return p;
            }
            if (end - p < n) { /* the rest comes with the next piece */
                for (const unsigned char *q = p + 1; q < end; q++) {
                    if ((*q & 0xc0) != 0x80) {
                        fail(s, OFF(s, p), "invalid UTF-8 sequence");
                        return p;
                    }
                }
                if (!emit(s, run, (size_t)(p - run)))
                    return p;
                memcpy(s->u8, p, (size_t)(end - p));
                s->u8_have = (int)(end - p);
                s->u8_need = n;
                s->u8_at = OFF(s, p);
                s->state = ST_UTF8;
                return end;
            }
            if (!utf8_ok(p, n)) {
                fail(s, OFF(s, p), "invalid UTF-8 sequence");
                return p;
            }
            p += n;
            continue;
        }
        if (!emit(s, run, (size_t)(p - run)))
            return p;
        if (c == '"') {
            size_t at = OFF(s, p);
            bool key = s->in_key;
            if (!end_string(s, at))
                return p;
            if (!key)
                end_scalar(s, at + 1, JSON_SCAN_STRING, 0, 0);
            return p + 1;
        }
        if (c == '\\') {
            s->state = ST_ESC;
            return p + 1;
        }
        fail(s, OFF(s, p), "control character 0x%02x in a string", c);
        return p;
    }
    emit(s, run, (size_t)(p - run));
    return p;
}

static void hex_done(struct json_scan *s, size_t at)
{
    uint32_t cp = s->hex;
    if (s->high) {
        if (cp < 0xdc00 || cp > 0xdfff) {
            fail(s, at, "invalid Unicode surrogate pair \\u%04X\\u%04X", s->high, cp);
            return;
        }
        cp = 0x10000 + ((s->high - 0xd800) << 10) + (cp - 0xdc00);
        s->high = 0;
    } else if (cp >= 0xd800 && cp <= 0xdbff) {
        s->high = cp;
        s->state = ST_LOW_BS;
        return;
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        fail(s, at, "lone Unicode surrogate \\u%04X", cp);
        return;
    }
    if (emit_cp(s, cp))
        s->state = ST_STRING;
}

/* ---- numbers ---- */

static void num_sig(struct json_scan *s, char c)
{
    if (s->num_nsig < (int)sizeof(s->num_sig))
        s->num_sig[s->num_nsig++] = c;
    else if (c != '0')
        s->num_sticky = true;
}

static void num_digit(struct json_scan *s, char c)
{
    switch (s->num_part) {
    case N_INT: {
        unsigned d = (unsigned)(c - '0');
        if (s->num_mag > (UINT64_MAX - d) / 10)
            s->num_ovf = true;
        else
            s->num_mag = s->num_mag * 10 + d;
        num_sig(s, c);
        s->num_point++;
        break;
    }
    case N_FRAC:
        if (s->num_nsig == 0 && c == '0')
            s->num_point--;
        else
            num_sig(s, c);
        break;
    case N_EXP:
        if (s->num_exp < 1000000000)
            s->num_exp = s->num_exp * 10 + (c - '0');
        break;
    }
}

/* The number ended before offset at. */
static void end_number(struct json_scan *s, size_t at)
{
    bool real = s->num_part == N_FRAC || s->num_part == N_EXP;
    if (!real) {
        uint64_t lim = s->num_neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (s->num_ovf || s->num_mag > lim) {
            fail(s, s->scalar_start, "integer out of range");
            return;
        }
        int64_t i = s->num_neg ? (int64_t)(0 - s->num_mag) : (int64_t)s->num_mag;
        end_scalar(s, at, JSON_SCAN_INT, i, (double)i);
        return;
    }
    long dexp = s->num_point + (s->num_exp_neg ? -s->num_exp : s->num_exp);
    double d = 0;
    if (s->num_nsig > 0) {
        if (dexp > 309) {
            fail(s, s->scalar_start, "real number overflow");
            return;
        }
        /* 0.DIGITS e dexp: exactly the value, so strtod rounds as jansson's does */
        if (dexp == 309 || s->scalar_exact) {
            char buf[sizeof(s->num_sig) + 32];
            size_t n = 0;
            buf[n++] = '0';
            buf[n++] = '.';
            memcpy(buf + n, s->num_sig, (size_t)s->num_nsig);
            n += (size_t)s->num_nsig;
            if (s->num_sticky)
                buf[n++] = '1';
            snprintf(buf + n, sizeof(buf) - n, "e%ld", dexp);
            errno = 0;
            d = strtod(buf, NULL);
            if (isinf(d)) {
                fail(s, s->scalar_start, "real number overflow");
                return;
            }
        }
    }
    end_scalar(s, at, JSON_SCAN_REAL, 0, s->num_neg ? -d : d);
}

/* One byte of a number; false when the number ended before it (the byte
 * is then read again as what follows the number). */
static bool number_byte(struct json_scan *s, const unsigned char *p)
{
    unsigned char c = *p;
    bool digit = c >= '0' && c <= '9';
    switch (s->num_part) {
    case N_SIGN:
        if (!digit)
            return fail(s, OFF(s, p), "a digit must follow '-'") || true;
        s->num_part = c == '0' ? N_ZERO : N_INT;
        if (c != '0')
            num_digit(s, (char)c);
        return true;
    case N_ZERO:
        if (digit)
            return fail(s, OFF(s, p), "numbers have no leading zeros") || true;
        break;
    case N_INT:
    case N_FRAC:
    case N_EXP:
        if (digit) {
            num_digit(s, (char)c);
            return true;
        }
        break;
    case N_DOT:
        if (!digit)
            return fail(s, OFF(s, p), "a digit must follow '.'") || true;
        s->num_part = N_FRAC;
        num_digit(s, (char)c);
        return true;
    case N_E:
        if (c == '+' || c == '-') {
            s->num_exp_neg = c == '-';
            s->num_part = N_ESIGN;
            return true;
        }
        /* fall through */
    case N_ESIGN:
        if (!digit)
            return fail(s, OFF(s, p), "a digit must follow the exponent") || true;
        s->num_part = N_EXP;
        num_digit(s, (char)c);
        return true;
    }
    if (c == '.' && (s->num_part == N_ZERO || s->num_part == N_INT)) {
        s->num_part = N_DOT;
        return true;
    }
    if ((c == 'e' || c == 'E') && s->num_part != N_EXP) {
        s->num_part = N_E;
        return true;
    }
    end_number(s, OFF(s, p));
    return false;
}

/* ---- the grammar ---- */

/* The first byte of a value, at p. */
static void value_byte(struct json_scan *s, const unsigned char *p)
{
    unsigned char c = *p;
    size_t at = OFF(s, p);
    switch (c) {
    case '{':
        if (begin_value(s, at, JSON_SCAN_OBJECT))
            s->state = ST_OBJ_FIRST;
        return;
    case '[':
        if (begin_value(s, at, JSON_SCAN_ARRAY))
            s->state = ST_ARR_FIRST;
        return;
    case '"':
        if (begin_value(s, at, JSON_SCAN_STRING))
            begin_string(s, false);
        return;
    case 't':
    case 'f':
    case 'n':
        if (!begin_value(s, at, JSON_SCAN_NULL))
            return;
        s->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        s->lit_at = 1;
        s->state = ST_LITERAL;
        return;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (!begin_value(s, at, JSON_SCAN_INT))
            return;
        s->num_neg = c == '-';
        s->num_ovf = s->num_sticky = s->num_exp_neg = false;
        s->num_mag = 0;
        s->num_point = s->num_exp = 0;
        s->num_nsig = 0;
        s->num_part = c == '-' ? N_SIGN : c == '0' ? N_ZERO : N_INT;
        if (c >= '1' && c <= '9')
            num_digit(s, (char)c);
        s->state = ST_NUMBER;
        return;
    }
    if (c >= 0x20 && c < 0x7f)
        fail(s, at, "unexpected '%c'", c);
    else
        fail(s, at, "unexpected byte 0x%02x", c);
}

static bool is_object(const struct json_scan *s)
{
    size_t d = s->depth - 1;
    return s->kinds[d / 8] >> (d % 8) & 1;
}

static void close_byte(struct json_scan *s, const unsigned char *p)
{
    if ((*p == '}') != is_object(s)) {
        fail(s, OFF(s, p), "unexpected '%c'", *p);
        return;
    }
    end_container(s, OFF(s, p));
}

int json_scan_feed(struct json_scan *s, const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    s->piece = p;
    while (p < end && s->state != ST_ERROR) {
        unsigned char c = *p;
        switch (s->state) {
        case ST_STRING:
            p = scan_string(s, p, end);
            continue;
        case ST_NUMBER:
            if (!number_byte(s, p))
                continue; /* the byte after the number, read again in ST_AFTER */
            break;
        case ST_TOP:
            if (IS_WS(c))
                break;
            if (c != '{' && c != '[') {
                fail(s, OFF(s, p), "the body must be a JSON object or array");
                break;
            }
            value_byte(s, p);
            break;
        case ST_VALUE:
            if (!IS_WS(c))
                value_byte(s, p);
            break;
        case ST_ARR_FIRST:
            if (IS_WS(c))
                break;
            if (c == ']')
                close_byte(s, p);
            else
                value_byte(s, p);
            break;
        case ST_OBJ_FIRST:
        case ST_KEY:
            if (IS_WS(c))
                break;
            if (c == '"')
                begin_string(s, true);
            else if (c == '}' && s->state == ST_OBJ_FIRST)
                close_byte(s, p);
            else
                fail(s, OFF(s, p), "a member name (string) must come here");
            break;
        case ST_COLON:
            if (c == ':')
                s->state = ST_VALUE;
            else if (!IS_WS(c))
                fail(s, OFF(s, p), "':' must follow a member name");
            break;
        case ST_AFTER:
            if (IS_WS(c))
                break;
            if (c == ',')
                s->state = is_object(s) ? ST_KEY : ST_VALUE;
            else if (c == '}' || c == ']')
                close_byte(s, p);
            else
                fail(s, OFF(s, p), "',' or '%c' must come here", is_object(s) ? '}' : ']');
            break;
        case ST_END:
            if (!IS_WS(c))
                fail(s, OFF(s, p), "nothing may follow the top-level value");
            break;
        case ST_ESC: {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *e = c ? strchr(from, c) : NULL;
            if (c == 'u') {
                s->hex = 0;
                s->hex_left = 4;
                s->state = ST_HEX;
            } else if (e) {
                if (emit(s, &to[e - from], 1))
                    s->state = ST_STRING;
            } else {
                fail(s, OFF(s, p), "invalid escape");
            }
            break;
        }
        case ST_HEX: {
            int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (v < 0) {
                fail(s, OFF(s, p), "invalid \\u escape");
                break;
            }
            s->hex = s->hex << 4 | (uint32_t)v;
            if (--s->hex_left == 0)
                hex_done(s, OFF(s, p));
            break;
        }
        case ST_LOW_BS:
        case ST_LOW_U:
            if (c != (s->state == ST_LOW_BS ? '\\' : 'u')) {
                fail(s, OFF(s, p), "lone Unicode surrogate \\u%04X", s->high);
                break;
            }
            if (s->state == ST_LOW_BS) {
                s->state = ST_LOW_U;
            } else {
                s->hex = 0;
                s->hex_left = 4;
                s->state = ST_HEX;
            }
            break;
        case ST_UTF8:
            if ((c & 0xc0) != 0x80) {
                fail(s, s->u8_at, "invalid UTF-8 sequence");
                break;
            }
            s->u8[s->u8_have++] = c;
            if (s->u8_have < s->u8_need)
                break;
            if (!utf8_ok(s->u8, s->u8_need))
                fail(s, s->u8_at, "invalid UTF-8 sequence");
            else if (emit(s, s->u8, (size_t)s->u8_need))
                s->state = ST_STRING;
            break;
        case ST_LITERAL:
            if (c != (unsigned char)s->lit[s->lit_at]) {
                fail(s, s->scalar_start, "invalid literal (true, false or null)");
                break;
            }
            if (s->lit[++s->lit_at] == '\0')
                end_scalar(s, OFF(s, p) + 1,
                           s->lit[0] == 't'   ? JSON_SCAN_TRUE
                           : s->lit[0] == 'f' ? JSON_SCAN_FALSE
                                              : JSON_SCAN_NULL,
                           0, 0);
            break;
        }
        p++;
    }
    s->pos += (size_t)(p - s->piece);
    return s->state == ST_ERROR ? -1 : 0;
}

int json_scan_finish(struct json_scan *s)
{
    if (s->state == ST_ERROR)
        return -1;
    if (s->state != ST_END) {
        fail(s, s->pos, s->state == ST_TOP ? "the body is empty" : "the body ends too early");
        return -1;
    }
    return 0;
}

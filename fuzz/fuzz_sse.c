/* fuzz_sse.c: libFuzzer target for the SSE parser (sse.c).
 *
 * Input: byte 0 picks max_event (small bounds make overflow reachable) and
 * keep_raw, byte 1 seeds the split of the rest into feeds. The rest is the
 * stream. Checked (abort on violation):
 *  - every buffer stays within max_event + 1 bytes;
 *  - keep_raw: raw of every event + skipped bytes + sse_finish's bytes equal
 *    the input exactly, in order; raw_lead is 1 only on a LF after a CR;
 *  - events are NUL-safe: they match a naive whole-input reference parser
 *    byte for byte (when nothing can overflow), else form a subsequence of
 *    the reference's events, each within max_event;
 *  - the same events for the split feed and a single feed, and after
 *    sse_finish the parser takes a second stream. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/sse.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_sse: invariant failed: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct ev {
    char *event;
    size_t event_len;
    char *data;
    size_t data_len;
};

struct evlist {
    struct ev *v;
    size_t n, cap;
};

static void evlist_add(struct evlist *l, const char *e, size_t elen, const char *d, size_t dlen)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        CHECKF(l->v != NULL);
    }
    struct ev *x = &l->v[l->n++];
    x->event = malloc(elen + 1);
    x->data = malloc(dlen + 1);
    CHECKF(x->event && x->data);
    memcpy(x->event, e, elen);
    memcpy(x->data, d, dlen);
    x->event_len = elen;
    x->data_len = dlen;
}

static void evlist_free(struct evlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].event);
        free(l->v[i].data);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static bool ev_eq(const struct ev *a, const struct ev *b)
{
    return a->event_len == b->event_len && a->data_len == b->data_len &&
           memcmp(a->event, b->event, a->event_len) == 0 &&
           memcmp(a->data, b->data, a->data_len) == 0;
}

/* The reference: the WHATWG algorithm over the whole input, names cut to 63
 * bytes like sse.c, no BOM handling (sse.c has none). Returns "partial". */
static bool reference(const uint8_t *in, size_t len, struct evlist *out)
{
    char *data = malloc(len + 1), name[64];
    CHECKF(data != NULL);
    size_t data_len = 0, name_len = 0, i = 0;
    bool has_data = false, partial = false;
    while (i < len) {
        size_t j = i;
        while (j < len && in[j] != '\r' && in[j] != '\n')
            j++;
        if (j == len) { /* unterminated last line: never processed */
            partial = true;
            break;
        }
        const char *line = (const char *)in + i;
        size_t n = j - i;
        i = j + ((in[j] == '\r' && j + 1 < len && in[j + 1] == '\n') ? 2 : 1);
        if (n == 0) {
            if (has_data)
                evlist_add(out, name, name_len, data, data_len);
            data_len = name_len = 0;
            has_data = false;
            continue;
        }
        if (line[0] == ':')
            continue;
        const char *colon = memchr(line, ':', n);
        size_t fl = colon ? (size_t)(colon - line) : n;
        const char *v = colon ? colon + 1 : line + n;
        size_t vl = colon ? n - fl - 1 : 0;
        if (vl && *v == ' ') {
            v++;
            vl--;
        }
        if (fl == 4 && memcmp(line, "data", 4) == 0) {
            if (has_data)
                data[data_len++] = '\n';
            memcpy(data + data_len, v, vl);
            data_len += vl;
            has_data = true;
        } else if (fl == 5 && memcmp(line, "event", 5) == 0) {
            name_len = vl < 63 ? vl : 63;
            memcpy(name, v, name_len);
        }
    }
    partial = partial || has_data || name_len > 0;
    free(data);
    return partial;
}

struct out {
    struct evlist evs;
    uint8_t *raw; /* forwarded bytes, keep_raw */
    size_t raw_len, raw_cap;
    bool last_cr; /* the last forwarded byte was '\r' */
    size_t max_event;
};

static void put_raw(struct out *o, const char *b, size_t n)
{
    if (n == 0)
        return;
    if (o->raw_len + n > o->raw_cap) {
        o->raw_cap = (o->raw_len + n) * 2;
        o->raw = realloc(o->raw, o->raw_cap);
        CHECKF(o->raw != NULL);
    }
    memcpy(o->raw + o->raw_len, b, n);
    o->raw_len += n;
    o->last_cr = b[n - 1] == '\r';
}

static void on_event(const struct sse_event *ev, void *arg)
{
    struct out *o = arg;
    CHECKF(ev->event != NULL && ev->data != NULL);
    CHECKF(ev->event_len < 64);
    CHECKF(ev->data_len <= o->max_event);
    if (ev->raw) {
        CHECKF(ev->raw_len > 0 && ev->raw_len <= o->max_event);
        CHECKF(ev->raw_lead <= 1);
        if (ev->raw_lead)
            CHECKF(ev->raw[0] == '\n' && o->last_cr);
        char end = ev->raw[ev->raw_len - 1];
        CHECKF(end == '\n' || end == '\r');
        put_raw(o, ev->raw, ev->raw_len);
    } else {
        CHECKF(ev->raw_len == 0 && ev->raw_lead == 0);
    }
    evlist_add(&o->evs, ev->event, ev->event_len, ev->data, ev->data_len);
}

static void on_skip(const char *raw, size_t len, void *arg)
{
    put_raw(arg, raw, len);
}

static void check_bounds(const struct sse_parser *p)
{
    size_t lim = p->max_event + 1;
    CHECKF(p->line_cap <= lim && p->data_cap <= lim && p->raw_cap <= lim);
    CHECKF(p->line_len <= p->max_event && p->data_len <= p->max_event &&
           p->raw_len <= p->max_event);
}

/* xorshift: the split pattern, from one seed byte */
static uint32_t next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static bool run(struct sse_parser *p, const uint8_t *in, size_t len, uint32_t seed, struct out *o)
{
    size_t off = 0;
    while (off < len) {
        size_t piece = len - off;
        if (seed) {
            uint32_t r = next(&seed);
            piece = (r & 7) == 0 ? 0 : 1 + (r >> 8) % ((r & 8) ? 4 : 64);
            if (piece > len - off)
                piece = len - off;
        }
        CHECKF(sse_feed(p, (const char *)in + off, piece, on_event, o) == 0);
        check_bounds(p);
        off += piece;
    }
    return sse_finish(p, on_skip, o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t bounds[] = {1, 2, 3, 5, 8, 16, 32, 64, 100, 256, 1 << 20};
    size_t max_event = bounds[(data[0] >> 1) % (sizeof(bounds) / sizeof(bounds[0]))];
    bool keep_raw = data[0] & 1;
    uint32_t seed = data[1] | 0x100u; /* never 0: always split */
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    struct evlist ref = {0};
    bool ref_partial = reference(in, len, &ref);
    bool no_overflow = max_event >= len + 1;

    struct sse_parser p;
    sse_init(&p, max_event, keep_raw);
    sse_set_skip_raw(&p, on_skip);
    struct out split = {.max_event = max_event}, whole = {.max_event = max_event};
    bool split_partial = run(&p, in, len, seed, &split);
    size_t split_overflows = p.overflows;
    CHECKF(p.line_len == 0 && p.data_len == 0 && p.raw_len == 0);
    /* the same parser, emptied by sse_finish, takes a second stream whole */
    p.overflows = 0;
    bool whole_partial = run(&p, in, len, 0, &whole);
    size_t whole_overflows = p.overflows;
    sse_free(&p);

    if (keep_raw) {
        CHECKF(split.raw_len == len && (len == 0 || memcmp(split.raw, in, len) == 0));
        CHECKF(whole.raw_len == len && (len == 0 || memcmp(whole.raw, in, len) == 0));
    }
    if (no_overflow) {
        CHECKF(split_overflows == 0 && whole_overflows == 0);
        CHECKF(split.evs.n == ref.n && whole.evs.n == ref.n);
        for (size_t i = 0; i < ref.n; i++)
            CHECKF(ev_eq(&split.evs.v[i], &ref.v[i]) && ev_eq(&whole.evs.v[i], &ref.v[i]));
        CHECKF(split_partial == ref_partial && whole_partial == ref_partial);
    } else {
        const struct out *outs[] = {&split, &whole};
        for (size_t k = 0; k < 2; k++) {
            size_t j = 0;
            for (size_t i = 0; i < outs[k]->evs.n; i++) {
                while (j < ref.n && !ev_eq(&ref.v[j], &outs[k]->evs.v[i]))
                    j++;
                CHECKF(j < ref.n); /* an event the reference never produced */
                j++;
            }
        }
    }
    evlist_free(&ref);
    evlist_free(&split.evs);
    evlist_free(&whole.evs);
    free(split.raw);
    free(whole.raw);
    return 0;
}

/* fuzz_json_scan.c: differential libFuzzer target for the request-body
 * scanner (http/json_scan.c) with jansson as the oracle.
 *
 * Input: byte 0 picks how the body is cut into pieces (a second cut point and
 * a piece size); the rest is the body. The body is scanned whole, one byte a
 * time, in pieces of the chosen size and in two pieces at the chosen point:
 * every run must give the same verdict and the same results. Then, against
 * json_loadb(JSON_ALLOW_NUL) (checked, abort on violation):
 *   - a raw NUL byte anywhere: refused (jansson skips one after a number or
 *     a literal; the RFC does not);
 *   - otherwise same accept/reject, except that a duplicate top-level member
 *     is refused: then jansson with JSON_REJECT_DUPLICATES refuses too and
 *     the key named is one of the top-level object's;
 *   - when accepted: the top-level kind and member count equal jansson's
 *     (equal counts prove no duplicate top-level member slipped through);
 *     every captured path has jansson's type and value (strings by decoded
 *     bytes, length and \u0000); its offsets cut out a text that jansson
 *     parses to an equal value; and when jansson finds no duplicate at any
 *     depth, the text bytes equal those of a walk of jansson's tree over the
 *     same members. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http/json_scan.h"
#include "providers/provider.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_json_scan: invariant failed: %s (line %d)\n", #cond, __LINE__);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const struct json_scan_field fields[] = {
    {"model", false},
    {"stream", false},
    {"max_tokens", false},
    {"n", false},
    {"stream_options", false},
    {"stream_options.include_usage", false},
    {"generationConfig.maxOutputTokens", false},
    {"generationConfig.thinkingConfig.thinkingBudget", false},
    {"a.b.c.d", false},
    {"messages", true},
    {"input", true},
    {"prompt", true},
    {"system", true},
    {"contents", true},
    {"", false},
    {"x", true},
};

static const struct json_scan_spec spec = {
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .skip_keys = provider_text_skip_keys,
    .n_skip_keys = 0, /* set at run time: PROVIDER_N_TEXT_SKIP_KEYS is not a constant */
};

static struct json_scan_spec run_spec;

/* Scans body in pieces of size step (0: whole). Returns 0 or -1. */
static int scan(struct json_scan *s, const uint8_t *d, size_t n, size_t step, size_t cut)
{
    json_scan_init(s, &run_spec);
    int rc = 0;
    if (cut) {
        rc = json_scan_feed(s, (const char *)d, cut);
        if (rc == 0)
            rc = json_scan_feed(s, (const char *)d + cut, n - cut);
    } else {
        size_t at = 0;
        do {
            size_t k = step && step < n - at ? step : n - at;
            rc = json_scan_feed(s, (const char *)d + at, k);
            at += k;
        } while (rc == 0 && at < n);
    }
    if (rc == 0)
        rc = json_scan_finish(s);
    return rc;
}

static void same(const struct json_scan *a, int ra, const struct json_scan *b, int rb)
{
    CHECKF(ra == rb);
    if (ra < 0) {
        CHECKF(strcmp(a->err, b->err) == 0);
        CHECKF(a->err_at == b->err_at);
        return;
    }
    CHECKF(a->top == b->top && a->top_open == b->top_open && a->top_close == b->top_close);
    CHECKF(a->top_members == b->top_members && a->text_bytes == b->text_bytes);
    for (size_t f = 0; f < spec.n_fields; f++) {
        const struct json_scan_value *x = &a->v[f], *y = &b->v[f];
        CHECKF(x->type == y->type && x->start == y->start && x->end == y->end);
        CHECKF(x->members == y->members && x->i == y->i && x->len == y->len && x->nul == y->nul);
        CHECKF(memcmp(&x->d, &y->d, sizeof(x->d)) == 0);
        CHECKF(x->type != JSON_SCAN_STRING || strcmp(x->str, y->str) == 0);
    }
}

/* The jansson value at a dotted path, NULL if absent. */
static json_t *at_path(json_t *doc, const char *path)
{
    json_t *v = doc;
    char part[64];
    while (v) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(part) || !json_is_object(v))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        v = json_object_getn(v, part, n);
        if (path[n] != '.')
            break;
        path += n + 1;
    }
    return v;
}

static enum json_scan_type type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return JSON_SCAN_OBJECT;
    case JSON_ARRAY:
        return JSON_SCAN_ARRAY;
    case JSON_STRING:
        return JSON_SCAN_STRING;
    case JSON_INTEGER:
        return JSON_SCAN_INT;
    case JSON_REAL:
        return JSON_SCAN_REAL;
    case JSON_TRUE:
        return JSON_SCAN_TRUE;
    case JSON_FALSE:
        return JSON_SCAN_FALSE;
    case JSON_NULL:
        break;
    }
    return JSON_SCAN_NULL;
}

static void check_value(const uint8_t *d, const struct json_scan_value *x, json_t *v)
{
    if (!v) {
        CHECKF(x->type == JSON_SCAN_ABSENT);
        return;
    }
    CHECKF(x->type == type_of(v));
    switch (x->type) {
    case JSON_SCAN_INT:
        CHECKF(x->i == json_integer_value(v));
        break;
    case JSON_SCAN_REAL: {
        double a = x->d, b = json_real_value(v);
        CHECKF(a == b || fabs(a - b) <= 1e-12 * fabs(b));
        break;
    }
    case JSON_SCAN_STRING: {
        size_t n = json_string_length(v),
               kept = n < JSON_SCAN_STR_MAX - 1 ? n : JSON_SCAN_STR_MAX - 1;
        CHECKF(x->len == n);
        CHECKF(memcmp(x->str, json_string_value(v), kept) == 0 && x->str[kept] == '\0');
        CHECKF(x->nul == (memchr(json_string_value(v), '\0', n) != NULL));
        break;
    }
    case JSON_SCAN_OBJECT:
        CHECKF(x->members >= json_object_size(v)); /* nested duplicates collapse in jansson */
        break;
    case JSON_SCAN_ARRAY:
        CHECKF(x->members == json_array_size(v));
        break;
    default:
        break;
    }
    /* the offsets cut out exactly this value */
    CHECKF(x->start < x->end);
    json_t *cut = json_loadb((const char *)d + x->start, x->end - x->start,
                             JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    CHECKF(cut != NULL);
    CHECKF(json_equal(cut, v));
    json_decref(cut);
}

/* The oracle's text walk over a jansson tree, as the providers counted it
 * before the scanner: strings by length (base64 data: URLs not), 4 per
 * number, members named in provider_text_skip_keys skipped. */
static size_t text_bytes(const json_t *v)
{
    size_t total = 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        bool data_url =
            n > 5 && memcmp(s, "data:", 5) == 0 && memmem(s, n < 128 ? n : 128, ";base64,", 8);
        return data_url ? 0 : n;
    }
    if (json_is_number(v))
        return 4;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            size_t n = text_bytes(e);
            total = n > SIZE_MAX - total ? SIZE_MAX : total + n;
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            bool skip = false;
            for (size_t i = 0; i < PROVIDER_N_TEXT_SKIP_KEYS; i++)
                skip = skip || strcmp(k, provider_text_skip_keys[i]) == 0;
            if (skip)
                continue;
            size_t n = text_bytes(e);
            total = n > SIZE_MAX - total ? SIZE_MAX : total + n;
        }
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    run_spec = spec;
    run_spec.n_skip_keys = PROVIDER_N_TEXT_SKIP_KEYS;
    uint8_t ctl = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;

    static struct json_scan whole, bytes, pieces, two;
    int rw = scan(&whole, d, n, 0, 0);
    int rb = scan(&bytes, d, n, 1, 0);
    int rp = scan(&pieces, d, n, 1 + (ctl & 0x3f), 0);
    int r2 = n > 1 ? scan(&two, d, n, 0, 1 + (size_t)(ctl >> 6) * (n - 1) / 4) : rw;
    same(&whole, rw, &bytes, rb);
    same(&whole, rw, &pieces, rp);
    if (n > 1)
        same(&whole, rw, &two, r2);

    json_error_t jerr;
    json_t *doc = json_loadb((const char *)d, n, JSON_ALLOW_NUL, &jerr);
    if (memchr(d, '\0', n)) {
        CHECKF(rw < 0);
    } else if (!doc) {
        CHECKF(rw < 0);
    } else if (rw < 0) {
        /* only a duplicate top-level member is refused beyond jansson */
        CHECKF(strncmp(whole.err, "duplicate member", 16) == 0);
        json_t *strict =
            json_loadb((const char *)d, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
        CHECKF(strict == NULL);
        CHECKF(json_is_object(doc));
        const char *k = whole.keys ? whole.keys + whole.key_start : "";
        CHECKF(json_object_getn(doc, k, whole.keys_len - whole.key_start) != NULL);
    } else {
        CHECKF(whole.top == (json_is_object(doc) ? JSON_SCAN_OBJECT : JSON_SCAN_ARRAY));
        CHECKF(whole.top_members ==
               (json_is_object(doc) ? json_object_size(doc) : json_array_size(doc)));
        CHECKF(d[whole.top_open] == (json_is_object(doc) ? '{' : '['));
        CHECKF(d[whole.top_close] == (json_is_object(doc) ? '}' : ']'));
        for (size_t i = 0; i < spec.n_fields; i++)
            check_value(d, &whole.v[i], json_is_object(doc) ? at_path(doc, fields[i].path) : NULL);
        json_t *strict =
            json_loadb((const char *)d, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
        if (strict && json_is_object(strict)) {
            size_t want = 0;
            for (size_t i = 0; i < spec.n_fields; i++) {
                if (!fields[i].text)
                    continue;
                size_t b = text_bytes(json_object_get(strict, fields[i].path));
                want = b > SIZE_MAX - want ? SIZE_MAX : want + b;
            }
            CHECKF(whole.text_bytes == want);
        }
        json_decref(strict);
    }
    json_decref(doc);
    json_scan_free(&whole);
    json_scan_free(&bytes);
    json_scan_free(&pieces);
    json_scan_free(&two);
    return 0;
}

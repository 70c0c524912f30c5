/* provider.c: the provider table and the JSON helpers the provider_*.c files
 * share (counts, text estimates, request checks, error body output). Adding a
 * provider means one new file and one line in the table below. */
#include "providers/provider.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/sat.h"

static const struct provider *const table[] = {
    &provider_openai,
    &provider_anthropic,
    &provider_gemini,
};

const struct provider *provider_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < ARRAY_LEN(table); i++)
        if (strcmp(table[i]->name, name) == 0)
            return table[i];
    return NULL;
}

const struct provider *provider_at(size_t i)
{
    return i < ARRAY_LEN(table) ? table[i] : NULL;
}

bool provider_is_auth_header(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(table); i++)
        if (strcasecmp(name, table[i]->auth_header) == 0)
            return true;
    return false;
}

/* One segment s[0..n) against a glob segment p[0..m): '*' takes one or more
 * bytes. Patterns are short and hold at most a few stars, so the
 * backtracking stays small. */
static bool seg_match(const char *p, size_t m, const char *s, size_t n)
{
    if (m == 0)
        return n == 0;
    if (*p == '*') {
        for (size_t k = 1; k <= n; k++)
            if (seg_match(p + 1, m - 1, s + k, n - k))
                return true;
        return false;
    }
    return n > 0 && *p == *s && seg_match(p + 1, m - 1, s + 1, n - 1);
}

int provider_path_match(const char *pattern, const char *path)
{
    int score = 0;
    const char *p = pattern, *s = path;
    if (!p || !s)
        return -1;
    for (;;) {
        if (strcmp(p, "/**") == 0) {
            /* the rest, but never an empty segment: "/v1/x/" is not "/v1/x" */
            for (const char *q = s; *q; q++)
                if (q[0] == '/' && (q[1] == '/' || q[1] == '\0'))
                    return -1;
            return score;
        }
        if (*p == '\0' || *s == '\0')
            return *p == '\0' && *s == '\0' ? score : -1;
        if (*p != '/' || *s != '/')
            return -1;
        p++;
        s++;
        size_t m = strcspn(p, "/"), n = strcspn(s, "/");
        if (n == 0 || !seg_match(p, m, s, n))
            return -1;
        for (size_t i = 0; i < m; i++)
            score += p[i] != '*';
        p += m;
        s += n;
    }
}

const struct provider_route *provider_route_find(const struct provider *p, const char *method,
                                                 const char *path)
{
    for (size_t i = 0; p && i < p->n_routes; i++) {
        const struct provider_route *row = &p->routes[i];
        /* a metered row takes its path under any method: the proxy answers
         * 405 to another one rather than let it pass as free or unknown */
        if (row->method && row->cls != ROUTE_METERED &&
            (!method || strcmp(row->method, method) != 0))
            continue;
        if (provider_path_match(row->path, path) >= 0)
            return row;
    }
    return NULL;
}

const struct provider *provider_claiming(const char *path)
{
    const struct provider *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < ARRAY_LEN(table); i++) {
        for (size_t k = 0; k < table[i]->n_claims; k++) {
            int sc = provider_path_match(table[i]->claims[k], path);
            if (sc > best_score) {
                best_score = sc;
                best = table[i];
            }
        }
    }
    return best;
}

void provider_call_init(struct provider_call *call, const char *endpoint,
                        const struct provider_route *row)
{
    *call = (struct provider_call){
        .endpoint = endpoint,
        .kind = row ? row->kind : 0,
        .metered = row && row->cls == ROUTE_METERED,
    };
}

void provider_prepare_begin(struct provider_call *call)
{
    call->stream = false;
    call->strip_usage = false;
    call->model[0] = '\0';
    call->est_input_tokens = 0;
    call->max_output_tokens = 0;
    call->choices = 1;
    call->n_edits = 0;
    call->tier = USAGE_TIER_STANDARD;
}

void provider_prepare_forwarded(struct provider_call *call, const struct json_scan *body)
{
    call->stream = provider_body_get(body, "stream")->type == JSON_SCAN_TRUE;
    provider_body_str(body, "model", call->model, sizeof(call->model));
}

int provider_body_is_object(const struct json_scan *body, char *err, size_t errlen)
{
    if (body->top == JSON_SCAN_OBJECT)
        return 0;
    snprintf(err, errlen, "the request body must be a JSON object");
    return -1;
}

const char *provider_route_class_name(enum route_class c)
{
    switch (c) {
    case ROUTE_METERED:
        return "metered";
    case ROUTE_FREE:
        return "free";
    case ROUTE_UNKNOWN:
        break;
    }
    return "unknown";
}

int64_t provider_estimate_tokens(size_t bytes)
{
    if (bytes == 0)
        return 0;
    size_t t = bytes / 4 + (bytes % 4 != 0);
    return t > (size_t)INT64_MAX ? INT64_MAX : (int64_t)t;
}

int64_t provider_output_bound(const struct provider_call *call, int64_t model_max)
{
    int64_t per = call->max_output_tokens > 0 ? call->max_output_tokens
                  : model_max > 0             ? model_max
                                              : PROVIDER_UNLISTED_MAX_OUTPUT;
    return provider_sat_mul(per, call->choices > 1 ? call->choices : 1);
}

static bool count_key(const char *k)
{
    size_t n = strlen(k);
    static const char *const ends[] = {"_tokens", "Tokens", "TokenCount", "tokenCount"};
    for (size_t i = 0; i < ARRAY_LEN(ends); i++) {
        size_t e = strlen(ends[i]);
        if (n >= e && strcmp(k + n - e, ends[i]) == 0)
            return true;
    }
    return false;
}

static bool count_ok(const json_t *v)
{
    if (json_is_null(v))
        return true;
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 && json_integer_value(v) <= PROVIDER_MAX_USAGE_TOKENS;
    if (json_is_real(v)) { /* 12.0 is a count; 12.5, -1.0 and 1e300 are not */
        double d = json_real_value(v);
        return d >= 0 && d <= PROVIDER_MAX_USAGE_TOKENS && d == (double)(int64_t)d;
    }
    return false;
}

static bool usage_ok(const json_t *v, int depth)
{
    if (depth > 8)
        return true;
    const char *k;
    json_t *e;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            if (count_key(k) && !json_is_object(e) && !json_is_array(e) && !count_ok(e))
                return false;
            if (!usage_ok(e, depth + 1))
                return false;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e) if (!usage_ok(e, depth + 1)) return false;
    }
    return true;
}

void provider_check_usage(struct meter *m, const json_t *usage)
{
    if (!usage_ok(usage, 0))
        m->usage_invalid = true;
}

void provider_on_json(const struct provider *p, struct meter *m, const struct provider_call *call,
                      const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    p->on_doc(m, call, j);
    json_decref(j);
}

int64_t provider_sat_mul(int64_t a, int64_t b)
{
    if (a <= 0 || b <= 0)
        return 0;
    return sat_mul(a, b);
}

int64_t provider_sat_add(int64_t a, int64_t b)
{
    if (a < 0)
        a = 0;
    if (b < 0)
        b = 0;
    return sat_add(a, b);
}

int64_t provider_json_count(const json_t *obj, const char *key)
{
    if (!json_is_object(obj))
        return 0;
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n > 0 ? (int64_t)n : 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d <= 0)
            return 0;
        return d >= 9.2e18 ? INT64_MAX : (int64_t)d;
    }
    return 0;
}

bool provider_json_has(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v);
}

void provider_copy_str(char *dst, size_t cap, const json_t *v)
{
    if (!json_is_string(v) || cap == 0)
        return;
    size_t n = json_string_length(v);
    if (n > cap - 1)
        n = cap - 1;
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
}

/* Members whose values are binary payloads (base64) or references, not text
 * the model reads as tokens one-for-four: OpenAI image_url/input_audio/file,
 * Anthropic image/document source, Gemini inlineData/fileData. */
const char *const provider_text_skip_keys[PROVIDER_N_TEXT_SKIP_KEYS] = {
    "image_url",  "input_audio", "file",     "file_data", "source",
    "inlineData", "inline_data", "fileData", "file_id",   "image",
};
/* (a shorter list would leave NULLs: test_provider checks there are none) */

/* ---- request bodies, as scanned (http/json_scan.h) ---- */

const struct json_scan_value *provider_body_get(const struct json_scan *body, const char *path)
{
    static const struct json_scan_value absent = {.type = JSON_SCAN_ABSENT};
    if (!body || !body->spec)
        return &absent;
    for (size_t i = 0; i < body->spec->n_fields; i++)
        if (strcmp(body->spec->fields[i].path, path) == 0)
            return body->top == JSON_SCAN_OBJECT ? &body->v[i] : &absent;
    /* A path missing from the provider's body_fields would read as absent
     * and silently skip its check: a defect in the provider's file, found by
     * the first test that takes that branch. */
    fprintf(stderr, "provider_body_get: \"%s\" is not in the provider's body_fields\n", path);
    abort();
}

bool provider_body_has(const struct json_scan *body, const char *path)
{
    enum json_scan_type t = provider_body_get(body, path)->type;
    return t != JSON_SCAN_ABSENT && t != JSON_SCAN_NULL;
}

int64_t provider_body_int(const struct json_scan *body, const char *path)
{
    const struct json_scan_value *v = provider_body_get(body, path);
    if (v->type == JSON_SCAN_INT)
        return v->i > 0 ? v->i : 0;
    if (v->type == JSON_SCAN_REAL) {
        if (!isfinite(v->d) || v->d <= 0)
            return 0;
        return v->d >= 9.2e18 ? INT64_MAX : (int64_t)v->d;
    }
    return 0;
}

void provider_body_str(const struct json_scan *body, const char *path, char *dst, size_t cap)
{
    const struct json_scan_value *v = provider_body_get(body, path);
    if (v->type == JSON_SCAN_STRING && cap > 0)
        snprintf(dst, cap, "%s", v->str);
}

int64_t provider_body_tokens(const struct json_scan *body)
{
    return body && body->top == JSON_SCAN_OBJECT ? provider_estimate_tokens(body->text_bytes) : 0;
}

/* The member's own name in messages: "maxOutputTokens" for
 * "generationConfig.maxOutputTokens". */
static const char *leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

int provider_body_model(const struct json_scan *body, bool required, char *model, size_t cap,
                        char *err, size_t errlen)
{
    const struct json_scan_value *v = provider_body_get(body, "model");
    if (v->type == JSON_SCAN_ABSENT || v->type == JSON_SCAN_NULL) {
        if (!required)
            return 0;
        snprintf(err, errlen, "`model` is required: a string naming the model");
        return -1;
    }
    if (v->type != JSON_SCAN_STRING) {
        snprintf(err, errlen, "`model` must be a string naming the model");
        return -1;
    }
    size_t n = v->len;
    if (n == 0) {
        snprintf(err, errlen, "`model` must not be empty");
        return -1;
    }
    if (n >= cap || n >= sizeof(v->str)) {
        snprintf(err, errlen, "`model` is too long (at most %zu bytes)",
                 (cap < sizeof(v->str) ? cap : sizeof(v->str)) - 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v->str[i] < 0x20 || v->str[i] == 0x7f) {
            snprintf(err, errlen, "`model` must not contain control characters");
            return -1;
        }
    }
    memcpy(model, v->str, n);
    model[n] = '\0';
    return 0;
}

int provider_body_bool(const struct json_scan *body, const char *path, bool *out, char *err,
                       size_t errlen)
{
    const struct json_scan_value *v = provider_body_get(body, path);
    if (v->type == JSON_SCAN_ABSENT || v->type == JSON_SCAN_NULL)
        return 0;
    if (v->type != JSON_SCAN_TRUE && v->type != JSON_SCAN_FALSE) {
        snprintf(err, errlen, "`%s` must be true or false", leaf(path));
        return -1;
    }
    *out = v->type == JSON_SCAN_TRUE;
    return 0;
}

int provider_body_count(const struct json_scan *body, const char *path, int64_t min, int64_t max,
                        int64_t *out, char *err, size_t errlen)
{
    const struct json_scan_value *v = provider_body_get(body, path);
    if (v->type == JSON_SCAN_ABSENT || v->type == JSON_SCAN_NULL)
        return 0;
    if (v->type != JSON_SCAN_INT || v->i < min) {
        snprintf(err, errlen, "`%s` must be an integer of at least %lld", leaf(path),
                 (long long)min);
        return -1;
    }
    *out = v->i > max ? max : v->i;
    return 0;
}

int provider_body_object(const struct json_scan *body, const char *path, char *err, size_t errlen)
{
    enum json_scan_type t = provider_body_get(body, path)->type;
    if (t == JSON_SCAN_ABSENT || t == JSON_SCAN_NULL || t == JSON_SCAN_OBJECT)
        return 0;
    snprintf(err, errlen, "`%s` must be an object", leaf(path));
    return -1;
}

int provider_add_edit(struct provider_call *call, size_t start, size_t end, const char *text,
                      size_t len)
{
    if (call->n_edits == PROVIDER_MAX_EDITS || len > sizeof(call->edits[0].text) || end < start)
        return -1;
    size_t i = call->n_edits;
    while (i > 0 && call->edits[i - 1].start > start) {
        call->edits[i] = call->edits[i - 1];
        i--;
    }
    struct provider_edit *e = &call->edits[i];
    e->start = start;
    e->end = end;
    e->len = len;
    memcpy(e->text, text, len);
    call->n_edits++;
    return 0;
}

json_t *provider_json_message(const char *msg)
{
    json_t *s = json_string(msg);
    if (s)
        return s;
    /* Not UTF-8: keep the ASCII, mark the rest. */
    size_t n = strlen(msg);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
    copy[n] = '\0';
    s = json_string(copy);
    free(copy);
    return s;
}

void provider_write_json(struct evbuffer *out, json_t *v, const char *fallback)
{
    /* Encode to memory first so a failure never leaves half a body. */
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!s || evbuffer_add(out, s, strlen(s)) < 0)
        evbuffer_add(out, fallback, strlen(fallback));
    free(s);
    json_decref(v);
}

/* s as a JSON string into out (cap bytes); returns its length, 0 if it
 * does not fit. */
static size_t json_quote(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    if (cap < 2)
        return 0;
    out[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t k = 1;
        esc[0] = (char)c;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            k = 2;
        } else if (c < 0x20) {
            k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        }
        if (n + k + 1 > cap)
            return 0;
        memcpy(out + n, esc, k);
        n += k;
    }
    out[n++] = '"';
    return n;
}

int provider_set_body_model(struct provider_call *call, const struct json_scan *body, char *path,
                            size_t pathlen, const char *model)
{
    if (!body || body->top != JSON_SCAN_OBJECT)
        return -1;
    char text[sizeof(call->edits[0].text)];
    const struct json_scan_value *v = provider_body_get(body, "model");
    if (v->type != JSON_SCAN_ABSENT) { /* the value replaced */
        size_t n = json_quote(model, text, sizeof(text));
        return n ? provider_add_edit(call, v->start, v->end, text, n) : -1;
    }
    /* a new last member (the front is where include_usage goes) */
    size_t k = (size_t)snprintf(text, sizeof(text), "%s\"model\":", body->top_members ? "," : "");
    size_t n = json_quote(model, text + k, sizeof(text) - k);
    return n ? provider_add_edit(call, body->top_close, body->top_close, text, k + n) : -1;
}

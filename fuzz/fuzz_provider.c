/* fuzz_provider.c: libFuzzer target for each provider's prepare, on_doc (from text) and
 * on_event (provider_openai.c, provider_anthropic.c, provider_gemini.c).
 *
 * Input: byte 0 = provider (bits 0-1: openai, anthropic, gemini, openai) and
 * mode (bits 2-3: 0 prepare, 1 on_doc from text, 2 SSE stream through sse.c to
 * on_event, 3 prepare then the stream); bits 4-7 pick the endpoint from the
 * provider's list, 15 = the endpoint is the input up to its first '\n'
 * (mode 2: bits 4-7 >= 8 also set strip_usage).
 * The rest is the request body, the JSON answer or the SSE stream (mode 3:
 * body, a '\0' byte, then the stream). Checked (abort on violation): no
 * crash; usage counters never negative and subsets within their totals;
 * seen set by any non-zero count and never unset; strings NUL-terminated;
 * prepare returns 0 or -1 with a message, and the body with its edits
 * (include_usage, a downgrade's model) spliced in is still JSON that says
 * so. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/answer.h"
#include "providers/provider.h"

#define CHECKF(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_provider: invariant failed: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const endpoints[3][8] = {
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/models", "",
     NULL},
    {"/v1/messages", "/v1/messages/count_tokens", "/v1/models", "", NULL},
    {"/v1beta/models/gemini-2.0-flash:generateContent",
     "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
     "/v1beta/tunedModels/my-model:generateContent", "/v1beta/models/gemini-2.0-flash:countTokens",
     "/v1beta/models", "/v1beta/models/:generateContent", "", NULL},
};

struct state {
    const struct provider *prov;
    struct provider_call call;
    struct meter m;
    struct usage prev;
};

static void check_str(const char *s, size_t cap)
{
    CHECKF(memchr(s, '\0', cap) != NULL);
}

static void check_usage(const struct usage *u, const struct usage *prev)
{
    CHECKF(u->input >= 0 && u->cached >= 0 && u->cache_write >= 0 && u->output >= 0 &&
           u->reasoning >= 0);
    CHECKF(u->cached <= u->input && u->cache_write <= u->input && u->reasoning <= u->output);
    if (u->input || u->cached || u->cache_write || u->output || u->reasoning)
        CHECKF(u->seen); /* counts only come from a reported usage */
    if (prev->seen)
        CHECKF(u->seen);   /* once reported, usage is never lost */
    CHECKF(!u->estimated); /* providers report, never estimate */
}

static void check_meter(struct state *s)
{
    check_str(s->m.model, sizeof(s->m.model));
    check_usage(&s->m.usage, &s->prev);
    s->prev = s->m.usage;
}

static void on_sse(const struct sse_event *ev, void *arg)
{
    struct state *s = arg;
    bool drop = false;
    bool was_done = s->m.done, was_error = s->m.stream_error;
    size_t was_text = s->m.text_bytes;
    s->prov->on_event(&s->m, &s->call, ev, &drop);
    check_meter(s);
    CHECKF(!was_done || s->m.done); /* flags only go up */
    CHECKF(!was_error || s->m.stream_error);
    CHECKF(s->m.text_bytes >= was_text);
    if (drop)
        CHECKF(s->call.strip_usage); /* only the chunk the proxy asked for */
}

/* The body with the call's edits spliced in, as the proxy forwards it. */
static char *apply_edits(const uint8_t *body, size_t len, const struct provider_call *call,
                         size_t *out_len)
{
    size_t n = len, at = 0;
    for (size_t i = 0; i < call->n_edits; i++)
        n += call->edits[i].len;
    char *out = malloc(n + 1), *o = out;
    CHECKF(out != NULL);
    for (size_t i = 0; i < call->n_edits; i++) {
        const struct provider_edit *e = &call->edits[i];
        CHECKF(e->start >= at && e->end >= e->start && e->end <= len);
        memcpy(o, body + at, e->start - at);
        o += e->start - at;
        memcpy(o, e->text, e->len);
        o += e->len;
        at = e->end;
    }
    memcpy(o, body + at, len - at);
    o += len - at;
    *out_len = (size_t)(o - out);
    return out;
}

static void do_prepare(struct state *s, const uint8_t *body, size_t len)
{
    static struct json_scan scan;
    json_scan_init(&scan, s->prov->body_fields);
    bool valid =
        json_scan_feed(&scan, (const char *)body, len) == 0 && json_scan_finish(&scan) == 0;
    const struct json_scan *j = valid ? &scan : NULL;
    char err[256];
    err[0] = '\0';
    memset(s->call.model, 'x', sizeof(s->call.model)); /* prepare must set it */
    s->call.n_edits = 7;                               /* and reset the edits */
    int rc = s->prov->prepare(&s->call, j, err, sizeof(err));
    CHECKF(rc == 0 || rc == -1);
    check_str(s->call.model, sizeof(s->call.model));
    CHECKF(s->call.n_edits <= PROVIDER_MAX_EDITS);
    if (rc < 0) {
        CHECKF(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
    } else {
        CHECKF(s->call.est_input_tokens >= 0 && s->call.max_output_tokens >= 0);
        CHECKF(!s->call.strip_usage || s->call.stream);
        if (!j)
            CHECKF(s->call.n_edits == 0);
        /* a downgrade on top, when the body names a model */
        char path[256];
        snprintf(path, sizeof(path), "%s", s->call.endpoint ? s->call.endpoint : "");
        bool down = j && s->call.metered &&
                    s->prov->set_model(&s->call, j, path, sizeof(path), "dg\"\n") == 0;
        if (s->call.n_edits) {
            size_t n;
            char *out = apply_edits(body, len, &s->call, &n);
            json_t *back = json_loadb(out, n, JSON_ALLOW_NUL, NULL);
            CHECKF(back != NULL); /* what goes upstream is still JSON */
            if (s->call.strip_usage)
                CHECKF(json_is_true(
                    json_object_get(json_object_get(back, "stream_options"), "include_usage")));
            if (down && strcmp(s->prov->name, "gemini") != 0)
                CHECKF(strcmp(json_string_value(json_object_get(back, "model")), "dg\"\n") == 0);
            json_decref(back);
            free(out);
        }
    }
    json_scan_free(&scan);
}

static void do_stream(struct state *s, const uint8_t *in, size_t len)
{
    struct sse_parser p;
    sse_init(&p, 1 << 20, false);
    /* two feeds, cut in the middle: on_event sees the same events anyway */
    size_t cut = len / 2;
    CHECKF(sse_feed(&p, (const char *)in, cut, on_sse, s) == 0);
    CHECKF(sse_feed(&p, (const char *)in + cut, len - cut, on_sse, s) == 0);
    (void)sse_finish(&p, NULL, NULL);
    sse_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const struct provider *const provs[4] = {&provider_openai, &provider_anthropic,
                                                    &provider_gemini, &provider_openai};
    struct state s;
    memset(&s, 0, sizeof(s));
    int pi = data[0] & 3;
    s.prov = provs[pi];
    int mode = (data[0] >> 2) & 3;
    int ep = data[0] >> 4;
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    char endpoint[512];
    if (ep == 15) {
        const uint8_t *nl = memchr(in, '\n', len);
        size_t n = nl ? (size_t)(nl - in) : len;
        if (n >= sizeof(endpoint))
            n = sizeof(endpoint) - 1;
        memcpy(endpoint, in, n);
        endpoint[n] = '\0';
        size_t skip = nl ? (size_t)(nl - in) + 1 : len;
        in += skip;
        len -= skip;
    } else {
        const char *const *list = endpoints[pi == 3 ? 0 : pi];
        size_t count = 0;
        while (list[count])
            count++;
        snprintf(endpoint, sizeof(endpoint), "%s", list[(size_t)ep % count]);
    }
    provider_call_init(&s.call, endpoint, provider_route_find(s.prov, "POST", endpoint));

    switch (mode) {
    case 0:
        do_prepare(&s, in, len);
        break;
    case 1:
        provider_on_json(s.prov, &s.m, &s.call, (const char *)in, len);
        check_meter(&s);
        /* a second answer on the same meter (retries reuse nothing, but
         * on_doc must cope with a meter that already holds usage) */
        provider_on_json(s.prov, &s.m, &s.call, (const char *)in, len);
        check_meter(&s);
        {
            /* the answer scanner (answer.c) on the same bytes, in two
             * pieces: a valid meter, the same usage whatever the split */
            struct answer a;
            struct meter m1 = {0}, m2 = {0};
            size_t cut = len ? (size_t)ep * 7919 % (len + 1) : 0;
            if (answer_init(&a, s.prov) == 0) {
                answer_feed(&a, (const char *)in, len);
                answer_finish(&a, &m1, &s.call);
                answer_free(&a);
            }
            if (answer_init(&a, s.prov) == 0) {
                answer_feed(&a, (const char *)in, cut);
                answer_feed(&a, (const char *)in + cut, len - cut);
                answer_finish(&a, &m2, &s.call);
                answer_free(&a);
            }
            CHECKF(m1.usage.input == m2.usage.input && m1.usage.output == m2.usage.output &&
                   m1.usage.cached == m2.usage.cached && m1.usage.reasoning == m2.usage.reasoning &&
                   m1.usage.cache_write == m2.usage.cache_write && m1.usage.seen == m2.usage.seen);
            CHECKF(strcmp(m1.model, m2.model) == 0);
            CHECKF(m1.usage.input >= 0 && m1.usage.output >= 0);
        }
        break;
    case 2:
        s.call.strip_usage = ep >= 8; /* as prepare sets it for a stream it edited */
        s.call.stream = true;
        do_stream(&s, in, len);
        break;
    case 3: {
        const uint8_t *z = memchr(in, '\0', len);
        size_t blen = z ? (size_t)(z - in) : len;
        do_prepare(&s, in, blen);
        if (z)
            do_stream(&s, z + 1, len - blen - 1);
        break;
    }
    }
    return 0;
}

/* test_provider.c: the provider modules. Usage from recorded streams
 * (tests/captures) fed through the SSE parser at every split point, with the
 * OpenAI usage-only chunk stripped byte-exactly; usage from event sequences
 * and whole JSON answers; request checks and the include_usage rewrite; error
 * bodies in each dialect, parsed back. Run from the repository root, as make
 * does (or set TOLLGATE_SRCDIR). */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>

#include "capture.h"
#include "check.h"
#include "providers/answer.h"
#include "providers/provider.h"

static bool same_usage(const struct usage *a, const struct usage *b)
{
    return a->input == b->input && a->cached == b->cached && a->cache_write == b->cache_write &&
           a->output == b->output && a->reasoning == b->reasoning && a->seen == b->seen &&
           a->estimated == b->estimated;
}

static void print_usage(const char *what, const struct usage *u)
{
    fprintf(stderr,
            "  %s: input %lld cached %lld cache_write %lld output %lld reasoning %lld seen %d\n",
            what, (long long)u->input, (long long)u->cached, (long long)u->cache_write,
            (long long)u->output, (long long)u->reasoning, u->seen);
}

#define USAGE(i, c, w, o, r)                                                                       \
    {                                                                                              \
        .input = i, .cached = c, .cache_write = w, .output = o, .reasoning = r, .seen = true       \
    }

/* ---- streams: capture -> sse -> on_event, at every split ---- */

struct stream_run {
    const struct provider *prov;
    struct provider_call *call;
    struct meter m;
    struct buf out;     /* what the proxy would forward */
    struct buf dropped; /* raw of the dropped events (whole-feed run) */
    int drops;
    bool prev_kept;
    bool prev_cr;
};

static void stream_ev(const struct sse_event *ev, void *arg)
{
    struct stream_run *r = arg;
    bool drop = false;
    r->prov->on_event(&r->m, r->call, ev, &drop);
    /* Lead bytes end the previous event: forwarded only if it was. */
    if (ev->raw_lead && r->prev_kept)
        buf_add(&r->out, ev->raw, ev->raw_lead);
    if (drop) {
        r->drops++;
        buf_add(&r->dropped, ev->raw + ev->raw_lead, ev->raw_len - ev->raw_lead);
    } else {
        buf_add(&r->out, ev->raw + ev->raw_lead, ev->raw_len - ev->raw_lead);
    }
    r->prev_kept = !drop;
    r->prev_cr = ev->raw_len && ev->raw[ev->raw_len - 1] == '\r';
}

static void stream_rest(const char *raw, size_t len, void *arg)
{
    struct stream_run *r = arg;
    size_t lead = !r->prev_kept && r->prev_cr && len && raw[0] == '\n';
    buf_add(&r->out, raw + lead, len - lead);
}

/* Feeds in at split (len: whole) and returns whether the stream was cut. */
static bool stream_feed(struct stream_run *r, const char *in, size_t len, size_t split)
{
    struct sse_parser p;
    sse_init(&p, 1 << 20, true);
    r->prev_kept = true;
    CHECK(sse_feed(&p, in, split, stream_ev, r) == 0);
    CHECK(sse_feed(&p, in + split, len - split, stream_ev, r) == 0);
    bool partial = sse_finish(&p, stream_rest, r);
    sse_free(&p);
    return partial;
}

static const struct {
    const char *file, *provider, *endpoint;
    bool strip;
    struct usage want;
    const char *model;
    size_t text_bytes;
    bool done, stream_error;
    int drops;
} streams[] = {
    {"openai_chat_usage.sse", "openai", "/v1/chat/completions", true, USAGE(17, 0, 0, 10, 0),
     "gpt-4o-2024-08-06", 3, true, false, 1},
    {"openai_chat_usage.sse", "openai", "/v1/chat/completions", false, USAGE(17, 0, 0, 10, 0),
     "gpt-4o-2024-08-06", 3, true, false, 0},
    {"openai_chat_reasoning_crlf.sse", "openai", "/v1/chat/completions", true,
     USAGE(1117, 1024, 0, 846, 800), "o4-mini-2025-04-16", 27, true, false, 1},
    {"openai_chat_nousage.sse",
     "openai",
     "/v1/chat/completions",
     true,
     {0},
     "gpt-4o-2024-08-06",
     11,
     true,
     false,
     0},
    {"openai_comments.sse", "openai", "/v1/chat/completions", true, USAGE(5, 0, 0, 2, 0),
     "llama-3.1-70b", 3, true, false, 1},
    {"openai_responses.sse", "openai", "/v1/responses", false, USAGE(10, 0, 0, 16, 0), "gpt-4-0613",
     9, true, false, 0},
    {"openai_error.sse",
     "openai",
     "/v1/chat/completions",
     true,
     {0},
     "gpt-4o-2024-08-06",
     3,
     false,
     true,
     0},
    {"anthropic_basic.sse", "anthropic", "/v1/messages", false, USAGE(11, 0, 0, 6, 0),
     "claude-opus-4-8", 5, true, false, 0},
    {"anthropic_cache.sse", "anthropic", "/v1/messages", false,
     USAGE(31 + 188086 + 2048, 2048, 188086, 547, 120), "claude-sonnet-4-5-20250929", 32, true,
     false, 0},
    {"gemini_crlf.sse", "gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", false,
     USAGE(6, 3, 0, 377 + 179, 179), "gemini-2.5-flash", 16, true, false, 0},
};

static void test_streams(void)
{
    for (size_t i = 0; i < ARRAY_LEN(streams); i++) {
        size_t len;
        char *in = load(streams[i].file, &len);
        CHECK(in != NULL);
        if (!in)
            continue;
        struct provider_call call = {.endpoint = streams[i].endpoint,
                                     .strip_usage = streams[i].strip};
        /* The whole-feed run gives the dropped bytes; the others must forward
         * exactly the input without them. */
        struct stream_run whole = {.prov = provider_find(streams[i].provider), .call = &call};
        CHECK(!stream_feed(&whole, in, len, len));
        struct buf want = {0};
        const char *at = whole.dropped.n ? memmem(in, len, whole.dropped.p, whole.dropped.n) : NULL;
        if (whole.dropped.n) {
            CHECK(at != NULL);
            CHECK(strstr(whole.dropped.p, "\"usage\":{") != NULL);
        }
        if (at) {
            buf_add(&want, in, (size_t)(at - in));
            buf_add(&want, at + whole.dropped.n, len - (size_t)(at - in) - whole.dropped.n);
        } else {
            buf_add(&want, in, len);
        }
        for (size_t split = 0; split <= len; split++) {
            struct stream_run r = {.prov = whole.prov, .call = &call};
            stream_feed(&r, in, len, split);
            bool ok = same_usage(&r.m.usage, &streams[i].want) &&
                      strcmp(r.m.model, streams[i].model) == 0 &&
                      r.m.text_bytes == streams[i].text_bytes && r.m.done == streams[i].done &&
                      r.m.stream_error == streams[i].stream_error && r.drops == streams[i].drops &&
                      r.out.n == want.n && want.n && memcmp(r.out.p, want.p, want.n) == 0;
            if (!ok) {
                fprintf(stderr,
                        "  %s (strip %d) split at %zu: model %s text %zu done %d error %d drops %d "
                        "out %zu/%zu\n",
                        streams[i].file, streams[i].strip, split, r.m.model, r.m.text_bytes,
                        r.m.done, r.m.stream_error, r.drops, r.out.n, want.n);
                print_usage("got ", &r.m.usage);
                print_usage("want", &streams[i].want);
                CHECK(ok);
                split = len; /* one report per stream */
            }
            free(r.out.p);
            free(r.dropped.p);
        }
        free(want.p);
        free(whole.out.p);
        free(whole.dropped.p);
        free(in);
    }
}

/* A cut stream: every truncated prefix of the Anthropic stream gives the
 * usage known so far and never claims done before message_stop. */
static void test_truncated(void)
{
    size_t len;
    char *in = load("anthropic_cache.sse", &len);
    CHECK(in != NULL);
    if (!in)
        return;
    const char *stop = strstr(in, "event: message_stop");
    const char *start_end = strstr(in, "}               }\n\n");
    CHECK(stop && start_end);
    if (!stop || !start_end) {
        free(in);
        return;
    }
    struct provider_call call = {.endpoint = "/v1/messages"};
    for (size_t cut = 0; cut < len; cut++) {
        struct stream_run r = {.prov = &provider_anthropic, .call = &call};
        bool partial = stream_feed(&r, in, cut, cut);
        CHECK(!r.m.done);
        /* Until message_start is complete no usage is known. */
        if (cut < (size_t)(start_end - in) + 19)
            CHECK(!r.m.usage.seen);
        else
            CHECK(r.m.usage.seen && r.m.usage.cache_write == 188086);
        if (cut == (size_t)(stop - in))
            CHECK(!partial && r.m.usage.output == 547);
        CHECK(r.out.n == cut && (cut == 0 || memcmp(r.out.p, in, cut) == 0));
        free(r.out.p);
        free(r.dropped.p);
    }
    free(in);
}

/* ---- event sequences ---- */

struct evspec {
    const char *event, *data;
};

static const struct {
    const char *name, *provider, *endpoint;
    bool strip;
    struct evspec ev[4];
    struct usage want;
    bool done, stream_error;
    int drops;
} sequences[] = {
    {"gemini chunk without usage keeps the last",
     "gemini",
     "/v1beta/models/g:streamGenerateContent",
     false,
     {{NULL, "{\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4}}"},
      {NULL, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":"
             "\"STOP\"}]}"}},
     USAGE(9, 0, 0, 4, 0),
     true,
     false,
     0},
    {"gemini explicit zeros are seen",
     "gemini",
     "/v1beta/models/g:streamGenerateContent",
     false,
     {{NULL, "{\"usageMetadata\":{\"promptTokenCount\":0}}"}},
     USAGE(0, 0, 0, 0, 0),
     false,
     false,
     0},
    {"gemini tool-use prompt counts as input",
     "gemini",
     "/v1beta/models/g:generateContent",
     false,
     {{NULL, "{\"usageMetadata\":{\"promptTokenCount\":10,\"toolUsePromptTokenCount\":5,"
             "\"cachedContentTokenCount\":4}}"}},
     USAGE(15, 4, 0, 0, 0),
     false,
     false,
     0},
    {"gemini error member",
     "gemini",
     "/v1beta/models/g:streamGenerateContent",
     false,
     {{NULL, "{\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}"}},
     {0},
     false,
     true,
     0},
    {"openai last usage wins",
     "openai",
     "/v1/chat/completions",
     true,
     {{NULL, "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}"},
      {NULL, "{\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,"
             "\"prompt_tokens_details\":{\"cached_tokens\":2,\"cache_write_tokens\":4}}}"}},
     USAGE(7, 2, 4, 3, 0),
     false,
     false,
     2},
    {"openai usage null is not usage",
     "openai",
     "/v1/chat/completions",
     true,
     {{NULL, "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}"}, {NULL, "[DONE]"}},
     {0},
     true,
     false,
     0},
    {"openai usage on a content chunk is kept",
     "openai",
     "/v1/chat/completions",
     true,
     {{NULL, "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":3}}"}},
     USAGE(3, 0, 0, 0, 0),
     false,
     false,
     0},
    {"openai usage without choices member is dropped",
     "openai",
     "/v1/completions",
     true,
     {{NULL, "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":0}}"}},
     USAGE(3, 0, 0, 0, 0),
     false,
     false,
     1},
    {"openai not stripped when prepare did not ask",
     "openai",
     "/v1/chat/completions",
     false,
     {{NULL, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}"}},
     USAGE(3, 0, 0, 0, 0),
     false,
     false,
     0},
    {"openai subsets clamped",
     "openai",
     "/v1/chat/completions",
     false,
     {{NULL, "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"prompt_tokens_details\":"
             "{\"cached_tokens\":9},\"completion_tokens_details\":{\"reasoning_tokens\":5}}}"}},
     USAGE(3, 3, 0, 2, 2),
     false,
     false,
     0},
    {"openai responses failed",
     "openai",
     "/v1/responses",
     false,
     {{"error", "{\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\",\"param\":null}"},
      {"response.failed", "{\"type\":\"response.failed\",\"response\":{\"model\":\"gpt-5\","
                          "\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}"}},
     USAGE(5, 0, 0, 1, 0),
     true,
     true,
     0},
    {"openai responses incomplete with details",
     "openai",
     "/v1/responses",
     false,
     {{"response.incomplete",
       "{\"type\":\"response.incomplete\",\"response\":{\"usage\":{\"input_tokens\":50,"
       "\"input_tokens_details\":{\"cached_tokens\":20},\"output_tokens\":30,"
       "\"output_tokens_details\":{\"reasoning_tokens\":25}}}}"}},
     USAGE(50, 20, 0, 30, 25),
     true,
     false,
     0},
    {"anthropic stream died after message_start",
     "anthropic",
     "/v1/messages",
     false,
     {{"message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,"
                        "\"cache_read_input_tokens\":100,\"output_tokens\":1}}}"}},
     USAGE(111, 100, 0, 1, 0),
     false,
     false,
     0},
    {"anthropic error event, data not JSON",
     "anthropic",
     "/v1/messages",
     false,
     {{"error", "Overloaded"}},
     {0},
     false,
     true,
     0},
    {"anthropic error event",
     "anthropic",
     "/v1/messages",
     false,
     {{"error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                "\"message\":\"Overloaded\"}}"}},
     {0},
     false,
     true,
     0},
    {"anthropic delta output is cumulative, not added",
     "anthropic",
     "/v1/messages",
     false,
     {{"message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":2,"
                        "\"output_tokens\":1}}}"},
      {"message_delta", "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":10}}"},
      {"message_delta", "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15,"
                        "\"input_tokens\":null,\"cache_creation_input_tokens\":7}}"},
      {"message_stop", "{\"type\":\"message_stop\"}"}},
     USAGE(9, 0, 7, 15, 0),
     true,
     false,
     0},
};

static void test_sequences(void)
{
    for (size_t i = 0; i < ARRAY_LEN(sequences); i++) {
        const struct provider *prov = provider_find(sequences[i].provider);
        struct provider_call call = {.endpoint = sequences[i].endpoint,
                                     .strip_usage = sequences[i].strip};
        struct meter m = {0};
        int drops = 0;
        for (size_t k = 0; k < ARRAY_LEN(sequences[i].ev) && sequences[i].ev[k].data; k++) {
            const struct evspec *e = &sequences[i].ev[k];
            struct sse_event ev = {.event = e->event ? e->event : "",
                                   .event_len = e->event ? strlen(e->event) : 0,
                                   .data = e->data,
                                   .data_len = strlen(e->data)};
            bool drop = false;
            prov->on_event(&m, &call, &ev, &drop);
            drops += drop;
        }
        bool ok = same_usage(&m.usage, &sequences[i].want) && m.done == sequences[i].done &&
                  m.stream_error == sequences[i].stream_error && drops == sequences[i].drops;
        if (!ok) {
            fprintf(stderr, "  %s: done %d error %d drops %d\n", sequences[i].name, m.done,
                    m.stream_error, drops);
            print_usage("got ", &m.usage);
            print_usage("want", &sequences[i].want);
            CHECK(ok);
        }
    }
}

/* ---- whole JSON answers ---- */

static const struct {
    const char *provider, *endpoint, *body;
    struct usage want;
    const char *model;
} answers[] = {
    {"openai", "/v1/chat/completions",
     "{\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-2024-08-06\","
     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Here\"},"
     "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":46,"
     "\"total_tokens\":1163,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},"
     "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0}}}",
     USAGE(1117, 1024, 0, 46, 0), "gpt-4o-2024-08-06"},
    {"openai", "/v1/responses",
     "{\"object\":\"response\",\"model\":\"o3-2025-04-16\",\"usage\":{\"input_tokens\":300,"
     "\"input_tokens_details\":{\"cached_tokens\":128},\"output_tokens\":90,"
     "\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":390}}",
     USAGE(300, 128, 0, 90, 64), "o3-2025-04-16"},
    {"openai", "/v1/embeddings",
     "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":\"AAAA\"}]"
     ","
     "\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}",
     USAGE(8, 0, 0, 0, 0), "text-embedding-3-small"},
    {"openai", "/v1/completions",
     "{\"object\":\"text_completion\",\"model\":\"gpt-3.5-turbo-instruct\",\"usage\":"
     "{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0}}",
     USAGE(0, 0, 0, 0, 0), "gpt-3.5-turbo-instruct"},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"choices\":[]}", {0}, "gpt-4o"},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"usage\":{\"prompt", {0}, ""},
    {"anthropic", "/v1/messages",
     "{\"id\":\"msg_01X\",\"type\":\"message\",\"role\":\"assistant\","
     "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\",\"text\":\"Here\"}],"
     "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":21,"
     "\"cache_creation_input_tokens\":188086,\"cache_read_input_tokens\":0,\"cache_creation\":"
     "{\"ephemeral_5m_input_tokens\":188086,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":393,"
     "\"service_tier\":\"standard\",\"server_tool_use\":null}}",
     USAGE(21 + 188086, 0, 188086, 393, 0), "claude-sonnet-4-5-20250929"},
    {"anthropic", "/v1/messages",
     "{\"type\":\"message\",\"model\":\"claude-opus-4-8\",\"usage\":{\"input_tokens\":10,"
     "\"cache_read_input_tokens\":500,\"output_tokens\":200,\"output_tokens_details\":"
     "{\"thinking_tokens\":150}}}",
     USAGE(510, 500, 0, 200, 150), "claude-opus-4-8"},
    {"gemini", "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"{}\"}]},\"finishReason\":\"STOP\"}],"
     "\"modelVersion\": \"gemini-2.5-flash\", \"responseId\": \"hS77aOmpFb66vr0P9ruBiQM\", "
     "\"usageMetadata\": {\"cacheTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 3}], "
     "\"cachedContentTokenCount\": 3, \"candidatesTokenCount\": 238, \"promptTokenCount\": 5, "
     "\"thoughtsTokenCount\": 41, \"totalTokenCount\": 284}}",
     USAGE(5, 3, 0, 279, 41), "gemini-2.5-flash"},
    {"gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
     "[{\"usageMetadata\":{\"promptTokenCount\":7}},{\"candidates\":[]},{\"usageMetadata\":"
     "{\"promptTokenCount\":6,\"candidatesTokenCount\":377},\"modelVersion\":\"gemini-2.0-flash\"},"
     "{\"candidates\":[]}]",
     USAGE(6, 0, 0, 377, 0), "gemini-2.0-flash"},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":12,"
     "\"totalTokenCount\":12}}",
     USAGE(12, 0, 0, 0, 0), ""},
};

static void test_answers(void)
{
    for (size_t i = 0; i < ARRAY_LEN(answers); i++) {
        const struct provider *prov = provider_find(answers[i].provider);
        struct provider_call call;
        provider_call_init(&call, answers[i].endpoint,
                           provider_route_find(prov, "POST", answers[i].endpoint));
        struct meter m = {0};
        provider_on_json(prov, &m, &call, answers[i].body, strlen(answers[i].body));
        if (!same_usage(&m.usage, &answers[i].want) || strcmp(m.model, answers[i].model) != 0) {
            fprintf(stderr, "  answer %zu (%s): model %s\n", i, answers[i].provider, m.model);
            print_usage("got ", &m.usage);
            print_usage("want", &answers[i].want);
            CHECK(0);
        }
        /* the same through the answer scanner (answer.h), fed in two pieces
         * split at every byte: only the named members reach on_doc */
        size_t len = strlen(answers[i].body);
        for (size_t cut = 0; cut <= len; cut++) {
            struct answer a;
            struct meter sm = {0};
            CHECK(answer_init(&a, prov) == 0);
            answer_feed(&a, answers[i].body, cut);
            answer_feed(&a, answers[i].body + cut, len - cut);
            answer_finish(&a, &sm, &call);
            answer_free(&a);
            if (!same_usage(&sm.usage, &m.usage) || strcmp(sm.model, m.model) != 0) {
                fprintf(stderr, "  answer %zu (%s) scanned, split at %zu: model %s\n", i,
                        answers[i].provider, cut, sm.model);
                print_usage("got ", &sm.usage);
                print_usage("want", &m.usage);
                CHECK(0);
                break;
            }
        }
    }
}

/* ---- prepare ---- */

/* Bodies with @BIG@ get a 10 KB string there; @IMG@ a 100 KB data URL. */
static char *expand(const char *body)
{
    struct buf b = {0};
    static char big[10241], img[102401];
    if (!big[0]) {
        memset(big, 'a', sizeof(big) - 1);
        memcpy(img, "data:image/png;base64,", 22);
        memset(img + 22, 'Q', sizeof(img) - 23);
    }
    for (const char *p = body; *p;) {
        if (strncmp(p, "@BIG@", 5) == 0) {
            buf_add(&b, big, strlen(big));
            p += 5;
        } else if (strncmp(p, "@IMG@", 5) == 0) {
            buf_add(&b, img, strlen(img));
            p += 5;
        } else {
            buf_add(&b, p++, 1);
        }
    }
    return b.p;
}

#define NO_BODY NULL
enum { BAD_JSON = -2 };

static const struct {
    const char *provider, *endpoint, *body;
    int rc;          /* 0, -1, or BAD_JSON: jansson itself refuses the body */
    const char *err; /* substring of the message when rc is -1 */
    bool metered, stream, strip, modified;
    const char *model;
    int64_t max_out, est_in;
    const char *after; /* substring of the body re-encoded after prepare, when modified */
} prepares[] = {
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hello world!\"}]}", 0,
     NULL, true, false, false, false, "gpt-4o", 0, 4, NULL},
    {"openai", "/v1/chat/completions", "{\"messages\":[]}", -1, "`model` is required", true, false,
     false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":123,\"messages\":[]}", -1,
     "`model` must be a string", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"\",\"messages\":[]}", -1, "must not be empty",
     true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"@BIG@\",\"messages\":[]}", -1, "too long",
     true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt\\n4o\"}", -1, "control", true, false,
     false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"stream\":\"true\"}", -1,
     "`stream` must be true or false", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"max_tokens\":-1}", -1,
     "`max_tokens` must be an integer of at least 0", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"max_completion_tokens\":1.5}", -1,
     "`max_completion_tokens` must be an integer", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"max_tokens\":1e400}", BAD_JSON,
     NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"n\":99999999999999999999}",
     BAD_JSON, NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"max_tokens\":9223372036854775807,\"n\":128}", 0, NULL, true, false,
     false, false, "gpt-4o", (int64_t)PROVIDER_MAX_OUTPUT_TOKENS * 128, 0, NULL},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"max_completion_tokens\":100,\"n\":3}", 0, NULL, true, false, false,
     false, "gpt-4o", 300, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"n\":0}", -1,
     "`n` must be an integer of at least 1", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"n\":1000,\"max_tokens\":10}", 0,
     NULL, true, false, false, false, "gpt-4o", 1280, 0, NULL},
    {"openai", "/v1/chat/completions", "[1,2]", -1, "JSON object", true, false, false, false, NULL,
     0, 0, NULL},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
     0, NULL, true, true, true, true, "gpt-4o", 0, 2,
     "\"stream_options\":{\"include_usage\":true}"},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_obfuscation\":false}}", 0,
     NULL, true, true, true, true, "gpt-4o", 0, 0,
     "\"stream_options\":{\"include_usage\":true,\"include_obfuscation\":false}"},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}", 0, NULL,
     true, true, true, true, "gpt-4o", 0, 0, "\"stream_options\":{\"include_usage\":true}"},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":null}", 0, NULL, true, true, true,
     true, "gpt-4o", 0, 0, "\"stream_options\":{\"include_usage\":true}"},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", 0, NULL,
     true, true, false, false, "gpt-4o", 0, 0, NULL},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":\"x\"}", -1,
     "`stream_options` must be an object", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"stream\":false}", 0, NULL, true,
     false, false, false, "gpt-4o", 0, 0, NULL},
    {"openai", "/v1/chat/completions",
     "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"what is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"@IMG@\"}}]}]}",
     0, NULL, true, false, false, false, "gpt-4o", 0, 8, NULL},
    {"openai", "/v1/chat/completions", NO_BODY, 0, NULL, true, false, false, false, NULL, 0, 0,
     NULL},
    {"openai", "/v1/models", NO_BODY, 0, NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"anthropic", "/v1/messages", NO_BODY, 0, NULL, true, false, false, false, NULL, 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", NO_BODY, 0, NULL, true,
     true, false, false, "gemini-2.5-flash", 0, 0, NULL},
    {"openai", "/v1/models", "{}", 0, NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/files", "{\"model\":7}", 0, NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/completions",
     "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"abcdefgh\","
     "\"stream\":true,\"max_tokens\":16,\"best_of\":2}",
     0, NULL, true, true, true, true, "gpt-3.5-turbo-instruct", 32, 2, "\"include_usage\":true"},
    {"openai", "/v1/responses",
     "{\"model\":\"gpt-5\",\"input\":\"abcd\",\"instructions\":\"efgh\","
     "\"stream\":true,\"max_output_tokens\":500}",
     0, NULL, true, true, false, false, "gpt-5", 500, 2, NULL},
    {"openai", "/v1/responses", "{\"model\":\"gpt-5\",\"background\":true}", -1,
     "background Responses", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/responses", "{\"model\":\"gpt-5\",\"background\":\"yes\"}", -1,
     "`background` must be true or false", true, false, false, false, NULL, 0, 0, NULL},
    {"openai", "/v1/responses", "{\"model\":\"gpt-5\",\"background\":false}", 0, NULL, true, false,
     false, false, "gpt-5", 0, 0, NULL},
    {"openai", "/v1/responses", "{\"prompt\":{\"id\":\"pmpt_1\"},\"input\":\"x\"}", 0, NULL, true,
     false, false, false, "", 0, 2, NULL},
    {"openai", "/v1/responses", "{\"input\":\"x\"}", -1, "`model` is required", true, false, false,
     false, NULL, 0, 0, NULL},
    {"openai", "/v1/embeddings",
     "{\"model\":\"text-embedding-3-small\",\"input\":[\"abcd\",[1,2]]}", 0, NULL, true, false,
     false, false, "text-embedding-3-small", 0, 3, NULL},
    {"anthropic", "/v1/messages",
     "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":\"be brief\",\"stream\":true,"
     "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
     0, NULL, true, true, false, false, "claude-sonnet-4-5", 1024, 5, NULL},
    {"anthropic", "/v1/messages", "{\"max_tokens\":10,\"messages\":[]}", -1, "`model` is required",
     true, false, false, false, NULL, 0, 0, NULL},
    {"anthropic", "/v1/messages", "{\"model\":\"claude-opus-4-8\",\"stream\":\"yes\"}", -1,
     "`stream` must be true or false", true, false, false, false, NULL, 0, 0, NULL},
    {"anthropic", "/v1/messages", "{\"model\":\"claude-opus-4-8\",\"max_tokens\":-5}", -1,
     "`max_tokens` must be an integer", true, false, false, false, NULL, 0, 0, NULL},
    {"anthropic", "/v1/messages/count_tokens",
     "{\"model\":\"claude-opus-4-8\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0,
     NULL, false, false, false, false, "claude-opus-4-8", 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
     "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Why is the sky blue?\"},"
     "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"@BIG@\"}}]}],"
     "\"generationConfig\":{\"maxOutputTokens\":100,\"candidateCount\":2}}",
     0, NULL, true, true, false, false, "gemini-2.5-flash", 200, 6, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-pro:generateContent",
     "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":100,\"thinkingConfig\":"
     "{\"thinkingBudget\":50}}}",
     0, NULL, true, false, false, false, "gemini-2.5-pro", 150, 0, NULL},
    {"gemini", "/v1/models/gemini-2.0-flash:generateContent", "{\"contents\":[]}", 0, NULL, true,
     false, false, false, "gemini-2.0-flash", 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:countTokens", "{\"contents\":[]}", 0, NULL, false,
     false, false, false, "gemini-2.5-flash", 0, 0, NULL},
    {"gemini", "/v1beta/models/bad model:generateContent", "{}", -1, "the model in the path", true,
     false, false, false, NULL, 0, 0, NULL},
    {"gemini", "/v1beta/models/bad$model:generateContent", "{}", -1, "the model in the path", true,
     false, false, false, NULL, 0, 0, NULL},
    /* no model at all: no route row, so the path is unknown, not metered */
    {"gemini", "/v1beta/models/:generateContent", "{}", 0, NULL, false, false, false, false, NULL,
     0, 0, NULL},
    {"gemini", "/v1beta/files", "{}", 0, NULL, false, false, false, false, NULL, 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"generationConfig\":{\"maxOutputTokens\":\"lots\"}}", -1,
     "`maxOutputTokens` must be an integer", true, false, false, false, NULL, 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:generateContent",
     "{\"generationConfig\":{\"candidateCount\":0}}", -1, "`candidateCount`", true, false, false,
     false, NULL, 0, 0, NULL},
    {"gemini", "/v1beta/models/gemini-2.5-flash:generateContent", "{\"generationConfig\":[]}", -1,
     "`generationConfig` must be an object", true, false, false, false, NULL, 0, 0, NULL},
};

/* Scans text as the proxy does; NULL when it is not valid JSON. */
static const struct json_scan *scan_text(const struct provider *prov, const char *text)
{
    static struct json_scan s;
    json_scan_free(&s);
    json_scan_init(&s, prov->body_fields);
    if (json_scan_feed(&s, text, strlen(text)) < 0 || json_scan_finish(&s) < 0)
        return NULL;
    return &s;
}

/* The body as forwarded: text with the call's edits spliced in (malloc'd). */
static char *apply_edits(const char *text, const struct provider_call *call)
{
    struct buf b = {0};
    size_t at = 0;
    for (size_t i = 0; i < call->n_edits; i++) {
        const struct provider_edit *e = &call->edits[i];
        CHECK(e->start >= at && e->end >= e->start && e->end <= strlen(text));
        buf_add(&b, text + at, e->start - at);
        buf_add(&b, e->text, e->len);
        at = e->end;
    }
    buf_add(&b, text + at, strlen(text) - at);
    return b.p;
}

static void test_prepare(void)
{
    for (size_t i = 0; i < ARRAY_LEN(prepares); i++) {
        const struct provider *prov = provider_find(prepares[i].provider);
        const struct json_scan *body = NULL;
        char *text = NULL;
        if (prepares[i].body) {
            text = expand(prepares[i].body);
            body = scan_text(prov, text);
            if (prepares[i].rc == BAD_JSON) {
                CHECK(body == NULL);
                free(text);
                continue;
            }
            CHECK(body != NULL);
        }
        struct provider_call call;
        provider_call_init(&call, prepares[i].endpoint,
                           provider_route_find(prov, "POST", prepares[i].endpoint));
        char err[256] = "";
        int rc = prov->prepare(&call, body, err, sizeof(err));
        bool ok = rc == prepares[i].rc && call.metered == prepares[i].metered;
        if (rc == -1)
            ok = ok && prepares[i].err && strstr(err, prepares[i].err) != NULL;
        if (rc == 0 && prepares[i].rc == 0) {
            ok = ok && call.stream == prepares[i].stream && call.strip_usage == prepares[i].strip &&
                 (call.n_edits > 0) == prepares[i].modified &&
                 strcmp(call.model, prepares[i].model ? prepares[i].model : "") == 0 &&
                 provider_sat_mul(call.max_output_tokens, call.choices) == prepares[i].max_out &&
                 call.est_input_tokens == prepares[i].est_in;
            if (prepares[i].after) {
                /* the edited body is valid JSON with the member, all else kept */
                char *out = apply_edits(text, &call);
                json_t *j = out ? json_loads(out, JSON_REJECT_DUPLICATES, NULL) : NULL;
                ok = ok && j && strstr(out, prepares[i].after) != NULL;
                ok = ok && strstr(out, "\"stream\":true") != NULL;
                ok = ok && json_is_true(json_object_get(json_object_get(j, "stream_options"),
                                                        "include_usage"));
                json_decref(j);
                free(out);
            }
        }
        if (!ok) {
            fprintf(stderr,
                    "  prepare %zu (%s %s): rc %d err \"%s\" metered %d stream %d strip %d "
                    "edits %zu model \"%s\" max %lld est %lld\n",
                    i, prepares[i].provider, prepares[i].endpoint, rc, err, call.metered,
                    call.stream, call.strip_usage, call.n_edits, call.model,
                    (long long)call.max_output_tokens, (long long)call.est_input_tokens);
            CHECK(ok);
        }
        free(text);
    }
}

/* ---- usage that lies (issue 17) ---- */

static const struct {
    const char *usage;
    bool valid;
} usages[] = {
    {"{\"prompt_tokens\":12,\"completion_tokens\":5}", true},
    {"{\"prompt_tokens\":12,\"completion_tokens\":null}", true},
    {"{\"input_tokens\":12,\"output_tokens\":5.0,\"service_tier\":\"standard\"}", true},
    {"{\"promptTokenCount\":3,\"promptTokensDetails\":[{\"modality\":\"TEXT\","
     "\"tokenCount\":3}]}",
     true},
    {"{\"prompt_tokens\":12,\"completion_tokens\":-5}", false},
    {"{\"prompt_tokens\":\"12\",\"completion_tokens\":5}", false},
    {"{\"prompt_tokens\":12,\"completion_tokens\":5.5}", false},
    {"{\"prompt_tokens\":12,\"completion_tokens\":1e300}", false},
    {"{\"prompt_tokens\":12,\"completion_tokens\":100000001}", false},
    {"{\"prompt_tokens\":12,\"completion_tokens_details\":{\"reasoning_tokens\":true}}", false},
    {"{\"promptTokensDetails\":[{\"tokenCount\":-1}]}", false},
    {"{\"candidatesTokenCount\":\"many\"}", false},
};

static void test_check_usage(void)
{
    for (size_t i = 0; i < ARRAY_LEN(usages); i++) {
        json_t *u = json_loads(usages[i].usage, 0, NULL);
        CHECK(u != NULL);
        struct meter m = {0};
        provider_check_usage(&m, u);
        if (m.usage_invalid == usages[i].valid) {
            fprintf(stderr, "  usage %zu %s: invalid %d\n", i, usages[i].usage, m.usage_invalid);
            CHECK(0);
        }
        json_decref(u);
    }
}

/* Downgrade: the model is replaced (or added) by an edit, the rest of the
 * body untouched, beside the include_usage edit of a stream; Gemini's model
 * is in the path. */
static const struct {
    const char *provider, *endpoint, *body, *model;
    const char *want; /* the body as forwarded, or the path for gemini */
} set_models[] = {
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"stream\":true}", "gpt-4o-mini",
     "{\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o-mini\",\"stream\":true}"},
    {"openai", "/v1/chat/completions", "{ \"stream\" : true , \"model\" : \"a\\u0062\" }", "x\"y",
     "{\"stream_options\":{\"include_usage\":true}, \"stream\" : true , \"model\" : \"x\\\"y\" }"},
    {"openai", "/v1/responses", "{\"prompt\":{\"id\":\"p\"}}", "gpt-5-mini",
     "{\"prompt\":{\"id\":\"p\"},\"model\":\"gpt-5-mini\"}"},
    {"anthropic", "/v1/messages", "{\"max_tokens\":5,\"model\":\"claude-opus-4-8\"}",
     "claude-haiku", "{\"max_tokens\":5,\"model\":\"claude-haiku\"}"},
    {"gemini", "/v1beta/models/gemini-2.5-pro:generateContent", "{}", "gemini-2.5-flash",
     "/v1beta/models/gemini-2.5-flash:generateContent"},
};

static void test_set_model(void)
{
    for (size_t i = 0; i < ARRAY_LEN(set_models); i++) {
        const struct provider *prov = provider_find(set_models[i].provider);
        const struct json_scan *body = scan_text(prov, set_models[i].body);
        CHECK(body != NULL);
        struct provider_call call;
        provider_call_init(&call, set_models[i].endpoint,
                           provider_route_find(prov, "POST", set_models[i].endpoint));
        char err[256] = "", path[256];
        snprintf(path, sizeof(path), "%s", set_models[i].endpoint);
        CHECK_INT(prov->prepare(&call, body, err, sizeof(err)), 0);
        CHECK_INT(prov->set_model(&call, body, path, sizeof(path), set_models[i].model), 0);
        if (strcmp(set_models[i].provider, "gemini") == 0) {
            CHECK_STR(path, set_models[i].want);
            continue;
        }
        char *out = apply_edits(set_models[i].body, &call);
        CHECK_STR(out, set_models[i].want);
        free(out);
    }
}

/* The skip list has no hole (PROVIDER_N_TEXT_SKIP_KEYS counts it). */
static void test_skip_keys(void)
{
    for (size_t i = 0; i < PROVIDER_N_TEXT_SKIP_KEYS; i++)
        CHECK(provider_text_skip_keys[i] != NULL && provider_text_skip_keys[i][0] != '\0');
}

/* ---- output bounds: what a request reserves (issue 17) ---- */

static const struct {
    const char *provider, *endpoint, *body;
    int64_t model_max;
    int64_t bound;
} bounds[] = {
    /* no bound in the request: the model's maximum, per answer */
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\"}", 16384, 16384},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"n\":5}", 16384, 5 * 16384},
    {"openai", "/v1/completions", "{\"model\":\"x\",\"best_of\":3,\"n\":2}", 100, 300},
    {"openai", "/v1/responses", "{\"model\":\"gpt-5\"}", 128000, 128000},
    /* unlisted model maximum: the conservative default */
    {"openai", "/v1/chat/completions", "{\"model\":\"x\",\"n\":2}", 0,
     2 * PROVIDER_UNLISTED_MAX_OUTPUT},
    /* the request's own bound wins, times n */
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"max_tokens\":100,\"n\":5}", 16384,
     500},
    {"openai", "/v1/responses", "{\"model\":\"gpt-5\",\"max_output_tokens\":7}", 128000, 7},
    {"anthropic", "/v1/messages", "{\"model\":\"c\",\"max_tokens\":1024}", 64000, 1024},
    /* Gemini: candidateCount multiplies; without maxOutputTokens a thinking
     * budget bounds nothing */
    {"gemini", "/v1beta/models/g:generateContent", "{\"generationConfig\":{\"candidateCount\":4}}",
     65535, 4 * 65535},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"thinkingConfig\":{\"thinkingBudget\":10}}}", 65535, 65535},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"maxOutputTokens\":10,\"candidateCount\":2,"
     "\"thinkingConfig\":{\"thinkingBudget\":5}}}",
     65535, 30},
    /* saturates rather than wrapping */
    {"openai", "/v1/chat/completions", "{\"model\":\"x\",\"n\":128}", INT64_MAX / 2, INT64_MAX},
};

static void test_output_bound(void)
{
    for (size_t i = 0; i < ARRAY_LEN(bounds); i++) {
        const struct provider *prov = provider_find(bounds[i].provider);
        const struct json_scan *body = scan_text(prov, bounds[i].body);
        struct provider_call call;
        provider_call_init(&call, bounds[i].endpoint,
                           provider_route_find(prov, "POST", bounds[i].endpoint));
        char err[256] = "";
        int rc = prov->prepare(&call, body, err, sizeof(err));
        int64_t got = provider_output_bound(&call, bounds[i].model_max);
        if (rc != 0 || got != bounds[i].bound) {
            fprintf(stderr, "  bound %zu: rc %d (%s) got %lld want %lld\n", i, rc, err,
                    (long long)got, (long long)bounds[i].bound);
            CHECK(rc == 0 && got == bounds[i].bound);
        }
    }
}

/* ---- error bodies ---- */

/* "a.b" inside v, rendered: strings raw, integers in decimal, "null". */
static const char *jpath(json_t *v, const char *path, char *buf, size_t n)
{
    char key[64];
    while (*path && v) {
        size_t k = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)k, path);
        v = json_is_array(v) ? json_array_get(v, strtoul(key, NULL, 10)) : json_object_get(v, key);
        path += k + (path[k] == '.');
    }
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return json_is_null(v) ? "null" : "(absent)";
}

static const struct {
    const char *provider;
    int status;
    const char *code, *message;
    const char *want[6]; /* "path=value" */
    const char *cap;
} errors[] = {
    {"openai",
     429,
     "budget_exceeded",
     "Monthly budget of $9 reached for tenant \"acme\"",
     {"error.type=insufficient_quota", "error.code=budget_exceeded", "error.param=null",
      "error.message=Monthly budget of $9 reached for tenant \"acme\""},
     NULL},
    {"openai",
     429,
     "rate_limit_exceeded",
     "slow down",
     {"error.type=rate_limit_exceeded", "error.code=rate_limit_exceeded"},
     NULL},
    {"openai",
     400,
     "missing_tenant",
     "add the X-Tenant-Id header\n",
     {"error.type=invalid_request_error", "error.code=missing_tenant",
      "error.message=add the X-Tenant-Id header\n"},
     NULL},
    /* the cap that refused rides beside the code in every dialect */
    {"openai",
     429,
     "budget_exceeded",
     "x",
     {"error.code=budget_exceeded", "error.cap=budget_daily", "error.type=insufficient_quota"},
     "budget_daily"},
    {"openai", 429, "rate_limit_exceeded", "x", {"error.cap=user_rpm"}, "user_rpm"},
    {"openai", 400, "missing_tenant", "x", {"error.cap=(absent)"}, NULL},
    {"anthropic",
     429,
     "budget_exceeded",
     "x",
     {"error.type=rate_limit_error", "error.code=budget_exceeded", "error.cap=hard_limit"},
     "hard_limit"},
    {"anthropic",
     400,
     "missing_tenant",
     "x",
     {"error.code=missing_tenant", "error.cap=(absent)"},
     NULL},
    {"gemini",
     429,
     "allowance_exhausted",
     "x",
     {"error.status=RESOURCE_EXHAUSTED",
      "error.details.0.@type=type.googleapis.com/google.rpc.ErrorInfo",
      "error.details.0.reason=ALLOWANCE_EXHAUSTED", "error.details.0.domain=tollgate",
      "error.details.0.metadata.code=allowance_exhausted",
      "error.details.0.metadata.cap=included_tokens"},
     "included_tokens"},
    {"gemini",
     400,
     "missing_tenant",
     "x",
     {"error.details.0.reason=MISSING_TENANT", "error.details.0.metadata.code=missing_tenant",
      "error.details.0.metadata.cap=(absent)", "error.details.1=(absent)"},
     NULL},
    {"openai", 413, "body_too_large", "x", {"error.type=invalid_request_error"}, NULL},
    {"openai", 415, "unsupported_media_type", "x", {"error.type=invalid_request_error"}, NULL},
    {"openai", 431, "headers_too_large", "x", {"error.type=invalid_request_error"}, NULL},
    {"openai", 404, "not_found", "x", {"error.type=invalid_request_error"}, NULL},
    {"openai",
     502,
     "upstream_unreachable",
     "x",
     {"error.type=api_error", "error.code=upstream_unreachable"},
     NULL},
    {"openai", 503, "budget_store_unavailable", "x", {"error.type=api_error"}, NULL},
    {"openai", 504, "upstream_timeout", "x", {"error.type=api_error"}, NULL},
    {"openai", 500, NULL, NULL, {"error.code=null", "error.type=api_error"}, NULL},
    {"openai", 400, "bad", "caf\xe9 \xff", {"error.message=caf? ?"}, NULL},
    {"anthropic",
     429,
     "budget_exceeded",
     "budget",
     {"type=error", "error.type=rate_limit_error", "error.message=budget"},
     NULL},
    {"anthropic", 400, "missing_tenant", "x", {"error.type=invalid_request_error"}, NULL},
    {"anthropic", 431, "headers_too_large", "x", {"error.type=invalid_request_error"}, NULL},
    {"anthropic", 413, "body_too_large", "x", {"error.type=request_too_large"}, NULL},
    {"anthropic", 404, "not_found", "x", {"error.type=not_found_error"}, NULL},
    {"anthropic", 401, "unauthorized", "x", {"error.type=authentication_error"}, NULL},
    {"anthropic", 502, "upstream_unreachable", "x", {"error.type=api_error"}, NULL},
    {"anthropic", 503, "budget_store_unavailable", "x", {"error.type=api_error"}, NULL},
    {"anthropic", 504, "upstream_timeout", "x", {"error.type=api_error"}, NULL},
    {"gemini",
     429,
     "budget_exceeded",
     "budget \"x\"",
     {"error.code=429", "error.status=RESOURCE_EXHAUSTED", "error.message=budget \"x\""},
     NULL},
    {"gemini",
     400,
     "missing_tenant",
     "x",
     {"error.code=400", "error.status=INVALID_ARGUMENT"},
     NULL},
    {"gemini", 413, "body_too_large", "x", {"error.status=INVALID_ARGUMENT"}, NULL},
    {"gemini", 404, "not_found", "x", {"error.status=NOT_FOUND"}, NULL},
    {"gemini",
     502,
     "upstream_unreachable",
     "x",
     {"error.code=502", "error.status=UNAVAILABLE"},
     NULL},
    {"gemini", 503, "budget_store_unavailable", "x", {"error.status=UNAVAILABLE"}, NULL},
    {"gemini", 504, "upstream_timeout", "x", {"error.status=DEADLINE_EXCEEDED"}, NULL},
};

static void test_error_bodies(void)
{
    for (size_t i = 0; i < ARRAY_LEN(errors); i++) {
        const struct provider *prov = provider_find(errors[i].provider);
        struct evbuffer *out = evbuffer_new();
        CHECK(out != NULL);
        if (!out)
            continue;
        prov->error_body(out, errors[i].status, errors[i].code, errors[i].cap, errors[i].message);
        size_t n = evbuffer_get_length(out);
        const char *text = (const char *)evbuffer_pullup(out, -1);
        json_error_t jerr;
        json_t *v = text ? json_loadb(text, n, 0, &jerr) : NULL;
        CHECK(v != NULL);
        for (size_t k = 0; v && k < ARRAY_LEN(errors[i].want) && errors[i].want[k]; k++) {
            const char *eq = strchr(errors[i].want[k], '=');
            char path[64], tmp[32];
            snprintf(path, sizeof(path), "%.*s", (int)(eq - errors[i].want[k]), errors[i].want[k]);
            const char *got = jpath(v, path, tmp, sizeof(tmp));
            if (strcmp(got, eq + 1) != 0) {
                fprintf(stderr, "  error %zu (%s %d): %s is \"%s\"\n", i, errors[i].provider,
                        errors[i].status, path, got);
                CHECK(0);
            }
        }
        json_decref(v);
        evbuffer_free(out);
    }
}

/* ---- table and estimate ---- */

static void test_table(void)
{
    CHECK(provider_find("openai") == &provider_openai);
    CHECK(provider_find("anthropic") == &provider_anthropic);
    CHECK(provider_find("gemini") == &provider_gemini);
    CHECK(provider_find("OpenAI") == NULL);
    CHECK(provider_find("") == NULL);
    CHECK(provider_find(NULL) == NULL);
    static const struct {
        size_t bytes;
        int64_t tokens;
    } est[] = {{0, 0},
               {1, 1},
               {3, 1},
               {4, 1},
               {5, 2},
               {4000, 1000},
               {SIZE_MAX, (int64_t)(SIZE_MAX / 4 + 1)}};
    for (size_t i = 0; i < ARRAY_LEN(est); i++)
        CHECK_INT(provider_estimate_tokens(est[i].bytes), est[i].tokens);
    CHECK_INT(provider_sat_mul(INT64_MAX, 2), INT64_MAX);
    CHECK_INT(provider_sat_add(INT64_MAX, 1), INT64_MAX);
    CHECK_INT(provider_sat_mul(3, 4), 12);
}

/* Image generation: the model (OpenAI's default when absent), n images,
 * the size/quality price variant, and usage from the answer (gpt-image-1
 * tokens; dall-e none, its answer is the bill), through the answer scanner. */
static const struct {
    const char *body;
    int rc;
    const char *model, *variant;
    int64_t units;
    const char *answer;
    bool seen;
    int64_t in, out;
} images[] = {
    {"{\"model\":\"dall-e-3\",\"prompt\":\"a cat\",\"size\":\"1792x1024\",\"quality\":\"hd\"}", 0,
     "dall-e-3", "/1792x1024/hd", 1, "{\"created\":1,\"data\":[{\"url\":\"https://x\"}]}", true, 0,
     0},
    {"{\"prompt\":\"a cat\",\"n\":3}", 0, "dall-e-2", "/1024x1024/standard", 3,
     "{\"created\":1,\"data\":[{},{},{}]}", true, 0, 0},
    {"{\"prompt\":\"a cat\",\"output_format\":\"webp\"}", 0, "gpt-image-1", "/1024x1024/standard",
     1,
     "{\"created\":1,\"data\":[{\"b64_json\":\"QUJD\"}],\"usage\":{\"input_tokens\":50,"
     "\"input_tokens_details\":{\"text_tokens\":50,\"image_tokens\":0},\"output_tokens\":4160,"
     "\"total_tokens\":4210}}",
     true, 50, 4160},
    /* gpt-image-1 without usage: not seen (billed on the bound by the proxy) */
    {"{\"model\":\"gpt-image-1\",\"prompt\":\"x\",\"size\":\"auto\",\"quality\":\"high\"}", 0,
     "gpt-image-1", "/auto/high", 1, "{\"created\":1,\"data\":[]}", false, 0, 0},
    /* a size that cannot be a price key: no variant, the model's price */
    {"{\"model\":\"dall-e-3\",\"prompt\":\"x\",\"size\":\"../../x\"}", 0, "dall-e-3", "", 1, "{}",
     true, 0, 0},
    {"{\"model\":\"dall-e-2\",\"prompt\":\"x\",\"n\":0}", -1, NULL, NULL, 0, NULL, false, 0, 0},
    {"{\"model\":\"dall-e-2\",\"prompt\":\"x\",\"n\":11}", 0, "dall-e-2", "/1024x1024/standard", 10,
     "{}", true, 0, 0},
};

static void test_images(void)
{
    const struct provider *prov = provider_find("openai");
    const char *ep = "/v1/images/generations";
    for (size_t i = 0; i < ARRAY_LEN(images); i++) {
        struct provider_call call;
        provider_call_init(&call, ep, provider_route_find(prov, "POST", ep));
        CHECK(call.metered);
        char err[256] = "";
        int rc = prov->prepare(&call, scan_text(prov, images[i].body), err, sizeof(err));
        CHECK_INT(rc, images[i].rc);
        if (rc < 0)
            continue;
        CHECK_STR(call.model, images[i].model);
        CHECK_STR(call.price_variant, images[i].variant);
        CHECK_INT(call.units, images[i].units);
        CHECK_INT(call.unit, USAGE_UNIT_IMAGE);
        CHECK_INT(call.price_kind, PRICE_KIND_IMAGE);
        CHECK(call.bound_if_unseen);
        struct answer a;
        struct meter m = {0};
        CHECK(answer_init(&a, prov) == 0);
        answer_feed(&a, images[i].answer, strlen(images[i].answer));
        answer_finish(&a, &m, &call);
        answer_free(&a);
        CHECK(m.usage.seen == images[i].seen);
        CHECK_INT(m.usage.input, images[i].in);
        CHECK_INT(m.usage.output, images[i].out);
        CHECK_INT(m.usage.units, images[i].units);
        CHECK_INT(m.usage.unit, USAGE_UNIT_IMAGE);
    }
}

static const struct check_test tests[] = {
    {"streams", test_streams},
    {"truncated", test_truncated},
    {"sequences", test_sequences},
    {"answers", test_answers},
    {"prepare", test_prepare},
    {"set_model", test_set_model},
    {"skip_keys", test_skip_keys},
    {"output_bound", test_output_bound},
    {"check_usage", test_check_usage},
    {"error_bodies", test_error_bodies},
    {"table", test_table},
    {"images", test_images},
};

int main(void)
{
    return CHECK_MAIN("provider", tests);
}

/* test_cache.c: the response cache's pure parts (cache.c, cache_key.c):
 * which bodies are the same question (a table of pairs), the facts that make
 * an answer uncacheable, keys, entries and their check (every truncation and
 * every single-byte change is refused), the max_entry bound on the kept
 * copy, the X-Tollgate-Cache header and who the cache applies to (from a
 * config file and a table). Runs from the repository root (the pricing file). */
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "budget/plan.h"
#include "cache/cache.h"
#include "check.h"
#include "core/util.h"
#include "http/json_scan.h"
#include "providers/provider.h"

static int digest_of(const char *body, unsigned char *d, struct cache_body_facts *f)
{
    /* only what the scanner accepts reaches the digest in the proxy */
    struct json_scan s;
    json_scan_init(&s, NULL);
    int ok = json_scan_feed(&s, body, strlen(body)) == 0 && json_scan_finish(&s) == 0;
    json_scan_free(&s);
    if (!ok)
        return -2;
    return cache_body_digest(body, strlen(body), d, NULL, f);
}

static const struct {
    const char *a, *b;
    bool same;
} pairs[] = {
    /* member order, at every depth, and whitespace */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
     "{ \"messages\" : [ { \"content\" : \"hi\", \"role\" : \"user\" } ],\n\t\"model\" : \"m\" }",
     true},
    /* escapes: the decoded string counts */
    {"{\"a\":\"AB/\\n\"}", "{\"a\":\"\\u0041\\u0042\\/\\u000a\"}", true},
    {"{\"a\":\"\xf0\x9f\x98\x80\"}", "{\"a\":\"\\ud83d\\ude00\"}", true},
    {"{\"a\":\"x\\u0000y\"}", "{\"a\":\"x\\u0000y\"}", true},
    {"{\"a\":\"x\\u0000y\"}", "{\"a\":\"x\\u0000z\"}", false},
    /* numbers by value; integers and reals stay apart (as jansson keeps them) */
    {"{\"t\":0.5}", "{\"t\":5e-1}", true},
    {"{\"t\":100.0}", "{\"t\":1e2}", true},
    {"{\"t\":100}", "{\"t\":100.0}", false},
    {"{\"t\":-0}", "{\"t\":0}", true},
    {"{\"t\":1}", "{\"t\":2}", false},
    /* the members that never change the answer, at the top level only */
    {"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
     "\"user\":\"u1\",\"metadata\":{\"k\":\"v\"}}",
     "{\"model\":\"m\"}", true},
    {"{\"model\":\"m\",\"x\":{\"user\":\"u1\"}}", "{\"model\":\"m\",\"x\":{}}", false},
    /* everything else does */
    {"{\"model\":\"m\"}", "{\"model\":\"n\"}", false},
    {"{\"model\":\"m\"}", "{\"model\":\"m\",\"temperature\":0}", false},
    {"{\"a\":[1,2]}", "{\"a\":[2,1]}", false},
    {"{\"a\":[]}", "{\"a\":{}}", false},
    {"{\"a\":null}", "{\"a\":false}", false},
    {"{\"a\":\"1\"}", "{\"a\":1}", false},
    {"{\"a\":[\"b\",\"c\"]}", "{\"a\":[\"bc\"]}", false},
    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":[\"b\",\"c\"]}", false},
    {"{\"ab\":\"c\"}", "{\"a\":\"bc\"}", false},
    /* a repeated nested member: the last one, as jansson reads it */
    {"{\"a\":{\"k\":1,\"k\":2}}", "{\"a\":{\"k\":2}}", true},
    {"{\"a\":{\"k\":1,\"k\":2}}", "{\"a\":{\"k\":1}}", false},
    /* a top-level array is digested too */
    {"[1,{\"b\":2,\"a\":1}]", "[1,{\"a\":1,\"b\":2}]", true},
};

static void test_same_question(void)
{
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        unsigned char da[CACHE_DIGEST_LEN], db[CACHE_DIGEST_LEN];
        int ra = digest_of(pairs[i].a, da, NULL), rb = digest_of(pairs[i].b, db, NULL);
        bool same = memcmp(da, db, sizeof(da)) == 0;
        if (ra != 0 || rb != 0 || same != pairs[i].same) {
            fprintf(stderr, "  pair %zu: rc %d %d, same %d, want %d\n", i, ra, rb, same,
                    pairs[i].same);
            check_failed_now = 1;
        }
    }
}

/* Requests: what each provider's rules (its own table) find in a body or
 * an endpoint; S sampled, T provider tools, I images, A audio. */
#define S CACHE_WHY_SAMPLED
#define T CACHE_WHY_PROVIDER_TOOL
#define I CACHE_WHY_IMAGE
#define A CACHE_WHY_AUDIO
#define R CACHE_WHY_REFUSAL
static const struct {
    const char *prov, *endpoint, *body;
    int64_t choices;
    unsigned why; /* 0: cacheable */
} requests[] = {
    {"openai", "/v1/chat/completions", "{\"model\":\"m\",\"messages\":[]}", 1, 0},
    {"openai", "/v1/chat/completions", "{\"n\":2,\"temperature\":0}", 2, 0},
    {"openai", "/v1/chat/completions", "{\"n\":2,\"temperature\":0.2}", 2, S},
    {"openai", "/v1/chat/completions", "{\"n\":2}", 2, S}, /* the default is above 0 */
    {"openai", "/v1/chat/completions", "{\"n\":2,\"x\":{\"temperature\":0}}", 2, S},
    {"openai", "/v1/chat/completions", "{\"temperature\":0.9}", 1, 0},
    {"openai", "/v1/chat/completions", "{\"audio\":{\"voice\":\"alloy\"}}", 1, A},
    {"openai", "/v1/chat/completions", "{\"modalities\":[\"text\",\"audio\"]}", 1, A},
    {"openai", "/v1/chat/completions", "{\"modalities\":[\"text\"]}", 1, 0},
    {"openai", "/v1/chat/completions", "{\"audio\":null}", 1, 0},
    {"openai", "/v1/chat/completions", "{\"web_search_options\":{}}", 1, T},
    {"openai", "/v1/chat/completions", "{\"model\":\"gpt-4o-mini-search-preview\"}", 1, T},
    {"openai", "/v1/chat/completions", "{\"messages\":[{\"content\":\"web_search_options\"}]}", 1,
     0},
    {"openai", "/v1/chat/completions",
     "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"web_search\"}}]}", 1, 0},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"function\"},{\"type\":\"web_search\"}]}",
     1, T},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"web_search_preview_2025_03_11\"}]}", 1, T},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"file_search\"}]}", 1, T},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"code_interpreter\"}]}", 1, T},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"mcp\"}]}", 1, T},
    {"openai", "/v1/responses", "{\"tools\":[{\"type\":\"image_generation\"}]}", 1, I},
    {"openai", "/v1/responses", "{\"input\":[{\"tools\":[{\"type\":\"mcp\"}]}]}", 1, 0},
    {"openai", "/v1/images/generations", "{\"prompt\":\"p\"}", 1, I},
    {"openai", "/v1/audio/speech", "{\"input\":\"p\"}", 1, A},
    {"openai", "/v1/embeddings", "{\"input\":\"p\"}", 1, 0},
    {"anthropic", "/v1/messages", "{\"tools\":[{\"type\":\"web_search_20250305\"}]}", 1, T},
    {"anthropic", "/v1/messages", "{\"tools\":[{\"type\":\"web_fetch_20250910\"}]}", 1, T},
    {"anthropic", "/v1/messages", "{\"tools\":[{\"type\":\"code_execution_20250825\"}]}", 1, T},
    {"anthropic", "/v1/messages", "{\"mcp_servers\":[{\"url\":\"https://x\"}]}", 1, T},
    {"anthropic", "/v1/messages", "{\"mcp_servers\":[]}", 1, 0},
    {"anthropic", "/v1/messages", "{\"tools\":[{\"type\":\"bash_20250124\"},{\"name\":\"f\"}]}", 1,
     0},
    {"gemini", "/v1beta/models/g:generateContent", "{\"tools\":[{\"googleSearch\":{}}]}", 1, T},
    {"gemini", "/v1beta/models/g:generateContent", "{\"tools\":[{\"code_execution\":{}}]}", 1, T},
    {"gemini", "/v1beta/models/g:generateContent", "{\"tools\":[{\"urlContext\":{}}]}", 1, T},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"tools\":[{\"functionDeclarations\":[{\"name\":\"googleSearch\"}]}]}", 1, 0},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"responseModalities\":[\"TEXT\",\"IMAGE\"]}}", 1, I},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"responseModalities\":[\"AUDIO\"]}}", 1, A},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generation_config\":{\"speech_config\":{\"voiceConfig\":{}}}}", 1, A},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"candidateCount\":2,\"temperature\":0}}", 2, 0},
    {"gemini", "/v1beta/models/g:generateContent",
     "{\"generationConfig\":{\"candidateCount\":2,\"temperature\":0.7}}", 2, S},
    {"gemini", "/v1beta/openai/chat/completions", "{\"web_search_options\":{}}", 1, T},
};

static void test_request_rules(void)
{
    for (size_t i = 0; i < ARRAY_LEN(requests); i++) {
        const struct provider *p = provider_find(requests[i].prov);
        struct evbuffer *b = evbuffer_new();
        unsigned char d[CACHE_DIGEST_LEN];
        struct cache_body_facts f;
        struct provider_call call = {.metered = true, .choices = requests[i].choices};
        evbuffer_add(b, requests[i].body, strlen(requests[i].body));
        int rc = cache_digest_buffer(b, &p->cache_request, requests[i].endpoint, d, &f);
        evbuffer_free(b);
        unsigned sampled = cache_cacheable(&call, &f, CACHE_WHY_PROVIDER_TOOL | I | A) ? 0 : S;
        unsigned got = f.why | sampled;
        bool cacheable = cache_cacheable(&call, &f, 0);
        /* the operator's list lets each reason through, one at a time */
        bool allowed = cache_cacheable(&call, &f, requests[i].why);
        if (rc != 0 || got != requests[i].why || cacheable != (requests[i].why == 0) || !allowed) {
            fprintf(stderr,
                    "  request %zu (%s): rc %d why %#x want %#x, cacheable %d, allowed %d\n", i,
                    requests[i].body, rc, got, requests[i].why, cacheable, allowed);
            check_failed_now = 1;
        }
    }
    struct provider_call call = {.metered = false, .choices = 1};
    struct cache_body_facts none = {0};
    CHECK(!cache_cacheable(&call, &none, S | T | I | A));
}

/* Answers: whole (JSON) or streamed (SSE); what may be stored. */
static const struct {
    const char *prov;
    bool stream;
    const char *answer;
    unsigned why; /* 0: storable */
} answers[] = {
    {"openai", false,
     "{\"choices\":[{\"message\":{\"content\":\"hi\",\"refusal\":null,\"annotations\":[]}}]}", 0},
    {"openai", false, "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"no\"}}]}", R},
    {"openai", false, "{\"choices\":[{\"finish_reason\":\"content_filter\"}]}", R},
    {"openai", false,
     "{\"choices\":[{\"message\":{\"annotations\":[{\"type\":\"url_citation\"}]}}]}", T},
    {"openai", false, "{\"choices\":[{\"message\":{\"audio\":{\"data\":\"AAA\"}}}]}", A},
    {"openai", true,
     "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"refusal\":null}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n",
     0},
    {"openai", true,
     "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"refusal\":null}}]}\n\n"
     "data: {\"choices\":[{\"delta\":{\"refusal\":\"I can't\"}}]}\n\ndata: [DONE]\n\n",
     R},
    {"openai", false,
     "{\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\"}]}]}", 0},
    {"openai", false, "{\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"refusal\"}]}]}",
     R},
    {"openai", false, "{\"output\":[{\"type\":\"web_search_call\"},{\"type\":\"message\"}]}", T},
    {"openai", false, "{\"output\":[{\"type\":\"image_generation_call\"}]}", I},
    {"openai", false, "{\"output\":[{\"type\":\"function_call\"}]}", 0},
    {"openai", true,
     "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\","
     "\"item\":{\"type\":\"code_interpreter_call\"}}\n\n",
     T},
    {"openai", true, "data: {\"type\":\"response.refusal.delta\",\"delta\":\"no\"}\n\n", R},
    {"openai", false, "not json", R}, /* unreadable: not stored */
    {"anthropic", false, "{\"content\":[{\"type\":\"text\"}],\"stop_reason\":\"end_turn\"}", 0},
    {"anthropic", false, "{\"content\":[],\"stop_reason\":\"refusal\"}", R},
    {"anthropic", false,
     "{\"content\":[{\"type\":\"server_tool_use\"},{\"type\":\"web_search_tool_result\"}]}", T},
    {"anthropic", false, "{\"content\":[{\"type\":\"tool_use\"}],\"stop_reason\":\"tool_use\"}", 0},
    {"anthropic", true,
     "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
     "\"refusal\"}}\r\n\r\n",
     R},
    {"anthropic", true,
     "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"content_block\":"
     "{\"type\":\"code_execution_tool_result\"}}\n\n",
     T},
    {"gemini", false, "{\"candidates\":[{\"finishReason\":\"STOP\"}]}", 0},
    {"gemini", false, "{\"candidates\":[{\"finishReason\":\"SAFETY\"}]}", R},
    {"gemini", false, "{\"candidates\":[{\"finishReason\":\"PROHIBITED_CONTENT\"}]}", R},
    {"gemini", false, "{\"candidates\":[{\"finishReason\":\"IMAGE_SAFETY\"}]}", R},
    {"gemini", false, "{\"promptFeedback\":{\"blockReason\":\"OTHER\"},\"usageMetadata\":{}}", R},
    {"gemini", false, "{\"candidates\":[{\"groundingMetadata\":{\"webSearchQueries\":[]}}]}", T},
    {"gemini", false,
     "{\"candidates\":[{\"content\":{\"parts\":[{\"executableCode\":{\"code\":\"1\"}}]}}]}", T},
    {"gemini", false,
     "{\"candidates\":[{\"content\":{\"parts\":[{\"inlineData\":{\"mimeType\":\"image/png\"}}]}}]}",
     I},
    {"gemini", true,
     "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n"
     "data: {\"candidates\":[{\"finishReason\":\"RECITATION\"}]}\r\n\r\n",
     R},
    {"gemini", false, "[{\"candidates\":[{\"finishReason\":\"SAFETY\"}]}]", R},
};

static void test_answer_rules(void)
{
    for (size_t i = 0; i < ARRAY_LEN(answers); i++) {
        const struct provider *p = provider_find(answers[i].prov);
        const char *a = answers[i].answer;
        bool got = cache_answer_storable(a, strlen(a), answers[i].stream, &p->cache_answer, 0);
        /* allowed by the operator, except a refusal (and what is not JSON) */
        bool allowed =
            cache_answer_storable(a, strlen(a), answers[i].stream, &p->cache_answer, S | T | I | A);
        if (got != (answers[i].why == 0) || allowed != (answers[i].why != R)) {
            fprintf(stderr, "  answer %zu (%s): storable %d, allowed %d, want why %#x\n", i, a, got,
                    allowed, answers[i].why);
            check_failed_now = 1;
        }
    }
}

static void test_not_json(void)
{
    /* the walk refuses what is not JSON even without the scanner before it */
    static const char *const bad[] = {"",
                                      "{",
                                      "{\"a\"}",
                                      "{\"a\":}",
                                      "[1,]",
                                      "{\"a\":1,}",
                                      "\"x",
                                      "{\"a\":tru}",
                                      "[1] 2",
                                      "{\"a\":\"\\q\"}",
                                      "{\"a\":\"\\ud800\"}",
                                      "{\"a\":1e}",
                                      "-"};
    unsigned char d[CACHE_DIGEST_LEN];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (cache_body_digest(bad[i], strlen(bad[i]), d, NULL, NULL) != -1) {
            fprintf(stderr, "  accepted %s\n", bad[i]);
            check_failed_now = 1;
        }
}

static void test_keys(void)
{
    unsigned char d[CACHE_DIGEST_LEN] = {1};
    char k1[CACHE_KEY_MAX], k2[CACHE_KEY_MAX], k3[CACHE_KEY_MAX], k4[CACHE_KEY_MAX];
    CHECK_INT(cache_key(k1, sizeof(k1), "tg:", "acme", "openai", "openai", "/v1/chat/completions",
                        NULL, false, d),
              0);
    CHECK(strncmp(k1, "tg:{acme}:cache:", 16) == 0 && strlen(k1) == 16 + 64);
    CHECK_INT(cache_key(k2, sizeof(k2), "tg:", "acme", "openai", "openai", "/v1/chat/completions",
                        NULL, true, d),
              0);
    CHECK(strcmp(k1, k2) != 0); /* a stream's entry is another entry */
    CHECK_INT(cache_key(k3, sizeof(k3), "tg:", "acme", "openai", "other", "/v1/chat/completions",
                        NULL, false, d),
              0);
    CHECK(strcmp(k1, k3) != 0); /* another upstream */
    CHECK_INT(cache_key(k4, sizeof(k4), "tg:", NULL, "openai", "openai", "/v1/chat/completions",
                        NULL, false, d),
              0);
    CHECK(strncmp(k4, "tg:{cache:", 10) == 0 && strcmp(k4 + strlen(k4) - 1, "}") == 0);
    CHECK_INT(cache_key(k4, sizeof(k4), "tg:", "ac}me", "openai", "openai", "/p", NULL, false, d),
              -1);
    CHECK_INT(cache_key(k4, 20, "tg:", "acme", "openai", "openai", "/p", NULL, false, d), -1);
    /* a query is part of the question; parts cannot slide into each other */
    CHECK_INT(cache_key(k3, sizeof(k3), "tg:", "acme", "openai", "openai", "/v1/chat/completions",
                        "x=1", false, d),
              0);
    CHECK(strcmp(k1, k3) != 0);
    CHECK_INT(cache_key(k3, sizeof(k3), "tg:", "acme", "openai", "openai/v1", "/chat/completions",
                        NULL, false, d),
              0);
    CHECK(strcmp(k1, k3) != 0);
}

static void test_entries(void)
{
    const char answer[] = "{\"id\":\"x\",\"choices\":[]}";
    size_t n;
    char *e = cache_entry_build(answer, strlen(answer), false, &n);
    CHECK(e != NULL);
    if (!e)
        return;
    const char *got;
    size_t len;
    CHECK_INT(cache_entry_parse(e, n, false, &got, &len), 0);
    CHECK(len == strlen(answer) && memcmp(got, answer, len) == 0);
    CHECK_INT(cache_entry_parse(e, n, true, &got, &len), -1); /* another kind */
    for (size_t cut = 0; cut < n; cut++)
        if (cache_entry_parse(e, cut, false, &got, &len) != -1) {
            fprintf(stderr, "  a cut at %zu passed\n", cut);
            check_failed_now = 1;
        }
    for (size_t i = 0; i < n; i++) {
        char *c = malloc(n);
        memcpy(c, e, n);
        c[i] ^= 0x20;
        if (cache_entry_parse(c, n, false, &got, &len) == 0) {
            fprintf(stderr, "  a change at %zu passed\n", i);
            check_failed_now = 1;
        }
        free(c);
    }
    free(e);
    e = cache_entry_build("", 0, true, &n);
    CHECK(e && cache_entry_parse(e, n, true, &got, &len) == 0 && len == 0);
    free(e);
}

static void test_keep_bound(void)
{
    struct cache_call c = {.max_entry = 10, .answer = evbuffer_new()};
    cache_keep(&c, "12345", 5);
    cache_keep(&c, "67890", 5);
    CHECK(c.answer && evbuffer_get_length(c.answer) == 10);
    cache_keep(&c, "x", 1); /* past max_entry: the copy is gone for good */
    CHECK(c.answer == NULL);
    cache_keep(&c, "y", 1);
    CHECK(c.answer == NULL);
}

static void test_ask(void)
{
    enum cache_ask a;
    CHECK(cache_parse_ask(NULL, &a) == 0 && a == CACHE_ASK_NONE);
    CHECK(cache_parse_ask("on", &a) == 0 && a == CACHE_ASK_ON);
    CHECK(cache_parse_ask("OFF", &a) == 0 && a == CACHE_ASK_OFF);
    CHECK(cache_parse_ask("Refresh", &a) == 0 && a == CACHE_ASK_REFRESH);
    CHECK_INT(cache_parse_ask("yes", &a), -1);
    CHECK_INT(cache_parse_ask("", &a), -1);
    CHECK_STR(cache_verdict_name(CACHE_HIT), "hit");
    CHECK_STR(cache_verdict_name(CACHE_MISS), "miss");
    CHECK_STR(cache_verdict_name(CACHE_BYPASS), "bypass");
}

static const char conf[] = "[server]\ndefault_plan = free\n"
                           "[cache]\nenabled = yes\n"
                           "[plan free]\n"
                           "[plan on]\ncache = on\n"
                           "[plan ask]\ncache = ask\n"
                           "[tenant t-on]\nplan = free\ncache = on\n"
                           "[tenant t-off]\nplan = on\ncache = off\n"
                           "[tenant t-plan]\nplan = ask\n";

static const struct {
    const char *tenant, *plan_asked;
    enum cache_ask ask;
    bool applies;
} who[] = {
    {"x", NULL, CACHE_ASK_NONE, false}, /* free: off by default */
    {"x", NULL, CACHE_ASK_ON, false},   /* the plan forbids: the header is ignored */
    {"x", "on", CACHE_ASK_NONE, true},
    {"x", "on", CACHE_ASK_OFF, false},
    {"x", "on", CACHE_ASK_REFRESH, true},
    {"x", "ask", CACHE_ASK_NONE, false},
    {"x", "ask", CACHE_ASK_ON, true},
    {"x", "ask", CACHE_ASK_REFRESH, true},
    {"t-on", NULL, CACHE_ASK_NONE, true}, /* the tenant's own setting wins */
    {"t-off", NULL, CACHE_ASK_ON, false},
    {"t-plan", NULL, CACHE_ASK_NONE, false}, /* plan: as its plan (ask) says */
    {"t-plan", NULL, CACHE_ASK_ON, true},
};

static struct config *cfg;

static void test_applies(void)
{
    for (size_t i = 0; i < ARRAY_LEN(who); i++) {
        struct plan p;
        if (plan_resolve(cfg, who[i].tenant, who[i].plan_asked, &p) != 0 ||
            cache_applies(cfg, p.base, who[i].tenant, who[i].ask) != who[i].applies) {
            fprintf(stderr, "  case %zu (%s)\n", i, who[i].tenant);
            check_failed_now = 1;
        }
    }
    cfg->cache_enabled = 0; /* the master switch */
    struct plan p;
    CHECK_INT(plan_resolve(cfg, "t-on", NULL, &p), 0);
    CHECK(!cache_applies(cfg, p.base, "t-on", CACHE_ASK_ON));
    cfg->cache_enabled = 1;
}

/* "plan" is a tenant's word: a plan that says it is refused at load */
static void test_plan_word(void)
{
    char path[] = "/tmp/tollgate-test-cache-XXXXXX";
    const char text[] = "[plan free]\ncache = plan\n";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1)) {
        check_failed_now = 1;
        return;
    }
    close(fd);
    char err[4096] = "";
    struct config *c = config_load(path, err, sizeof(err));
    unlink(path);
    CHECK(c == NULL);
    CHECK(strstr(err, "cache: off, on or ask in [plan free]") != NULL);
    if (c)
        config_unref(c);
}

static const struct check_test tests[] = {
    {"plan_word", test_plan_word},
    {"same_question", test_same_question},
    {"request_rules", test_request_rules},
    {"answer_rules", test_answer_rules},
    {"not_json", test_not_json},
    {"keys", test_keys},
    {"entries", test_entries},
    {"keep_bound", test_keep_bound},
    {"ask", test_ask},
    {"applies", test_applies},
};

int main(void)
{
    char path[] = "/tmp/tollgate-test-cache-XXXXXX";
    char cwd[1024], text[sizeof(conf) + 1200];
    if (!getcwd(cwd, sizeof(cwd)))
        return 1;
    int len = snprintf(text, sizeof(text), "%s[pricing]\nfile = %s/conf/pricing.conf\n", conf, cwd);
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, (size_t)len) != (ssize_t)len) {
        perror("test_cache: temporary config");
        return 1;
    }
    close(fd);
    char err[4096] = "";
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    if (!cfg) {
        fprintf(stderr, "test_cache: %s\n", err);
        return 1;
    }
    int rc = CHECK_MAIN("cache", tests);
    config_unref(cfg);
    return rc;
}

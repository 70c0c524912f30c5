/* test_route.c: the route table. Which provider and upstream a method and
 * path reach, and whether the path is metered, free or unknown; the path
 * pattern matcher; and the rules every provider's table keeps. */
#include "check.h"

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "providers/provider.h"
#include "proxy/route.h"

#define M ROUTE_METERED
#define F ROUTE_FREE
#define U ROUTE_UNKNOWN

static struct cfg_upstream ups[] = {
    {.name = "openai", .kind = "openai"},
    {.name = "anthropic", .kind = "anthropic"},
    {.name = "gemini", .kind = "gemini"},
    {.name = "groq", .kind = "openai", .prefix = "/groq"},
    {.name = "claude2", .kind = "anthropic", .prefix = "/claude2"},
};

static struct config cfg = {.upstreams = ups, .n_upstreams = sizeof(ups) / sizeof(ups[0])};

static const struct {
    const char *method, *path;
    enum route_result rr;
    const char *upstream, *provider, *endpoint;
    enum route_class cls;
} cases[] = {
    /* metered */
    {"POST", "/v1/chat/completions", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/completions", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/embeddings", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/responses", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/messages", ROUTE_OK, "anthropic", "anthropic", NULL, M},
    {"POST", "/v1beta/models/gemini-2.5-flash:generateContent", ROUTE_OK, "gemini", "gemini", NULL,
     M},
    {"POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", ROUTE_OK, "gemini", "gemini",
     NULL, M},
    {"POST", "/v1/models/gemini-2.5-flash:generateContent", ROUTE_OK, "gemini", "gemini", NULL, M},
    {"POST", "/v1beta/tunedModels/my-tune:generateContent", ROUTE_OK, "gemini", "gemini", NULL, M},
    {"POST", "/v1beta/openai/chat/completions", ROUTE_OK, "gemini", "gemini", NULL, M},
    {"POST", "/groq/v1/chat/completions", ROUTE_OK, "groq", "openai", "/v1/chat/completions", M},
    {"POST", "/claude2/v1/messages", ROUTE_OK, "claude2", "anthropic", "/v1/messages", M},
    /* free */
    {"GET", "/v1/models", ROUTE_OK, "openai", "openai", NULL, F},
    {"GET", "/v1/models/gpt-4o", ROUTE_OK, "openai", "openai", NULL, F},
    {"POST", "/v1/moderations", ROUTE_OK, "openai", "openai", NULL, F},
    {"POST", "/v1/files", ROUTE_OK, "openai", "openai", NULL, F},
    {"GET", "/v1/files/file-abc/content", ROUTE_OK, "openai", "openai", NULL, F},
    {"GET", "/v1/batches", ROUTE_OK, "openai", "openai", NULL, F},
    {"GET", "/v1/batches/batch_1", ROUTE_OK, "openai", "openai", NULL, F},
    {"POST", "/v1/batches/batch_1/cancel", ROUTE_OK, "openai", "openai", NULL, F},
    /* another method on a metered path is the metered row: the proxy
     * answers 405 rather than let it pass as free */
    {"GET", "/v1/chat/completions", ROUTE_OK, "openai", "openai", NULL, M},
    {"DELETE", "/v1/messages", ROUTE_OK, "anthropic", "anthropic", NULL, M},
    {"POST", "/v1/images/generations", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/images/edits", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/images/variations", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/audio/speech", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/audio/transcriptions", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/audio/translations", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1beta/models/gemini-embedding-001:embedContent", ROUTE_OK, "gemini", "gemini", NULL,
     M},
    {"POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", ROUTE_OK, "gemini", "gemini",
     NULL, M},
    {"GET", "/v1/chat/completions/chatcmpl-1/messages", ROUTE_OK, "openai", "openai", NULL, F},
    {"GET", "/v1/responses/resp_1", ROUTE_OK, "openai", "openai", NULL, F},
    {"POST", "/v1/responses/input_tokens", ROUTE_OK, "openai", "openai", NULL, F},
    {"POST", "/v1/messages/count_tokens", ROUTE_OK, "anthropic", "anthropic", NULL, F},
    {"GET", "/v1/messages/batches", ROUTE_OK, "anthropic", "anthropic", NULL, F},
    {"GET", "/v1/messages/batches/msgbatch_1", ROUTE_OK, "anthropic", "anthropic", NULL, F},
    {"GET", "/claude2/v1/models", ROUTE_OK, "claude2", "anthropic", "/v1/models", F},
    {"POST", "/v1beta/models/gemini-2.5-flash:countTokens", ROUTE_OK, "gemini", "gemini", NULL, F},
    {"GET", "/v1beta/models", ROUTE_OK, "gemini", "gemini", NULL, F},
    {"POST", "/upload/v1beta/files", ROUTE_OK, "gemini", "gemini", NULL, F},
    /* unknown: paid endpoints not metered, and anything else */
    {"POST", "/v1/images/somethingnew", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/audio/voices", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/batches", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/realtime/sessions", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/realtime/client_secrets", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/realtime/calls", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/threads/thread_1/runs", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/threads/runs", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/fine_tuning/jobs", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/videos", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/v1/messages/batches", ROUTE_OK, "anthropic", "anthropic", NULL, U},
    {"POST", "/v1beta/models/imagen-4.0-generate-001:predict", ROUTE_OK, "gemini", "gemini", NULL,
     M},
    {"POST", "/v1beta/models/veo-3.0-generate-001:predictLongRunning", ROUTE_OK, "gemini", "gemini",
     NULL, U},
    {"POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent", ROUTE_OK, "gemini", "gemini",
     NULL, U},
    {"POST", "/v1beta/models/imagen-4:predict", ROUTE_OK, "gemini", "gemini", NULL, M},
    {"POST", "/v1beta/cachedContents", ROUTE_OK, "gemini", "gemini", NULL, U},
    {"POST", "/v1beta/openai/embeddings", ROUTE_OK, "gemini", "gemini", NULL, U},
    {"POST", "/v1/whatever", ROUTE_OK, "openai", "openai", NULL, U},
    {"POST", "/groq/openai/v1/chat/completions", ROUTE_OK, "groq", "openai",
     "/openai/v1/chat/completions", U},
    /* (the canonical path, path.h, has no trailing slash or dot segments;
     * the table refuses them anyway) a metered path with a trailing slash
     * (no provider claims an empty segment: 404), another case or another
     * verb is not the metered row: unknown, never free */
    {"POST", "/v1/chat/completions/", ROUTE_NOT_FOUND, NULL, NULL, NULL, U},
    {"POST", "/v1/Chat/Completions", ROUTE_OK, "openai", "openai", NULL, U},
    {"PUT", "/v1/chat/completions", ROUTE_OK, "openai", "openai", NULL, M},
    {"POST", "/v1/messages/", ROUTE_NOT_FOUND, NULL, NULL, NULL, U},
    {"POST", "/v1beta/models/:generateContent", ROUTE_OK, "gemini", "gemini", NULL, U},
    /* not routed */
    {"POST", "/v2/chat/completions", ROUTE_NOT_FOUND, NULL, NULL, NULL, U},
    {"POST", "/", ROUTE_NOT_FOUND, NULL, NULL, NULL, U},
};

static void test_routes(void)
{
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct route r = {0};
        enum route_result rr = route_match(&cfg, cases[i].method, cases[i].path, &r);
        bool ok = rr == cases[i].rr;
        if (ok && rr == ROUTE_OK) {
            const char *ep = cases[i].endpoint ? cases[i].endpoint : cases[i].path;
            ok = strcmp(r.up->name, cases[i].upstream) == 0 &&
                 strcmp(r.prov->name, cases[i].provider) == 0 && strcmp(r.endpoint, ep) == 0 &&
                 r.cls == cases[i].cls && (r.row != NULL) == (cases[i].cls != U || r.row);
        }
        if (!ok) {
            fprintf(stderr,
                    "  case %zu %s %s: rr %d upstream %s provider %s endpoint %s class %s\n", i,
                    cases[i].method, cases[i].path, rr, r.up ? r.up->name : "-",
                    r.prov ? r.prov->name : "-", r.endpoint ? r.endpoint : "-",
                    provider_route_class_name(r.cls));
            CHECK(ok);
        }
    }
}

static void test_patterns(void)
{
    static const struct {
        const char *pattern, *path;
        int score;
    } pats[] = {
        {"/v1/chat/completions", "/v1/chat/completions", 17},
        {"/v1/chat/completions", "/v1/chat/completions/x", -1},
        {"/v1/chat/completions", "/v1/chat", -1},
        {"/v1/**", "/v1", 2},
        {"/v1/**", "/v1/a/b/c", 2},
        {"/v1/**", "/v1/a/", -1},
        {"/v1/**", "/v1//a", -1},
        {"/v1/**", "/v2", -1},
        {"/v1/**", "/v10", -1},
        {"/*/models/*:generateContent", "/v1beta/models/g:generateContent", 22},
        {"/*/models/*:generateContent", "/v1beta/models/:generateContent", -1},
        {"/*/models/*:generateContent", "/v1beta/models/g:generateContentX", -1},
        {"/v1/models/*:*", "/v1/models/a:b", 9},
        {"/v1/models/*:*", "/v1/models/ab", -1},
        {"/v1/threads/*/runs", "/v1/threads/t/runs", 13},
        {"/v1/threads/*/runs", "/v1/threads//runs", -1},
        {"", "", 0},
        {"/", "/", -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(pats); i++) {
        int sc = provider_path_match(pats[i].pattern, pats[i].path);
        if (sc != pats[i].score) {
            fprintf(stderr, "  %s ~ %s: %d, expected %d\n", pats[i].pattern, pats[i].path, sc,
                    pats[i].score);
            CHECK(sc == pats[i].score);
        }
    }
}

/* Every table keeps the rules the proxy relies on: metered rows are POSTs
 * that name where the model is and have a kind for prepare; unknown rows
 * say why; free rows have no model to price. Every provider has its facts. */
static void test_tables(void)
{
    for (size_t i = 0; provider_at(i); i++) {
        const struct provider *p = provider_at(i);
        CHECK(p->name && p->default_url && strncmp(p->default_url, "https://", 8) == 0);
        CHECK(p->auth_header && p->auth_scheme);
        CHECK(p->n_claims > 0 && p->n_routes > 0);
        CHECK(provider_find(p->name) == p);
        for (size_t k = 0; k < p->n_routes; k++) {
            const struct provider_route *row = &p->routes[k];
            CHECK(row->path && row->path[0] == '/');
            if (row->cls == ROUTE_METERED) {
                CHECK(row->method && strcmp(row->method, "POST") == 0);
                CHECK(row->model != MODEL_NONE && row->kind != 0);
            } else if (row->cls == ROUTE_UNKNOWN) {
                CHECK(row->why != NULL);
            } else {
                CHECK(row->model == MODEL_NONE);
            }
        }
    }
    CHECK(provider_is_auth_header("authorization"));
    CHECK(provider_is_auth_header("X-Api-Key"));
    CHECK(provider_is_auth_header("x-goog-api-key"));
    CHECK(!provider_is_auth_header("x-tenant-id"));
}

static void test_refusal(void)
{
    struct route r = {0};
    CHECK(route_match(&cfg, "POST", "/v1/realtime/sessions", &r) == ROUTE_OK);
    char msg[512];
    route_refusal(&r, "POST", msg, sizeof(msg));
    CHECK(strstr(msg, "POST /v1/realtime/sessions") != NULL);
    CHECK(strstr(msg, "ephemeral") != NULL);
    CHECK(strstr(msg, "unmetered_routes = allow") != NULL);
    CHECK(route_dialect(&cfg, "/v1/messages/batches") == &provider_anthropic);
    CHECK(route_dialect(&cfg, "/v1beta/cachedContents") == &provider_gemini);
    CHECK(route_dialect(&cfg, "/nowhere") == &provider_openai);
}

static const struct check_test tests[] = {
    {"routes", test_routes},
    {"patterns", test_patterns},
    {"tables", test_tables},
    {"refusal", test_refusal},
};

int main(void)
{
    return CHECK_MAIN("route", tests);
}

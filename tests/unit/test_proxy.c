/* test_proxy.c: proxy.c's own functions, reached by including the .c (as
 * h2o's unit tests do): the id alphabet, identity headers, which request
 * headers go upstream and the upstream request as written (usage splice,
 * configured key), the budget left, the rate-limit reset text, and that a
 * request's state only moves forward. From tables. */
#include "proxy/proxy.c"

#include "check.h"

static void test_valid_id(void)
{
    static const struct {
        const char *id;
        bool ok;
    } cases[] = {
        {"acme", true},  {"cust_0123-abc.def:x@y+z=w/v", true},
        {"", false},     {"a b", false},
        {"a{b}", false}, {"caf\xc3\xa9", false},
        {"a\tb", false}, {"a,b", false},
        {"a\"b", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (trust_valid_id(cases[i].id) != cases[i].ok) {
            fprintf(stderr, "  trust_valid_id(\"%s\") != %d\n", cases[i].id, cases[i].ok);
            check_failed_now = 1;
        }
    char id[200];
    memset(id, 'a', sizeof(id));
    id[128] = '\0';
    CHECK(trust_valid_id(id)); /* 128 bytes: the longest */
    id[128] = 'a';
    id[129] = '\0';
    CHECK(!trust_valid_id(id));
}

static void test_identity(void)
{
    const struct http_header h[] = {
        {"X-Tenant-Id", "acme"}, {"X-User-Id", "u 1"}, {"X-Feature", "a"}, {"x-feature", "b"}};
    const struct http_request hr = {.headers = h, .n_headers = ARRAY_LEN(h)};
    char out[ID_MAX], err[256];
    CHECK_INT(trust_identity(&hr, "x-tenant-id", out, err, sizeof(err)), 0);
    CHECK_STR(out, "acme");
    CHECK_INT(trust_identity(&hr, "X-User-Id", out, err, sizeof(err)), -1); /* a space */
    CHECK(strstr(err, "X-User-Id") != NULL);
    CHECK_INT(trust_identity(&hr, "X-Feature", out, err, sizeof(err)), -1); /* twice */
    CHECK_INT(trust_identity(&hr, "X-Plan", out, err, sizeof(err)), 1);     /* absent */
    CHECK_STR(out, "");
    CHECK_INT(trust_identity(&hr, NULL, out, err, sizeof(err)), 1); /* no such header configured */
}

/* A request of route up (api_key or not) through build_upstream_request;
 * splice: the include_usage member inserted after the body's first '{' as
 * an edit (as provider_openai.c's prepare adds it). */
static char *upstream_text(const char *api_key, const char *prov, bool splice, const char *body,
                           const struct http_header *h, size_t nh)
{
    struct config cfg = {.tenant_header = "X-Tenant-Id",
                         .user_header = "X-User-Id",
                         .feature_header = "X-Feature",
                         .plan_header = "X-Tenant-Plan"};
    struct cfg_upstream up = {.host = "api.example.com",
                              .port = 443,
                              .tls = true,
                              .base_path = "/base",
                              .api_key = (char *)api_key};
    static struct req r;
    memset(&r, 0, sizeof(r));
    r.cfg = &cfg;
    r.route.up = &up;
    r.route.prov = provider_find(prov);
    if (splice) {
        static const char member[] = "\"stream_options\":{\"include_usage\":true},";
        size_t open = strcspn(body, "{") + 1;
        bool more = body[open + strspn(body + open, " ")] != '}';
        CHECK_INT(provider_add_edit(&r.call, open, open, member, sizeof(member) - 1 - !more), 0);
    }
    snprintf(r.endpoint, sizeof(r.endpoint), "/v1/chat/completions");
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, body, strlen(body));
    const struct http_request hr = {.method = HTTP_POST,
                                    .method_name = "POST",
                                    .query = NULL,
                                    .headers = h,
                                    .n_headers = nh,
                                    .body = in};
    struct evbuffer *b = build_upstream_request(&r, &hr);
    CHECK_INT(evbuffer_get_length(in), 0); /* the body's buffers moved over */
    evbuffer_free(in);
    if (!b)
        return NULL;
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 1);
    if (text) {
        evbuffer_remove(b, text, n);
        text[n] = '\0';
    }
    evbuffer_free(b);
    return text;
}

static void test_upstream_request(void)
{
    const struct http_header h[] = {
        {"Host", "tollgate.local"},
        {"Content-Type", "application/json"},
        {"Authorization", "Bearer sk"},
        {"X-Tenant-Id", "acme"},
        {"x-user-id", "u1"},
        {"X-Tenant-Plan", "pro"},
        {"Connection", "X-Private"},
        {"X-Private", "1"},
        {"Keep-Alive", "timeout=5"},
        {"Accept-Encoding", "gzip"},
        {"Content-Length", "999"},
        {"X-Tollgate-Client-Token", "secret"},
        {"OpenAI-Beta", "x"},
    };
    char *t = upstream_text(NULL, "openai", false, "{\"a\":1}", h, ARRAY_LEN(h));
    CHECK_STR(t, "POST /base/v1/chat/completions HTTP/1.1\r\n"
                 "Host: api.example.com\r\n"
                 "Content-Type: application/json\r\n"
                 "Authorization: Bearer sk\r\n"
                 "OpenAI-Beta: x\r\n"
                 "Accept-Encoding: identity\r\n"
                 "Content-Length: 7\r\n"
                 "\r\n"
                 "{\"a\":1}");
    free(t);
    /* a configured key replaces every provider's auth header; the usage
     * member is spliced in after the opening brace */
    const struct http_header h2[] = {{"x-api-key", "client"}, {"Authorization", "Bearer c"}};
    t = upstream_text("sk-ant", "anthropic", true, " { \"m\":1}", h2, ARRAY_LEN(h2));
    CHECK_STR(t, "POST /base/v1/chat/completions HTTP/1.1\r\n"
                 "Host: api.example.com\r\n"
                 "x-api-key: sk-ant\r\n"
                 "Accept-Encoding: identity\r\n"
                 "Content-Length: 49\r\n"
                 "\r\n"
                 " {\"stream_options\":{\"include_usage\":true}, \"m\":1}");
    free(t);
    t = upstream_text(NULL, "openai", true, "{}", NULL, 0); /* an empty object: no comma */
    CHECK(t && strstr(t, "\r\n\r\n{\"stream_options\":{\"include_usage\":true}}"));
    CHECK(t && strstr(t, "Content-Length: 41\r\n"));
    free(t);
}

static void test_budget_left(void)
{
    static const struct {
        money_t monthly, daily, hard;
        enum budget_decision decision;
        enum budget_reason reason;
        money_t spent, reserved, spent_day, want;
    } cases[] = {
        {-1, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 5, 0, 5, -1}, /* no caps: unknown */
        {100, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 30, 20, 0, 50},
        {100, 10, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 30, 0, 4, 6}, /* the daily is tighter */
        {100, -1, -1, BUDGET_ADMIT, BUDGET_REASON_NONE, 90, 20, 0, 0},
        /* downgraded past the monthly cap: what is left is the hard limit's */
        {100, -1, 300, BUDGET_DOWNGRADE, BUDGET_REASON_MONTHLY, 150, 0, 0, 150},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct plan p = {.budget_monthly = cases[i].monthly,
                         .budget_daily = cases[i].daily,
                         .hard_limit = cases[i].hard};
        struct admit_result res = {.decision = cases[i].decision,
                                   .reason = cases[i].reason,
                                   .spent_month = cases[i].spent,
                                   .reserved_month = cases[i].reserved,
                                   .spent_day = cases[i].spent_day};
        money_t got = budget_left(&p, &res);
        if (got != cases[i].want) {
            fprintf(stderr, "  budget_left case %zu: %lld, want %lld\n", i, (long long)got,
                    (long long)cases[i].want);
            check_failed_now = 1;
        }
    }
}

static void test_reset_text(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {{-5, "0ms"},  {0, "0ms"},     {250, "250ms"},  {999, "999ms"},  {1000, "1s"},
                 {1001, "2s"}, {59999, "60s"}, {60000, "1m0s"}, {61500, "1m2s"}, {360000, "6m0s"}};
    char buf[32];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        reset_text(buf, sizeof(buf), cases[i].ms);
        CHECK_STR(buf, cases[i].want);
    }
    retry_after(buf, sizeof(buf), 0);
    CHECK_STR(buf, "1"); /* never "0": the SDKs would retry at once */
    retry_after(buf, sizeof(buf), 42);
    CHECK_STR(buf, "42");
}

static void test_state_forward_only(void)
{
    struct req r = {.state = REQ_ADMITTING};
    set_state(&r, REQ_STREAMING);
    CHECK_INT(r.state, REQ_STREAMING);
    set_state(&r, REQ_WAITING); /* never back */
    CHECK_INT(r.state, REQ_STREAMING);
    set_state(&r, REQ_FINISHED);
    set_state(&r, REQ_ADMITTING);
    CHECK_INT(r.state, REQ_FINISHED);
}

static const struct check_test tests[] = {
    {"valid_id", test_valid_id},
    {"identity", test_identity},
    {"upstream_request", test_upstream_request},
    {"budget_left", test_budget_left},
    {"reset_text", test_reset_text},
    {"state_forward_only", test_state_forward_only},
};

int main(void)
{
    return CHECK_MAIN("proxy", tests);
}

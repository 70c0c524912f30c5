/* test_usage_event.c: the usage API's body (usage_event.c): the three
 * forms, each refusal with its index, prices from the list, cost_usd's nine
 * decimals; and the static decimal counter. */
#include "../../src/report/usage_event.c"

#include <unistd.h>

#include "check.h"

static struct config *cfg;

static struct config *load(void)
{
    char dir[] = "/tmp/tollgate-test-usage.XXXXXX", path[64], pricing[64], err[512];
    if (!mkdtemp(dir))
        return NULL;
    snprintf(pricing, sizeof(pricing), "%s/pricing.conf", dir);
    snprintf(path, sizeof(path), "%s/proxy.conf", dir);
    FILE *f = fopen(pricing, "w");
    fprintf(f, "[gpt-4o]\nprovider = openai\ninput = 2.50\ncached_input = 1.25\noutput = 10\n"
               "[local-llama]\ninput = 0.1\noutput = 0.2\n");
    fclose(f);
    f = fopen(path, "w");
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:1\ndefault_plan = free\ntenant_policy = "
            "configured\ntenant_pattern = cust_[0-9]+\n"
            "[pricing]\nfile = %s\n[plan free]\nprice = 0\n[tenant acme]\nplan = free\n",
            pricing);
    fclose(f);
    struct config *c = config_load(path, err, sizeof(err));
    if (!c)
        fprintf(stderr, "  config: %s\n", err);
    unlink(path);
    unlink(pricing);
    rmdir(dir);
    return c;
}

static void test_decimals(void)
{
    static const struct {
        double d;
        int want;
    } cases[] = {
        {0, 0},      {1, 0},        {0.5, 1}, {0.123456789, 9}, {0.1234567891, 10},    {1e-9, 9},
        {1e-10, 10}, {12345.25, 2}, {1e6, 0}, {0.000405, 6},    {999999.123456789, 9},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (decimals(cases[i].d) != cases[i].want) {
            fprintf(stderr, "  decimals(%.17g) = %d, expected %d\n", cases[i].d,
                    decimals(cases[i].d), cases[i].want);
            check_failed_now = 1;
        }
}

/* Refusals: body, the index named (-1: none), a word of the reason. */
static void test_refused(void)
{
    static const struct {
        const char *body;
        long bad;
        const char *why;
    } cases[] = {
        {"", -1, "empty"},
        {"  \n", -1, "empty"},
        {"[]", -1, "no events"},
        {"\"x\"", 0, "not JSON"},
        {"[1]", 0, "JSON object"},
        {"{\"tenant\":\"acme\",\"cost_usd\":1}", 0, "\"id\" is missing"},
        {"{\"id\":\"a\",\"cost_usd\":1}", 0, "\"tenant\" is missing"},
        {"{\"id\":\"a b\",\"tenant\":\"acme\",\"cost_usd\":1}", 0, "\"id\" must be"},
        {"{\"id\":\"a\",\"tenant\":\"ac{me\",\"cost_usd\":1}", 0, "\"tenant\""},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":1,\"x\":1}", 0, "unknown member \"x\""},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":-0.5}", 0, "negative"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":0.0000000001}", 0, "9 decimals"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":\"1\"}", 0, "a number"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":1000001}", 0, "over"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"model\":\"gpt-4o\",\"input_tokens\":-1}", 0,
         "negative"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"model\":\"gpt-4o\",\"input_tokens\":1e3}", 0,
         "integer"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"model\":\"gpt-4o\"}", 0, "token counts"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"input_tokens\":3}", 0, "token counts"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"model\":\"nope\",\"input_tokens\":3}", 0,
         "not in the price list"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"model\":\"gpt-4o\",\"input_tokens\":3,"
         "\"cached_tokens\":4}",
         0, "cannot exceed"},
        {"[{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":1},{\"id\":\"a\",\"tenant\":\"acme\","
         "\"cost_usd\":2}]",
         1, "index 0 with different numbers"},
        {"{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":1}\n{\"id\":\"b\",\n", 1, "not JSON"},
        {"{\"id\":\"a\",\"id\":\"b\",\"tenant\":\"acme\",\"cost_usd\":1}", 0, "not JSON"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct usage_event *ev = (void *)1;
        size_t n = 7, bad = 0;
        char err[256] = "";
        int rc = usage_events_parse(cases[i].body, strlen(cases[i].body), cfg, &ev, &n, &bad, err,
                                    sizeof(err));
        long got = bad == SIZE_MAX ? -1 : (long)bad;
        if (rc != -1 || ev || n || got != cases[i].bad || !strstr(err, cases[i].why)) {
            fprintf(stderr, "  case %zu (%s): rc %d index %ld err \"%s\"\n", i, cases[i].body, rc,
                    got, err);
            check_failed_now = 1;
        }
        free(ev == (void *)1 ? NULL : ev);
    }
}

static void test_forms(void)
{
    struct usage_event *ev;
    size_t n, bad;
    char err[256];
    /* one object over several lines is one event, not NDJSON */
    const char *one =
        "{\"id\":\"job-42\",\n \"tenant\":\"acme\",\"user\":\"u_1\",\"feature\":\"n\","
        "\"model\":\"gpt-4o\",\"input_tokens\":1000,\"cached_tokens\":200,"
        "\"output_tokens\":200}";
    CHECK(usage_events_parse(one, strlen(one), cfg, &ev, &n, &bad, err, sizeof(err)) == 0);
    CHECK_INT(n, 1);
    CHECK_STR(ev[0].provider, "openai");
    CHECK(ev[0].tenant_configured);
    CHECK(!ev[0].cost_given);
    /* 800 x 2.50 + 200 x 1.25 + 200 x 10 per 1M tokens */
    CHECK_INT(ev[0].cost, 2000000 + 250000 + 2000000);
    free(ev);

    const char *arr =
        "[{\"id\":\"a\",\"tenant\":\"cust_7\",\"cost_usd\":0.123456789},"
        "{\"id\":\"b\",\"tenant\":\"other\",\"cost_usd\":2,\"model\":\"local-llama\"},"
        "{\"id\":\"a\",\"tenant\":\"cust_7\",\"cost_usd\":0.123456789}]";
    CHECK(usage_events_parse(arr, strlen(arr), cfg, &ev, &n, &bad, err, sizeof(err)) == 0);
    CHECK_INT(n, 3);
    CHECK_INT(ev[0].cost, 123456789);
    CHECK(ev[0].cost_given && ev[0].tenant_configured);
    CHECK_INT(ev[1].cost, 2000000000);
    CHECK_STR(ev[1].provider, "");
    CHECK(!ev[1].tenant_configured); /* the API checks Redis for it */
    CHECK_STR(ev[0].fingerprint, ev[2].fingerprint);
    CHECK(strcmp(ev[0].fingerprint, ev[1].fingerprint) != 0);
    free(ev);

    const char *nd = "\r\n{\"id\":\"a\",\"tenant\":\"acme\",\"cost_usd\":1}\r\n\n"
                     "  {\"id\":\"b\",\"tenant\":\"acme\",\"cost_usd\":0.5}  \n";
    CHECK(usage_events_parse(nd, strlen(nd), cfg, &ev, &n, &bad, err, sizeof(err)) == 0);
    CHECK_INT(n, 2);
    CHECK_INT(ev[1].cost, 500000000);
    free(ev);
}

static void test_too_many(void)
{
    size_t cap = (USAGE_MAX_EVENTS + 1) * 48 + 4, len = 0;
    char *body = malloc(cap);
    body[len++] = '[';
    for (int i = 0; i <= USAGE_MAX_EVENTS; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"id\":\"e%d\",\"tenant\":\"acme\","
                                "\"cost_usd\":1}",
                                i ? "," : "", i);
    body[len++] = ']';
    struct usage_event *ev;
    size_t n, bad;
    char err[256];
    CHECK(usage_events_parse(body, len, cfg, &ev, &n, &bad, err, sizeof(err)) == -1);
    CHECK(bad == SIZE_MAX);
    CHECK(strstr(err, "more than 1000") != NULL);
    free(body);
}

static const struct check_test tests[] = {
    {"decimals", test_decimals},
    {"refused", test_refused},
    {"forms", test_forms},
    {"too_many", test_too_many},
};

int main(void)
{
    cfg = load();
    if (!cfg)
        return 1;
    int rc = CHECK_MAIN("usage_event", tests);
    config_unref(cfg);
    return rc;
}

/* test_pricing.c: the price table: the shipped conf/pricing.conf, lookup by
 * exact name and longest prefix, exact costs, file:line errors for bad
 * files, and the LiteLLM JSON format agreeing with the INI. Files are found
 * relative to this source (run from the repository root, as make does). */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "providers/pricing.h"

static char root[512];

static const char *path_of(const char *rel, char *buf, size_t n)
{
    if (!root[0]) {
        const char *env = getenv("TOLLGATE_SRCDIR");
        if (env) {
            snprintf(root, sizeof(root), "%s", env);
        } else {
            /* __FILE__ is tests/unit/test_pricing.c: the root is two up. */
            const char *f = __FILE__, *slash = strrchr(f, '/');
            if (slash)
                snprintf(root, sizeof(root), "%.*s/../..", (int)(slash - f), f);
            else
                snprintf(root, sizeof(root), "../..");
        }
    }
    snprintf(buf, n, "%s/%s", root, rel);
    return buf;
}

static struct pricing *load_shipped(void)
{
    char path[600], err[512] = "";
    struct pricing *p =
        pricing_load(path_of("conf/pricing.conf", path, sizeof(path)), err, sizeof(err));
    if (!p)
        fprintf(stderr, "  %s\n", err);
    return p;
}

static void test_shipped_loads(void)
{
    struct pricing *p = load_shipped();
    CHECK(p != NULL);
    CHECK(pricing_count(p) > 40);
    /* Every provider is represented and every entry names one. */
    int seen[3] = {0};
    for (size_t i = 0; i < pricing_count(p); i++) {
        const struct price *pr = pricing_at(p, i);
        CHECK(pr->provider != NULL);
        if (!pr->provider)
            continue;
        seen[0] += strcmp(pr->provider, "openai") == 0;
        seen[1] += strcmp(pr->provider, "anthropic") == 0;
        seen[2] += strcmp(pr->provider, "gemini") == 0;
        bool per_unit = false;
        for (size_t u = 0; u < USAGE_UNITS; u++)
            per_unit = per_unit || pr->per_unit[u] > 0;
        CHECK(pr->input > 0 || pr->output > 0 || per_unit);
        if (i > 0)
            CHECK(strcmp(pricing_at(p, i - 1)->model, pr->model) < 0);
    }
    CHECK(seen[0] > 10 && seen[1] > 10 && seen[2] >= 8);
    CHECK(pricing_at(p, pricing_count(p)) == NULL);
    pricing_free(p);
}

static const struct {
    const char *model;
    const char *want; /* NULL: unpriced */
} lookup_cases[] = {
    {"gpt-4o", "gpt-4o"},
    {"gpt-4o-2024-08-06", "gpt-4o"},
    {"gpt-4o-2024-11-20", "gpt-4o"},
    {"gpt-4o-2024-05-13", "gpt-4o-2024-05-13"},
    /* Bedrock ids: region, vendor and version dropped before the lookup */
    {"us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"},
    {"anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"},
    {"global.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"},
    {"eu.anthropic.claude-haiku-4-5-20251001-v1", "claude-haiku-4-5"},
    {"anthropic.claude-haiku-4-5:2", "claude-haiku-4-5"},
    {"us.unknown.thing-v1:0", NULL},
    {"ft:gpt-4o-mini:acme::abc123", NULL}, /* not Bedrock: a fine-tune stays unpriced */
    {"gpt-4.1-mini", "gpt-4.1-mini"},      /* a dot after the first '-' stays */
    {"gpt-4o-mini", "gpt-4o-mini"},
    {"gpt-4o-mini-2024-07-18", "gpt-4o-mini"},
    {"gpt-4o-audio-preview-2024-12-17", "gpt-4o-audio-preview"},
    {"gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"},
    {"gpt-5", "gpt-5"},
    {"gpt-5-2025-08-07", "gpt-5"},
    {"gpt-5-mini-2025-08-07", "gpt-5-mini"},
    {"gpt-5-pro-2025-10-06", "gpt-5-pro"},
    {"gpt-5.1-codex", "gpt-5.1"},
    {"o3-mini-2025-01-31", "o3-mini"},
    {"o3-2025-04-16", "o3"},
    {"claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
    {"claude-sonnet-4-20250514", "claude-sonnet-4-20250514"},
    {"claude-opus-4-1-20250805", "claude-opus-4-1"},
    {"claude-haiku-4-5-20251001", "claude-haiku-4-5"},
    {"gemini-2.5-flash", "gemini-2.5-flash"},
    {"gemini-2.5-flash-lite", "gemini-2.5-flash-lite"},
    {"gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"},
    {"text-embedding-3-small", "text-embedding-3-small"},
    {"unknown-model", NULL},
    {"gpt-4", NULL},
    {"GPT-4O", NULL}, /* case-sensitive */
    {"", NULL},
    {"g", NULL},
    {"models/gemini-2.5-flash", NULL}, /* the caller strips "models/" */
};

static void test_lookup(void)
{
    struct pricing *p = load_shipped();
    CHECK(p != NULL);
    if (!p)
        return;
    for (size_t i = 0; i < ARRAY_LEN(lookup_cases); i++) {
        const struct price *pr = pricing_lookup(p, lookup_cases[i].model);
        const char *got = pr ? pr->model : NULL;
        if (lookup_cases[i].want)
            CHECK_STR(got, lookup_cases[i].want);
        else if (got)
            CHECK_STR(got, "(no match)");
    }
    CHECK(pricing_lookup(p, NULL) == NULL);
    CHECK(pricing_lookup(NULL, "gpt-4o") == NULL);
    pricing_free(p);
}

static const struct {
    const char *model;
    struct usage u;
    money_t want; /* nano-USD */
} cost_cases[] = {
    /* (800*2.5 + 200*1.25 + 500*10) / 1e6 USD */
    {"gpt-4o", {.input = 1000, .cached = 200, .output = 500}, 7250000},
    {"gpt-4o-2024-08-06", {.input = 1000, .cached = 200, .output = 500}, 7250000},
    /* no cached price listed: cache reads at the input price */
    {"gpt-4o-2024-05-13", {.input = 1000, .cached = 200, .output = 500}, 12500000},
    {"gpt-4o-mini", {.input = 1000000, .output = 1000000}, 750000000},
    {"gpt-5-nano", {.input = 1, .output = 0}, 50},
    {"gpt-5-nano", {.input = 1, .cached = 1}, 5},
    {"text-embedding-3-small", {.input = 12345}, 246900},
    /* Anthropic: 100 plain + 1000 written + 2000 read; 100*3 + 1000*3.75 + 2000*0.3 + 300*15 */
    {"claude-sonnet-4-5-20250929",
     {.input = 3100, .cached = 2000, .cache_write = 1000, .output = 300},
     9150000},
    {"claude-opus-4-1", {.input = 10, .cache_write = 10, .output = 0}, 187500},
    /* long context: 250000 > 200000, tier prices: 250000*6 + 1000*22.5 */
    {"claude-sonnet-4-5", {.input = 250000, .output = 1000}, 1522500000},
    /* exactly at the threshold: base prices */
    {"claude-sonnet-4-5", {.input = 200000, .output = 1000}, 615000000},
    /* tier with reads and writes: 200000*6 + 50000*0.6 + 10000*7.5 */
    {"claude-sonnet-4-5", {.input = 260000, .cached = 50000, .cache_write = 10000}, 1305000000},
    /* Gemini 2.5 Pro tier: 200000*2.5 + 100000*0.25 + 2000*15 */
    {"gemini-2.5-pro", {.input = 300000, .cached = 100000, .output = 2000}, 555000000},
    {"gemini-2.5-pro", {.input = 1000, .output = 1000}, 11250000},
    /* GPT-5.6: own cache_write price; tier above 272k */
    {"gpt-5.6", {.input = 2000, .cache_write = 1000, .output = 0}, 11250000},
    {"gpt-5.6", {.input = 272001, .output = 0}, 2720010000},
    /* more cached than input (a confused provider) earns no credit */
    {"gpt-4o", {.input = 100, .cached = 200}, 250000},
    /* Anthropic 1-hour cache writes at 2 x input: 100 plain, 1000 written (400 of them for an
     * hour): 100*3 + 600*3.75 + 400*6 */
    {"claude-sonnet-4-5", {.input = 1100, .cache_write = 1000, .cache_write_1h = 400}, 4950000},
    /* long context: the 1-hour writes at 2 x tier_input: 200000*6 + 100000*12 */
    {"claude-sonnet-4-5",
     {.input = 300000, .cache_write = 100000, .cache_write_1h = 100000},
     2400000000},
    /* per image by size and quality: 2 x 0.08, 1 x 0.12, 3 x 0.016 */
    {"dall-e-3/1024x1024/hd", {.units = 2, .unit = USAGE_UNIT_IMAGE}, 160000000},
    {"dall-e-3/1792x1024/hd", {.units = 1, .unit = USAGE_UNIT_IMAGE}, 120000000},
    {"dall-e-2/256x256/standard", {.units = 3, .unit = USAGE_UNIT_IMAGE}, 48000000},
    /* units of a unit the model has no price for cost nothing extra */
    {"gpt-4o", {.input = 1000, .units = 5, .unit = USAGE_UNIT_IMAGE}, 2500000},
    /* service tiers (OpenAI flex and priority): gpt-4o priority 1000 plain at 4.25, 1000
     * cached at 2.125, 100 out at 17; o4-mini flex 1000 in at 0.55, 1000 out at 2.20 */
    {"gpt-4o",
     {.input = 2000, .cached = 1000, .output = 100, .tier = USAGE_TIER_PRIORITY},
     8075000},
    {"o4-mini", {.input = 1000, .output = 1000, .tier = USAGE_TIER_FLEX}, 2750000},
    /* no flex price listed for gpt-4o: the standard prices stand in */
    {"gpt-4o", {.input = 1000, .output = 100, .tier = USAGE_TIER_FLEX}, 3500000},
    /* no priority price listed for o3-pro: twice the standard (20, 80) */
    {"o3-pro", {.input = 1000, .output = 100, .tier = USAGE_TIER_PRIORITY}, 56000000},
    /* gpt-image-1 edit: 100 text tokens at 5, 200 image input tokens at image_input 10 */
    {"gpt-image-1", {.input = 300, .image_input = 200, .output = 4160}, 168900000},
    /* image tokens beyond the uncached input count as no more than it: 50 at 10, 50 cached
     * at 1.25 */
    {"gpt-image-1", {.input = 100, .cached = 50, .image_input = 500}, 562500},
    /* a model without image_input: its input price */
    {"gpt-4o", {.input = 1000, .image_input = 1000}, 2500000},
    /* gpt-image-1: tokens, its units (images) not priced on their own */
    {"gpt-image-1", {.input = 50, .output = 4160, .units = 1, .unit = USAGE_UNIT_IMAGE}, 166650000},
};

static int write_temp(const char *text, char *path, size_t n);

static void test_tiers(void)
{
    static const struct {
        const char *name;
        enum usage_tier want;
    } names[] = {
        {"flex", USAGE_TIER_FLEX},        {"priority", USAGE_TIER_PRIORITY},
        {"fast", USAGE_TIER_PRIORITY},    {"auto", USAGE_TIER_STANDARD},
        {"default", USAGE_TIER_STANDARD}, {"scale", USAGE_TIER_STANDARD},
        {"", USAGE_TIER_STANDARD},        {NULL, USAGE_TIER_STANDARD},
    };
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        CHECK_INT(usage_tier_of(names[i].name), names[i].want);
    struct pricing *p = load_shipped();
    CHECK(p != NULL);
    if (!p)
        return;
    const struct price *pr = pricing_lookup(p, "gpt-4o");
    CHECK(pricing_tier_listed(pr, USAGE_TIER_STANDARD));
    CHECK(pricing_tier_listed(pr, USAGE_TIER_PRIORITY));
    CHECK(!pricing_tier_listed(pr, USAGE_TIER_FLEX));
    pr = pricing_lookup(p, "gpt-5-mini");
    CHECK(pricing_tier_listed(pr, USAGE_TIER_FLEX) &&
          pr->service[USAGE_TIER_FLEX].input == 125000 &&
          pr->service[USAGE_TIER_FLEX].cached_input == 12500);
    pricing_free(p);
    /* cached defaults to the tier's input */
    char path[64], err[512] = "";
    CHECK_INT(
        write_temp("[a]\ninput=1\noutput=2\nflex_input=0.5\nflex_output=1\n", path, sizeof(path)),
        0);
    p = pricing_load(path, err, sizeof(err));
    unlink(path);
    CHECK(p != NULL);
    if (p) {
        pr = pricing_lookup(p, "a");
        CHECK_INT(pr->service[USAGE_TIER_FLEX].cached_input, 500000);
        CHECK(!pr->service[USAGE_TIER_PRIORITY].listed);
    }
    pricing_free(p);
}

static void test_cost(void)
{
    struct pricing *p = load_shipped();
    CHECK(p != NULL);
    if (!p)
        return;
    for (size_t i = 0; i < ARRAY_LEN(cost_cases); i++) {
        const struct price *pr = pricing_lookup(p, cost_cases[i].model);
        CHECK(pr != NULL);
        money_t got = pricing_cost(pr, &cost_cases[i].u);
        if (got != cost_cases[i].want)
            fprintf(stderr, "  case %zu (%s)\n", i, cost_cases[i].model);
        CHECK_INT(got, cost_cases[i].want);
    }
    pricing_free(p);
}

/* One rounding at the end: three sub-nano parts add up before rounding. */
static void test_cost_rounds_once(void)
{
    struct price pr = {.input = 400, .cached_input = 400, .cache_write = 400, .output = 400};
    struct usage u = {.input = 1, .output = 1};
    CHECK_INT(pricing_cost(&pr, &u), 1); /* 800 pico: rounding each part would give 0 */
    u = (struct usage){.input = 1};
    CHECK_INT(pricing_cost(&pr, &u), 0);
    pr.input = 500;
    CHECK_INT(pricing_cost(&pr, &u), 1); /* half away from zero */
    u = (struct usage){.input = INT64_MAX, .output = INT64_MAX};
    CHECK_INT(pricing_cost(&pr, &u), money_from_pico(INT64_MAX)); /* saturates */
    CHECK_INT(pricing_cost(NULL, &u), 0);
}

static void test_defaults(void)
{
    struct pricing *p = load_shipped();
    CHECK(p != NULL);
    if (!p)
        return;
    const struct price *pr = pricing_lookup(p, "gpt-4o-2024-05-13");
    CHECK(pr != NULL);
    if (pr) {
        CHECK_INT(pr->cached_input, 5000000);
        CHECK_INT(pr->cache_write, 6250000);
        CHECK_INT(pr->tier_threshold, 0);
    }
    pr = pricing_lookup(p, "gemini-2.5-pro");
    CHECK(pr != NULL);
    if (pr) {
        CHECK_INT(pr->tier_threshold, 200000);
        CHECK_INT(pr->tier_cached_input, 250000);
        CHECK_INT(pr->tier_cache_write, 3125000);
        CHECK_STR(pr->provider, "gemini");
        CHECK_INT(pr->max_output, 65535);
    }
    /* A model with a price on output lists how much output one answer may
     * carry: a request without max_tokens reserves that (issue 17). */
    for (size_t i = 0; pricing_at(p, i); i++) {
        const struct price *q = pricing_at(p, i);
        if (q->output > 0 && q->max_output <= 0) {
            fprintf(stderr, "  [%s] has no max_output\n", q->model);
            CHECK(q->max_output > 0);
        }
    }
    pricing_free(p);
}

static int write_temp(const char *text, char *path, size_t n)
{
    snprintf(path, n, "/tmp/tollgate-pricing-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static const char long_line[] =
    "[a]\ninput = 1\noutput = 1\n; "
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";

static const struct {
    const char *text;
    const char *want; /* what follows "path" in the message */
} bad_cases[] = {
    {"[gpt-4o]\ninput = 2.5\nfoo = 1\noutput = 1\n", ":3: unknown key \"foo\""},
    {"[a]\ninput=1\noutput=1\n[b]\ninput=1\noutput=1\n[a]\ninput=1\noutput=1\n",
     ":7: duplicate section [a] (first at line 1)"},
    {"[a]\ninput=1\noutput=1\n\n[a]\ninput=2\noutput=2\n",
     ":5: duplicate section [a] (first at line 1)"},
    {"[a]\ninput = 1\n\n[b]\ninput=1\noutput=1\n", ":1: [a]: missing output"},
    {"[a]\ninput=1\noutput=1\npriority_input=2\n",
     ":1: [a]: priority_input and priority_output go together"},
    {"[a]\ninput=1\noutput=1\nflex_cached_input=2\n",
     ":1: [a]: flex_input and flex_output go together"},
    {"[a]\ninput=1\noutput=1\n; last\n[b]\noutput = 2\n", ":5: [b]: missing input"},
    {"[a]\n[b]\ninput=1\noutput=1\n", ":1: section has no prices"},
    {"[a]\ninput=1\noutput=1\n[b]\n", ":4: section has no prices"},
    {"[a]\ninput = 0.0000001\noutput = 1\n", ":2: input: bad price \"0.0000001\""},
    {"[a]\ninput = 1\noutput = -1\n", ":3: output: bad price \"-1\""},
    {"[a]\ninput = 1e3\noutput = 1\n", ":2: input: bad price \"1e3\""},
    {"[a]\ninput 2.5\noutput = 1\n", ":2: syntax error"},
    {"[a\ninput = 2.5\n", ":1: syntax error"},
    {"input = 1\n[a]\ninput=1\noutput=1\n", ":1: \"input\" outside a [model] section"},
    {"[a]\ninput=1\ninput=2\noutput=1\n", ":3: duplicate key \"input\""},
    {"[a]\nprovider = azure\ninput=1\noutput=1\n", ":2: unknown provider \"azure\""},
    {"[a]\ninput=1\noutput=1\ntier_input=2\n", ":1: [a]: tier prices without tier_threshold"},
    {"[a]\ninput=1\noutput=1\ntier_threshold=200000\ntier_input=2\n",
     ":1: [a]: tier_threshold needs tier_input and tier_output"},
    {"[a]\ninput=1\noutput=1\ntier_threshold = 2e5\n", ":4: tier_threshold: bad token count"},
    {"[a]\ninput=1\noutput=1\ntier_threshold = -5\n", ":4: tier_threshold: bad token count"},
    {"[a]\ninput=1\noutput=1\nmax_output = 0\n", ":4: max_output: bad token count"},
    {"[a]\ninput=1\noutput=1\nmax_output = 1k\n", ":4: max_output: bad token count"},
    {"[a b]\ninput=1\noutput=1\n", ":1: bad model name [a b]"},
    {"[a]\nper_image = 0.0000000001\n", ":2: per_image: bad price \"0.0000000001\""},
    {"[a]\nper_second = -1\n", ":2: per_second: bad price \"-1\""},
    {"[a]\ninput = 1\nper_character = 0.000015\n", ":1: [a]: missing output"},
    {long_line, ":4: line longer than"},
    {"{\n  \"gpt-4o\": {\n    \"input_cost_per_token\": 2.5e-06,\n  }\n}\n", ":4: "},
    {"{\"gpt-4o\": {\"input_cost_per_token\": -1e-06}}", ": \"gpt-4o\": bad price"},
    {"  {\"gpt-4o\": {\"input_cost_per_token\": 1e-06, \"output_cost_per_token\": \"x\"}}",
     ": \"gpt-4o\": bad price"},
};

static void test_bad_files(void)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
        char path[64], err[512] = "", want[600];
        CHECK_INT(write_temp(bad_cases[i].text, path, sizeof(path)), 0);
        struct pricing *p = pricing_load(path, err, sizeof(err));
        CHECK(p == NULL);
        pricing_free(p);
        snprintf(want, sizeof(want), "%s%s", path, bad_cases[i].want);
        if (strncmp(err, want, strlen(want)) != 0) {
            fprintf(stderr, "  case %zu: got \"%s\"\n", i, err);
            CHECK_STR(err, want);
        }
        unlink(path);
    }
    char err[256] = "";
    CHECK(pricing_load("/nonexistent/pricing.conf", err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "/nonexistent/pricing.conf: ", 27) == 0);
}

static const struct {
    const char *text;
    size_t count;
} good_cases[] = {
    {"", 0},
    {"; only a comment\n", 0},
    {"[a]\r\ninput = 1 ; inline comment\r\noutput = 2\r\n", 1},
    {"[a]\ninput=1\noutput=2", 1}, /* no final newline */
    {"\n\n[a]\ninput=1\noutput=2\n[a-b]\ninput=1\noutput=2\nprovider=gemini\n", 2},
    {"{}", 0},
    /* priced per unit only: token prices default to 0 */
    {"[a]\ninput=1\noutput=2\n[b]\nper_image = 0.04\nkind = image\n[c]\nper_character = "
     "0.000015\n",
     3},
};

static void test_good_files(void)
{
    for (size_t i = 0; i < ARRAY_LEN(good_cases); i++) {
        char path[64], err[512] = "";
        CHECK_INT(write_temp(good_cases[i].text, path, sizeof(path)), 0);
        struct pricing *p = pricing_load(path, err, sizeof(err));
        if (!p)
            fprintf(stderr, "  case %zu: %s\n", i, err);
        CHECK(p != NULL);
        CHECK_INT(pricing_count(p), good_cases[i].count);
        if (p && good_cases[i].count) {
            const struct price *a = pricing_lookup(p, "a");
            CHECK(a != NULL);
            if (a) {
                CHECK_INT(a->input, 1000000);
                CHECK_INT(a->output, 2000000);
            }
        }
        pricing_free(p);
        unlink(path);
    }
}

static void check_same(const struct price *a, const struct price *b)
{
    CHECK_STR(a->model, b->model);
    CHECK_STR(a->provider, b->provider);
    CHECK_INT(a->input, b->input);
    CHECK_INT(a->cached_input, b->cached_input);
    CHECK_INT(a->cache_write, b->cache_write);
    CHECK_INT(a->output, b->output);
    CHECK_INT(a->tier_threshold, b->tier_threshold);
    CHECK_INT(a->tier_input, b->tier_input);
    CHECK_INT(a->tier_cached_input, b->tier_cached_input);
    CHECK_INT(a->tier_cache_write, b->tier_cache_write);
    CHECK_INT(a->tier_output, b->tier_output);
    CHECK_INT(a->max_output, b->max_output);
    for (size_t t = 0; t < USAGE_TIERS; t++) {
        CHECK_INT(a->service[t].input, b->service[t].input);
        CHECK_INT(a->service[t].cached_input, b->service[t].cached_input);
        CHECK_INT(a->service[t].output, b->service[t].output);
        CHECK(a->service[t].listed == b->service[t].listed);
    }
}

static const char *const same_models[] = {
    "gpt-4o",
    "gpt-4o-2024-05-13",
    "o4-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
};

static void test_litellm_matches_ini(void)
{
    char path[600], err[512] = "";
    struct pricing *ini = load_shipped();
    struct pricing *js = pricing_load(
        path_of("tests/unit/pricing/litellm-small.json", path, sizeof(path)), err, sizeof(err));
    if (!js)
        fprintf(stderr, "  %s\n", err);
    CHECK(ini != NULL && js != NULL);
    if (!ini || !js)
        goto out;
    /* sample_spec and the image model are skipped; azure/gpt-4o stays. */
    CHECK_INT(pricing_count(js), 9);
    for (size_t i = 0; i < ARRAY_LEN(same_models); i++) {
        const struct price *a = pricing_lookup(js, same_models[i]);
        const struct price *b = pricing_lookup(ini, same_models[i]);
        CHECK(a != NULL && b != NULL);
        if (a && b)
            check_same(a, b);
    }
    const struct price *az = pricing_lookup(js, "azure/gpt-4o");
    CHECK(az != NULL && az->provider == NULL);
    CHECK(pricing_lookup(js, "sample_spec") == NULL);
    CHECK(pricing_lookup(js, "256-x-256/dall-e-2") == NULL);
    CHECK_STR(pricing_lookup(js, "gpt-4o-2024-08-06")->model, "gpt-4o");
out:
    pricing_free(ini);
    pricing_free(js);
}

/* unknown_model policies: the highest prices per provider and kind, each
 * price on its own; price_as; allow; listed or not. */
static void test_choose(void)
{
    static const char text[] = "[a-big-in]\nprovider = openai\ninput = 9\noutput = 1\n"
                               "[a-big-out]\nprovider = openai\ninput = 1\ncached_input = 0.5\n"
                               "output = 20\n"
                               "[emb]\nprovider = openai\nkind = embedding\ninput = 0.5\n"
                               "output = 0\n"
                               "[g]\nprovider = gemini\ninput = 2\noutput = 3\n"
                               "[x]\ninput = 100\noutput = 100\n";
    char path[64], err[512] = "";
    CHECK_INT(write_temp(text, path, sizeof(path)), 0);
    struct pricing *p = pricing_load(path, err, sizeof(err));
    unlink(path);
    CHECK(p != NULL);
    if (!p)
        return;
    const struct price *h = pricing_highest(p, "openai", PRICE_KIND_CHAT);
    CHECK(h != NULL);
    if (h) {
        CHECK_INT(h->input, 9000000);
        CHECK_INT(h->cached_input, 9000000); /* a-big-in's cached defaults to its input */
        CHECK_INT(h->output, 20000000);
        CHECK_INT(h->cache_write, 11250000);
    }
    const struct price *e = pricing_highest(p, "openai", PRICE_KIND_EMBEDDING);
    CHECK(e && e->input == 500000 && e->output == 0);
    CHECK(pricing_highest(p, "openai", PRICE_KIND_AUDIO) == NULL);
    CHECK(pricing_highest(p, "anthropic", PRICE_KIND_CHAT) == NULL);
    CHECK(pricing_highest(p, "nope", PRICE_KIND_CHAT) == NULL);

    bool listed = true;
    CHECK(pricing_choose(p, UNKNOWN_MODEL_HIGHEST, NULL, "openai", PRICE_KIND_CHAT, "ft:new", NULL,
                         &listed) == h);
    CHECK(!listed);
    /* a kind with no model falls back to the provider's chat prices */
    CHECK(pricing_choose(p, UNKNOWN_MODEL_HIGHEST, NULL, "openai", PRICE_KIND_AUDIO, "tts-9", NULL,
                         &listed) == h);
    CHECK(pricing_choose(p, UNKNOWN_MODEL_HIGHEST, NULL, "openai", PRICE_KIND_EMBEDDING, "zz-emb",
                         NULL, &listed) == e);
    /* the gemini highest is gemini's, not openai's or the provider-less x */
    const struct price *g = pricing_choose(p, UNKNOWN_MODEL_HIGHEST, NULL, "gemini",
                                           PRICE_KIND_CHAT, "q-9", NULL, &listed);
    CHECK(g && g->input == 2000000 && g->output == 3000000 && !listed);
    /* listed: the model, else the fallback */
    CHECK(pricing_choose(p, UNKNOWN_MODEL_HIGHEST, NULL, "openai", PRICE_KIND_CHAT, "emb", NULL,
                         &listed) == pricing_lookup(p, "emb"));
    CHECK(listed);
    CHECK(pricing_choose(p, UNKNOWN_MODEL_ALLOW, NULL, "openai", PRICE_KIND_CHAT, "zzz", "g",
                         &listed) == pricing_lookup(p, "g"));
    CHECK(listed);
    CHECK(pricing_choose(p, UNKNOWN_MODEL_ALLOW, NULL, "openai", PRICE_KIND_CHAT, "zzz", NULL,
                         &listed) == NULL);
    CHECK(!listed);
    CHECK(pricing_choose(p, UNKNOWN_MODEL_BLOCK, NULL, "openai", PRICE_KIND_CHAT, "zzz", NULL,
                         &listed) == NULL);
    CHECK(pricing_choose(p, UNKNOWN_MODEL_PRICE_AS, "g", "openai", PRICE_KIND_CHAT, "zzz", NULL,
                         &listed) == pricing_lookup(p, "g"));
    CHECK(!listed);

    CHECK(pricing_warn_once(p, "ft:new"));
    CHECK(!pricing_warn_once(p, "ft:new"));
    CHECK(pricing_warn_once(p, "ft:other"));
    pricing_free(p);

    CHECK_INT(write_temp("[a]\nkind = video\ninput = 1\noutput = 1\n", path, sizeof(path)), 0);
    p = pricing_load(path, err, sizeof(err));
    unlink(path);
    CHECK(p == NULL && strstr(err, "kind") != NULL);
    pricing_free(p);
}

static const struct check_test tests[] = {
    {"choose", test_choose},         {"shipped_loads", test_shipped_loads},
    {"lookup", test_lookup},         {"cost", test_cost},
    {"tiers", test_tiers},           {"cost_rounds_once", test_cost_rounds_once},
    {"defaults", test_defaults},     {"bad_files", test_bad_files},
    {"good_files", test_good_files}, {"litellm_matches_ini", test_litellm_matches_ini},
};

int main(void)
{
    return CHECK_MAIN("pricing", tests);
}

/* pricing.c: the price table. Loads conf/pricing.conf (INI, USD per 1M
 * tokens, parsed exactly) or LiteLLM's model_prices_and_context_window.json
 * (USD per token floats), keeps the models sorted by name, and answers
 * "exact name, else longest listed prefix" with binary searches over the
 * few distinct key lengths, since a lookup happens on every request. */
#include "providers/pricing.h"
#include "providers/provider.h"

#include <errno.h>
#include <pthread.h>
#include <ini.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sat.h"

#define MAX_FILE_BYTES (64 * 1024 * 1024)

#define WARN_MAX 1024

struct pricing {
    struct price *v; /* sorted by model (strcmp), names unique */
    size_t n;
    size_t *lens; /* distinct strlen(model) values, longest first */
    size_t nlens;
    /* highest[provider index][kind]; has[] says whether any model fed it */
    struct price *highest;
    bool *has;
    size_t nprov;
    /* unpriced models already warned about (pricing_warn_once) */
    pthread_mutex_t warn_lock;
    char *warned[WARN_MAX];
    size_t nwarned;
};

/* An entry while loading: where it came from, so duplicates can be reported
 * at the right line (INI) or resolved by preference (LiteLLM). */
struct entry {
    struct price p;
    int line;   /* INI: line of the [section] header */
    size_t seq; /* order of appearance */
    int rank;   /* LiteLLM: 0 for a provider tollgate speaks, else 1 */
};

struct builder {
    struct entry *v;
    size_t n, cap;
};

static void entry_release(struct entry *e)
{
    free(e->p.model);
    free(e->p.provider);
    e->p.model = e->p.provider = NULL;
}

static void builder_release(struct builder *b)
{
    for (size_t i = 0; i < b->n; i++)
        entry_release(&b->v[i]);
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* Appends e (taking its strings); on failure releases them. */
MUST_CHECK static int builder_push(struct builder *b, struct entry *e)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct entry *v = realloc(b->v, cap * sizeof(*v));
        if (!v) {
            entry_release(e);
            return -1;
        }
        b->v = v;
        b->cap = cap;
    }
    e->seq = b->n;
    b->v[b->n++] = *e;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->p.model, y->p.model);
    if (c)
        return c;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A provider of the table (provider.c), as its static name; NULL if none. */
static const char *known_provider(const char *s)
{
    const struct provider *p = provider_find(s);
    return p ? p->name : NULL;
}

/* 1.25 x price, rounded half up, saturating: the default cache-write price. */
static price_t times_125(price_t p)
{
    price_t r;
    price_t extra = p / 4 + (p % 4 >= 2);
    if (__builtin_add_overflow(p, extra, &r))
        return INT64_MAX;
    return r;
}

/* 2 x price, saturating: the default 1-hour cache-write price. */
static price_t times_2(price_t p)
{
    price_t r;
    if (__builtin_add_overflow(p, p, &r))
        return INT64_MAX;
    return r;
}

static price_t max_price(price_t a, price_t b)
{
    return a > b ? a : b;
}

/* The highest prices per provider and kind (pricing_highest). */
static int highest_init(struct pricing *p)
{
    while (provider_at(p->nprov))
        p->nprov++;
    p->highest = calloc(p->nprov * PRICE_KINDS + 1, sizeof(*p->highest));
    p->has = calloc(p->nprov * PRICE_KINDS + 1, sizeof(*p->has));
    if (!p->highest || !p->has)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        const struct price *e = &p->v[i];
        for (size_t k = 0; e->provider && k < p->nprov; k++) {
            if (strcmp(provider_at(k)->name, e->provider) != 0)
                continue;
            size_t at = k * PRICE_KINDS + e->kind;
            struct price *h = &p->highest[at];
            h->input = max_price(h->input, e->input);
            h->cached_input = max_price(h->cached_input, e->cached_input);
            h->cache_write = max_price(h->cache_write, e->cache_write);
            h->cache_write_1h = max_price(h->cache_write_1h, e->cache_write_1h);
            h->output = max_price(h->output, e->output);
            h->image_input = max_price(h->image_input, e->image_input);
            h->max_output = e->max_output > h->max_output ? e->max_output : h->max_output;
            for (size_t u = 0; u < USAGE_UNITS; u++)
                h->per_unit[u] = max_price(h->per_unit[u], e->per_unit[u]);
            for (size_t t = 1; t < USAGE_TIERS; t++) {
                h->service[t].input = max_price(h->service[t].input, e->service[t].input);
                h->service[t].cached_input =
                    max_price(h->service[t].cached_input, e->service[t].cached_input);
                h->service[t].output = max_price(h->service[t].output, e->service[t].output);
                h->service[t].listed = h->service[t].listed || e->service[t].listed;
            }
            h->kind = e->kind;
            p->has[at] = true;
        }
    }
    return 0;
}

/* Moves the sorted entries of b into a new table; of entries with the same
 * name only the first (in cmp_entry order) is kept. Empties b. */
static struct pricing *finish(struct builder *b)
{
    struct pricing *p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->v = calloc(b->n ? b->n : 1, sizeof(*p->v));
    p->lens = calloc(b->n ? b->n : 1, sizeof(*p->lens));
    if (!p->v || !p->lens)
        goto fail;
    for (size_t i = 0; i < b->n; i++) {
        struct entry *e = &b->v[i];
        if (p->n && strcmp(p->v[p->n - 1].model, e->p.model) == 0) {
            entry_release(e);
            continue;
        }
        p->v[p->n++] = e->p;
        e->p.model = e->p.provider = NULL;
    }
    /* Distinct key lengths, longest first: the prefix search tries only
     * lengths some key actually has. */
    for (size_t i = 0; i < p->n; i++) {
        size_t len = strlen(p->v[i].model), j;
        for (j = 0; j < p->nlens && p->lens[j] != len; j++)
            ;
        if (j == p->nlens)
            p->lens[p->nlens++] = len;
    }
    for (size_t i = 1; i < p->nlens; i++)
        for (size_t j = i; j > 0 && p->lens[j - 1] < p->lens[j]; j--) {
            size_t t = p->lens[j];
            p->lens[j] = p->lens[j - 1];
            p->lens[j - 1] = t;
        }
    if (highest_init(p) < 0)
        goto fail;
    pthread_mutex_init(&p->warn_lock, NULL);
    builder_release(b);
    return p;

fail:
    if (p) {
        free(p->v);
        free(p->lens);
        free(p->highest);
        free(p->has);
        free(p);
    }
    builder_release(b);
    return NULL;
}

const char *usage_unit_name(enum usage_unit u)
{
    static const char *const names[USAGE_UNITS] = {NULL, "image", "second", "character"};
    return u < USAGE_UNITS ? names[u] : NULL;
}

enum usage_tier usage_tier_of(const char *service_tier)
{
    static const char *const standard[] = {"", "auto", "default", "scale", "standard"};
    if (!service_tier)
        return USAGE_TIER_STANDARD;
    for (size_t i = 0; i < ARRAY_LEN(standard); i++)
        if (strcmp(service_tier, standard[i]) == 0)
            return USAGE_TIER_STANDARD;
    if (strcmp(service_tier, "flex") == 0)
        return USAGE_TIER_FLEX;
    return USAGE_TIER_PRIORITY; /* "priority", and a faster tier not listed here */
}

/* ---- INI ---------------------------------------------------------------- */

enum key_kind {
    K_PROVIDER, /* openai | anthropic | gemini */
    K_PRICE,    /* USD per 1M tokens */
    K_TOKENS,   /* a token count */
    K_KIND,     /* chat | embedding | image | audio */
    K_UNIT,     /* USD per unit (image, second, character), up to 9 decimals */
};

static const char *const kind_names[PRICE_KINDS] = {"chat", "embedding", "image", "audio"};

static const struct ini_key {
    const char *name;
    enum key_kind kind;
    size_t off; /* into struct price */
} ini_keys[] = {
    {"provider", K_PROVIDER, 0},
    {"input", K_PRICE, offsetof(struct price, input)},
    {"cached_input", K_PRICE, offsetof(struct price, cached_input)},
    {"cache_write", K_PRICE, offsetof(struct price, cache_write)},
    {"cache_write_1h", K_PRICE, offsetof(struct price, cache_write_1h)},
    {"output", K_PRICE, offsetof(struct price, output)},
    {"image_input", K_PRICE, offsetof(struct price, image_input)},
    {"tier_threshold", K_TOKENS, offsetof(struct price, tier_threshold)},
    {"tier_input", K_PRICE, offsetof(struct price, tier_input)},
    {"tier_cached_input", K_PRICE, offsetof(struct price, tier_cached_input)},
    {"tier_cache_write", K_PRICE, offsetof(struct price, tier_cache_write)},
    {"tier_output", K_PRICE, offsetof(struct price, tier_output)},
    {"max_output", K_TOKENS, offsetof(struct price, max_output)},
    {"kind", K_KIND, 0},
    {"per_image", K_UNIT, offsetof(struct price, per_unit[USAGE_UNIT_IMAGE])},
    {"per_second", K_UNIT, offsetof(struct price, per_unit[USAGE_UNIT_SECOND])},
    {"per_character", K_UNIT, offsetof(struct price, per_unit[USAGE_UNIT_CHARACTER])},
    {"flex_input", K_PRICE, offsetof(struct price, service[USAGE_TIER_FLEX].input)},
    {"flex_cached_input", K_PRICE, offsetof(struct price, service[USAGE_TIER_FLEX].cached_input)},
    {"flex_output", K_PRICE, offsetof(struct price, service[USAGE_TIER_FLEX].output)},
    {"priority_input", K_PRICE, offsetof(struct price, service[USAGE_TIER_PRIORITY].input)},
    {"priority_cached_input", K_PRICE,
     offsetof(struct price, service[USAGE_TIER_PRIORITY].cached_input)},
    {"priority_output", K_PRICE, offsetof(struct price, service[USAGE_TIER_PRIORITY].output)},
};
_Static_assert(sizeof(ini_keys) / sizeof(ini_keys[0]) <= 32, "KEY_BIT is a bit of an unsigned");
#define KEY_BIT(name) (1u << key_index(name))

static int key_index(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(ini_keys); i++)
        if (strcmp(ini_keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

struct ini_ctx {
    const char *path;
    const char *pos, *end; /* the unread rest of the file */
    int line;              /* of the line last handed to inih */
    unsigned hdr_seq;      /* [section] headers seen so far */
    int hdr_line;          /* line of the latest header */
    unsigned hdr_keys;     /* keys seen since the latest header */
    struct builder b;
    struct entry cur; /* the section being read; cur.p.model NULL if none */
    unsigned cur_seq; /* hdr_seq the current entry belongs to */
    unsigned seen;    /* KEY_BIT of keys set in cur */
    int err_line;     /* 0 until the first error */
    int reject_line;  /* first line ini_key returned 0 for */
    char err[256];
    bool oom;
};

PRINTF_LIKE(3, 4) static void ini_fail(struct ini_ctx *c, int line, const char *fmt, ...)
{
    if (c->err_line)
        return; /* the first error is the one worth reading */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    c->err_line = line;
}

/* fgets-style reader over the file in memory: one line per call, so our
 * count matches inih's and handlers know which line they are on. A line
 * longer than inih's buffer is an error rather than silently split. */
static char *ini_read(char *str, int num, void *stream)
{
    struct ini_ctx *c = stream;
    if (c->pos >= c->end || num < 2)
        goto eof;
    const char *nl = memchr(c->pos, '\n', (size_t)(c->end - c->pos));
    size_t len = nl ? (size_t)(nl - c->pos) + 1 : (size_t)(c->end - c->pos);
    c->line++;
    if (len > (size_t)num - 1) {
        ini_fail(c, c->line, "line longer than %d bytes", num - 2);
        return NULL;
    }
    memcpy(str, c->pos, len);
    str[len] = '\0';
    c->pos += len;

    const char *s = str;
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    if (*s == '[') {
        if (c->hdr_seq && c->hdr_keys == 0)
            ini_fail(c, c->hdr_line, "section has no prices");
        c->hdr_seq++;
        c->hdr_line = c->line;
        c->hdr_keys = 0;
    }
    return str;

eof:
    if (c->hdr_seq && c->hdr_keys == 0)
        ini_fail(c, c->hdr_line, "section has no prices");
    return NULL;
}

/* Checks the finished section and fills defaults; it moves into the builder. */
static void close_section(struct ini_ctx *c)
{
    struct entry *e = &c->cur;
    struct price *p = &e->p;
    const unsigned tier_prices = KEY_BIT("tier_input") | KEY_BIT("tier_cached_input") |
                                 KEY_BIT("tier_cache_write") | KEY_BIT("tier_output");
    if (!p->model)
        return;
    /* a model priced per unit (dall-e, whisper, tts) may have no token prices */
    const unsigned per_unit =
        KEY_BIT("per_image") | KEY_BIT("per_second") | KEY_BIT("per_character");
    if ((c->seen & per_unit) && !(c->seen & (KEY_BIT("input") | KEY_BIT("output"))))
        c->seen |= KEY_BIT("input") | KEY_BIT("output");
    if (!(c->seen & KEY_BIT("input")))
        ini_fail(c, e->line, "[%s]: missing input", p->model);
    else if (!(c->seen & KEY_BIT("output")))
        ini_fail(c, e->line, "[%s]: missing output", p->model);
    else if ((c->seen & tier_prices) && !(c->seen & KEY_BIT("tier_threshold")))
        ini_fail(c, e->line, "[%s]: tier prices without tier_threshold", p->model);
    else if ((c->seen & KEY_BIT("tier_threshold")) &&
             !(c->seen & KEY_BIT("tier_input") && c->seen & KEY_BIT("tier_output")))
        ini_fail(c, e->line, "[%s]: tier_threshold needs tier_input and tier_output", p->model);
    if (!(c->seen & KEY_BIT("cached_input")))
        p->cached_input = p->input;
    if (!(c->seen & KEY_BIT("cache_write")))
        p->cache_write = times_125(p->input);
    if (!(c->seen & KEY_BIT("cache_write_1h")))
        p->cache_write_1h = times_2(p->input);
    if (!(c->seen & KEY_BIT("image_input")))
        p->image_input = p->input;
    /* a service tier's prices: input and output both, cached defaults to input */
    static const char *const tier_keys[USAGE_TIERS][3] = {
        {NULL, NULL, NULL},
        {"flex_input", "flex_output", "flex_cached_input"},
        {"priority_input", "priority_output", "priority_cached_input"},
    };
    for (size_t t = 1; t < USAGE_TIERS; t++) {
        unsigned in = KEY_BIT(tier_keys[t][0]), out = KEY_BIT(tier_keys[t][1]),
                 cached = KEY_BIT(tier_keys[t][2]);
        if (!(c->seen & (in | out | cached)))
            continue;
        if ((c->seen & (in | out)) != (in | out))
            ini_fail(c, e->line, "[%s]: %s and %s go together", p->model, tier_keys[t][0],
                     tier_keys[t][1]);
        if (!(c->seen & cached))
            p->service[t].cached_input = p->service[t].input;
        p->service[t].listed = true;
    }
    if (p->tier_threshold) {
        if (!(c->seen & KEY_BIT("tier_cached_input")))
            p->tier_cached_input = p->tier_input;
        if (!(c->seen & KEY_BIT("tier_cache_write")))
            p->tier_cache_write = times_125(p->tier_input);
    }
    if (builder_push(&c->b, e) < 0)
        c->oom = true;
    memset(e, 0, sizeof(*e));
    c->seen = 0;
}

static bool valid_model_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

static int take_key(struct ini_ctx *c, const char *section, const char *name, const char *value);

/* inih callback: one key of one section. Returns 0 on error; our message is
 * kept in the context, and the line noted so inih's own count of errors can
 * be told apart from syntax errors. */
static int ini_key(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    int ok = take_key(c, section, name, value);
    if (!ok && !c->reject_line)
        c->reject_line = c->line;
    return ok;
}

static int take_key(struct ini_ctx *c, const char *section, const char *name, const char *value)
{
    c->hdr_keys++;
    if (!*section) {
        ini_fail(c, c->line, "\"%s\" outside a [model] section", name);
        return 0;
    }
    if (c->cur_seq != c->hdr_seq) {
        close_section(c);
        c->cur_seq = c->hdr_seq;
        if (!valid_model_name(section)) {
            ini_fail(c, c->hdr_line, "bad model name [%s]", section);
            return 0;
        }
        c->cur.p.model = strdup(section);
        c->cur.line = c->hdr_line;
        if (!c->cur.p.model) {
            c->oom = true;
            return 0;
        }
    }
    if (!c->cur.p.model)
        return 0; /* the section's name was rejected */

    int k = key_index(name);
    if (k < 0) {
        ini_fail(c, c->line, "unknown key \"%s\"", name);
        return 0;
    }
    if (c->seen & (1u << k)) {
        ini_fail(c, c->line, "duplicate key \"%s\"", name);
        return 0;
    }
    c->seen |= 1u << k;
    const struct ini_key *key = &ini_keys[k];
    int64_t *field = (int64_t *)((char *)&c->cur.p + key->off);
    switch (key->kind) {
    case K_PROVIDER:
        if (!known_provider(value)) {
            ini_fail(c, c->line, "unknown provider \"%s\" (openai, anthropic or gemini)", value);
            return 0;
        }
        c->cur.p.provider = strdup(value);
        if (!c->cur.p.provider) {
            c->oom = true;
            return 0;
        }
        break;
    case K_PRICE:
        if (money_parse_price_per_mtok(value, field) < 0) {
            ini_fail(c, c->line,
                     "%s: bad price \"%s\" (USD per 1M tokens, >= 0, at most 6 decimals)", name,
                     value);
            return 0;
        }
        break;
    case K_KIND: {
        size_t i;
        for (i = 0; i < PRICE_KINDS && strcmp(value, kind_names[i]) != 0; i++)
            ;
        if (i == PRICE_KINDS) {
            ini_fail(c, c->line, "kind: \"%s\" is not one of chat, embedding, image, audio", value);
            return 0;
        }
        c->cur.p.kind = (enum price_kind)i;
        break;
    }
    case K_UNIT: {
        money_t nano;
        if (money_parse_usd(value, &nano) < 0 || nano < 0 || nano > INT64_MAX / 1000) {
            ini_fail(c, c->line, "%s: bad price \"%s\" (USD per unit, >= 0, at most 9 decimals)",
                     name, value);
            return 0;
        }
        *field = nano * 1000; /* pico-USD */
        break;
    }
    case K_TOKENS: {
        char *endp;
        errno = 0;
        long long v = strtoll(value, &endp, 10);
        if (errno || endp == value || *endp || v <= 0 || value[0] < '0' || value[0] > '9') {
            ini_fail(c, c->line, "%s: bad token count \"%s\"", name, value);
            return 0;
        }
        *field = v;
        break;
    }
    }
    return 1;
}

static struct pricing *load_ini(const char *path, const char *buf, size_t len, char *err,
                                size_t errlen)
{
    struct ini_ctx c = {.path = path, .pos = buf, .end = buf + len};
    int rc = ini_parse_stream(ini_read, &c, ini_key, &c);
    /* The last section is checked here: no header follows to close it. A
     * reader stopped by a long line skipped the end-of-file check too. */
    ini_read(NULL, 0, &c);
    close_section(&c);
    if (c.oom) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    /* inih counts our handler's rejections too: a first error line that is
     * not one we rejected is a syntax error, and the likely cause of any
     * section-level complaint ("missing input") about an earlier line. */
    if (rc > 0 && rc != c.reject_line) {
        snprintf(err, errlen, "%s:%d: syntax error (expected [model] or key = value)", path, rc);
        goto fail;
    }
    if (c.err_line) {
        snprintf(err, errlen, "%s:%d: %s", path, c.err_line, c.err);
        goto fail;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot parse", path);
        goto fail;
    }
    if (c.b.n)
        qsort(c.b.v, c.b.n, sizeof(*c.b.v), cmp_entry);
    for (size_t i = 1; i < c.b.n; i++) {
        if (strcmp(c.b.v[i - 1].p.model, c.b.v[i].p.model) == 0) {
            const struct entry *later = &c.b.v[i];
            snprintf(err, errlen, "%s:%d: duplicate section [%s] (first at line %d)", path,
                     later->line, later->p.model, c.b.v[i - 1].line);
            goto fail;
        }
    }
    struct pricing *p = finish(&c.b);
    if (!p)
        snprintf(err, errlen, "%s: out of memory", path);
    return p;

fail:
    entry_release(&c.cur);
    builder_release(&c.b);
    return NULL;
}

/* ---- LiteLLM JSON ------------------------------------------------------- */

/* A per-token USD float to pico-USD per token. LiteLLM writes decimal
 * values like 2.5e-06; rounding value * 1e12 recovers them exactly. */
MUST_CHECK static int json_pico(json_t *v, price_t *out)
{
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v) * 1e12;
    if (!(d >= 0) || d > 9.0e18)
        return -1;
    *out = (price_t)(d + 0.5);
    return 0;
}

/* Finds the smallest long-context tier ("input_cost_per_token_above_200k_tokens")
 * and returns its threshold in tokens and the key suffix ("200k"). */
static int64_t json_tier(json_t *obj, char *suffix, size_t n)
{
    static const char pre[] = "input_cost_per_token_above_";
    const char *key;
    json_t *v;
    int64_t best = 0;
    json_object_foreach(obj, key, v)
    {
        if (strncmp(key, pre, sizeof(pre) - 1) != 0)
            continue;
        const char *s = key + sizeof(pre) - 1;
        char *e;
        long long t = strtoll(s, &e, 10);
        if (e == s || t <= 0 || t > 1000000000LL)
            continue;
        int64_t mult = *e == 'k' ? 1000 : *e == 'm' ? 1000000 : 1;
        if (mult > 1)
            e++;
        if (strcmp(e, "_tokens") != 0 || e - s >= (long)n)
            continue;
        if (!best || t * mult < best) {
            best = t * mult;
            snprintf(suffix, n, "%.*s", (int)(e - s), s);
        }
    }
    return best;
}

/* Prices one LiteLLM entry. Returns 1 if e was filled, 0 if the entry has
 * no token price (images, sample_spec), -1 on a bad value (err set). */
static int json_entry(const char *path, const char *key, json_t *obj, struct entry *e, char *err,
                      size_t errlen)
{
    struct price *p = &e->p;
    json_t *v;
    char suffix[32], name[96];

    if (!json_is_object(obj) || strcmp(key, "sample_spec") == 0)
        return 0;
    if (!json_is_number(json_object_get(obj, "input_cost_per_token")))
        return 0;
    memset(e, 0, sizeof(*e));
    if (json_pico(json_object_get(obj, "input_cost_per_token"), &p->input) < 0)
        goto bad;
    v = json_object_get(obj, "output_cost_per_token");
    if (v && json_pico(v, &p->output) < 0)
        goto bad;
    v = json_object_get(obj, "cache_read_input_token_cost");
    p->cached_input = p->input;
    if (v && json_pico(v, &p->cached_input) < 0)
        goto bad;
    v = json_object_get(obj, "cache_creation_input_token_cost");
    p->cache_write = times_125(p->input);
    p->cache_write_1h = times_2(p->input);
    p->image_input = p->input;
    json_t *vimg = json_object_get(obj, "input_cost_per_image_token");
    if (vimg && json_pico(vimg, &p->image_input) < 0)
        goto bad;
    json_t *v1h = json_object_get(obj, "cache_creation_input_token_cost_above_1hr");
    if (v1h && json_pico(v1h, &p->cache_write_1h) < 0)
        goto bad;
    if (v && json_pico(v, &p->cache_write) < 0)
        goto bad;
    /* service tiers: input_cost_per_token_flex, output_cost_per_token_flex,
     * cache_read_input_token_cost_flex (the same with _priority) */
    static const char *const tier_suffix[USAGE_TIERS] = {NULL, "flex", "priority"};
    for (size_t t = 1; t < USAGE_TIERS; t++) {
        json_t *ti, *to, *tc;
        snprintf(name, sizeof(name), "input_cost_per_token_%s", tier_suffix[t]);
        ti = json_object_get(obj, name);
        snprintf(name, sizeof(name), "output_cost_per_token_%s", tier_suffix[t]);
        to = json_object_get(obj, name);
        snprintf(name, sizeof(name), "cache_read_input_token_cost_%s", tier_suffix[t]);
        tc = json_object_get(obj, name);
        if (!ti || !to)
            continue;
        if (json_pico(ti, &p->service[t].input) < 0 || json_pico(to, &p->service[t].output) < 0)
            goto bad;
        p->service[t].cached_input = p->service[t].input;
        if (tc && json_pico(tc, &p->service[t].cached_input) < 0)
            goto bad;
        p->service[t].listed = true;
    }

    p->tier_threshold = json_tier(obj, suffix, sizeof(suffix));
    if (p->tier_threshold) {
        snprintf(name, sizeof(name), "input_cost_per_token_above_%s_tokens", suffix);
        if (json_pico(json_object_get(obj, name), &p->tier_input) < 0)
            goto bad;
        snprintf(name, sizeof(name), "output_cost_per_token_above_%s_tokens", suffix);
        v = json_object_get(obj, name);
        p->tier_output = p->output;
        if (v && json_pico(v, &p->tier_output) < 0)
            goto bad;
        snprintf(name, sizeof(name), "cache_read_input_token_cost_above_%s_tokens", suffix);
        v = json_object_get(obj, name);
        p->tier_cached_input = p->tier_input;
        if (v && json_pico(v, &p->tier_cached_input) < 0)
            goto bad;
        snprintf(name, sizeof(name), "cache_creation_input_token_cost_above_%s_tokens", suffix);
        v = json_object_get(obj, name);
        p->tier_cache_write = times_125(p->tier_input);
        if (v && json_pico(v, &p->tier_cache_write) < 0)
            goto bad;
    }

    /* LiteLLM's mode: embedding, image_generation, audio_speech,
     * audio_transcription, chat, completion, ... */
    const char *mode = json_string_value(json_object_get(obj, "mode"));
    if (mode && strcmp(mode, "embedding") == 0)
        p->kind = PRICE_KIND_EMBEDDING;
    else if (mode && strncmp(mode, "image", 5) == 0)
        p->kind = PRICE_KIND_IMAGE;
    else if (mode && strncmp(mode, "audio", 5) == 0)
        p->kind = PRICE_KIND_AUDIO;

    v = json_object_get(obj, "max_output_tokens");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        p->max_output = (int64_t)json_integer_value(v);

    /* Gemini and Anthropic API entries are keyed "gemini/<model>"; requests
     * name the bare model. */
    static const char *const strip[] = {"gemini/", "anthropic/"};
    const char *model = key;
    for (size_t i = 0; i < ARRAY_LEN(strip); i++)
        if (strncmp(key, strip[i], strlen(strip[i])) == 0)
            model = key + strlen(strip[i]);
    if (!*model)
        return 0;
    const char *prov = known_provider(json_string_value(json_object_get(obj, "litellm_provider")));
    e->rank = prov ? 0 : 1;
    p->model = strdup(model);
    p->provider = prov ? strdup(prov) : NULL;
    if (!p->model || (prov && !p->provider)) {
        entry_release(e);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 1;

bad:
    snprintf(err, errlen, "%s: \"%s\": bad price (a non-negative number of USD per token)", path,
             key);
    return -1;
}

static struct pricing *load_litellm(const char *path, const char *buf, size_t len, char *err,
                                    size_t errlen)
{
    struct builder b = {0};
    json_error_t jerr;
    const char *key;
    json_t *v;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);

    if (!root) {
        snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s:1: expected a JSON object of models", path);
        goto fail;
    }
    json_object_foreach(root, key, v)
    {
        struct entry e;
        int rc = json_entry(path, key, v, &e, err, errlen);
        if (rc < 0)
            goto fail;
        if (rc > 0 && builder_push(&b, &e) < 0) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    json_decref(root);
    root = NULL;
    /* Same name twice: a provider tollgate speaks wins, then the first. */
    if (b.n)
        qsort(b.v, b.n, sizeof(*b.v), cmp_entry);
    struct pricing *p = finish(&b);
    if (!p)
        snprintf(err, errlen, "%s: out of memory", path);
    return p;

fail:
    builder_release(&b);
    json_decref(root);
    return NULL;
}

/* ---- public ------------------------------------------------------------- */

struct pricing *pricing_load(const char *path, char *err, size_t errlen)
{
    struct pricing *p = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    /* read what the file holds (growing), never more than MAX_FILE_BYTES */
    size_t cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES)
                break;
            size_t ncap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (len > MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, MAX_FILE_BYTES);
        goto fail;
    }
    if (memchr(buf, '\0', len)) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        goto fail;
    }
    buf[len] = '\0';

    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;
    if (i < len && buf[i] == '{')
        p = load_litellm(path, buf, len, err, errlen);
    else
        p = load_ini(path, buf, len, err, errlen);

fail:
    free(buf);
    if (f)
        fclose(f);
    return p;
}

void pricing_free(struct pricing *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].model);
        free(p->v[i].provider);
    }
    free(p->v);
    free(p->lens);
    free(p->highest);
    free(p->has);
    for (size_t i = 0; i < p->nwarned; i++)
        free(p->warned[i]);
    pthread_mutex_destroy(&p->warn_lock);
    free(p);
}

const struct price *pricing_highest(const struct pricing *p, const char *provider,
                                    enum price_kind kind)
{
    for (size_t k = 0; provider && k < p->nprov; k++) {
        if (strcmp(provider_at(k)->name, provider) != 0)
            continue;
        size_t at = k * PRICE_KINDS + kind;
        return p->has[at] ? &p->highest[at] : NULL;
    }
    return NULL;
}

const struct price *pricing_choose(const struct pricing *p, enum unknown_model policy,
                                   const char *price_as, const char *provider, enum price_kind kind,
                                   const char *model, const char *fallback, bool *listed)
{
    const struct price *pr = model && *model ? pricing_lookup(p, model) : NULL;
    if (!pr && fallback && *fallback)
        pr = pricing_lookup(p, fallback);
    *listed = pr != NULL;
    if (pr)
        return pr;
    switch (policy) {
    case UNKNOWN_MODEL_HIGHEST:
        pr = pricing_highest(p, provider, kind);
        return pr ? pr : pricing_highest(p, provider, PRICE_KIND_CHAT);
    case UNKNOWN_MODEL_PRICE_AS:
        return price_as ? pricing_lookup(p, price_as) : NULL;
    case UNKNOWN_MODEL_ALLOW:
    case UNKNOWN_MODEL_BLOCK:
        break;
    }
    return NULL;
}

bool pricing_warn_once(struct pricing *p, const char *model)
{
    bool first = false;
    pthread_mutex_lock(&p->warn_lock);
    size_t i;
    for (i = 0; i < p->nwarned && strcmp(p->warned[i], model) != 0; i++)
        ;
    if (i == p->nwarned && p->nwarned < WARN_MAX && (p->warned[p->nwarned] = strdup(model))) {
        p->nwarned++;
        first = true;
    }
    pthread_mutex_unlock(&p->warn_lock);
    return first;
}

size_t pricing_count(const struct pricing *p)
{
    return p ? p->n : 0;
}

const struct price *pricing_at(const struct pricing *p, size_t i)
{
    return p && i < p->n ? &p->v[i] : NULL;
}

/* Binary search for the key equal to the first len bytes of name. */
static const struct price *find(const struct pricing *p, const char *name, size_t len)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k = p->v[mid].model;
        int c = strncmp(name, k, len);
        if (c == 0 && k[len] != '\0')
            c = -1; /* k is longer, so it sorts after name[0..len) */
        if (c == 0)
            return &p->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Exact match first, then the longest listed prefix; NULL if none. */
static const struct price *lookup(const struct pricing *p, const char *model)
{
    size_t len = strlen(model);
    const struct price *pr = find(p, model, len);
    if (pr)
        return pr;
    for (size_t i = 0; i < p->nlens; i++) {
        if (p->lens[i] >= len)
            continue;
        pr = find(p, model, p->lens[i]);
        if (pr)
            return pr;
    }
    return NULL;
}

/* A Bedrock model id as the price list names the model:
 * "us.anthropic.claude-sonnet-4-5-20250929-v1:0" -> "claude-sonnet-4-5-20250929".
 * The inference-profile region ("us.", "eu.", "apac.", "global.") and the
 * vendor ("anthropic.", "meta.", "openai.") are the dotted words before the
 * name's first '-'; the version is a trailing "-vN:M", "-vN" or ":M". Into
 * buf; false when model has neither, or buf is too small. */
static bool bedrock_name(const char *model, char *buf, size_t n)
{
    const char *dash = strchr(model, '-'), *start = model;
    for (const char *c = model; *c && (!dash || c < dash); c++)
        if (*c == '.')
            start = c + 1;
    size_t len = strlen(start);
    if (len >= n)
        return false;
    memcpy(buf, start, len + 1);
    char *colon = strrchr(buf, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
        *colon = '\0'; /* ":0" */
    char *v = strrchr(buf, '-');
    if (v && v[1] == 'v' && v[2] && strspn(v + 2, "0123456789") == strlen(v + 2))
        *v = '\0'; /* "-v1" */
    return start != model || strlen(buf) != len;
}

const struct price *pricing_lookup(const struct pricing *p, const char *model)
{
    char bedrock[128];
    if (!p || !model || !*model)
        return NULL;
    const struct price *pr = lookup(p, model);
    if (!pr && bedrock_name(model, bedrock, sizeof(bedrock)) && *bedrock)
        pr = lookup(p, bedrock);
    return pr;
}

bool pricing_tier_listed(const struct price *pr, enum usage_tier tier)
{
    return tier <= USAGE_TIER_STANDARD || tier >= USAGE_TIERS || (pr && pr->service[tier].listed);
}

money_t pricing_cost(const struct price *pr, const struct usage *u)
{
    if (!pr || !u)
        return 0;
    bool tier = pr->tier_threshold > 0 && u->input > pr->tier_threshold;
    price_t in = tier ? pr->tier_input : pr->input;
    price_t cached = tier ? pr->tier_cached_input : pr->cached_input;
    price_t write = tier ? pr->tier_cache_write : pr->cache_write;
    price_t write_1h = tier ? times_2(pr->tier_input) : pr->cache_write_1h;
    price_t out = tier ? pr->tier_output : pr->output;
    if (u->tier > USAGE_TIER_STANDARD && u->tier < USAGE_TIERS) {
        if (pr->service[u->tier].listed) {
            in = pr->service[u->tier].input;
            cached = pr->service[u->tier].cached_input;
            out = pr->service[u->tier].output;
        } else if (u->tier == USAGE_TIER_PRIORITY) { /* a stand-in above the real price */
            in = times_2(in);
            cached = times_2(cached);
            out = times_2(out);
        }
    }
    /* A provider reporting more cached than input must not earn a credit. */
    int64_t image = u->image_input < 0 ? 0 : u->image_input;
    int64_t plain = u->input - u->cached - u->cache_write;
    if (image > plain)
        image = plain > 0 ? plain : 0;
    plain -= image;
    if (plain < 0)
        plain = 0;

    int64_t pico = money_pico_mul(plain, in);
    pico = sat_add(pico, money_pico_mul(image, pr->image_input));
    pico = sat_add(pico, money_pico_mul(u->cached, cached));
    int64_t w1h = u->cache_write_1h < 0                ? 0
                  : u->cache_write_1h > u->cache_write ? u->cache_write
                                                       : u->cache_write_1h;
    pico = sat_add(pico, money_pico_mul(u->cache_write - w1h, write));
    pico = sat_add(pico, money_pico_mul(w1h, write_1h));
    pico = sat_add(pico, money_pico_mul(u->output, out));
    if (u->unit > USAGE_UNIT_NONE && u->unit < USAGE_UNITS && u->units > 0)
        pico = sat_add(pico, money_pico_mul(u->units, pr->per_unit[u->unit]));
    return money_from_pico(pico);
}

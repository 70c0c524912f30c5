/* usage_event.c: parsing and checking usage events (usage_event.h). jansson
 * builds each event (bodies are small and bounded by the admin listener's
 * max_body); unknown members are refused, so a misspelt "input_token" is
 * an error rather than a silent zero. */
#include "report/usage_event.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "core/config.h"
#include "providers/pricing.h"

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static const char *const members[] = {
    "id",           "tenant",        "user",          "feature",          "model",
    "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "cost_usd",
};

/* A string member that must pass trust_valid_id; 1: absent. */
static int id_member(json_t *o, const char *name, char *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, name);
    out[0] = '\0';
    if (!v)
        return 1;
    if (!json_is_string(v) || !trust_valid_id(json_string_value(v)) ||
        strlen(json_string_value(v)) != json_string_length(v))
        return ERR("\"%s\" must be a string of 1-128 characters of A-Z a-z 0-9 . _ : @ + = / -",
                   name);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* A token count: a non-negative integer; absent: 0. */
static int tokens_member(json_t *o, const char *name, int64_t *out, bool *given, char *err,
                         size_t errlen)
{
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return ERR("\"%s\" must be an integer", name);
    json_int_t i = json_integer_value(v);
    if (i < 0)
        return ERR("\"%s\" must not be negative", name);
    if (i > USAGE_MAX_TOKENS)
        return ERR("\"%s\" is over %lld", name, (long long)USAGE_MAX_TOKENS);
    *out = i;
    *given = true;
    return 0;
}

/* Decimal places of the shortest text that reads back as d (what the
 * caller wrote, up to a double's 17 significant digits). */
static int decimals(double d)
{
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* buf is "D.DDDDe[+-]XX": p - 1 digits after the point, times 10^XX */
    const char *dot = strchr(buf, '.'), *e = strchr(buf, 'e');
    int frac = dot && e ? (int)(e - dot - 1) : 0;
    int exp = e ? atoi(e + 1) : 0;
    /* trailing zeros of the mantissa are not places */
    while (frac > 0 && dot[frac] == '0')
        frac--;
    return frac - exp > 0 ? frac - exp : 0;
}

/* cost_usd: a number >= 0 with at most 9 decimals (nano-USD). */
static int cost_member(json_t *v, money_t *out, char *err, size_t errlen)
{
    char buf[64];
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return ERR("\"cost_usd\" must not be negative");
        if (i > USAGE_MAX_COST / MONEY_PER_USD)
            return ERR("\"cost_usd\" is over %lld", (long long)(USAGE_MAX_COST / MONEY_PER_USD));
        *out = (money_t)i * MONEY_PER_USD;
        return 0;
    }
    if (!json_is_real(v))
        return ERR("\"cost_usd\" must be a number");
    double d = json_real_value(v);
    if (d < 0)
        return ERR("\"cost_usd\" must not be negative");
    if (d > (double)(USAGE_MAX_COST / MONEY_PER_USD))
        return ERR("\"cost_usd\" is over %lld", (long long)(USAGE_MAX_COST / MONEY_PER_USD));
    if (decimals(d) > 9)
        return ERR("\"cost_usd\" has more than 9 decimals (tollgate counts nano-USD)");
    snprintf(buf, sizeof(buf), "%.9f", d);
    if (money_parse_usd(buf, out) < 0)
        return ERR("\"cost_usd\" cannot be read");
    return 0;
}

static void fingerprint(struct usage_event *e)
{
    char text[1024];
    unsigned char md[SHA256_DIGEST_LENGTH];
    int n = snprintf(text, sizeof(text), "%s\n%s\n%s\n%s\n%lld\n%lld\n%lld\n%lld\n%s%lld",
                     e->tenant, e->user, e->feature, e->model, (long long)e->usage.input,
                     (long long)e->usage.cached, (long long)e->usage.output,
                     (long long)e->usage.reasoning, e->cost_given ? "" : "-",
                     e->cost_given ? (long long)e->cost : 0LL);
    SHA256((const unsigned char *)text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1,
           md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(e->fingerprint + 2 * i, 3, "%02x", md[i]);
}

/* One event from o. */
static int event(json_t *o, const struct config *cfg, struct usage_event *e, char *err,
                 size_t errlen)
{
    if (!json_is_object(o))
        return ERR("an event must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_LEN(members) && !known; i++)
            known = strcmp(key, members[i]) == 0;
        if (!known)
            return ERR("unknown member \"%.64s\" (members: id, tenant, user, feature, model, "
                       "input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_usd)",
                       key);
    }
    memset(e, 0, sizeof(*e));
    int rc;
    if ((rc = id_member(o, "id", e->id, err, errlen)) != 0)
        return rc > 0 ? ERR("\"id\" is missing: each event needs its own id (idempotency)") : -1;
    if ((rc = id_member(o, "tenant", e->tenant, err, errlen)) != 0)
        return rc > 0 ? ERR("\"tenant\" is missing") : -1;
    if (strpbrk(e->tenant, "{}"))
        return ERR("\"tenant\" must not hold '{' or '}'");
    if (id_member(o, "user", e->user, err, errlen) < 0 ||
        id_member(o, "feature", e->feature, err, errlen) < 0)
        return -1;
    json_t *m = json_object_get(o, "model");
    if (m) {
        if (!json_is_string(m) || !json_string_length(m) ||
            json_string_length(m) >= sizeof(e->model) ||
            strlen(json_string_value(m)) != json_string_length(m))
            return ERR("\"model\" must be a string of 1-128 bytes");
        memcpy(e->model, json_string_value(m), json_string_length(m) + 1);
    }
    bool tokens = false;
    if (tokens_member(o, "input_tokens", &e->usage.input, &tokens, err, errlen) < 0 ||
        tokens_member(o, "cached_tokens", &e->usage.cached, &tokens, err, errlen) < 0 ||
        tokens_member(o, "output_tokens", &e->usage.output, &tokens, err, errlen) < 0 ||
        tokens_member(o, "reasoning_tokens", &e->usage.reasoning, &tokens, err, errlen) < 0)
        return -1;
    if (e->usage.cached > e->usage.input)
        return ERR("\"cached_tokens\" is part of \"input_tokens\" and cannot exceed it");
    if (e->usage.reasoning > e->usage.output)
        return ERR("\"reasoning_tokens\" is part of \"output_tokens\" and cannot exceed it");
    e->usage.seen = true;
    json_t *c = json_object_get(o, "cost_usd");
    if (c) {
        if (cost_member(c, &e->cost, err, errlen) < 0)
            return -1;
        e->cost_given = true;
        const struct price *pr = e->model[0] ? pricing_lookup(cfg->pricing, e->model) : NULL;
        if (pr && pr->provider)
            snprintf(e->provider, sizeof(e->provider), "%s", pr->provider);
    } else {
        if (!e->model[0] || !tokens)
            return ERR("send \"model\" with token counts, or \"cost_usd\"");
        const struct price *pr = pricing_lookup(cfg->pricing, e->model);
        if (!pr)
            return ERR("model \"%.128s\" is not in the price list: send \"cost_usd\"", e->model);
        e->cost = pricing_cost(pr, &e->usage);
        if (pr->provider)
            snprintf(e->provider, sizeof(e->provider), "%s", pr->provider);
    }
    e->tenant_configured = trust_tenant_configured(cfg, e->tenant);
    fingerprint(e);
    return 0;
}

/* Appends the event of one JSON value to *evs (grown as needed). */
static int add(json_t *o, const struct config *cfg, struct usage_event **pevs, size_t *cap,
               size_t *n, size_t *bad, char *err, size_t errlen)
{
    if (*n >= USAGE_MAX_EVENTS) {
        *bad = SIZE_MAX;
        return ERR("more than %d events in one request: send them in several", USAGE_MAX_EVENTS);
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        struct usage_event *grown = realloc(*pevs, c * sizeof(*grown));
        if (!grown)
            return ERR("out of memory");
        *pevs = grown;
        *cap = c;
    }
    struct usage_event *evs = *pevs;
    *bad = *n;
    if (event(o, cfg, &evs[*n], err, errlen) < 0)
        return -1;
    /* one id twice in a batch: the same numbers count once, others are refused */
    for (size_t i = 0; i < *n; i++)
        if (strcmp(evs[i].id, evs[*n].id) == 0 &&
            strcmp(evs[i].fingerprint, evs[*n].fingerprint) != 0)
            return ERR("id \"%s\" appears at index %zu with different numbers", evs[*n].id, i);
    (*n)++;
    return 0;
}

int usage_events_parse(const char *body, size_t len, const struct config *cfg,
                       struct usage_event **out, size_t *n, size_t *bad, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = NULL;
    struct usage_event *evs = NULL;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    *bad = SIZE_MAX;

    size_t skip = 0;
    while (skip < len && strchr(" \t\r\n", body[skip]))
        skip++;
    if (skip == len || !body[skip]) {
        snprintf(err, errlen, "the body is empty: send an event, a JSON array of events or NDJSON");
        goto fail;
    }
    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (doc && json_is_array(doc)) {
        if (!json_array_size(doc)) {
            snprintf(err, errlen, "the array holds no events");
            goto fail;
        }
        size_t i;
        json_t *v;
        json_array_foreach(doc, i, v)
        {
            if (add(v, cfg, &evs, &cap, n, bad, err, errlen) < 0)
                goto fail;
        }
    } else if (doc) {
        if (add(doc, cfg, &evs, &cap, n, bad, err, errlen) < 0)
            goto fail;
    } else {
        /* not one JSON value: NDJSON, one event per non-blank line */
        for (size_t at = 0; at < len;) {
            const char *nl = memchr(body + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - body) : len;
            size_t a = at, b = end;
            while (a < b && strchr(" \t\r", body[a]))
                a++;
            while (b > a && strchr(" \t\r", body[b - 1]))
                b--;
            if (b > a) {
                json_t *line = json_loadb(body + a, b - a, JSON_REJECT_DUPLICATES, &je);
                if (!line) {
                    *bad = *n;
                    snprintf(err, errlen, "not JSON: %s", je.text);
                    goto fail;
                }
                int rc = add(line, cfg, &evs, &cap, n, bad, err, errlen);
                json_decref(line);
                if (rc < 0)
                    goto fail;
            }
            at = end + 1;
        }
        if (!*n) {
            snprintf(err, errlen, "the body holds no events");
            goto fail;
        }
    }
    json_decref(doc);
    *out = evs;
    return 0;
fail:
    json_decref(doc);
    free(evs);
    *n = 0;
    return -1;
}

/* metrics.c: per-worker metric tables and the Prometheus text rendering.
 *
 * A worker's table is allocated whole by metrics_new and written only by its
 * worker thread: label series are appended to fixed arrays and published to
 * the admin thread by a release store of their count; their strings never
 * change afterwards. Values are atomics read and written relaxed: one writer,
 * so an increment is a relaxed load and store (no locked instruction), and
 * the reader sees each value whole. The admin thread merges the workers'
 * series by label values and prints them sorted. */
#include "core/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/money.h"
#include "providers/usage.h"

#define SERIES_MAX 256   /* METRICS_MODEL_CAP named pairs, then (provider, "other") */
#define SLOTS 512        /* open-addressing index over series: load at most 1/2 */
#define PROVIDERS_MAX 32 /* histogram label sets per worker; the last is "other" */

_Static_assert(METRICS_MODEL_CAP < SERIES_MAX - 1, "room for the \"other\" series");
_Static_assert(SERIES_MAX * 2 <= SLOTS && SLOTS <= 65536, "index load and uint16_t slots");

enum mtype { T_COUNTER, T_GAUGE, T_HISTOGRAM };

static const struct family {
    const char *name;
    enum mtype type;
    const char *labels;
    const char *help;
} families[METRIC__COUNT] = {
#define X(id, name, type, labels, help) [id] = {name, T_##type, labels, help},
    METRICS_FAMILIES(X)
#undef X
};

/* Label values with a fixed set; the last entry takes everything else. */
static const char *const decisions[] = {"admit",        "downgrade",  "block",
                                        "rate_limited", "unverified", "other"};
static const char *const cache_results[] = {"hit", "miss", "bypass", "other"};
enum token_kind { K_INPUT, K_CACHED, K_OUTPUT, K_REASONING, N_KINDS };
static const char *const kinds[N_KINDS] = {"input", "cached", "output", "reasoning"};
#define N_OUTCOMES OUTCOME__COUNT
#define N_DECISIONS ARRAY_LEN(decisions)
#define N_CACHE_RESULTS ARRAY_LEN(cache_results)

/* Histogram bucket upper bounds, microseconds and as printed: LLM calls run
 * from a cached refusal in milliseconds to a long reasoning stream in minutes. */
static const struct {
    int64_t us;
    const char *le;
} buckets[] = {{5000, "0.005"},  {10000, "0.01"},  {25000, "0.025"},   {50000, "0.05"},
               {100000, "0.1"},  {250000, "0.25"}, {500000, "0.5"},    {1000000, "1"},
               {2500000, "2.5"}, {5000000, "5"},   {10000000, "10"},   {20000000, "20"},
               {30000000, "30"}, {60000000, "60"}, {120000000, "120"}, {300000000, "300"}};
#define N_BUCKETS ARRAY_LEN(buckets) /* plus one for +Inf */

typedef _Atomic int64_t counter_t;

struct series { /* one (provider, model) pair */
    char provider[METRICS_LABEL_MAX + 1];
    char model[METRICS_LABEL_MAX + 1];
    uint32_t hash;
    counter_t requests[N_OUTCOMES];
    counter_t tokens[N_KINDS];
    counter_t cost; /* nano-USD */
    counter_t unpriced;
};

struct hist {
    counter_t bucket[N_BUCKETS + 1]; /* not cumulative; the last is +Inf */
    counter_t sum_us;                /* integer microseconds: no float accumulation */
};

struct provider {
    char name[METRICS_LABEL_MAX + 1];
    struct hist duration, ttfb;
};

struct metrics {
    _Atomic size_t n_series; /* published (release) after the entry is filled */
    size_t n_named;          /* series with a real model name (worker only) */
    uint16_t slot[SLOTS];    /* series index + 1, 0 empty (worker only) */
    struct series series[SERIES_MAX];
    _Atomic size_t n_providers;
    struct provider providers[PROVIDERS_MAX];
    counter_t decisions[N_DECISIONS];
    counter_t cache[N_CACHE_RESULTS];
    counter_t scalar[METRIC__COUNT]; /* unlabelled families */
};

static void bump(counter_t *c, int64_t n)
{
    /* single writer: no read-modify-write needed */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static int64_t get(counter_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static bool plain(enum metric_id id)
{
    return (unsigned)id < METRIC__COUNT && families[id].labels[0] == '\0' &&
           families[id].type != T_HISTOGRAM;
}

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

size_t metrics_series_count(const struct metrics *m)
{
    return atomic_load_explicit(&m->n_series, memory_order_acquire) +
           atomic_load_explicit(&m->n_providers, memory_order_acquire);
}

/* Length of s cut to METRICS_LABEL_MAX bytes without splitting a UTF-8
 * sequence. */
static size_t label_len(const char *s)
{
    size_t n = strnlen(s, METRICS_LABEL_MAX + 1);
    if (n <= METRICS_LABEL_MAX)
        return n;
    n = METRICS_LABEL_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static bool same(const char *stored, const char *s, size_t n)
{
    return memcmp(stored, s, n) == 0 && stored[n] == '\0';
}

static uint32_t hash(const char *p, size_t pn, const char *mo, size_t mn)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < pn; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    h = (h ^ 0xffu) * 16777619u; /* 0xff never occurs in UTF-8 */
    for (size_t i = 0; i < mn; i++)
        h = (h ^ (unsigned char)mo[i]) * 16777619u;
    return h;
}

/* The series of the pair, or NULL. */
static struct series *lookup(struct metrics *m, const char *p, const char *mo, size_t *slot)
{
    size_t pn = label_len(p), mn = label_len(mo);
    uint32_t h = hash(p, pn, mo, mn);
    size_t i = h & (SLOTS - 1);
    for (; m->slot[i]; i = (i + 1) & (SLOTS - 1)) {
        struct series *s = &m->series[m->slot[i] - 1];
        if (s->hash == h && same(s->provider, p, pn) && same(s->model, mo, mn))
            return s;
    }
    *slot = i;
    return NULL;
}

/* Adds the pair at the free slot lookup found; the caller checked for room. */
static struct series *add(struct metrics *m, const char *p, const char *mo, size_t slot)
{
    size_t pn = label_len(p), mn = label_len(mo);
    size_t n = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    struct series *s = &m->series[n];
    memcpy(s->provider, p, pn);
    s->provider[pn] = '\0';
    memcpy(s->model, mo, mn);
    s->model[mn] = '\0';
    s->hash = hash(p, pn, mo, mn);
    m->slot[slot] = (uint16_t)(n + 1);
    atomic_store_explicit(&m->n_series, n + 1, memory_order_release);
    return s;
}

/* The pair's series; past the cap (provider, "other"), and ("other",
 * "other") when even those would overflow (its entry is always kept free). */
static struct series *find_series(struct metrics *m, const char *p, const char *mo)
{
    size_t slot;
    struct series *s = lookup(m, p, mo, &slot);
    if (s)
        return s;
    if (m->n_named < METRICS_MODEL_CAP) {
        m->n_named++;
        return add(m, p, mo, slot);
    }
    bump(&m->scalar[METRIC_LABELS_FOLDED], 1);
    if ((s = lookup(m, p, "other", &slot)))
        return s;
    if (atomic_load_explicit(&m->n_series, memory_order_relaxed) < SERIES_MAX - 1)
        return add(m, p, "other", slot);
    if ((s = lookup(m, "other", "other", &slot)))
        return s;
    return add(m, "other", "other", slot);
}

static struct provider *find_provider(struct metrics *m, const char *p)
{
    size_t pn = label_len(p);
    size_t n = atomic_load_explicit(&m->n_providers, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (same(m->providers[i].name, p, pn))
            return &m->providers[i];
    if (n >= PROVIDERS_MAX - 1 && !same("other", p, pn)) /* the last slot is "other" */
        return find_provider(m, "other");
    struct provider *v = &m->providers[n];
    memcpy(v->name, p, pn);
    v->name[pn] = '\0';
    atomic_store_explicit(&m->n_providers, n + 1, memory_order_release);
    return v;
}

static void observe(struct hist *h, double s)
{
    if (isnan(s))
        return;
    if (s < 0)
        s = 0;
    if (s > 1e9)
        s = 1e9;
    int64_t us = llround(s * 1e6);
    size_t b = 0;
    while (b < N_BUCKETS && us > buckets[b].us)
        b++;
    bump(&h->bucket[b], 1);
    bump(&h->sum_us, us);
}

static size_t index_of(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 0; v && i + 1 < n; i++)
        if (strcmp(names[i], v) == 0)
            return i;
    return n - 1;
}

void metrics_request(struct metrics *m, const char *provider, const char *model,
                     enum outcome outcome, const struct usage *u, int64_t cost_nano, bool unpriced,
                     double latency_s, double ttfb_s)
{
    const char *p = provider && *provider ? provider : "none";
    struct series *s = find_series(m, p, model && *model ? model : "none");
    bump(&s->requests[(unsigned)outcome < N_OUTCOMES ? outcome : OUTCOME_OK], 1);
    if (u) {
        bump(&s->tokens[K_INPUT], u->input);
        bump(&s->tokens[K_CACHED], u->cached);
        bump(&s->tokens[K_OUTPUT], u->output);
        bump(&s->tokens[K_REASONING], u->reasoning);
        if (u->estimated)
            bump(&m->scalar[METRIC_ESTIMATED], 1);
    }
    bump(&s->cost, cost_nano);
    if (unpriced)
        bump(&s->unpriced, 1);
    struct provider *v = find_provider(m, p);
    if (latency_s >= 0) /* usage reported through the admin API has no duration */
        observe(&v->duration, latency_s);
    if (ttfb_s >= 0)
        observe(&v->ttfb, ttfb_s);
}

void metrics_budget(struct metrics *m, const char *decision)
{
    bump(&m->decisions[index_of(decisions, N_DECISIONS, decision)], 1);
}

void metrics_cache(struct metrics *m, const char *result, int64_t saved_nano)
{
    bump(&m->cache[index_of(cache_results, N_CACHE_RESULTS, result)], 1);
    bump(&m->scalar[METRIC_CACHE_SAVED], saved_nano);
}

void metrics_inc(struct metrics *m, enum metric_id id, int64_t n)
{
    if (plain(id))
        bump(&m->scalar[id], n);
}

void metrics_set(struct metrics *m, enum metric_id id, int64_t v)
{
    if (plain(id))
        atomic_store_explicit(&m->scalar[id], v, memory_order_relaxed);
}

/* ---- rendering (admin thread) ---- */

struct pair_sum {
    const char *provider, *model;
    int64_t requests[N_OUTCOMES], tokens[N_KINDS], cost, unpriced;
};

struct hist_sum {
    int64_t bucket[N_BUCKETS + 1], sum_us;
};

struct provider_sum {
    const char *name;
    struct hist_sum duration, ttfb;
};

struct out {
    struct evbuffer *b;
    bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n && evbuffer_add(o->b, s, n) < 0)
        o->failed = true;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Label values escape backslash, quote and newline; HELP text escapes
 * backslash and newline only. */
static void escaped(struct out *o, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : *s == '"' && quote ? "\\\""
                                               : NULL;
        if (rep) {
            put(o, run, (size_t)(s - run));
            puts_(o, rep);
            run = s + 1;
        }
    }
    put(o, run, (size_t)(s - run));
}

static void header(struct out *o, enum metric_id id)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    const struct family *f = &families[id];
    puts_(o, "# HELP ");
    puts_(o, f->name);
    puts_(o, " ");
    escaped(o, f->help, false);
    puts_(o, "\n# TYPE ");
    puts_(o, f->name);
    puts_(o, " ");
    puts_(o, type_names[f->type]);
    puts_(o, "\n");
}

/* One sample line: the family's name, suffix, its labels paired in order
 * with vals, then le when given. */
static void sample(struct out *o, enum metric_id id, const char *suffix, const char *const *vals,
                   const char *le, const char *value)
{
    const struct family *f = &families[id];
    puts_(o, f->name);
    puts_(o, suffix);
    const char *names = f->labels;
    bool any = false;
    for (size_t i = 0; *names; i++) {
        size_t n = strcspn(names, ",");
        puts_(o, any ? "," : "{");
        put(o, names, n);
        puts_(o, "=\"");
        escaped(o, vals[i], true);
        puts_(o, "\"");
        any = true;
        names += n + (names[n] == ',');
    }
    if (le) {
        puts_(o, any ? ",le=\"" : "{le=\"");
        puts_(o, le);
        puts_(o, "\"");
        any = true;
    }
    puts_(o, any ? "} " : " ");
    puts_(o, value);
    puts_(o, "\n");
}

static const char *num(char buf[32], int64_t v)
{
    snprintf(buf, 32, "%" PRId64, v);
    return buf;
}

static void histogram(struct out *o, enum metric_id id, const char *provider,
                      const struct hist_sum *h)
{
    int64_t total = 0;
    for (size_t b = 0; b <= N_BUCKETS; b++)
        total += h->bucket[b];
    if (total == 0)
        return;
    const char *vals[] = {provider};
    char buf[32];
    int64_t cum = 0;
    for (size_t b = 0; b <= N_BUCKETS; b++) {
        cum += h->bucket[b];
        sample(o, id, "_bucket", vals, b < N_BUCKETS ? buckets[b].le : "+Inf", num(buf, cum));
    }
    snprintf(buf, sizeof(buf), "%" PRId64 ".%06" PRId64, h->sum_us / 1000000, h->sum_us % 1000000);
    sample(o, id, "_sum", vals, NULL, buf);
    sample(o, id, "_count", vals, NULL, num(buf, total));
}

static int by_labels(const void *a, const void *b)
{
    const struct pair_sum *x = a, *y = b;
    int c = strcmp(x->provider, y->provider);
    return c ? c : strcmp(x->model, y->model);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct provider_sum *)a)->name, ((const struct provider_sum *)b)->name);
}

static void add_hist(struct hist_sum *to, struct hist *h)
{
    for (size_t b = 0; b <= N_BUCKETS; b++)
        to->bucket[b] += get(&h->bucket[b]);
    to->sum_us += get(&h->sum_us);
}

int metrics_render(struct evbuffer *out, struct metrics *const *per_worker, size_t n,
                   const struct metrics_extra *extra)
{
    size_t n_pairs = 0, n_provs = 0;
    for (size_t w = 0; w < n; w++)
        if (per_worker[w]) {
            n_pairs += SERIES_MAX;
            n_provs += PROVIDERS_MAX;
        }
    struct pair_sum *pairs = calloc(n_pairs + 1, sizeof(*pairs));
    struct provider_sum *provs = calloc(n_provs + 1, sizeof(*provs));
    if (!pairs || !provs) {
        free(pairs);
        free(provs);
        return -1;
    }
    int64_t decision_sum[N_DECISIONS] = {0}, scalar_sum[METRIC__COUNT] = {0};
    int64_t cache_sum[N_CACHE_RESULTS] = {0};
    n_pairs = n_provs = 0;
    for (size_t w = 0; w < n; w++) {
        struct metrics *m = per_worker[w];
        if (!m)
            continue;
        size_t ns = atomic_load_explicit(&m->n_series, memory_order_acquire);
        for (size_t i = 0; i < ns; i++) {
            struct series *s = &m->series[i];
            struct pair_sum *t = &pairs[n_pairs++];
            t->provider = s->provider;
            t->model = s->model;
            for (size_t k = 0; k < N_OUTCOMES; k++)
                t->requests[k] = get(&s->requests[k]);
            for (size_t k = 0; k < N_KINDS; k++)
                t->tokens[k] = get(&s->tokens[k]);
            t->cost = get(&s->cost);
            t->unpriced = get(&s->unpriced);
        }
        size_t np = atomic_load_explicit(&m->n_providers, memory_order_acquire);
        for (size_t i = 0; i < np; i++) {
            struct provider_sum *t = &provs[n_provs++];
            t->name = m->providers[i].name;
            add_hist(&t->duration, &m->providers[i].duration);
            add_hist(&t->ttfb, &m->providers[i].ttfb);
        }
        for (size_t k = 0; k < N_DECISIONS; k++)
            decision_sum[k] += get(&m->decisions[k]);
        for (size_t k = 0; k < N_CACHE_RESULTS; k++)
            cache_sum[k] += get(&m->cache[k]);
        for (size_t k = 0; k < METRIC__COUNT; k++)
            scalar_sum[k] += get(&m->scalar[k]);
    }

    /* merge the workers' entries for the same labels */
    qsort(pairs, n_pairs, sizeof(*pairs), by_labels);
    size_t np = 0;
    for (size_t i = 0; i < n_pairs; i++) {
        if (np && by_labels(&pairs[np - 1], &pairs[i]) == 0) {
            struct pair_sum *t = &pairs[np - 1];
            for (size_t k = 0; k < N_OUTCOMES; k++)
                t->requests[k] += pairs[i].requests[k];
            for (size_t k = 0; k < N_KINDS; k++)
                t->tokens[k] += pairs[i].tokens[k];
            t->cost += pairs[i].cost;
            t->unpriced += pairs[i].unpriced;
        } else {
            pairs[np++] = pairs[i];
        }
    }
    qsort(provs, n_provs, sizeof(*provs), by_name);
    size_t nv = 0;
    for (size_t i = 0; i < n_provs; i++) {
        if (nv && strcmp(provs[nv - 1].name, provs[i].name) == 0) {
            struct provider_sum *t = &provs[nv - 1];
            for (size_t b = 0; b <= N_BUCKETS; b++) {
                t->duration.bucket[b] += provs[i].duration.bucket[b];
                t->ttfb.bucket[b] += provs[i].ttfb.bucket[b];
            }
            t->duration.sum_us += provs[i].duration.sum_us;
            t->ttfb.sum_us += provs[i].ttfb.sum_us;
        } else {
            provs[nv++] = provs[i];
        }
    }

    struct out o = {out, false};
    char buf[32];
    for (enum metric_id id = 0; id < METRIC__COUNT; id++) {
        header(&o, id);
        switch (id) {
        case METRIC_REQUESTS:
            for (size_t i = 0; i < np; i++)
                for (size_t k = 0; k < N_OUTCOMES; k++)
                    if (pairs[i].requests[k]) {
                        const char *vals[] = {pairs[i].provider, pairs[i].model,
                                              outcome_name((enum outcome)k)};
                        sample(&o, id, "", vals, NULL, num(buf, pairs[i].requests[k]));
                    }
            break;
        case METRIC_TOKENS:
            for (size_t i = 0; i < np; i++)
                for (size_t k = 0; k < N_KINDS; k++) {
                    const char *vals[] = {pairs[i].provider, pairs[i].model, kinds[k]};
                    sample(&o, id, "", vals, NULL, num(buf, pairs[i].tokens[k]));
                }
            break;
        case METRIC_COST:
            for (size_t i = 0; i < np; i++) {
                const char *vals[] = {pairs[i].provider, pairs[i].model};
                if (money_format(pairs[i].cost, buf, sizeof(buf)) < 0)
                    snprintf(buf, sizeof(buf), "0");
                sample(&o, id, "", vals, NULL, buf);
            }
            break;
        case METRIC_UNPRICED:
            for (size_t i = 0; i < np; i++)
                if (pairs[i].unpriced) {
                    const char *vals[] = {pairs[i].provider, pairs[i].model};
                    sample(&o, id, "", vals, NULL, num(buf, pairs[i].unpriced));
                }
            break;
        case METRIC_DURATION:
        case METRIC_TTFB:
            for (size_t i = 0; i < nv; i++)
                histogram(&o, id, provs[i].name,
                          id == METRIC_DURATION ? &provs[i].duration : &provs[i].ttfb);
            break;
        case METRIC_BUDGET_DECISIONS:
            for (size_t k = 0; k < N_DECISIONS; k++)
                if (k + 1 < N_DECISIONS || decision_sum[k]) {
                    const char *vals[] = {decisions[k]};
                    sample(&o, id, "", vals, NULL, num(buf, decision_sum[k]));
                }
            break;
        case METRIC_CACHE_REQUESTS:
            for (size_t k = 0; k < N_CACHE_RESULTS; k++)
                if (k + 1 < N_CACHE_RESULTS || cache_sum[k]) {
                    const char *vals[] = {cache_results[k]};
                    sample(&o, id, "", vals, NULL, num(buf, cache_sum[k]));
                }
            break;
        case METRIC_CACHE_SAVED: /* nano-USD summed as integers, printed as dollars */
            if (money_format(scalar_sum[id], buf, sizeof(buf)) < 0)
                snprintf(buf, sizeof(buf), "0");
            sample(&o, id, "", NULL, NULL, buf);
            break;
        default: /* unlabelled */
            if (plain(id))
                sample(&o, id, "", NULL, NULL,
                       num(buf, scalar_sum[id] + (extra ? extra->value[id] : 0)));
            break;
        }
    }
    free(pairs);
    free(provs);
    return o.failed ? -1 : 0;
}

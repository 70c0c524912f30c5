/* test_metrics.c: requests from a table recorded into two workers' tables,
 * rendered, and read back by a strict text-format 0.0.4 parser: every line a
 * HELP/TYPE comment or a sample, TYPE before samples, families contiguous,
 * no duplicate series, histogram buckets cumulative with +Inf equal to
 * _count; then the values against what was recorded (cost exact to the
 * nano-dollar), label escaping, the label cap, and the hot path's allocation. */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check.h"
#include "core/metrics.h"
#include "core/money.h"
#include "providers/usage.h"

/* ---- a strict parser ---- */

#define MAX_LABELS 4
#define MAX_VALUE 256
#define MAX_FAMILIES 64

struct sample {
    char name[96];
    size_t nl;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][MAX_VALUE];
    char text[48]; /* the value as written */
    double v;
    int family;
};

struct family {
    char name[96];
    char type[16];
    bool help, sampled;
};

struct parsed {
    struct sample *s;
    size_t n, cap;
    struct family f[MAX_FAMILIES];
    size_t nf;
    char err[160];
};

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
           (!first && c >= '0' && c <= '9');
}

/* Reads a metric or label name; returns its length, 0 if none. */
static size_t read_name(const char *p, bool colon)
{
    size_t n = 0;
    while (name_char(p[n], n == 0, colon))
        n++;
    return n;
}

static int find_family(struct parsed *ps, const char *name, size_t n)
{
    for (size_t i = 0; i < ps->nf; i++)
        if (strlen(ps->f[i].name) == n && memcmp(ps->f[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

static int fail(struct parsed *ps, int line, const char *why)
{
    snprintf(ps->err, sizeof(ps->err), "line %d: %s", line, why);
    return -1;
}

static int comment(struct parsed *ps, int ln, const char *p, const char *end)
{
    bool help = strncmp(p, "# HELP ", 7) == 0, type = strncmp(p, "# TYPE ", 7) == 0;
    if (!help && !type)
        return fail(ps, ln, "a comment that is neither HELP nor TYPE");
    p += 7;
    size_t n = read_name(p, true);
    if (!n || p[n] != ' ')
        return fail(ps, ln, "bad metric name in comment");
    int f = find_family(ps, p, n);
    if (f < 0) {
        if (ps->nf == MAX_FAMILIES)
            return fail(ps, ln, "too many families");
        f = (int)ps->nf++;
        memcpy(ps->f[f].name, p, n);
    }
    struct family *fa = &ps->f[f];
    if (fa->sampled)
        return fail(ps, ln, "HELP/TYPE after the family's samples");
    const char *rest = p + n + 1;
    if (help) {
        if (fa->help)
            return fail(ps, ln, "second HELP");
        fa->help = true;
        for (const char *q = rest; q < end; q++)
            if (*q == '\\' && *++q != '\\' && *q != 'n')
                return fail(ps, ln, "bad escape in HELP");
        return 0;
    }
    if (fa->type[0])
        return fail(ps, ln, "second TYPE");
    size_t tn = (size_t)(end - rest);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < 5; i++)
        if (strlen(types[i]) == tn && memcmp(types[i], rest, tn) == 0) {
            memcpy(fa->type, rest, tn);
            return 0;
        }
    return fail(ps, ln, "unknown TYPE");
}

static int sample_line(struct parsed *ps, int ln, const char *p, const char *end, int *last)
{
    if (ps->n == ps->cap)
        return fail(ps, ln, "too many samples");
    struct sample *s = &ps->s[ps->n];
    memset(s, 0, sizeof(*s));
    size_t n = read_name(p, true);
    if (!n || n >= sizeof(s->name))
        return fail(ps, ln, "bad metric name");
    memcpy(s->name, p, n);
    p += n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s->nl == MAX_LABELS)
                return fail(ps, ln, "too many labels");
            size_t k = read_name(p, false);
            if (!k || k >= sizeof(s->key[0]) || p[k] != '=' || p[k + 1] != '"')
                return fail(ps, ln, "bad label name");
            memcpy(s->key[s->nl], p, k);
            for (size_t i = 0; i < s->nl; i++)
                if (strcmp(s->key[i], s->key[s->nl]) == 0)
                    return fail(ps, ln, "repeated label");
            p += k + 2;
            size_t vn = 0;
            char *v = s->val[s->nl];
            for (; *p != '"'; p++) {
                if (p >= end)
                    return fail(ps, ln, "unterminated label value");
                char c = *p;
                if (c == '\\') {
                    p++;
                    c = *p == 'n' ? '\n' : *p == '\\' ? '\\' : *p == '"' ? '"' : 0;
                    if (!c)
                        return fail(ps, ln, "bad escape in label value");
                }
                if (vn + 1 >= MAX_VALUE)
                    return fail(ps, ln, "label value too long");
                v[vn++] = c;
            }
            p++;
            s->nl++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return fail(ps, ln, "expected , or }");
        }
        p++;
    }
    if (*p != ' ')
        return fail(ps, ln, "expected one space before the value");
    p++;
    size_t vn = (size_t)(end - p);
    if (!vn || vn >= sizeof(s->text))
        return fail(ps, ln, "bad value length");
    memcpy(s->text, p, vn);
    if (strcmp(s->text, "+Inf") == 0)
        s->v = INFINITY;
    else {
        char *e;
        s->v = strtod(s->text, &e);
        if (*e || s->text[0] == ' ' || strchr(s->text, ' '))
            return fail(ps, ln, "value is not a number (or has a timestamp)");
    }
    /* the family: the name itself, or a histogram's _bucket/_sum/_count */
    int f = find_family(ps, s->name, n);
    if (f < 0 || !ps->f[f].type[0]) {
        static const char *const suffix[] = {"_bucket", "_sum", "_count"};
        f = -1;
        for (size_t i = 0; i < 3 && f < 0; i++) {
            size_t sl = strlen(suffix[i]);
            if (n > sl && strcmp(s->name + n - sl, suffix[i]) == 0) {
                int g = find_family(ps, s->name, n - sl);
                if (g >= 0 && strcmp(ps->f[g].type, "histogram") == 0)
                    f = g;
            }
        }
    } else if (strcmp(ps->f[f].type, "histogram") == 0) {
        return fail(ps, ln, "a histogram's sample without a suffix");
    }
    if (f < 0)
        return fail(ps, ln, "sample before (or without) its TYPE");
    if (ps->f[f].sampled && *last != f)
        return fail(ps, ln, "family's samples are not contiguous");
    bool is_le = false;
    for (size_t i = 0; i < s->nl; i++)
        is_le |= strcmp(s->key[i], "le") == 0;
    if (is_le != (strcmp(ps->f[f].type, "histogram") == 0 && strstr(s->name, "_bucket")))
        return fail(ps, ln, "le label on a non-bucket, or a bucket without le");
    ps->f[f].sampled = true;
    *last = f;
    s->family = f;
    ps->n++;
    return 0;
}

static bool same_series(const struct sample *a, const struct sample *b, bool skip_le)
{
    if (strcmp(a->name, b->name) != 0)
        return false;
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < a->nl; i++) {
        if (skip_le && strcmp(a->key[i], "le") == 0)
            continue;
        na++;
        bool found = false;
        for (size_t j = 0; j < b->nl; j++)
            found |= strcmp(a->key[i], b->key[j]) == 0 && strcmp(a->val[i], b->val[j]) == 0;
        if (!found)
            return false;
    }
    for (size_t j = 0; j < b->nl; j++)
        nb += !(skip_le && strcmp(b->key[j], "le") == 0);
    return na == nb;
}

static const char *label(const struct sample *s, const char *k)
{
    for (size_t i = 0; i < s->nl; i++)
        if (strcmp(s->key[i], k) == 0)
            return s->val[i];
    return NULL;
}

/* Each histogram series: le strictly increasing to +Inf, counts
 * non-decreasing, _count equal to the +Inf bucket, a _sum. */
static int check_histograms(struct parsed *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        struct sample *s = &ps->s[i];
        size_t nl = strlen(s->name);
        if (nl < 7 || strcmp(s->name + nl - 7, "_bucket") != 0)
            continue;
        if (i > 0 && same_series(&ps->s[i - 1], s, true))
            continue; /* not the first bucket of its series */
        double prev_le = -INFINITY, prev = 0;
        size_t j = i;
        for (; j < ps->n && same_series(&ps->s[j], s, true); j++) {
            double le = strcmp(label(&ps->s[j], "le"), "+Inf") == 0
                            ? INFINITY
                            : strtod(label(&ps->s[j], "le"), NULL);
            if (!(le > prev_le) || ps->s[j].v < prev)
                return fail(ps, 0, "buckets not increasing");
            prev_le = le;
            prev = ps->s[j].v;
        }
        if (prev_le != INFINITY)
            return fail(ps, 0, "no +Inf bucket");
        struct sample want = *s;
        size_t base = nl - 7;
        int have = 0;
        for (size_t k = 0; k < ps->n; k++) {
            struct sample *t = &ps->s[k];
            if (strncmp(t->name, s->name, base) != 0)
                continue;
            snprintf(want.name, sizeof(want.name), "%.*s_count", (int)base, s->name);
            if (same_series(t, &want, true)) {
                have |= 1;
                if (t->v != prev)
                    return fail(ps, 0, "_count differs from the +Inf bucket");
            }
            snprintf(want.name, sizeof(want.name), "%.*s_sum", (int)base, s->name);
            if (same_series(t, &want, true))
                have |= 2;
        }
        if (have != 3)
            return fail(ps, 0, "histogram without _count or _sum");
    }
    return 0;
}

static int parse(struct parsed *ps, const char *text)
{
    memset(ps, 0, sizeof(*ps));
    ps->cap = 8192;
    ps->s = calloc(ps->cap, sizeof(*ps->s));
    size_t len = strlen(text);
    if (!len || text[len - 1] != '\n')
        return fail(ps, 0, "does not end in a newline");
    int ln = 0, last = -1;
    for (const char *p = text; *p; ln++) {
        const char *end = strchr(p, '\n');
        if (end == p)
            return fail(ps, ln, "empty line");
        int rc = *p == '#' ? comment(ps, ln, p, end) : sample_line(ps, ln, p, end, &last);
        if (rc < 0)
            return -1;
        p = end + 1;
    }
    for (size_t i = 0; i < ps->n; i++)
        for (size_t j = i + 1; j < ps->n; j++)
            if (same_series(&ps->s[i], &ps->s[j], false))
                return fail(ps, 0, "duplicate series");
    return check_histograms(ps);
}

/* The sample name{k=v,...} (NULL-terminated pairs, exactly those labels). */
static const struct sample *find(const struct parsed *ps, const char *name, ...)
{
    struct sample want = {0};
    snprintf(want.name, sizeof(want.name), "%s", name);
    va_list ap;
    va_start(ap, name);
    const char *k;
    while ((k = va_arg(ap, const char *))) {
        snprintf(want.key[want.nl], sizeof(want.key[0]), "%s", k);
        snprintf(want.val[want.nl], sizeof(want.val[0]), "%s", va_arg(ap, const char *));
        want.nl++;
    }
    va_end(ap);
    for (size_t i = 0; i < ps->n; i++)
        if (same_series(&ps->s[i], &want, false))
            return &ps->s[i];
    return NULL;
}

static double value(const struct parsed *ps, const struct sample *s)
{
    return s ? s->v : NAN;
}

static double sum_of(const struct parsed *ps, const char *name)
{
    double t = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->s[i].name, name) == 0)
            t += ps->s[i].v;
    return t;
}

static char *render(struct metrics *const *w, size_t n, const struct metrics_extra *x)
{
    struct evbuffer *b = evbuffer_new();
    if (metrics_render(b, w, n, x) < 0) {
        evbuffer_free(b);
        return NULL;
    }
    size_t len = evbuffer_get_length(b);
    char *s = malloc(len + 1);
    evbuffer_remove(b, s, len);
    s[len] = '\0';
    evbuffer_free(b);
    return s;
}

/* ---- the parser itself rejects what it should ---- */

static void test_parser_rejects(void)
{
    static const char *const bad[] = {
        "x 1\n",                                                        /* no TYPE */
        "# TYPE x counter\nx 1",                                        /* no final newline */
        "# TYPE x counter\nx{a=\"1} 1\n",                               /* unterminated */
        "# TYPE x counter\nx{a=\"\\t\"} 1\n",                           /* bad escape */
        "# TYPE x counter\nx 1 2\n",                                    /* timestamp */
        "# TYPE x counter\nx 1\nx 2\n",                                 /* duplicate */
        "# TYPE x counter\n# TYPE y counter\nx 1\ny 1\nx{a=\"b\"} 1\n", /* not contiguous */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count "
        "1\n", /* decreasing */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count "
        "1\n",                                                            /* count != +Inf */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct parsed ps;
        int rc = parse(&ps, bad[i]);
        if (rc == 0)
            fprintf(stderr, "  accepted bad input %zu\n", i);
        CHECK(rc < 0);
        free(ps.s);
    }
    struct parsed ps;
    CHECK_INT(parse(&ps, "# HELP h a\\\\b\n# TYPE h histogram\nh_bucket{p=\"a\\\"\\n\",le=\"1\"} "
                         "1\nh_bucket{p=\"a\\\"\\n\",le=\"+Inf\"} 1\nh_sum{p=\"a\\\"\\n\"} "
                         "0.5\nh_count{p=\"a\\\"\\n\"} 1\n"),
              0);
    CHECK_STR(ps.n ? ps.s[0].val[0] : NULL, "a\"\n");
    free(ps.s);
}

/* ---- recording and rendering ---- */

static const char weird[] = "we\"ird\\mo\ndel"; /* quote, backslash, newline */

static const struct row {
    int worker;
    const char *provider, *model;
    enum outcome outcome;
    int64_t in, cached, out, reasoning, cost;
    bool unpriced, estimated;
    double latency, ttfb;
} rows[] = {
    {0, "openai", "gpt-4o", OUTCOME_OK, 1000, 200, 500, 0, 405000, false, false, 0.812, 0.301},
    {1, "openai", "gpt-4o", OUTCOME_OK, 10, 0, 20, 0, 1, false, false, 0.005, 0.004},
    {1, "openai", "gpt-4o", OUTCOME_OK, 7, 0, 3, 0, 123456789012LL, false, true, 1.0, 0.5},
    {0, "openai", "gpt-4o", OUTCOME_CLIENT_ABORTED, 50, 0, 9, 0, 999999999, false, true, 300.0,
     2.0},
    {0, "openai", "o3", OUTCOME_OK, 100, 0, 900, 800, 7, false, false, 45.5, 3.1},
    {1, "anthropic", "claude-sonnet-4-5", OUTCOME_OK, 3000, 2500, 100, 0, 2100000, false, false,
     2.4, 0.9},
    {1, "anthropic", "claude-sonnet-4-5", OUTCOME_UPSTREAM_ERROR, 0, 0, 0, 0, 0, false, false, 0.2,
     -1},
    {0, "gemini", "mystery-model", OUTCOME_OK, 11, 0, 12, 0, 0, true, false, 0.03, 0.02},
    {1, "gemini", "mystery-model", OUTCOME_OK, 13, 0, 14, 0, 0, true, false, 301.0, 0.01},
    {0, "openai", weird, OUTCOME_OK, 1, 0, 1, 0, 3, false, false, 0.1, 0.05},
    {0, NULL, NULL, OUTCOME_BAD_REQUEST, 0, 0, 0, 0, 0, false, false, 0.0001, -1},
    {1, "", "", OUTCOME_BLOCKED, 0, 0, 0, 0, 0, false, false, 0.002, -1},
    {1, "openai", "gpt-4o", OUTCOME_RATE_LIMITED, 0, 0, 0, 0, 0, false, false, 0.01, -1},
};

static const char *lp(const char *p)
{
    return p && *p ? p : "none";
}

static const char *lo(enum outcome o)
{
    return outcome_name(o);
}

static void record_rows(struct metrics *w[2])
{
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const struct row *r = &rows[i];
        struct usage u = {.input = r->in,
                          .cached = r->cached,
                          .output = r->out,
                          .reasoning = r->reasoning,
                          .seen = true,
                          .estimated = r->estimated};
        metrics_request(w[r->worker], r->provider, r->model, r->outcome, &u, r->cost, r->unpriced,
                        r->latency, r->ttfb);
    }
}

static void test_render_two_workers(void)
{
    struct metrics *w[2] = {metrics_new(), metrics_new()};
    CHECK(w[0] && w[1]);
    record_rows(w);
    metrics_budget(w[0], "admit");
    metrics_budget(w[1], "admit");
    metrics_budget(w[1], "admit");
    metrics_budget(w[0], "block");
    metrics_budget(w[1], "nonsense");
    metrics_inc(w[0], METRIC_REDIS_ERRORS, 2);
    metrics_inc(w[1], METRIC_REDIS_ERRORS, 3);
    metrics_inc(w[0], METRIC_INFLIGHT, 1);
    metrics_inc(w[0], METRIC_INFLIGHT, 1);
    metrics_inc(w[0], METRIC_INFLIGHT, -1);
    metrics_set(w[1], METRIC_JOURNAL_PENDING, 9);
    metrics_set(w[1], METRIC_JOURNAL_PENDING, 4);
    metrics_inc(w[0], METRIC_REQUESTS, 100); /* labelled: ignored */
    struct metrics_extra x = {
        .value = {
            [METRIC_CONNECTIONS] = 7, [METRIC_RECORDS_WRITTEN] = 11, [METRIC_REDIS_ERRORS] = 1}};
    char *text = render(w, 2, &x);
    CHECK(text != NULL);
    struct parsed ps;
    int rc = parse(&ps, text);
    if (rc < 0)
        fprintf(stderr, "  parse: %s\n%s", ps.err, text);
    CHECK_INT(rc, 0);

    /* every contract family is there with its type */
    static const struct {
        const char *name, *type;
    } fams[] = {{"tollgate_requests_total", "counter"},
                {"tollgate_tokens_total", "counter"},
                {"tollgate_cost_usd_total", "counter"},
                {"tollgate_request_duration_seconds", "histogram"},
                {"tollgate_upstream_ttfb_seconds", "histogram"},
                {"tollgate_budget_decisions_total", "counter"},
                {"tollgate_redis_errors_total", "counter"},
                {"tollgate_inflight_requests", "gauge"},
                {"tollgate_unpriced_requests_total", "counter"},
                {"tollgate_estimated_requests_total", "counter"},
                {"tollgate_journal_pending", "gauge"},
                {"tollgate_records_written_total", "counter"},
                {"tollgate_connections", "gauge"}};
    for (size_t i = 0; i < ARRAY_LEN(fams); i++) {
        int f = find_family(&ps, fams[i].name, strlen(fams[i].name));
        CHECK(f >= 0);
        if (f >= 0) {
            CHECK_STR(ps.f[f].type, fams[i].type);
            CHECK(ps.f[f].help);
        }
    }

    /* requests, tokens, cost per label set, from the table */
    CHECK_INT(sum_of(&ps, "tollgate_requests_total"), ARRAY_LEN(rows));
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const struct row *r = &rows[i];
        const char *p = lp(r->provider), *m = lp(r->model), *o = lo(r->outcome);
        int64_t n = 0, tok[4] = {0}, cost = 0, unpriced = 0;
        for (size_t j = 0; j < ARRAY_LEN(rows); j++) {
            const struct row *q = &rows[j];
            if (strcmp(lp(q->provider), p) || strcmp(lp(q->model), m))
                continue;
            n += strcmp(lo(q->outcome), o) == 0;
            tok[0] += q->in;
            tok[1] += q->cached;
            tok[2] += q->out;
            tok[3] += q->reasoning;
            cost += q->cost;
            unpriced += q->unpriced;
        }
        CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", p, "model", m,
                                  "outcome", o, NULL)),
                  n);
        static const char *const kinds[] = {"input", "cached", "output", "reasoning"};
        for (int k = 0; k < 4; k++)
            CHECK_INT(value(&ps, find(&ps, "tollgate_tokens_total", "provider", p, "model", m,
                                      "kind", kinds[k], NULL)),
                      tok[k]);
        char want[32];
        CHECK(money_format(cost, want, sizeof(want)) > 0);
        const struct sample *c =
            find(&ps, "tollgate_cost_usd_total", "provider", p, "model", m, NULL);
        CHECK_STR(c ? c->text : NULL, want);
        const struct sample *up =
            find(&ps, "tollgate_unpriced_requests_total", "provider", p, "model", m, NULL);
        CHECK_INT(up ? up->v : 0, unpriced);
    }
    /* nano-dollar exact where a double would not be */
    const struct sample *c =
        find(&ps, "tollgate_cost_usd_total", "provider", "openai", "model", "gpt-4o", NULL);
    CHECK_STR(c ? c->text : NULL, "124.457194012");
    /* escaping round-trips, and the raw text carries the escapes */
    CHECK(find(&ps, "tollgate_cost_usd_total", "provider", "openai", "model", weird, NULL));
    CHECK(strstr(text, "model=\"we\\\"ird\\\\mo\\ndel\"") != NULL);
    CHECK(find(&ps, "tollgate_requests_total", "provider", "openai", "model", "gpt-4o", "outcome",
               "rate_limited", NULL));

    /* histograms: bucket counts from the bounds, _count, _sum */
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5,   5,    10,    20,   30,  60,   120, 300};
    static const char *const les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                      "0.5",   "1",    "2.5",   "5",    "10",  "20",
                                      "30",    "60",   "120",   "300"};
    static const char *const provs[] = {"openai", "anthropic", "gemini", "none"};
    for (int h = 0; h < 2; h++) {
        const char *base =
            h ? "tollgate_upstream_ttfb_seconds" : "tollgate_request_duration_seconds";
        char bucket[96], count[96], sum[96];
        snprintf(bucket, sizeof(bucket), "%s_bucket", base);
        snprintf(count, sizeof(count), "%s_count", base);
        snprintf(sum, sizeof(sum), "%s_sum", base);
        for (size_t pi = 0; pi < ARRAY_LEN(provs); pi++) {
            int64_t n = 0;
            double total = 0;
            for (size_t j = 0; j < ARRAY_LEN(rows); j++) {
                double v = h ? rows[j].ttfb : rows[j].latency;
                if (strcmp(lp(rows[j].provider), provs[pi]) == 0 && v >= 0) {
                    n++;
                    total += v;
                }
            }
            const struct sample *cs = find(&ps, count, "provider", provs[pi], NULL);
            if (n == 0) {
                CHECK(cs == NULL); /* none observed: no series */
                continue;
            }
            CHECK_INT(value(&ps, cs), n);
            CHECK(fabs(value(&ps, find(&ps, sum, "provider", provs[pi], NULL)) - total) < 1e-5);
            for (size_t b = 0; b < ARRAY_LEN(bounds); b++) {
                int64_t le = 0;
                for (size_t j = 0; j < ARRAY_LEN(rows); j++) {
                    double v = h ? rows[j].ttfb : rows[j].latency;
                    le += strcmp(lp(rows[j].provider), provs[pi]) == 0 && v >= 0 && v <= bounds[b];
                }
                CHECK_INT(value(&ps, find(&ps, bucket, "provider", provs[pi], "le", les[b], NULL)),
                          le);
            }
            CHECK_INT(value(&ps, find(&ps, bucket, "provider", provs[pi], "le", "+Inf", NULL)), n);
        }
    }
    /* boundaries are inclusive: 0.005 s and 300 s sit in their own buckets */
    CHECK_INT(value(&ps, find(&ps, "tollgate_request_duration_seconds_bucket", "provider", "openai",
                              "le", "0.005", NULL)),
              1);

    /* decisions, plain families, extra */
    CHECK_INT(value(&ps, find(&ps, "tollgate_budget_decisions_total", "decision", "admit", NULL)),
              3);
    CHECK_INT(value(&ps, find(&ps, "tollgate_budget_decisions_total", "decision", "block", NULL)),
              1);
    CHECK_INT(
        value(&ps, find(&ps, "tollgate_budget_decisions_total", "decision", "downgrade", NULL)), 0);
    CHECK_INT(value(&ps, find(&ps, "tollgate_budget_decisions_total", "decision", "other", NULL)),
              1);
    CHECK_INT(value(&ps, find(&ps, "tollgate_redis_errors_total", NULL)), 6);
    CHECK_INT(value(&ps, find(&ps, "tollgate_inflight_requests", NULL)), 1);
    CHECK_INT(value(&ps, find(&ps, "tollgate_journal_pending", NULL)), 4);
    CHECK_INT(value(&ps, find(&ps, "tollgate_connections", NULL)), 7);
    CHECK_INT(value(&ps, find(&ps, "tollgate_records_written_total", NULL)), 11);
    CHECK_INT(value(&ps, find(&ps, "tollgate_estimated_requests_total", NULL)), 2);
    CHECK_INT(value(&ps, find(&ps, "tollgate_metric_labels_folded_total", NULL)), 0);

    /* a NULL worker and no extra are fine; one worker alone renders too */
    struct metrics *one[3] = {w[0], NULL, NULL};
    char *t2 = render(one, 3, NULL);
    struct parsed p2;
    CHECK_INT(parse(&p2, t2 ? t2 : ""), 0);
    CHECK_INT(value(&p2, find(&p2, "tollgate_redis_errors_total", NULL)), 2);
    free(p2.s);
    free(t2);

    free(ps.s);
    free(text);
    metrics_free(w[0]);
    metrics_free(w[1]);
}

static void test_empty(void)
{
    struct metrics *w = metrics_new();
    char *text = render(&w, 1, NULL);
    struct parsed ps;
    CHECK_INT(parse(&ps, text ? text : ""), 0);
    CHECK_INT(sum_of(&ps, "tollgate_requests_total"), 0);
    CHECK(find(&ps, "tollgate_budget_decisions_total", "decision", "admit", NULL));
    free(ps.s);
    free(text);
    metrics_free(w);
    metrics_free(NULL);
}

static void test_cardinality_cap(void)
{
    struct metrics *w = metrics_new();
    char model[32];
    int calls = 0;
    for (int i = 0; i < METRICS_MODEL_CAP + 50; i++) {
        snprintf(model, sizeof(model), "m%03d", i);
        metrics_request(w, "openai", model, OUTCOME_OK, NULL, 1, false, 0.1, -1);
        calls++;
    }
    metrics_request(w, "openai", "m000", OUTCOME_OK, NULL, 1, false, 0.1, -1); /* named: stays */
    metrics_request(w, "openai", "m210", OUTCOME_OK, NULL, 1, false, 0.1, -1); /* folded */
    metrics_request(w, "anthropic", "x", OUTCOME_OK, NULL, 1, false, 0.1,
                    -1); /* (anthropic, other) */
    calls += 3;
    /* so many providers past the cap that even (provider, other) runs out */
    char prov[32];
    for (int i = 0; i < 100; i++) {
        snprintf(prov, sizeof(prov), "p%03d", i);
        metrics_request(w, prov, "y", OUTCOME_OK, NULL, 1, false, 0.1, -1);
        calls++;
    }
    CHECK(metrics_series_count(w) <= 256 + 32);
    char *text = render(&w, 1, NULL);
    struct parsed ps;
    int rc = parse(&ps, text ? text : "");
    if (rc < 0)
        fprintf(stderr, "  parse: %s\n", ps.err);
    CHECK_INT(rc, 0);
    CHECK_INT(sum_of(&ps, "tollgate_requests_total"), calls);
    int named = 0;
    for (size_t i = 0; i < ps.n; i++)
        if (strcmp(ps.s[i].name, "tollgate_requests_total") == 0 &&
            strcmp(label(&ps.s[i], "model"), "other") != 0)
            named++;
    CHECK_INT(named, METRICS_MODEL_CAP);
    CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", "openai", "model", "m000",
                              "outcome", "ok", NULL)),
              2);
    CHECK(find(&ps, "tollgate_requests_total", "provider", "openai", "model", "m210", "outcome",
               "ok", NULL) == NULL);
    CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", "openai", "model",
                              "other", "outcome", "ok", NULL)),
              51);
    CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", "anthropic", "model",
                              "other", "outcome", "ok", NULL)),
              1);
    CHECK(find(&ps, "tollgate_requests_total", "provider", "other", "model", "other", "outcome",
               "ok", NULL) != NULL);
    CHECK_INT(value(&ps, find(&ps, "tollgate_metric_labels_folded_total", NULL)),
              calls - 201); /* all but the named ones */
    /* the histograms' providers are capped too */
    int hist_series = 0;
    for (size_t i = 0; i < ps.n; i++)
        hist_series += strcmp(ps.s[i].name, "tollgate_request_duration_seconds_count") == 0;
    CHECK(hist_series <= 32);
    CHECK(find(&ps, "tollgate_request_duration_seconds_count", "provider", "other", NULL) != NULL);
    CHECK_INT(sum_of(&ps, "tollgate_request_duration_seconds_count"), calls);
    free(ps.s);
    free(text);
    metrics_free(w);
}

static void test_long_labels(void)
{
    struct metrics *w = metrics_new();
    char a[301], e[201];
    memset(a, 'a', 300);
    a[300] = '\0';
    for (int i = 0; i < 100; i++)
        memcpy(e + 2 * i, "\xc3\xa9", 2); /* é */
    e[200] = '\0';
    metrics_request(w, "openai", a, OUTCOME_OK, NULL, 0, false, 0.1, -1);
    metrics_request(w, "openai", a, OUTCOME_OK, NULL, 0, false, 0.1, -1);
    metrics_request(w, "openai", e, OUTCOME_OK, NULL, 0, false, 0.1, -1);
    char *text = render(&w, 1, NULL);
    struct parsed ps;
    CHECK_INT(parse(&ps, text ? text : ""), 0);
    char a127[128], e126[127];
    memcpy(a127, a, 127);
    a127[127] = '\0';
    memcpy(e126, e, 126); /* 127 would split a character */
    e126[126] = '\0';
    CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", "openai", "model", a127,
                              "outcome", "ok", NULL)),
              2);
    CHECK_INT(value(&ps, find(&ps, "tollgate_requests_total", "provider", "openai", "model", e126,
                              "outcome", "ok", NULL)),
              1);
    free(ps.s);
    free(text);
    metrics_free(w);
}

static void test_hot_path_does_not_allocate(void)
{
    struct metrics *w = metrics_new();
    struct usage u = {.input = 5, .output = 7, .seen = true};
    metrics_request(w, "openai", "gpt-4o", OUTCOME_OK, &u, 3, false, 0.2, 0.1); /* warm-up */
    size_t series = metrics_series_count(w);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 100000; i++) {
        metrics_request(w, "openai", "gpt-4o", i % 2 ? OUTCOME_OK : OUTCOME_CLIENT_ABORTED, &u, 3,
                        i % 3 == 0, (double)(i % 1000) / 100.0, i % 5 ? 0.1 : -1);
        metrics_budget(w, "admit");
        metrics_inc(w, METRIC_INFLIGHT, 1);
    }
    struct mallinfo2 after = mallinfo2();
    CHECK_INT(after.uordblks, before.uordblks);
    CHECK_INT(after.hblkhd, before.hblkhd);
    CHECK_INT(metrics_series_count(w), series);
    metrics_free(w);
}

/* A worker thread records while this thread renders: every render parses,
 * and the final one has every request. (Also what TSan would look at.) */
static void *writer(void *arg)
{
    struct metrics *w = arg;
    static const char *const models[] = {"gpt-4o", "gpt-4o-mini", "o3", "o4-mini"};
    struct usage u = {.input = 1, .output = 2, .seen = true};
    for (int i = 0; i < 200000; i++) {
        char m[16];
        snprintf(m, sizeof(m), "n%d", i % 300); /* new series while the reader reads */
        metrics_request(w, "openai", i % 2 ? models[(i / 2) % 4] : m, OUTCOME_OK, &u, 1, false,
                        0.01, 0.005);
    }
    return NULL;
}

static void test_concurrent_render(void)
{
    struct metrics *w[2] = {metrics_new(), metrics_new()};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, writer, w[0]), 0);
    for (int i = 0; i < 30; i++) {
        char *text = render(w, 2, NULL);
        struct parsed ps;
        int rc = parse(&ps, text ? text : "");
        if (rc < 0)
            fprintf(stderr, "  parse: %s\n", ps.err);
        CHECK_INT(rc, 0);
        free(ps.s);
        free(text);
    }
    pthread_join(t, NULL);
    char *text = render(w, 2, NULL);
    struct parsed ps;
    CHECK_INT(parse(&ps, text ? text : ""), 0);
    CHECK_INT(sum_of(&ps, "tollgate_requests_total"), 200000);
    CHECK_INT(sum_of(&ps, "tollgate_upstream_ttfb_seconds_count"), 200000);
    const struct sample *c =
        find(&ps, "tollgate_cost_usd_total", "provider", "openai", "model", "gpt-4o", NULL);
    CHECK_STR(c ? c->text : NULL, "0.000025"); /* 25000 requests of 1 nano-USD */
    free(ps.s);
    free(text);
    metrics_free(w[0]);
    metrics_free(w[1]);
}

static const struct check_test tests[] = {
    {"parser_rejects", test_parser_rejects},
    {"render_two_workers", test_render_two_workers},
    {"empty", test_empty},
    {"cardinality_cap", test_cardinality_cap},
    {"long_labels", test_long_labels},
    {"hot_path_does_not_allocate", test_hot_path_does_not_allocate},
    {"concurrent_render", test_concurrent_render},
};

int main(void)
{
    return CHECK_MAIN("metrics", tests);
}

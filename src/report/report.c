/* report.c: margin per tenant from the Redis counters (see report.h): the
 * periods, the reads, revenue by plan per day and the breakdowns; printing
 * is report_format.c's, the command line report_cli.c's. Reads are pipelined
 * (one round trip per batch of keys); every amount stays an integer in
 * nano-USD. */
#include "report/report.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "budget/budget.h"
#include "core/clock.h"
#include "core/config.h"
#include "budget/plan.h"
#include "redis/redis.h"
#include "redis/redis_sync.h"

#define KEY_MAX 512

/* ---- periods ------------------------------------------------------------- */

static int days_in(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

int report_parse_period(const char *s, struct report_period *p)
{
    size_t len = s ? strlen(s) : 0;
    memset(p, 0, sizeof(*p));
    if ((len != 7 && len != 10) || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2))
        return -1;
    p->year = atoi(s);
    p->month = (s[5] - '0') * 10 + (s[6] - '0');
    if (p->year < 1970 || p->month < 1 || p->month > 12)
        return -1;
    p->days_in_month = days_in(p->year, p->month);
    if (len == 10) {
        if (s[7] != '-' || !digits(s + 8, 2))
            return -1;
        p->day = (s[8] - '0') * 10 + (s[9] - '0');
        if (p->day < 1 || p->day > p->days_in_month)
            return -1;
    }
    memcpy(p->text, s, len + 1);
    return 0;
}

void report_month_of(time_t t, struct report_period *p)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    memset(p, 0, sizeof(*p));
    p->year = tm.tm_year + 1900;
    p->month = tm.tm_mon + 1;
    p->days_in_month = days_in(p->year, p->month);
    snprintf(p->text, sizeof(p->text), "%04d-%02d", p->year % 10000, p->month % 100);
}

/* Noon UTC of that day of the period's month: picks the month and day keys. */
static time_t day_time(const struct report_period *p, int day)
{
    struct tm tm = {
        .tm_year = p->year - 1900, .tm_mon = p->month - 1, .tm_mday = day, .tm_hour = 12};
    return timegm(&tm);
}

/* qsort of n items; an empty list may be NULL, which qsort must not get. */
static void sort_n(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

/* ---- redis --------------------------------------------------------------- */

/* url through the daemon's parser and connection layer (redis_sync.h):
 * every scheme the daemon reaches, AUTH and SELECT done by the layer. The
 * report is a command-line tool and the admin API runs it on its own
 * thread, so blocking is fine. */
struct redis_sync *report_connect(const char *url, const struct redis_tls *tls, int timeout_ms,
                                  char *err, size_t errlen)
{
    return redis_sync_connect(url, tls, timeout_ms, err, errlen);
}

/* A batch of pipelined commands and their replies. */
struct batch {
    redisReply **replies;
    size_t n, cap;
};

static int batch_add(struct redis_sync *c, struct batch *b, int argc, const char **argv)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        redisReply **r = realloc(b->replies, cap * sizeof(*r));
        if (!r)
            return -1;
        b->replies = r;
        b->cap = cap;
    }
    if (redis_sync_append(c, argc, argv, NULL) < 0)
        return -1;
    b->replies[b->n++] = NULL;
    return 0;
}

/* Reads every reply; -1 on a connection error or an error reply. */
static int batch_run(struct redis_sync *c, struct batch *b, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (redis_sync_get(c, &b->replies[i], err, errlen) < 0)
            return -1; /* the connection is unusable now */
        if (b->replies[i]->type == REDIS_REPLY_ERROR && rc == 0) {
            snprintf(err, errlen, "redis: %.*s", (int)b->replies[i]->len, b->replies[i]->str);
            rc = -1;
        }
    }
    return rc;
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->replies[i])
            freeReplyObject(b->replies[i]);
    free(b->replies);
    memset(b, 0, sizeof(*b));
}

static int64_t to_i64(const redisReply *v)
{
    char buf[32];
    if (v->type == REDIS_REPLY_INTEGER)
        return v->integer;
    if (v->type != REDIS_REPLY_STRING || v->len >= sizeof(buf))
        return 0;
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Adds field=value to counts when field names one of them. */
static void count_field(struct report_counts *n, const char *f, size_t len, int64_t v)
{
#define IS(name) (len == strlen(name) && memcmp(f, name, len) == 0)
    if (IS(BUDGET_F_COST))
        n->cost += v;
    else if (IS(BUDGET_F_REQUESTS))
        n->requests += v;
    else if (IS(BUDGET_F_INPUT))
        n->input_tokens += v;
    else if (IS(BUDGET_F_CACHED))
        n->cached_tokens += v;
    else if (IS(BUDGET_F_OUTPUT))
        n->output_tokens += v;
    else if (IS(BUDGET_F_CACHE_HITS))
        n->cache_hits += v;
    else if (IS(BUDGET_F_SAVED))
        n->saved += v;
    else if (IS(BUDGET_F_UNPRICED))
        n->unpriced += v;
    else if (IS(BUDGET_F_UNPRICED_COST))
        n->unpriced_cost += v;
    else if (IS(BUDGET_F_ESTIMATED))
        n->estimated += v;
    else if (IS(BUDGET_F_ESTIMATED_COST))
        n->estimated_cost += v;
    else if (IS(BUDGET_F_ALLOWANCE_USED))
        n->allowance_used += v;
    else if (IS(BUDGET_F_OVERAGE_UNITS))
        n->overage_units += v;
    else if (IS(BUDGET_F_OVERAGE_USD))
        n->overage_usd += v;
#undef IS
}

/* Adds a month or day hash (HGETALL reply) to n. */
static void add_counts(struct report_counts *n, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            count_field(n, r->element[i]->str, r->element[i]->len, to_i64(r->element[i + 1]));
}

void report_counts_add(struct report_counts *a, const struct report_counts *b)
{
    a->cost += b->cost;
    a->requests += b->requests;
    a->input_tokens += b->input_tokens;
    a->cached_tokens += b->cached_tokens;
    a->output_tokens += b->output_tokens;
    a->cache_hits += b->cache_hits;
    a->saved += b->saved;
    a->unpriced += b->unpriced;
    a->unpriced_cost += b->unpriced_cost;
    a->estimated += b->estimated;
    a->estimated_cost += b->estimated_cost;
    a->allowance_used += b->allowance_used;
    a->overage_units += b->overage_units;
    a->overage_usd += b->overage_usd;
}

/* ---- tenants ------------------------------------------------------------- */

struct names {
    char **v;
    size_t n, cap;
};

static int names_add(struct names *s, const char *name, size_t len)
{
    if (memchr(name, '{', len) || memchr(name, '}', len) || len == 0)
        return 0; /* cannot form a key: never settled */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strndup(name, len)))
        return -1;
    s->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Sorted, without duplicates. */
static void names_unique(struct names *s)
{
    size_t w = 0;
    sort_n(s->v, s->n, sizeof(*s->v), cmp_str);
    for (size_t i = 0; i < s->n; i++) {
        if (w > 0 && strcmp(s->v[w - 1], s->v[i]) == 0)
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

/* The month's tenant set plus the configured tenants (only when tenant is
 * NULL; else just it). in_set: whether each was in the set (parallel). */
static int tenants_of(struct redis_sync *c, const struct config *cfg, const struct report_period *p,
                      const char *tenant, struct names *out, char *err, size_t errlen)
{
    char key[KEY_MAX];
    if (budget_tenants_key(key, sizeof(key), cfg->key_prefix, day_time(p, 1)) < 0) {
        snprintf(err, errlen, "key_prefix too long");
        return -1;
    }
    if (tenant)
        return names_add(out, tenant, strlen(tenant)) < 0 ? (snprintf(err, errlen, "oom"), -1) : 0;
    redisReply *r = redis_sync_command(c, 2, (const char *[]){"SMEMBERS", key}, err, errlen);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            snprintf(err, errlen, "redis: %.*s", (int)r->len, r->str);
        else if (r)
            snprintf(err, errlen, "redis: SMEMBERS: unexpected reply");
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            rc = names_add(out, r->element[i]->str, r->element[i]->len);
    freeReplyObject(r);
    for (size_t i = 0; i < cfg->n_tenants && rc == 0; i++)
        rc = names_add(out, cfg->tenants[i].name, strlen(cfg->tenants[i].name));
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    names_unique(out);
    return 0;
}

/* ---- revenue ------------------------------------------------------------- */

int64_t report_div_round(__int128 a, __int128 b)
{
    __int128 q = (a < 0 ? a - b / 2 : a + b / 2) / b;
    return (int64_t)q;
}

/* A plan's price per month in twelfths of a nano-USD (exact for yearly
 * prices); 0 for a plan the config no longer has. */
static __int128 price12(const struct config *cfg, const char *plan)
{
    const struct cfg_plan *p = plan ? config_plan(cfg, plan) : NULL;
    if (!p)
        return 0;
    return p->price_period == PRICE_PERIOD_YEAR ? (__int128)p->price : (__int128)p->price * 12;
}

/* Revenue of the period and the plan of its last day, from the month's
 * plan-per-day hash (HGETALL reply; may be NULL). Revenue accrues from the
 * first day with traffic (*first_day; 0: none, and no revenue) to the month's
 * end; day_rev[d] gains each day's share. *plan points into the reply or the
 * config. */
static money_t revenue(const struct config *cfg, const char *tenant, const struct report_period *p,
                       const redisReply *days, const char **plan, int *first_day,
                       money_t day_rev[32])
{
    const char *by_day[32] = {0};
    struct plan now;
    const char *current = plan_resolve(cfg, tenant, NULL, &now) == 0 ? now.base->name : NULL;
    if (days && days->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < days->elements; i += 2) {
            const redisReply *k = days->element[i], *v = days->element[i + 1];
            int d = k->type == REDIS_REPLY_STRING ? atoi(k->str) : 0;
            if (d >= 1 && d <= 31 && v->type == REDIS_REPLY_STRING)
                by_day[d] = v->str;
        }
    }
    __int128 sum = 0;
    const char *last = NULL;
    money_t day_sum = 0;
    *first_day = 0;
    for (int d = 1; d <= p->days_in_month; d++) {
        if (by_day[d]) {
            last = by_day[d];
            if (!*first_day)
                *first_day = d;
        }
        if (d == p->day)
            *plan = last ? last : current; /* a day period: that day's plan */
        if (!*first_day)
            continue; /* not a customer of this month yet */
        money_t share = report_div_round(price12(cfg, last), (__int128)12 * p->days_in_month);
        sum += price12(cfg, last);
        day_rev[d] += share;
        if (d == p->day)
            day_sum = share;
    }
    if (p->day)
        return day_sum;
    *plan = last ? last : current;
    return report_div_round(sum, (__int128)12 * p->days_in_month);
}

/* Days of p's month that have begun by now: 0 for a future month, all for a
 * past one; *current tells whether it is this month. */
static int days_begun(const struct report_period *p, bool *current)
{
    struct timespec now;
    struct tm tm;
    clock_wall(&now);
    gmtime_r(&now.tv_sec, &tm);
    int y = tm.tm_year + 1900, m = tm.tm_mon + 1;
    *current = p->year == y && p->month == m;
    if (p->year > y || (p->year == y && p->month > m))
        return 0;
    if (p->year < y || p->month < m)
        return p->days_in_month;
    return tm.tm_mday;
}

/* ---- the report ---------------------------------------------------------- */

static int cmp_row(const void *a, const void *b)
{
    const struct report_row *x = a, *y = b;
    money_t mx = x->revenue - x->n.cost, my = y->revenue - y->n.cost;
    if (mx != my)
        return mx < my ? -1 : 1;
    return strcmp(x->tenant, y->tenant);
}

void report_free(struct report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rows[i].tenant);
        free(r->rows[i].plan);
        free(r->rows[i].suggested_plan);
    }
    free(r->rows);
    free(r);
}

struct report *report_build(struct redis_sync *c, const struct config *cfg,
                            const struct report_period *p, const char *tenant, char *err,
                            size_t errlen)
{
    struct names t = {0};
    struct batch b = {0};
    struct report *r = calloc(1, sizeof(*r));
    char key[KEY_MAX], plans[KEY_MAX], set[KEY_MAX], today[KEY_MAX];
    time_t when = day_time(p, p->day ? p->day : 1);
    enum { PER_TENANT = 4 }; /* replies per tenant in the batch */

    if (!r || tenants_of(c, cfg, p, tenant, &t, err, errlen) < 0)
        goto fail;
    r->period = *p;
    bool current;
    r->today = days_begun(p, &current);
    r->current = current;
    if (t.n && !(r->rows = calloc(t.n, sizeof(*r->rows))))
        goto oom;
    if (budget_tenants_key(set, sizeof(set), cfg->key_prefix, when) < 0)
        goto oom;
    /* per tenant: counters, plan per day, membership of the tenant set, and
     * today's counters (the current month only: they tell who is over a
     * daily cap now) */
    for (size_t i = 0; i < t.n; i++) {
        if (budget_key(key, sizeof(key), cfg->key_prefix, t.v[i], p->day ? 'd' : 'm', when) < 0 ||
            budget_month_key(plans, sizeof(plans), cfg->key_prefix, t.v[i], BUDGET_BY_PLAN, when) <
                0 ||
            budget_key(today, sizeof(today), cfg->key_prefix, t.v[i], 'd',
                       day_time(p, r->today ? r->today : 1)) < 0) {
            snprintf(err, errlen, "tenant '%s' cannot form a key", t.v[i]);
            goto fail;
        }
        if (batch_add(c, &b, 2, (const char *[]){"HGETALL", key}) < 0 ||
            batch_add(c, &b, 2, (const char *[]){"HGETALL", plans}) < 0 ||
            batch_add(c, &b, 3, (const char *[]){"SISMEMBER", set, t.v[i]}) < 0 ||
            batch_add(c, &b, 2, (const char *[]){"HGETALL", today}) < 0)
            goto oom;
    }
    if (batch_run(c, &b, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < t.n; i++) {
        struct report_row *row = &r->rows[r->n];
        redisReply **rep = &b.replies[PER_TENANT * i];
        const char *plan = NULL;
        add_counts(&row->n, rep[0]);
        row->revenue = revenue(cfg, t.v[i], p, rep[1], &plan, &row->first_day, r->day_revenue);
        row->known = config_tenant(cfg, t.v[i]) || to_i64(rep[2]) == 1 || row->n.requests > 0;
        if (current) {
            struct report_counts day = {0};
            add_counts(&day, rep[3]);
            row->today_cost = day.cost;
        }
        row->revenue += row->n.overage_usd; /* billed past the allowance */
        const struct cfg_plan *pl = plan ? config_plan(cfg, plan) : NULL;
        row->free_plan = row->revenue == 0 && (!pl || pl->price == 0);
        struct plan eff;
        row->included = -1;
        if (plan_resolve(cfg, t.v[i], plan, &eff) == 0 && eff.unit != PLAN_UNIT_NONE) {
            row->included = eff.included;
            row->unit = eff.unit == PLAN_UNIT_TOKENS ? 't' : 'r';
        }
        int anchor = plan_anchor(cfg, t.v[i]);
        clock_period(day_time(p, anchor < p->days_in_month ? anchor : p->days_in_month), anchor,
                     &row->period_start, &row->period_end);
        row->cap = -1;
        row->tenant = t.v[i];
        t.v[i] = NULL;
        r->n++;
        if (!(row->plan = strdup(plan ? plan : "")))
            goto oom;
    }
    sort_n(r->rows, r->n, sizeof(*r->rows), cmp_row);
    batch_free(&b);
    names_free(&t);
    return r;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    batch_free(&b);
    names_free(&t);
    report_free(r);
    return NULL;
}

/* ---- breakdowns ---------------------------------------------------------- */

static const char *const by_names[] = {
    [REPORT_BY_MODEL] = "model",
    [REPORT_BY_FEATURE] = "feature",
    [REPORT_BY_USER] = "user",
    [REPORT_BY_DAY] = "day",
};

const char *report_by_name(enum report_by by)
{
    return by_names[by];
}

/* One "NAME|field" value of a breakdown hash. */
struct entry {
    const char *name;
    size_t len;
    const char *field;
    size_t flen;
    int64_t v;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int cmp_item_cost(const void *a, const void *b)
{
    const struct report_item *x = a, *y = b;
    if (x->n.cost != y->n.cost)
        return x->n.cost > y->n.cost ? -1 : 1;
    return strcmp(x->name, y->name);
}

void report_breakdown_free(struct report_breakdown *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].name);
    free(b->items);
    free(b->tenant);
    free(b);
}

/* Merges the "NAME|field" entries of every reply into items. */
static int merge_hashes(struct report_breakdown *out, const struct batch *b)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < b->n; i++)
        total += b->replies[i]->type == REDIS_REPLY_ARRAY ? b->replies[i]->elements / 2 : 0;
    struct entry *e = total ? calloc(total, sizeof(*e)) : NULL;
    if (total && !e)
        return -1;
    for (size_t i = 0; i < b->n; i++) {
        const redisReply *r = b->replies[i];
        for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j + 1 < r->elements; j += 2) {
            const redisReply *f = r->element[j];
            const char *bar = f->type == REDIS_REPLY_STRING ? memrchr(f->str, '|', f->len) : NULL;
            if (!bar)
                continue;
            e[k++] = (struct entry){f->str, (size_t)(bar - f->str), bar + 1,
                                    f->len - (size_t)(bar - f->str) - 1, to_i64(r->element[j + 1])};
        }
    }
    sort_n(e, k, sizeof(*e), cmp_entry);
    size_t items = 0;
    for (size_t i = 0; i < k; i++)
        items += i == 0 || cmp_entry(&e[i - 1], &e[i]) != 0;
    if (items && !(out->items = calloc(items, sizeof(*out->items)))) {
        free(e);
        return -1;
    }
    for (size_t i = 0; i < k; i++) {
        if (i == 0 || cmp_entry(&e[i - 1], &e[i]) != 0) {
            if (!(out->items[out->n].name = strndup(e[i].name, e[i].len))) {
                free(e);
                return -1;
            }
            out->n++;
        }
        count_field(&out->items[out->n - 1].n, e[i].field, e[i].flen, e[i].v);
    }
    free(e);
    sort_n(out->items, out->n, sizeof(*out->items), cmp_item_cost);
    return 0;
}

struct report_breakdown *report_breakdown(struct redis_sync *c, const struct config *cfg,
                                          const struct report_period *p, const char *tenant,
                                          enum report_by by, char *err, size_t errlen)
{
    struct names t = {0};
    struct batch b = {0};
    struct report_breakdown *out = calloc(1, sizeof(*out));
    char key[KEY_MAX];
    int first = p->day ? p->day : 1, last = p->day ? p->day : p->days_in_month;

    if (!out || (tenant && !(out->tenant = strdup(tenant))))
        goto oom;
    out->period = *p;
    out->by = by;
    if (by != REPORT_BY_DAY && p->day) {
        snprintf(err, errlen, "--by %s is kept per month: use a month period (%.7s)", by_names[by],
                 p->text);
        goto fail;
    }
    if (by == REPORT_BY_USER && !tenant) {
        /* user ids are the app's, per tenant: u_1 of one tenant is not u_1 of another */
        snprintf(err, errlen, "--by user is per tenant: add --tenant ID");
        goto fail;
    }
    if (tenants_of(c, cfg, p, tenant, &t, err, errlen) < 0)
        goto fail;
    if (by == REPORT_BY_DAY) {
        bool current;
        int begun = days_begun(p, &current);
        if (!p->day && last > begun)
            last = begun; /* no future days */
        if (p->day && p->day > begun)
            last = first - 1;
        if (last >= first &&
            !(out->items = calloc((size_t)(last - first + 1), sizeof(*out->items))))
            goto oom;
        for (int d = first; d <= last; d++) {
            if (asprintf(&out->items[out->n].name, "%04d-%02d-%02d", p->year, p->month, d) < 0) {
                out->items[out->n].name = NULL;
                goto oom;
            }
            out->n++;
            for (size_t i = 0; i < t.n; i++) {
                if (budget_key(key, sizeof(key), cfg->key_prefix, t.v[i], 'd', day_time(p, d)) < 0)
                    continue;
                if (batch_add(c, &b, 2, (const char *[]){"HGETALL", key}) < 0)
                    goto oom;
            }
        }
        if (batch_run(c, &b, err, errlen) < 0)
            goto fail;
        for (size_t d = 0, k = 0; d < out->n; d++)
            for (size_t i = 0; i < t.n && k < b.n; i++)
                add_counts(&out->items[d].n, b.replies[k++]);
    } else {
        for (size_t i = 0; i < t.n; i++) {
            if (budget_month_key(key, sizeof(key), cfg->key_prefix, t.v[i], by_names[by],
                                 day_time(p, 1)) < 0)
                continue;
            if (batch_add(c, &b, 2, (const char *[]){"HGETALL", key}) < 0)
                goto oom;
        }
        if (batch_run(c, &b, err, errlen) < 0)
            goto fail;
        if (merge_hashes(out, &b) < 0)
            goto oom;
    }
    batch_free(&b);
    names_free(&t);
    return out;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    batch_free(&b);
    names_free(&t);
    report_breakdown_free(out);
    return NULL;
}

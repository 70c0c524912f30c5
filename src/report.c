/* report.c: margin per tenant from the Redis counters (see report.h).
 * Reads are pipelined (one round trip per batch of keys); every amount stays
 * an integer in nano-USD until it is printed, through money_format. */
#include "report.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "budget.h"
#include "clock.h"
#include "config.h"
#include "plan.h"

#define KEY_MAX 512
#define CLI_TIMEOUT_MS 5000

/* ---- text output --------------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
    bool oom;
};

PRINTF_LIKE(2, 3)
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    if (o->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap : 256;
        while (cap <= o->len + (size_t)n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

/* The text, or NULL (and freed) when anything ran out of memory. */
static char *take(struct out *o)
{
    if (o->oom || !o->buf) {
        free(o->buf);
        return o->oom ? NULL : strdup("");
    }
    return o->buf;
}

/* A JSON string literal. */
static void put_json_str(struct out *o, const char *s)
{
    put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(o, "\\%c", *p);
        else if (*p < 0x20)
            put(o, "\\u%04x", *p);
        else
            put(o, "%c", *p);
    }
    put(o, "\"");
}

/* A CSV field, quoted when it needs to be. */
static void put_csv_str(struct out *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        put(o, "%s", s);
        return;
    }
    put(o, "\"");
    for (const char *p = s; *p; p++)
        put(o, *p == '"' ? "\"\"" : "%c", *p);
    put(o, "\"");
}

/* USD with every digit: "9", "-31.5", "0.000405" (a JSON number too). */
static const char *usd(money_t m, char *buf, size_t n)
{
    if (money_format(m, buf, n) < 0)
        snprintf(buf, n, "0");
    return buf;
}

/* a / b rounded half away from zero; b > 0. */
static int64_t div_round(__int128 a, __int128 b)
{
    __int128 q = (a < 0 ? a - b / 2 : a + b / 2) / b;
    return (int64_t)q;
}

/* USD rounded to `decimals` (0..9) places, zero-padded: "$9.00", "-$0.0041". */
static const char *usd_fixed(money_t m, int decimals, char *buf, size_t n)
{
    int64_t unit = 1;
    char num[40];
    for (int i = decimals; i < 9; i++)
        unit *= 10;
    money_t r = (money_t)div_round(m, unit) * unit;
    if (money_format(r < 0 ? -r : r, num, sizeof(num)) < 0)
        snprintf(num, sizeof(num), "0");
    char *dot = strchr(num, '.');
    size_t have = dot ? strlen(dot + 1) : 0;
    size_t len = strlen(num);
    if (decimals > 0 && !dot && len + 1 < sizeof(num))
        num[len++] = '.';
    while ((int)have < decimals && len + 1 < sizeof(num)) {
        num[len++] = '0';
        have++;
    }
    num[len] = '\0';
    snprintf(buf, n, "%s$%s", r < 0 ? "-" : "", num);
    return buf;
}

/* margin / revenue * 100 with 2 decimals, trailing zeros dropped ("-350",
 * "33.33"); NULL when revenue is 0. */
static const char *pct(money_t margin, money_t revenue, char *buf, size_t n)
{
    if (revenue == 0)
        return NULL;
    __int128 num = (__int128)margin * 10000;
    int64_t h = div_round(revenue < 0 ? -num : num, revenue < 0 ? -(__int128)revenue : revenue);
    int64_t a = h < 0 ? -h : h;
    int len = snprintf(buf, n, "%s%" PRId64, h < 0 ? "-" : "", a / 100);
    if (a % 100 && len > 0 && (size_t)len < n) {
        if (a % 10)
            snprintf(buf + len, n - (size_t)len, ".%02" PRId64, a % 100);
        else
            snprintf(buf + len, n - (size_t)len, ".%" PRId64, a % 100 / 10);
    }
    return buf;
}

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

/* ---- redis --------------------------------------------------------------- */

static void set_err(char *err, size_t n, const char *what, const redisContext *c)
{
    snprintf(err, n, "redis: %s: %s", what, c && c->err ? c->errstr : "unexpected reply");
}

/* %XX-decoded copy of s[0..n); NULL on a bad escape. */
static char *url_part(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t j = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[j++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Runs one command and checks the reply is not an error; the reply is freed. */
static int run_simple(redisContext *c, const char *what, int argc, const char **argv, char *err,
                      size_t errlen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            snprintf(err, errlen, "redis: %s refused: %.*s", what, (int)r->len, r->str);
        else
            set_err(err, errlen, what, c);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* The same url forms as redis.c: redis://[[user]:password@]host[:port][/db]
 * and unix:///path[?db=N&password=P]. */
struct redisContext *report_connect(const char *url, int timeout_ms, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char *host = NULL, *user = NULL, *pass = NULL, *path = NULL;
    int port = 6379, db = 0;
    redisContext *c = NULL;

    if (url && strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        path = url_part(p, q ? (size_t)(q - p) : strlen(p));
        for (q = q ? q + 1 : NULL; q && *q;) {
            const char *end = strchr(q, '&');
            size_t n = end ? (size_t)(end - q) : strlen(q);
            if (n > 3 && strncmp(q, "db=", 3) == 0)
                db = atoi(q + 3);
            else if (n > 9 && strncmp(q, "password=", 9) == 0 && !pass)
                pass = url_part(q + 9, n - 9);
            q = end ? end + 1 : NULL;
        }
        if (!path || path[0] != '/')
            goto bad;
    } else if (url && strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8, *slash = strchr(p, '/');
        const char *at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            if (!colon)
                goto bad;
            if (colon > p)
                user = url_part(p, (size_t)(colon - p));
            pass = url_part(colon + 1, (size_t)(at - colon - 1));
            p = at + 1;
        }
        const char *hend = slash ? slash : p + strlen(p), *colon;
        if (*p == '[') {
            const char *rb = memchr(p, ']', (size_t)(hend - p));
            if (!rb)
                goto bad;
            host = strndup(p + 1, (size_t)(rb - p - 1));
            colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        } else {
            colon = memchr(p, ':', (size_t)(hend - p));
            host = strndup(p, (size_t)((colon ? colon : hend) - p));
        }
        if (colon)
            port = atoi(colon + 1);
        if (slash && slash[1])
            db = atoi(slash + 1);
        if (!host || !*host || port <= 0 || port > 65535)
            goto bad;
    } else {
        goto bad;
    }

    c = path ? redisConnectUnixWithTimeout(path, tv) : redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        const char *why = c ? c->errstr : "out of memory";
        if (path)
            snprintf(err, errlen, "cannot reach Redis at %s: %s", path, why);
        else
            snprintf(err, errlen, "cannot reach Redis at %s:%d: %s", host, port, why);
        goto fail;
    }
    redisSetTimeout(c, tv);
    if (pass) {
        const char *auth[] = {"AUTH", user ? user : pass, pass};
        int n = user ? 3 : 2;
        if (!user)
            auth[1] = pass;
        if (run_simple(c, "AUTH", n, auth, err, errlen) < 0)
            goto fail;
    }
    if (db) {
        char num[16];
        snprintf(num, sizeof(num), "%d", db);
        if (run_simple(c, "SELECT", 2, (const char *[]){"SELECT", num}, err, errlen) < 0)
            goto fail;
    }
    goto done;
bad:
    snprintf(err, errlen,
             "bad redis url (want redis://[:password@]host[:port][/db] or "
             "unix:///path[?db=N])");
fail:
    if (c)
        redisFree(c);
    c = NULL;
done:
    if (pass) {
        explicit_bzero(pass, strlen(pass));
        free(pass);
    }
    free(user);
    free(host);
    free(path);
    return c;
}

/* A batch of pipelined commands and their replies. */
struct batch {
    redisReply **replies;
    size_t n, cap;
};

static int batch_add(redisContext *c, struct batch *b, int argc, const char **argv)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        redisReply **r = realloc(b->replies, cap * sizeof(*r));
        if (!r)
            return -1;
        b->replies = r;
        b->cap = cap;
    }
    if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK)
        return -1;
    b->replies[b->n++] = NULL;
    return 0;
}

/* Reads every reply; -1 on a connection error or an error reply. */
static int batch_run(redisContext *c, struct batch *b, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < b->n; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || !r) {
            set_err(err, errlen, "read", c);
            return -1; /* the connection is unusable now */
        }
        b->replies[i] = r;
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

static void add(struct report_counts *a, const struct report_counts *b)
{
    a->cost += b->cost;
    a->requests += b->requests;
    a->input_tokens += b->input_tokens;
    a->cached_tokens += b->cached_tokens;
    a->output_tokens += b->output_tokens;
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
    qsort(s->v, s->n, sizeof(*s->v), cmp_str);
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
static int tenants_of(redisContext *c, const struct config *cfg, const struct report_period *p,
                      const char *tenant, struct names *out, char *err, size_t errlen)
{
    char key[KEY_MAX];
    if (budget_tenants_key(key, sizeof(key), cfg->key_prefix, day_time(p, 1)) < 0) {
        snprintf(err, errlen, "key_prefix too long");
        return -1;
    }
    if (tenant)
        return names_add(out, tenant, strlen(tenant)) < 0 ? (snprintf(err, errlen, "oom"), -1) : 0;
    redisReply *r = redisCommandArgv(c, 2, (const char *[]){"SMEMBERS", key}, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            snprintf(err, errlen, "redis: %.*s", (int)r->len, r->str);
        else
            set_err(err, errlen, "SMEMBERS", c);
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
 * plan-per-day hash (HGETALL reply; may be NULL). *plan points into the
 * reply or the config. */
static money_t revenue(const struct config *cfg, const char *tenant, const struct report_period *p,
                       const redisReply *days, const char **plan)
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
    money_t day_rev = 0;
    for (int d = 1; d <= p->days_in_month; d++) {
        if (by_day[d])
            last = by_day[d];
        const char *of_day = last ? last : current;
        sum += price12(cfg, of_day);
        if (d == p->day) {
            day_rev = div_round(price12(cfg, of_day), (__int128)12 * p->days_in_month);
            *plan = of_day;
        }
    }
    if (p->day)
        return day_rev;
    *plan = last ? last : current;
    return div_round(sum, (__int128)12 * p->days_in_month);
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
    }
    free(r->rows);
    free(r);
}

struct report *report_build(redisContext *c, const struct config *cfg,
                            const struct report_period *p, const char *tenant, char *err,
                            size_t errlen)
{
    struct names t = {0};
    struct batch b = {0};
    struct report *r = calloc(1, sizeof(*r));
    char key[KEY_MAX], plans[KEY_MAX], set[KEY_MAX];
    time_t when = day_time(p, p->day ? p->day : 1);

    if (!r || tenants_of(c, cfg, p, tenant, &t, err, errlen) < 0)
        goto fail;
    r->period = *p;
    if (t.n && !(r->rows = calloc(t.n, sizeof(*r->rows))))
        goto oom;
    if (budget_tenants_key(set, sizeof(set), cfg->key_prefix, when) < 0)
        goto oom;
    /* per tenant: counters, plan per day, membership of the tenant set */
    for (size_t i = 0; i < t.n; i++) {
        if (budget_key(key, sizeof(key), cfg->key_prefix, t.v[i], p->day ? 'd' : 'm', when) < 0 ||
            budget_month_key(plans, sizeof(plans), cfg->key_prefix, t.v[i], BUDGET_BY_PLAN, when) <
                0) {
            snprintf(err, errlen, "tenant '%s' cannot form a key", t.v[i]);
            goto fail;
        }
        if (batch_add(c, &b, 2, (const char *[]){"HGETALL", key}) < 0 ||
            batch_add(c, &b, 2, (const char *[]){"HGETALL", plans}) < 0 ||
            batch_add(c, &b, 3, (const char *[]){"SISMEMBER", set, t.v[i]}) < 0)
            goto oom;
    }
    if (batch_run(c, &b, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < t.n; i++) {
        struct report_row *row = &r->rows[r->n];
        const char *plan = NULL;
        add_counts(&row->n, b.replies[3 * i]);
        row->revenue = revenue(cfg, t.v[i], p, b.replies[3 * i + 1], &plan);
        row->known =
            config_tenant(cfg, t.v[i]) || to_i64(b.replies[3 * i + 2]) == 1 || row->n.requests > 0;
        row->tenant = t.v[i];
        t.v[i] = NULL;
        r->n++;
        if (!(row->plan = strdup(plan ? plan : "")))
            goto oom;
    }
    qsort(r->rows, r->n, sizeof(*r->rows), cmp_row);
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

struct totals {
    size_t tenants, under_water;
    money_t revenue;
    struct report_counts n;
};

static void totals_of(const struct report *r, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < r->n; i++) {
        t->tenants++;
        t->revenue += r->rows[i].revenue;
        add(&t->n, &r->rows[i].n);
        t->under_water += r->rows[i].revenue - r->rows[i].n.cost < 0;
    }
}

static const char *const columns[] = {
    "tenant",     "plan",     "revenue_usd",  "cost_usd",      "margin_usd",
    "margin_pct", "requests", "input_tokens", "cached_tokens", "output_tokens",
};

/* ---- aligned tables ------------------------------------------------------ */

#define TABLE_COLS 10

/* A table as cells, row after row; column widths from the widest cell.
 * right[i]: column i holds numbers, aligned right. The last row is the
 * totals, set off by a rule. */
struct grid {
    char **cells;
    size_t n, cap, cols;
    const bool *right;
};

PRINTF_LIKE(2, 3)
static int cell(struct grid *g, const char *fmt, ...)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16 * g->cols;
        char **c = realloc(g->cells, cap * sizeof(*c));
        if (!c)
            return -1;
        g->cells = c;
        g->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&g->cells[g->n], fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    g->n++;
    return 0;
}

static void grid_print(const struct grid *g, struct out *o)
{
    size_t w[TABLE_COLS] = {0}, rows = g->n / g->cols;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < g->cols; c++) {
            size_t n = strlen(g->cells[r * g->cols + c]);
            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < rows; r++) {
        if (r == rows - 1 && rows > 1) { /* a rule above the totals */
            size_t all = 0;
            for (size_t c = 0; c < g->cols; c++)
                all += w[c] + (c ? 2 : 0);
            for (size_t i = 0; i < all; i++)
                put(o, "-");
            put(o, "\n");
        }
        for (size_t c = 0; c < g->cols; c++) {
            const char *s = g->cells[r * g->cols + c];
            bool last = c == g->cols - 1;
            if (g->right[c])
                put(o, "%s%*s", c ? "  " : "", (int)w[c], s);
            else
                put(o, "%s%-*s", c ? "  " : "", last ? 0 : (int)w[c], s);
        }
        put(o, "\n");
    }
}

static void grid_free(struct grid *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->cells[i]);
    free(g->cells);
}

static int row_cells(struct grid *g, const char *name, const char *plan, money_t revenue,
                     const struct report_counts *n)
{
    char a[48], b[48], m[48], pc[32];
    const char *p = pct(revenue - n->cost, revenue, pc, sizeof(pc));
    return cell(g, "%s", name) | cell(g, "%s", plan) |
           cell(g, "%s", usd_fixed(revenue, 2, a, sizeof(a))) |
           cell(g, "%s", usd_fixed(n->cost, 4, b, sizeof(b))) |
           cell(g, "%s", usd_fixed(revenue - n->cost, 2, m, sizeof(m))) |
           cell(g, "%s%s", p ? p : "n/a", p ? "%" : "") | cell(g, "%" PRId64, n->requests) |
           cell(g, "%" PRId64, n->input_tokens) | cell(g, "%" PRId64, n->cached_tokens) |
           cell(g, "%" PRId64, n->output_tokens);
}

static void render_table(const struct report *r, struct out *o)
{
    static const bool right[TABLE_COLS] = {false, false, true, true, true,
                                           true,  true,  true, true, true};
    struct grid g = {.cols = TABLE_COLS, .right = right};
    struct totals t;
    char total[48], blended[48];
    int rc = 0;
    totals_of(r, &t);
    rc |= cell(&g, "TENANT") | cell(&g, "PLAN") | cell(&g, "REVENUE") | cell(&g, "COST") |
          cell(&g, "MARGIN") | cell(&g, "MARGIN%%") | cell(&g, "REQUESTS") | cell(&g, "INPUT") |
          cell(&g, "CACHED") | cell(&g, "OUTPUT");
    for (size_t i = 0; i < r->n; i++)
        rc |= row_cells(&g, r->rows[i].tenant, r->rows[i].plan, r->rows[i].revenue, &r->rows[i].n);
    snprintf(total, sizeof(total), "TOTAL (%zu)", t.tenants);
    rc |= row_cells(&g, total, "", t.revenue, &t.n);
    if (rc)
        o->oom = true;
    put(o, "period %s\n", r->period.text);
    if (!o->oom)
        grid_print(&g, o);
    put(o, "blended cost per tenant %s, %zu under water\n",
        usd_fixed(t.tenants ? (money_t)div_round(t.n.cost, (__int128)t.tenants) : 0, 4, blended,
                  sizeof(blended)),
        t.under_water);
    grid_free(&g);
}

static void render_json(const struct report *r, struct out *o)
{
    char a[48], b[48], m[48], pc[32];
    struct totals t;
    totals_of(r, &t);
    put(o, "{\"period\":");
    put_json_str(o, r->period.text);
    put(o, ",\"tenants\":[");
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        money_t margin = row->revenue - row->n.cost;
        const char *p = pct(margin, row->revenue, pc, sizeof(pc));
        put(o, "%s{\"tenant\":", i ? "," : "");
        put_json_str(o, row->tenant);
        put(o, ",\"plan\":");
        put_json_str(o, row->plan);
        put(o,
            ",\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,\"margin_pct\":%s,"
            "\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
            ",\"output_tokens\":%" PRId64 "}",
            usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)),
            usd(margin, m, sizeof(m)), p ? p : "null", row->n.requests, row->n.input_tokens,
            row->n.cached_tokens, row->n.output_tokens);
    }
    money_t margin = t.revenue - t.n.cost;
    const char *p = pct(margin, t.revenue, pc, sizeof(pc));
    char bl[48];
    put(o,
        "],\"totals\":{\"tenants\":%zu,\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,"
        "\"margin_pct\":%s,\"blended_cost_per_tenant_usd\":%s,\"tenants_under_water\":%zu}}\n",
        t.tenants, usd(t.revenue, a, sizeof(a)), usd(t.n.cost, b, sizeof(b)),
        usd(margin, m, sizeof(m)), p ? p : "null",
        usd(t.tenants ? (money_t)div_round(t.n.cost, (__int128)t.tenants) : 0, bl, sizeof(bl)),
        t.under_water);
}

static void render_csv(const struct report *r, struct out *o)
{
    char a[48], b[48], m[48], pc[32];
    for (size_t i = 0; i < ARRAY_LEN(columns); i++)
        put(o, "%s%s", i ? "," : "", columns[i]);
    put(o, "\n");
    for (size_t i = 0; i < r->n; i++) {
        const struct report_row *row = &r->rows[i];
        money_t margin = row->revenue - row->n.cost;
        const char *p = pct(margin, row->revenue, pc, sizeof(pc));
        put_csv_str(o, row->tenant);
        put(o, ",");
        put_csv_str(o, row->plan);
        put(o, ",%s,%s,%s,%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n",
            usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)),
            usd(margin, m, sizeof(m)), p ? p : "n/a", row->n.requests, row->n.input_tokens,
            row->n.cached_tokens, row->n.output_tokens);
    }
}

char *report_render(const struct report *r, enum report_format f)
{
    struct out o = {0};
    if (f == REPORT_JSON)
        render_json(r, &o);
    else if (f == REPORT_CSV)
        render_csv(r, &o);
    else
        render_table(r, &o);
    return take(&o);
}

/* ---- breakdowns ---------------------------------------------------------- */

static const char *const by_names[] = {
    [REPORT_BY_MODEL] = "model",
    [REPORT_BY_FEATURE] = "feature",
    [REPORT_BY_USER] = "user",
    [REPORT_BY_DAY] = "day",
};

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
    qsort(e, k, sizeof(*e), cmp_entry);
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
    qsort(out->items, out->n, sizeof(*out->items), cmp_item_cost);
    return 0;
}

struct report_breakdown *report_breakdown(redisContext *c, const struct config *cfg,
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
    if (tenants_of(c, cfg, p, tenant, &t, err, errlen) < 0)
        goto fail;
    if (by == REPORT_BY_DAY) {
        if (!(out->items = calloc((size_t)(last - first + 1), sizeof(*out->items))))
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

/* The items as a JSON array of {"<by>":name,"cost_usd",...}. */
static void items_json(const struct report_breakdown *b, struct out *o)
{
    char cost[48];
    put(o, "[");
    for (size_t i = 0; i < b->n; i++) {
        const struct report_item *it = &b->items[i];
        put(o, "%s{\"%s\":", i ? "," : "", by_names[b->by]);
        put_json_str(o, it->name);
        put(o,
            ",\"cost_usd\":%s,\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64
            ",\"cached_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64 "}",
            usd(it->n.cost, cost, sizeof(cost)), it->n.requests, it->n.input_tokens,
            it->n.cached_tokens, it->n.output_tokens);
    }
    put(o, "]");
}

char *report_breakdown_render(const struct report_breakdown *b, enum report_format f)
{
    struct out o = {0};
    char cost[48];
    if (f == REPORT_JSON) {
        put(&o, "{\"period\":");
        put_json_str(&o, b->period.text);
        put(&o, ",\"tenant\":");
        if (b->tenant)
            put_json_str(&o, b->tenant);
        else
            put(&o, "null");
        put(&o, ",\"by\":\"%s\",\"rows\":", by_names[b->by]);
        items_json(b, &o);
        put(&o, "}\n");
    } else if (f == REPORT_CSV) {
        put(&o, "%s,cost_usd,requests,input_tokens,cached_tokens,output_tokens\n", by_names[b->by]);
        for (size_t i = 0; i < b->n; i++) {
            const struct report_item *it = &b->items[i];
            put_csv_str(&o, it->name);
            put(&o, ",%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n",
                usd(it->n.cost, cost, sizeof(cost)), it->n.requests, it->n.input_tokens,
                it->n.cached_tokens, it->n.output_tokens);
        }
    } else {
        static const bool right[] = {false, true, true, true, true, true};
        struct grid g = {.cols = 6, .right = right};
        struct report_counts sum = {0};
        char upper[16];
        int rc = 0;
        snprintf(upper, sizeof(upper), "%s", by_names[b->by]);
        for (char *s = upper; *s; s++)
            *s = (char)toupper((unsigned char)*s);
        rc |= cell(&g, "%s", upper) | cell(&g, "COST") | cell(&g, "REQUESTS") | cell(&g, "INPUT") |
              cell(&g, "CACHED") | cell(&g, "OUTPUT");
        for (size_t i = 0; i <= b->n; i++) {
            const struct report_item *it = i < b->n ? &b->items[i] : NULL;
            const struct report_counts *n = it ? &it->n : &sum;
            if (it)
                add(&sum, &it->n);
            rc |= cell(&g, "%s", it ? it->name : "TOTAL") |
                  cell(&g, "%s", usd_fixed(n->cost, 4, cost, sizeof(cost))) |
                  cell(&g, "%" PRId64, n->requests) | cell(&g, "%" PRId64, n->input_tokens) |
                  cell(&g, "%" PRId64, n->cached_tokens) | cell(&g, "%" PRId64, n->output_tokens);
        }
        put(&o, "period %s, %s, by %s\n", b->period.text, b->tenant ? b->tenant : "all tenants",
            by_names[b->by]);
        if (rc)
            o.oom = true;
        else
            grid_print(&g, &o);
        grid_free(&g);
    }
    return take(&o);
}

/* ---- the admin API's tenant detail --------------------------------------- */

char *report_tenant_json(redisContext *c, const struct config *cfg, const struct report_period *p,
                         const char *tenant, int *status, char *err, size_t errlen)
{
    struct report *r = NULL;
    struct report_breakdown *by[4] = {0};
    struct out o = {0};
    char a[48], b[48], m[48], pc[32], cap[48];
    static const enum report_by kinds[] = {REPORT_BY_DAY, REPORT_BY_MODEL, REPORT_BY_FEATURE,
                                           REPORT_BY_USER};
    static const char *const labels[] = {"daily", "by_model", "by_feature", "by_user"};

    *status = 503;
    if (p->day) {
        *status = 400;
        snprintf(err, errlen, "period must be a month (YYYY-MM) for a tenant");
        return NULL;
    }
    if (!tenant || !*tenant || strpbrk(tenant, "{}")) {
        *status = 404;
        snprintf(err, errlen, "no such tenant");
        return NULL;
    }
    if (!(r = report_build(c, cfg, p, tenant, err, errlen)))
        goto fail;
    if (r->n != 1 || !r->rows[0].known) {
        *status = 404;
        snprintf(err, errlen, "tenant '%s' has no traffic in %s and no [tenant] section", tenant,
                 p->text);
        goto fail;
    }
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
        if (!(by[i] = report_breakdown(c, cfg, p, tenant, kinds[i], err, errlen)))
            goto fail;
    const struct report_row *row = &r->rows[0];
    struct plan eff;
    bool has_cap = plan_resolve(cfg, tenant, row->plan, &eff) == 0 && eff.budget_monthly >= 0;
    money_t margin = row->revenue - row->n.cost;
    const char *pp = pct(margin, row->revenue, pc, sizeof(pc));
    put(&o, "{\"tenant\":");
    put_json_str(&o, row->tenant);
    put(&o, ",\"plan\":");
    put_json_str(&o, row->plan);
    put(&o, ",\"period\":");
    put_json_str(&o, p->text);
    put(&o,
        ",\"revenue_usd\":%s,\"cost_usd\":%s,\"margin_usd\":%s,\"margin_pct\":%s,"
        "\"requests\":%" PRId64 ",\"input_tokens\":%" PRId64 ",\"cached_tokens\":%" PRId64
        ",\"output_tokens\":%" PRId64 ",\"budget_monthly_usd\":%s",
        usd(row->revenue, a, sizeof(a)), usd(row->n.cost, b, sizeof(b)), usd(margin, m, sizeof(m)),
        pp ? pp : "null", row->n.requests, row->n.input_tokens, row->n.cached_tokens,
        row->n.output_tokens, has_cap ? usd(eff.budget_monthly, cap, sizeof(cap)) : "null");
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        put(&o, ",\"%s\":", labels[i]);
        items_json(by[i], &o);
    }
    put(&o, "}\n");
    for (size_t i = 0; i < ARRAY_LEN(by); i++)
        report_breakdown_free(by[i]);
    report_free(r);
    *status = 200;
    char *text = take(&o);
    if (!text) {
        *status = 503;
        snprintf(err, errlen, "out of memory");
    }
    return text;
fail:
    for (size_t i = 0; i < ARRAY_LEN(by); i++)
        report_breakdown_free(by[i]);
    report_free(r);
    return NULL;
}

/* ---- the command line ---------------------------------------------------- */

static const char report_usage[] =
    "usage: tollgate report [-c FILE] [--period 2026-11|2026-11-22] [--format table|json|csv]\n"
    "                       [--tenant ID] [--by model|feature|user|day]\n";

static int lookup_word(const char *s, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s && words[i] && strcmp(s, words[i]) == 0)
            return (int)i;
    return -1;
}

int report_main(int argc, char **argv)
{
    static const char *const formats[] = {
        [REPORT_TABLE] = "table", [REPORT_JSON] = "json", [REPORT_CSV] = "csv"};
    const char *conf = "proxy.conf", *period = NULL, *tenant = NULL;
    int format = REPORT_TABLE, by = -1;
    struct report_period p;
    char err[8192] = "";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(report_usage, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "tollgate report: '%s' needs a value or is unknown\n%s", a,
                    report_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "-c") == 0) {
            conf = v;
        } else if (strcmp(a, "--period") == 0) {
            period = v;
        } else if (strcmp(a, "--tenant") == 0) {
            tenant = v;
        } else if (strcmp(a, "--format") == 0) {
            if ((format = lookup_word(v, formats, ARRAY_LEN(formats))) < 0) {
                fprintf(stderr, "tollgate report: --format is table, json or csv\n");
                return 2;
            }
        } else if (strcmp(a, "--by") == 0) {
            if ((by = lookup_word(v, by_names, ARRAY_LEN(by_names))) < 0) {
                fprintf(stderr, "tollgate report: --by is model, feature, user or day\n");
                return 2;
            }
        } else {
            fprintf(stderr, "tollgate report: unknown argument '%s'\n%s", a, report_usage);
            return 2;
        }
    }
    if (period) {
        if (report_parse_period(period, &p) < 0) {
            fprintf(stderr, "tollgate report: --period wants YYYY-MM or YYYY-MM-DD, not '%s'\n",
                    period);
            return 2;
        }
    } else {
        struct timespec now;
        clock_wall(&now);
        report_month_of(now.tv_sec, &p);
    }
    if (tenant && (!*tenant || strpbrk(tenant, "{}"))) {
        fprintf(stderr, "tollgate report: --tenant '%s' cannot be a tenant id\n", tenant);
        return 2;
    }

    struct config *cfg = config_load(conf, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] != '\n' ? "\n" : "");
        return 1;
    }
    int rc = 1;
    char *text = NULL;
    redisContext *c = report_connect(cfg->redis_url, CLI_TIMEOUT_MS, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "tollgate report: %s\n", err);
        goto done;
    }
    if (by >= 0) {
        struct report_breakdown *b =
            report_breakdown(c, cfg, &p, tenant, (enum report_by)by, err, sizeof(err));
        text = b ? report_breakdown_render(b, (enum report_format)format) : NULL;
        report_breakdown_free(b);
        if (!b) {
            fprintf(stderr, "tollgate report: %s\n", err);
            rc = strncmp(err, "--by", 4) == 0 ? 2 : 1;
            goto done;
        }
    } else {
        struct report *r = report_build(c, cfg, &p, tenant, err, sizeof(err));
        text = r ? report_render(r, (enum report_format)format) : NULL;
        report_free(r);
        if (!r) {
            fprintf(stderr, "tollgate report: %s\n", err);
            goto done;
        }
    }
    if (!text) {
        fprintf(stderr, "tollgate report: out of memory\n");
        goto done;
    }
    fputs(text, stdout);
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    free(text);
    if (c)
        redisFree(c);
    config_unref(cfg);
    return rc;
}
